-- Rosters and timetables the province keeps for each room, pushed to the
-- room (PutRoster) over whichever link it has, and what each room accepted.
--
-- The province edits the rows of roster_pupils and roster_teachers (and the
-- timetable in room_rosters) with plain SQL; any change to a room's rows
-- raises that room's version by one in the same transaction (the triggers
-- below), and the hub pushes the whole roster of the newest version to the
-- room the next time it hears from it.

CREATE TABLE room_rosters (
    school_code text NOT NULL,
    room_id text NOT NULL,
    -- Raised by every change to the room's roster or timetable; what the room
    -- holds is the version of the last push it accepted.
    version bigint NOT NULL DEFAULT 1 CHECK (version > 0),
    -- The timetable in the TOML form of the agent's [schedule] section; empty
    -- leaves the room's own timetable as it is.
    timetable_toml text NOT NULL DEFAULT '',
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_code, room_id)
);

CREATE TABLE roster_pupils (
    school_code text NOT NULL,
    room_id text NOT NULL,
    -- The 12-digit personal ID (mã định danh).
    personal_id text NOT NULL CHECK (personal_id ~ '^[0-9]{12}$'),
    full_name text NOT NULL,
    class_name text NOT NULL,
    face_consent boolean NOT NULL DEFAULT false,
    learning_data_consent boolean NOT NULL DEFAULT false,
    -- The day a consent was recorded; required by the room when a consent is true.
    consent_date date,
    PRIMARY KEY (school_code, room_id, personal_id)
);

CREATE TABLE roster_teachers (
    school_code text NOT NULL,
    room_id text NOT NULL,
    personal_id text NOT NULL CHECK (personal_id ~ '^[0-9]{12}$'),
    full_name text NOT NULL,
    PRIMARY KEY (school_code, room_id, personal_id)
);

-- One row per push a room answered: accepted (with what it holds now) or refused (why).
CREATE TABLE roster_deliveries (
    school_code text NOT NULL,
    room_id text NOT NULL,
    version bigint NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now(),
    -- How the room was linked: 'pull' or 'dial_in'.
    link text NOT NULL,
    accepted boolean NOT NULL,
    pupils integer,
    teachers integer,
    refusal text,
    PRIMARY KEY (school_code, room_id, version)
);

-- A change to a room's roster rows raises its version (creating its
-- room_rosters row at version 1 when it has none).
CREATE FUNCTION roster_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    INSERT INTO room_rosters AS r (school_code, room_id)
    VALUES (changed.school_code, changed.room_id)
    ON CONFLICT (school_code, room_id)
    DO UPDATE SET version = r.version + 1, changed_at = now();
    IF TG_OP = 'UPDATE' AND (OLD.school_code, OLD.room_id) <> (NEW.school_code, NEW.room_id) THEN
        UPDATE room_rosters SET version = version + 1, changed_at = now()
        WHERE school_code = OLD.school_code AND room_id = OLD.room_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER roster_pupils_changed AFTER INSERT OR UPDATE OR DELETE ON roster_pupils
    FOR EACH ROW EXECUTE FUNCTION roster_changed();
CREATE TRIGGER roster_teachers_changed AFTER INSERT OR UPDATE OR DELETE ON roster_teachers
    FOR EACH ROW EXECUTE FUNCTION roster_changed();

-- A new timetable raises the version too.
CREATE FUNCTION timetable_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timetable_toml IS DISTINCT FROM OLD.timetable_toml AND NEW.version = OLD.version THEN
        NEW.version := OLD.version + 1;
        NEW.changed_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER room_rosters_timetable_changed BEFORE UPDATE ON room_rosters
    FOR EACH ROW EXECUTE FUNCTION timetable_changed();
