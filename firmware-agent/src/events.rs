//! The records the agent keeps for the hub, typed.
//!
//! Each outbox row stores one payload of the hub contract's `Event.payload`
//! oneof, encoded as its own protobuf message, under a kind string that names
//! the case. This module is the one place that maps between the two, so every
//! part of the agent appends events the same way and the sync service can
//! decode them.

use jiff::Timestamp;
use prost::Message;
use serde_json::{Value, json};

use crate::proto::event::Payload;
use crate::store::outbox::{NewEvent, StoredEvent};

impl Payload {
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
        }
    }

    /// Decodes a stored payload by its kind; `None` for a kind this build does not know.
    pub fn decode_stored(kind: &str, bytes: &[u8]) -> Result<Option<Payload>, prost::DecodeError> {
        use crate::proto as p;
        Ok(Some(match kind {
            "attendance.session" => Payload::AttendanceSession(p::AttendanceSession::decode(bytes)?),
            "attendance.mark" => Payload::AttendanceMark(p::AttendanceMark::decode(bytes)?),
            "attendance.unknown_faces" => Payload::UnknownFaces(p::UnknownFaces::decode(bytes)?),
            "lesson.record" => Payload::LessonRecord(p::LessonRecord::decode(bytes)?),
            "tablet.pairing" => Payload::TabletPairing(p::TabletPairing::decode(bytes)?),
            "lesson.answer" => Payload::QuestionAnswer(p::QuestionAnswer::decode(bytes)?),
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
            }),
            Payload::TabletPairing(t) => json!({
                "tablet_id": t.tablet_id, "name": t.name, "action": t.action().as_str_name(),
                "pupil_personal_id": t.pupil_personal_id,
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
            Payload::DeviceHealth(h) => json!({ "subsystem": h.subsystem, "state": h.state, "detail": h.detail }),
            Payload::Erasure(e) => json!({ "personal_id": e.personal_id, "what": e.what, "count": e.count, "reason": e.reason }),
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
        }
    }

    fn encode_inner(&self) -> Vec<u8> {
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
        }
    }
}

impl NewEvent {
    /// An event carrying `payload`, which happened at `occurred_at`.
    pub fn new(occurred_at: Timestamp, payload: impl Into<Payload>) -> NewEvent {
        let payload = payload.into();
        NewEvent { kind: payload.kind().to_owned(), occurred_at, payload: payload.encode_inner() }
    }
}

impl StoredEvent {
    /// The typed payload; `None` for a kind this build does not know.
    pub fn payload(&self) -> Result<Option<Payload>, prost::DecodeError> {
        Payload::decode_stored(&self.kind, &self.payload)
    }
}

macro_rules! payload_from {
    ($($message:ident),*) => {
        $(impl From<crate::proto::$message> for Payload {
            fn from(message: crate::proto::$message) -> Payload { Payload::$message(message) }
        })*
    };
}
payload_from!(AttendanceSession, AttendanceMark, UnknownFaces, LessonRecord, TabletPairing, QuestionAnswer, Actuation, DeviceHealth, Erasure);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    fn mark_for_json() -> proto::AttendanceMark {
        proto::AttendanceMark { personal_id: "010206001234".into(), status: proto::MarkStatus::Late as i32, ..Default::default() }
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
        assert_eq!(Payload::decode_stored(&event.kind, &event.payload).unwrap(), Some(Payload::AttendanceMark(mark)));
        assert_eq!(Payload::decode_stored("from.the.future", b"").unwrap(), None);
        let json = Payload::AttendanceMark(mark_for_json()).to_json();
        assert_eq!((json["status"].as_str(), json["personal_id"].as_str()), (Some("LATE"), Some("010206001234")));
    }
}
