//! Face templates and roll-call marks in the database.
//!
//! Templates are embeddings only, never photos. Erasing a pupil's templates and
//! recording the erasure for the hub happen in one transaction, as do a mark's
//! row and its outbox event; a mark by face is written only for a pupil who, at
//! its commit, still has templates and face consent.

use std::collections::HashSet;

use jiff::Timestamp;
use rusqlite::{Connection, Transaction, params};

use super::outbox::{NewEvent, StoredEvent};
use super::{Store, StoreError};
use crate::attendance::embed::Embedding;
use crate::proto::event::Payload;
use crate::proto::{MarkSource, MarkStatus};
use crate::roster::PersonalId;

impl Store {
    /// Stores templates of one pupil, made by the model with hash `model_sha256`.
    pub fn add_face_templates(
        &self,
        personal_id: &PersonalId,
        templates: &[Embedding],
        model_sha256: &str,
    ) -> Result<usize, StoreError> {
        let now = self.clock().now().as_millisecond();
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO face_templates (personal_id, embedding, model_sha256, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for template in templates {
                insert.execute(params![personal_id.as_str(), template.to_bytes(), model_sha256, now])?;
            }
            Ok(templates.len())
        })
    }

    /// The templates of the pupils of `class_name` who still have face consent,
    /// made by the model with hash `model_sha256`.
    pub fn face_templates_of_class(
        &self,
        class_name: &str,
        model_sha256: &str,
    ) -> Result<Vec<(PersonalId, Embedding)>, StoreError> {
        self.read(|conn| templates_of_class(conn, class_name, model_sha256))
    }

    /// The class as the roll call follows it, read at one instant: see [`ClassReading`].
    /// `roll_call_id` names the roll call whose stored face marks to read, if one is open.
    pub fn class_reading(
        &self,
        class_name: &str,
        model_sha256: &str,
        roll_call_id: Option<&str>,
    ) -> Result<ClassReading, StoreError> {
        self.read(|conn| {
            // One read transaction: the generation names exactly the rows read with it.
            let snapshot = conn.unchecked_transaction()?;
            let generation = super::people_generation(&snapshot)?;
            let pupils = super::roster::pupils_of_class(&snapshot, class_name)?.into_iter().map(|p| p.personal_id).collect();
            let templates = templates_of_class(&snapshot, class_name, model_sha256)?;
            let face_marks = match roll_call_id {
                Some(roll_call) => snapshot
                    .prepare("SELECT personal_id FROM attendance_marks WHERE session_id = ?1 AND source = 'face'")?
                    .query_map([roll_call], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                None => HashSet::new(),
            };
            Ok(ClassReading { generation, pupils, templates, face_marks })
        })
    }

    /// How many templates a pupil has.
    pub fn face_template_count(&self, personal_id: &PersonalId) -> Result<usize, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT count(*) FROM face_templates WHERE personal_id = ?1",
                [personal_id.as_str()],
                |row| row.get::<_, i64>(0),
            )
        })
        .map(|count| count as usize)
    }

    /// Erases every template of a pupil and records the erasure for the hub, in one transaction.
    pub fn forget_faces(
        &self,
        personal_id: &PersonalId,
        reason: &str,
    ) -> Result<usize, StoreError> {
        let occurred_at = self.clock().now();
        let stored = self.write(|tx| {
            let erasure = super::roster::erase_face_templates(tx, personal_id.as_str(), reason)?;
            let count = erasure.count as usize;
            let stored = self.insert_events(tx, vec![NewEvent::new(occurred_at, erasure)])?;
            Ok((count, stored))
        })?;
        self.announce_commit(&stored.1);
        Ok(stored.0)
    }

    /// Records what a roll call decided, inside the recorder's transaction: each
    /// mark's row (a later one for the same session and pupil replaces it) and
    /// every payload as an outbox event. A mark by face is left out when its
    /// pupil, at this commit, has no template or no face consent: a pupil erased
    /// a moment before is never marked by face again, whichever process erased
    /// them (the running roll call takes the mark back when it next reads its
    /// class, through [`Store::class_reading`]'s `face_marks`).
    pub(super) fn insert_roll_call(
        &self,
        tx: &Transaction<'_>,
        occurred_at: Timestamp,
        payloads: Vec<Payload>,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO attendance_marks (session_id, lesson_id, personal_id, status, source, best_similarity, marked_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (session_id, personal_id) DO UPDATE SET status = excluded.status, source = excluded.source,
               best_similarity = excluded.best_similarity, marked_at_ms = excluded.marked_at_ms",
        )?;
        let mut kept = Vec::with_capacity(payloads.len());
        for payload in payloads {
            if let Payload::AttendanceMark(mark) = &payload {
                if mark.source() == MarkSource::Face && !recognisable(tx, &mark.personal_id)? {
                    tracing::warn!(personal_id = %mark.personal_id, "a face mark was left out: the pupil's face templates were erased as it was made");
                    continue;
                }
                upsert.execute(params![
                    mark.session_id,
                    mark.lesson_id,
                    mark.personal_id,
                    status_name(mark.status()),
                    source_name(mark.source()),
                    f64::from(mark.best_similarity),
                    occurred_at.as_millisecond()
                ])?;
            }
            kept.push(payload);
        }
        self.insert_events(
            tx,
            kept.into_iter()
                .map(|p| NewEvent::new(occurred_at, p))
                .collect(),
        )
    }

    /// The marks of a roll call as (personal ID, status, source), by personal ID.
    pub fn attendance_marks(
        &self,
        roll_call_id: &str,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        self.read(|conn| -> rusqlite::Result<Vec<(String, String, String)>> {
            let mut stmt = conn.prepare(
                "SELECT personal_id, status, source FROM attendance_marks WHERE session_id = ?1 ORDER BY personal_id",
            )?;
            stmt.query_map([roll_call_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
        })
    }
}

/// The people of a class as one reading of the database, for the running roll call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassReading {
    /// [`Store::people_generation`] when read: any later change moves it.
    pub generation: i64,
    /// Every pupil of the class, by name.
    pub pupils: Vec<PersonalId>,
    /// The templates of the pupils with face consent, of the model asked for.
    pub templates: Vec<(PersonalId, Embedding)>,
    /// The pupils the open roll call has a stored mark by face for.
    pub face_marks: HashSet<String>,
}

