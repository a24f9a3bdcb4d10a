//! The live lesson: what every tablet should be showing, which commands each
//! tablet has acknowledged, and the answers to the open question.
//!
//! # Design
//! A state machine without I/O, handed the time. The async parts (sockets,
//! the outbox) ask it what to do and carry that out.
//! - Commands are numbered from 1 in the order the teacher gave them, one
//!   sequence for the whole room. Each is given to an [`Audience`]: the whole
//!   class, or a set of tablets (chosen on the panel, or a stored group
//!   resolved to its tablets when given). A tablet says which number it saw
//!   last; on reconnecting it receives the state as it is now *for it*
//!   (locked or not, the open content, the open question if it was asked of
//!   it, and whether it already answered) and the commands it missed that
//!   were given to it, from the last [`LOG_LENGTH`] kept. A tablet never hears
//!   a command meant for others, live or on catching up; the gaps in the ids
//!   it sees are the others' commands. The state alone is enough to be
//!   correct; the missed commands let it show what it did not see (a message).
//! - What a tablet shows is the class's state, unless a command to some
//!   tablets changed it for them: a command to the class changes the class's
//!   state and every tablet's own, a command to some changes only theirs.
//! - A command expects an ack from every tablet of its audience connected
//!   when it was given; tablets that connect later catch up through the state.
//! - One answer per tablet per question: the first one counts, as on paper;
//!   only tablets the question was asked of may answer.
//! - Every record names the lesson it belongs to, handed in by the caller
//!   (the timetable's period, `attendance::lessons::lesson_at`): a command's
//!   the lesson it was given in, an answer the lesson its question was asked in.
//! - Each command's record for the hub (a [`LessonRecord`]: the command, its
//!   audience and how many of the tablets expected acked it) is written once, when the
//!   command settles: every expected tablet acked, or its ack timeout passed,
//!   or the lesson stops, whichever comes first. The session keeps that
//!   timer as quinn-proto's connection does: [`Session::poll_timeout`] names
//!   the next deadline, [`Session::handle_timeout`] is told when it passed,
//!   and [`Session::take_records`] hands over the records of settled
//!   commands. Deadlines are monotonic: a wall clock stepped by NTP neither
//!   hurries nor holds up a record.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::protocol::{
    Command, CommandEnvelope, ErrorCode, InvalidCommand, LiveState, OpenQuestionView,
    ProtocolError, Question,
};
use crate::clock::Monotonic;
use crate::proto::{LessonRecord, QuestionAnswer};

/// How many past commands are kept for tablets that reconnect.
pub const LOG_LENGTH: usize = 200;

/// The most tablets one command may name: a class is 40 pupils, and the list
/// goes into the command's record for the hub.
pub const MAX_AUDIENCE: usize = 100;

/// Who a command is given to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Audience {
    /// Every tablet, connected now or later.
    #[default]
    Class,
    /// These tablets only; `group` names the teacher's group they came from.
    Tablets {
        ids: BTreeSet<String>,
        group: Option<String>,
    },
}

impl Audience {
    pub fn includes(&self, tablet_id: &str) -> bool {
        match self {
            Audience::Class => true,
            Audience::Tablets { ids, .. } => ids.contains(tablet_id),
        }
    }
}

/// What a tablet is made to show, by the commands given to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Shown {
    pub locked: bool,
    pub lock_message: String,
    /// The last `open` command given to it, if any.
    pub open: Option<Command>,
}

impl Shown {
    fn apply(&mut self, command: &Command) {
        match command {
            Command::Lock { message } => {
                self.locked = true;
                self.lock_message = message.clone();
            }
            Command::Unlock => {
                self.locked = false;
                self.lock_message.clear();
            }
            Command::Open { .. } => self.open = Some(command.clone()),
            _ => {}
        }
    }
}

/// Why the session refused the teacher's command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedCommand {
    #[error(transparent)]
    Invalid(#[from] InvalidCommand),
    #[error("question `{0}` was already asked in this lesson: give the new one its own id")]
    AskedBefore(String),
    #[error("question `{0}` is not open")]
    NotOpen(String),
    #[error("no tablet chosen: choose at least one, or give the command to the whole class")]
    NobodyChosen,
    #[error(
        "{0} tablets chosen; a command names at most {MAX_AUDIENCE}: give it to the whole class"
    )]
    TooManyChosen(usize),
    #[error(transparent)]
    Follow(#[from] super::follow::RefusedFollow),
}

/// An answer as the panel sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerView {
    pub tablet_id: String,
    pub choices: Vec<String>,
    pub text: String,
    pub correct: Option<bool>,
    pub time_to_answer_ms: u32,
}

/// The open (or last) question's answers, for the panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionResults {
    pub question: Question,
    pub open: bool,
    pub answers: Vec<AnswerView>,
    /// How many answers chose each choice id.
    pub tally: HashMap<String, u32>,
    pub correct: u32,
    pub started_at: Timestamp,
    /// Whether its time limit passed.
    pub time_up: bool,
    /// Answers refused because they came after the time limit.
    pub late: u32,
}

/// How far a command's acknowledgements have come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AckProgress {
    pub acknowledged: u32,
    pub expected: u32,
}

impl AckProgress {
    pub fn complete(&self) -> bool {
        self.acknowledged >= self.expected
    }
}

