//! The sync protocol's decisions, without I/O: what a Pull stream does next,
//! and whether an Ack may move the acknowledged cursor.
//!
//! # Design
//! A Pull stream is a cursor (`after`: every event up to it was sent) and one
//! question, asked again after each thing that happens: read the next batch,
//! wait, send a heartbeat, or finish? The async loop in `service` asks, does
//! what it is told, and reports back what it read or what woke it. Because the
//! cursor only moves to the last sequence number actually sent, a stream that
//! breaks at any point has sent a gap-free prefix, and the hub resumes from the
//! last event it stored.

use std::time::Duration;

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
}

impl PullCursor {
    pub fn new(after_seq: i64, max_batch: u32, follow: bool) -> Result<PullCursor, PullRefused> {
        if after_seq < 0 {
            return Err(PullRefused::NegativeCursor(after_seq));
        }
        let limit = match max_batch as usize {
            0 => DEFAULT_BATCH,
            asked => asked.min(MAX_BATCH),
        };
        Ok(PullCursor { after: after_seq, limit, follow, known_last: after_seq, caught_up: false, heartbeat_due: false })
    }

    /// The last sequence number sent (or the starting cursor).
    pub fn after(&self) -> i64 {
        self.after
    }

    pub fn next(&self) -> Step {
        if !self.caught_up || self.known_last > self.after {
            Step::Read { after: self.after, limit: self.limit }
        } else if !self.follow {
            Step::Finish
        } else if self.heartbeat_due {
            Step::Heartbeat { last_seq: self.after }
        } else {
            Step::Wait
        }
    }

    /// A read returned `count` events, the last with sequence number `last_seq`;
    /// all of them were sent.
    pub fn sent(&mut self, count: usize, last_seq: Option<i64>) {
        if let Some(last) = last_seq {
            debug_assert!(last > self.after, "events are sent in seq order");
            self.after = last;
            self.known_last = self.known_last.max(last);
        }
        self.caught_up = count < self.limit;
        if count > 0 {
            self.heartbeat_due = false;
        }
    }

    /// This process committed events up to `seq`.
    pub fn committed(&mut self, seq: i64) {
        self.known_last = self.known_last.max(seq);
    }

    /// The poll interval passed: look again, in case another process committed.
    pub fn poll(&mut self) {
        self.caught_up = false;
    }

    /// The heartbeat interval passed with nothing sent.
    pub fn heartbeat_elapsed(&mut self) {
        self.heartbeat_due = true;
    }

    /// A heartbeat was sent.
    pub fn heartbeat_sent(&mut self) {
        self.heartbeat_due = false;
    }
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

    #[test]
    fn a_one_shot_pull_reads_until_a_short_batch_then_finishes() {
        let mut cursor = PullCursor::new(10, 3, false).unwrap();
        assert_eq!(cursor.next(), Step::Read { after: 10, limit: 3 });
        cursor.sent(3, Some(13));
        assert_eq!(cursor.next(), Step::Read { after: 13, limit: 3 });
        cursor.sent(1, Some(15));
        assert_eq!(cursor.next(), Step::Finish);
        assert_eq!(cursor.after(), 15);
    }

    #[test]
    fn an_empty_outbox_finishes_after_one_read() {
        let mut cursor = PullCursor::new(0, 0, false).unwrap();
        assert_eq!(cursor.next(), Step::Read { after: 0, limit: DEFAULT_BATCH });
        cursor.sent(0, None);
        assert_eq!(cursor.next(), Step::Finish);
    }

    #[test]
    fn a_follow_stream_waits_and_reads_again_on_a_commit_or_a_poll() {
        let mut cursor = PullCursor::new(0, 100, true).unwrap();
        cursor.sent(2, Some(2));
        assert_eq!(cursor.next(), Step::Wait);
        cursor.committed(2);
        assert_eq!(cursor.next(), Step::Wait, "a commit already sent wakes nothing");
        cursor.committed(5);
        assert_eq!(cursor.next(), Step::Read { after: 2, limit: 100 });
        cursor.sent(3, Some(5));
        assert_eq!(cursor.next(), Step::Wait);
        cursor.poll();
        assert_eq!(cursor.next(), Step::Read { after: 5, limit: 100 }, "another process may have committed");
        cursor.sent(0, None);
        assert_eq!(cursor.next(), Step::Wait);
    }

    #[test]
    fn an_idle_follow_stream_heartbeats_and_events_reset_the_heartbeat() {
        let mut cursor = PullCursor::new(7, 0, true).unwrap();
        cursor.sent(0, None);
        cursor.heartbeat_elapsed();
        assert_eq!(cursor.next(), Step::Heartbeat { last_seq: 7 });
        cursor.heartbeat_sent();
        assert_eq!(cursor.next(), Step::Wait);
        cursor.heartbeat_elapsed();
        cursor.committed(8);
        assert_eq!(cursor.next(), Step::Read { after: 7, limit: DEFAULT_BATCH }, "events come before heartbeats");
        cursor.sent(1, Some(8));
        assert_eq!(cursor.next(), Step::Wait);
    }

    #[test]
    fn batch_sizes_are_bounded_and_negative_cursors_refused() {
        assert_eq!(PullCursor::new(0, 1_000_000, false).unwrap().next(), Step::Read { after: 0, limit: MAX_BATCH });
        assert_eq!(PullCursor::new(-1, 0, false).unwrap_err(), PullRefused::NegativeCursor(-1));
    }

    #[test]
    fn acks_move_forward_only_and_never_past_what_was_sent() {
        assert_eq!(acknowledge(5, 10, 8), Ok(8));
        assert_eq!(acknowledge(8, 10, 3), Ok(8));
        assert_eq!(acknowledge(8, 10, 11), Err(AckRefused::Beyond { asked: 11, last: 10 }));
        assert_eq!(acknowledge(0, 10, -2), Err(AckRefused::Negative(-2)));
    }
}
