//! The outbox: every record meant for the hub, kept in commit order until the
//! hub has acknowledged it.
//!
//! # Design
//! Invariants, which the hub's exactly-once delivery rests on:
//! - `seq` increases with commit order and is never reused (AUTOINCREMENT), so a
//!   cursor names a position that means the same thing forever.
//! - `id` (UUIDv7) is fixed when the event is appended and never changes, so a
//!   hub that pulls the same event twice can tell.
//! - Rows are only ever inserted, and deleted only after acknowledgement.
//! - Appends are stamped with the agent's clock and whether it was synchronised;
//!   a clock seen to step backwards is recorded on the next event, so the hub can
//!   correct times recorded before NTP fixed the clock (`DESIGN.md`, "Time").
//! - No payload over [`MAX_PAYLOAD_BYTES`] is appended: the producers bound
//!   their input (see `events`), and this is the last guard, so every event
//!   this build writes fits in one message to the hub.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::sync::atomic::{AtomicI64, Ordering};
use uuid::Uuid;

use super::{Store, StoreError};

/// The most bytes one event's payload may take, as stored; the store refuses more.
/// The producers keep within it (see `events`).
pub const MAX_PAYLOAD_BYTES: usize = 48 * 1024;

/// An event refused because its payload is over [`MAX_PAYLOAD_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error(
    "a `{kind}` event of {bytes} bytes was not recorded: an event may take at most {MAX_PAYLOAD_BYTES} bytes, or it could not reach the hub"
)]
pub struct EventTooLarge {
    pub kind: String,
    pub bytes: usize,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// What happened, such as `attendance.mark`.
    pub kind: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// The body, encoded as the protobuf message `kind` names.
    pub payload: Vec<u8>,
}

/// An event as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: Uuid,
    pub kind: String,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub clock_synced: bool,
    /// How far the clock had stepped back before this event was recorded, in milliseconds.
    pub clock_step_back_ms: i64,
    pub payload: Vec<u8>,
}

/// What the writer remembers between appends.
pub(super) struct WriterState {
    identity: Uuid,
    last_seq: AtomicI64,
    last_recorded_ms: AtomicI64,
}

impl WriterState {
    /// Reads the outbox's position, giving a new outbox its random identity first.
    pub(super) fn load(conn: &Connection, now_ms: i64) -> rusqlite::Result<Self> {
        conn.execute(
            "INSERT OR IGNORE INTO outbox_identity (singleton, identity, created_at_ms) VALUES (1, ?1, ?2)",
            params![Uuid::new_v4().as_bytes(), now_ms],
        )?;
        let identity: [u8; 16] =
            conn.query_row("SELECT identity FROM outbox_identity", [], |r| r.get(0))?;
        let (seq, recorded): (i64, i64) = conn.query_row(
            "SELECT coalesce(max(seq), 0), coalesce(max(recorded_at_ms), 0) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // A pruned outbox still knows the highest sequence number it handed out.
        let handed_out: i64 = conn
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'outbox'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        Ok(Self {
            identity: Uuid::from_bytes(identity),
            last_seq: AtomicI64::new(seq.max(handed_out)),
            last_recorded_ms: AtomicI64::new(recorded),
        })
    }

    pub(super) fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::SeqCst)
    }
}

/// A clock step smaller than this is jitter, not a jump worth reporting.
const STEP_BACK_TOLERANCE_MS: i64 = 1_000;

impl Store {
    /// Appends one event in its own durable transaction.
    pub fn append(&self, event: NewEvent) -> Result<StoredEvent, StoreError> {
        Ok(self
            .append_batch(vec![event])?
            .pop()
            .expect("one event in, one out"))
    }

    /// Appends events in one durable transaction: all of them are committed, or none.
    pub fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<StoredEvent>, StoreError> {
        let stored = self.write(|tx| self.insert_events(tx, events))?;
        metrics::counter!("agent_outbox_appended_total").increment(stored.len() as u64);
        if let Some(last) = stored.last() {
            self.outbox.last_seq.store(last.seq, Ordering::SeqCst);
            self.outbox
                .last_recorded_ms
                .store(last.recorded_at.as_millisecond(), Ordering::SeqCst);
            self.committed.send_replace(last.seq);
        }
        Ok(stored)
    }

