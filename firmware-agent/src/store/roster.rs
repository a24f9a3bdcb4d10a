//! Roster rows in the database: written in one transaction, read by whoever
//! needs to know the room's people.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Store, StoreError};
use crate::roster::{PersonalId, Pupil, Roster, Teacher};

/// What an import changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub pupils: usize,
    pub teachers: usize,
    pub classes: usize,
}

impl Store {
    /// Adds or updates every person of `roster` in one transaction. People not in
    /// the roster are kept: a file for one class does not erase the others.
    pub fn import_roster(&self, roster: &Roster) -> Result<ImportSummary, StoreError> {
        let now = self.clock().now().as_millisecond();
        self.write(|tx| insert_roster(tx, roster, now))
    }

    /// One pupil, if the roster has them.
    pub fn pupil(&self, id: &PersonalId) -> Result<Option<Pupil>, StoreError> {
        self.read(|conn| {
            conn.query_row(
            "SELECT personal_id, full_name, class_name, face_consent, learning_data_consent, consent_date FROM pupils WHERE personal_id = ?1",
            [id.as_str()],
            pupil_from_row,
            )
            .optional()
        })
    }

    /// Every pupil and teacher, pupils by class and name.
    pub fn roster(&self) -> Result<Roster, StoreError> {
        self.read(|conn| -> rusqlite::Result<Roster> {
            let pupils = conn
                .prepare(
                    "SELECT personal_id, full_name, class_name, face_consent, learning_data_consent, consent_date
                     FROM pupils ORDER BY class_name, full_name",
                )?
                .query_map([], pupil_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let teachers = conn
                .prepare("SELECT personal_id, full_name FROM teachers ORDER BY full_name")?
                .query_map([], |row| {
                    let id: String = row.get(0)?;
                    Ok(Teacher { personal_id: parse_id(0, id)?, full_name: row.get(1)? })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Roster { pupils, teachers })
        })
    }

    /// The pupils of a class, by name.
    pub fn pupils_of_class(&self, class_name: &str) -> Result<Vec<Pupil>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare(
                "SELECT personal_id, full_name, class_name, face_consent, learning_data_consent, consent_date
                 FROM pupils WHERE class_name = ?1 ORDER BY full_name",
            )
            .map_err(|err| StoreError::from_sqlite(self.path(), err))?;
        let rows = stmt.query_map([class_name], pupil_from_row).and_then(Iterator::collect);
        rows.map_err(|err| StoreError::from_sqlite(self.path(), err))
    }
}

fn parse_id(column: usize, id: String) -> rusqlite::Result<PersonalId> {
    id.parse().map_err(|err| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(err)))
}

/// Adds or updates every person of `roster` inside the caller's transaction.
pub(super) fn insert_roster(tx: &Transaction<'_>, roster: &Roster, now_ms: i64) -> rusqlite::Result<ImportSummary> {
    let mut classes = std::collections::BTreeSet::new();
    let mut add_class = tx.prepare_cached("INSERT OR IGNORE INTO classes (name) VALUES (?1)")?;
    let mut upsert_pupil = tx.prepare_cached(
        "INSERT INTO pupils (personal_id, full_name, class_name, face_consent, learning_data_consent, consent_date, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (personal_id) DO UPDATE SET full_name = excluded.full_name, class_name = excluded.class_name,
           face_consent = excluded.face_consent, learning_data_consent = excluded.learning_data_consent,
           consent_date = excluded.consent_date, updated_at_ms = excluded.updated_at_ms",
    )?;
    for pupil in &roster.pupils {
        add_class.execute([&pupil.class_name])?;
        classes.insert(pupil.class_name.as_str());
        upsert_pupil.execute(params![
            pupil.personal_id.as_str(),
            pupil.full_name,
            pupil.class_name,
            pupil.face_consent,
            pupil.learning_data_consent,
            pupil.consent_date.map(|d| d.to_string()),
            now_ms
        ])?;
    }
    let mut upsert_teacher = tx.prepare_cached(
        "INSERT INTO teachers (personal_id, full_name, updated_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (personal_id) DO UPDATE SET full_name = excluded.full_name, updated_at_ms = excluded.updated_at_ms",
    )?;
    for teacher in &roster.teachers {
        upsert_teacher.execute(params![teacher.personal_id.as_str(), teacher.full_name, now_ms])?;
    }
    Ok(ImportSummary { pupils: roster.pupils.len(), teachers: roster.teachers.len(), classes: classes.len() })
}

fn pupil_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Pupil> {
    let id: String = row.get(0)?;
    let date: Option<String> = row.get(5)?;
    Ok(Pupil {
        personal_id: parse_id(0, id)?,
        full_name: row.get(1)?,
        class_name: row.get(2)?,
        face_consent: row.get(3)?,
        learning_data_consent: row.get(4)?,
        consent_date: date.and_then(|d| d.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use crate::roster::parse_csv;
    use crate::store::testing;

    #[test]
    fn import_upserts_and_reads_back() {
        let (_dir, _clock, store) = testing::store();
        let csv = "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n\
                   pupil,010206001234,Nguyễn Thị Hoa,6A1,yes,yes,2026-08-20\n\
                   pupil,010206001235,Lò Văn Páo,6A1,no,no,\n\
                   teacher,010186004321,Trần Văn Nam,,no,no,\n";
        let summary = store.import_roster(&parse_csv(csv.as_bytes()).unwrap()).unwrap();
        assert_eq!((summary.pupils, summary.teachers, summary.classes), (2, 1, 1));
        let renamed = csv.replace("Lò Văn Páo,6A1", "Lò Văn Páo,6A2");
        store.import_roster(&parse_csv(renamed.as_bytes()).unwrap()).unwrap();
        assert_eq!(store.pupils_of_class("6A1").unwrap().len(), 1);
        let moved = store.pupil(&"010206001235".parse().unwrap()).unwrap().unwrap();
        assert_eq!(moved.class_name, "6A2");
    }
}