fn templates_of_class(
    conn: &Connection,
    class_name: &str,
    model_sha256: &str,
) -> rusqlite::Result<Vec<(PersonalId, Embedding)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.personal_id, t.embedding FROM face_templates t JOIN pupils p USING (personal_id)
         WHERE p.class_name = ?1 AND p.face_consent = 1 AND t.model_sha256 = ?2 ORDER BY t.id",
    )?;
    let rows = stmt.query_map(params![class_name, model_sha256], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    let mut templates = Vec::new();
    for row in rows {
        let (id, bytes) = row?;
        if let (Ok(id), Some(embedding)) = (id.parse(), Embedding::from_bytes(&bytes)) {
            templates.push((id, embedding));
        }
    }
    Ok(templates)
}

/// Whether the camera may mark this pupil: face consent and a template.
fn recognisable(tx: &Transaction<'_>, personal_id: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM face_templates t JOIN pupils p USING (personal_id)
         WHERE t.personal_id = ?1 AND p.face_consent = 1)",
    )?
    .query_row([personal_id], |row| row.get(0))
}

/// One mark as the school office reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRow {
    pub lesson_id: String,
    pub class_name: String,
    pub personal_id: String,
    pub full_name: String,
    /// `present`, `late`, `absent` or `excused`.
    pub status: String,
    /// `face`, `teacher` or `window_closed`.
    pub source: String,
    pub marked_at: Timestamp,
}

impl Store {
    /// Every mark recorded in `[from, to)`, by lesson, class and name.
    pub fn marks_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<MarkRow>, StoreError> {
        self.read(|conn| -> rusqlite::Result<Vec<MarkRow>> {
            let mut stmt = conn.prepare(
                "SELECT m.lesson_id, coalesce(p.class_name, ''), m.personal_id, coalesce(p.full_name, ''), m.status, m.source, m.marked_at_ms
                 FROM attendance_marks m LEFT JOIN pupils p ON p.personal_id = m.personal_id
                 WHERE m.marked_at_ms >= ?1 AND m.marked_at_ms < ?2
                 ORDER BY m.lesson_id, p.class_name, p.full_name, m.personal_id",
            )?;
            stmt.query_map(params![from.as_millisecond(), to.as_millisecond()], |row| {
                Ok(MarkRow {
                    lesson_id: row.get(0)?,
                    class_name: row.get(1)?,
                    personal_id: row.get(2)?,
                    full_name: row.get(3)?,
                    status: row.get(4)?,
                    source: row.get(5)?,
                    marked_at: Timestamp::from_millisecond(row.get(6)?).unwrap_or(Timestamp::UNIX_EPOCH),
                })
            })?
            .collect()
        })
    }
}

fn status_name(status: MarkStatus) -> &'static str {
    match status {
        MarkStatus::Present | MarkStatus::Unspecified => "present",
        MarkStatus::Late => "late",
        MarkStatus::Absent => "absent",
        MarkStatus::Excused => "excused",
    }
}

fn source_name(source: MarkSource) -> &'static str {
    match source {
        MarkSource::Face | MarkSource::Unspecified => "face",
        MarkSource::Teacher => "teacher",
        MarkSource::WindowClosed => "window_closed",
    }
}

#[cfg(test)]
mod tests {
    use crate::attendance::embed::{DIMENSIONS, Embedding};
    use crate::proto::event::Payload;
    use crate::roster::parse_csv;
    use crate::store::testing;

    #[test]
    fn templates_are_kept_per_class_and_forgetting_records_an_erasure() {
        let (_dir, _clock, store) = testing::store();
        let csv = "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n\
                   pupil,001206001234,Nguyễn Thị Hoa,6A1,yes,yes,2026-08-20\n";
        store
            .import_roster(&parse_csv(csv.as_bytes()).unwrap())
            .unwrap();
        let id = "001206001234".parse().unwrap();
        let template = Embedding(vec![1.0 / (DIMENSIONS as f32).sqrt(); DIMENSIONS]);
        store
            .add_face_templates(&id, &[template.clone(), template.clone()], "model")
            .unwrap();
        assert_eq!(
            store.face_templates_of_class("6A1", "model").unwrap().len(),
            2
        );
        assert_eq!(
            store
                .face_templates_of_class("6A1", "another model")
                .unwrap()
                .len(),
            0
        );
        assert_eq!(store.forget_faces(&id, "parent's request").unwrap(), 2);
        assert_eq!(store.face_template_count(&id).unwrap(), 0);
        let events = crate::store::outbox::read_after(&store.reader().unwrap(), 0, 10).unwrap();
        let Some(Payload::Erasure(erasure)) = events.last().unwrap().payload().unwrap() else {
            panic!("an erasure")
        };
        assert_eq!(
            (erasure.personal_id.as_str(), erasure.count),
            ("001206001234", 2)
        );
    }
}
