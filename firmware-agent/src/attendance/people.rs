//! The class as the running roll call knows it, kept live: who is on the roll
//! and whose templates the recogniser matches, read again whenever the room's
//! people change, whichever process changed them (an enrollment, `face
//! forget`, a roster import or push, a consent withdrawn).
//!
//! # Design
//! - The database keeps a people generation that triggers move with every
//!   change to pupils or templates ([`Store::people_generation`]). The daemon
//!   reads it every [`FOLLOW_EVERY`] and before it lets a frame's sightings
//!   of pupils count (one indexed read); when it moved, it reads the class again
//!   ([`Store::class_reading`], one read transaction, so the generation names
//!   exactly the rows read with it); with what it read, the daemon replaces
//!   the recogniser's gallery while the workers run and has the open roll
//!   call follow the class.
//! - The promise: a forgotten pupil is never marked again from the moment
//!   `face forget` returns. Three things keep it. The roll call marks by face
//!   only pupils enrolled in the class as last read, and the class is read
//!   again before a frame's sightings of pupils count, so no sighting judged
//!   before the erasure marks anyone after it. The store writes a mark by face
//!   only for a pupil who, at that commit, has templates and face consent, which
//!   closes the moment between that read and the mark's commit; the roll call
//!   takes back a mark the store left out at the next reading
//!   ([`Class::face_marks`]). And the recogniser forgets the tracks of pupils
//!   its new gallery lacks.
//! - A class with no pupils is no failure: attendance waits for its roster,
//!   and the roll call opens once it has pupils.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::matcher::Gallery;
use crate::store::attendance::ClassReading;
use crate::store::{Store, StoreError};

/// How often the running roll call looks for changes to the room's people.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// The class of a running roll call, as last read from the database.
pub struct Class {
    store: Arc<Store>,
    name: String,
    model_sha256: &'static str,
    reading: ClassReading,
}

impl Class {
    /// Reads the class `name` and its templates made by the model `model_sha256`.
    pub async fn read(
        store: Arc<Store>,
        name: String,
        model_sha256: &'static str,
    ) -> Result<Class, StoreError> {
        let mut class = Class {
            store,
            name,
            model_sha256,
            reading: ClassReading::default(),
        };
        class.reading = class.read_again(None).await?;
        Ok(class)
    }

