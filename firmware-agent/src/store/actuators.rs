//! The scheduler's decisions in the database, written in the same transaction
//! as the outbox record that reports them.

use jiff::Timestamp;
use rusqlite::params;

use super::outbox::NewEvent;
use super::{Store, StoreError};

/// What the scheduler decided about one planned action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleDecision {
    Fired,
    Skipped,
}

impl Store {
    /// Records a decision, with `event` (its outbox record) when there is one yet, in one transaction.
    /// A key already recorded is left as it is: the first decision stands.
    pub fn record_schedule_decision(
        &self,
        action_key: &str,
        due_at: Timestamp,
        decision: ScheduleDecision,
        detail: &str,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError> {
        let decided_at = self.clock().now().as_millisecond();
        let label = match decision {
            ScheduleDecision::Fired => "fired",
            ScheduleDecision::Skipped => "skipped",
        };
        let stored = self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO schedule_decisions (action_key, due_at_ms, decision, decided_at_ms, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![action_key, due_at.as_millisecond(), label, decided_at, detail],
            )?;
            self.insert_events(tx, event.into_iter().collect())
        })?;
        self.announce_commit(&stored);
        Ok(())
    }

    /// The keys and due instants of decisions on actions due at or after `since`.
    pub fn schedule_decisions_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>, StoreError> {
        self.read(|conn| -> rusqlite::Result<Vec<(String, Timestamp)>> {
            let mut stmt = conn.prepare(
                "SELECT action_key, due_at_ms FROM schedule_decisions WHERE due_at_ms >= ?1",
            )?;
            let rows = stmt.query_map([since.as_millisecond()], |row| {
                let due: i64 = row.get(1)?;
                Ok((
                    row.get(0)?,
                    Timestamp::from_millisecond(due).unwrap_or(Timestamp::UNIX_EPOCH),
                ))
            })?;
            rows.collect()
        })
    }

    /// Forgets decisions on actions due before `before`: they can no longer fall due again.
    pub fn prune_schedule_decisions(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM schedule_decisions WHERE due_at_ms < ?1",
                [before.as_millisecond()],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::proto;
    use crate::store::testing;

    #[test]
    fn a_decision_and_its_record_are_kept_together_and_the_first_one_stands() {
        let (_dir, clock, store) = testing::store();
        let due = clock.now();
        let record = proto::Actuation {
            device: "bell".into(),
            command: "ring:start".into(),
            ..Default::default()
        };
        store
            .record_schedule_decision(
                "2026-09-07T08:00:00 bell ring:start",
                due,
                ScheduleDecision::Fired,
                "",
                Some(NewEvent::new(due, record)),
            )
            .unwrap();
        store
            .record_schedule_decision(
                "2026-09-07T08:00:00 bell ring:start",
                due,
                ScheduleDecision::Skipped,
                "again",
                None,
            )
            .unwrap();
        assert_eq!(store.last_seq(), 1);
        assert_eq!(
            store.schedule_decisions_since(due).unwrap(),
            vec![("2026-09-07T08:00:00 bell ring:start".to_owned(), due)]
        );
        assert_eq!(
            store
                .prune_schedule_decisions(
                    due.checked_add(jiff::SignedDuration::from_secs(1)).unwrap()
                )
                .unwrap(),
            1
        );
    }
}
