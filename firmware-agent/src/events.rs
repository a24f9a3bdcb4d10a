//! The records the agent keeps for the hub, typed.
//!
//! Each outbox row stores one payload of the hub contract's `Event.payload`
//! oneof, encoded as its own protobuf message, under a kind string that names
//! the case. This module is the one place that maps between the two, so every
//! part of the agent appends events the same way and the sync service can
//! decode them.
//!
//! # Design
//! Every event must fit in one message to the hub, or the room's sync stops at
//! it. So an event's size is bounded where its content comes from, not where
//! it is sent: the producers that take people's input refuse what would make a
//! payload larger than the store's
//! [`MAX_PAYLOAD_BYTES`](crate::store::outbox::MAX_PAYLOAD_BYTES) (the lesson's
//! commands are held to [`MAX_ARGUMENTS_BYTES`], a tablet's answer to its question's choices and one
//! text field), the free-text details the agent writes itself are cut to
//! [`MAX_DETAIL_BYTES`] here, and the store refuses any payload over the bound
//! as a last guard. `check-config` then refuses a `hub.max_message_bytes` too
//! small for the largest event so bounded (`hub::wire::largest_message`).

use jiff::Timestamp;
use prost::Message;
use serde_json::{Value, json};

use crate::proto::event::Payload;
use crate::store::outbox::{NewEvent, StoredEvent};

/// The most bytes a lesson command's arguments may take as recorded (JSON),
/// leaving the rest of [`crate::store::outbox::MAX_PAYLOAD_BYTES`] to the record's other fields.
pub const MAX_ARGUMENTS_BYTES: usize = 40 * 1024;
/// The most bytes of a detail the agent writes itself (an error, a reason);
/// a longer one is cut, marked with an ellipsis.
pub const MAX_DETAIL_BYTES: usize = 1024;

impl Payload {
    /// The length of the longest kind string, for bounding an event's size.
    pub const LONGEST_KIND: usize = "attendance.unknown_faces".len();

