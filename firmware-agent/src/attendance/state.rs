//! What attendance decides, as a state machine without I/O: which roll call
//! is open, what the camera must deliver, and what to record.
//!
//! # Design
//! - In the style of quinn-proto's connection: the daemon's loop hands
//!   [`Attendance`] what happened (the time, a frame's faces, the class as
//!   last read, a new timetable, a teacher's correction), performs the
//!   [`Action`]s it returns, tells the camera what
//!   [`Attendance::frames_wanted`] says, and sleeps until
//!   [`Attendance::poll_timeout`], when it calls [`Attendance::handle_timeout`].
//!   Nothing here reads a clock, sleeps, or touches the store, the camera or
//!   the lights, so a school day runs through it in microseconds (the tests
//!   below).
//! - A roll call opens at the start of each period of the timetable (see
//!   [`super::lessons`]), or once when attendance starts in a room without a
//!   timetable, for the class in `attendance.class`, and closes after
//!   `attendance.window_minutes`. A class without pupils opens none: it waits
//!   for its roster, degraded.
//! - What the camera must deliver ([`FramesWanted`]): during a roll call,
//!   every frame through every model until every pupil the camera may mark
//!   has been marked (a wide camera does it in its first frames); after
//!   that, and between roll calls, only what the
//!   empty-room rule needs, the detector alone on one frame every twentieth
//!   of the rule's wait (at most one a second), so the lights go off at most a
//!   twentieth late; and nothing at all when that rule is off.
//! - The empty-room rule: no face in the frames for `empty_room_minutes`
//!   switches the lights off once (as automation, so a lesson on the timetable
//!   or the teacher still wins), and not again until a face has been seen.
//! - Every instant it is handed is wall-clock time, as the timetable is
//!   written; a clock stepped by NTP is taken as it is at the next call.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::config::AttendanceConfig;
use super::lessons::{self, Next};
use super::rollcall::{NotOnRoll, RollCall, Rules, Sighting};
use crate::health::State;
use crate::proto::MarkStatus;
use crate::proto::event::Payload;
use crate::schedule::timetable::Timetable;

/// What the camera must deliver now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramesWanted {
    /// No frames: the source may close.
    Nothing,
    /// One frame every so often through the detector alone: is anybody there?
    DetectEvery(Duration),
    /// Every frame through every model: who is there?
    Recognise,
}

/// What the models made of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameSeen {
    /// Faces large enough to count, whatever their verdict.
    pub faces: usize,
    /// What the roll call counts of them: none for a frame through the detector alone.
    pub sightings: Vec<Sighting>,
}

/// What the daemon must do for the state machine, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Keep these records of the roll call, which happened at `at`.
    Record {
        at: Timestamp,
        payloads: Vec<Payload>,
    },
    /// Report attendance's health.
    Health(State, String),
    /// A roll call opens: every face is to be checked afresh, whoever its track was.
    CheckFacesAfresh,
    /// No face was seen for this long: switch the lights off.
    RoomEmpty(SignedDuration),
}

/// Why a teacher's correction was not taken; the desk says it to the teacher
/// in Vietnamese (`desk.rs`), this says it in English for the logs.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CorrectionRefused {
    #[error("no roll call is open")]
    NoRollCall,
    /// Attendance is no longer running to take it.
    #[error("the roll call has stopped")]
    Stopped,
    #[error(transparent)]
    NotOnRoll(#[from] NotOnRoll),
}

/// A room's attendance: the roll calls of its class and the empty-room rule.
#[derive(Debug)]
pub struct Attendance {
    class_name: String,
    timezone: String,
    rules: Rules,
    timetable: Option<Timetable>,
    /// Every pupil of the class and those of them the camera may mark, as last read.
    pupils: BTreeSet<String>,
    enrolled: BTreeSet<String>,
    /// The roll call opened last, open or closed.
    roll: Option<RollCall>,
    /// The lesson of the roll call opened last: it never opens twice.
    last_lesson: Option<String>,
    /// When to look again for a roll call to open, while none is open.
    next_check: Option<Timestamp>,
    empty_room_after: Option<SignedDuration>,
    last_face_seen: Timestamp,
    reported_empty: bool,
    health: Option<(State, String)>,
    actions: Vec<Action>,
}

