//! The roll call of one lesson as a state machine: sightings in, marks out.
//!
//! # Design
//! - No I/O and no clock inside: every call is handed the time, and returns the
//!   records to append to the outbox. The daemon's loop feeds it; tests drive it
//!   through a lesson in microseconds.
//! - A pupil is marked after being matched in `confirm_frames` frames (faces
//!   the models checked and matched to the pupil), so one odd frame cannot
//!   mark a child present. Two faces of one frame that both match a pupil
//!   count as one frame, not two: a wide camera that sees the whole class
//!   confirms each pupil in view over that many frames, and a lookalike
//!   beside a pupil does not hurry the mark. One mark per pupil per lesson:
//!   present, or late when first confirmed after `late_after`; pupils still
//!   unmarked when the window closes are absent.
//! - A teacher's correction wins: it replaces any mark, is recorded with source
//!   TEACHER, and no later sighting changes it. Corrections are accepted after
//!   the window has closed too (a pupil who arrives with a note from the office).
//! - The roll follows its class while it is open ([`RollCall::follow`]): a
//!   pupil added to the class joins it, to be marked like the others (a child
//!   who arrives in the class mid-lesson is in the room and must be counted); a
//!   pupil who left the class unmarked leaves it (nobody is marked absent from
//!   a class they are no longer in). Only a pupil enrolled in the class as last
//!   read (templates and face consent) is marked by face: a sighting of anyone
//!   else, judged by a gallery that has since been replaced, counts for nothing.
//! - Unknown faces are counted once per track (the same stranger over many
//!   frames is one face), after the same confirmation as pupils; so are faces
//!   the liveness check refused as photos held up to the camera. Neither ever
//!   marks anyone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};

use crate::proto::attendance_session::Phase;
use crate::proto::event::Payload;
use crate::proto::{AttendanceMark, AttendanceSession, MarkSource, MarkStatus, UnknownFaces};

/// How the roll call decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub confirm_frames: u32,
    pub late_after: SignedDuration,
    pub window: SignedDuration,
}

/// What one frame showed of one face.
#[derive(Debug, Clone, PartialEq)]
pub enum Sighting {
    /// A face matched this pupil's templates.
    Pupil {
        personal_id: String,
        similarity: f32,
    },
    /// A face (followed as `track` across frames) matched nobody enrolled.
    Unknown { track: u64 },
    /// A face (followed as `track`) the liveness check took for a photo held up to the camera.
    Photo { track: u64 },
}

#[derive(Debug, Default)]
struct PupilState {
    /// Frames in which the pupil was matched, counted until marked.
    frames: u32,
    best_similarity: f32,
    mark: Option<(MarkStatus, MarkSource)>,
}

/// A teacher's correction for a pupil who is not on this roll.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("Học sinh {0} không có trong danh sách lớp ({0} is not on the roll of this class)")]
pub struct NotOnRoll(pub String);

/// One lesson's roll call.
#[derive(Debug)]
pub struct RollCall {
    /// Its id, as the hub's records carry it (`session_id` on the wire).
    id: String,
    lesson_id: String,
    class_name: String,
    opened_at: Timestamp,
    rules: Rules,
    /// The pupils the camera may mark: templates and face consent.
    enrolled: BTreeSet<String>,
    pupils: BTreeMap<String, PupilState>,
    unknown: TrackCount,
    photos: TrackCount,
    closed: bool,
}

