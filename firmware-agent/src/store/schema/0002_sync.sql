-- Version 2: hub sync.

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
