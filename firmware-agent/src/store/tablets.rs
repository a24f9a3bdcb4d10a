//! Paired tablets in the database. Every change that the hub must hear of
//! (pairing, renaming, binding, revoking) commits together with its
//! `TabletPairing` outbox record, so the two can never disagree.

use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};
use crate::proto::TabletPairing;
use crate::proto::tablet_pairing::Action;
use crate::store::outbox::NewEvent;

/// A paired tablet as the teacher sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tablet {
    pub tablet_id: String,
    pub name: String,
    pub pupil_personal_id: Option<String>,
    pub paired_at_ms: i64,
    pub revoked: bool,
    /// Whether the bound pupil's parents consented to keeping learning records.
    pub pupil_learning_data_consent: bool,
}

/// What the teacher changes about a tablet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TabletChange {
    Rename(String),
    Bind(Option<String>),
    Revoke,
}

const SELECT: &str = "SELECT t.tablet_id, t.name, t.pupil_personal_id, t.paired_at_ms, t.revoked_at_ms IS NOT NULL,
    coalesce(p.learning_data_consent, 0) FROM tablets t LEFT JOIN pupils p ON p.personal_id = t.pupil_personal_id";

fn tablet_from(row: &Row<'_>) -> rusqlite::Result<Tablet> {
    Ok(Tablet {
        tablet_id: row.get(0)?,
        name: row.get(1)?,
        pupil_personal_id: row.get(2)?,
        paired_at_ms: row.get(3)?,
        revoked: row.get(4)?,
        pupil_learning_data_consent: row.get(5)?,
    })
}

fn pairing_record(tablet: &Tablet, action: Action) -> TabletPairing {
    TabletPairing {
        tablet_id: tablet.tablet_id.clone(),
        name: tablet.name.clone(),
        action: action as i32,
        pupil_personal_id: tablet.pupil_personal_id.clone().unwrap_or_default(),
    }
}

impl Store {
    /// Records a newly paired tablet, keeping only the hash of its token.
    pub fn add_tablet(
        &self,
        tablet_id: &str,
        name: &str,
        token_sha256: &[u8; 32],
    ) -> Result<Tablet, StoreError> {
        let now = self.clock().now();
        let tablet = Tablet {
            tablet_id: tablet_id.to_owned(),
            name: name.to_owned(),
            pupil_personal_id: None,
            paired_at_ms: now.as_millisecond(),
            revoked: false,
            pupil_learning_data_consent: false,
        };
        let stored = self.write(|tx| {
            tx.execute(
                "INSERT INTO tablets (tablet_id, name, token_sha256, paired_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![tablet.tablet_id, tablet.name, &token_sha256[..], tablet.paired_at_ms],
            )?;
            self.insert_events(tx, vec![NewEvent::new(now, pairing_record(&tablet, Action::Paired))])
        })?;
        self.announce_commit(&stored);
        Ok(tablet)
    }

    /// The tablet holding the token with this hash, unless it was revoked.
    pub fn tablet_by_token(&self, token_sha256: &[u8; 32]) -> Result<Option<Tablet>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                &format!("{SELECT} WHERE t.token_sha256 = ?1 AND t.revoked_at_ms IS NULL"),
                [&token_sha256[..]],
                tablet_from,
            )
            .optional()
        })
    }

    /// Every tablet ever paired, revoked ones included, by name.
    pub fn tablets(&self) -> Result<Vec<Tablet>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare(&format!("{SELECT} ORDER BY t.name, t.tablet_id"))
            .map_err(|err| self.error(err))?;
        let rows = stmt
            .query_map([], tablet_from)
            .map_err(|err| self.error(err))?;
        rows.collect::<Result<_, _>>()
            .map_err(|err| self.error(err))
    }

    /// Applies a teacher's change; `None` when no such tablet exists (or it was revoked already).
    pub fn change_tablet(
        &self,
        tablet_id: &str,
        change: &TabletChange,
    ) -> Result<Option<Tablet>, StoreError> {
        let now = self.clock().now();
        let outcome = self.write(|tx| {
            let changed = match change {
                TabletChange::Rename(name) => tx.execute(
                    "UPDATE tablets SET name = ?2 WHERE tablet_id = ?1 AND revoked_at_ms IS NULL",
                    params![tablet_id, name],
                )?,
                TabletChange::Bind(pupil) => tx.execute(
                    "UPDATE tablets SET pupil_personal_id = ?2 WHERE tablet_id = ?1 AND revoked_at_ms IS NULL",
                    params![tablet_id, pupil],
                )?,
                TabletChange::Revoke => tx.execute(
                    "UPDATE tablets SET revoked_at_ms = ?2 WHERE tablet_id = ?1 AND revoked_at_ms IS NULL",
                    params![tablet_id, now.as_millisecond()],
                )?,
            };
            if changed == 0 {
                return Ok(None);
            }
            let tablet = tx.query_row(&format!("{SELECT} WHERE t.tablet_id = ?1"), [tablet_id], tablet_from)?;
            let action = match change {
                TabletChange::Rename(_) => Action::Renamed,
                TabletChange::Bind(_) => Action::Bound,
                TabletChange::Revoke => Action::Revoked,
            };
            let stored = self.insert_events(tx, vec![NewEvent::new(now, pairing_record(&tablet, action))])?;
            Ok(Some((tablet, stored)))
        })?;
        Ok(outcome.map(|(tablet, stored)| {
            self.announce_commit(&stored);
            tablet
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::event::Payload;
    use crate::store::outbox::read_after;
    use crate::store::testing;

    #[test]
    fn a_revoked_token_no_longer_finds_its_tablet_and_each_change_is_recorded() {
        let (_dir, _clock, store) = testing::store();
        let hash = [7u8; 32];
        store.add_tablet("t1", "Bàn 1", &hash).unwrap();
        assert_eq!(store.tablet_by_token(&hash).unwrap().unwrap().name, "Bàn 1");
        let bound = store
            .change_tablet("t1", &TabletChange::Bind(Some("010206001234".into())))
            .unwrap()
            .unwrap();
        assert_eq!(bound.pupil_personal_id.as_deref(), Some("010206001234"));
        assert!(
            store
                .change_tablet("t1", &TabletChange::Revoke)
                .unwrap()
                .unwrap()
                .revoked
        );
        assert_eq!(store.tablet_by_token(&hash).unwrap(), None);
        assert_eq!(
            store.change_tablet("t1", &TabletChange::Revoke).unwrap(),
            None,
            "revoking twice changes nothing"
        );
        let actions: Vec<i32> = read_after(&store.reader().unwrap(), 0, 10)
            .unwrap()
            .iter()
            .map(|event| match event.payload().unwrap() {
                Some(Payload::TabletPairing(record)) => record.action,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            actions,
            vec![
                Action::Paired as i32,
                Action::Bound as i32,
                Action::Revoked as i32
            ]
        );
    }
}