    /// Inserts events inside a caller's transaction, for records that must commit
    /// together with other changes (a mark and its roll-call state, say).
    /// Call [`Store::announce_commit`] after the transaction commits.
    /// A payload over [`MAX_PAYLOAD_BYTES`] fails the transaction with [`EventTooLarge`].
    pub fn insert_events(
        &self,
        tx: &Transaction<'_>,
        events: Vec<NewEvent>,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        if let Some(large) = events
            .iter()
            .find(|event| event.payload.len() > MAX_PAYLOAD_BYTES)
        {
            let refused = EventTooLarge {
                kind: large.kind.clone(),
                bytes: large.payload.len(),
            };
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(refused)));
        }
        let recorded_at = self.clock.now();
        let clock_synced = self.clock.is_synchronized();
        let recorded_ms = recorded_at.as_millisecond();
        let previous_ms = self.outbox.last_recorded_ms.load(Ordering::SeqCst);
        let step_back = previous_ms - recorded_ms;
        let clock_step_back_ms = if step_back > STEP_BACK_TOLERANCE_MS {
            step_back
        } else {
            0
        };
        if clock_step_back_ms > 0 {
            tracing::warn!(
                step_back_ms = clock_step_back_ms,
                "the clock stepped backwards; recorded on the next event"
            );
        }
        let mut insert = tx.prepare_cached(
            "INSERT INTO outbox (id, kind, occurred_at_ms, recorded_at_ms, clock_synced, clock_step_back_ms, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut stored = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let id = Uuid::now_v7();
            // Only the first event after a step carries it; the rest follow on the new clock.
            let step = if i == 0 { clock_step_back_ms } else { 0 };
            insert.execute(params![
                id.as_bytes(),
                event.kind,
                event.occurred_at.as_millisecond(),
                recorded_ms,
                clock_synced,
                step,
                event.payload
            ])?;
            stored.push(StoredEvent {
                seq: tx.last_insert_rowid(),
                id,
                kind: event.kind,
                occurred_at: event.occurred_at,
                recorded_at,
                clock_synced,
                clock_step_back_ms: step,
                payload: event.payload,
            });
        }
        Ok(stored)
    }

    /// Tells live readers that events up to `seq` are committed; for callers of [`Store::insert_events`].
    pub fn announce_commit(&self, events: &[StoredEvent]) {
        if let Some(last) = events.last() {
            self.outbox.last_seq.fetch_max(last.seq, Ordering::SeqCst);
            self.outbox
                .last_recorded_ms
                .store(last.recorded_at.as_millisecond(), Ordering::SeqCst);
            self.committed.send_replace(self.outbox.last_seq());
        }
    }

    /// The newest committed sequence number (0 for an empty outbox).
    pub fn last_seq(&self) -> i64 {
        self.outbox.last_seq()
    }

    /// The outbox's identity: random, chosen when the outbox was created, never
    /// changed. A new database (one moved aside and started afresh) has another.
    pub fn outbox_identity(&self) -> Uuid {
        self.outbox.identity
    }
}

/// Reads up to `limit` events after `cursor`, in order.
pub fn read_after(
    conn: &Connection,
    cursor: i64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, kind, occurred_at_ms, recorded_at_ms, clock_synced, clock_step_back_ms, payload
         FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![cursor, limit as i64], |row| {
        let id: [u8; 16] = row.get(1)?;
        Ok(StoredEvent {
            seq: row.get(0)?,
            id: Uuid::from_bytes(id),
            kind: row.get(2)?,
            occurred_at: millis(row.get(3)?),
            recorded_at: millis(row.get(4)?),
            clock_synced: row.get(5)?,
            clock_step_back_ms: row.get(6)?,
            payload: row.get(7)?,
        })
    })?;
    rows.collect()
}

/// The newest event of `kind` (such as `attendance.session`), if any.
pub fn newest_of_kind(conn: &Connection, kind: &str) -> rusqlite::Result<Option<StoredEvent>> {
    let mut stmt =
        conn.prepare_cached("SELECT seq FROM outbox WHERE kind = ?1 ORDER BY seq DESC LIMIT 1")?;
    let seq: Option<i64> = stmt.query_row([kind], |row| row.get(0)).optional()?;
    seq.map_or(Ok(None), |seq| Ok(read_after(conn, seq - 1, 1)?.pop()))
}

