//! The live lesson: what every tablet should be showing, which commands each
//! tablet has acknowledged, and the answers to the open question.
//!
//! # Design
//! A state machine without I/O, handed the time. The async parts (sockets,
//! the outbox) ask it what to do and carry that out.
//! - Commands are numbered from 1 in the order the teacher gave them. A
//!   tablet says which number it saw last; on reconnecting it receives the
//!   state as it is now (locked or not, the open content, the open question
//!   and whether it already answered it) and the commands it missed, from the
//!   last [`LOG_LENGTH`] kept. The state alone is enough to be correct; the
//!   missed commands let it show what it did not see (a message, say).
//! - A command expects an ack from every tablet connected when it was given;
//!   tablets that connect later catch up through the state instead.
//! - One answer per tablet per question: the first one counts, as on paper.
//! - Each command's record for the hub (a [`LessonRecord`]: the command and
//!   how many of the tablets expected acked it) is written once, when the
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

/// Why the session refused the teacher's command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedCommand {
    #[error(transparent)]
    Invalid(#[from] InvalidCommand),
    #[error("question `{0}` was already asked in this lesson: give the new one its own id")]
    AskedBefore(String),
    #[error("question `{0}` is not open")]
    NotOpen(String),
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
    lesson_id: String,
    /// How long a command waits for its acks before its record is written.
    ack_timeout: Duration,
    last_command: u64,
    locked: bool,
    lock_message: String,
    open: Option<Command>,
    question: Option<AskedQuestion>,
    log: VecDeque<CommandEnvelope>,
    acks: HashMap<u64, PendingAcks>,
    /// Records of settled commands, not yet taken.
    records: Vec<LessonRecord>,
}

impl Session {
    pub fn new(lesson_id: String, ack_timeout: Duration) -> Self {
        Self {
            lesson_id,
            ack_timeout,
            last_command: 0,
            locked: false,
            lock_message: String::new(),
            open: None,
            question: None,
            log: VecDeque::new(),
            acks: HashMap::new(),
            records: Vec::new(),
        }
    }

    pub fn lesson_id(&self) -> &str {
        &self.lesson_id
    }

