//! Outbox rows as the hub contract's messages.
//!
//! # Design
//! The payload is stored as the protobuf encoding of its own message, so a row
//! becomes an `Event` by decoding it into the `payload` oneof. A row this build
//! cannot type (a kind from a newer build) is still sent, its bytes untouched
//! in `raw_payload`: the hub must never lose a record because a room runs old
//! software. Batches are cut by encoded size as well as by count, so one large
//! payload never pushes a message past the size limit the hub accepts.

use jiff::Timestamp;
use prost::Message;

use crate::proto::{Event, EventBatch, RoomIdentity, event::Payload};
use crate::store::outbox::StoredEvent;

/// The contract's timestamp for a jiff one.
pub fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.as_second(), nanos: at.subsec_nanosecond() }
}

/// One outbox row as the hub receives it.
pub fn event(stored: StoredEvent, room: &RoomIdentity) -> Event {
    let (payload, raw_payload) = match Payload::decode_stored(&stored.kind, &stored.payload) {
        Ok(Some(payload)) => (Some(payload), Vec::new()),
        Ok(None) => (None, stored.payload),
        Err(err) => {
            tracing::warn!(seq = stored.seq, kind = stored.kind, %err, "a stored payload does not decode; sent as raw bytes");
            (None, stored.payload)
        }
    };
    Event {
        id: stored.id.as_bytes().to_vec(),
        seq: stored.seq,
        kind: stored.kind,
        occurred_at: Some(timestamp(stored.occurred_at)),
        recorded_at: Some(timestamp(stored.recorded_at)),
        clock_synced: stored.clock_synced,
        clock_step_back_ms: stored.clock_step_back_ms,
        room: Some(room.clone()),
        raw_payload,
        payload,
    }
}

/// Splits events into batches whose encoding stays under `max_bytes` (a single
/// event larger than that travels alone).
pub fn batches(events: Vec<Event>, max_bytes: usize) -> Vec<EventBatch> {
    let mut batches = Vec::new();
    let mut current = EventBatch::default();
    let mut size = 0;
    for event in events {
        // The event's length, its tag and its length prefix.
        let len = event.encoded_len();
        let framed = len + 1 + prost::length_delimiter_len(len);
        if size + framed > max_bytes && !current.events.is_empty() {
            batches.push(std::mem::take(&mut current));
            size = 0;
        }
        size += framed;
        current.events.push(event);
    }
    if !current.events.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use crate::store::outbox::NewEvent;

    fn stored(seq: i64, new: NewEvent) -> StoredEvent {
        StoredEvent {
            seq,
            id: uuid::Uuid::now_v7(),
            kind: new.kind,
            occurred_at: new.occurred_at,
            recorded_at: Timestamp::from_millisecond(1_800_000_000_123).unwrap(),
            clock_synced: false,
            clock_step_back_ms: 4_000,
            payload: new.payload,
        }
    }

    fn room() -> RoomIdentity {
        RoomIdentity { school_code: "LC-01".into(), room_id: "P201".into() }
    }

    #[test]
    fn a_row_becomes_a_typed_event_with_its_identity_and_clock_state() {
        let health = proto::DeviceHealth { subsystem: "camera".into(), state: "failed".into(), detail: "unplugged".into() };
        let row = stored(42, NewEvent::new(Timestamp::from_second(1_800_000_000).unwrap(), health.clone()));
        let id = row.id;
        let event = event(row, &room());
        assert_eq!(event.id, id.as_bytes().to_vec());
        assert_eq!((event.seq, event.kind.as_str()), (42, "device.health"));
        assert_eq!(event.payload, Some(Payload::DeviceHealth(health)));
        assert!(event.raw_payload.is_empty());
        assert_eq!(event.recorded_at, Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 123_000_000 }));
        assert_eq!((event.clock_synced, event.clock_step_back_ms), (false, 4_000));
        assert_eq!(event.room, Some(room()));
    }

    #[test]
    fn a_kind_this_build_does_not_know_keeps_its_bytes() {
        let new = NewEvent { kind: "greenhouse.watering".into(), occurred_at: Timestamp::UNIX_EPOCH, payload: vec![8, 1] };
        let event = event(stored(1, new), &room());
        assert_eq!((event.payload, event.raw_payload), (None, vec![8, 1]));
    }

    #[test]
    fn batches_stay_under_the_size_limit_and_keep_order() {
        let events: Vec<Event> = (1..=100)
            .map(|seq| Event { seq, kind: "x".repeat(100), ..Default::default() })
            .collect();
        let batches = batches(events, 1_000);
        assert!(batches.len() > 10);
        assert!(batches.iter().all(|b| b.encoded_len() <= 1_000));
        let seqs: Vec<i64> = batches.iter().flat_map(|b| b.events.iter().map(|e| e.seq)).collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    }
}
