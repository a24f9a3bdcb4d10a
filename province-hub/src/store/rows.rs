//! A batch of events as the columns of the hub's tables, built without I/O so
//! that a batch of any size is written with one statement per table.
//!
//! # Design
//! Each table's rows are gathered as one array per column, written with one
//! binary `COPY` per table (or, when some event is stored already, one
//! `INSERT ... SELECT FROM unnest(...)`): a batch of thousands of events costs
//! a handful of round trips, not one per event. Enum values are stored by their
//! proto names in lower case (`present`, `face`), which read well in SQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use uuid::Uuid;

use crate::proto::{self, event::Payload};

/// Why a batch cannot be stored as it came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("event at seq {seq} has an id of {len} bytes; ids are 16-byte UUIDs")]
    BadId { seq: i64, len: usize },
}

/// Columns of `events`.
#[derive(Debug, Default)]
pub struct EventColumns {
    pub id: Vec<Uuid>,
    pub seq: Vec<i64>,
    pub kind: Vec<String>,
    pub occurred_at: Vec<Option<SystemTime>>,
    pub recorded_at: Vec<Option<SystemTime>>,
    pub clock_synced: Vec<bool>,
    pub clock_step_back_ms: Vec<i64>,
    pub payload: Vec<Option<Vec<u8>>>,
}

/// Columns of `attendance_marks`.
#[derive(Debug, Default)]
pub struct MarkColumns {
    pub event_id: Vec<Uuid>,
    pub session_id: Vec<String>,
    pub lesson_id: Vec<String>,
    pub personal_id: Vec<String>,
    pub status: Vec<String>,
    pub source: Vec<String>,
    pub best_similarity: Vec<Option<f32>>,
    pub reason: Vec<String>,
    pub teacher_personal_id: Vec<String>,
    pub occurred_at: Vec<Option<SystemTime>>,
}

impl MarkColumns {
    /// Takes the similarity score off each mark whose pupil has an erasure in
    /// `erased` (pupil, when) made after the mark, or when either time is
    /// unknown: a pupil forgotten keeps no biometric-derived value at the
    /// hub, even for a mark that arrives after the erasure.
    pub fn drop_erased_scores(&mut self, erased: &[(String, Option<SystemTime>)]) {
        for ((pupil, score), occurred_at) in self
            .personal_id
            .iter()
            .zip(&mut self.best_similarity)
            .zip(&self.occurred_at)
        {
            let forgotten = erased.iter().any(|(erased_pupil, erased_at)| {
                erased_pupil == pupil
                    && match (erased_at, occurred_at) {
                        (Some(erased_at), Some(occurred_at)) => erased_at >= occurred_at,
                        _ => true,
                    }
            });
            if forgotten {
                *score = None;
            }
        }
    }
}

/// Columns of `answers`.
#[derive(Debug, Default)]
pub struct AnswerColumns {
    pub event_id: Vec<Uuid>,
    pub lesson_id: Vec<String>,
    pub question_id: Vec<String>,
    pub tablet_id: Vec<String>,
    pub pupil_personal_id: Vec<String>,
    pub choices: Vec<Vec<String>>,
    pub text: Vec<String>,
    pub graded: Vec<bool>,
    pub correct: Vec<bool>,
    pub time_to_answer_ms: Vec<i64>,
    pub occurred_at: Vec<Option<SystemTime>>,
}

/// Columns of `actuations`.
#[derive(Debug, Default)]
pub struct ActuationColumns {
    pub event_id: Vec<Uuid>,
    pub device: Vec<String>,
    pub device_kind: Vec<String>,
    pub command: Vec<String>,
    pub cause: Vec<String>,
    pub outcome: Vec<String>,
    pub detail: Vec<String>,
    pub latency_ms: Vec<i64>,
    pub occurred_at: Vec<Option<SystemTime>>,
}

/// Columns of `erasures`.
#[derive(Debug, Default)]
pub struct ErasureColumns {
    pub event_id: Vec<Uuid>,
    pub personal_id: Vec<String>,
    pub what: Vec<String>,
    pub count: Vec<i64>,
    pub reason: Vec<String>,
    pub occurred_at: Vec<Option<SystemTime>>,
}

