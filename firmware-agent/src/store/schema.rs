//! The database schema and its numbered upgrades.
//!
//! # Design
//! `schema/current.sql` is the whole schema as a new database gets it, the one
//! place to read what is stored. `schema/NNNN_*.sql` are the steps that bring a
//! database of version NNNN-1 to version NNNN. SQLite's `user_version` holds the
//! version. Each upgrade runs in its own transaction, so a crash mid-upgrade
//! leaves the previous version intact. A database newer than this build knows is
//! refused rather than guessed at.

use rusqlite::{Connection, Transaction};

const CURRENT: &str = include_str!("schema/current.sql");

/// Upgrade `i` brings a database from version `i` to version `i + 1`.
const UPGRADES: &[&str] = &[
    include_str!("schema/0001_foundation.sql"),
    include_str!("schema/0002_sync.sql"),
    include_str!("schema/0003_tablets.sql"),
    include_str!("schema/0004_actuators.sql"),
    include_str!("schema/0005_attendance.sql"),
    include_str!("schema/0006_identity_and_changes.sql"),
    include_str!("schema/0007_lesson_groups.sql"),
    include_str!("schema/0008_hand_ins.sql"),
    include_str!("schema/0009_lesson_answers.sql"),
];

/// The schema version this build writes.
pub const VERSION: i64 = UPGRADES.len() as i64;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the database has schema version {found}, newer than this agent knows ({VERSION})")]
    TooNew { found: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Creates the schema in an empty database, or upgrades an older one.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let found = version(conn)?;
    if found > VERSION {
        return Err(SchemaError::TooNew { found });
    }
    if found == VERSION {
        return Ok(());
    }
    if found == 0 && is_empty(conn)? {
        let tx = conn.transaction()?;
        tx.execute_batch(CURRENT)?;
        set_version(&tx, VERSION)?;
        tx.commit()?;
        return Ok(());
    }
    upgrade(conn, VERSION)
}

/// Applies the upgrades that bring the database to `target`, one transaction each.
pub fn upgrade(conn: &mut Connection, target: i64) -> Result<(), SchemaError> {
    let from = version(conn)?;
    for (index, step) in UPGRADES
        .iter()
        .enumerate()
        .skip(from as usize)
        .take((target - from).max(0) as usize)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        set_version(&tx, index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "database schema upgraded");
    }
    Ok(())
}

pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn set_version(tx: &Transaction<'_>, version: i64) -> rusqlite::Result<()> {
    tx.pragma_update(None, "user_version", version)
}

fn is_empty(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) = 0 FROM sqlite_schema", [], |row| {
        row.get(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table, index and trigger with its columns, as SQLite itself reports them.
    fn describe(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        let mut objects = conn
            .prepare("SELECT type, name, tbl_name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            .unwrap();
        let rows: Vec<(String, String, String)> = objects
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (kind, name, table) in rows {
            out.push(format!("{kind} {name} on {table}"));
            let pragma = if kind == "index" {
                "index_xinfo"
            } else {
                "table_xinfo"
            };
            let mut info = conn
                .prepare(&format!("SELECT * FROM pragma_{pragma}(?1)"))
                .unwrap();
            let columns = info.column_count();
            let mut rows = info.query([&name]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let cells: Vec<String> = (0..columns)
                    .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                    .collect();
                out.push(format!("  {}", cells.join(" ")));
            }
            if kind == "table" {
                for (what, query) in [
                    ("fk", "pragma_foreign_key_list"),
                    ("idx", "pragma_index_list"),
                ] {
                    let mut stmt = conn.prepare(&format!("SELECT * FROM {query}(?1)")).unwrap();
                    let columns = stmt.column_count();
                    let mut rows = stmt.query([&name]).unwrap();
                    while let Some(row) = rows.next().unwrap() {
                        let cells: Vec<String> = (0..columns)
                            .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                            .collect();
                        out.push(format!("  {what} {}", cells.join(" ")));
                    }
                }
            }
        }
        let strict: Vec<String> = conn
            .prepare(
                "SELECT name, strict FROM pragma_table_list WHERE schema = 'main' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "{}:{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.push(format!("strict {}", strict.join(",")));
        out
    }

    #[test]
    fn every_old_version_upgrades_to_the_fresh_schema() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(version(&fresh).unwrap(), VERSION);
        let expected = describe(&fresh);
        for start in 1..=VERSION {
            let mut old = Connection::open_in_memory().unwrap();
            upgrade(&mut old, start).unwrap();
            assert_eq!(version(&old).unwrap(), start);
            migrate(&mut old).unwrap();
            assert_eq!(
                describe(&old),
                expected,
                "upgrading from version {start} differs from a fresh database"
            );
        }
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(SchemaError::TooNew { .. })
        ));
    }
}
