//! The sync protocol's decisions, without I/O: whether a Pull may start, what
//! its stream does next, whether an event can be sent or must be skipped, and
//! whether an Ack may move the acknowledged cursor.
//!
//! # Design
//! A Pull stream is a cursor (`after`: every event up to it was sent) and one
//! question, asked again after each thing that happens: read the next batch,
//! wait, send a heartbeat, or finish? The async loop in `service` asks, does
//! what it is told, and reports back what it read or what woke it. Because the
//! cursor only moves to the last sequence number actually sent, a stream that
//! breaks at any point has sent a gap-free prefix, and the hub resumes from the
//! last event it stored.
//!
//! A cursor is only meaningful in the outbox that handed it out. A Pull from
//! beyond the newest seq ever handed out is refused rather than answered with
//! nothing (it is a cursor from a replaced database), heartbeats say the
//! newest seq the database holds rather than echo the cursor, and an Ack that
//! names another outbox's identity is refused.
//!
//! An event too large for one message is skipped in its place, with a notice
//! saying which seq and why, so that one event never stops the stream.
//!
//! A waiting follow stream has two timers, both on the clock's monotonic time:
//! the heartbeat and the look at the database for other processes' commits.
//! The cursor says when the next is due ([`PullCursor::next_deadline`]) and is
//! told when that time has come ([`PullCursor::handle_timeout`]); the loop only
//! sleeps.

use std::time::Duration;

use uuid::Uuid;

use crate::clock::Monotonic;

/// Events per batch when the hub lets the agent choose.
pub const DEFAULT_BATCH: usize = 1_000;
/// The most events per batch whatever the hub asks.
pub const MAX_BATCH: usize = 10_000;
/// How often an idle follow stream sends a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often an idle follow stream looks at the database for events committed
/// by another process, whose commits this process is not told about.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What the stream's loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read up to `limit` events with `seq > after` and send them.
    Read { after: i64, limit: usize },
    /// Caught up on a follow stream: wait for a commit, the poll interval or the heartbeat.
    Wait,
    /// Send a heartbeat saying the newest sequence number is `last_seq`.
    Heartbeat { last_seq: i64 },
    /// Caught up and not following: end the stream.
    Finish,
}

/// Why a Pull request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullRefused {
    #[error("after_seq is {0}; a cursor is 0 or a sequence number the agent sent")]
    NegativeCursor(i64),
    #[error(
        "after_seq {asked} is beyond the newest event this outbox ever handed out ({newest}): the cursor belongs to \
         another outbox (the room's database was replaced); record this outbox's identity and pull it from 0"
    )]
    BeyondEnd { asked: i64, newest: i64 },
}

/// One Pull stream's position and what it knows of the outbox.
#[derive(Debug, Clone)]
pub struct PullCursor {
    after: i64,
    limit: usize,
    follow: bool,
    /// The newest sequence number known to be committed; reading stops being
    /// needed once `after` reaches it.
    known_last: i64,
    /// Whether the last read came back short: nothing more was committed then.
    caught_up: bool,
    heartbeat_due: bool,
    /// When an idle follow stream sends its next heartbeat.
    heartbeat_at: Monotonic,
    /// When a waiting follow stream next looks for events other processes committed.
    poll_at: Monotonic,
}

impl PullCursor {
    /// A stream from `after_seq` in an outbox whose newest seq handed out is `newest`, starting `now`.
    pub fn new(
        after_seq: i64,
        max_batch: u32,
        follow: bool,
        newest: i64,
        now: Monotonic,
    ) -> Result<PullCursor, PullRefused> {
        if after_seq < 0 {
            return Err(PullRefused::NegativeCursor(after_seq));
        }
        if after_seq > newest {
            return Err(PullRefused::BeyondEnd {
                asked: after_seq,
                newest,
            });
        }
        let limit = match max_batch as usize {
            0 => DEFAULT_BATCH,
            asked => asked.min(MAX_BATCH),
        };
        Ok(PullCursor {
            after: after_seq,
            limit,
            follow,
            known_last: newest,
            caught_up: false,
            heartbeat_due: false,
            heartbeat_at: now + HEARTBEAT_INTERVAL,
            poll_at: now + POLL_INTERVAL,
        })
    }

