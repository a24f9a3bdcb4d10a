//! The hub's side of the database: how far it has acknowledged the outbox,
//! what may be pruned, what is waiting, and the roster and timetable it pushed.
//!
//! # Design
//! - Everything here reads the database, not this process's memory: another
//!   process (a command-line tool) may append to the outbox beside the daemon,
//!   and the hub must see the same numbers either way.
//! - The acknowledged cursor only moves forward, in one transaction with the
//!   check that it names a sequence number already handed out.
//! - Pruning deletes only rows at or below the acknowledged cursor, so an
//!   unacknowledged event is never lost whatever the retention says.
//! - A roster push replaces the room's people whole by the rule of
//!   [`super::roster`] (templates of the pupils who stay with consent are kept,
//!   the others erased with an erasure event each), in one transaction with its
//!   version check and its timetable: a stale or failed push leaves everything as it was.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::roster::{Coverage, ImportSummary};
use super::{Store, StoreError};
use crate::roster::Roster;

/// Where the outbox stands with the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Every event up to this one is stored by the hub.
    pub acked_seq: i64,
    /// The newest sequence number handed out.
    pub last_seq: i64,
    /// Events kept and not yet acknowledged.
    pub backlog: u64,
    /// The oldest unacknowledged event: its sequence number and when it was recorded.
    pub oldest_unacked: Option<(i64, Timestamp)>,
}

/// A roster push that was not newer than the roster in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("roster version {offered} is not newer than version {current} in force")]
pub struct StaleRoster {
    pub offered: u64,
    pub current: u64,
}

/// The timetable the hub pushed, as it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedTimetable {
    /// The roster version whose push carried it.
    pub version: u64,
    pub toml: String,
}

/// How many rows one pruning transaction deletes, so the writer is never held long.
const PRUNE_CHUNK: i64 = 10_000;

impl Store {
    /// Moves the acknowledged cursor to `decide(acked, last)`, where `acked` is the
    /// cursor now and `last` the newest sequence number handed out. `decide` may
    /// refuse; the cursor never moves backwards whatever it returns.
    pub fn acknowledge<E>(
        &self,
        decide: impl FnOnce(i64, i64) -> Result<i64, E>,
    ) -> Result<Result<i64, E>, StoreError> {
        let now = self.clock().now().as_millisecond();
        self.write(|tx| {
            let acked = acked_seq(tx)?;
            let last = last_handed_out(tx)?;
            let target = match decide(acked, last) {
                Ok(target) => target.max(acked),
                Err(refused) => return Ok(Err(refused)),
            };
            if target > acked {
                tx.execute(
                    "INSERT INTO outbox_ack (singleton, acked_seq, acked_at_ms) VALUES (1, ?1, ?2)
                     ON CONFLICT (singleton) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq),
                       acked_at_ms = excluded.acked_at_ms",
                    params![target, now],
                )?;
            }
            Ok(Ok(target))
        })
    }

    /// Deletes acknowledged events recorded before `cutoff`; returns how many.
    pub fn prune_acknowledged(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self.write(|tx| {
                tx.execute(
                    "DELETE FROM outbox WHERE seq IN (
                       SELECT seq FROM outbox
                       WHERE seq <= (SELECT coalesce(max(acked_seq), 0) FROM outbox_ack) AND recorded_at_ms < ?1
                       ORDER BY seq LIMIT ?2)",
                    params![cutoff.as_millisecond(), PRUNE_CHUNK],
                )
            })?;
            total += deleted;
            if (deleted as i64) < PRUNE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Where the outbox stands with the hub, as the database says now.
    pub fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        self.read(outbox_status)
    }

    /// The newest sequence number ever handed out, as the database says now:
    /// right whichever process committed it, and cheap enough for every
    /// `/healthz`: two indexed lookups on the open writer connection, with no
    /// connection to open.
    pub fn newest_seq(&self) -> Result<i64, StoreError> {
        last_handed_out(&self.lock_writer()).map_err(|err| self.error(err))
    }

    /// The roster version in force; 0 when the hub never pushed one.
    pub fn roster_version(&self) -> Result<u64, StoreError> {
        self.read(roster_version)
    }

    /// The timetable the hub pushed last, if any.
    pub fn pushed_timetable(&self) -> Result<Option<PushedTimetable>, StoreError> {
        self.read(|conn| {
            conn.query_row(
            "SELECT timetable_version, timetable_toml FROM hub_roster WHERE timetable_toml IS NOT NULL",
            [],
            |row| Ok(PushedTimetable { version: row.get::<_, i64>(0)? as u64, toml: row.get(1)? }),
            )
            .optional()
        })
    }

    /// Replaces the room's people with `roster`, and its timetable with `timetable`
    /// when given, as roster `version`: all of it, or nothing when the version is stale.
    /// Face templates follow the rule of [`super::roster`].
    pub fn replace_roster(
        &self,
        version: u64,
        roster: &Roster,
        timetable: Option<&str>,
    ) -> Result<Result<ImportSummary, StaleRoster>, StoreError> {
        let now = self.clock().now().as_millisecond();
        let applied = self.write(|tx| {
            let current = roster_version(tx)?;
            if version <= current {
                return Ok(Err(StaleRoster {
                    offered: version,
                    current,
                }));
            }
            let applied = self.apply_roster(tx, roster, Coverage::Whole, now)?;
            record_roster_version(tx, version, timetable, now)?;
            Ok(Ok(applied))
        })?;
        Ok(applied.map(|(summary, erasures)| {
            self.announce_commit(&erasures);
            summary
        }))
    }
}

