-- Version 8: the work pupils hand in from their tablets. The files (a photo,
-- a drawing, a text) are kept in the data directory's hand-ins area, named by
-- the hand-in's id; this row says whose work it is and in which lesson.

CREATE TABLE hand_ins (
    -- A UUIDv7 as text, also the file's name.
    id TEXT PRIMARY KEY,
    -- The timetable's period, as the roll call names it.
    lesson_id TEXT NOT NULL,
    tablet_id TEXT NOT NULL,
    -- The pupil who held the tablet; their erasure deletes the row and the file.
    personal_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('photo', 'drawing', 'text')),
    media_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 BLOB NOT NULL CHECK (length(sha256) = 32),
    handed_in_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX hand_ins_by_lesson ON hand_ins (lesson_id, handed_in_at_ms);
CREATE INDEX hand_ins_by_pupil ON hand_ins (personal_id);
