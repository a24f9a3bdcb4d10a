//! The panel's live feed: every record the room commits, and every change of a
//! subsystem's health, pushed to the page as Server-Sent Events the moment it
//! happens. No polling: the outbox's commit channel and the health registry's
//! change channel wake the stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde_json::{Value, json};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::agent::Agent;
use crate::store::outbox::{StoredEvent, read_after};

/// Most records sent in one wake-up; a larger backlog follows in the next.
const BATCH: usize = 500;

/// The SSE stream for one page: a `hello` with the health snapshot, then
/// `record` and `health` events as they happen.
pub fn stream(agent: Arc<Agent>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let mut commits = agent.store.subscribe_commits();
        let mut health = agent.health.subscribe();
        let mut cursor = *commits.borrow_and_update();
        let hello = json!({ "last_seq": cursor, "health": agent.health.snapshot() });
        if tx.send(SseEvent::default().event("hello").data(hello.to_string())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = agent.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                changed = commits.changed() => {
                    if changed.is_err() { return; }
                    while let Some(records) = read_records(&agent, cursor).await {
                        cursor = records.last().map_or(cursor, |r| r.seq);
                        for record in &records {
                            let event = SseEvent::default().event("record").id(record.seq.to_string()).data(record_json(record).to_string());
                            if tx.send(event).await.is_err() { return; }
                        }
                        if records.len() < BATCH { break; }
                    }
                }
                changed = health.changed() => {
                    if changed.is_err() { return; }
                    let snapshot = json!(agent.health.snapshot());
                    if tx.send(SseEvent::default().event("health").data(snapshot.to_string())).await.is_err() { return; }
                }
            }
        }
    });
    let events = tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn read_records(agent: &Arc<Agent>, cursor: i64) -> Option<Vec<StoredEvent>> {
    let store = agent.store.clone();
    let records = tokio::task::spawn_blocking(move || store.read(|conn| read_after(conn, cursor, BATCH)).ok()).await.ok()??;
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
        let stored = store.append(NewEvent::new(crate::clock::Clock::now(clock.as_ref()), mark)).unwrap();
        let json = record_json(&stored);
        assert_eq!(json["kind"], "attendance.mark");
        assert_eq!(json["payload"]["status"], "LATE");
        assert_eq!(json["payload"]["source"], "FACE");
        assert_eq!(json["seq"], stored.seq);
    }
}
