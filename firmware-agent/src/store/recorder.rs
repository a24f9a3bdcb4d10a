//! The one way records reach the outbox while the agent runs, and what happens
//! when the disk refuses them: a record the agent promised is kept, or the
//! action it would record is refused before it is done.
//!
//! # Design
//! A record is either of something already done in the room (a bell that rang,
//! a roll-call mark, the panel switched, a health change, a lesson command sent
//! to the tablets), or of something a sender will send again (a tablet's answer).
//! - Every record goes through one task, in arrival order, which commits
//!   whatever has queued up in one transaction.
//! - When the store refuses (disk full, read-only, any failed commit), records of
//!   things done join a bounded in-memory queue and are retried, oldest first,
//!   with a delay that doubles from [`RETRY_FIRST`] to [`RETRY_MAX`], counted in
//!   the clock's monotonic time so that a clock step neither hurries nor stalls
//!   the retries (`DESIGN.md`, "Time"). They keep
//!   their `occurred_at`; `recorded_at` says when they reached the disk. Records
//!   a sender will send again are refused at once (the tablet hears `unavailable`).
//! - Actions not yet done ask first ([`Recorder::admit`]). A teacher's action
//!   (bell, lights, a lesson command, a roll-call correction) is refused while
//!   the store refuses: the teacher is there to hear "not now" (HTTP 503, in
//!   Vietnamese first), and nothing a teacher did goes unrecorded for long. The
//!   room's own actions (the timetable's bells, automation, the panel's power)
//!   go on, their records queued, until the queue reaches its bound
//!   ([`LIMITS`]); past it they too are refused before they are done. The
//!   oldest queued records are never dropped.
//! - The bound is soft by the records of actions admitted just before it
//!   filled, by the roll call's (at most one mark a pupil a lesson, so never
//!   refused) and by health changes, which are recorded whatever the queue holds.
//! - The queue lives in memory: records still queued when the agent stops are
//!   lost, and the stop logs how many. A refusing store shows on `/healthz`
//!   (subsystem `store`, degraded, with the cause and the queue) and in
//!   `/metrics` (`agent_recorder_*`).
//!
//! [`Policy`] is that policy as a state machine without I/O, handed the time,
//! which announces when its next attempt is due ([`Policy::retry_at`]);
//! [`Recorder`] is its thin async face, which sleeps until then.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{mpsc, oneshot};

use super::lessons::AskedQuestion;
use super::outbox::{NewEvent, StoredEvent};
use super::{Store, StoreError};
use crate::clock::{Clock, Monotonic};
use crate::health::{Health, State};
use crate::proto::QuestionAnswer;
use crate::proto::event::Payload;

/// The queue's bound: weeks of a busy room's records (a room makes a few hundred a school day).
pub const LIMITS: Limits = Limits {
    max_records: 10_000,
    max_bytes: 8 * 1024 * 1024,
};
/// The first retry after the store refused; each failed retry doubles it.
pub const RETRY_FIRST: SignedDuration = SignedDuration::from_millis(250);
/// The longest wait between retries.
pub const RETRY_MAX: SignedDuration = SignedDuration::from_secs(5);
/// At most this many records in one transaction.
const BATCH: usize = 1_000;
/// What a queued record costs beyond its payload: the entry, its kind and times.
const RECORD_OVERHEAD_BYTES: usize = 96;

/// How much the queue may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// What to write: outbox events, or a roll call's decisions (events and mark rows).
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Events(Vec<NewEvent>),
    RollCall {
        occurred_at: Timestamp,
        payloads: Vec<Payload>,
    },
    /// A question the teacher asked, kept for the lesson's summary (no event:
    /// the command's own record goes to the outbox when it settles).
    Question(AskedQuestion),
    /// A pupil's answer: its event, and its row for the lesson's summary.
    Answer {
        question: AskedQuestion,
        occurred_at: Timestamp,
        answer: QuestionAnswer,
    },
}

impl Write {
    /// One event, as most writers record.
    pub fn event(occurred_at: Timestamp, payload: impl Into<Payload>) -> Write {
        Write::Events(vec![NewEvent::new(occurred_at, payload)])
    }