#[derive(Debug)]
struct AskedQuestion {
    question: Question,
    started_at: Timestamp,
    open: bool,
    answers: Vec<AnswerView>,
    audience: Audience,
    lesson_id: String,
    /// When its time limit passes, on the monotonic line.
    closes_at: Option<Monotonic>,
    time_up: bool,
    late: u32,
}

/// A command as kept for tablets that reconnect, with who it was for.
#[derive(Debug)]
struct Logged {
    envelope: CommandEnvelope,
    audience: Audience,
    lesson_id: String,
}

#[derive(Debug)]
struct PendingAcks {
    expected: BTreeSet<String>,
    acknowledged: BTreeSet<String>,
    /// When the record is written with the acks so far; `None` once it was handed over.
    record_due: Option<Monotonic>,
}

/// The lesson in progress.
#[derive(Debug)]
pub struct Session {
    /// How long a command waits for its acks before its record is written.
    ack_timeout: Duration,
    last_command: u64,
    /// What the class is made to show, and what a tablet given a command of its own is.
    class: Shown,
    own: HashMap<String, Shown>,
    question: Option<AskedQuestion>,
    log: VecDeque<Logged>,
    acks: HashMap<u64, PendingAcks>,
    /// Records of settled commands, not yet taken.
    records: Vec<LessonRecord>,
    /// Who follows the teacher's material, at which page.
    follow: super::follow::FollowState,
    /// A question whose time limit passed, for the caller to stop.
    timed_out: Option<String>,
}

impl Session {
    pub fn new(ack_timeout: Duration) -> Self {
        Self {
            ack_timeout,
            last_command: 0,
            class: Shown::default(),
            own: HashMap::new(),
            question: None,
            log: VecDeque::new(),
            acks: HashMap::new(),
            records: Vec::new(),
            follow: Default::default(),
            timed_out: None,
        }
    }

    /// Gives a validated command to `audience` at wall time `now` and
    /// monotonic time `at`, in lesson `lesson_id`; of `connected`, the tablets
    /// of its audience are expected to ack it. A question's stop goes to
    /// whoever the question was asked of, whatever `audience` says.
    pub fn issue(
        &mut self,
        now: Timestamp,
        at: Monotonic,
        lesson_id: &str,
        command: Command,
        audience: Audience,
        connected: BTreeSet<String>,
    ) -> Result<CommandEnvelope, RefusedCommand> {
        command.validate()?;
        if let Audience::Tablets { ids, .. } = &audience {
            if ids.is_empty() {
                return Err(RefusedCommand::NobodyChosen);
            }
            if ids.len() > MAX_AUDIENCE {
                return Err(RefusedCommand::TooManyChosen(ids.len()));
            }
        }
        let mut audience = audience;
        match &command {
            Command::Lock { .. } | Command::Unlock | Command::Open { .. } => match &audience {
                Audience::Class => {
                    self.class.apply(&command);
                    self.own.values_mut().for_each(|own| own.apply(&command));
                }
                Audience::Tablets { ids, .. } => {
                    for id in ids {
                        let class = &self.class;
                        self.own
                            .entry(id.clone())
                            .or_insert_with(|| class.clone())
                            .apply(&command);
                    }
                }
            },
            Command::Message { .. } => {}
            Command::QuestionStart(question) => {
                if self
                    .question
                    .as_ref()
                    .is_some_and(|asked| asked.question.id == question.id)
                {
                    return Err(RefusedCommand::AskedBefore(question.id.clone()));
                }
                self.question = Some(AskedQuestion {
                    question: question.clone(),
                    started_at: now,
                    open: true,
                    answers: Vec::new(),
                    audience: audience.clone(),
                    lesson_id: lesson_id.to_owned(),
                    closes_at: question
                        .time_limit_s
                        .map(|limit| at + Duration::from_secs(u64::from(limit))),
                    time_up: false,
                    late: 0,
                });
            }
            Command::QuestionStop { question } => match self.question.as_mut() {
                Some(asked) if asked.open && &asked.question.id == question => {
                    asked.open = false;
                    audience = asked.audience.clone();
                }
                _ => return Err(RefusedCommand::NotOpen(question.clone())),
            },
            Command::Follow { file, page } => self.follow.start(file, *page, &audience)?,
            Command::Page { page } => audience = self.follow.turn(*page)?,
            Command::Release => audience = self.follow.release()?,
        }
        if super::follow::coalesces(&command) {
            self.drop_superseded_follow_commands();
        }
        self.last_command += 1;
        let envelope = CommandEnvelope {
            id: self.last_command,
            command,
        };
        if self.log.len() == LOG_LENGTH {
            // The oldest command leaves the log; its record goes out first if it is still due.
            let oldest = self.log.front().expect("the log is full").envelope.id;
            self.settle(oldest);
            self.log.pop_front();
            self.acks.remove(&oldest);
        }
        let expected = connected
            .into_iter()
            .filter(|tablet| audience.includes(tablet))
            .collect();
        self.log.push_back(Logged {
            envelope: envelope.clone(),
            audience,
            lesson_id: lesson_id.to_owned(),
        });
        let record_due = Some(at + self.ack_timeout);
        self.acks.insert(
            envelope.id,
            PendingAcks {
                expected,
                acknowledged: BTreeSet::new(),
                record_due,
            },
        );
        self.settle_if_complete(envelope.id);
        Ok(envelope)
    }

