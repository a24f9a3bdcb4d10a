//! The pupils' hand-ins in the database and their files in the data
//! directory's hand-ins area: recorded with their outbox event in one
//! transaction, listed per lesson, bounded in number, and erased with their
//! pupil.
//!
//! # Design
//! - The files live in `<data_dir>/hand-ins/` (directory 0700, files 0600),
//!   named by the hand-in's id, beside the database rather than in the
//!   content store: tablets read the whole content store, and a pupil's work
//!   is for the teacher only. The store knows the directory, so every path
//!   that erases rows (a pupil's erasure, a roster that removes the pupil,
//!   the retention bound) deletes the files in the same call.
//! - Files are written before the row: a row always has its file, and a file
//!   whose row did not commit is deleted by the caller at once.
//! - Erasure deletes the rows and the files inside the transaction that
//!   records it: once the call returns, nothing of the pupil's work is left,
//!   even if the commit then failed (the rows would only name missing files).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction, params};

use super::outbox::NewEvent;
use super::{Store, StoreError};
use crate::proto;

/// The name of the hand-ins area in the data directory.
pub const HAND_IN_DIR: &str = "hand-ins";

/// What a pupil handed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandInKind {
    Photo,
    Drawing,
    Text,
}

impl HandInKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HandInKind::Photo => "photo",
            HandInKind::Drawing => "drawing",
            HandInKind::Text => "text",
        }
    }

    fn parse(text: &str) -> HandInKind {
        match text {
            "photo" => HandInKind::Photo,
            "drawing" => HandInKind::Drawing,
            _ => HandInKind::Text,
        }
    }

    /// Photos and drawings are kept as JPEG with a thumbnail; texts as UTF-8.
    pub fn is_image(self) -> bool {
        self != HandInKind::Text
    }
}

/// One hand-in's row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HandIn {
    pub id: String,
    pub lesson_id: String,
    pub tablet_id: String,
    pub personal_id: String,
    pub kind: HandInKind,
    pub media_type: String,
    pub size_bytes: u64,
    #[serde(serialize_with = "as_hex")]
    pub sha256: [u8; 32],
    pub handed_in_at_ms: i64,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

/// A hand-in as the panel lists it, with the names of who handed it in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedHandIn {
    #[serde(flatten)]
    pub hand_in: HandIn,
    pub pupil_full_name: Option<String>,
    pub tablet_name: Option<String>,
}

/// The files of one hand-in, by their role.
pub fn file_path(dir: &Path, id: &str, kind: HandInKind) -> PathBuf {
    dir.join(if kind.is_image() {
        format!("{id}.jpg")
    } else {
        format!("{id}.txt")
    })
}

pub fn thumbnail_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.thumb.jpg"))
}