    /// What it costs to hold in memory, roughly.
    pub fn bytes(&self) -> usize {
        match self {
            Write::Events(events) => events
                .iter()
                .map(|e| e.payload.len() + e.kind.len() + RECORD_OVERHEAD_BYTES)
                .sum(),
            Write::RollCall { payloads, .. } => payloads
                .iter()
                .map(|p| p.encoded_len() + RECORD_OVERHEAD_BYTES)
                .sum(),
            Write::Question(question) => question.prompt.len() + RECORD_OVERHEAD_BYTES,
            Write::Answer {
                question, answer, ..
            } => {
                question.prompt.len()
                    + answer.text.len()
                    + answer.choices.iter().map(String::len).sum::<usize>()
                    + 2 * RECORD_OVERHEAD_BYTES
            }
        }
    }
}

/// What a record becomes when the store refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Something already done: queue it and retry.
    Queue,
    /// Its sender sends it again: refuse it at once.
    Refuse,
}

/// Who asks to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A teacher, at the panel or a command: refused as soon as the store refuses.
    Teacher,
    /// The room itself (timetable, automation, the roll call): refused once the queue is full.
    Room,
}

/// Why the store refuses writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    DiskFull,
    ReadOnly,
    Other(String),
}

impl Cause {
    pub fn of(err: &StoreError) -> Cause {
        match err {
            StoreError::DiskFull { .. } => Cause::DiskFull,
            StoreError::ReadOnly { .. } => Cause::ReadOnly,
            other => Cause::Other(
                other
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        }
    }

    fn vietnamese(&self) -> &'static str {
        match self {
            Cause::DiskFull => "ổ đĩa đã đầy",
            Cause::ReadOnly => "ổ đĩa chỉ cho đọc",
            Cause::Other(_) => "cơ sở dữ liệu báo lỗi",
        }
    }

    /// A short English name, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::DiskFull => "disk_full",
            Cause::ReadOnly => "read_only",
            Cause::Other(_) => "error",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::DiskFull => f.write_str("the data directory's disk is full"),
            Cause::ReadOnly => f.write_str("the database is read-only"),
            Cause::Other(detail) => f.write_str(detail),
        }
    }
}

/// Why an action or a record was refused: Vietnamese first, English detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({})", self.vietnamese(), self.english())]
pub struct Refusal {
    pub cause: Cause,
    pub queued: usize,
    pub bytes: usize,
    pub full: bool,
}

impl Refusal {
    /// The reason for the person at the panel.
    pub fn vietnamese(&self) -> String {
        format!(
            "Không lưu được bản ghi: {}; {} bản ghi đang chờ",
            self.cause.vietnamese(),
            self.queued
        )
    }

    /// The reason for IT staff and the log.
    pub fn english(&self) -> String {
        let full = if self.full { ", the queue is full" } else { "" };
        format!(
            "the store refuses records: {}; {} records queued, {} bytes{full}",
            self.cause, self.queued, self.bytes
        )
    }
}

/// The store's trouble, while it refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    pub cause: Cause,
    /// When the store first refused, as people read the time.
    pub since: Timestamp,
    pub attempts: u32,
    /// When the next attempt is due, on the clock's monotonic line.
    pub retry_at: Monotonic,
}

/// The queue as the rest of the agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub queued: usize,
    pub bytes: usize,
    pub trouble: Option<Trouble>,
}

impl Status {
    /// Whether an action `who` asks for may be done now, its record kept.
    pub fn admit(&self, who: Who, limits: Limits) -> Result<(), Refusal> {
        let Some(trouble) = &self.trouble else {
            return Ok(());
        };
        let full = self.queued >= limits.max_records || self.bytes >= limits.max_bytes;
        if who == Who::Teacher || full {
            return Err(Refusal {
                cause: trouble.cause.clone(),
                queued: self.queued,
                bytes: self.bytes,
                full,
            });
        }
        Ok(())
    }
}

/// A record in the queue.
#[derive(Debug)]
pub struct Entry<T> {
    pub ticket: u64,
    pub item: T,
    bytes: usize,
    mode: Mode,
}

/// What became of a record offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered<T> {
    /// It will be written at the next attempt; its ticket tells the outcome.
    Pending(u64),
    /// The store refuses: it waits in the queue.
    Queued(Refusal),
    /// The store refuses and its sender will send it again: here it is back.
    Refused(T, Refusal),
}

/// What became of the records of a failed attempt.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Failed {
    pub queued: Vec<u64>,
    pub refused: Vec<u64>,
}

