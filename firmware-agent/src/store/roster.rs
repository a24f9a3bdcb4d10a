//! Roster rows in the database: written in one transaction, read by whoever
//! needs to know the room's people.
//!
//! # Design
//! One rule applies a roster, whether IT staff import a CSV file or the hub
//! pushes one ([`Coverage`] is the only difference), so that a face template
//! lives exactly as long as its pupil is on the roster with face consent:
//! - Templates of pupils still on the roster with face consent are kept.
//! - In the same transaction, the templates of pupils removed from the roster
//!   (a push lists the whole room; an import removes nobody) and of every
//!   pupil without face consent (a parent withdrew it) are erased, each
//!   pupil's with an `erasure` event for the hub, as `face forget` records one.
//! - Everything the roster brings (and the timetable a push carries) is applied
//!   in that one transaction: all of it, or nothing.

use rusqlite::{OptionalExtension, Transaction, params};

use super::outbox::{NewEvent, StoredEvent};
use super::{Store, StoreError};
use crate::proto;
use crate::roster::{PersonalId, Pupil, Roster, Teacher};

/// What applying a roster changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub pupils: usize,
    pub teachers: usize,
    pub classes: usize,
    /// Pupils removed from the room (a push only).
    pub removed: usize,
    /// Pupils whose face templates were erased, each with an erasure event.
    pub erased: usize,
}

/// Whom a roster speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coverage {
    /// The whole room, as the hub pushes it: people not listed are removed.
    Whole,
    /// The people listed, as a CSV file (perhaps of one class) gives them: the others are kept.
    Listed,
}

/// Why templates are erased, as the erasure event tells the hub.
const REMOVED: &str = "removed from the roster";
const NO_CONSENT: &str = "face consent withdrawn in the roster";

/// Deletes every template of a pupil inside the caller's transaction; returns
/// the erasure to record for the hub, which counts them. The roster's rule
/// erases with it, and so does `face forget` ([`Store::forget_faces`]).
pub(super) fn erase_face_templates(
    tx: &Transaction<'_>,
    personal_id: &str,
    reason: &str,
) -> rusqlite::Result<proto::Erasure> {
    let count = tx.execute(
        "DELETE FROM face_templates WHERE personal_id = ?1",
        [personal_id],
    )?;
    Ok(proto::Erasure {
        personal_id: personal_id.to_owned(),
        what: "face_templates".to_owned(),
        count: count as u32,
        reason: reason.to_owned(),
    })
}

impl Store {
    /// Adds or updates every person of `roster` in one transaction. People not in
    /// the roster are kept: a file for one class does not erase the others. The
    /// templates of pupils without face consent are erased (see the module's rule).
    pub fn import_roster(&self, roster: &Roster) -> Result<ImportSummary, StoreError> {
        let now = self.clock().now().as_millisecond();
        let (summary, erasures) =
            self.write(|tx| self.apply_roster(tx, roster, Coverage::Listed, now))?;
        self.announce_commit(&erasures);
        Ok(summary)
    }

    /// Applies `roster` by the module's rule inside the caller's transaction;
    /// returns what changed and the erasure events to announce once it commits.
    pub(super) fn apply_roster(
        &self,
        tx: &Transaction<'_>,
        roster: &Roster,
        coverage: Coverage,
        now_ms: i64,
    ) -> rusqlite::Result<(ImportSummary, Vec<StoredEvent>)> {
        let mut erasures = Vec::new();
        let mut removed = 0;
        if coverage == Coverage::Whole {
            let listed: std::collections::HashSet<&str> = roster
                .pupils
                .iter()
                .map(|p| p.personal_id.as_str())
                .collect();
            let present: Vec<String> = tx
                .prepare("SELECT personal_id FROM pupils")?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in present.iter().filter(|id| !listed.contains(id.as_str())) {
                erasures.push(erase_face_templates(tx, id, REMOVED)?);
                erasures.push(super::hand_ins::erase_hand_ins_in(
                    tx,
                    &self.hand_in_area(),
                    id,
                    REMOVED,
                )?);
                tx.execute("DELETE FROM pupils WHERE personal_id = ?1", [id])?;
                removed += 1;
            }
            tx.execute("DELETE FROM teachers", [])?;
        }
        let mut summary = insert_roster(tx, roster, now_ms)?;
        let withdrawn: Vec<String> = tx
            .prepare("SELECT DISTINCT personal_id FROM face_templates JOIN pupils USING (personal_id) WHERE face_consent = 0")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in &withdrawn {
            erasures.push(erase_face_templates(tx, id, NO_CONSENT)?);
        }
        // A pupil removed without templates had nothing to erase.
        erasures.retain(|erasure| erasure.count > 0);
        if coverage == Coverage::Whole {
            tx.execute(
                "DELETE FROM classes WHERE name NOT IN (SELECT class_name FROM pupils)",
                [],
            )?;
        }
        summary.removed = removed;
        summary.erased = erasures
            .iter()
            .filter(|erasure| erasure.what == "face_templates")
            .count();
        let occurred_at = self.clock().now();
        let events = erasures
            .into_iter()
            .map(|erasure| NewEvent::new(occurred_at, erasure))
            .collect();
        Ok((summary, self.insert_events(tx, events)?))
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
        self.read(|conn| pupils_of_class(conn, class_name))
    }
}