    /// The last sequence number sent or skipped (or the starting cursor, or
    /// the end of a pruned stretch read past).
    pub fn after(&self) -> i64 {
        self.after
    }

    pub fn next(&self) -> Step {
        if !self.caught_up || self.known_last > self.after {
            Step::Read {
                after: self.after,
                limit: self.limit,
            }
        } else if !self.follow {
            Step::Finish
        } else if self.heartbeat_due {
            Step::Heartbeat {
                last_seq: self.known_last,
            }
        } else {
            Step::Wait
        }
    }

    /// A read returned `count` events, the last with sequence number `last_seq`;
    /// each of them was sent or announced as skipped by `now`. A short read saw
    /// every event committed before it, so the seqs up to the newest known are
    /// all behind the cursor, even those pruned before they were read.
    pub fn sent(&mut self, count: usize, last_seq: Option<i64>, now: Monotonic) {
        if let Some(last) = last_seq {
            debug_assert!(last > self.after, "events are sent in seq order");
            self.after = last;
            self.known_last = self.known_last.max(last);
        }
        self.caught_up = count < self.limit;
        if self.caught_up {
            self.after = self.known_last;
        }
        if count > 0 {
            self.heartbeat_due = false;
            self.heartbeat_at = now + HEARTBEAT_INTERVAL;
        }
        self.poll_at = now + POLL_INTERVAL;
    }

    /// This process committed events up to `seq`.
    pub fn committed(&mut self, seq: i64) {
        self.known_last = self.known_last.max(seq);
    }

    /// When a waiting stream next has something to do though nothing was
    /// committed: look for other processes' events, or send a heartbeat.
    pub fn next_deadline(&self) -> Monotonic {
        self.poll_at.min(self.heartbeat_at)
    }

    /// The time is `now`, at or after [`PullCursor::next_deadline`]: the poll
    /// interval passed (look again, in case another process committed), or the
    /// heartbeat interval passed with nothing sent, or both.
    pub fn handle_timeout(&mut self, now: Monotonic) {
        if now >= self.poll_at {
            self.caught_up = false;
        }
        if now >= self.heartbeat_at {
            self.heartbeat_due = true;
        }
    }

    /// A heartbeat was sent at `now`.
    pub fn heartbeat_sent(&mut self, now: Monotonic) {
        self.heartbeat_due = false;
        self.heartbeat_at = now + HEARTBEAT_INTERVAL;
    }
}

/// An event whose message would not fit the link's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "its message would take {message_bytes} bytes and hub.max_message_bytes is {max_message_bytes}"
)]
pub struct Undeliverable {
    pub message_bytes: usize,
    pub max_message_bytes: usize,
}

/// Whether an event whose message, sent alone, takes `message_bytes` can be
/// sent under the limit `max_message_bytes`; if not, it is skipped in its place.
pub fn deliverable(message_bytes: usize, max_message_bytes: usize) -> Result<(), Undeliverable> {
    if message_bytes <= max_message_bytes {
        Ok(())
    } else {
        Err(Undeliverable {
            message_bytes,
            max_message_bytes,
        })
    }
}

/// An Ack that named another outbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the ack names outbox {claimed}, but this agent's outbox is {ours}: the room's database was replaced since \
     those events were pulled; nothing was acknowledged, pull this outbox from 0"
)]
pub struct OtherOutbox {
    pub claimed: String,
    pub ours: Uuid,
}

/// Whether an Ack naming outbox `claimed` (empty: unchecked) may act on the outbox `ours`.
pub fn same_outbox(claimed: &[u8], ours: Uuid) -> Result<(), OtherOutbox> {
    if claimed.is_empty() || claimed == ours.as_bytes() {
        return Ok(());
    }
    let claimed = Uuid::from_slice(claimed).map_or_else(
        |_| format!("0x{}", hex::encode(claimed)),
        |id| id.to_string(),
    );
    Err(OtherOutbox { claimed, ours })
}

/// Why an Ack was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckRefused {
    #[error("seq {asked} was never sent: the newest event is {last}")]
    Beyond { asked: i64, last: i64 },
    #[error("seq {0} is negative")]
    Negative(i64),
}