/// How often, at most, the detector looks for faces between roll calls.
const FASTEST_DETECTION: Duration = Duration::from_secs(1);
/// Past a week without periods, the timetable is read again a day later.
const RECHECK_WITHOUT_PERIODS: SignedDuration = SignedDuration::from_hours(24);

impl Attendance {
    /// Attendance as `config` asks, in the room's `timezone`, starting at `now`
    /// with `timetable` (`None` in a room without periods) and a class with no
    /// pupils yet: hand it the class with [`Attendance::follow_class`].
    pub fn new(
        config: &AttendanceConfig,
        timezone: String,
        timetable: Option<Timetable>,
        now: Timestamp,
    ) -> Attendance {
        let minutes = |minutes: f64| SignedDuration::from_secs_f64(minutes * 60.0);
        Attendance {
            class_name: config.class.clone(),
            timezone,
            rules: Rules {
                confirm_frames: config.confirm_frames,
                late_after: minutes(config.late_after_minutes),
                window: minutes(config.window_minutes),
            },
            timetable,
            pupils: BTreeSet::new(),
            enrolled: BTreeSet::new(),
            roll: None,
            last_lesson: None,
            next_check: None,
            empty_room_after: (config.empty_room_minutes > 0.0)
                .then(|| minutes(config.empty_room_minutes)),
            last_face_seen: now,
            reported_empty: false,
            health: None,
            actions: Vec::new(),
        }
    }

