-- Bells, lights and switches: what the scheduler decided about each planned action.
CREATE TABLE schedule_decisions (
    action_key TEXT PRIMARY KEY,
    due_at_ms INTEGER NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('fired', 'skipped')),
    decided_at_ms INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX schedule_decisions_due ON schedule_decisions (due_at_ms);
