//! The records the agent keeps for the hub, typed.
//!
//! Each outbox row stores one payload of the hub contract's `Event.payload`
//! oneof, encoded as its own protobuf message, under a kind string that names
//! the case. This module is the one place that maps between the two, so every
//! part of the agent appends events the same way and the sync service can
//! decode them.

use jiff::Timestamp;
use prost::Message;

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
    }
}
