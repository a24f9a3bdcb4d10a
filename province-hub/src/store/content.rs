//! What each room holds of the province's learning content
//! (`schema/0005_content.sql`): the version of each file it accepted, and the
//! last version it refused, so the hub pushes only what the room lacks.
//!
//! # Design
//! A row per room and name, updated in place: the accepted version and the
//! last refusal live side by side, so a room that refused a file and later
//! accepted a corrected one shows both. A refused version is remembered by its
//! SHA-256 and not pushed again; the file changing in the content directory
//! makes a new version, which is.

use std::collections::HashMap;

use deadpool_postgres::Object;

use super::StoreError;
use crate::config::RoomKey;

/// What the room is known to have answered for one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    /// The SHA-256 of the version the room accepted last.
    pub held: Option<[u8; 32]>,
    /// The SHA-256 of the version the room refused last.
    pub refused: Option<[u8; 32]>,
}

impl Answered {
    /// Whether the version `sha256` needs no push: the room holds it, or refused it.
    pub fn settled(&self, sha256: &[u8; 32]) -> bool {
        self.held.as_ref() == Some(sha256) || self.refused.as_ref() == Some(sha256)
    }
}

fn digest(bytes: Option<Vec<u8>>) -> Option<[u8; 32]> {
    bytes.and_then(|bytes| bytes.try_into().ok())
}

/// Every name the room answered a push of, with what it answered.
pub async fn answered(
    db: &Object,
    room: &RoomKey,
) -> Result<HashMap<String, Answered>, StoreError> {
    let rows = db
        .query(
            "SELECT name, sha256, refused_sha256 FROM content_deliveries \
             WHERE school_code = $1 AND room_id = $2",
            &[&room.school_code, &room.room_id],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let answered = Answered {
                held: digest(row.get(1)),
                refused: digest(row.get(2)),
            };
            (row.get(0), answered)
        })
        .collect())
}

/// The room stored `name` at `sha256` (`size` bytes), pushed over a `link` link.
pub async fn record_delivered(
    db: &Object,
    room: &RoomKey,
    name: &str,
    sha256: &[u8; 32],
    size: u64,
    link: &str,
) -> Result<(), StoreError> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    db.execute(
        "INSERT INTO content_deliveries \
         (school_code, room_id, name, sha256, size, delivered_at, link) \
         VALUES ($1, $2, $3, $4, $5, now(), $6) \
         ON CONFLICT (school_code, room_id, name) DO UPDATE SET sha256 = EXCLUDED.sha256, \
         size = EXCLUDED.size, delivered_at = EXCLUDED.delivered_at, link = EXCLUDED.link",
        &[
            &room.school_code,
            &room.room_id,
            &name,
            &sha256.as_slice(),
            &size,
            &link,
        ],
    )
    .await?;
    Ok(())
}

/// The room refused `name`, saying `refusal`: for good when `sha256` names
/// the version refused (it is not pushed again), for now when `None` (the
/// room could not store it; it is pushed again).
pub async fn record_refused(
    db: &Object,
    room: &RoomKey,
    name: &str,
    sha256: Option<&[u8; 32]>,
    refusal: &str,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO content_deliveries \
         (school_code, room_id, name, refused_sha256, refused_at, refusal) \
         VALUES ($1, $2, $3, $4, now(), $5) \
         ON CONFLICT (school_code, room_id, name) DO UPDATE SET \
         refused_sha256 = EXCLUDED.refused_sha256, refused_at = EXCLUDED.refused_at, \
         refusal = EXCLUDED.refusal",
        &[
            &room.school_code,
            &room.room_id,
            &name,
            &sha256.map(|sha256| sha256.as_slice()),
            &refusal,
        ],
    )
    .await?;
    Ok(())
}
