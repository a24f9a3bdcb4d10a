-- Version 3: the room's paired tablets.

-- The room's paired tablets.
CREATE TABLE tablets (
    tablet_id TEXT PRIMARY KEY,
    -- The name the teacher sees, such as "Bàn 3 – trái".
    name TEXT NOT NULL,
    -- SHA-256 of the device token; the token itself is never stored.
    token_sha256 BLOB NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    -- The pupil the teacher bound this tablet to, when bound.
    pupil_personal_id TEXT CHECK (pupil_personal_id IS NULL OR length(pupil_personal_id) = 12),
    paired_at_ms INTEGER NOT NULL,
    -- Set when the teacher revoked the tablet; its token is refused from then on.
    revoked_at_ms INTEGER
) STRICT;
