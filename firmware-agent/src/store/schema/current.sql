-- The schema of a new database, in full. Every table is described here.
-- A database made by an older version reaches the same schema through the
-- numbered upgrades beside this file; a test checks that the two agree.

-- The outbox: every record meant for the hub, append-only, in commit order.
-- `seq` is the cursor the hub pulls from; AUTOINCREMENT guarantees a pruned
-- sequence number is never handed out again.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- UUIDv7, 16 bytes: the event's identity everywhere, never changed.
    id BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    -- What happened, such as `attendance.mark`; names the payload's message type.
    kind TEXT NOT NULL,
    -- When it happened, milliseconds since the Unix epoch (UTC).
    occurred_at_ms INTEGER NOT NULL,
    -- When the agent recorded it, by the agent's clock.
    recorded_at_ms INTEGER NOT NULL,
    -- Whether the system clock was synchronised (NTP) when the event was recorded.
    clock_synced INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
    -- How far the clock had been seen to step back before this event (0 when it had not).
    clock_step_back_ms INTEGER NOT NULL DEFAULT 0,
    -- The event's body, encoded as the protobuf message its kind names.
    payload BLOB NOT NULL
) STRICT;

-- One row: how far the hub has acknowledged the outbox.
CREATE TABLE outbox_ack (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    acked_seq INTEGER NOT NULL,
    acked_at_ms INTEGER NOT NULL
) STRICT;

-- The room's people. A person is identified by the national personal ID
-- (mã định danh cá nhân): 12 digits, the first three a province code.
CREATE TABLE classes (
    name TEXT PRIMARY KEY
) STRICT;

