//! The decisions of one room's link, without I/O: where to resume, whether
//! what the room sent follows on from what is stored, and how long to wait
//! before dialling again.
//!
//! # Design
//! The driver (`sync::room`) asks [`resume`] once the room said who it is,
//! then passes every message of the Pull stream through [`Link::receive`],
//! which says what to store, or why the stream must be dropped and the link
//! started again from what PostgreSQL holds. Nothing here trusts the stream
//! to be right: a batch from another outbox, out of order, or behind the
//! cursor ends the stream rather than be stored.
//!
//! The times here bound sockets (silence on a stream, delay before dialling
//! again), not the rooms' records, so they are tokio's monotonic time; the
//! link names its next deadline ([`Link::silence_deadline`]) and the driver
//! only waits for it.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::config::RoomKey;
use crate::proto::{self, pull_response};
use crate::store::OutboxPosition;

/// Why the link to a room cannot go on as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the room at this address says it is {reported}, not {configured}: check rooms.address"
    )]
    WrongRoom {
        configured: RoomKey,
        reported: RoomKey,
    },
    #[error("the room sent an outbox identity of {0} bytes; identities are 16 bytes")]
    BadIdentity(usize),
    #[error("the room's outbox identity changed to {0} during a stream")]
    IdentityChanged(Uuid),
    #[error("the room sent seq {seq} after seq {cursor}: batches must follow on")]
    OutOfOrder { seq: i64, cursor: i64 },
    #[error("nothing heard from the room for {0:?}")]
    Silent(Duration),
}

/// Where to pull from, once the room's status is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The stored outbox is the room's: pull after its cursor.
    From(OutboxPosition),
    /// The room's outbox is not the one stored (or none is): record it as the
    /// room's current outbox (at cursor 0 when new), then pull from its cursor.
    Adopt(Uuid),
}

/// Decides where to resume `room`, given what is stored and what the room says of itself.
pub fn resume(
    room: &RoomKey,
    stored: Option<OutboxPosition>,
    status: &proto::AgentStatus,
) -> Result<Resume, LinkError> {
    let reported = status.room.as_ref().map(|r| RoomKey {
        school_code: r.school_code.clone(),
        room_id: r.room_id.clone(),
    });
    if let Some(reported) = reported
        && reported != *room
    {
        return Err(LinkError::WrongRoom {
            configured: room.clone(),
            reported,
        });
    }
    let identity = identity(&status.outbox_identity)?;
    Ok(match stored {
        Some(position) if position.identity == identity => Resume::From(position),
        _ => Resume::Adopt(identity),
    })
}

fn identity(bytes: &[u8]) -> Result<Uuid, LinkError> {
    Uuid::from_slice(bytes).map_err(|_| LinkError::BadIdentity(bytes.len()))
}

/// What to do with one message of the Pull stream.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// Store these events and the cursor after them, then acknowledge.
    Land(Vec<proto::Event>),
    /// Record this skipped event and move the cursor past it, then acknowledge.
    Skip(proto::SkippedEvent),
    /// The room is alive and its newest seq is `last_seq`.
    Heartbeat { last_seq: i64 },
    /// A message of a kind this build does not know: nothing to do.
    Nothing,
}

/// One open Pull stream of one room.
#[derive(Debug)]
pub struct Link {
    position: OutboxPosition,
    silence: Duration,
    last_heard: Instant,
}

impl Link {
    /// A stream following `position`, opened at `now`.
    pub fn new(position: OutboxPosition, silence: Duration, now: Instant) -> Link {
        Link {
            position,
            silence,
            last_heard: now,
        }
    }

    /// The end of what the stream delivered and this link accepted (it may
    /// still be landing).
    pub fn position(&self) -> OutboxPosition {
        self.position
    }

    /// When the stream is given up if nothing arrives before.
    pub fn silence_deadline(&self) -> Instant {
        self.last_heard + self.silence
    }

    /// The deadline passed with nothing received.
    pub fn timed_out(&self) -> LinkError {
        LinkError::Silent(self.silence)
    }

    /// Checks a message received at `now` against what came before it on the
    /// stream (at first, the stored cursor), and moves past it.
    pub fn receive(
        &mut self,
        message: proto::PullResponse,
        now: Instant,
    ) -> Result<Received, LinkError> {
        self.last_heard = now;
        Ok(match message.message {
            Some(pull_response::Message::Batch(batch)) => {
                self.check_identity(&batch.outbox_identity)?;
                let mut cursor = self.position.cursor;
                for event in &batch.events {
                    if event.seq <= cursor {
                        return Err(LinkError::OutOfOrder {
                            seq: event.seq,
                            cursor,
                        });
                    }
                    cursor = event.seq;
                }
                self.position.cursor = cursor;
                if batch.events.is_empty() {
                    Received::Nothing
                } else {
                    Received::Land(batch.events)
                }
            }
            Some(pull_response::Message::Skipped(skipped)) => {
                self.check_identity(&skipped.outbox_identity)?;
                if skipped.seq <= self.position.cursor {
                    return Err(LinkError::OutOfOrder {
                        seq: skipped.seq,
                        cursor: self.position.cursor,
                    });
                }
                self.position.cursor = skipped.seq;
                Received::Skip(skipped)
            }
            Some(pull_response::Message::Heartbeat(heartbeat)) => {
                self.check_identity(&heartbeat.outbox_identity)?;
                Received::Heartbeat {
                    last_seq: heartbeat.last_seq,
                }
            }
            None => Received::Nothing,
        })
    }