    /// The outbox kind string of this payload case.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::AttendanceSession(_) => "attendance.session",
            Payload::AttendanceMark(_) => "attendance.mark",
            Payload::UnknownFaces(_) => "attendance.unknown_faces",
            Payload::LessonRecord(_) => "lesson.record",
            Payload::TabletPairing(_) => "tablet.pairing",
            Payload::QuestionAnswer(_) => "lesson.answer",
            Payload::Actuation(_) => "actuation",
            Payload::DeviceHealth(_) => "device.health",
            Payload::Erasure(_) => "erasure",
            Payload::HandRaised(_) => "lesson.hand",
            Payload::HandIn(_) => "lesson.hand_in",
        }
    }

    /// Decodes a stored payload by its kind; `None` for a kind this build does not know.
    pub fn decode_stored(kind: &str, bytes: &[u8]) -> Result<Option<Payload>, prost::DecodeError> {
        use crate::proto as p;
        Ok(Some(match kind {
            "attendance.session" => {
                Payload::AttendanceSession(p::AttendanceSession::decode(bytes)?)
            }
            "attendance.mark" => Payload::AttendanceMark(p::AttendanceMark::decode(bytes)?),
            "attendance.unknown_faces" => Payload::UnknownFaces(p::UnknownFaces::decode(bytes)?),
            "lesson.record" => Payload::LessonRecord(p::LessonRecord::decode(bytes)?),
            "tablet.pairing" => Payload::TabletPairing(p::TabletPairing::decode(bytes)?),
            "lesson.answer" => Payload::QuestionAnswer(p::QuestionAnswer::decode(bytes)?),
            "lesson.hand" => Payload::HandRaised(p::HandRaised::decode(bytes)?),
            "lesson.hand_in" => Payload::HandIn(p::HandIn::decode(bytes)?),
            "actuation" => Payload::Actuation(p::Actuation::decode(bytes)?),
            "device.health" => Payload::DeviceHealth(p::DeviceHealth::decode(bytes)?),
            "erasure" => Payload::Erasure(p::Erasure::decode(bytes)?),
            _ => return Ok(None),
        }))
    }

    /// The payload as JSON for people and scripts: enums by name, the panel's
    /// feed and the reference hub client alike.
    pub fn to_json(&self) -> Value {
        match self {
            Payload::AttendanceSession(s) => json!({
                "session_id": s.session_id, "lesson_id": s.lesson_id, "class_name": s.class_name,
                "phase": s.phase().as_str_name(), "present": s.present, "late": s.late, "absent": s.absent,
                "excused": s.excused, "unknown_faces": s.unknown_faces, "enrolled": s.enrolled,
                "photos_refused": s.photos_refused,
            }),
            Payload::AttendanceMark(m) => json!({
                "session_id": m.session_id, "lesson_id": m.lesson_id, "personal_id": m.personal_id,
                "status": m.status().as_str_name(), "source": m.source().as_str_name(),
                "best_similarity": m.best_similarity, "reason": m.reason, "teacher_personal_id": m.teacher_personal_id,
            }),
            Payload::UnknownFaces(u) => json!({ "session_id": u.session_id, "count": u.count }),
            Payload::LessonRecord(l) => json!({
                "lesson_id": l.lesson_id, "command_id": l.command_id, "command": l.command,
                "arguments": serde_json::from_str::<Value>(&l.arguments_json).unwrap_or(Value::Null),
                "acknowledged": l.acknowledged, "connected": l.connected,
                "tablet_ids": l.tablet_ids, "group": l.group,
            }),
            Payload::TabletPairing(t) => json!({
                "tablet_id": t.tablet_id, "name": t.name, "action": t.action().as_str_name(),
                "pupil_personal_id": t.pupil_personal_id, "lesson_id": t.lesson_id,
                "chosen_on_tablet": t.chosen_on_tablet,
            }),
            Payload::QuestionAnswer(a) => json!({
                "lesson_id": a.lesson_id, "question_id": a.question_id, "tablet_id": a.tablet_id,
                "pupil_personal_id": a.pupil_personal_id, "choices": a.choices, "text": a.text,
                "graded": a.graded, "correct": a.correct, "time_to_answer_ms": a.time_to_answer_ms,
            }),
            Payload::Actuation(a) => json!({
                "device": a.device, "device_kind": a.device_kind().as_str_name(), "command": a.command,
                "cause": a.cause().as_str_name(), "outcome": a.outcome().as_str_name(), "detail": a.detail,
                "latency_ms": a.latency_ms,
            }),
            Payload::DeviceHealth(h) => {
                json!({ "subsystem": h.subsystem, "state": h.state, "detail": h.detail })
            }
            Payload::Erasure(e) => {
                json!({ "personal_id": e.personal_id, "what": e.what, "count": e.count, "reason": e.reason })
            }
            Payload::HandRaised(h) => json!({
                "lesson_id": h.lesson_id, "tablet_id": h.tablet_id, "pupil_personal_id": h.pupil_personal_id,
            }),
            Payload::HandIn(h) => json!({
                "hand_in_id": h.hand_in_id, "lesson_id": h.lesson_id, "tablet_id": h.tablet_id,
                "pupil_personal_id": h.pupil_personal_id, "kind": h.kind, "media_type": h.media_type,
                "size_bytes": h.size_bytes, "sha256": hex::encode(&h.sha256),
            }),
        }
    }

    /// The payload's case name in snake case, such as `attendance_mark`.
    pub fn case_name(&self) -> &'static str {
        match self {
            Payload::AttendanceSession(_) => "attendance_session",
            Payload::AttendanceMark(_) => "attendance_mark",
            Payload::UnknownFaces(_) => "unknown_faces",
            Payload::LessonRecord(_) => "lesson_record",
            Payload::TabletPairing(_) => "tablet_pairing",
            Payload::QuestionAnswer(_) => "question_answer",
            Payload::Actuation(_) => "actuation",
            Payload::DeviceHealth(_) => "device_health",
            Payload::Erasure(_) => "erasure",
            Payload::HandRaised(_) => "hand_raised",
            Payload::HandIn(_) => "hand_in",
        }
    }

    /// Cuts the details the agent writes itself to [`MAX_DETAIL_BYTES`].
    fn bound_details(&mut self) {
        match self {
            Payload::Actuation(a) => cut_detail(&mut a.detail),
            Payload::DeviceHealth(h) => cut_detail(&mut h.detail),
            Payload::Erasure(e) => cut_detail(&mut e.reason),
            Payload::AttendanceMark(m) => cut_detail(&mut m.reason),
            Payload::AttendanceSession(_)
            | Payload::UnknownFaces(_)
            | Payload::LessonRecord(_)
            | Payload::TabletPairing(_)
            | Payload::QuestionAnswer(_)
            | Payload::HandRaised(_)
            | Payload::HandIn(_) => {}
        }
    }

    /// The payload's own message, encoded as the outbox stores it.
    pub fn encode_inner(&self) -> Vec<u8> {
        match self {
            Payload::AttendanceSession(m) => m.encode_to_vec(),
            Payload::AttendanceMark(m) => m.encode_to_vec(),
            Payload::UnknownFaces(m) => m.encode_to_vec(),
            Payload::LessonRecord(m) => m.encode_to_vec(),
            Payload::TabletPairing(m) => m.encode_to_vec(),
            Payload::QuestionAnswer(m) => m.encode_to_vec(),
            Payload::Actuation(m) => m.encode_to_vec(),
            Payload::DeviceHealth(m) => m.encode_to_vec(),
            Payload::Erasure(m) => m.encode_to_vec(),
            Payload::HandRaised(m) => m.encode_to_vec(),
            Payload::HandIn(m) => m.encode_to_vec(),
        }
    }
}