fn record_roster_version(
    tx: &Transaction<'_>,
    version: u64,
    timetable: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO hub_roster (singleton, version, timetable_toml, timetable_version, applied_at_ms)
         VALUES (1, ?1, ?2, CASE WHEN ?2 IS NULL THEN NULL ELSE ?1 END, ?3)
         ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, applied_at_ms = excluded.applied_at_ms,
           timetable_toml = coalesce(excluded.timetable_toml, timetable_toml),
           timetable_version = coalesce(excluded.timetable_version, timetable_version)",
        params![version as i64, timetable, now],
    )?;
    Ok(())
}

fn acked_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(acked_seq), 0) FROM outbox_ack",
        [],
        |row| row.get(0),
    )
}

/// The highest sequence number ever handed out, even if pruned since.
fn last_handed_out(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
                    coalesce((SELECT max(seq) FROM outbox), 0))",
        [],
        |row| row.get(0),
    )
}

fn roster_version(conn: &Connection) -> rusqlite::Result<u64> {
    let version: Option<i64> = conn
        .query_row("SELECT version FROM hub_roster", [], |row| row.get(0))
        .optional()?;
    Ok(version.unwrap_or(0) as u64)
}

fn outbox_status(conn: &Connection) -> rusqlite::Result<OutboxStatus> {
    let acked_seq = acked_seq(conn)?;
    let last_seq = last_handed_out(conn)?;
    let backlog: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE seq > ?1",
        [acked_seq],
        |row| row.get(0),
    )?;
    let oldest_unacked = conn
        .query_row(
            "SELECT seq, recorded_at_ms FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT 1",
            [acked_seq],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )
        .optional()?
        .map(|(seq, ms)| {
            (
                seq,
                Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH),
            )
        });
    Ok(OutboxStatus {
        acked_seq,
        last_seq,
        backlog: backlog as u64,
        oldest_unacked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::roster::parse_csv;
    use crate::store::outbox::{NewEvent, read_after};
    use crate::store::testing;
    use jiff::SignedDuration;

    fn events(store: &Store, n: usize) -> Vec<i64> {
        let new = (0..n)
            .map(|i| NewEvent {
                kind: "test.event".into(),
                occurred_at: store.clock().now(),
                payload: vec![i as u8],
            })
            .collect();
        store
            .append_batch(new)
            .unwrap()
            .into_iter()
            .map(|e| e.seq)
            .collect()
    }

    fn ack_to(store: &Store, seq: i64) -> i64 {
        store.acknowledge(|_, _| Ok::<_, ()>(seq)).unwrap().unwrap()
    }

    #[test]
    fn the_acknowledged_cursor_never_moves_back_and_backlog_follows_it() {
        let (_dir, _clock, store) = testing::store();
        let seqs = events(&store, 5);
        assert_eq!(store.outbox_status().unwrap().backlog, 5);
        assert_eq!(ack_to(&store, seqs[2]), seqs[2]);
        assert_eq!(
            ack_to(&store, seqs[0]),
            seqs[2],
            "an older ack leaves the cursor where it is"
        );
        let status = store.outbox_status().unwrap();
        assert_eq!(
            (status.acked_seq, status.last_seq, status.backlog),
            (seqs[2], seqs[4], 2)
        );
        assert_eq!(status.oldest_unacked.map(|(seq, _)| seq), Some(seqs[3]));
        let refused = store
            .acknowledge(|_, last| if last < 99 { Err(last) } else { Ok(99) })
            .unwrap();
        assert_eq!(refused, Err(seqs[4]));
    }

    #[test]
    fn the_newest_seq_is_read_from_the_database_whoever_committed_it() {
        let (dir, clock, store) = testing::store();
        let seqs = events(&store, 2);
        let beside = Store::open(&dir.path().join("agent.sqlite3"), clock).unwrap();
        let theirs = events(&beside, 3);
        assert_eq!(store.newest_seq().unwrap(), theirs[2]);
        assert_eq!(
            store.last_seq(),
            seqs[1],
            "this process's memory does not see the other's commits"
        );
        store
            .write(|tx| tx.execute("DELETE FROM outbox", []))
            .unwrap();
        assert_eq!(
            store.newest_seq().unwrap(),
            theirs[2],
            "a pruned seq was still handed out"
        );
    }

    #[test]
    fn pruning_takes_only_acknowledged_events_older_than_the_cutoff() {
        let (_dir, clock, store) = testing::store();
        let old = events(&store, 4);
        clock.advance(std::time::Duration::from_secs(24 * 40 * 3600));
        let recent = events(&store, 2);
        ack_to(&store, old[1]);
        let cutoff = clock.now() - SignedDuration::from_hours(24 * 30);
        assert_eq!(store.prune_acknowledged(cutoff).unwrap(), 2);
        let kept: Vec<i64> = read_after(&store.reader().unwrap(), 0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            kept,
            vec![old[2], old[3], recent[0], recent[1]],
            "unacknowledged events stay whatever their age"
        );
        ack_to(&store, recent[1]);
        assert_eq!(
            store.prune_acknowledged(cutoff).unwrap(),
            2,
            "recent acknowledged events wait for the retention"
        );
    }

    #[test]
    fn a_roster_push_replaces_everyone_and_a_stale_one_changes_nothing() {
        let (_dir, _clock, store) = testing::store();
        let header =
            "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n";
        let first = parse_csv(format!("{header}pupil,010206001234,Nguyễn Thị Hoa,6A1,no,no,\npupil,010206001235,Lò Văn Páo,6A2,no,no,\n").as_bytes()).unwrap();
        store
            .replace_roster(3, &first, Some("[schedule]\n"))
            .unwrap()
            .unwrap();
        let second =
            parse_csv(format!("{header}pupil,010206001236,Giàng A Sử,6A1,no,no,\n").as_bytes())
                .unwrap();
        assert_eq!(
            store.replace_roster(3, &second, None).unwrap(),
            Err(StaleRoster {
                offered: 3,
                current: 3
            })
        );
        assert_eq!(store.pupils_of_class("6A1").unwrap().len(), 1);
        assert_eq!(
            store.pupils_of_class("6A1").unwrap()[0].full_name,
            "Nguyễn Thị Hoa"
        );
        store.replace_roster(4, &second, None).unwrap().unwrap();
        assert_eq!(
            store.pupils_of_class("6A1").unwrap()[0].full_name,
            "Giàng A Sử"
        );
        assert!(
            store.pupils_of_class("6A2").unwrap().is_empty(),
            "people not pushed are removed"
        );
        assert_eq!(store.roster_version().unwrap(), 4);
        assert_eq!(
            store.pushed_timetable().unwrap(),
            Some(PushedTimetable {
                version: 3,
                toml: "[schedule]\n".into()
            })
        );
    }

    /// The erasures recorded in the outbox, as (personal ID, count, reason).
    fn erasures(store: &Store) -> Vec<(String, u32, String)> {
        read_after(&store.reader().unwrap(), 0, 1000)
            .unwrap()
            .iter()
            .filter_map(|event| match event.payload().unwrap() {
                Some(crate::proto::event::Payload::Erasure(e)) => {
                    Some((e.personal_id, e.count, e.reason))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_push_keeps_the_templates_of_pupils_who_stay_and_erases_the_others_with_an_erasure_each() {
        use crate::attendance::embed::{DIMENSIONS, Embedding};
        let (_dir, _clock, store) = testing::store();
        let header =
            "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n";
        let row = |id: &str, consent: &str| {
            format!("pupil,{id},Học sinh {id},6A1,{consent},no,2026-08-20\n")
        };
        let [stays, leaves, withdraws] = ["010206001234", "010206001235", "010206001236"];
        let everyone = parse_csv(
            format!(
                "{header}{}{}{}",
                row(stays, "yes"),
                row(leaves, "yes"),
                row(withdraws, "yes")
            )
            .as_bytes(),
        )
        .unwrap();
        store.replace_roster(1, &everyone, None).unwrap().unwrap();
        let template = Embedding(vec![1.0 / (DIMENSIONS as f32).sqrt(); DIMENSIONS]);
        for id in [stays, leaves, withdraws] {
            store
                .add_face_templates(
                    &id.parse().unwrap(),
                    &[template.clone(), template.clone()],
                    "model",
                )
                .unwrap();
        }

        let summary = store.replace_roster(2, &everyone, None).unwrap().unwrap();
        assert_eq!((summary.removed, summary.erased), (0, 0));
        assert_eq!(
            store.face_templates_of_class("6A1", "model").unwrap().len(),
            6,
            "the same roster again keeps every template"
        );

        let next =
            parse_csv(format!("{header}{}{}", row(stays, "yes"), row(withdraws, "no")).as_bytes())
                .unwrap();
        let summary = store.replace_roster(3, &next, None).unwrap().unwrap();
        assert_eq!((summary.pupils, summary.removed, summary.erased), (2, 1, 2));
        assert_eq!(
            store.face_template_count(&stays.parse().unwrap()).unwrap(),
            2,
            "the pupil who stays keeps hers"
        );
        assert_eq!(
            store
                .face_template_count(&withdraws.parse().unwrap())
                .unwrap(),
            0
        );
        assert_eq!(
            store.face_template_count(&leaves.parse().unwrap()).unwrap(),
            0
        );
        assert!(store.pupil(&leaves.parse().unwrap()).unwrap().is_none());
        let mut found = erasures(&store);
        found.sort();
        assert_eq!(
            found,
            vec![
                (leaves.to_owned(), 2, "removed from the roster".to_owned()),
                (
                    withdraws.to_owned(),
                    2,
                    "face consent withdrawn in the roster".to_owned()
                )
            ]
        );
        store.replace_roster(4, &next, None).unwrap().unwrap();
        assert_eq!(
            erasures(&store).len(),
            2,
            "nothing left to erase, nothing recorded"
        );
    }

    #[test]
    fn a_push_that_fails_midway_leaves_people_templates_and_timetable_as_they_were() {
        use crate::attendance::embed::{DIMENSIONS, Embedding};
        let (_dir, _clock, store) = testing::store();
        let header =
            "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n";
        let first = parse_csv(
            format!("{header}pupil,010206001234,Nguyễn Thị Hoa,6A1,yes,no,2026-08-20\n").as_bytes(),
        )
        .unwrap();
        store
            .replace_roster(1, &first, Some("[schedule]\n"))
            .unwrap()
            .unwrap();
        let hoa = "010206001234".parse().unwrap();
        store
            .add_face_templates(
                &hoa,
                &[Embedding(vec![
                    1.0 / (DIMENSIONS as f32).sqrt();
                    DIMENSIONS
                ])],
                "model",
            )
            .unwrap();
        // A pupil row the schema refuses makes the push fail after Hoa's erasure was written in its transaction.
        store.write(|tx| tx.execute_batch("CREATE TRIGGER refuse BEFORE INSERT ON pupils WHEN NEW.full_name = 'Refused' BEGIN SELECT RAISE(ABORT, 'refused'); END;")).unwrap();
        let refused =
            parse_csv(format!("{header}pupil,010206001235,Refused,6A2,no,no,\n").as_bytes())
                .unwrap();
        assert!(
            store
                .replace_roster(2, &refused, Some("[schedule]\ngrace_seconds = 5\n"))
                .is_err()
        );
        assert_eq!(store.face_template_count(&hoa).unwrap(), 1);
        assert!(store.pupil(&hoa).unwrap().is_some());
        assert!(
            erasures(&store).is_empty(),
            "no erasure recorded for what was not erased"
        );
        assert_eq!(store.roster_version().unwrap(), 1);
        assert_eq!(
            store.pushed_timetable().unwrap().unwrap().toml,
            "[schedule]\n"
        );
    }
}
