-- Version 5: attendance by face recognition: templates and roll-call marks.

CREATE TABLE face_templates (
    id INTEGER PRIMARY KEY,
    personal_id TEXT NOT NULL REFERENCES pupils (personal_id),
    embedding BLOB NOT NULL CHECK (length(embedding) = 2048),
    model_sha256 TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX face_templates_by_pupil ON face_templates (personal_id);

CREATE TABLE attendance_marks (
    session_id TEXT NOT NULL,
    lesson_id TEXT NOT NULL,
    personal_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('present', 'late', 'absent', 'excused')),
    source TEXT NOT NULL CHECK (source IN ('face', 'teacher', 'window_closed')),
    best_similarity REAL NOT NULL,
    marked_at_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, personal_id)
) STRICT;