    /// The next thing to do, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        (!self.actions.is_empty()).then(|| self.actions.remove(0))
    }

    /// When [`Attendance::handle_timeout`] is next due: the open roll call's
    /// close, or the next time to look for one to open.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.open_roll() {
            Some(roll) => Some(roll.closes_at()),
            None => self.next_check,
        }
    }

    /// Does what is due at `now`: closes the open roll call when its window
    /// has passed, and opens the next when its period has started. Calling it
    /// early does nothing wrong.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(roll) = self.roll.as_mut() {
            let closed = roll.tick(now);
            self.record(now, closed);
        }
        if self.open_roll().is_some() {
            return;
        }
        if self.pupils.is_empty() {
            self.next_check = None;
            let detail = format!(
                "class `{}` has no pupils: import the roster, or fix attendance.class; the roll call starts once it has some",
                self.class_name
            );
            return self.report(State::Degraded, detail);
        }
        let due = match &self.timetable {
            Some(timetable) => lessons::next(
                timetable,
                now,
                self.rules.window,
                self.last_lesson.as_deref(),
            ),
            None if self.last_lesson.is_none() => Next::Open {
                lesson_id: lesson_id(now, &self.timezone),
                start: now,
            },
            None => Next::Never,
        };
        match due {
            Next::Open { lesson_id, start } => self.open(now, lesson_id, start),
            Next::Wait(at) => {
                self.next_check = Some(at);
                self.report(State::Ok, format!("waiting for the next period ({at})"));
            }
            Next::Never if self.timetable.is_some() => {
                self.next_check = Some(now + RECHECK_WITHOUT_PERIODS);
                self.report(State::Ok, "no period in the coming week".to_owned());
            }
            Next::Never => {
                self.next_check = None;
                self.report(
                    State::Ok,
                    "no timetable: the one roll call, at start, has been taken".to_owned(),
                );
            }
        }
    }

    /// The class as just read: `pupils` (every pupil of the class), `enrolled`
    /// (those the camera may mark) and `kept_face_marks` (the pupils whose
    /// marks by face the store kept for the open roll call). The open roll
    /// call follows it; the next one opens with it.
    pub fn follow_class(
        &mut self,
        now: Timestamp,
        pupils: BTreeSet<String>,
        enrolled: BTreeSet<String>,
        kept_face_marks: &HashSet<String>,
    ) {
        if let Some(roll) = self.roll.as_mut().filter(|roll| !roll.is_closed()) {
            roll.follow(&pupils, enrolled.clone(), kept_face_marks);
        }
        (self.pupils, self.enrolled) = (pupils, enrolled);
        self.handle_timeout(now);
    }

    /// The timetable as the config now has it.
    pub fn follow_timetable(&mut self, now: Timestamp, timetable: Option<Timetable>) {
        self.timetable = timetable;
        self.handle_timeout(now);
    }

    /// What the models made of a frame, handed at `now`. A frame with
    /// sightings of pupils is handed only after the class was read again
    /// (the module `people` says why).
    pub fn handle_frame(&mut self, now: Timestamp, seen: &FrameSeen) {
        if seen.faces > 0 {
            self.last_face_seen = now;
            self.reported_empty = false;
        } else if let Some(after) = self.empty_room_after.filter(|after| {
            !self.reported_empty && now.duration_since(self.last_face_seen) >= *after
        }) {
            self.reported_empty = true;
            self.actions.push(Action::RoomEmpty(after));
        }
        if let Some(roll) = self.roll.as_mut() {
            let out = roll.observe(now, &seen.sightings);
            self.record(now, out);
        }
        self.handle_timeout(now);
    }

    /// A teacher's correction at `now`: recorded, to be kept before the teacher hears it was taken.
    pub fn correct(
        &mut self,
        now: Timestamp,
        personal_id: &str,
        status: MarkStatus,
        reason: &str,
    ) -> Result<(), CorrectionRefused> {
        let roll = self.roll.as_mut().ok_or(CorrectionRefused::NoRollCall)?;
        let mark = roll.correct(personal_id, status, reason, "")?;
        self.record(now, vec![mark]);
        Ok(())
    }

    /// What the camera must deliver now.
    pub fn frames_wanted(&self) -> FramesWanted {
        if self.open_roll().is_some_and(|roll| !roll.is_complete()) {
            return FramesWanted::Recognise;
        }
        match self.empty_room_after {
            Some(after) => {
                FramesWanted::DetectEvery((after.unsigned_abs() / 20).max(FASTEST_DETECTION))
            }
            None => FramesWanted::Nothing,
        }
    }

    /// The id of the roll call open now, if any.
    pub fn open_roll_call(&self) -> Option<&str> {
        self.open_roll().map(RollCall::id)
    }

    fn open_roll(&self) -> Option<&RollCall> {
        self.roll.as_ref().filter(|roll| !roll.is_closed())
    }

    fn open(&mut self, now: Timestamp, lesson_id: String, start: Timestamp) {
        let id = roll_call_id(now);
        let (roll, opened) = RollCall::open(
            id,
            lesson_id.clone(),
            self.class_name.clone(),
            self.pupils.clone(),
            self.enrolled.clone(),
            self.rules,
            start,
        );
        // Each lesson's pupils are checked afresh: who sat where in the last one proves nothing.
        self.actions.push(Action::CheckFacesAfresh);
        self.record(now, vec![opened]);
        let detail = format!(
            "roll call of {} open; {} of {} pupils enrolled",
            self.class_name,
            self.enrolled.len(),
            self.pupils.len()
        );
        self.report(State::Ok, detail);
        self.roll = Some(roll);
        self.last_lesson = Some(lesson_id);
        self.next_check = None;
    }

    fn record(&mut self, at: Timestamp, payloads: Vec<Payload>) {
        if !payloads.is_empty() {
            self.actions.push(Action::Record { at, payloads });
        }
    }

    /// Reports health when it changed.
    fn report(&mut self, state: State, detail: String) {
        let report = (state, detail);
        if self.health.as_ref() != Some(&report) {
            self.actions
                .push(Action::Health(report.0, report.1.clone()));
            self.health = Some(report);
        }
    }
}

/// A new roll call's id: a UUID v7 of the instant it opened.
fn roll_call_id(now: Timestamp) -> String {
    let instant = uuid::Timestamp::from_unix(
        uuid::NoContext,
        now.as_second() as u64,
        now.subsec_nanosecond() as u32,
    );
    uuid::Uuid::new_v7(instant).to_string()
}

