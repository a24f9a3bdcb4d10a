//! The panel's live feed: every record the room commits, every change of a
//! subsystem's health, of the devices' states and of the class's tablets,
//! pushed to the page as Server-Sent Events the moment it happens. No
//! polling: the outbox's commit channel, the health registry's, the devices'
//! and the lesson's class change channels wake the stream.
//!
//! # Design
//! A record's event id is its outbox seq, so a page never loses one: it opens
//! the stream with `?after=SEQ`, the newest record its snapshot held, and the
//! browser reconnects on its own with `Last-Event-ID`, the newest record it
//! received (the header wins over the query). The stream subscribes to commits
//! before it reads, then sends everything after that seq, then follows; a
//! record committed in between is sent, at worst twice, never lost. A page
//! whose seq is beyond the outbox's newest (the database was replaced) is told
//! `reset`, to take a fresh snapshot; a stream opened with neither starts at
//! the newest record.
//!
//! The class view is not a record: each `class` event carries the whole view
//! as it is (40 tiles, a few kilobytes), one right after `hello` and one after
//! every change, so a page never patches tiles and cannot miss one. Changes
//! that come while a view is being read and sent are coalesced into the next.
//!
//! The question's results ([`crate::tablets::quiz_api::live_view`]) follow
//! the class: a `quiz` event with the whole view right after `hello`, so a
//! page that reconnects is correct at once, then after the class changed (an
//! answer, a question given or stopped, a tablet bound), at most one each
//! [`QUIZ_EVERY`]: 40 pupils answering in the same second cost the page a
//! few views, each with every answer so far.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde_json::{Value, json};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::agent::Agent;
use crate::store::outbox::{StoredEvent, read_after};
use crate::tablets::{Lesson, quiz_api};

/// Most records sent in one wake-up; a larger backlog follows in the next.
const BATCH: usize = 500;
/// The shortest time between two `quiz` events to a page. A bound on what a
/// page is sent, not lesson time: on the runtime's own timer.
pub const QUIZ_EVERY: Duration = Duration::from_millis(250);

/// The SSE stream for one page: a `hello` with the health snapshot, every record after
/// `resume_after` (the newest when `None`), the class view and the question's
/// results, then `record`, `health`, `devices`, `class` and `quiz` events as they happen.
pub fn stream(
    agent: Arc<Agent>,
    lesson: Arc<Lesson>,
    resume_after: Option<i64>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let mut commits = agent.store.subscribe_commits();
        let mut health = agent.health.subscribe();
        let mut devices = agent.actuators.subscribe_changes();
        let mut class = lesson.subscribe_class();
        let newest = *commits.borrow_and_update();
        let hello = json!({ "last_seq": newest, "health": agent.health.snapshot() });
        if tx
            .send(SseEvent::default().event("hello").data(hello.to_string()))
            .await
            .is_err()
        {
            return;
        }
        let mut cursor = match resume_after {
            Some(seq) if seq > newest => {
                if tx
                    .send(
                        SseEvent::default()
                            .event("reset")
                            .data(json!({ "last_seq": newest }).to_string()),
                    )
                    .await
                    .is_err()
                {
                    return;
                }
                newest
            }
            Some(seq) => seq,
            None => newest,
        };
        let Some(caught_up) = send_records_after(&agent, &tx, cursor).await else {
            return;
        };
        cursor = caught_up;
        class.borrow_and_update();
        if !send_class(&lesson, &tx).await || !send_quiz(&lesson, &tx).await {
            return;
        }
        let mut quiz_sent_at = tokio::time::Instant::now();
        let mut quiz_pending = false;
        loop {
            let quiz_due = tokio::time::sleep_until(quiz_sent_at + QUIZ_EVERY);
            tokio::select! {
                _ = agent.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                changed = commits.changed() => {
                    if changed.is_err() { return; }
                    let Some(sent) = send_records_after(&agent, &tx, cursor).await else { return };
                    cursor = sent;
                }
                changed = health.changed() => {
                    if changed.is_err() { return; }
                    let snapshot = json!(agent.health.snapshot());
                    if tx.send(SseEvent::default().event("health").data(snapshot.to_string())).await.is_err() { return; }
                }
                changed = devices.changed() => {
                    if changed.is_err() { return; }
                    let status = json!(agent.actuators.status());
                    if tx.send(SseEvent::default().event("devices").data(status.to_string())).await.is_err() { return; }
                }
                changed = class.changed() => {
                    if changed.is_err() { return; }
                    class.borrow_and_update();
                    if !send_class(&lesson, &tx).await { return; }
                    quiz_pending = true;
                }
                () = quiz_due, if quiz_pending => {
                    if !send_quiz(&lesson, &tx).await { return; }
                    quiz_sent_at = tokio::time::Instant::now();
                    quiz_pending = false;
                }
            }
        }
    });
    let events = tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Sends every committed record after `cursor`, in batches; returns the seq of the last one sent, or `None` once the page is gone.