    /// Settles the follow commands in the log and drops them: a tablet
    /// catches up from the follow state, and only the newest page matters.
    fn drop_superseded_follow_commands(&mut self) {
        let superseded: Vec<u64> = self
            .log
            .iter()
            .filter(|logged| super::follow::coalesces(&logged.envelope.command))
            .map(|logged| logged.envelope.id)
            .collect();
        for id in &superseded {
            self.settle(*id);
            self.acks.remove(id);
        }
        self.log
            .retain(|logged| !super::follow::coalesces(&logged.envelope.command));
    }

    /// What `tablet_id` follows now, if it follows the teacher.
    pub fn following(&self, tablet_id: &str) -> Option<super::follow::Following> {
        self.follow.for_tablet(tablet_id)
    }

    /// What the teacher leads the followers through now, if anyone follows.
    pub fn follow_lead(&self) -> Option<&super::follow::Following> {
        self.follow.lead()
    }

    /// Records that `tablet_id` carried out command `id`.
    pub fn ack(&mut self, tablet_id: &str, id: u64) -> Result<AckProgress, ProtocolError> {
        if id == 0 || id > self.last_command {
            return Err(ProtocolError::new(
                ErrorCode::OutOfOrder,
                format!("command {id} was never sent"),
            ));
        }
        let Some(pending) = self.acks.get_mut(&id) else {
            return Ok(AckProgress {
                acknowledged: 0,
                expected: 0,
            });
        };
        if pending.expected.contains(tablet_id) {
            pending.acknowledged.insert(tablet_id.to_owned());
        }
        let progress = progress(pending);
        self.settle_if_complete(id);
        Ok(progress)
    }

    /// When the next command's record falls due, if one is waiting for
    /// acks, or the open question's time limit passes, whichever is first.
    pub fn poll_timeout(&self) -> Option<Monotonic> {
        self.acks
            .values()
            .filter_map(|pending| pending.record_due)
            .chain(self.question_deadline())
            .min()
    }

    /// When the open question's time is up, unless it is up already.
    fn question_deadline(&self) -> Option<Monotonic> {
        self.question
            .as_ref()
            .filter(|asked| asked.open && !asked.time_up)
            .and_then(|asked| asked.closes_at)
    }

    /// How long the open question has left at `now`, if it has a time limit.
    pub fn time_left(&self, now: Monotonic) -> Option<Duration> {
        let asked = self.question.as_ref().filter(|asked| asked.open)?;
        Some(asked.closes_at?.saturating_since(now))
    }

    /// The question whose time limit just passed, once: the caller stops it
    /// (a `question_stop` to whoever it was asked of).
    pub fn take_timed_out(&mut self) -> Option<String> {
        self.timed_out.take()
    }

    /// Monotonic time `now` has come: every command whose ack timeout passed settles.
    pub fn handle_timeout(&mut self, now: Monotonic) {
        let mut due: Vec<u64> = self
            .acks
            .iter()
            .filter(|(_, pending)| pending.record_due.is_some_and(|due| due <= now))
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        for id in due {
            self.settle(id);
        }
        if self.question_deadline().is_some_and(|closes| closes <= now)
            && let Some(asked) = self.question.as_mut()
        {
            asked.time_up = true;
            self.timed_out = Some(asked.question.id.clone());
        }
    }

    /// The lesson stops: every command still waiting for acks settles with the acks so far.
    pub fn settle_all(&mut self) {
        let mut waiting: Vec<u64> = self
            .acks
            .iter()
            .filter(|(_, pending)| pending.record_due.is_some())
            .map(|(id, _)| *id)
            .collect();
        waiting.sort_unstable();
        for id in waiting {
            self.settle(id);
        }
    }

    /// The records of the commands settled since the last call, in the order they settled.
    pub fn take_records(&mut self) -> Vec<LessonRecord> {
        std::mem::take(&mut self.records)
    }

    fn settle_if_complete(&mut self, id: u64) {
        if self
            .acks
            .get(&id)
            .is_some_and(|pending| progress(pending).complete())
        {
            self.settle(id);
        }
    }

    /// Hands over command `id`'s record with its acks as they are, unless it was already.
    fn settle(&mut self, id: u64) {
        let Some(pending) = self
            .acks
            .get_mut(&id)
            .filter(|pending| pending.record_due.is_some())
        else {
            return;
        };
        pending.record_due = None;
        let progress = progress(pending);
        let logged = self
            .log
            .iter()
            .find(|logged| logged.envelope.id == id)
            .expect("a command with acks is in the log");
        let (tablet_ids, group) = match &logged.audience {
            Audience::Class => (Vec::new(), String::new()),
            Audience::Tablets { ids, group } => (
                ids.iter().cloned().collect(),
                group.clone().unwrap_or_default(),
            ),
        };
        let command = &logged.envelope.command;
        self.records.push(LessonRecord {
            lesson_id: logged.lesson_id.clone(),
            command_id: id.to_string(),
            command: command.name().to_owned(),
            arguments_json: serde_json::to_string(command).expect("commands serialise"),
            acknowledged: progress.acknowledged,
            connected: progress.expected,
            tablet_ids,
            group,
        });
    }

