//! Paired tablets and the teacher's groups of them in the database. Every
//! change that the hub must hear of (pairing, renaming, binding, revoking)
//! commits together with its `TabletPairing` outbox record, naming the lesson
//! it was made in, so the two can never disagree. Groups are the teacher's
//! own aid for giving commands and stay in the room.

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
    /// The bound pupil's full name, as the roster has it.
    pub pupil_full_name: Option<String>,
}

/// Why a pupil's choice of their own name on a tablet was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRefused {
    /// The tablet is unknown or revoked.
    NoTablet,
    /// The tablet already holds a pupil: only the teacher changes it.
    AlreadyBound,
    /// Another tablet holds that pupil.
    Taken,
}

/// A group of tablets the teacher named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    pub name: String,
    /// Its unrevoked tablets.
    pub tablet_ids: Vec<String>,
}

/// What the teacher changes about a tablet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TabletChange {
    Rename(String),
    Bind(Option<String>),
    Revoke,
}

const SELECT: &str = "SELECT t.tablet_id, t.name, t.pupil_personal_id, t.paired_at_ms, t.revoked_at_ms IS NOT NULL,
    coalesce(p.learning_data_consent, 0), p.full_name FROM tablets t LEFT JOIN pupils p ON p.personal_id = t.pupil_personal_id";

fn tablet_from(row: &Row<'_>) -> rusqlite::Result<Tablet> {
    Ok(Tablet {
        tablet_id: row.get(0)?,
        name: row.get(1)?,
        pupil_personal_id: row.get(2)?,
        paired_at_ms: row.get(3)?,
        revoked: row.get(4)?,
        pupil_learning_data_consent: row.get(5)?,
        pupil_full_name: row.get(6)?,
    })
}

fn pairing_record(tablet: &Tablet, action: Action, lesson_id: &str) -> TabletPairing {
    TabletPairing {
        tablet_id: tablet.tablet_id.clone(),
        name: tablet.name.clone(),
        action: action as i32,
        pupil_personal_id: tablet.pupil_personal_id.clone().unwrap_or_default(),
        lesson_id: lesson_id.to_owned(),
        chosen_on_tablet: false,
    }
}