/// One batch, split into the tables it lands in.
#[derive(Debug, Default)]
pub struct BatchRows {
    pub events: EventColumns,
    pub marks: MarkColumns,
    pub answers: AnswerColumns,
    pub actuations: ActuationColumns,
    pub erasures: ErasureColumns,
}

impl BatchRows {
    /// Splits `events` into rows. Events of kinds with an analyst table keep
    /// their content there; every other event keeps its payload's bytes.
    pub fn from_events(events: &[proto::Event]) -> Result<BatchRows, BatchError> {
        let mut rows = BatchRows::default();
        for event in events {
            let id = Uuid::from_slice(&event.id).map_err(|_| BatchError::BadId {
                seq: event.seq,
                len: event.id.len(),
            })?;
            let occurred_at = event.occurred_at.as_ref().map(system_time);
            let payload = rows.add_typed(id, occurred_at, event.payload.as_ref());
            let e = &mut rows.events;
            e.id.push(id);
            e.seq.push(event.seq);
            e.kind.push(event.kind.clone());
            e.occurred_at.push(occurred_at);
            e.recorded_at
                .push(event.recorded_at.as_ref().map(system_time));
            e.clock_synced.push(event.clock_synced);
            e.clock_step_back_ms.push(event.clock_step_back_ms);
            e.payload.push(
                payload.or_else(|| (event.payload.is_none()).then(|| event.raw_payload.clone())),
            );
        }
        Ok(rows)
    }

    /// Adds the event's analyst row when its kind has one and returns `None`;
    /// returns the payload's bytes when it has none.
    fn add_typed(
        &mut self,
        id: Uuid,
        occurred_at: Option<SystemTime>,
        payload: Option<&Payload>,
    ) -> Option<Vec<u8>> {
        match payload? {
            Payload::AttendanceMark(mark) => {
                let m = &mut self.marks;
                m.event_id.push(id);
                m.session_id.push(mark.session_id.clone());
                m.lesson_id.push(mark.lesson_id.clone());
                m.personal_id.push(mark.personal_id.clone());
                m.status.push(enum_name(
                    proto::MarkStatus::try_from(mark.status).map(|s| s.as_str_name()),
                    mark.status,
                ));
                let source = proto::MarkSource::try_from(mark.source);
                m.source
                    .push(enum_name(source.map(|s| s.as_str_name()), mark.source));
                m.best_similarity
                    .push((source == Ok(proto::MarkSource::Face)).then_some(mark.best_similarity));
                m.reason.push(mark.reason.clone());
                m.teacher_personal_id.push(mark.teacher_personal_id.clone());
                m.occurred_at.push(occurred_at);
                None
            }
            Payload::QuestionAnswer(answer) => {
                let a = &mut self.answers;
                a.event_id.push(id);
                a.lesson_id.push(answer.lesson_id.clone());
                a.question_id.push(answer.question_id.clone());
                a.tablet_id.push(answer.tablet_id.clone());
                a.pupil_personal_id.push(answer.pupil_personal_id.clone());
                a.choices.push(answer.choices.clone());
                a.text.push(answer.text.clone());
                a.graded.push(answer.graded);
                a.correct.push(answer.correct);
                a.time_to_answer_ms
                    .push(i64::from(answer.time_to_answer_ms));
                a.occurred_at.push(occurred_at);
                None
            }
            Payload::Actuation(actuation) => {
                use proto::actuation::{Cause, Kind, Outcome};
                let a = &mut self.actuations;
                a.event_id.push(id);
                a.device.push(actuation.device.clone());
                a.device_kind.push(enum_name(
                    Kind::try_from(actuation.device_kind).map(|k| k.as_str_name()),
                    actuation.device_kind,
                ));
                a.command.push(actuation.command.clone());
                a.cause.push(enum_name(
                    Cause::try_from(actuation.cause).map(|c| c.as_str_name()),
                    actuation.cause,
                ));
                a.outcome.push(enum_name(
                    Outcome::try_from(actuation.outcome).map(|o| o.as_str_name()),
                    actuation.outcome,
                ));
                a.detail.push(actuation.detail.clone());
                a.latency_ms.push(i64::from(actuation.latency_ms));
                a.occurred_at.push(occurred_at);
                None
            }
            Payload::Erasure(erasure) => {
                let e = &mut self.erasures;
                e.event_id.push(id);
                e.personal_id.push(erasure.personal_id.clone());
                e.what.push(erasure.what.clone());
                e.count.push(i64::from(erasure.count));
                e.reason.push(erasure.reason.clone());
                e.occurred_at.push(occurred_at);
                None
            }
            other => Some(encode_payload(other)),
        }
    }
}