/// The policy: the queue in arrival order and the store's trouble, without I/O.
#[derive(Debug)]
pub struct Policy<T> {
    limits: Limits,
    queue: VecDeque<Entry<T>>,
    bytes: usize,
    next_ticket: u64,
    trouble: Option<Trouble>,
}

impl<T> Policy<T> {
    pub fn new(limits: Limits) -> Self {
        Policy {
            limits,
            queue: VecDeque::new(),
            bytes: 0,
            next_ticket: 0,
            trouble: None,
        }
    }

    /// Takes a record of `bytes` bytes in. Nothing is refused for the queue's
    /// bound here: actions are refused before they are done ([`Status::admit`]).
    pub fn offer(&mut self, item: T, bytes: usize, mode: Mode) -> Offered<T> {
        if self.trouble.is_some() && mode == Mode::Refuse {
            return Offered::Refused(item, self.refusal());
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push_back(Entry {
            ticket,
            item,
            bytes,
            mode,
        });
        self.bytes += bytes;
        match self.trouble {
            Some(_) => Offered::Queued(self.refusal()),
            None => Offered::Pending(ticket),
        }
    }

    /// The oldest records, when it is time to write them.
    pub fn take(&mut self, now: Monotonic) -> Option<Vec<Entry<T>>> {
        if self.queue.is_empty() || self.trouble.as_ref().is_some_and(|t| now < t.retry_at) {
            return None;
        }
        let batch: Vec<Entry<T>> = self.queue.drain(..self.queue.len().min(BATCH)).collect();
        self.bytes -= batch.iter().map(|e| e.bytes).sum::<usize>();
        Some(batch)
    }

    /// The store took `batch`: it accepts writes again.
    pub fn committed(&mut self, batch: Vec<Entry<T>>) -> Vec<u64> {
        self.trouble = None;
        batch.into_iter().map(|e| e.ticket).collect()
    }

    /// The store refused `batch` at `at` (wall time, `now` on the monotonic
    /// line): records of things done go back to the front, in order; the rest
    /// are refused. The next attempt waits a little longer.
    pub fn failed(
        &mut self,
        batch: Vec<Entry<T>>,
        cause: Cause,
        at: Timestamp,
        now: Monotonic,
    ) -> Failed {
        let mut outcome = Failed::default();
        for entry in batch.into_iter().rev() {
            match entry.mode {
                Mode::Queue => {
                    outcome.queued.push(entry.ticket);
                    self.bytes += entry.bytes;
                    self.queue.push_front(entry);
                }
                Mode::Refuse => outcome.refused.push(entry.ticket),
            }
        }
        outcome.queued.reverse();
        outcome.refused.reverse();
        let (since, attempts) = self
            .trouble
            .as_ref()
            .map_or((at, 0), |t| (t.since, t.attempts));
        let delay = RETRY_FIRST
            .checked_mul(1 << attempts.min(16))
            .unwrap_or(RETRY_MAX)
            .min(RETRY_MAX);
        let retry_at = now + delay.unsigned_abs();
        self.trouble = Some(Trouble {
            cause,
            since,
            attempts: attempts + 1,
            retry_at,
        });
        outcome
    }

    /// When the next attempt is due, while the store refuses.
    pub fn retry_at(&self) -> Option<Monotonic> {
        self.trouble
            .as_ref()
            .filter(|_| !self.queue.is_empty())
            .map(|t| t.retry_at)
    }

    pub fn status(&self) -> Status {
        Status {
            queued: self.queue.len(),
            bytes: self.bytes,
            trouble: self.trouble.clone(),
        }
    }

    fn refusal(&self) -> Refusal {
        self.status()
            .admit(Who::Teacher, self.limits)
            .expect_err("only called while the store refuses")
    }
}

/// What became of a record handed to the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// On disk.
    Committed,
    /// In the queue, to be committed when the store takes writes again.
    Queued(Refusal),
    /// Not kept: its sender must send it again.
    Refused(Refusal),
}

struct Request {
    write: Write,
    mode: Mode,
    reply: Option<oneshot::Sender<Kept>>,
}

/// The recorder's handle: cheap to clone, one per store ([`Store::recorder`]).
#[derive(Clone)]
pub struct Recorder {
    requests: mpsc::UnboundedSender<Request>,
    status: Arc<Mutex<Status>>,
    clock: Arc<dyn Clock>,
    health: Arc<OnceLock<Health>>,
}