    /// How far command `id`'s acks have come; `None` when it is not (or no longer) known.
    pub fn ack_progress(&self, id: u64) -> Option<AckProgress> {
        self.acks.get(&id).map(progress)
    }

    /// A tablet left: it no longer holds up any command's acks.
    pub fn forget_expected(&mut self, tablet_id: &str) {
        let mut completed = Vec::new();
        for (id, pending) in &mut self.acks {
            if !pending.acknowledged.contains(tablet_id) && pending.expected.remove(tablet_id) {
                completed.push(*id);
            }
        }
        completed.sort_unstable();
        for id in completed {
            self.settle_if_complete(id);
        }
    }

    /// What the commands given to `tablet_id` make it show.
    pub fn shown_to(&self, tablet_id: &str) -> &Shown {
        self.own.get(tablet_id).unwrap_or(&self.class)
    }

    /// The open question's id if it was asked of `tablet_id`, and whether that tablet answered it.
    pub fn question_for(&self, tablet_id: &str) -> Option<(&str, bool)> {
        self.question
            .as_ref()
            .filter(|asked| asked.open && asked.audience.includes(tablet_id))
            .map(|asked| {
                let answered = asked.answers.iter().any(|a| a.tablet_id == tablet_id);
                (asked.question.id.as_str(), answered)
            })
    }

    /// The state `tablet_id` should show.
    pub fn state_for(&self, tablet_id: &str) -> LiveState {
        let shown = self.shown_to(tablet_id);
        LiveState {
            locked: shown.locked,
            lock_message: shown.lock_message.clone(),
            open: shown.open.clone(),
            question: self
                .question
                .as_ref()
                .filter(|asked| asked.open && asked.audience.includes(tablet_id))
                .map(|asked| OpenQuestionView {
                    question: asked.question.clone(),
                    started_at: asked.started_at,
                    answered: asked
                        .answers
                        .iter()
                        .any(|answer| answer.tablet_id == tablet_id),
                }),
            last_command: self.last_command,
            follow: self.following(tablet_id),
        }
    }

    /// The commands given to `tablet_id` after `last_seen` that are still
    /// kept. A `last_seen` beyond the newest command comes from before the
    /// agent restarted (ids start again at 1): the tablet has seen none of
    /// this lesson's commands.
    pub fn missed(&self, tablet_id: &str, last_seen: u64) -> Vec<&CommandEnvelope> {
        let last_seen = if last_seen > self.last_command {
            0
        } else {
            last_seen
        };
        self.log
            .iter()
            .filter(|logged| logged.envelope.id > last_seen && logged.audience.includes(tablet_id))
            .map(|logged| &logged.envelope)
            .collect()
    }

    /// Whether command `id` (if still kept) was given to `tablet_id`.
    pub fn given_to(&self, id: u64, tablet_id: &str) -> bool {
        self.log
            .iter()
            .find(|logged| logged.envelope.id == id)
            .is_some_and(|logged| logged.audience.includes(tablet_id))
    }

    /// Takes a tablet's answer; the record is what goes to the outbox.
    pub fn answer(
        &mut self,
        now: Timestamp,
        tablet_id: &str,
        pupil_personal_id: Option<&str>,
        question_id: &str,
        choices: Vec<String>,
        text: String,
    ) -> Result<QuestionAnswer, ProtocolError> {
        if let Some(asked) = self
            .question
            .as_mut()
            .filter(|asked| asked.question.id == question_id && asked.time_up)
        {
            asked.late += 1;
            return Err(ProtocolError::new(
                ErrorCode::QuestionClosed,
                format!(
                    "time is up: the limit of {} s has passed",
                    asked.question.time_limit_s.unwrap_or_default()
                ),
            ));
        }
        let asked = self
            .question
            .as_mut()
            .filter(|asked| asked.open && asked.question.id == question_id)
            .ok_or_else(|| {
                ProtocolError::new(
                    ErrorCode::QuestionClosed,
                    format!("question `{question_id}` is not open"),
                )
            })?;
        if !asked.audience.includes(tablet_id) {
            return Err(ProtocolError::new(
                ErrorCode::QuestionClosed,
                format!("question `{question_id}` was not asked of this tablet"),
            ));
        }
        let elapsed = now.duration_since(asked.started_at);
        if let Some(limit) = asked.question.time_limit_s
            && elapsed > jiff::SignedDuration::from_secs(i64::from(limit))
        {
            asked.late += 1;
            return Err(ProtocolError::new(
                ErrorCode::QuestionClosed,
                format!("the time limit of {limit} s has passed"),
            ));
        }
        if asked
            .answers
            .iter()
            .any(|answer| answer.tablet_id == tablet_id)
        {
            return Err(ProtocolError::new(
                ErrorCode::AlreadyAnswered,
                format!("this tablet already answered `{question_id}`"),
            ));
        }
        asked
            .question
            .check_answer(&choices, &text)
            .map_err(|invalid| ProtocolError::new(ErrorCode::InvalidAnswer, invalid.to_string()))?;
        let correct = asked.question.grade(&choices, &text);
        let time_to_answer_ms = u32::try_from(elapsed.as_millis().max(0)).unwrap_or(u32::MAX);
        asked.answers.push(AnswerView {
            tablet_id: tablet_id.to_owned(),
            choices: choices.clone(),
            text: text.clone(),
            correct,
            time_to_answer_ms,
        });
        Ok(QuestionAnswer {
            lesson_id: asked.lesson_id.clone(),
            question_id: question_id.to_owned(),
            tablet_id: tablet_id.to_owned(),
            pupil_personal_id: pupil_personal_id.unwrap_or_default().to_owned(),
            choices,
            text,
            graded: correct.is_some(),
            correct: correct.unwrap_or(false),
            time_to_answer_ms,
        })
    }