/// The pupils of a class, by name, as `conn` sees them.
pub(super) fn pupils_of_class(
    conn: &rusqlite::Connection,
    class_name: &str,
) -> rusqlite::Result<Vec<Pupil>> {
    conn.prepare_cached(
        "SELECT personal_id, full_name, class_name, face_consent, learning_data_consent, consent_date
         FROM pupils WHERE class_name = ?1 ORDER BY full_name",
    )?
    .query_map([class_name], pupil_from_row)?
    .collect()
}

fn parse_id(column: usize, id: String) -> rusqlite::Result<PersonalId> {
    id.parse().map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            Box::new(err),
        )
    })
}

/// Adds or updates every person of `roster` inside the caller's transaction.
fn insert_roster(
    tx: &Transaction<'_>,
    roster: &Roster,
    now_ms: i64,
) -> rusqlite::Result<ImportSummary> {
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
        upsert_teacher.execute(params![
            teacher.personal_id.as_str(),
            teacher.full_name,
            now_ms
        ])?;
    }
    Ok(ImportSummary {
        pupils: roster.pupils.len(),
        teachers: roster.teachers.len(),
        classes: classes.len(),
        ..ImportSummary::default()
    })
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
        let summary = store
            .import_roster(&parse_csv(csv.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(
            (summary.pupils, summary.teachers, summary.classes),
            (2, 1, 1)
        );
        let renamed = csv.replace("Lò Văn Páo,6A1", "Lò Văn Páo,6A2");
        store
            .import_roster(&parse_csv(renamed.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(store.pupils_of_class("6A1").unwrap().len(), 1);
        let moved = store
            .pupil(&"010206001235".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(moved.class_name, "6A2");
    }

    #[test]
    fn an_import_withdrawing_face_consent_erases_that_pupil_s_templates_and_keeps_the_others() {
        use crate::attendance::embed::{DIMENSIONS, Embedding};
        use crate::proto::event::Payload;
        let (_dir, _clock, store) = testing::store();
        let header =
            "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n";
        let both = format!(
            "{header}pupil,010206001234,Nguyễn Thị Hoa,6A1,yes,yes,2026-08-20\npupil,010206001235,Lò Văn Páo,6A1,yes,no,2026-08-20\n"
        );
        store
            .import_roster(&parse_csv(both.as_bytes()).unwrap())
            .unwrap();
        let (hoa, pao) = (
            "010206001234".parse().unwrap(),
            "010206001235".parse().unwrap(),
        );
        let template = Embedding(vec![1.0 / (DIMENSIONS as f32).sqrt(); DIMENSIONS]);
        store
            .add_face_templates(&hoa, std::slice::from_ref(&template), "model")
            .unwrap();
        store
            .add_face_templates(&pao, &[template.clone(), template], "model")
            .unwrap();

        // A file of Páo alone, his parents having withdrawn consent: Hoa is not in it and keeps hers.
        let withdrawn = format!("{header}pupil,010206001235,Lò Văn Páo,6A1,no,no,\n");
        let summary = store
            .import_roster(&parse_csv(withdrawn.as_bytes()).unwrap())
            .unwrap();
        assert_eq!((summary.removed, summary.erased), (0, 1));
        assert_eq!(store.face_template_count(&pao).unwrap(), 0);
        assert_eq!(store.face_template_count(&hoa).unwrap(), 1);
        let events = crate::store::outbox::read_after(&store.reader().unwrap(), 0, 10).unwrap();
        let [event] = &events[..] else {
            panic!("one erasure: {events:?}")
        };
        let Some(Payload::Erasure(erasure)) = event.payload().unwrap() else {
            panic!("an erasure")
        };
        assert_eq!(
            (erasure.personal_id.as_str(), erasure.count),
            ("010206001235", 2)
        );
        assert_eq!(
            *store.subscribe_commits().borrow(),
            event.seq,
            "live readers are told of it"
        );
    }
}