impl Recorder {
    /// Starts the recorder's task on the current runtime. It holds the store
    /// weakly and ends when the store is dropped.
    pub(super) fn start(store: &Arc<Store>) -> Recorder {
        let (requests, pending) = mpsc::unbounded_channel();
        let recorder = Recorder {
            requests,
            status: Arc::default(),
            clock: store.clock().clone(),
            health: Arc::default(),
        };
        tokio::spawn(run(Arc::downgrade(store), pending, recorder.clone()));
        recorder
    }

    /// Reports the store's state to `health` (subsystem `store`) from now on.
    pub fn report_to(&self, health: Health) {
        health.set(SUBSYSTEM, State::Ok, "records are committed as they come");
        let _ = self.health.set(health);
    }

    /// Whether an action `who` asks for may be done now: refused when its record could not be kept.
    pub fn admit(&self, who: Who) -> Result<(), Refusal> {
        let refused = self.status().admit(who, LIMITS);
        if refused.is_err() {
            metrics::counter!("agent_recorder_refused_actions_total", "who" => match who { Who::Teacher => "teacher", Who::Room => "room" }).increment(1);
        }
        refused
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps the record of something done: committed, or queued while the store refuses.
    pub async fn keep(&self, write: Write) -> Kept {
        self.send(write, Mode::Queue).await
    }

    /// Commits a record its sender will send again if it is refused.
    pub async fn keep_or_refuse(&self, write: Write) -> Kept {
        self.send(write, Mode::Refuse).await
    }

    /// Keeps the record of something done now, without waiting (a health change).
    pub fn keep_now(&self, payload: impl Into<Payload>) {
        let write = Write::event(self.clock.now(), payload);
        let _ = self.requests.send(Request {
            write,
            mode: Mode::Queue,
            reply: None,
        });
    }

    /// At stop: returns once every record handed in before is committed, or
    /// logs how many records the store refused are lost with the process.
    pub async fn finish(&self) {
        if let Kept::Refused(refusal) = self.keep_or_refuse(Write::Events(Vec::new())).await {
            tracing::error!(
                records = refusal.queued,
                bytes = refusal.bytes,
                "the agent stops with records the store refused; they are lost"
            );
        }
    }

    async fn send(&self, write: Write, mode: Mode) -> Kept {
        let (reply, kept) = oneshot::channel();
        let stopped = || {
            Kept::Refused(Refusal {
                cause: Cause::Other("the recorder has stopped".to_owned()),
                queued: 0,
                bytes: 0,
                full: false,
            })
        };
        if self
            .requests
            .send(Request {
                write,
                mode,
                reply: Some(reply),
            })
            .is_err()
        {
            return stopped();
        }
        kept.await.unwrap_or_else(|_| stopped())
    }

    fn publish(&self, status: Status) {
        metrics::gauge!("agent_recorder_queued_records").set(status.queued as f64);
        metrics::gauge!("agent_recorder_queued_bytes").set(status.bytes as f64);
        if let Some(health) = self.health.get() {
            match &status.trouble {
                None => health.set(SUBSYSTEM, State::Ok, "records are committed as they come"),
                Some(trouble) => health.set(
                    SUBSYSTEM,
                    State::Degraded,
                    format!(
                        "{}: {} bản ghi đang chờ ({}; {} records, {} bytes queued since {}, retrying)",
                        trouble.cause.vietnamese(),
                        status.queued,
                        trouble.cause,
                        status.queued,
                        status.bytes,
                        trouble.since
                    ),
                ),
            }
        }
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// The health subsystem that reports the store's writes.
pub const SUBSYSTEM: &str = "store";

/// Takes requests in order and writes them, retrying what the store refused.
async fn run(
    store: Weak<Store>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    recorder: Recorder,
) {
    let mut policy = Policy::new(LIMITS);
    // Who waits to hear how their record's first attempt went, by ticket.
    let mut waiting: HashMap<u64, oneshot::Sender<Kept>> = HashMap::new();
    let mut open = true;
    while open {
        // Sleeps only while a retry is due: an idle recorder holds no sleep on the clock.
        let retry = async {
            match policy.retry_at() {
                Some(at) => recorder.clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.recv() => match request {
                Some(request) => offer(&mut policy, &mut waiting, request),
                None => open = false,
            },
            () = retry => {}
        }
        while let Ok(request) = requests.try_recv() {
            offer(&mut policy, &mut waiting, request);
        }
        while let Some(batch) = policy.take(recorder.clock.monotonic()) {
            let Some(store) = store.upgrade() else { return };
            let writes: Vec<Write> = batch.iter().map(|entry| entry.item.clone()).collect();
            let written = store.blocking(move |store| store.commit(writes)).await;
            let failure = written.err().map(|err| (Cause::of(&err), err.to_string()));
            let Some((cause, error)) = failure else {
                if policy.status().trouble.is_some() {
                    tracing::info!(
                        records = batch.len(),
                        "the store takes records again; queued records committed in order"
                    );
                }
                for ticket in policy.committed(batch) {
                    answer(&mut waiting, ticket, Kept::Committed);
                }
                continue;
            };
            metrics::counter!("agent_recorder_failures_total", "cause" => cause.label())
                .increment(1);
            let first = policy.status().trouble.is_none();
            let failed = policy.failed(
                batch,
                cause,
                recorder.clock.now(),
                recorder.clock.monotonic(),
            );
            let refusal = policy.refusal();
            for ticket in failed.queued {
                answer(&mut waiting, ticket, Kept::Queued(refusal.clone()));
            }
            for ticket in failed.refused {
                answer(&mut waiting, ticket, Kept::Refused(refusal.clone()));
            }
            if first {
                tracing::error!(%error, queued = refusal.queued, "the store refuses records; records of what was done are queued and retried");
            }
            break;
        }
        recorder.publish(policy.status());
    }
}

fn offer(
    policy: &mut Policy<Write>,
    waiting: &mut HashMap<u64, oneshot::Sender<Kept>>,
    request: Request,
) {
    let bytes = request.write.bytes();
    let kept = match policy.offer(request.write, bytes, request.mode) {
        Offered::Pending(ticket) => {
            if let Some(reply) = request.reply {
                waiting.insert(ticket, reply);
            }
            return;
        }
        Offered::Queued(refusal) => Kept::Queued(refusal),
        Offered::Refused(_, refusal) => Kept::Refused(refusal),
    };
    if let Some(reply) = request.reply {
        let _ = reply.send(kept);
    }
}

fn answer(waiting: &mut HashMap<u64, oneshot::Sender<Kept>>, ticket: u64, kept: Kept) {
    if let Some(reply) = waiting.remove(&ticket) {
        let _ = reply.send(kept);
    }
}

impl Store {
    /// The store's one recorder, started on first use (on the caller's runtime).
    pub fn recorder(self: &Arc<Self>) -> &Recorder {
        self.recorder.get_or_init(|| Recorder::start(self))
    }

    /// Commits `writes` in one transaction, in order, and announces them.
    fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let stored = self.write(|tx| {
            let mut stored: Vec<StoredEvent> = Vec::new();
            for write in writes {
                stored.extend(match write {
                    Write::Events(events) => self.insert_events(tx, events)?,
                    Write::RollCall {
                        occurred_at,
                        payloads,
                    } => self.insert_roll_call(tx, occurred_at, payloads)?,
                    Write::Question(question) => self.insert_asked_question(tx, &question)?,
                    Write::Answer {
                        question,
                        occurred_at,
                        answer,
                    } => self.insert_answer(tx, &question, occurred_at, answer)?,
                });
            }
            Ok(stored)
        })?;
        metrics::counter!("agent_outbox_appended_total").increment(stored.len() as u64);
        self.announce_commit(&stored);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::proto;
    use crate::store::outbox::read_after;
    use crate::store::testing;

    const SMALL: Limits = Limits {
        max_records: 3,
        max_bytes: 1_000,
    };

    fn start() -> Timestamp {
        "2026-09-07T01:00:00Z".parse().unwrap()
    }

    fn tickets(batch: &[Entry<&'static str>]) -> Vec<u64> {
        batch.iter().map(|e| e.ticket).collect()
    }

    #[test]
    fn records_of_things_done_wait_in_order_and_are_retried_ever_less_often() {
        let clock = ManualClock::new(start());
        let mut policy = Policy::new(LIMITS);
        assert_eq!(
            policy.offer("bell rang", 10, Mode::Queue),
            Offered::Pending(0)
        );
        assert_eq!(
            policy.offer("pupil marked", 20, Mode::Queue),
            Offered::Pending(1)
        );
        let batch = policy.take(clock.monotonic()).unwrap();
        assert_eq!(tickets(&batch), [0, 1]);
        assert_eq!(
            policy.failed(batch, Cause::DiskFull, clock.now(), clock.monotonic()),
            Failed {
                queued: vec![0, 1],
                refused: vec![]
            }
        );
        assert_eq!(policy.status().bytes, 30);
        assert!(matches!(
            policy.offer("lights off", 5, Mode::Queue),
            Offered::Queued(Refusal {
                cause: Cause::DiskFull,
                queued: 3,
                bytes: 35,
                full: false
            })
        ));
        assert!(
            policy.take(clock.monotonic()).is_none(),
            "no retry before its time"
        );

        let mut delays = Vec::new();
        for attempt in 0..6 {
            let delay = policy
                .retry_at()
                .unwrap()
                .saturating_since(clock.monotonic());
            delays.push(delay.as_millis());
            clock.advance(delay - Duration::from_millis(1));
            assert!(
                policy.take(clock.monotonic()).is_none(),
                "not a millisecond early"
            );
            clock.advance(Duration::from_millis(1));
            if attempt == 2 {
                // NTP steps the wall clock back an hour: the retries keep their pace.
                clock.set(start() - jiff::SignedDuration::from_hours(1));
            }
            let batch = policy.take(clock.monotonic()).expect("due");
            assert_eq!(
                batch.iter().map(|e| e.item).collect::<Vec<_>>(),
                ["bell rang", "pupil marked", "lights off"],
                "oldest first, none lost"
            );
            policy.failed(batch, Cause::DiskFull, clock.now(), clock.monotonic());
        }
        assert_eq!(delays, [250, 500, 1_000, 2_000, 4_000, 5_000]);
        assert_eq!(
            policy.status().trouble.unwrap().since,
            start(),
            "the trouble started with the first refusal"
        );

        clock.advance(
            policy
                .retry_at()
                .unwrap()
                .saturating_since(clock.monotonic()),
        );
        let batch = policy.take(clock.monotonic()).unwrap();
        assert_eq!(policy.committed(batch), [0, 1, 2]);
        assert_eq!(policy.status(), Status::default());
        assert_eq!(policy.retry_at(), None);
        assert_eq!(
            policy.offer("next bell", 10, Mode::Queue),
            Offered::Pending(3),
            "a store that took writes takes new ones at once"
        );
    }

    #[test]
    fn records_their_sender_sends_again_are_refused_rather_than_queued() {
        let (at, now) = (start(), Monotonic::default());
        let mut policy = Policy::new(LIMITS);
        policy.offer("bell rang", 10, Mode::Queue);
        policy.offer("an answer", 10, Mode::Refuse);
        let batch = policy.take(now).unwrap();
        assert_eq!(
            policy.failed(batch, Cause::ReadOnly, at, now),
            Failed {
                queued: vec![0],
                refused: vec![1]
            }
        );
        assert!(matches!(
            policy.offer("another answer", 10, Mode::Refuse),
            Offered::Refused(
                "another answer",
                Refusal {
                    cause: Cause::ReadOnly,
                    queued: 1,
                    ..
                }
            )
        ));
        assert_eq!(policy.status().queued, 1);
    }

    #[test]
    fn the_teacher_is_refused_while_the_store_refuses_and_the_room_once_the_queue_is_full() {
        let (at, now) = (start(), Monotonic::default());
        let mut policy = Policy::new(SMALL);
        assert_eq!(policy.status().admit(Who::Teacher, SMALL), Ok(()));
        policy.offer("bell rang", 10, Mode::Queue);
        let batch = policy.take(now).unwrap();
        policy.failed(batch, Cause::DiskFull, at, now);
        let refusal = policy.status().admit(Who::Teacher, SMALL).unwrap_err();
        assert_eq!(
            refusal,
            Refusal {
                cause: Cause::DiskFull,
                queued: 1,
                bytes: 10,
                full: false
            }
        );
        assert!(
            refusal
                .to_string()
                .starts_with("Không lưu được bản ghi: ổ đĩa đã đầy"),
            "{refusal}"
        );
        assert_eq!(
            policy.status().admit(Who::Room, SMALL),
            Ok(()),
            "the room goes on while the queue has room"
        );
        policy.offer("lights off", 10, Mode::Queue);
        policy.offer("panel off", 10, Mode::Queue);
        assert!(
            policy.status().admit(Who::Room, SMALL).unwrap_err().full,
            "three records fill this queue"
        );
        policy.offer("a health change", 10, Mode::Queue);
        assert_eq!(
            policy.status().queued,
            4,
            "a record of something done is never dropped, even past the bound"
        );

        let mut by_bytes = Policy::new(SMALL);
        by_bytes.offer("a long question", 1_000, Mode::Queue);
        let batch = by_bytes.take(now).unwrap();
        by_bytes.failed(batch, Cause::DiskFull, at, now);
        assert!(
            by_bytes.status().admit(Who::Room, SMALL).unwrap_err().full,
            "the bytes bound counts too"
        );
    }

    fn ring(at: Timestamp, n: u32) -> Write {
        Write::event(
            at,
            proto::Actuation {
                device: "bell".into(),
                command: format!("ring:{n}"),
                ..Default::default()
            },
        )
    }

    fn limit_pages(store: &Store, pages: Option<i64>) {
        let conn = store.lock_writer();
        let now: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages.unwrap_or(now))
            .unwrap();
    }

    #[tokio::test]
    async fn a_store_that_refuses_gets_its_records_in_order_with_their_times_once_it_takes_writes_again()
     {
        let (_dir, clock, store) = testing::store();
        let store = Arc::new(store);
        let recorder = store.recorder().clone();
        let health = Health::new(store.clock().clone());
        recorder.report_to(health.clone());
        assert_eq!(recorder.keep(ring(clock.now(), 0)).await, Kept::Committed);

        // SQLite refuses to grow the file past its pages, as on a full disk.
        limit_pages(&store, None);
        let mut rang_at = Vec::new();
        for n in 1..=300 {
            clock.advance(Duration::from_secs(1));
            rang_at.push(clock.now());
            if let Kept::Queued(refusal) = recorder.keep(ring(clock.now(), n)).await {
                assert_eq!(refusal.cause, Cause::DiskFull);
            }
            if n % 100 == 0 {
                let mark = proto::AttendanceMark {
                    session_id: "s1".into(),
                    personal_id: format!("01020600{n:04}"),
                    ..Default::default()
                };
                recorder
                    .keep(Write::RollCall {
                        occurred_at: clock.now(),
                        payloads: vec![Payload::AttendanceMark(mark)],
                    })
                    .await;
            }
        }
        let status = recorder.status();
        assert!(
            status.queued > 0 && status.trouble.as_ref().unwrap().cause == Cause::DiskFull,
            "{status:?}"
        );
        assert_eq!(health.snapshot()[SUBSYSTEM].state, State::Degraded);
        assert_eq!(
            recorder.admit(Who::Teacher).unwrap_err().cause,
            Cause::DiskFull
        );
        let answer = Write::event(clock.now(), proto::QuestionAnswer::default());
        assert!(
            matches!(recorder.keep_or_refuse(answer).await, Kept::Refused(_)),
            "an answer is refused: the tablet sends it again"
        );

        limit_pages(&store, Some(1 << 30));
        let mut changes = health.subscribe();
        let retry_at = recorder.status().trouble.unwrap().retry_at;
        clock.advance(retry_at.saturating_since(clock.monotonic()));
        let freed_at = clock.now();
        // The retry is due at once on the simulated clock; the real-time bound only keeps a broken test from hanging.
        let committed = changes.wait_for(|_| health.snapshot()[SUBSYSTEM].state == State::Ok);
        tokio::time::timeout(Duration::from_secs(10), committed)
            .await
            .expect("queued records committed once the retry is due")
            .unwrap();
        assert_eq!(recorder.status().queued, 0);
        let events = read_after(&store.reader().unwrap(), 0, 1_000).unwrap();
        let commands: Vec<String> = events
            .iter()
            .filter_map(|e| match e.payload().unwrap() {
                Some(Payload::Actuation(a)) => Some(a.command),
                _ => None,
            })
            .collect();
        assert_eq!(
            commands,
            (0..=300).map(|n| format!("ring:{n}")).collect::<Vec<_>>(),
            "every record, in order"
        );
        assert_eq!(
            store.attendance_marks("s1").unwrap().len(),
            3,
            "a roll call's queued marks reach their table too"
        );
        let late: Vec<_> = events
            .iter()
            .filter(|e| e.recorded_at == freed_at)
            .collect();
        assert_eq!(late.len(), status.queued);
        assert!(
            late.iter().all(|e| rang_at.contains(&e.occurred_at)),
            "queued records keep the time they were done"
        );
    }
}