/// Deletes every file of the hand-in `id`; a file already gone is no error.
fn delete_files(dir: &Path, id: &str) -> io::Result<()> {
    for path in [
        file_path(dir, id, HandInKind::Photo),
        file_path(dir, id, HandInKind::Text),
        thumbnail_path(dir, id),
    ] {
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` privately (0600) and durably: a temporary file,
/// synced, renamed into place.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("partial");
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn hand_in_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<HandIn> {
    let sha: Vec<u8> = row.get(7)?;
    Ok(HandIn {
        id: row.get(0)?,
        lesson_id: row.get(1)?,
        tablet_id: row.get(2)?,
        personal_id: row.get(3)?,
        kind: HandInKind::parse(&row.get::<_, String>(4)?),
        media_type: row.get(5)?,
        size_bytes: row.get::<_, i64>(6)? as u64,
        sha256: sha.try_into().unwrap_or([0; 32]),
        handed_in_at_ms: row.get(8)?,
    })
}

const COLUMNS: &str = "h.id, h.lesson_id, h.tablet_id, h.personal_id, h.kind, h.media_type, h.size_bytes, h.sha256, h.handed_in_at_ms";

/// Deletes a pupil's hand-ins, rows and files, inside the caller's
/// transaction; returns the erasure to record for the hub (count 0 when
/// there was nothing).
pub(super) fn erase_hand_ins_in(
    tx: &Transaction<'_>,
    dir: &Path,
    personal_id: &str,
    reason: &str,
) -> rusqlite::Result<proto::Erasure> {
    let ids: Vec<String> = tx
        .prepare("SELECT id FROM hand_ins WHERE personal_id = ?1")?
        .query_map([personal_id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.execute("DELETE FROM hand_ins WHERE personal_id = ?1", [personal_id])?;
    for id in &ids {
        delete_files(dir, id).map_err(|err| {
            rusqlite::Error::ToSqlConversionFailure(Box::new(io::Error::new(
                err.kind(),
                format!("cannot delete the hand-in {id}'s file: {err}"),
            )))
        })?;
    }
    Ok(proto::Erasure {
        personal_id: personal_id.to_owned(),
        what: "hand_ins".to_owned(),
        count: ids.len() as u32,
        reason: reason.to_owned(),
    })
}

impl Store {
    /// Where the hand-ins area is: `<data_dir>/hand-ins`.
    pub(super) fn hand_in_area(&self) -> PathBuf {
        self.path()
            .parent()
            .unwrap_or(Path::new("."))
            .join(HAND_IN_DIR)
    }

    /// The hand-ins area, made private (0700) if missing.
    pub fn hand_in_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.hand_in_area();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| StoreError::DataDir {
                path: dir.clone(),
                source,
            })?;
        Ok(dir)
    }

    /// Records a hand-in whose files are already written: its row and its
    /// outbox event (`event`) in one transaction; then keeps only the newest
    /// `kept` hand-ins, deleting the rows and files of older ones. Returns how
    /// many old hand-ins were deleted.
    pub fn record_hand_in(
        &self,
        hand_in: &HandIn,
        event: proto::HandIn,
        kept: u32,
    ) -> Result<usize, StoreError> {
        let dir = self.hand_in_dir()?;
        let occurred_at = Timestamp::from_millisecond(hand_in.handed_in_at_ms)
            .unwrap_or_else(|_| self.clock().now());
        let (stored, old) = self.write(|tx| {
            tx.execute(
                "INSERT INTO hand_ins (id, lesson_id, tablet_id, personal_id, kind, media_type, size_bytes, sha256, handed_in_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    hand_in.id,
                    hand_in.lesson_id,
                    hand_in.tablet_id,
                    hand_in.personal_id,
                    hand_in.kind.as_str(),
                    hand_in.media_type,
                    hand_in.size_bytes as i64,
                    hand_in.sha256.as_slice(),
                    hand_in.handed_in_at_ms
                ],
            )?;
            let stored = self.insert_events(tx, vec![NewEvent::new(occurred_at, event)])?;
            let old: Vec<String> = tx
                .prepare(
                    "SELECT id FROM hand_ins ORDER BY handed_in_at_ms DESC, id DESC LIMIT -1 OFFSET ?1",
                )?
                .query_map([i64::from(kept)], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in &old {
                tx.execute("DELETE FROM hand_ins WHERE id = ?1", [id])?;
            }
            Ok((stored, old))
        })?;
        self.announce_commit(&stored);
        for id in &old {
            if let Err(err) = delete_files(&dir, id) {
                tracing::warn!(%err, hand_in = %id, "cannot delete an old hand-in's files");
            }
        }
        if !old.is_empty() {
            tracing::info!(
                deleted = old.len(),
                kept,
                "oldest hand-ins deleted to keep tablets.hand_ins_kept"
            );
        }
        Ok(old.len())
    }

    /// One hand-in, if it is kept.
    pub fn hand_in(&self, id: &str) -> Result<Option<HandIn>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM hand_ins h WHERE h.id = ?1"),
                [id],
                hand_in_from_row,
            )
            .optional()
        })
    }

    /// The hand-ins of a lesson, oldest first, with the pupil's and tablet's names.
    pub fn hand_ins_of_lesson(&self, lesson_id: &str) -> Result<Vec<ListedHandIn>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS}, p.full_name, t.name FROM hand_ins h
                 LEFT JOIN pupils p ON p.personal_id = h.personal_id
                 LEFT JOIN tablets t ON t.tablet_id = h.tablet_id
                 WHERE h.lesson_id = ?1 ORDER BY h.handed_in_at_ms, h.id"
            ))?
            .query_map([lesson_id], |row| {
                Ok(ListedHandIn {
                    hand_in: hand_in_from_row(row)?,
                    pupil_full_name: row.get(9)?,
                    tablet_name: row.get(10)?,
                })
            })?
            .collect()
        })
    }

    /// Erases every hand-in of a pupil, rows and files, and records the erasure
    /// for the hub, in one transaction; returns how many were erased.
    pub fn erase_hand_ins(&self, personal_id: &str, reason: &str) -> Result<usize, StoreError> {
        let dir = self.hand_in_dir()?;
        let occurred_at = self.clock().now();
        let (count, stored) = self.write(|tx| {
            let erasure = erase_hand_ins_in(tx, &dir, personal_id, reason)?;
            let count = erasure.count as usize;
            let stored = if count > 0 {
                self.insert_events(tx, vec![NewEvent::new(occurred_at, erasure)])?
            } else {
                Vec::new()
            };
            Ok((count, stored))
        })?;
        self.announce_commit(&stored);
        tracing::info!(count, "a pupil's hand-ins were erased");
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use std::os::unix::fs::PermissionsExt;

    fn hand_in(id: &str, personal_id: &str, at_ms: i64) -> HandIn {
        HandIn {
            id: id.to_owned(),
            lesson_id: "2026-09-07/Sáng/1".to_owned(),
            tablet_id: "tab-1".to_owned(),
            personal_id: personal_id.to_owned(),
            kind: HandInKind::Text,
            media_type: "text/plain; charset=utf-8".to_owned(),
            size_bytes: 3,
            sha256: [7; 32],
            handed_in_at_ms: at_ms,
        }
    }

    fn write_file(store: &Store, id: &str) -> PathBuf {
        let path = file_path(&store.hand_in_dir().unwrap(), id, HandInKind::Text);
        write_private(&path, b"bai").unwrap();
        path
    }

    #[test]
    fn the_oldest_hand_ins_beyond_the_bound_are_deleted_with_their_files() {
        let (_dir, _clock, store) = testing::store();
        let first = write_file(&store, "a");
        store
            .record_hand_in(&hand_in("a", "010206000001", 1), Default::default(), 2)
            .unwrap();
        write_file(&store, "b");
        store
            .record_hand_in(&hand_in("b", "010206000001", 2), Default::default(), 2)
            .unwrap();
        assert!(first.exists());
        write_file(&store, "c");
        let deleted = store
            .record_hand_in(&hand_in("c", "010206000002", 3), Default::default(), 2)
            .unwrap();
        assert_eq!(deleted, 1);
        assert!(!first.exists(), "the oldest file is gone");
        assert_eq!(store.hand_in("a").unwrap(), None);
        let listed = store.hand_ins_of_lesson("2026-09-07/Sáng/1").unwrap();
        let ids: Vec<&str> = listed.iter().map(|h| h.hand_in.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        let mode = fs::metadata(store.hand_in_dir().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let mode = fs::metadata(write_file(&store, "d"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn erasing_a_pupil_deletes_their_rows_and_files_only() {
        let (_dir, _clock, store) = testing::store();
        let theirs = write_file(&store, "a");
        store
            .record_hand_in(&hand_in("a", "010206000001", 1), Default::default(), 10)
            .unwrap();
        let others = write_file(&store, "b");
        store
            .record_hand_in(&hand_in("b", "010206000002", 2), Default::default(), 10)
            .unwrap();
        assert_eq!(
            store
                .erase_hand_ins("010206000001", "parent's request")
                .unwrap(),
            1
        );
        assert!(!theirs.exists());
        assert!(others.exists());
        assert_eq!(store.hand_in("a").unwrap(), None);
        assert!(store.hand_in("b").unwrap().is_some());
        assert_eq!(store.erase_hand_ins("010206000001", "again").unwrap(), 0);
    }
}