    /// Forgets an answer that could not be stored.
    pub fn withdraw_answer(&mut self, question_id: &str, tablet_id: &str) {
        if let Some(asked) = self
            .question
            .as_mut()
            .filter(|asked| asked.question.id == question_id)
        {
            asked.answers.retain(|answer| answer.tablet_id != tablet_id);
        }
    }

    /// The latest question as the lesson's summary keeps it.
    pub fn asked_question(&self) -> Option<crate::store::lessons::AskedQuestion> {
        let asked = self.question.as_ref()?;
        Some(crate::store::lessons::AskedQuestion {
            lesson_id: asked.lesson_id.clone(),
            question_id: asked.question.id.clone(),
            question_kind: asked.question.question_kind.name().to_owned(),
            prompt: asked.question.prompt.clone(),
            graded: !asked.question.correct.is_empty(),
            asked_at: asked.started_at,
        })
    }

    /// The latest question's answers so far.
    pub fn results(&self) -> Option<QuestionResults> {
        let asked = self.question.as_ref()?;
        let mut tally = HashMap::new();
        for answer in &asked.answers {
            for choice in &answer.choices {
                *tally.entry(choice.clone()).or_insert(0) += 1;
            }
        }
        Some(QuestionResults {
            question: asked.question.clone(),
            open: asked.open,
            answers: asked.answers.clone(),
            tally,
            correct: asked
                .answers
                .iter()
                .filter(|answer| answer.correct == Some(true))
                .count() as u32,
            started_at: asked.started_at,
            time_up: asked.time_up,
            late: asked.late,
        })
    }
}