/// Where an Ack of `asked` moves the cursor now at `acked`, when the newest
/// sequence number handed out is `last`. An older ack changes nothing (the hub
/// may resend one after a reconnect); one beyond what exists is refused, as it
/// would let unsent events be pruned.
pub fn acknowledge(acked: i64, last: i64, asked: i64) -> Result<i64, AckRefused> {
    if asked < 0 {
        Err(AckRefused::Negative(asked))
    } else if asked > last {
        Err(AckRefused::Beyond { asked, last })
    } else {
        Ok(acked.max(asked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` milliseconds into the stream.
    fn at(ms: u64) -> Monotonic {
        Monotonic::default() + Duration::from_millis(ms)
    }

    #[test]
    fn a_one_shot_pull_reads_until_a_short_batch_then_finishes() {
        let mut cursor = PullCursor::new(10, 3, false, 15, at(0)).unwrap();
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 10,
                limit: 3
            }
        );
        cursor.sent(3, Some(13), at(0));
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 13,
                limit: 3
            }
        );
        cursor.sent(1, Some(15), at(0));
        assert_eq!(cursor.next(), Step::Finish);
        assert_eq!(cursor.after(), 15);
    }

    #[test]
    fn an_empty_outbox_finishes_after_one_read() {
        let mut cursor = PullCursor::new(0, 0, false, 0, at(0)).unwrap();
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 0,
                limit: DEFAULT_BATCH
            }
        );
        cursor.sent(0, None, at(0));
        assert_eq!(cursor.next(), Step::Finish);
    }

    #[test]
    fn a_follow_stream_waits_and_reads_again_on_a_commit_or_a_poll() {
        let mut cursor = PullCursor::new(0, 100, true, 2, at(0)).unwrap();
        cursor.sent(2, Some(2), at(0));
        assert_eq!(cursor.next(), Step::Wait);
        cursor.committed(2);
        assert_eq!(
            cursor.next(),
            Step::Wait,
            "a commit already sent wakes nothing"
        );
        cursor.committed(5);
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 2,
                limit: 100
            }
        );
        cursor.sent(3, Some(5), at(10));
        assert_eq!(cursor.next(), Step::Wait);
        assert_eq!(
            cursor.next_deadline(),
            at(30),
            "the next look at the database, a poll interval after the read"
        );
        cursor.handle_timeout(at(29));
        assert_eq!(cursor.next(), Step::Wait, "not a millisecond early");
        cursor.handle_timeout(at(30));
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 5,
                limit: 100
            },
            "another process may have committed"
        );
        cursor.sent(0, None, at(31));
        assert_eq!(cursor.next(), Step::Wait);
        assert_eq!(cursor.next_deadline(), at(51));
    }

    #[test]
    fn an_idle_follow_stream_heartbeats_and_events_reset_the_heartbeat() {
        let heartbeat = HEARTBEAT_INTERVAL.as_millis() as u64;
        let mut cursor = PullCursor::new(7, 0, true, 7, at(0)).unwrap();
        cursor.sent(0, None, at(0));
        // An idle stream looks at the database every poll interval; its heartbeat waits its own interval.
        let mut now = 0;
        while cursor.next_deadline() < at(heartbeat) {
            now = cursor.next_deadline().saturating_since(at(0)).as_millis() as u64;
            cursor.handle_timeout(at(now));
            assert_eq!(
                cursor.next(),
                Step::Read {
                    after: 7,
                    limit: DEFAULT_BATCH
                },
                "{now} ms"
            );
            cursor.sent(0, None, at(now));
        }
        assert_eq!(now, heartbeat - POLL_INTERVAL.as_millis() as u64);
        cursor.handle_timeout(at(heartbeat));
        cursor.sent(0, None, at(heartbeat));
        assert_eq!(
            cursor.next(),
            Step::Heartbeat { last_seq: 7 },
            "due {heartbeat} ms after the stream started"
        );
        cursor.heartbeat_sent(at(heartbeat + 1));
        assert_eq!(cursor.next(), Step::Wait);
        cursor.handle_timeout(at(2 * heartbeat + 1));
        cursor.committed(8);
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 7,
                limit: DEFAULT_BATCH
            },
            "events come before heartbeats"
        );
        cursor.sent(1, Some(8), at(2 * heartbeat + 2));
        assert_eq!(cursor.next(), Step::Wait);
        cursor.handle_timeout(at(3 * heartbeat + 1));
        cursor.sent(0, None, at(3 * heartbeat + 1));
        assert_eq!(
            cursor.next(),
            Step::Wait,
            "the event sent put the heartbeat off"
        );
        assert_eq!(cursor.next_deadline(), at(3 * heartbeat + 2));
    }

    #[test]
    fn batch_sizes_are_bounded_and_negative_cursors_refused() {
        assert_eq!(
            PullCursor::new(0, 1_000_000, false, 0, at(0))
                .unwrap()
                .next(),
            Step::Read {
                after: 0,
                limit: MAX_BATCH
            }
        );
        assert_eq!(
            PullCursor::new(-1, 0, false, 0, at(0)).unwrap_err(),
            PullRefused::NegativeCursor(-1)
        );
    }

    #[test]
    fn a_cursor_beyond_the_newest_seq_handed_out_is_refused_and_the_end_itself_is_not() {
        assert_eq!(
            PullCursor::new(50, 0, true, 3, at(0)).unwrap_err(),
            PullRefused::BeyondEnd {
                asked: 50,
                newest: 3
            }
        );
        let mut cursor = PullCursor::new(3, 0, true, 3, at(0)).unwrap();
        cursor.sent(0, None, at(0));
        cursor.handle_timeout(at(0) + HEARTBEAT_INTERVAL);
        cursor.sent(0, None, at(0) + HEARTBEAT_INTERVAL);
        assert_eq!(cursor.next(), Step::Heartbeat { last_seq: 3 });
    }

    #[test]
    fn heartbeats_say_the_newest_seq_even_when_the_events_up_to_it_were_pruned() {
        let mut cursor = PullCursor::new(0, 0, true, 40, at(0)).unwrap();
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 0,
                limit: DEFAULT_BATCH
            }
        );
        cursor.sent(0, None, at(0));
        assert_eq!(
            cursor.next(),
            Step::Wait,
            "a short read covered the pruned stretch"
        );
        assert_eq!(cursor.after(), 40);
        cursor.handle_timeout(at(0) + HEARTBEAT_INTERVAL);
        cursor.sent(0, None, at(0) + HEARTBEAT_INTERVAL);
        assert_eq!(cursor.next(), Step::Heartbeat { last_seq: 40 });
        cursor.committed(41);
        assert_eq!(
            cursor.next(),
            Step::Read {
                after: 40,
                limit: DEFAULT_BATCH
            }
        );
    }

    #[test]
    fn an_event_too_large_for_one_message_is_undeliverable() {
        assert_eq!(deliverable(65_536, 65_536), Ok(()));
        assert_eq!(
            deliverable(80_000, 65_536),
            Err(Undeliverable {
                message_bytes: 80_000,
                max_message_bytes: 65_536
            })
        );
    }

    #[test]
    fn an_ack_naming_another_outbox_is_refused_and_one_naming_none_is_not() {
        let ours = Uuid::new_v4();
        let other = Uuid::new_v4();
        assert_eq!(same_outbox(b"", ours), Ok(()));
        assert_eq!(same_outbox(ours.as_bytes(), ours), Ok(()));
        let refused = same_outbox(other.as_bytes(), ours).unwrap_err();
        assert_eq!(
            refused,
            OtherOutbox {
                claimed: other.to_string(),
                ours
            }
        );
        assert!(
            refused.to_string().contains("nothing was acknowledged"),
            "{refused}"
        );
    }

    #[test]
    fn acks_move_forward_only_and_never_past_what_was_sent() {
        assert_eq!(acknowledge(5, 10, 8), Ok(8));
        assert_eq!(acknowledge(8, 10, 3), Ok(8));
        assert_eq!(
            acknowledge(8, 10, 11),
            Err(AckRefused::Beyond {
                asked: 11,
                last: 10
            })
        );
        assert_eq!(acknowledge(0, 10, -2), Err(AckRefused::Negative(-2)));
    }
}