    /// The driver was busy until `now` (the landing was behind): the room's
    /// silence counts from here, not from the last message.
    pub fn listening(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    fn check_identity(&self, bytes: &[u8]) -> Result<(), LinkError> {
        // An empty identity is from an agent older than identities: nothing to compare.
        if bytes.is_empty() {
            return Ok(());
        }
        let identity = identity(bytes)?;
        if identity == self.position.identity {
            Ok(())
        } else {
            Err(LinkError::IdentityChanged(identity))
        }
    }
}

/// The delay before dialling a room again: doubling from `min` to `max` with
/// each failure in a row, each delay drawn between half and all of it so that
/// rooms that failed together (a hub restart, a network cut) do not all dial
/// again at the same instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            failures: 0,
        }
    }

    /// The link got somewhere (stored a batch or heard a heartbeat): the next failure starts over.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// A failure: how long to wait, given `jitter` drawn uniformly from [0, 1).
    pub fn failed(&mut self, jitter: f64) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomKey {
        RoomKey {
            school_code: "LC-01".into(),
            room_id: "P201".into(),
        }
    }

    fn status(identity: Uuid, room_id: &str) -> proto::AgentStatus {
        proto::AgentStatus {
            room: Some(proto::RoomIdentity {
                school_code: "LC-01".into(),
                room_id: room_id.into(),
            }),
            outbox_identity: identity.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn batch(identity: Uuid, seqs: &[i64]) -> proto::PullResponse {
        proto::PullResponse {
            message: Some(pull_response::Message::Batch(proto::EventBatch {
                events: seqs
                    .iter()
                    .map(|&seq| proto::Event {
                        seq,
                        ..Default::default()
                    })
                    .collect(),
                outbox_identity: identity.as_bytes().to_vec(),
            })),
        }
    }

    #[test]
    fn resumes_the_stored_outbox_and_adopts_a_new_one() {
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        let stored = OutboxPosition {
            identity: old,
            cursor: 40,
        };
        assert_eq!(
            resume(&room(), Some(stored), &status(old, "P201")),
            Ok(Resume::From(stored))
        );
        assert_eq!(
            resume(&room(), Some(stored), &status(new, "P201")),
            Ok(Resume::Adopt(new))
        );
        assert_eq!(
            resume(&room(), None, &status(new, "P201")),
            Ok(Resume::Adopt(new))
        );
        assert!(matches!(
            resume(&room(), None, &status(new, "P202")),
            Err(LinkError::WrongRoom { .. })
        ));
    }

    #[test]
    fn a_batch_must_follow_the_cursor_in_the_same_outbox() {
        let identity = Uuid::new_v4();
        let now = Instant::now();
        let mut link = Link::new(
            OutboxPosition {
                identity,
                cursor: 10,
            },
            Duration::from_secs(30),
            now,
        );
        assert!(matches!(
            link.receive(batch(identity, &[11, 12, 15]), now),
            Ok(Received::Land(events)) if events.len() == 3
        ));
        assert_eq!(
            link.position(),
            OutboxPosition {
                identity,
                cursor: 15
            },
            "the next batch follows what was received, landed or not"
        );
        assert_eq!(
            link.receive(batch(identity, &[15, 16]), now),
            Err(LinkError::OutOfOrder {
                seq: 15,
                cursor: 15
            })
        );
        assert_eq!(
            link.receive(batch(identity, &[17, 16]), now),
            Err(LinkError::OutOfOrder {
                seq: 16,
                cursor: 17
            })
        );
        let other = Uuid::new_v4();
        assert_eq!(
            link.receive(batch(other, &[16]), now),
            Err(LinkError::IdentityChanged(other))
        );
    }

    #[test]
    fn silence_is_counted_from_the_last_message() {
        let identity = Uuid::new_v4();
        let start = Instant::now();
        let position = OutboxPosition {
            identity,
            cursor: 0,
        };
        let mut link = Link::new(position, Duration::from_secs(30), start);
        assert_eq!(link.silence_deadline(), start + Duration::from_secs(30));
        let later = start + Duration::from_secs(20);
        let heartbeat = proto::PullResponse {
            message: Some(pull_response::Message::Heartbeat(proto::Heartbeat {
                last_seq: 7,
                agent_time: None,
                outbox_identity: identity.as_bytes().to_vec(),
            })),
        };
        assert_eq!(
            link.receive(heartbeat, later),
            Ok(Received::Heartbeat { last_seq: 7 })
        );
        assert_eq!(link.silence_deadline(), later + Duration::from_secs(30));
        let busy_until = later + Duration::from_secs(45);
        link.listening(busy_until);
        assert_eq!(
            link.silence_deadline(),
            busy_until + Duration::from_secs(30),
            "time spent waiting for the landing is not the room's silence"
        );
        link.listening(start);
        assert_eq!(
            link.silence_deadline(),
            busy_until + Duration::from_secs(30)
        );
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter_and_starts_over() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let ceilings: Vec<u64> = (0..6)
            .map(|_| backoff.failed(0.999_999).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, vec![499, 999, 1999, 3999, 3999, 3999]);
        backoff.succeeded();
        assert_eq!(backoff.failed(0.0), Duration::from_millis(250));
    }
}