impl RollCall {
    /// Opens the roll call of `pupils` (every pupil of the class; `enrolled`
    /// those of them the camera may mark) at `now`.
    pub fn open(
        id: String,
        lesson_id: String,
        class_name: String,
        pupils: impl IntoIterator<Item = String>,
        enrolled: BTreeSet<String>,
        rules: Rules,
        now: Timestamp,
    ) -> (RollCall, Payload) {
        let roll = RollCall {
            id,
            lesson_id,
            class_name,
            opened_at: now,
            rules,
            enrolled,
            pupils: pupils
                .into_iter()
                .map(|id| (id, PupilState::default()))
                .collect(),
            unknown: TrackCount::default(),
            photos: TrackCount::default(),
            closed: false,
        };
        let opened = roll.summary(Phase::Opened);
        (roll, opened.into())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Follows the class as it now is: `pupils` (every pupil of the class) and
    /// `enrolled` (those the camera may mark). A mark by face of a pupil no
    /// longer enrolled is taken back unless the store kept it (`kept_face_marks`):
    /// the store leaves out a mark made as the pupil was being erased.
    pub fn follow(
        &mut self,
        pupils: &BTreeSet<String>,
        enrolled: BTreeSet<String>,
        kept_face_marks: &HashSet<String>,
    ) {
        self.pupils
            .retain(|id, state| pupils.contains(id) || state.mark.is_some());
        for id in pupils {
            self.pupils.entry(id.clone()).or_default();
        }
        for (id, state) in &mut self.pupils {
            if enrolled.contains(id) {
                continue;
            }
            state.frames = 0;
            if state
                .mark
                .is_some_and(|(_, source)| source == MarkSource::Face)
                && !kept_face_marks.contains(id)
            {
                state.mark = None;
            }
        }
        self.enrolled = enrolled;
    }

    /// When the window closes.
    pub fn closes_at(&self) -> Timestamp {
        self.opened_at + self.rules.window
    }

    /// The sightings of one frame taken at `now`. Each pupil, unknown face
    /// and photo counts once per frame, however many of its faces matched.
    pub fn observe(&mut self, now: Timestamp, sightings: &[Sighting]) -> Vec<Payload> {
        let mut out = self.tick(now);
        if self.closed {
            return out;
        }
        let late = now.duration_since(self.opened_at) >= self.rules.late_after;
        let confirm = self.rules.confirm_frames;
        let frame = FrameSightings::of(sightings);
        for (personal_id, similarity) in frame.pupils {
            let Some(state) = self
                .pupils
                .get_mut(personal_id)
                .filter(|_| self.enrolled.contains(personal_id))
            else {
                continue;
            };
            state.best_similarity = state.best_similarity.max(similarity);
            if state.mark.is_some() {
                continue;
            }
            state.frames += 1;
            if state.frames >= confirm {
                let status = if late {
                    MarkStatus::Late
                } else {
                    MarkStatus::Present
                };
                state.mark = Some((status, MarkSource::Face));
                let mark = self.mark(personal_id, status, MarkSource::Face);
                out.push(mark.into());
            }
        }
        let mut unknown_grew = false;
        for track in frame.unknown {
            unknown_grew |= self.unknown.see(track, confirm);
        }
        for track in frame.photos {
            self.photos.see(track, confirm);
        }
        if unknown_grew {
            out.push(
                UnknownFaces {
                    session_id: self.id.clone(),
                    count: self.unknown.count(),
                }
                .into(),
            );
        }
        out
    }

    /// True once every pupil the camera may mark has a mark: frames can no
    /// longer change the roll, so nothing needs to look for faces until the
    /// class changes or the window closes. A roll with nobody the camera may
    /// mark is never complete: its frames still count unknown faces.
    pub fn is_complete(&self) -> bool {
        !self.enrolled.is_empty()
            && self
                .enrolled
                .iter()
                .all(|id| self.pupils.get(id).is_none_or(|state| state.mark.is_some()))
    }

    /// Closes the window when its time has come: every unmarked pupil is absent.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Payload> {
        if self.closed || now < self.closes_at() {
            return Vec::new();
        }
        self.closed = true;
        let unmarked: Vec<String> = self
            .pupils
            .iter()
            .filter(|(_, state)| state.mark.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(unmarked.len() + 1);
        for id in unmarked {
            self.pupils.get_mut(&id).expect("listed above").mark =
                Some((MarkStatus::Absent, MarkSource::WindowClosed));
            out.push(
                self.mark(&id, MarkStatus::Absent, MarkSource::WindowClosed)
                    .into(),
            );
        }
        out.push(self.summary(Phase::Closed).into());
        out
    }

    /// A teacher's correction at the panel: it replaces any mark and no sighting changes it afterwards.
    pub fn correct(
        &mut self,
        personal_id: &str,
        status: MarkStatus,
        reason: &str,
        teacher_personal_id: &str,
    ) -> Result<Payload, NotOnRoll> {
        let state = self
            .pupils
            .get_mut(personal_id)
            .ok_or_else(|| NotOnRoll(personal_id.to_owned()))?;
        state.mark = Some((status, MarkSource::Teacher));
        let mut mark = self.mark(personal_id, status, MarkSource::Teacher);
        mark.reason = reason.to_owned();
        mark.teacher_personal_id = teacher_personal_id.to_owned();
        Ok(mark.into())
    }

    fn mark(&self, personal_id: &str, status: MarkStatus, source: MarkSource) -> AttendanceMark {
        let state = &self.pupils[personal_id];
        AttendanceMark {
            session_id: self.id.clone(),
            lesson_id: self.lesson_id.clone(),
            personal_id: personal_id.to_owned(),
            status: status as i32,
            source: source as i32,
            best_similarity: if source == MarkSource::Face {
                state.best_similarity
            } else {
                0.0
            },
            ..Default::default()
        }
    }

    /// What the roll call is at `phase`, with its counts once closed.
    fn summary(&self, phase: Phase) -> AttendanceSession {
        let count = |wanted: MarkStatus| {
            self.pupils
                .values()
                .filter(|s| s.mark.is_some_and(|(status, _)| status == wanted))
                .count() as u32
        };
        let closed = phase == Phase::Closed;
        AttendanceSession {
            session_id: self.id.clone(),
            lesson_id: self.lesson_id.clone(),
            class_name: self.class_name.clone(),
            phase: phase as i32,
            present: if closed {
                count(MarkStatus::Present)
            } else {
                0
            },
            late: if closed { count(MarkStatus::Late) } else { 0 },
            absent: if closed { count(MarkStatus::Absent) } else { 0 },
            excused: if closed {
                count(MarkStatus::Excused)
            } else {
                0
            },
            unknown_faces: self.unknown.count(),
            enrolled: self.enrolled.len() as u32,
            photos_refused: self.photos.count(),
        }
    }
}

/// One frame's sightings, each pupil, unknown track and photo track once.
struct FrameSightings<'a> {
    /// Each pupil matched, with the best similarity of its faces in the frame.
    pupils: BTreeMap<&'a str, f32>,
    unknown: BTreeSet<u64>,
    photos: BTreeSet<u64>,
}

