//! Landing the records a room carried on a USB stick: the same rows and the
//! same exactly-once rule as a pulled batch, plus the room's pinned key.
//!
//! # Design
//! One bundle is one transaction: the room's key is pinned or compared, the
//! room registered if the policy allows, every event stored by its id, and the
//! outbox's cursor moved; a refusal or a crash at any step leaves nothing.
//!
//! **How a bundle's seq range meets the cursor.** A room exports every event
//! from its acknowledged cursor to its newest, so a bundle holds every event of
//! its outbox from its first seq to its last, as a Pull would send them. The
//! outbox's row is locked (`FOR UPDATE`) and, with `cursor` the seq up to which
//! the hub holds every event:
//! - `first_seq <= cursor + 1`: the bundle follows on (or overlaps what was
//!   pulled or imported before); the cursor becomes `max(cursor, last_seq)`;
//! - `first_seq > cursor + 1`: the events between are missing (a database put
//!   back from an old backup, say); the bundle's events are stored, but the
//!   cursor stays, and the caller is told the gap. Nothing beyond the cursor is
//!   ever acknowledged.
//!
//! Events already held (pulled from the room, or in an earlier bundle) are
//! skipped by their id, so importing twice adds nothing. A pull of the same
//! room that was landing meanwhile finds the cursor moved and starts again from
//! what is stored, as with any second writer (see the module above).
//!
//! A bundle from a room the hub has never heard of is registered with the
//! bundle's outbox as its current one, or refused, as the config says; a room
//! the hub knows keeps the current outbox its pulls chose.

use tokio_postgres::Client;
use uuid::Uuid;

use super::rows::BatchRows;
use super::{OutboxPosition, StoreError, insert_rows};
use crate::config::RoomKey;
use crate::proto;

/// Events stored per statement; a bundle of any size is still one transaction.
const CHUNK: usize = 5_000;

/// What to do with a bundle from a room the hub has never heard of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownRooms {
    /// Register the room and land its records (its key is pinned).
    Register,
    /// Refuse the bundle: rooms are listed in the config, pulled or pinned first.
    Refuse,
}

/// A records bundle opened and checked, as the store lands it.
pub struct BundleToLand<'a> {
    pub room: &'a RoomKey,
    pub outbox_identity: Uuid,
    /// The room's signing key as text (`ed25519:BASE64`).
    pub room_key: &'a str,
    pub first_seq: i64,
    pub last_seq: i64,
    /// The bundle's events, in seq order.
    pub events: &'a [proto::Event],
    /// Whether the config lists the room (then it is known whatever the policy).
    pub listed: bool,
}

/// What landing a bundle did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// Events the hub did not hold before.
    pub added: u64,
    /// The outbox's cursor after the bundle: every event up to it is stored.
    pub position: OutboxPosition,
    /// The room's key was pinned by this bundle.
    pub pinned_now: bool,
    /// The room was registered by this bundle.
    pub registered_now: bool,
    /// Seqs missing between the stored cursor and the bundle's first, if any.
    pub gap: Option<(i64, i64)>,
}

/// Why a bundle was not landed.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the hub has never heard of the room {0}")]
    UnknownRoom(RoomKey),
    #[error("the room {room} is pinned to the key {pinned}")]
    KeyChanged { room: RoomKey, pinned: String },
}

impl From<tokio_postgres::Error> for LandError {
    fn from(err: tokio_postgres::Error) -> Self {
        LandError::Store(err.into())
    }
}

/// Lands `bundle` in one transaction, as the module's design says.
pub async fn land(
    client: &mut Client,
    bundle: &BundleToLand<'_>,
    unknown_rooms: UnknownRooms,
) -> Result<Landed, LandError> {
    let room = bundle.room;
    let (school, room_id) = (&room.school_code, &room.room_id);
    let tx = client.transaction().await?;
    let known = bundle.listed
        || tx
            .query_opt(
                "SELECT 1 FROM rooms WHERE school_code = $1 AND room_id = $2 \
                 UNION ALL SELECT 1 FROM room_keys WHERE school_code = $1 AND room_id = $2 LIMIT 1",
                &[school, room_id],
            )
            .await?
            .is_some();
    if !known && unknown_rooms == UnknownRooms::Refuse {
        return Err(LandError::UnknownRoom(room.clone()));
    }
    let pinned_now = tx
        .execute(
            "INSERT INTO room_keys (school_code, room_id, signing_key) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[school, room_id, &bundle.room_key],
        )
        .await?
        == 1;
    let pinned: String = tx
        .query_one(
            "SELECT signing_key FROM room_keys WHERE school_code = $1 AND room_id = $2",
            &[school, room_id],
        )
        .await?
        .get(0);
    if pinned != bundle.room_key {
        return Err(LandError::KeyChanged {
            room: room.clone(),
            pinned,
        });
    }
    let registered_now = tx
        .execute(
            "INSERT INTO rooms (school_code, room_id, current_identity) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[school, room_id, &bundle.outbox_identity],
        )
        .await?
        == 1;
    tx.execute(
        "INSERT INTO outboxes (school_code, room_id, identity, cursor) VALUES ($1, $2, $3, 0) \
         ON CONFLICT DO NOTHING",
        &[school, room_id, &bundle.outbox_identity],
    )
    .await?;
    let cursor: i64 = tx
        .query_one(
            "SELECT cursor FROM outboxes WHERE school_code = $1 AND room_id = $2 AND identity = $3 \
             FOR UPDATE",
            &[school, room_id, &bundle.outbox_identity],
        )
        .await?
        .get(0);
    let mut added = 0;
    for chunk in bundle.events.chunks(CHUNK) {
        let mut rows = BatchRows::from_events(chunk).map_err(StoreError::from)?;
        added += insert_rows(&tx, room, bundle.outbox_identity, &mut rows).await?;
    }
    let (moved_to, gap) = meet_cursor(cursor, bundle.first_seq, bundle.last_seq);
    if moved_to != cursor {
        tx.execute(
            "UPDATE outboxes SET cursor = $4, last_stored_at = now() \
             WHERE school_code = $1 AND room_id = $2 AND identity = $3",
            &[school, room_id, &bundle.outbox_identity, &moved_to],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Landed {
        added,
        position: OutboxPosition {
            identity: bundle.outbox_identity,
            cursor: moved_to,
        },
        pinned_now,
        registered_now,
        gap,
    })
}

/// The cursor after a bundle of seqs `first..=last` whose outbox is stored up
/// to `cursor`, and the seqs missing in between when it does not follow on.
fn meet_cursor(cursor: i64, first: i64, last: i64) -> (i64, Option<(i64, i64)>) {
    if first <= cursor + 1 {
        (cursor.max(last), None)
    } else {
        (cursor, Some((cursor + 1, first - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::meet_cursor;

    #[test]
    fn a_bundle_moves_the_cursor_only_when_it_follows_on() {
        assert_eq!(meet_cursor(0, 1, 500), (500, None), "the first bundle");
        assert_eq!(
            meet_cursor(300, 1, 500),
            (500, None),
            "partly pulled before"
        );
        assert_eq!(meet_cursor(500, 501, 510), (510, None), "just after");
        assert_eq!(meet_cursor(900, 1, 500), (900, None), "all held already");
        assert_eq!(
            meet_cursor(100, 201, 300),
            (100, Some((101, 200))),
            "a gap keeps the cursor"
        );
    }
}
