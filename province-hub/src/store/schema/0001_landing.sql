-- Version 1: rooms, their outboxes and cursors, every event once, and the
-- tables a province analyst queries.

-- A room the hub has heard from, and the outbox it pulls now.
CREATE TABLE rooms (
    school_code text NOT NULL,
    room_id text NOT NULL,
    -- The identity of the room's outbox being pulled now (see outboxes).
    current_identity uuid NOT NULL,
    PRIMARY KEY (school_code, room_id)
);

-- Every outbox a room has had. A room's database replaced (a new machine, a
-- restore) has a new identity and starts again at cursor 0; the old row stays
-- with the cursor it reached.
CREATE TABLE outboxes (
    school_code text NOT NULL,
    room_id text NOT NULL,
    identity uuid NOT NULL,
    -- Every event with seq <= cursor is stored here (or recorded as skipped).
    cursor bigint NOT NULL CHECK (cursor >= 0),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_stored_at timestamptz,
    PRIMARY KEY (school_code, room_id, identity)
);

-- Every event, once: the id is the event's UUIDv7, the same in every outbox.
-- `payload` holds the protobuf bytes of kinds without an analyst table below
-- (such as attendance.session, device.health, and kinds newer than this hub);
-- events that have a row in an analyst table keep their content only there.
CREATE TABLE events (
    id uuid PRIMARY KEY,
    school_code text NOT NULL,
    room_id text NOT NULL,
    outbox_identity uuid NOT NULL,
    seq bigint NOT NULL,
    kind text NOT NULL,
    occurred_at timestamptz,
    recorded_at timestamptz,
    clock_synced boolean NOT NULL,
    clock_step_back_ms bigint NOT NULL,
    payload bytea,
    landed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_room ON events (school_code, room_id, occurred_at);
CREATE INDEX events_by_kind ON events (kind);

-- Events a room could not send (too large for the link): recorded so that the
-- gap in the room's seq numbers is explained, and the cursor can pass it.
CREATE TABLE skipped_events (
    school_code text NOT NULL,
    room_id text NOT NULL,
    outbox_identity uuid NOT NULL,
    seq bigint NOT NULL,
    id uuid,
    kind text NOT NULL,
    message_bytes bigint NOT NULL,
    reason text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_code, room_id, outbox_identity, seq)
);

-- The analyst tables below have one row per event of their kind, keyed by the
-- event's id (events.id). They are written in the same transaction as the
-- event, so no foreign key is checked row by row.

-- One pupil's roll-call mark for one lesson; a later mark of the same session
-- and pupil is a teacher's correction (compare occurred_at).
CREATE TABLE attendance_marks (
    event_id uuid PRIMARY KEY,
    school_code text NOT NULL,
    room_id text NOT NULL,
    session_id text NOT NULL,
    lesson_id text NOT NULL,
    personal_id text NOT NULL,
    status text NOT NULL,
    source text NOT NULL,
    -- Cosine similarity of the best matching frame (biometric-derived): NULL
    -- once an erasure for the pupil arrived, and for marks not made by face.
    best_similarity real,
    reason text NOT NULL,
    teacher_personal_id text NOT NULL,
    occurred_at timestamptz
);
CREATE INDEX attendance_marks_by_pupil ON attendance_marks (personal_id);
CREATE INDEX attendance_marks_by_lesson ON attendance_marks (school_code, room_id, lesson_id);

-- A pupil's answer to a question shown on the tablets.
CREATE TABLE answers (
    event_id uuid PRIMARY KEY,
    school_code text NOT NULL,
    room_id text NOT NULL,
    lesson_id text NOT NULL,
    question_id text NOT NULL,
    tablet_id text NOT NULL,
    pupil_personal_id text NOT NULL,
    choices text[] NOT NULL,
    answer_text text NOT NULL,
    graded boolean NOT NULL,
    correct boolean NOT NULL,
    time_to_answer_ms bigint NOT NULL,
    occurred_at timestamptz
);
CREATE INDEX answers_by_pupil ON answers (pupil_personal_id);

-- A bell rung or a light switched, and how it went.
CREATE TABLE actuations (
    event_id uuid PRIMARY KEY,
    school_code text NOT NULL,
    room_id text NOT NULL,
    device text NOT NULL,
    device_kind text NOT NULL,
    command text NOT NULL,
    cause text NOT NULL,
    outcome text NOT NULL,
    detail text NOT NULL,
    latency_ms bigint NOT NULL,
    occurred_at timestamptz
);

-- Personal data a room erased on request (Decree 13/2023).
CREATE TABLE erasures (
    event_id uuid PRIMARY KEY,
    school_code text NOT NULL,
    room_id text NOT NULL,
    personal_id text NOT NULL,
    what text NOT NULL,
    count bigint NOT NULL,
    reason text NOT NULL,
    occurred_at timestamptz
);
CREATE INDEX erasures_by_pupil ON erasures (personal_id);