impl Store {
    /// Records a newly paired tablet in lesson `lesson_id`, keeping only the hash of its token.
    pub fn add_tablet(
        &self,
        tablet_id: &str,
        name: &str,
        token_sha256: &[u8; 32],
        lesson_id: &str,
    ) -> Result<Tablet, StoreError> {
        let now = self.clock().now();
        let tablet = Tablet {
            tablet_id: tablet_id.to_owned(),
            name: name.to_owned(),
            pupil_personal_id: None,
            paired_at_ms: now.as_millisecond(),
            revoked: false,
            pupil_learning_data_consent: false,
            pupil_full_name: None,
        };
        let stored = self.write(|tx| {
            tx.execute(
                "INSERT INTO tablets (tablet_id, name, token_sha256, paired_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![tablet.tablet_id, tablet.name, &token_sha256[..], tablet.paired_at_ms],
            )?;
            self.insert_events(tx, vec![NewEvent::new(now, pairing_record(&tablet, Action::Paired, lesson_id))])
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

    /// Applies a teacher's change in lesson `lesson_id`; `None` when no such
    /// tablet exists (or it was revoked already).
    pub fn change_tablet(
        &self,
        tablet_id: &str,
        change: &TabletChange,
        lesson_id: &str,
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
            let stored = self.insert_events(tx, vec![NewEvent::new(now, pairing_record(&tablet, action, lesson_id))])?;
            Ok(Some((tablet, stored)))
        })?;
        Ok(outcome.map(|(tablet, stored)| {
            self.announce_commit(&stored);
            tablet
        }))
    }

    /// A pupil chose their own name on an unbound tablet: binds it, unless the
    /// tablet holds a pupil already or another tablet holds this one.
    pub fn claim_pupil(
        &self,
        tablet_id: &str,
        personal_id: &str,
        lesson_id: &str,
    ) -> Result<Result<Tablet, ClaimRefused>, StoreError> {
        let now = self.clock().now();
        let outcome = self.write(|tx| {
            let current: Option<Option<String>> = tx
                .query_row(
                    "SELECT pupil_personal_id FROM tablets WHERE tablet_id = ?1 AND revoked_at_ms IS NULL",
                    [tablet_id],
                    |row| row.get(0),
                )
                .optional()?;
            match current {
                None => return Ok(Err(ClaimRefused::NoTablet)),
                Some(Some(_)) => return Ok(Err(ClaimRefused::AlreadyBound)),
                Some(None) => {}
            }
            let taken: bool = tx.query_row(
                "SELECT count(*) > 0 FROM tablets WHERE pupil_personal_id = ?1 AND revoked_at_ms IS NULL",
                [personal_id],
                |row| row.get(0),
            )?;
            if taken {
                return Ok(Err(ClaimRefused::Taken));
            }
            tx.execute(
                "UPDATE tablets SET pupil_personal_id = ?2 WHERE tablet_id = ?1",
                params![tablet_id, personal_id],
            )?;
            let tablet = tx.query_row(&format!("{SELECT} WHERE t.tablet_id = ?1"), [tablet_id], tablet_from)?;
            let record = TabletPairing {
                chosen_on_tablet: true,
                ..pairing_record(&tablet, Action::Bound, lesson_id)
            };
            let stored = self.insert_events(tx, vec![NewEvent::new(now, record)])?;
            Ok(Ok((tablet, stored)))
        })?;
        Ok(outcome.map(|(tablet, stored)| {
            self.announce_commit(&stored);
            tablet
        }))
    }

    /// The teacher's groups, by name, each with its unrevoked tablets.
    pub fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.read(|conn| {
            let mut groups: Vec<Group> = conn
                .prepare_cached("SELECT name FROM lesson_groups ORDER BY name")?
                .query_map([], |row| {
                    Ok(Group {
                        name: row.get(0)?,
                        tablet_ids: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut members = conn.prepare_cached(
                "SELECT m.tablet_id FROM lesson_group_members m JOIN tablets t ON t.tablet_id = m.tablet_id
                 WHERE m.group_name = ?1 AND t.revoked_at_ms IS NULL ORDER BY m.tablet_id",
            )?;
            for group in &mut groups {
                group.tablet_ids = members
                    .query_map([&group.name], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
            }
            Ok(groups)
        })
    }

    /// Creates or replaces group `name` with `tablet_ids`; `Err` lists the ids
    /// that are no paired, unrevoked tablet (and nothing is changed).
    pub fn save_group(
        &self,
        name: &str,
        tablet_ids: &[String],
    ) -> Result<Result<Group, Vec<String>>, StoreError> {
        let now = self.clock().now().as_millisecond();
        self.write(|tx| {
            let mut unknown = Vec::new();
            for id in tablet_ids {
                let known: bool = tx.query_row(
                    "SELECT count(*) > 0 FROM tablets WHERE tablet_id = ?1 AND revoked_at_ms IS NULL",
                    [id],
                    |row| row.get(0),
                )?;
                if !known {
                    unknown.push(id.clone());
                }
            }
            if !unknown.is_empty() {
                return Ok(Err(unknown));
            }
            tx.execute("DELETE FROM lesson_groups WHERE name = ?1", [name])?;
            tx.execute(
                "INSERT INTO lesson_groups (name, changed_at_ms) VALUES (?1, ?2)",
                params![name, now],
            )?;
            let mut tablet_ids: Vec<String> = tablet_ids.to_vec();
            tablet_ids.sort();
            tablet_ids.dedup();
            for id in &tablet_ids {
                tx.execute(
                    "INSERT INTO lesson_group_members (group_name, tablet_id) VALUES (?1, ?2)",
                    params![name, id],
                )?;
            }
            Ok(Ok(Group {
                name: name.to_owned(),
                tablet_ids,
            }))
        })
    }

    /// Forgets group `name`; false when there was none.
    pub fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| Ok(tx.execute("DELETE FROM lesson_groups WHERE name = ?1", [name])? > 0))
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
        store
            .add_tablet("t1", "Bàn 1", &hash, "2026-09-07/Sáng/1")
            .unwrap();
        assert_eq!(store.tablet_by_token(&hash).unwrap().unwrap().name, "Bàn 1");
        let bound = store
            .change_tablet("t1", &TabletChange::Bind(Some("010206001234".into())), "l")
            .unwrap()
            .unwrap();
        assert_eq!(bound.pupil_personal_id.as_deref(), Some("010206001234"));
        assert!(
            store
                .change_tablet("t1", &TabletChange::Revoke, "l")
                .unwrap()
                .unwrap()
                .revoked
        );
        assert_eq!(store.tablet_by_token(&hash).unwrap(), None);
        assert_eq!(
            store
                .change_tablet("t1", &TabletChange::Revoke, "l")
                .unwrap(),
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

    #[test]
    fn a_pupil_claims_an_unbound_tablet_once_and_never_one_another_holds() {
        let (_dir, _clock, store) = testing::store();
        store.add_tablet("t1", "Bàn 1", &[1u8; 32], "l").unwrap();
        store.add_tablet("t2", "Bàn 2", &[2u8; 32], "l").unwrap();
        let lesson = "2026-09-07/Sáng/1";
        let claimed = store
            .claim_pupil("t1", "010206001234", lesson)
            .unwrap()
            .unwrap();
        assert_eq!(claimed.pupil_personal_id.as_deref(), Some("010206001234"));
        assert_eq!(
            store.claim_pupil("t1", "010206005678", lesson).unwrap(),
            Err(ClaimRefused::AlreadyBound)
        );
        assert_eq!(
            store.claim_pupil("t2", "010206001234", lesson).unwrap(),
            Err(ClaimRefused::Taken)
        );
        assert_eq!(
            store.claim_pupil("t9", "010206001234", lesson).unwrap(),
            Err(ClaimRefused::NoTablet)
        );
        let last = read_after(&store.reader().unwrap(), 0, 10)
            .unwrap()
            .pop()
            .unwrap();
        let Some(Payload::TabletPairing(record)) = last.payload().unwrap() else {
            panic!("a pairing record")
        };
        assert_eq!(
            (
                record.lesson_id.as_str(),
                record.chosen_on_tablet,
                record.action()
            ),
            (lesson, true, Action::Bound)
        );
    }

    #[test]
    fn a_group_keeps_its_unrevoked_tablets_and_refuses_unknown_ones() {
        let (_dir, _clock, store) = testing::store();
        store.add_tablet("t1", "Bàn 1", &[1u8; 32], "l").unwrap();
        store.add_tablet("t2", "Bàn 2", &[2u8; 32], "l").unwrap();
        assert_eq!(
            store
                .save_group("Nhóm 1", &["t1".into(), "t7".into()])
                .unwrap(),
            Err(vec!["t7".to_owned()])
        );
        assert!(store.groups().unwrap().is_empty(), "nothing saved");
        store
            .save_group("Nhóm 1", &["t2".into(), "t1".into()])
            .unwrap()
            .unwrap();
        store
            .save_group("Nhóm 1", &["t1".into(), "t2".into(), "t1".into()])
            .unwrap()
            .unwrap();
        store
            .change_tablet("t2", &TabletChange::Revoke, "l")
            .unwrap();
        assert_eq!(
            store.groups().unwrap(),
            [Group {
                name: "Nhóm 1".into(),
                tablet_ids: vec!["t1".into()]
            }]
        );
        assert!(store.delete_group("Nhóm 1").unwrap());
        assert!(!store.delete_group("Nhóm 1").unwrap());
    }
}
