//! Outbox rows as the hub contract's messages.
//!
//! # Design
//! The payload is stored as the protobuf encoding of its own message, so a row
//! becomes an `Event` by decoding it into the `payload` oneof. A row this build
//! cannot type (a kind from a newer build) is still sent, its bytes untouched
//! in `raw_payload`: the hub must never lose a record because a room runs old
//! software; so is a row of a known kind whose bytes hold fields this build
//! does not know (typing it would drop them). Batches are cut by encoded size as well as by count, so one large
//! payload never pushes a message past the size limit the hub accepts.
//!
//! An event whose message would exceed the limit even alone (this build never
//! writes one, see `events`, but another may have) becomes a `SkippedEvent` in
//! its place, so the events after it still go. Every batch, skip notice and
//! heartbeat names the outbox it comes from.

use jiff::Timestamp;
use prost::Message;

use uuid::Uuid;

use super::cursor::{self, Undeliverable};
use crate::proto::{Event, EventBatch, RoomIdentity, SkippedEvent, event::Payload, pull_response};
use crate::store::outbox::StoredEvent;

/// Bytes of one length-delimited field holding `len` bytes, with a one-byte tag.
fn framed(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// Bytes an outbox identity adds to a batch: its tag, length and 16 bytes.
const IDENTITY_FIELD_BYTES: usize = 18;

/// The size of the message (`PullResponse`) carrying one event of `event_len` bytes alone.
fn message_alone_len(event_len: usize) -> usize {
    framed(framed(event_len) + IDENTITY_FIELD_BYTES)
}

/// The largest message one event this build writes can need: a payload at
/// `store::outbox::MAX_PAYLOAD_BYTES` with the longest kind, room identity (32
/// characters each, as the config allows) and numbers. `hub.max_message_bytes`
/// may not be smaller.
pub fn largest_message() -> usize {
    let longest = |n: usize| "x".repeat(n);
    let far = prost_types::Timestamp {
        seconds: 253_402_300_799,
        nanos: 999_999_999,
    };
    let event = Event {
        id: vec![0xff; 16],
        seq: i64::MAX,
        kind: longest(Payload::LONGEST_KIND),
        occurred_at: Some(far),
        recorded_at: Some(far),
        clock_synced: true,
        clock_step_back_ms: i64::MAX,
        room: Some(RoomIdentity {
            school_code: longest(32),
            room_id: longest(32),
        }),
        // One byte more than the bound: a typed payload's field number takes a two-byte tag.
        raw_payload: vec![0xff; crate::store::outbox::MAX_PAYLOAD_BYTES + 1],
        payload: None,
    };
    message_alone_len(event.encoded_len())
}

/// The contract's timestamp for a jiff one.
pub fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: at.subsec_nanosecond(),
    }
}