/// "YYYY-MM-DD/<shift>/<HHMM>" in the room's time zone: the date, the shift of
/// the day, and the time the roll call opened.
fn lesson_id(now: Timestamp, timezone: &str) -> String {
    let local = now.to_zoned(jiff::tz::TimeZone::get(timezone).unwrap_or(jiff::tz::TimeZone::UTC));
    let shift = if local.hour() < 12 {
        "morning"
    } else {
        "afternoon"
    };
    format!(
        "{}/{shift}/{:02}{:02}",
        local.date(),
        local.hour(),
        local.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::MarkSource;
    use crate::proto::attendance_session::Phase;
    use crate::schedule::config::ScheduleConfig;
    use crate::schedule::scheduler::tests::at;

    const HOA: &str = "001206001234";
    const PAO: &str = "001206001235";
    const MAI: &str = "001206001236";

    /// A school day: five morning periods of 45 minutes with a longer break
    /// after the third, and two in the afternoon; Tuesday is a holiday.
    fn timetable() -> Timetable {
        let config: ScheduleConfig = toml::from_str(
            "[[shifts]]\nname = \"Sáng\"\ndays = [\"mon\", \"tue\", \"wed\"]\nperiods = [\
             { start = \"07:00\", end = \"07:45\" }, { start = \"07:50\", end = \"08:35\" }, { start = \"08:40\", end = \"09:25\" },\
             { start = \"09:45\", end = \"10:30\" }, { start = \"10:35\", end = \"11:20\" }]\n\n\
             [[shifts]]\nname = \"Chiều\"\ndays = [\"mon\", \"tue\", \"wed\"]\nperiods = [\
             { start = \"13:30\", end = \"14:15\" }, { start = \"14:20\", end = \"15:05\" }]\n\n\
             [[exceptions]]\ndate = \"2026-09-08\"\nkind = \"holiday\"\nname = \"Nghỉ bù\"\n",
        )
        .unwrap();
        Timetable::new(config, "Asia/Ho_Chi_Minh").unwrap()
    }

    /// Class 6A1's rules: a 15-minute window, late after 5 minutes, two sightings to confirm.
    fn config(empty_room_minutes: f64) -> AttendanceConfig {
        AttendanceConfig {
            class: "6A1".into(),
            confirm_frames: 2,
            late_after_minutes: 5.0,
            window_minutes: 15.0,
            empty_room_minutes,
            ..AttendanceConfig::default()
        }
    }

    fn ids(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    /// The state machine and the time, driven as the daemon drives it but in
    /// simulated time: each wait ends at once at the deadline it asked for.
    struct Room {
        attendance: Attendance,
        now: Timestamp,
        /// Every action taken, with when.
        done: Vec<(Timestamp, Action)>,
        /// How often the machine was woken by its own deadline.
        wakes: usize,
    }

    impl Room {
        fn new(config: &AttendanceConfig, timetable: Option<Timetable>, start: Timestamp) -> Room {
            let attendance = Attendance::new(config, "Asia/Ho_Chi_Minh".into(), timetable, start);
            let mut room = Room {
                attendance,
                now: start,
                done: Vec::new(),
                wakes: 0,
            };
            room.attendance.follow_class(
                start,
                ids(&[HOA, PAO, MAI]),
                ids(&[HOA, PAO]),
                &HashSet::new(),
            );
            room.drain();
            room
        }

        fn drain(&mut self) {
            while let Some(action) = self.attendance.poll_action() {
                self.done.push((self.now, action));
            }
        }

        /// Lets time pass to `until`, waking the machine at each deadline it names.
        fn run_until(&mut self, until: Timestamp) {
            while let Some(deadline) = self
                .attendance
                .poll_timeout()
                .filter(|deadline| *deadline <= until)
            {
                self.now = deadline.max(self.now);
                self.wakes += 1;
                self.attendance.handle_timeout(self.now);
                self.drain();
            }
            self.now = until;
        }

        fn frame(&mut self, at: Timestamp, faces: usize, sightings: Vec<Sighting>) {
            self.run_until(at);
            self.attendance
                .handle_frame(at, &FrameSeen { faces, sightings });
            self.drain();
        }

        /// The records kept so far, each with when.
        fn records(&self) -> Vec<(Timestamp, &Payload)> {
            self.done
                .iter()
                .filter_map(|(when, action)| match action {
                    Action::Record { at, payloads } => {
                        assert_eq!(at, when, "a record happens when it is decided");
                        Some(payloads.iter().map(move |payload| (*at, payload)))
                    }
                    _ => None,
                })
                .flatten()
                .collect()
        }

        /// The roll calls' summaries: (when, lesson, phase, present, late, absent).
        fn summaries(&self) -> Vec<(Timestamp, String, Phase, u32, u32, u32)> {
            self.records()
                .into_iter()
                .filter_map(|(at, payload)| match payload {
                    Payload::AttendanceSession(s) => Some((
                        at,
                        s.lesson_id.clone(),
                        s.phase(),
                        s.present,
                        s.late,
                        s.absent,
                    )),
                    _ => None,
                })
                .collect()
        }

        fn marks(&self) -> Vec<(String, MarkStatus, MarkSource)> {
            self.records()
                .into_iter()
                .filter_map(|(_, payload)| match payload {
                    Payload::AttendanceMark(m) => {
                        Some((m.personal_id.clone(), m.status(), m.source()))
                    }
                    _ => None,
                })
                .collect()
        }
    }

    fn seen(id: &str) -> Sighting {
        Sighting::Pupil {
            personal_id: id.to_owned(),
            similarity: 0.7,
        }
    }

    #[test]
    fn a_school_day_opens_a_roll_call_at_each_period_and_closes_it_after_its_window() {
        let mut room = Room::new(&config(10.0), Some(timetable()), at("2026-09-07T05:30"));
        assert_eq!(room.attendance.poll_timeout(), Some(at("2026-09-07T07:00")));
        assert_eq!(
            room.attendance.frames_wanted(),
            FramesWanted::DetectEvery(Duration::from_secs(30)),
            "the empty-room rule's twentieth"
        );
        room.run_until(at("2026-09-07T07:03"));
        assert_eq!(room.attendance.frames_wanted(), FramesWanted::Recognise);
        room.run_until(at("2026-09-07T07:20"));
        assert_eq!(
            room.attendance.frames_wanted(),
            FramesWanted::DetectEvery(Duration::from_secs(30))
        );
        room.run_until(at("2026-09-08T23:00"));

        let starts = [
            "07:00", "07:50", "08:40", "09:45", "10:35", "13:30", "14:20",
        ];
        let mut expected = Vec::new();
        for (index, start) in starts.iter().enumerate() {
            let shift = if index < 5 { "Sáng" } else { "Chiều" };
            let number = if index < 5 { index + 1 } else { index - 4 };
            let lesson = format!("2026-09-07/{shift}/{number}");
            let opened = at(&format!("2026-09-07T{start}"));
            expected.push((opened, lesson.clone(), Phase::Opened, 0, 0, 0));
            expected.push((
                opened + SignedDuration::from_mins(15),
                lesson,
                Phase::Closed,
                0,
                0,
                3,
            ));
        }
        assert_eq!(
            room.summaries(),
            expected,
            "the holiday on Tuesday takes no roll call"
        );
        assert_eq!(
            room.attendance.poll_timeout(),
            Some(at("2026-09-09T07:00")),
            "Wednesday's first period"
        );
        assert_eq!(
            room.wakes,
            2 * starts.len(),
            "woken only to open and to close, never polling"
        );
        let afresh = room
            .done
            .iter()
            .filter(|(_, action)| *action == Action::CheckFacesAfresh)
            .count();
        assert_eq!(
            afresh,
            starts.len(),
            "each period's faces are checked afresh"
        );
        let mut ids: Vec<&str> = room
            .records()
            .into_iter()
            .filter_map(|(_, payload)| match payload {
                Payload::AttendanceSession(s) => Some(s.session_id.as_str()),
                _ => None,
            })
            .collect();
        ids.dedup();
        assert_eq!(
            ids.len(),
            starts.len(),
            "one id a roll call, shared by its opening and its close"
        );
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "ids ordered by when they opened: {ids:?}"
        );
    }

    #[test]
    fn sightings_mark_present_then_late_and_the_teacher_corrects_even_after_the_close() {
        let mut room = Room::new(&config(10.0), Some(timetable()), at("2026-09-07T06:55"));
        assert_eq!(
            room.attendance
                .correct(room.now, MAI, MarkStatus::Excused, "ốm"),
            Err(CorrectionRefused::NoRollCall)
        );
        room.frame(
            at("2026-09-07T07:01"),
            2,
            vec![seen(HOA), Sighting::Unknown { track: 4 }],
        );
        room.frame(
            at("2026-09-07T07:01:01"),
            2,
            vec![seen(HOA), Sighting::Unknown { track: 4 }],
        );
        room.frame(at("2026-09-07T07:06"), 1, vec![seen(PAO)]);
        room.frame(at("2026-09-07T07:06:01"), 1, vec![seen(PAO)]);
        room.frame(at("2026-09-07T07:06:02"), 1, vec![seen(MAI), seen(MAI)]);
        assert_eq!(
            room.marks(),
            vec![
                (HOA.to_owned(), MarkStatus::Present, MarkSource::Face),
                (PAO.to_owned(), MarkStatus::Late, MarkSource::Face)
            ],
            "Mai has no templates: her sightings count for nothing"
        );
        room.run_until(at("2026-09-07T07:30"));
        room.attendance
            .correct(room.now, MAI, MarkStatus::Excused, "ốm, có giấy phép")
            .unwrap();
        room.drain();
        let marks = room.marks();
        assert_eq!(
            marks[2..],
            [
                (MAI.to_owned(), MarkStatus::Absent, MarkSource::WindowClosed),
                (MAI.to_owned(), MarkStatus::Excused, MarkSource::Teacher)
            ]
        );
        let refused = room
            .attendance
            .correct(room.now, "009999999999", MarkStatus::Present, "")
            .unwrap_err();
        assert_eq!(
            refused,
            CorrectionRefused::NotOnRoll(NotOnRoll("009999999999".into()))
        );
        assert!(
            refused
                .to_string()
                .starts_with("Học sinh 009999999999 không có trong danh sách lớp"),
            "{refused}"
        );
        let closed = room
            .summaries()
            .into_iter()
            .find(|s| s.2 == Phase::Closed)
            .unwrap();
        assert_eq!(
            (closed.0, closed.3, closed.4, closed.5),
            (at("2026-09-07T07:15"), 1, 1, 1)
        );
        let unknown: Vec<u32> = room
            .records()
            .into_iter()
            .filter_map(|(_, payload)| match payload {
                Payload::UnknownFaces(unknown) => Some(unknown.count),
                _ => None,
            })
            .collect();
        assert_eq!(unknown, [1], "the stranger, counted once");
    }

    #[test]
    fn an_empty_room_switches_the_lights_off_once_until_a_face_is_seen_again() {
        let mut room = Room::new(&config(10.0), Some(timetable()), at("2026-09-07T11:30"));
        let empty = |room: &Room| {
            room.done
                .iter()
                .filter(|(_, action)| matches!(action, Action::RoomEmpty(_)))
                .map(|(at, _)| *at)
                .collect::<Vec<_>>()
        };
        let mut at_ = at("2026-09-07T11:30");
        while at_ < at("2026-09-07T12:10") {
            at_ += SignedDuration::from_secs(30);
            room.frame(at_, 0, Vec::new());
        }
        assert_eq!(
            empty(&room),
            [at("2026-09-07T11:40")],
            "once, ten minutes after the start, not at every empty frame"
        );
        assert!(
            room.done
                .iter()
                .any(|(_, action)| *action == Action::RoomEmpty(SignedDuration::from_mins(10)))
        );
        room.frame(at("2026-09-07T12:10:30"), 1, Vec::new());
        room.frame(at("2026-09-07T12:15"), 0, Vec::new());
        room.frame(at("2026-09-07T12:20:29"), 0, Vec::new());
        assert_eq!(empty(&room).len(), 1, "not yet ten minutes since the face");
        room.frame(at("2026-09-07T12:20:30"), 0, Vec::new());
        assert_eq!(
            empty(&room),
            [at("2026-09-07T11:40"), at("2026-09-07T12:20:30")]
        );
    }

    #[test]
    fn once_every_enrolled_pupil_is_marked_the_models_rest_until_the_class_changes() {
        let mut room = Room::new(&config(10.0), Some(timetable()), at("2026-09-07T06:00"));
        room.run_until(at("2026-09-07T07:00"));
        let whole_class = || vec![seen(HOA), seen(PAO), seen(HOA)];
        room.frame(at("2026-09-07T07:00:01"), 3, whole_class());
        assert_eq!(room.attendance.frames_wanted(), FramesWanted::Recognise);
        room.frame(at("2026-09-07T07:00:02"), 3, whole_class());
        assert_eq!(
            room.marks().len(),
            2,
            "both enrolled pupils, from two frames of the whole class"
        );
        assert_eq!(
            room.attendance.frames_wanted(),
            FramesWanted::DetectEvery(Duration::from_secs(30)),
            "nothing left for the models to find; the empty-room rule still looks"
        );
        room.attendance.follow_class(
            room.now,
            ids(&[HOA, PAO, MAI]),
            ids(&[HOA, PAO, MAI]),
            &HashSet::new(),
        );
        assert_eq!(
            room.attendance.frames_wanted(),
            FramesWanted::Recognise,
            "Mai has just been enrolled"
        );
    }

    #[test]
    fn with_the_empty_room_rule_off_no_frame_is_wanted_between_roll_calls() {
        let mut room = Room::new(&config(0.0), Some(timetable()), at("2026-09-07T06:00"));
        assert_eq!(room.attendance.frames_wanted(), FramesWanted::Nothing);
        room.run_until(at("2026-09-07T07:14"));
        assert_eq!(room.attendance.frames_wanted(), FramesWanted::Recognise);
        room.run_until(at("2026-09-07T07:15"));
        assert_eq!(room.attendance.frames_wanted(), FramesWanted::Nothing);
        room.frame(at("2026-09-07T08:00"), 0, Vec::new());
        assert!(
            !room
                .done
                .iter()
                .any(|(_, action)| matches!(action, Action::RoomEmpty(_)))
        );
        let short = Room::new(&config(0.05), None, at("2026-09-07T06:00"));
        assert_eq!(
            short.attendance.frames_wanted(),
            FramesWanted::Recognise,
            "no timetable: the roll call opens at start"
        );
        let mut short = short;
        short.run_until(at("2026-09-07T06:15"));
        assert_eq!(
            short.attendance.frames_wanted(),
            FramesWanted::DetectEvery(Duration::from_secs(1)),
            "never faster than a frame a second"
        );
    }

    #[test]
    fn a_class_without_pupils_waits_for_its_roster_and_a_room_without_timetable_takes_one_roll_call()
     {
        let mut attendance = Attendance::new(
            &config(10.0),
            "Asia/Ho_Chi_Minh".into(),
            None,
            at("2026-09-07T07:00"),
        );
        attendance.handle_timeout(at("2026-09-07T07:00"));
        let Some(Action::Health(State::Degraded, detail)) = attendance.poll_action() else {
            panic!("degraded")
        };
        assert!(
            detail.contains("class `6A1` has no pupils: import the roster"),
            "{detail}"
        );
        assert_eq!(
            (attendance.poll_timeout(), attendance.poll_action()),
            (None, None),
            "no deadline, no repeated report"
        );
        attendance.follow_class(
            at("2026-09-07T07:05"),
            ids(&[HOA]),
            ids(&[HOA]),
            &HashSet::new(),
        );
        assert_eq!(attendance.poll_action(), Some(Action::CheckFacesAfresh));
        let Some(Action::Record { payloads, .. }) = attendance.poll_action() else {
            panic!("the roll call opens")
        };
        let [Payload::AttendanceSession(opened)] = payloads.as_slice() else {
            panic!("{payloads:?}")
        };
        assert_eq!(
            (opened.lesson_id.as_str(), opened.enrolled),
            ("2026-09-07/morning/0705", 1)
        );
        assert_eq!(attendance.poll_timeout(), Some(at("2026-09-07T07:20")));
        attendance.handle_timeout(at("2026-09-07T07:20"));
        attendance.handle_timeout(at("2026-09-08T07:20"));
        let opened_again = std::iter::from_fn(|| attendance.poll_action())
            .any(|action| action == Action::CheckFacesAfresh);
        assert!(!opened_again, "one roll call only");
        assert_eq!(attendance.poll_timeout(), None);
    }

    #[test]
    fn a_clock_stepped_back_does_not_take_a_period_twice_and_one_stepped_forward_skips_a_window_gone_by()
     {
        let mut room = Room::new(&config(10.0), Some(timetable()), at("2026-09-07T06:50"));
        room.run_until(at("2026-09-07T07:16"));
        room.now = at("2026-09-07T07:05");
        room.attendance.handle_timeout(room.now);
        assert_eq!(
            room.attendance.frames_wanted(),
            FramesWanted::DetectEvery(Duration::from_secs(30))
        );
        assert_eq!(room.attendance.poll_timeout(), Some(at("2026-09-07T07:50")));
        room.now = at("2026-09-07T08:10");
        room.attendance.handle_timeout(room.now);
        room.drain();
        assert_eq!(
            room.attendance.poll_timeout(),
            Some(at("2026-09-07T08:40")),
            "the second period's window has gone by"
        );
        let opened = room
            .summaries()
            .into_iter()
            .filter(|s| s.2 == Phase::Opened)
            .count();
        assert_eq!(opened, 1);
    }
}