    /// Gives a validated command at wall time `now` and monotonic time `at`;
    /// `connected` are the tablets expected to ack it.
    pub fn issue(
        &mut self,
        now: Timestamp,
        at: Monotonic,
        command: Command,
        connected: BTreeSet<String>,
    ) -> Result<CommandEnvelope, RefusedCommand> {
        command.validate()?;
        match &command {
            Command::Lock { message } => {
                self.locked = true;
                self.lock_message = message.clone();
            }
            Command::Unlock => {
                self.locked = false;
                self.lock_message.clear();
            }
            Command::Open { .. } => self.open = Some(command.clone()),
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
                });
            }
            Command::QuestionStop { question } => match self.question.as_mut() {
                Some(asked) if asked.open && &asked.question.id == question => asked.open = false,
                _ => return Err(RefusedCommand::NotOpen(question.clone())),
            },
        }
        self.last_command += 1;
        let envelope = CommandEnvelope {
            id: self.last_command,
            command,
        };
        if self.log.len() == LOG_LENGTH {
            // The oldest command leaves the log; its record goes out first if it is still due.
            let oldest = self.log.front().expect("the log is full").id;
            self.settle(oldest);
            self.log.pop_front();
            self.acks.remove(&oldest);
        }
        self.log.push_back(envelope.clone());
        let record_due = Some(at + self.ack_timeout);
        self.acks.insert(
            envelope.id,
            PendingAcks {
                expected: connected,
                acknowledged: BTreeSet::new(),
                record_due,
            },
        );
        self.settle_if_complete(envelope.id);
        Ok(envelope)
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

    /// When the next command's record falls due, if one is waiting for acks.
    pub fn poll_timeout(&self) -> Option<Monotonic> {
        self.acks
            .values()
            .filter_map(|pending| pending.record_due)
            .min()
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
        let envelope = self
            .log
            .iter()
            .find(|envelope| envelope.id == id)
            .expect("a command with acks is in the log");
        self.records.push(LessonRecord {
            lesson_id: self.lesson_id.clone(),
            command_id: id.to_string(),
            command: envelope.command.name().to_owned(),
            arguments_json: serde_json::to_string(&envelope.command).expect("commands serialise"),
            acknowledged: progress.acknowledged,
            connected: progress.expected,
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

    /// The state `tablet_id` should show.
    pub fn state_for(&self, tablet_id: &str) -> LiveState {
        LiveState {
            locked: self.locked,
            lock_message: self.lock_message.clone(),
            open: self.open.clone(),
            question: self
                .question
                .as_ref()
                .filter(|asked| asked.open)
                .map(|asked| OpenQuestionView {
                    question: asked.question.clone(),
                    started_at: asked.started_at,
                    answered: asked
                        .answers
                        .iter()
                        .any(|answer| answer.tablet_id == tablet_id),
                }),
            last_command: self.last_command,
        }
    }

    /// The commands after `last_seen` that are still kept. A `last_seen` beyond
    /// the newest command comes from before the agent restarted (ids start
    /// again at 1): the tablet has seen none of this lesson's commands.
    pub fn missed(&self, last_seen: u64) -> Vec<&CommandEnvelope> {
        let last_seen = if last_seen > self.last_command {
            0
        } else {
            last_seen
        };
        self.log
            .iter()
            .filter(|envelope| envelope.id > last_seen)
            .collect()
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
        let elapsed = now.duration_since(asked.started_at);
        if let Some(limit) = asked.question.time_limit_s
            && elapsed > jiff::SignedDuration::from_secs(i64::from(limit))
        {
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
            lesson_id: self.lesson_id.clone(),
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
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        let lock = session
            .issue(
                start(),
                at(0),
                Command::Lock {
                    message: "Nhìn lên bảng".into(),
                },
                tablets(3),
            )
            .unwrap();
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
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        session
            .issue(
                start(),
                at(0),
                Command::Message {
                    text: "Chào các em".into(),
                },
                tablets(2),
            )
            .unwrap();
        session
            .issue(
                start(),
                at(0),
                Command::QuestionStart(question(None)),
                tablets(2),
            )
            .unwrap();
        session
            .answer(start(), "t1", None, "q1", vec!["4".into()], String::new())
            .unwrap();
        session
            .issue(
                start(),
                at(0),
                Command::Lock {
                    message: "Dừng lại".into(),
                },
                tablets(2),
            )
            .unwrap();
        let state = session.state_for("t1");
        assert!(state.locked);
        assert_eq!(state.lock_message, "Dừng lại");
        assert!(state.question.as_ref().unwrap().answered);
        assert!(!session.state_for("t2").question.unwrap().answered);
        let missed: Vec<u64> = session
            .missed(1)
            .iter()
            .map(|envelope| envelope.id)
            .collect();
        assert_eq!(missed, vec![2, 3]);
        assert_eq!(
            session.missed(57).len(),
            3,
            "a tablet from before a restart missed everything"
        );
    }

    #[test]
    fn answers_count_once_are_graded_and_respect_the_time_limit() {
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        session
            .issue(
                start(),
                at(0),
                Command::QuestionStart(question(Some(30))),
                tablets(3),
            )
            .unwrap();
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
        session
            .issue(
                start(),
                at(0),
                Command::QuestionStop {
                    question: "q1".into(),
                },
                tablets(3),
            )
            .unwrap();
        let closed = session.answer(later, "t3", None, "q1", vec!["4".into()], String::new());
        assert_eq!(closed.unwrap_err().code, ErrorCode::QuestionClosed);
        assert!(
            session
                .issue(
                    start(),
                    at(0),
                    Command::QuestionStop {
                        question: "q1".into()
                    },
                    tablets(3)
                )
                .is_err()
        );
    }

    #[test]
    fn a_multiple_choice_answer_counts_each_of_its_choices_once() {
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        let question = Question {
            question_kind: QuestionKind::MultipleChoice,
            correct: vec!["3".into(), "4".into()],
            ..question(None)
        };
        session
            .issue(start(), at(0), Command::QuestionStart(question), tablets(3))
            .unwrap();
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
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        assert_eq!(session.poll_timeout(), None, "nothing given, nothing due");
        let lock = session
            .issue(
                start(),
                at(1_000),
                Command::Lock {
                    message: String::new(),
                },
                tablets(2),
            )
            .unwrap();
        session
            .issue(start(), at(3_000), Command::Unlock, tablets(2))
            .unwrap();
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
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        let message = session
            .issue(
                start(),
                at(0),
                Command::Message {
                    text: "Chào".into(),
                },
                tablets(2),
            )
            .unwrap();
        session
            .issue(
                start(),
                at(0),
                Command::Lock {
                    message: String::new(),
                },
                tablets(2),
            )
            .unwrap();
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
        session
            .issue(start(), at(0), Command::Unlock, BTreeSet::new())
            .unwrap();
        assert_eq!(
            taken(&mut session),
            [("unlock".to_owned(), 0, 0)],
            "given to no tablet: written at once"
        );
    }

    #[test]
    fn at_the_stop_every_waiting_command_is_written_once_with_the_acks_so_far() {
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        let lock = session
            .issue(
                start(),
                at(0),
                Command::Lock {
                    message: String::new(),
                },
                tablets(3),
            )
            .unwrap();
        session
            .issue(start(), at(0), Command::Unlock, tablets(3))
            .unwrap();
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
        let mut session = Session::new("l1".into(), ACK_TIMEOUT);
        for _ in 0..LOG_LENGTH {
            session
                .issue(start(), at(0), Command::Unlock, tablets(1))
                .unwrap();
        }
        assert_eq!(taken(&mut session), []);
        session
            .issue(start(), at(0), Command::Unlock, tablets(1))
            .unwrap();
        let records = session.take_records();
        assert_eq!(
            records
                .iter()
                .map(|r| (r.command_id.as_str(), r.acknowledged, r.connected))
                .collect::<Vec<_>>(),
            [("1", 0, 1)]
        );
    }
}
