-- Learning content the hub pushes to the rooms (PutContent) from its content
-- directory ([content] dir in its config), and what each room holds.
--
-- One row per room and file name: the version the room last accepted (its
-- SHA-256 and size, when and over which link), and the last refusal with the
-- room's message. The hub pushes a file when the room holds no accepted
-- version of that name at the file's SHA-256; a version the room refused is
-- not pushed again until the file changes.

CREATE TABLE content_deliveries (
    school_code text NOT NULL,
    room_id text NOT NULL,
    -- The name tablets request, /content/<name>.
    name text NOT NULL,
    -- What the room holds, from the last push it accepted; NULL before any.
    sha256 bytea CHECK (octet_length(sha256) = 32),
    size bigint,
    delivered_at timestamptz,
    -- How the room was linked for that push: 'pull' or 'dial_in'.
    link text,
    -- The last version the room refused, when, and its message.
    refused_sha256 bytea,
    refused_at timestamptz,
    refusal text,
    PRIMARY KEY (school_code, room_id, name)
);