impl NewEvent {
    /// An event carrying `payload`, which happened at `occurred_at`.
    /// Details the agent wrote itself are cut to [`MAX_DETAIL_BYTES`].
    pub fn new(occurred_at: Timestamp, payload: impl Into<Payload>) -> NewEvent {
        let mut payload = payload.into();
        payload.bound_details();
        NewEvent {
            kind: payload.kind().to_owned(),
            occurred_at,
            payload: payload.encode_inner(),
        }
    }
}

impl StoredEvent {
    /// The typed payload; `None` for a kind this build does not know.
    pub fn payload(&self) -> Result<Option<Payload>, prost::DecodeError> {
        Payload::decode_stored(&self.kind, &self.payload)
    }
}

/// Cuts `detail` to at most [`MAX_DETAIL_BYTES`] at a character boundary, ending it with `…`.
fn cut_detail(detail: &mut String) {
    const ELLIPSIS: &str = "…";
    if detail.len() <= MAX_DETAIL_BYTES {
        return;
    }
    let mut end = MAX_DETAIL_BYTES - ELLIPSIS.len();
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail.truncate(end);
    detail.push_str(ELLIPSIS);
}

macro_rules! payload_from {
    ($($message:ident),*) => {
        $(impl From<crate::proto::$message> for Payload {
            fn from(message: crate::proto::$message) -> Payload { Payload::$message(message) }
        })*
    };
}
payload_from!(
    AttendanceSession,
    AttendanceMark,
    UnknownFaces,
    LessonRecord,
    TabletPairing,
    QuestionAnswer,
    Actuation,
    DeviceHealth,
    Erasure,
    HandRaised,
    HandIn
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    fn mark_for_json() -> proto::AttendanceMark {
        proto::AttendanceMark {
            personal_id: "010206001234".into(),
            status: proto::MarkStatus::Late as i32,
            ..Default::default()
        }
    }

    #[test]
    fn every_payload_round_trips_through_its_kind() {
        let mark = proto::AttendanceMark {
            session_id: "s1".into(),
            personal_id: "010206001234".into(),
            status: proto::MarkStatus::Late as i32,
            best_similarity: 0.71,
            ..Default::default()
        };
        let event = NewEvent::new(Timestamp::UNIX_EPOCH, mark.clone());
        assert_eq!(event.kind, "attendance.mark");
        assert_eq!(
            Payload::decode_stored(&event.kind, &event.payload).unwrap(),
            Some(Payload::AttendanceMark(mark))
        );
        assert_eq!(
            Payload::decode_stored("from.the.future", b"").unwrap(),
            None
        );
        let json = Payload::AttendanceMark(mark_for_json()).to_json();
        assert_eq!(
            (json["status"].as_str(), json["personal_id"].as_str()),
            (Some("LATE"), Some("010206001234"))
        );
    }

    #[test]
    fn no_kind_is_longer_than_the_longest() {
        let every = [
            Payload::from(proto::AttendanceSession::default()),
            proto::AttendanceMark::default().into(),
            proto::UnknownFaces::default().into(),
            proto::LessonRecord::default().into(),
            proto::TabletPairing::default().into(),
            proto::QuestionAnswer::default().into(),
            proto::Actuation::default().into(),
            proto::DeviceHealth::default().into(),
            proto::Erasure::default().into(),
            proto::HandRaised::default().into(),
            proto::HandIn::default().into(),
        ];
        assert_eq!(
            every.iter().map(|p| p.kind().len()).max(),
            Some(Payload::LONGEST_KIND)
        );
    }

    #[test]
    fn a_long_detail_is_cut_at_a_character_boundary_and_marked() {
        let detail = "lỗi thiết bị ".repeat(200);
        let health = proto::DeviceHealth {
            subsystem: "broker".into(),
            state: "failed".into(),
            detail: detail.clone(),
        };
        let event = NewEvent::new(Timestamp::UNIX_EPOCH, health);
        let Some(Payload::DeviceHealth(stored)) =
            Payload::decode_stored(&event.kind, &event.payload).unwrap()
        else {
            panic!("a device health event")
        };
        assert!(
            stored.detail.len() <= MAX_DETAIL_BYTES,
            "{} bytes",
            stored.detail.len()
        );
        assert!(stored.detail.ends_with('…'));
        assert!(detail.starts_with(stored.detail.trim_end_matches('…')));
        let short = proto::Actuation {
            detail: "rung 90 s late".into(),
            ..Default::default()
        };
        let event = NewEvent::new(Timestamp::UNIX_EPOCH, short.clone());
        assert_eq!(
            Payload::decode_stored(&event.kind, &event.payload).unwrap(),
            Some(Payload::Actuation(short))
        );
    }
}
