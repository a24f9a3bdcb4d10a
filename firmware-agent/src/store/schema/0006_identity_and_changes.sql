-- Version 6: the outbox's identity, and a counter of changes to the room's people.

CREATE TABLE outbox_identity (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    identity BLOB NOT NULL CHECK (length(identity) = 16),
    created_at_ms INTEGER NOT NULL
) STRICT;

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
