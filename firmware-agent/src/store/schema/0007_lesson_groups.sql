-- Version 7: the teacher's groups of tablets, kept from lesson to lesson.

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
