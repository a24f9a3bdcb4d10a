-- Version 2: the rooms' signing keys for records carried on a USB stick.

-- The Ed25519 key a room signs its records bundles with (`ed25519:BASE64`),
-- pinned on the first bundle imported from the room, or written in ahead by
-- the office. A bundle signed by another key for the same room is refused;
-- after a room's machine was really replaced, delete its row once the school
-- confirmed it.
CREATE TABLE room_keys (
    school_code text NOT NULL,
    room_id text NOT NULL,
    signing_key text NOT NULL,
    pinned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_code, room_id)
);