fn millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use jiff::SignedDuration;

    fn event(n: u32) -> NewEvent {
        NewEvent {
            kind: "test.event".into(),
            occurred_at: Timestamp::from_second(1_800_000_000).unwrap(),
            payload: n.to_le_bytes().to_vec(),
        }
    }

    #[test]
    fn appended_events_read_back_in_order_with_distinct_ids() {
        let (_dir, _clock, store) = testing::store();
        let first = store.append(event(0)).unwrap();
        let batch = store.append_batch((1..5).map(event).collect()).unwrap();
        let read = read_after(&store.reader().unwrap(), 0, 100).unwrap();
        assert_eq!(read.len(), 5);
        assert_eq!(read[0], first);
        assert_eq!(&read[1..], &batch[..]);
        assert!(
            read.windows(2)
                .all(|w| w[0].seq < w[1].seq && w[0].id != w[1].id)
        );
        assert_eq!(
            read_after(&store.reader().unwrap(), batch[1].seq, 100).unwrap(),
            batch[2..].to_vec()
        );
        assert_eq!(*store.subscribe_commits().borrow(), batch[3].seq);
    }

    #[test]
    fn an_event_over_the_bound_is_refused_with_its_batch() {
        let (_dir, _clock, store) = testing::store();
        let largest = NewEvent {
            payload: vec![7; MAX_PAYLOAD_BYTES],
            ..event(0)
        };
        let over = NewEvent {
            payload: vec![7; MAX_PAYLOAD_BYTES + 1],
            ..event(0)
        };
        let err = store.append_batch(vec![event(1), over]).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "a `test.event` event of {} bytes was not recorded",
                MAX_PAYLOAD_BYTES + 1
            )),
            "{err}"
        );
        assert!(
            read_after(&store.reader().unwrap(), 0, 10)
                .unwrap()
                .is_empty(),
            "nothing of the batch was kept"
        );
        assert_eq!(
            store.append(largest).unwrap().payload.len(),
            MAX_PAYLOAD_BYTES
        );
    }

    #[test]
    fn a_failed_batch_leaves_nothing() {
        let (_dir, _clock, store) = testing::store();
        let result = store.write(|tx| {
            store.insert_events(tx, vec![event(1), event(2)])?;
            tx.execute("INSERT INTO no_such_table VALUES (1)", [])
        });
        assert!(result.is_err());
        assert!(
            read_after(&store.reader().unwrap(), 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn clock_state_is_recorded_and_a_backward_step_is_flagged_once() {
        let (_dir, clock, store) = testing::store();
        clock.set_synchronized(false);
        let before = store.append(event(1)).unwrap();
        assert!(!before.clock_synced);
        assert_eq!(before.clock_step_back_ms, 0);
        clock.set(crate::clock::Clock::now(&*clock) - SignedDuration::from_hours(2));
        clock.set_synchronized(true);
        let after = store.append_batch(vec![event(2), event(3)]).unwrap();
        assert_eq!(after[0].clock_step_back_ms, 2 * 3600 * 1000);
        assert_eq!(after[1].clock_step_back_ms, 0);
        assert!(after[0].clock_synced);
        clock.set(crate::clock::Clock::now(&*clock) - SignedDuration::from_millis(300));
        assert_eq!(
            store.append(event(4)).unwrap().clock_step_back_ms,
            0,
            "jitter is not a step"
        );
    }

    #[test]
    fn an_outbox_keeps_its_identity_and_a_new_one_gets_another() {
        let (dir, clock, store) = testing::store();
        let identity = store.outbox_identity();
        drop(store);
        let path = dir.path().join("agent.sqlite3");
        assert_eq!(
            Store::open(&path, clock.clone()).unwrap().outbox_identity(),
            identity
        );
        std::fs::rename(&path, dir.path().join("aside.sqlite3")).unwrap();
        assert_ne!(
            Store::open(&path, clock).unwrap().outbox_identity(),
            identity
        );
    }

    #[test]
    fn sequence_numbers_survive_reopening_after_pruning() {
        let (dir, clock, store) = testing::store();
        let stored = store.append_batch((0..3).map(event).collect()).unwrap();
        store
            .write(|tx| tx.execute("DELETE FROM outbox", []))
            .unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("agent.sqlite3"), clock).unwrap();
        assert_eq!(store.last_seq(), stored[2].seq);
        assert!(store.append(event(9)).unwrap().seq > stored[2].seq);
    }
}