/// One outbox row as the hub receives it.
pub fn event(stored: StoredEvent, room: &RoomIdentity) -> Event {
    let (payload, raw_payload) = match Payload::decode_stored(&stored.kind, &stored.payload) {
        // Typed only when typing loses nothing: a decoder skips fields it does
        // not know, so bytes written by another build may decode into less.
        Ok(Some(payload)) if payload.encode_inner() == stored.payload => {
            (Some(payload), Vec::new())
        }
        Ok(Some(_)) => {
            tracing::warn!(
                seq = stored.seq,
                kind = stored.kind,
                "a stored payload has fields this build does not know; sent as raw bytes"
            );
            (None, stored.payload)
        }
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

/// What one read of the outbox sends, in seq order: batches whose encoding
/// stays under `batch_bytes` (a single event larger than that travels alone),
/// and in the place of each event whose message would exceed
/// `max_message_bytes` even alone, a notice that it was skipped and why.
pub fn messages(
    events: Vec<Event>,
    batch_bytes: usize,
    max_message_bytes: usize,
    outbox: Uuid,
) -> Vec<pull_response::Message> {
    let identity = outbox.as_bytes().to_vec();
    let new_batch = || EventBatch {
        events: Vec::new(),
        outbox_identity: identity.clone(),
    };
    let mut messages = Vec::new();
    let mut current = new_batch();
    let mut size = 0;
    for event in events {
        let len = event.encoded_len();
        if let Err(undeliverable) = cursor::deliverable(message_alone_len(len), max_message_bytes) {
            if !current.events.is_empty() {
                messages.push(pull_response::Message::Batch(std::mem::replace(
                    &mut current,
                    new_batch(),
                )));
                size = 0;
            }
            messages.push(pull_response::Message::Skipped(skipped(
                &event,
                undeliverable,
                &identity,
            )));
            continue;
        }
        if size + framed(len) > batch_bytes && !current.events.is_empty() {
            messages.push(pull_response::Message::Batch(std::mem::replace(
                &mut current,
                new_batch(),
            )));
            size = 0;
        }
        size += framed(len);
        current.events.push(event);
    }
    if !current.events.is_empty() {
        messages.push(pull_response::Message::Batch(current));
    }
    messages
}

fn skipped(event: &Event, undeliverable: Undeliverable, identity: &[u8]) -> SkippedEvent {
    SkippedEvent {
        seq: event.seq,
        id: event.id.clone(),
        kind: event.kind.clone(),
        message_bytes: undeliverable.message_bytes as u64,
        reason: format!(
            "too large to send: {undeliverable}; raise hub.max_message_bytes and pull again from before seq {} to receive it",
            event.seq
        ),
        outbox_identity: identity.to_vec(),
    }
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
        RoomIdentity {
            school_code: "LC-01".into(),
            room_id: "P201".into(),
        }
    }

    #[test]
    fn a_row_becomes_a_typed_event_with_its_identity_and_clock_state() {
        let health = proto::DeviceHealth {
            subsystem: "camera".into(),
            state: "failed".into(),
            detail: "unplugged".into(),
        };
        let row = stored(
            42,
            NewEvent::new(
                Timestamp::from_second(1_800_000_000).unwrap(),
                health.clone(),
            ),
        );
        let id = row.id;
        let event = event(row, &room());
        assert_eq!(event.id, id.as_bytes().to_vec());
        assert_eq!((event.seq, event.kind.as_str()), (42, "device.health"));
        assert_eq!(event.payload, Some(Payload::DeviceHealth(health)));
        assert!(event.raw_payload.is_empty());
        assert_eq!(
            event.recorded_at,
            Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 123_000_000
            })
        );
        assert_eq!(
            (event.clock_synced, event.clock_step_back_ms),
            (false, 4_000)
        );
        assert_eq!(event.room, Some(room()));
    }

    #[test]
    fn a_kind_this_build_does_not_know_keeps_its_bytes() {
        let new = NewEvent {
            kind: "greenhouse.watering".into(),
            occurred_at: Timestamp::UNIX_EPOCH,
            payload: vec![8, 1],
        };
        let event = event(stored(1, new), &room());
        assert_eq!((event.payload, event.raw_payload), (None, vec![8, 1]));
    }

    #[test]
    fn a_known_kind_whose_bytes_this_build_cannot_type_whole_keeps_its_bytes() {
        // Field 15, unknown to LessonRecord, as a newer build (or a damaged row) might hold.
        let bytes = b"xxxx".to_vec();
        assert!(
            matches!(Payload::decode_stored("lesson.record", &bytes), Ok(Some(_))),
            "the decoder alone would type it"
        );
        let new = NewEvent {
            kind: "lesson.record".into(),
            occurred_at: Timestamp::UNIX_EPOCH,
            payload: bytes.clone(),
        };
        let event = event(stored(1, new), &room());
        assert_eq!((event.payload, event.raw_payload), (None, bytes));
    }

    fn batches(messages: &[pull_response::Message]) -> Vec<&EventBatch> {
        messages
            .iter()
            .filter_map(|m| {
                if let pull_response::Message::Batch(b) = m {
                    Some(b)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn batches_stay_under_the_size_limit_keep_order_and_name_their_outbox() {
        let events: Vec<Event> = (1..=100)
            .map(|seq| Event {
                seq,
                kind: "x".repeat(100),
                ..Default::default()
            })
            .collect();
        let outbox = Uuid::new_v4();
        let messages = messages(events, 1_000, 65_536, outbox);
        let batches = batches(&messages);
        assert_eq!(batches.len(), messages.len(), "nothing was skipped");
        assert!(batches.len() > 10);
        assert!(
            batches
                .iter()
                .all(|b| b.encoded_len() <= 1_000 + IDENTITY_FIELD_BYTES)
        );
        assert!(
            batches
                .iter()
                .all(|b| b.outbox_identity == outbox.as_bytes())
        );
        let seqs: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.seq))
            .collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    }

    #[test]
    fn an_event_too_large_for_a_message_is_skipped_in_its_place_and_the_rest_go() {
        let small = |seq| Event {
            seq,
            kind: "device.health".into(),
            ..Default::default()
        };
        let large = Event {
            seq: 2,
            kind: "lesson.record".into(),
            raw_payload: vec![1; 80_000],
            ..Default::default()
        };
        let outbox = Uuid::new_v4();
        let messages = messages(
            vec![small(1), large.clone(), small(3)],
            32_768,
            65_536,
            outbox,
        );
        assert_eq!(messages.len(), 3);
        let pull_response::Message::Skipped(skip) = &messages[1] else {
            panic!("the large event is skipped: {messages:?}")
        };
        assert_eq!(
            (
                skip.seq,
                skip.kind.as_str(),
                skip.outbox_identity.as_slice()
            ),
            (2, "lesson.record", &outbox.as_bytes()[..])
        );
        assert_eq!(
            skip.message_bytes as usize,
            message_alone_len(large.encoded_len())
        );
        assert!(
            skip.reason.contains("hub.max_message_bytes is 65536"),
            "{}",
            skip.reason
        );
        let sent: Vec<i64> = batches(&messages)
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.seq))
            .collect();
        assert_eq!(sent, vec![1, 3]);
    }

    #[test]
    fn the_size_of_a_message_alone_is_what_it_encodes_to() {
        let event = Event {
            seq: 9,
            raw_payload: vec![3; 70_000],
            ..Default::default()
        };
        let outbox = Uuid::new_v4();
        let message = crate::proto::PullResponse {
            message: Some(pull_response::Message::Batch(EventBatch {
                events: vec![event.clone()],
                outbox_identity: outbox.as_bytes().to_vec(),
            })),
        };
        assert_eq!(
            message_alone_len(event.encoded_len()),
            message.encoded_len()
        );
        assert!(
            largest_message() > crate::store::outbox::MAX_PAYLOAD_BYTES
                && largest_message() < 64 * 1024
        );
    }
}