impl<'a> FrameSightings<'a> {
    fn of(sightings: &'a [Sighting]) -> Self {
        let mut frame = FrameSightings {
            pupils: BTreeMap::new(),
            unknown: BTreeSet::new(),
            photos: BTreeSet::new(),
        };
        for sighting in sightings {
            match sighting {
                Sighting::Pupil {
                    personal_id,
                    similarity,
                } => {
                    let best = frame.pupils.entry(personal_id).or_insert(*similarity);
                    *best = best.max(*similarity);
                }
                Sighting::Unknown { track } => {
                    frame.unknown.insert(*track);
                }
                Sighting::Photo { track } => {
                    frame.photos.insert(*track);
                }
            }
        }
        frame
    }
}

/// Faces followed across frames, each counted once it has been seen in enough frames.
#[derive(Debug, Default)]
struct TrackCount {
    frames: HashMap<u64, u32>,
    counted: HashSet<u64>,
}

impl TrackCount {
    /// One more frame of `track`; true when that makes it count.
    fn see(&mut self, track: u64, confirm: u32) -> bool {
        let seen = self.frames.entry(track).or_default();
        *seen += 1;
        *seen >= confirm && self.counted.insert(track)
    }

    fn count(&self) -> u32 {
        self.counted.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOA: &str = "001206001234";
    const PAO: &str = "001206001235";
    const MAI: &str = "001206001236";

    fn start() -> Timestamp {
        "2026-09-07T00:30:00Z".parse().unwrap()
    }

    fn roll() -> RollCall {
        let rules = Rules {
            confirm_frames: 3,
            late_after: SignedDuration::from_mins(5),
            window: SignedDuration::from_mins(15),
        };
        let pupils = [HOA, PAO, MAI].map(String::from);
        let (roll, opened) = RollCall::open(
            "s1".into(),
            "2026-09-07/morning/1".into(),
            "6A1".into(),
            pupils.clone(),
            pupils.into(),
            rules,
            start(),
        );
        let Payload::AttendanceSession(opened) = opened else {
            panic!("an opened roll call")
        };
        assert_eq!(opened.phase, Phase::Opened as i32);
        roll
    }

    fn seen(id: &str, similarity: f32) -> Sighting {
        Sighting::Pupil {
            personal_id: id.to_owned(),
            similarity,
        }
    }

    fn marks(out: &[Payload]) -> Vec<(String, MarkStatus, MarkSource)> {
        out.iter()
            .filter_map(|p| match p {
                Payload::AttendanceMark(m) => Some((m.personal_id.clone(), m.status(), m.source())),
                _ => None,
            })
            .collect()
    }

    fn at(minutes: i64) -> Timestamp {
        start() + SignedDuration::from_mins(minutes)
    }

    #[test]
    fn a_pupil_is_marked_once_after_enough_frames() {
        let mut roll = roll();
        assert!(roll.observe(at(1), &[seen(HOA, 0.6)]).is_empty());
        assert!(roll.observe(at(1), &[seen(HOA, 0.8)]).is_empty());
        let out = roll.observe(at(1), &[seen(HOA, 0.7)]);
        assert_eq!(
            marks(&out),
            vec![(HOA.to_owned(), MarkStatus::Present, MarkSource::Face)]
        );
        let Payload::AttendanceMark(mark) = &out[0] else {
            unreachable!()
        };
        assert_eq!(mark.best_similarity, 0.8);
        assert!(
            roll.observe(at(2), &[seen(HOA, 0.9), seen(HOA, 0.9), seen(HOA, 0.9)])
                .is_empty(),
            "one mark per lesson"
        );
    }

    #[test]
    fn two_faces_matching_one_pupil_in_one_frame_count_as_one_frame() {
        let mut roll = roll();
        let lookalikes = [seen(HOA, 0.6), seen(HOA, 0.9), seen(HOA, 0.7)];
        assert!(
            roll.observe(at(1), &lookalikes).is_empty(),
            "one frame, not three"
        );
        assert!(roll.observe(at(1), &lookalikes).is_empty(), "two frames");
        let out = roll.observe(at(1), &[seen(HOA, 0.65)]);
        assert_eq!(
            marks(&out),
            vec![(HOA.to_owned(), MarkStatus::Present, MarkSource::Face)]
        );
        let Payload::AttendanceMark(mark) = &out[0] else {
            unreachable!()
        };
        assert_eq!(mark.best_similarity, 0.9, "the best face of any frame");
    }

    #[test]
    fn a_wide_camera_confirms_the_whole_class_in_its_first_frames_and_the_roll_is_then_complete() {
        let mut roll = roll();
        let class = [
            seen(HOA, 0.7),
            seen(PAO, 0.6),
            seen(MAI, 0.8),
            Sighting::Unknown { track: 9 },
            Sighting::Unknown { track: 9 },
        ];
        assert!(marks(&roll.observe(at(0), &class)).is_empty());
        assert!(marks(&roll.observe(at(0), &class)).is_empty());
        assert!(!roll.is_complete());
        let out = roll.observe(at(0), &class);
        assert_eq!(
            marks(&out).len(),
            3,
            "every pupil in view, at the third frame: {out:?}"
        );
        assert!(
            out.contains(
                &UnknownFaces {
                    session_id: "s1".into(),
                    count: 1
                }
                .into()
            ),
            "one stranger, seen in three frames: {out:?}"
        );
        assert!(roll.is_complete(), "nothing left for the camera to mark");
        roll.follow(
            &[HOA, PAO, MAI, "001206009999"].map(String::from).into(),
            [HOA, PAO, MAI, "001206009999"].map(String::from).into(),
            &HashSet::new(),
        );
        assert!(
            !roll.is_complete(),
            "a pupil who joins the class is still to be seen"
        );
    }

    #[test]
    fn late_after_the_configured_minute_and_absent_when_the_window_closes() {
        let mut roll = roll();
        for _ in 0..3 {
            roll.observe(at(2), &[seen(HOA, 0.6)]);
        }
        let mut out = Vec::new();
        for _ in 0..3 {
            out.extend(roll.observe(at(7), &[seen(PAO, 0.6)]));
        }
        assert_eq!(
            marks(&out),
            vec![(PAO.to_owned(), MarkStatus::Late, MarkSource::Face)]
        );
        assert!(roll.tick(at(14)).is_empty());
        let out = roll.tick(at(15));
        assert_eq!(
            marks(&out),
            vec![(MAI.to_owned(), MarkStatus::Absent, MarkSource::WindowClosed)]
        );
        let Some(Payload::AttendanceSession(closed)) = out.last() else {
            panic!("the roll call closes")
        };
        assert_eq!(
            (closed.present, closed.late, closed.absent, closed.phase),
            (1, 1, 1, Phase::Closed as i32)
        );
        assert!(
            roll.observe(at(16), &[seen(MAI, 0.9), seen(MAI, 0.9), seen(MAI, 0.9)])
                .is_empty()
        );
        assert!(roll.tick(at(20)).is_empty(), "closes once");
    }

    #[test]
    fn a_teacher_correction_wins_over_the_camera() {
        let mut roll = roll();
        let correction = roll
            .correct(MAI, MarkStatus::Excused, "ốm, có giấy phép", "001186004321")
            .unwrap();
        let Payload::AttendanceMark(mark) = correction else {
            panic!("a mark")
        };
        assert_eq!(
            (mark.source(), mark.status(), mark.reason.as_str()),
            (MarkSource::Teacher, MarkStatus::Excused, "ốm, có giấy phép")
        );
        for _ in 0..5 {
            assert!(marks(&roll.observe(at(1), &[seen(MAI, 0.9)])).is_empty());
        }
        let out = roll.tick(at(15));
        let Some(Payload::AttendanceSession(closed)) = out.last() else {
            panic!()
        };
        assert_eq!((closed.excused, closed.absent), (1, 2));
        assert_eq!(
            roll.correct("009999999999", MarkStatus::Present, "", ""),
            Err(NotOnRoll("009999999999".into()))
        );
    }

    fn ids(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    #[test]
    fn a_pupil_no_longer_enrolled_is_never_marked_by_face_and_an_unkept_face_mark_is_taken_back() {
        const LAN: &str = "001206001237";
        let mut roll = roll();
        roll.observe(at(1), &[seen(HOA, 0.6), seen(PAO, 0.6)]);
        roll.observe(at(1), &[seen(HOA, 0.6), seen(PAO, 0.6)]);
        let out = roll.observe(at(1), &[seen(HOA, 0.6), seen(PAO, 0.6)]);
        assert_eq!(marks(&out).len(), 2);
        roll.observe(at(1), &[seen(MAI, 0.6), seen(MAI, 0.6)]);
        // Hoa's and Mai's templates are erased; the store kept Páo's mark and
        // left out Hoa's, made as she was erased; Lan joins the class, enrolled.
        roll.follow(
            &ids(&[HOA, PAO, MAI, LAN]),
            ids(&[PAO, LAN]),
            &ids(&[PAO]).into_iter().collect(),
        );
        assert!(
            roll.observe(
                at(2),
                &[
                    seen(HOA, 0.9),
                    seen(MAI, 0.9),
                    seen(MAI, 0.9),
                    seen(MAI, 0.9)
                ]
            )
            .is_empty(),
            "no mark by face"
        );
        let mut joined = Vec::new();
        for _ in 0..3 {
            joined.extend(roll.observe(at(2), &[seen(LAN, 0.7)]));
        }
        assert_eq!(
            marks(&joined),
            vec![(LAN.to_owned(), MarkStatus::Present, MarkSource::Face)]
        );
        let out = roll.tick(at(15));
        assert_eq!(
            marks(&out),
            vec![
                (HOA.to_owned(), MarkStatus::Absent, MarkSource::WindowClosed),
                (MAI.to_owned(), MarkStatus::Absent, MarkSource::WindowClosed)
            ]
        );
        let Some(Payload::AttendanceSession(closed)) = out.last() else {
            panic!()
        };
        assert_eq!((closed.present, closed.absent, closed.enrolled), (2, 2, 2));
    }

    #[test]
    fn a_pupil_who_leaves_the_class_unmarked_leaves_the_roll_and_a_marked_one_keeps_the_mark() {
        let mut roll = roll();
        for _ in 0..3 {
            roll.observe(at(1), &[seen(HOA, 0.6)]);
        }
        roll.follow(
            &ids(&[MAI]),
            ids(&[MAI]),
            &ids(&[HOA]).into_iter().collect(),
        );
        let on_roll: Vec<&str> = roll.pupils.keys().map(String::as_str).collect();
        assert_eq!(on_roll, [HOA, MAI], "Páo left the class unmarked");
        assert_eq!(
            roll.correct(PAO, MarkStatus::Excused, "", ""),
            Err(NotOnRoll(PAO.into()))
        );
        let out = roll.tick(at(15));
        assert_eq!(
            marks(&out),
            vec![(MAI.to_owned(), MarkStatus::Absent, MarkSource::WindowClosed)]
        );
    }

    #[test]
    fn unknown_faces_are_counted_once_per_track() {
        let mut roll = roll();
        let mut counts = Vec::new();
        for _ in 0..10 {
            for payload in roll.observe(
                at(1),
                &[
                    Sighting::Unknown { track: 7 },
                    Sighting::Unknown { track: 9 },
                ],
            ) {
                if let Payload::UnknownFaces(unknown) = payload {
                    counts.push(unknown.count);
                }
            }
        }
        assert_eq!(counts, vec![2]);
        let out = roll.tick(at(15));
        let Some(Payload::AttendanceSession(closed)) = out.last() else {
            panic!()
        };
        assert_eq!(closed.unknown_faces, 2);
    }

    #[test]
    fn photos_held_up_are_counted_once_per_track_and_mark_nobody() {
        let mut roll = roll();
        let mut out = Vec::new();
        for _ in 0..5 {
            out.extend(roll.observe(at(1), &[Sighting::Photo { track: 3 }]));
        }
        out.extend(roll.observe(at(2), &[Sighting::Photo { track: 4 }]));
        assert!(marks(&out).is_empty(), "{out:?}");
        let out = roll.tick(at(15));
        let Some(Payload::AttendanceSession(closed)) = out.last() else {
            panic!()
        };
        assert_eq!(
            (closed.photos_refused, closed.unknown_faces),
            (1, 0),
            "track 4 was seen in one frame only"
        );
        assert_eq!(closed.absent, 3);
    }
}