fn progress(pending: &PendingAcks) -> AckProgress {
    AckProgress {
        acknowledged: pending.acknowledged.len() as u32,
        expected: pending.expected.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tablets::protocol::{Choice, QuestionKind};

    const ACK_TIMEOUT: Duration = Duration::from_secs(5);

    fn start() -> Timestamp {
        "2026-09-07T01:00:00Z".parse().unwrap()
    }

    /// The monotonic time `ms` milliseconds after the lesson began.
    fn at(ms: u64) -> Monotonic {
        Monotonic::default() + Duration::from_millis(ms)
    }

    /// `command` given in lesson `l1` at `ms`, with `connected` tablets online; it must be taken.
    fn give(
        session: &mut Session,
        ms: u64,
        command: Command,
        audience: Audience,
        connected: BTreeSet<String>,
    ) -> CommandEnvelope {
        session
            .issue(start(), at(ms), "l1", command, audience, connected)
            .unwrap()
    }

    /// The taken records as (command, acknowledged, connected).
    fn taken(session: &mut Session) -> Vec<(String, u32, u32)> {
        session
            .take_records()
            .into_iter()
            .map(|r| (r.command, r.acknowledged, r.connected))
            .collect()
    }

    fn tablets(n: usize) -> BTreeSet<String> {
        (1..=n).map(|i| format!("t{i}")).collect()
    }

    fn question(limit: Option<u32>) -> Question {
        Question {
            id: "q1".into(),
            question_kind: QuestionKind::SingleChoice,
            prompt: "2 + 2 = ?".into(),
            choices: ["3", "4"]
                .iter()
                .map(|id| Choice {
                    id: (*id).into(),
                    text: (*id).into(),
                })
                .collect(),
            correct: vec!["4".into()],
            time_limit_s: limit,
        }
    }

    #[test]
    fn a_command_is_complete_when_every_connected_tablet_acked_it() {
        let mut session = Session::new(ACK_TIMEOUT);
        let lock = give(
            &mut session,
            0,
            Command::Lock {
                message: "Nhìn lên bảng".into(),
            },
            Audience::Class,
            tablets(3),
        );
        for (i, tablet) in ["t1", "t2", "t2", "t9"].iter().enumerate() {
            let progress = session.ack(tablet, lock.id).unwrap();
            assert_eq!(
                progress.acknowledged,
                [1, 2, 2, 2][i],
                "duplicates and strangers do not count"
            );
        }
        assert!(!session.ack_progress(lock.id).unwrap().complete());
        session.forget_expected("t3");
        assert!(
            session.ack_progress(lock.id).unwrap().complete(),
            "a tablet that left holds nothing up"
        );
        assert_eq!(
            session.ack("t1", 99).unwrap_err().code,
            ErrorCode::OutOfOrder
        );
    }

    #[test]
    fn a_reconnecting_tablet_gets_the_state_and_what_it_missed() {
        let mut session = Session::new(ACK_TIMEOUT);
        give(
            &mut session,
            0,
            Command::Message {
                text: "Chào các em".into(),
            },
            Audience::Class,
            tablets(2),
        );
        give(
            &mut session,
            0,
            Command::QuestionStart(question(None)),
            Audience::Class,
            tablets(2),
        );
        session
            .answer(start(), "t1", None, "q1", vec!["4".into()], String::new())
            .unwrap();
        give(
            &mut session,
            0,
            Command::Lock {
                message: "Dừng lại".into(),
            },
            Audience::Class,
            tablets(2),
        );
        let state = session.state_for("t1");
        assert!(state.locked);
        assert_eq!(state.lock_message, "Dừng lại");
        assert!(state.question.as_ref().unwrap().answered);
        assert!(!session.state_for("t2").question.unwrap().answered);
        let missed: Vec<u64> = session
            .missed("t1", 1)
            .iter()
            .map(|envelope| envelope.id)
            .collect();
        assert_eq!(missed, vec![2, 3]);
        assert_eq!(
            session.missed("t1", 57).len(),
            3,
            "a tablet from before a restart missed everything"
        );
    }

    #[test]
    fn answers_count_once_are_graded_and_respect_the_time_limit() {
        let mut session = Session::new(ACK_TIMEOUT);
        give(
            &mut session,
            0,
            Command::QuestionStart(question(Some(30))),
            Audience::Class,
            tablets(3),
        );
        let later = start() + jiff::SignedDuration::from_millis(2500);
        let record = session
            .answer(
                later,
                "t1",
                Some("010206001234"),
                "q1",
                vec!["4".into()],
                String::new(),
            )
            .unwrap();
        assert!(record.graded && record.correct);
        assert_eq!(record.time_to_answer_ms, 2500);
        assert_eq!(record.pupil_personal_id, "010206001234");
        let again = session.answer(later, "t1", None, "q1", vec!["3".into()], String::new());
        assert_eq!(again.unwrap_err().code, ErrorCode::AlreadyAnswered);
        let wrong = session
            .answer(later, "t2", None, "q1", vec!["3".into()], String::new())
            .unwrap();
        assert!(wrong.graded && !wrong.correct);
        let late = session.answer(
            start() + jiff::SignedDuration::from_secs(31),
            "t3",
            None,
            "q1",
            vec!["4".into()],
            String::new(),
        );
        assert_eq!(late.unwrap_err().code, ErrorCode::QuestionClosed);
        let results = session.results().unwrap();
        assert_eq!(
            (results.answers.len(), results.correct, results.tally["3"]),
            (2, 1, 1)
        );
        session.withdraw_answer("q1", "t2");
        assert!(
            session
                .answer(later, "t2", None, "q1", vec!["4".into()], String::new())
                .unwrap()
                .correct,
            "a withdrawn answer may be sent again"
        );
        give(
            &mut session,
            0,
            Command::QuestionStop {
                question: "q1".into(),
            },
            Audience::Class,
            tablets(3),
        );
        let closed = session.answer(later, "t3", None, "q1", vec!["4".into()], String::new());
        assert_eq!(closed.unwrap_err().code, ErrorCode::QuestionClosed);
        assert!(
            session
                .issue(
                    start(),
                    at(0),
                    "l1",
                    Command::QuestionStop {
                        question: "q1".into()
                    },
                    Audience::Class,
                    tablets(3)
                )
                .is_err()
        );
    }

    #[test]
    fn a_multiple_choice_answer_counts_each_of_its_choices_once() {
        let mut session = Session::new(ACK_TIMEOUT);
        let question = Question {
            question_kind: QuestionKind::MultipleChoice,
            correct: vec!["3".into(), "4".into()],
            ..question(None)
        };
        give(
            &mut session,
            0,
            Command::QuestionStart(question),
            Audience::Class,
            tablets(3),
        );
        let stuffed = session.answer(
            start(),
            "t1",
            None,
            "q1",
            vec!["3".to_owned(); 3000],
            String::new(),
        );
        assert_eq!(
            stuffed.unwrap_err().code,
            ErrorCode::InvalidAnswer,
            "one choice repeated is refused"
        );
        let unknown = session.answer(
            start(),
            "t1",
            None,
            "q1",
            vec!["3".into(), "7".into()],
            String::new(),
        );
        assert_eq!(
            unknown.unwrap_err().code,
            ErrorCode::InvalidAnswer,
            "a choice the question does not have is refused"
        );
        assert!(
            session
                .answer(
                    start(),
                    "t1",
                    None,
                    "q1",
                    vec!["4".into(), "3".into()],
                    String::new()
                )
                .unwrap()
                .correct
        );
        let results = session.results().unwrap();
        assert_eq!(
            (
                results.answers.len(),
                results.tally["3"],
                results.tally["4"]
            ),
            (1, 1, 1),
            "only the accepted answer is tallied"
        );
    }

    #[test]
    fn a_commands_record_is_due_at_its_ack_timeout_and_not_a_millisecond_before() {
        let mut session = Session::new(ACK_TIMEOUT);
        assert_eq!(session.poll_timeout(), None, "nothing given, nothing due");
        let lock = give(
            &mut session,
            1_000,
            Command::Lock {
                message: String::new(),
            },
            Audience::Class,
            tablets(2),
        );
        give(
            &mut session,
            3_000,
            Command::Unlock,
            Audience::Class,
            tablets(2),
        );
        session.ack("t1", lock.id).unwrap();
        assert_eq!(
            session.poll_timeout(),
            Some(at(6_000)),
            "the lock's deadline comes first"
        );
        session.handle_timeout(at(5_999));
        assert_eq!(taken(&mut session), [], "one millisecond early");
        session.handle_timeout(at(6_000));
        assert_eq!(
            taken(&mut session),
            [("lock".to_owned(), 1, 2)],
            "written with the acks it had"
        );
        assert_eq!(
            session.poll_timeout(),
            Some(at(8_000)),
            "the unlock is next"
        );
        session.ack("t2", lock.id).unwrap();
        assert_eq!(
            taken(&mut session),
            [],
            "an ack after the record changes the progress, not the record"
        );
        assert_eq!(
            session.ack_progress(lock.id),
            Some(AckProgress {
                acknowledged: 2,
                expected: 2
            })
        );
    }

    #[test]
    fn a_command_settles_at_its_last_ack_or_when_its_last_tablet_leaves() {
        let mut session = Session::new(ACK_TIMEOUT);
        let message = give(
            &mut session,
            0,
            Command::Message {
                text: "Chào".into(),
            },
            Audience::Class,
            tablets(2),
        );
        give(
            &mut session,
            0,
            Command::Lock {
                message: String::new(),
            },
            Audience::Class,
            tablets(2),
        );
        session.ack("t1", message.id).unwrap();
        session.ack("t2", message.id).unwrap();
        assert_eq!(
            taken(&mut session),
            [("message".to_owned(), 2, 2)],
            "all acked: written at once"
        );
        session.forget_expected("t1");
        assert_eq!(taken(&mut session), []);
        session.forget_expected("t2");
        assert_eq!(
            taken(&mut session),
            [("lock".to_owned(), 0, 0)],
            "nobody left to ack"
        );
        assert_eq!(session.poll_timeout(), None);
        give(
            &mut session,
            0,
            Command::Unlock,
            Audience::Class,
            BTreeSet::new(),
        );
        assert_eq!(
            taken(&mut session),
            [("unlock".to_owned(), 0, 0)],
            "given to no tablet: written at once"
        );
    }

    #[test]
    fn at_the_stop_every_waiting_command_is_written_once_with_the_acks_so_far() {
        let mut session = Session::new(ACK_TIMEOUT);
        let lock = give(
            &mut session,
            0,
            Command::Lock {
                message: String::new(),
            },
            Audience::Class,
            tablets(3),
        );
        give(
            &mut session,
            0,
            Command::Unlock,
            Audience::Class,
            tablets(3),
        );
        session.ack("t3", lock.id).unwrap();
        session.settle_all();
        let records = session.take_records();
        assert_eq!(
            records
                .iter()
                .map(|r| (r.command.as_str(), r.acknowledged, r.connected))
                .collect::<Vec<_>>(),
            [("lock", 1, 3), ("unlock", 0, 3)]
        );
        assert_eq!(
            (
                records[0].lesson_id.as_str(),
                records[0].command_id.as_str()
            ),
            ("l1", "1")
        );
        session.settle_all();
        session.handle_timeout(at(60_000));
        assert_eq!(taken(&mut session), [], "each record is handed over once");
    }

    #[test]
    fn a_command_leaving_the_log_before_its_deadline_is_written_first() {
        let mut session = Session::new(ACK_TIMEOUT);
        for _ in 0..LOG_LENGTH {
            give(
                &mut session,
                0,
                Command::Unlock,
                Audience::Class,
                tablets(1),
            );
        }
        assert_eq!(taken(&mut session), []);
        give(
            &mut session,
            0,
            Command::Unlock,
            Audience::Class,
            tablets(1),
        );
        let records = session.take_records();
        assert_eq!(
            records
                .iter()
                .map(|r| (r.command_id.as_str(), r.acknowledged, r.connected))
                .collect::<Vec<_>>(),
            [("1", 0, 1)]
        );
    }

    fn to(ids: &[&str]) -> Audience {
        Audience::Tablets {
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            group: None,
        }
    }

    #[test]
    fn a_command_to_some_tablets_reaches_them_only_live_and_on_catching_up() {
        let mut session = Session::new(ACK_TIMEOUT);
        let lock = session
            .issue(
                start(),
                at(0),
                "2026-09-07/Sáng/1",
                Command::Lock {
                    message: "Em Bình dừng lại".into(),
                },
                to(&["t2"]),
                tablets(3),
            )
            .unwrap();
        assert_eq!(
            session.ack_progress(lock.id).unwrap().expected,
            1,
            "only the chosen tablet is expected to ack"
        );
        let group = Audience::Tablets {
            ids: ["t1", "t2"].iter().map(|id| (*id).to_owned()).collect(),
            group: Some("Nhóm 1".into()),
        };
        session
            .issue(
                start(),
                at(0),
                "2026-09-07/Sáng/1",
                Command::Message {
                    text: "Nhóm 1 làm bài 3".into(),
                },
                group,
                tablets(3),
            )
            .unwrap();
        assert!(session.state_for("t2").locked);
        assert!(!session.state_for("t1").locked && !session.state_for("t3").locked);
        let missed = |tablet| -> Vec<u64> {
            session
                .missed(tablet, 0)
                .iter()
                .map(|envelope| envelope.id)
                .collect()
        };
        assert_eq!(missed("t1"), [2]);
        assert_eq!(missed("t2"), [1, 2]);
        assert_eq!(missed("t3"), Vec::<u64>::new(), "nothing was meant for t3");
        session
            .issue(
                start(),
                at(0),
                "2026-09-07/Sáng/1",
                Command::Unlock,
                Audience::Class,
                tablets(3),
            )
            .unwrap();
        assert!(
            !session.state_for("t2").locked,
            "a command to the class reaches every tablet's own state"
        );
        session.settle_all();
        let records = session.take_records();
        assert_eq!(records.len(), 3);
        let audiences: Vec<(Vec<String>, String)> = records
            .iter()
            .map(|r| (r.tablet_ids.clone(), r.group.clone()))
            .collect();
        assert!(audiences.contains(&(vec!["t2".to_owned()], String::new())));
        assert!(audiences.contains(&(vec!["t1".to_owned(), "t2".to_owned()], "Nhóm 1".to_owned())));
        assert!(records.iter().all(|r| r.lesson_id == "2026-09-07/Sáng/1"));
        assert_eq!(
            session.issue(start(), at(0), "l", Command::Unlock, to(&[]), tablets(1)),
            Err(RefusedCommand::NobodyChosen)
        );
    }

    #[test]
    fn a_question_to_a_group_is_answered_by_the_group_only_and_names_its_lesson() {
        let mut session = Session::new(ACK_TIMEOUT);
        session
            .issue(
                start(),
                at(0),
                "2026-09-07/Sáng/2",
                Command::QuestionStart(question(None)),
                to(&["t1"]),
                tablets(2),
            )
            .unwrap();
        assert!(session.state_for("t2").question.is_none());
        assert_eq!(session.question_for("t1"), Some(("q1", false)));
        let refused = session.answer(start(), "t2", None, "q1", vec!["4".into()], String::new());
        assert_eq!(refused.unwrap_err().code, ErrorCode::QuestionClosed);
        let record = session
            .answer(start(), "t1", None, "q1", vec!["4".into()], String::new())
            .unwrap();
        assert_eq!(record.lesson_id, "2026-09-07/Sáng/2");
        assert_eq!(session.question_for("t1"), Some(("q1", true)));
    }

    #[test]
    fn a_questions_time_limit_is_a_deadline_after_which_answers_are_late() {
        let mut session = Session::new(ACK_TIMEOUT);
        give(
            &mut session,
            0,
            Command::QuestionStart(question(Some(30))),
            Audience::Class,
            BTreeSet::new(),
        );
        assert_eq!(
            session.poll_timeout(),
            Some(at(30_000)),
            "the question's deadline"
        );
        assert_eq!(session.time_left(at(12_000)), Some(Duration::from_secs(18)));
        session.handle_timeout(at(29_999));
        assert_eq!(session.take_timed_out(), None, "not a millisecond before");
        session.handle_timeout(at(30_000));
        assert_eq!(session.take_timed_out().as_deref(), Some("q1"));
        assert_eq!(session.take_timed_out(), None, "told once");
        assert_eq!(session.poll_timeout(), None, "no deadline left");
        // The agent's monotonic clock decides, whatever the wall clock says.
        let late = session
            .answer(start(), "t1", None, "q1", vec!["4".into()], String::new())
            .unwrap_err();
        assert_eq!(late.code, ErrorCode::QuestionClosed);
        assert!(late.detail.contains("time is up"), "{}", late.detail);
        let results = session.results().unwrap();
        assert!(results.time_up && results.answers.is_empty());
        assert_eq!(results.late, 1);
        session
            .issue(
                start(),
                at(30_001),
                "l1",
                Command::QuestionStop {
                    question: "q1".into(),
                },
                Audience::Class,
                BTreeSet::new(),
            )
            .expect("the caller stops the question whose time is up");
        let after_stop = session.answer(start(), "t2", None, "q1", vec!["4".into()], String::new());
        assert_eq!(after_stop.unwrap_err().code, ErrorCode::QuestionClosed);
        assert_eq!(session.results().unwrap().late, 2);
    }

    #[test]
    fn a_true_false_question_takes_one_of_true_or_false() {
        let mut session = Session::new(ACK_TIMEOUT);
        let truth = Question {
            question_kind: QuestionKind::TrueFalse,
            choices: vec![
                Choice {
                    id: "true".into(),
                    text: "Đúng".into(),
                },
                Choice {
                    id: "false".into(),
                    text: "Sai".into(),
                },
            ],
            correct: vec!["true".into()],
            ..question(None)
        };
        let swapped = Question {
            choices: truth.choices.iter().rev().cloned().collect(),
            ..truth.clone()
        };
        assert_eq!(
            Command::QuestionStart(swapped).validate(),
            Err(InvalidCommand::NotTrueFalse)
        );
        give(
            &mut session,
            0,
            Command::QuestionStart(truth),
            Audience::Class,
            BTreeSet::new(),
        );
        let both = session.answer(
            start(),
            "t1",
            None,
            "q1",
            vec!["true".into(), "false".into()],
            String::new(),
        );
        assert_eq!(both.unwrap_err().code, ErrorCode::InvalidAnswer);
        let right = session
            .answer(
                start(),
                "t1",
                None,
                "q1",
                vec!["true".into()],
                String::new(),
            )
            .unwrap();
        assert!(right.graded && right.correct);
    }
}