CREATE TABLE pupils (
    personal_id TEXT PRIMARY KEY CHECK (length(personal_id) = 12),
    full_name TEXT NOT NULL,
    class_name TEXT NOT NULL REFERENCES classes (name),
    -- A parent's recorded consent to face recognition (Decree 13/2023: biometric data).
    face_consent INTEGER NOT NULL CHECK (face_consent IN (0, 1)),
    -- Consent to keep the pupil's learning records for later analysis.
    learning_data_consent INTEGER NOT NULL CHECK (learning_data_consent IN (0, 1)),
    -- The day the consent was recorded, YYYY-MM-DD, when known.
    consent_date TEXT,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX pupils_by_class ON pupils (class_name);

CREATE TABLE teachers (
    personal_id TEXT PRIMARY KEY CHECK (length(personal_id) = 12),
    full_name TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- One row: the roster version the hub pushed last, and the timetable it came with.
CREATE TABLE hub_roster (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    -- Strictly increasing with each accepted push; a push with a version not
    -- above this one is refused.
    version INTEGER NOT NULL CHECK (version > 0),
    -- The timetable as the hub sent it: TOML in the form of the config's
    -- [schedule] section; NULL when no push has carried one yet.
    timetable_toml TEXT,
    -- The version of the push that brought the timetable above.
    timetable_version INTEGER,
    applied_at_ms INTEGER NOT NULL
) STRICT;

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

-- The teacher's groups of tablets, kept from lesson to lesson (upgrade 0007).
CREATE TABLE lesson_groups (
    -- As the teacher named it, such as "Nhóm 1" or "Tổ Toán".
    name TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
    changed_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE lesson_group_members (
    group_name TEXT NOT NULL REFERENCES lesson_groups (name) ON DELETE CASCADE,
    tablet_id TEXT NOT NULL REFERENCES tablets (tablet_id),
    PRIMARY KEY (group_name, tablet_id)
) STRICT;

-- Bells, lights and switches (upgrade 0004).
-- What the scheduler decided about each action the timetable planned, so a
-- restart or a clock stepped back never performs one twice. `action_key` is
-- "<local date>T<HH:MM> <device> <command>"; kept for a few days only.
CREATE TABLE schedule_decisions (
    action_key TEXT PRIMARY KEY,
    -- When the action was due, milliseconds since the Unix epoch (UTC).
    due_at_ms INTEGER NOT NULL,
    -- `fired` (performed, possibly late) or `skipped` (missed beyond its grace).
    decision TEXT NOT NULL CHECK (decision IN ('fired', 'skipped')),
    decided_at_ms INTEGER NOT NULL,
    -- Why it was skipped, or how late it fired.
    detail TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX schedule_decisions_due ON schedule_decisions (due_at_ms);

-- Face templates (attendance): one row per enrolled photo of a pupil who has
-- face_consent. Only the embedding is kept, never the photo (Decree 13/2023:
-- no more biometric data than needed); `face forget` deletes every row of a pupil.
CREATE TABLE face_templates (
    id INTEGER PRIMARY KEY,
    personal_id TEXT NOT NULL REFERENCES pupils (personal_id),
    -- 512 little-endian f32: the L2-normalised embedding of the aligned face.
    embedding BLOB NOT NULL CHECK (length(embedding) = 2048),
    -- The embedding model's SHA-256: templates of another model are not comparable.
    model_sha256 TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX face_templates_by_pupil ON face_templates (personal_id);

-- The roll call's marks: one per pupil per roll-call session. A teacher's
-- correction replaces a camera's mark (and is also sent to the hub as its own event).
CREATE TABLE attendance_marks (
    session_id TEXT NOT NULL,
    -- The lesson, as "YYYY-MM-DD/<shift>/<period>" in the room's time zone.
    lesson_id TEXT NOT NULL,
    personal_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('present', 'late', 'absent', 'excused')),
    -- Who decided: the camera, the teacher, or the window closing on an unseen pupil.
    source TEXT NOT NULL CHECK (source IN ('face', 'teacher', 'window_closed')),
    -- Cosine similarity of the best matching frame (0 unless source is 'face').
    best_similarity REAL NOT NULL,
    marked_at_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, personal_id)
) STRICT;

-- The outbox's identity (upgrade 0006): 16 random bytes chosen when the
-- outbox is created and never changed. A hub that sees another identity for
-- the same room knows its cursor names positions in a different outbox (the
-- database was replaced or moved aside) and starts that outbox from 0.
-- Written by the agent on first open; one row.
CREATE TABLE outbox_identity (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    identity BLOB NOT NULL CHECK (length(identity) = 16),
    created_at_ms INTEGER NOT NULL
) STRICT;

-- A counter bumped by every change to pupils or face templates, whichever
-- process made it (the triggers below), so the running roll call notices an
-- enrollment, an erasure or a roster change made by a command beside it.
CREATE TABLE people_changes (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    generation INTEGER NOT NULL
) STRICT;
INSERT INTO people_changes (singleton, generation) VALUES (1, 0);

CREATE TRIGGER pupils_inserted AFTER INSERT ON pupils
BEGIN UPDATE people_changes SET generation = generation + 1; END;
CREATE TRIGGER pupils_updated AFTER UPDATE ON pupils
BEGIN UPDATE people_changes SET generation = generation + 1; END;
CREATE TRIGGER pupils_deleted AFTER DELETE ON pupils
BEGIN UPDATE people_changes SET generation = generation + 1; END;
CREATE TRIGGER face_templates_inserted AFTER INSERT ON face_templates
BEGIN UPDATE people_changes SET generation = generation + 1; END;
CREATE TRIGGER face_templates_deleted AFTER DELETE ON face_templates
BEGIN UPDATE people_changes SET generation = generation + 1; END;

-- The questions asked in each lesson and the pupils' answers (upgrade 0009),
-- kept for the lesson's summary: the outbox forgets what the hub acknowledged.
CREATE TABLE lesson_questions (
    -- The timetable's period, as the roll call names it.
    lesson_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    question_kind TEXT NOT NULL,
    prompt TEXT NOT NULL,
    graded INTEGER NOT NULL CHECK (graded IN (0, 1)),
    asked_at_ms INTEGER NOT NULL,
    PRIMARY KEY (lesson_id, question_id)
) STRICT;

CREATE TABLE lesson_answers (
    lesson_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    tablet_id TEXT NOT NULL,
    -- NULL when the pupil's parents did not consent to keeping learning
    -- records; erasing the pupil erases their answers.
    personal_id TEXT REFERENCES pupils (personal_id) ON DELETE CASCADE,
    -- The choice ids, comma-separated, or the short answer's text.
    answer TEXT NOT NULL,
    correct INTEGER CHECK (correct IN (0, 1)),
    time_to_answer_ms INTEGER NOT NULL,
    answered_at_ms INTEGER NOT NULL,
    PRIMARY KEY (lesson_id, question_id, tablet_id),
    FOREIGN KEY (lesson_id, question_id) REFERENCES lesson_questions (lesson_id, question_id)
) STRICT;

CREATE INDEX lesson_answers_by_pupil ON lesson_answers (personal_id);
-- The work pupils hand in from their tablets (upgrade 0008); the files live
-- in the data directory's hand-ins area, named by id.
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