    /// Every pupil of the class, as personal IDs.
    pub fn pupils(&self) -> BTreeSet<String> {
        self.reading
            .pupils
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The pupils the camera may mark: those with templates and face consent.
    pub fn enrolled(&self) -> BTreeSet<String> {
        self.reading
            .templates
            .iter()
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The class's templates, for the recogniser.
    pub fn gallery(&self) -> Gallery {
        Gallery::new(self.reading.templates.iter().cloned())
    }

    /// The pupils whose marks by face the store kept for the roll call named
    /// at the last reading: a mark it left out is to be taken back.
    pub fn face_marks(&self) -> &HashSet<String> {
        &self.reading.face_marks
    }

    /// Reads the class again if the room's people changed since the last
    /// reading, with the stored face marks of `open_roll_call` (the id of the
    /// roll call open now, if any). True when it changed. A database that
    /// cannot be read leaves everything as it was, to be tried again at the
    /// next call, and says so in the log.
    pub async fn follow(&mut self, open_roll_call: Option<&str>) -> bool {
        let moved = match self.store.blocking(|store| store.people_generation()).await {
            Ok(generation) => generation != self.reading.generation,
            Err(err) => {
                tracing::warn!("cannot read whether the class changed: {err}");
                false
            }
        };
        if !moved {
            return false;
        }
        match self.read_again(open_roll_call.map(str::to_owned)).await {
            Ok(reading) => self.reading = reading,
            Err(err) => {
                tracing::warn!("cannot read the class again: {err}");
                return false;
            }
        }
        tracing::info!(
            class = %self.name,
            pupils = self.reading.pupils.len(),
            enrolled = self.enrolled().len(),
            generation = self.reading.generation,
            "the class changed; the roll call follows it"
        );
        true
    }

    async fn read_again(&self, roll_call: Option<String>) -> Result<ClassReading, StoreError> {
        let (name, model) = (self.name.clone(), self.model_sha256);
        self.store
            .blocking(move |store| store.class_reading(&name, model, roll_call.as_deref()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attendance::embed::{DIMENSIONS, Embedding};
    use crate::attendance::rollcall::{RollCall, Rules, Sighting};
    use crate::clock::Clock;
    use crate::proto::event::Payload;
    use crate::roster::parse_csv;
    use crate::store::recorder::{Kept, Write};
    use crate::store::testing;
    use jiff::SignedDuration;

    const HOA: &str = "001206001234";
    const PAO: &str = "001206001235";

    fn unit(axis: usize) -> Embedding {
        let mut v = vec![0.0; DIMENSIONS];
        v[axis] = 1.0;
        Embedding(v)
    }

    /// Follows the class as the daemon does, with the roll call if it is open.
    async fn follow(class: &mut Class, roll: Option<&mut RollCall>) -> bool {
        let changed = class.follow(roll.as_ref().map(|roll| roll.id())).await;
        if let Some(roll) = roll.filter(|_| changed) {
            roll.follow(&class.pupils(), class.enrolled(), class.face_marks());
        }
        changed
    }

    fn roster(rows: &[(&str, &str)]) -> crate::roster::Roster {
        let mut csv = String::from(
            "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n",
        );
        for (id, consent) in rows {
            csv.push_str(&format!(
                "pupil,{id},Học sinh {id},6A1,{consent},no,2026-08-20\n"
            ));
        }
        parse_csv(csv.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn the_class_follows_enrollment_erasure_and_a_roster_that_arrives_late() {
        let (_dir, clock, store) = testing::store();
        let store = Arc::new(store);
        let mut class = Class::read(store.clone(), "6A1".into(), "model")
            .await
            .unwrap();
        assert!(class.pupils().is_empty(), "no roster yet");
        assert!(!follow(&mut class, None).await, "nothing changed");

        store
            .import_roster(&roster(&[(HOA, "yes"), (PAO, "yes")]))
            .unwrap();
        store
            .add_face_templates(&HOA.parse().unwrap(), &[unit(0)], "model")
            .unwrap();
        assert!(follow(&mut class, None).await);
        assert_eq!(class.pupils(), [HOA, PAO].map(String::from).into());
        assert_eq!(class.enrolled(), [HOA.to_owned()].into());

        let rules = Rules {
            confirm_frames: 1,
            late_after: SignedDuration::from_mins(5),
            window: SignedDuration::from_mins(15),
        };
        let (mut roll, _) = RollCall::open(
            "s1".into(),
            "l1".into(),
            "6A1".into(),
            class.pupils(),
            class.enrolled(),
            rules,
            clock.now(),
        );
        // Páo is enrolled beside the running roll call, by another connection as `face enroll` has.
        store
            .add_face_templates(&PAO.parse().unwrap(), &[unit(1)], "model")
            .unwrap();
        store
            .forget_faces(&HOA.parse().unwrap(), "parent's request")
            .unwrap();
        assert!(follow(&mut class, Some(&mut roll)).await);
        let sightings = [
            Sighting::Pupil {
                personal_id: HOA.into(),
                similarity: 0.9,
            },
            Sighting::Pupil {
                personal_id: PAO.into(),
                similarity: 0.9,
            },
        ];
        let out = roll.observe(clock.now(), &sightings);
        let marked: Vec<&str> = out
            .iter()
            .filter_map(|p| match p {
                Payload::AttendanceMark(mark) => Some(mark.personal_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            marked,
            [PAO],
            "the forgotten pupil is marked by nobody, the one enrolled meanwhile is"
        );
    }

    #[tokio::test]
    async fn a_face_mark_made_as_its_pupil_was_erased_is_left_out_by_the_store_and_taken_back_by_the_roll()
     {
        let (_dir, clock, store) = testing::store();
        let store = Arc::new(store);
        store.import_roster(&roster(&[(HOA, "yes")])).unwrap();
        store
            .add_face_templates(&HOA.parse().unwrap(), &[unit(0)], "model")
            .unwrap();
        let mut class = Class::read(store.clone(), "6A1".into(), "model")
            .await
            .unwrap();
        let rules = Rules {
            confirm_frames: 1,
            late_after: SignedDuration::from_mins(5),
            window: SignedDuration::from_mins(15),
        };
        let (mut roll, _) = RollCall::open(
            "s1".into(),
            "l1".into(),
            "6A1".into(),
            class.pupils(),
            class.enrolled(),
            rules,
            clock.now(),
        );
        let out = roll.observe(
            clock.now(),
            &[Sighting::Pupil {
                personal_id: HOA.into(),
                similarity: 0.9,
            }],
        );
        assert_eq!(out.len(), 1, "marked by the class as last read");
        // The erasure commits between that reading and the mark's commit.
        store
            .forget_faces(&HOA.parse().unwrap(), "parent's request")
            .unwrap();
        let kept = store
            .recorder()
            .keep(Write::RollCall {
                occurred_at: clock.now(),
                payloads: out,
            })
            .await;
        assert!(matches!(kept, Kept::Committed), "{kept:?}");
        assert!(
            store.attendance_marks("s1").unwrap().is_empty(),
            "the store left the mark out"
        );
        follow(&mut class, Some(&mut roll)).await;
        let out = roll.tick(clock.now() + SignedDuration::from_mins(15));
        let Some(Payload::AttendanceMark(mark)) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(
            (mark.personal_id.as_str(), mark.source()),
            (HOA, crate::proto::MarkSource::WindowClosed),
            "absent, not present"
        );
    }
}