/// The payload's own message, encoded as the agent stores it.
fn encode_payload(payload: &Payload) -> Vec<u8> {
    match payload {
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

/// `PRESENT` as `present`; a number this build does not know as `unknown(7)`.
fn enum_name<E>(name: Result<&str, E>, value: i32) -> String {
    match name {
        Ok(name) => name.to_ascii_lowercase(),
        Err(_) => format!("unknown({value})"),
    }
}

/// A PostgreSQL array literal of `items`, every element quoted: how a column
/// of arrays is passed to `unnest`, which takes no array of arrays.
pub fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// A protobuf timestamp as a `SystemTime`, before the epoch included.
pub fn system_time(timestamp: &prost_types::Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(timestamp.nanos.clamp(0, 999_999_999) as u64);
    if timestamp.seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(timestamp.seconds as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(timestamp.seconds.unsigned_abs()) + nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, payload: Option<Payload>) -> proto::Event {
        proto::Event {
            id: Uuid::now_v7().as_bytes().to_vec(),
            seq,
            kind: "k".into(),
            payload,
            ..Default::default()
        }
    }

    #[test]
    fn typed_kinds_go_to_their_table_and_others_keep_their_bytes() {
        let session = proto::AttendanceSession {
            session_id: "s1".into(),
            ..Default::default()
        };
        let mark = proto::AttendanceMark {
            personal_id: "010206000001".into(),
            status: proto::MarkStatus::Late as i32,
            source: proto::MarkSource::Teacher as i32,
            best_similarity: 0.9,
            ..Default::default()
        };
        let mut unknown = event(3, None);
        unknown.raw_payload = vec![1, 2, 3];
        let rows = BatchRows::from_events(&[
            event(1, Some(Payload::AttendanceSession(session.clone()))),
            event(2, Some(Payload::AttendanceMark(mark))),
            unknown,
        ])
        .unwrap();
        assert_eq!(
            rows.events.payload,
            vec![Some(session.encode_to_vec()), None, Some(vec![1, 2, 3])]
        );
        assert_eq!(rows.marks.status, vec!["late"]);
        assert_eq!(
            rows.marks.best_similarity,
            vec![None],
            "a teacher's mark carries no similarity"
        );
    }

    #[test]
    fn an_erasure_drops_the_scores_of_the_marks_it_follows() {
        let at = |seconds| Some(UNIX_EPOCH + Duration::from_secs(seconds));
        let mut marks = MarkColumns {
            personal_id: ["A", "A", "A", "B", "C"].map(String::from).to_vec(),
            best_similarity: vec![Some(0.9), Some(0.8), Some(0.7), Some(0.6), Some(0.5)],
            occurred_at: vec![at(100), at(300), None, at(100), at(100)],
            ..Default::default()
        };
        marks.drop_erased_scores(&[("A".into(), at(200)), ("C".into(), None)]);
        assert_eq!(
            marks.best_similarity,
            vec![None, Some(0.8), None, Some(0.6), None],
            "A's mark before the erasure and of unknown time lose their score, the later one keeps it; \
             an erasure of unknown time covers every mark"
        );
    }

    #[test]
    fn choices_are_quoted_array_literals() {
        assert_eq!(
            array_literal(&["A".into(), "say \"hi\", ok\\".into()]),
            r#"{"A","say \"hi\", ok\\"}"#
        );
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn a_short_id_is_refused() {
        let mut bad = event(7, None);
        bad.id = vec![1, 2];
        assert_eq!(
            BatchRows::from_events(&[bad]).unwrap_err(),
            BatchError::BadId { seq: 7, len: 2 }
        );
    }
}
