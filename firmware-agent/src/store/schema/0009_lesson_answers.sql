-- Version 9: the questions asked in each lesson and the pupils' answers, kept
-- for the lesson's summary (the outbox forgets what the hub acknowledged).

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