async fn send_records_after(
    agent: &Arc<Agent>,
    tx: &tokio::sync::mpsc::Sender<SseEvent>,
    mut cursor: i64,
) -> Option<i64> {
    while let Some(records) = read_records(agent, cursor).await {
        cursor = records.last().map_or(cursor, |r| r.seq);
        for record in &records {
            let event = SseEvent::default()
                .event("record")
                .id(record.seq.to_string())
                .data(record_json(record).to_string());
            tx.send(event).await.ok()?;
        }
        if records.len() < BATCH {
            break;
        }
    }
    Some(cursor)
}

/// Sends the class view as it is now; false once the page is gone. A view
/// the store cannot read now is skipped: the next change sends it whole.
async fn send_class(lesson: &Lesson, tx: &tokio::sync::mpsc::Sender<SseEvent>) -> bool {
    match lesson.class_view().await {
        Ok(view) => tx
            .send(
                SseEvent::default()
                    .event("class")
                    .data(json!(view).to_string()),
            )
            .await
            .is_ok(),
        Err(err) => {
            tracing::warn!(%err, "cannot read the class view for the panel");
            true
        }
    }
}

/// Sends the question's results as they are now; false once the page is
/// gone. A view the store cannot read now is skipped, as the class's.
async fn send_quiz(lesson: &Lesson, tx: &tokio::sync::mpsc::Sender<SseEvent>) -> bool {
    match quiz_api::live_view(lesson, lesson.results()).await {
        Ok(view) => tx
            .send(SseEvent::default().event("quiz").data(view.to_string()))
            .await
            .is_ok(),
        Err(err) => {
            tracing::warn!(%err, "cannot read the question's results for the panel");
            true
        }
    }
}

/// A resume point that is not a record's seq.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{given_in} must be a record's seq, a whole number from 0 (got `{value}`)")]
pub struct BadResumePoint {
    /// Where it came from: `Last-Event-ID` or `after`.
    given_in: &'static str,
    value: String,
}

/// Where a page asks its stream to resume: `Last-Event-ID` (the browser's reconnect), else `?after=`.
pub fn resume_point(
    last_event_id: Option<&str>,
    after: Option<&str>,
) -> Result<Option<i64>, BadResumePoint> {
    let Some((given_in, value)) = last_event_id
        .map(|v| ("Last-Event-ID", v))
        .or(after.map(|v| ("after", v)))
    else {
        return Ok(None);
    };
    match value.trim().parse::<i64>() {
        Ok(seq) if seq >= 0 => Ok(Some(seq)),
        _ => Err(BadResumePoint {
            given_in,
            value: value.to_owned(),
        }),
    }
}

async fn read_records(agent: &Arc<Agent>, cursor: i64) -> Option<Vec<StoredEvent>> {
    let records = agent
        .store
        .blocking(move |store| store.read(|conn| read_after(conn, cursor, BATCH)))
        .await
        .ok()?;
    (!records.is_empty()).then_some(records)
}

/// A committed record as the page reads it; enums by name, times as RFC 3339.
pub fn record_json(record: &StoredEvent) -> Value {
    let payload = match record.payload() {
        Ok(Some(payload)) => payload.to_json(),
        Ok(None) | Err(_) => Value::Null,
    };
    json!({
        "seq": record.seq,
        "id": record.id.to_string(),
        "kind": record.kind,
        "occurred_at": record.occurred_at.to_string(),
        "payload": payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use crate::store::outbox::NewEvent;
    use crate::store::testing;

    #[test]
    fn a_mark_reads_with_its_status_by_name() {
        let (_dir, clock, store) = testing::store();
        let mark = proto::AttendanceMark {
            personal_id: "010206001234".into(),
            status: proto::MarkStatus::Late as i32,
            source: proto::MarkSource::Face as i32,
            ..Default::default()
        };
        let stored = store
            .append(NewEvent::new(
                crate::clock::Clock::now(clock.as_ref()),
                mark,
            ))
            .unwrap();
        let json = record_json(&stored);
        assert_eq!(json["kind"], "attendance.mark");
        assert_eq!(json["payload"]["status"], "LATE");
        assert_eq!(json["payload"]["source"], "FACE");
        assert_eq!(json["seq"], stored.seq);
    }
}
