//! The messages of the tablets' live channel, version 1, as Rust types.
//!
//! `PROTOCOL.md` beside this file is the description for people writing a
//! tablet client; this module is its executable form and the two must agree.
//!
//! # Design
//! - JSON text frames, one message each, an object with a `type` field.
//!   Unknown fields are ignored so that a newer peer can add fields; a new
//!   `type` or a changed meaning is a new protocol version, announced in
//!   `hello.v` and in the mDNS TXT record.
//! - Parsing checks the size before anything else, then the shape, then the
//!   values: a message is either fully valid or answered with one `error`
//!   naming what was wrong, and the connection stays open.
//! - The correct answers of a question are never sent to tablets.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::events::MAX_ARGUMENTS_BYTES;

/// The protocol version this agent speaks.
pub const VERSION: u32 = 1;

/// The longest text a teacher may send in one field (a message, a prompt).
const MAX_TEXT_CHARS: usize = 2000;
/// The most choices a question may have.
const MAX_CHOICES: usize = 12;

/// What a tablet sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TabletMessage {
    /// The first message on every connection: who the tablet is and what it
    /// last saw (`last_command`, 0 on a first connection).
    Hello {
        v: u32,
        token: String,
        #[serde(default)]
        last_command: u64,
    },
    Ping,
    /// The tablet carried out command `id`.
    Ack {
        id: u64,
    },
    Answer {
        question: String,
        #[serde(default)]
        choices: Vec<String>,
        #[serde(default)]
        text: String,
    },
    RaiseHand,
    Status {
        #[serde(default)]
        battery: Option<u8>,
        locked: bool,
    },
    /// Whether the lesson page is shown (`visible`: the page's visibility)
    /// and has the input focus (`focused`): the pupil left it for another
    /// tab or app when either is false.
    Presence {
        visible: bool,
        focused: bool,
    },
}

/// What the teacher asks of every tablet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Lock {
        #[serde(default)]
        message: String,
    },
    Unlock,
    /// Open a web address, or a file of the agent's content store (served at `/content/<file>`).
    Open {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        file: Option<String>,
    },
    Message {
        text: String,
    },
    QuestionStart(Question),
    QuestionStop {
        question: String,
    },
    /// Show content-store material at `page` (from 1) and follow the teacher's page turns.
    Follow {
        file: String,
        page: u32,
    },
    /// The teacher turned to `page` of the material being followed.
    Page {
        page: u32,
    },
    /// Stop following: the pupil may browse the material freely.
    Release,
}

impl Command {
    /// The name used in the lesson's log, such as `question.start`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Lock { .. } => "lock",
            Command::Unlock => "unlock",
            Command::Open { .. } => "open",
            Command::Message { .. } => "message",
            Command::QuestionStart(_) => "question.start",
            Command::QuestionStop { .. } => "question.stop",
            Command::Follow { .. } => "follow",
            Command::Page { .. } => "follow.page",
            Command::Release => "follow.release",
        }
    }

    /// Checks the values serde cannot, and that the command fits in the
    /// lesson's record for the hub; the error says what to fix.
    pub fn validate(&self) -> Result<(), InvalidCommand> {
        self.validate_fields()?;
        let recorded = serde_json::to_string(self)
            .expect("commands serialise")
            .len();
        if recorded > MAX_ARGUMENTS_BYTES {
            return Err(InvalidCommand::TooLarge { recorded });
        }
        Ok(())
    }

    fn validate_fields(&self) -> Result<(), InvalidCommand> {
        match self {
            Command::Lock { message } => Ok(text_field("message", message, false)?),
            Command::Unlock => Ok(()),
            Command::Open { url, file } => match (url, file) {
                (Some(url), None) if url.starts_with("http://") || url.starts_with("https://") => {
                    Ok(text_field("url", url, true)?)
                }
                (Some(url), None) => Err(InvalidCommand::UrlScheme(url.clone())),
                (None, Some(file)) => Ok(content_name(file)?),
                _ => Err(InvalidCommand::UrlOrFile),
            },
            Command::Message { text } => Ok(text_field("text", text, true)?),
            Command::QuestionStart(question) => question.validate(),
            Command::QuestionStop { question } => Ok(identifier("question", question)?),
            Command::Follow { file, page } => {
                content_name(file)?;
                Ok(super::follow::page_number(*page)?)
            }
            Command::Page { page } => Ok(super::follow::page_number(*page)?),
            Command::Release => Ok(()),
        }
    }
}

/// The kinds of question a tablet can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    SingleChoice,
    MultipleChoice,
    ShortAnswer,
    /// Two choices whose ids are `true` and `false`; answered as a single choice.
    TrueFalse,
}

impl QuestionKind {
    /// Its name in the protocol, such as `true_false`.
    pub fn name(self) -> &'static str {
        match self {
            QuestionKind::SingleChoice => "single_choice",
            QuestionKind::MultipleChoice => "multiple_choice",
            QuestionKind::ShortAnswer => "short_answer",
            QuestionKind::TrueFalse => "true_false",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Chosen by the panel; unique within the lesson.
    pub id: String,
    pub question_kind: QuestionKind,
    pub prompt: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// The correct choice ids, or accepted short answers; empty when ungraded.
    /// Kept on the agent: never serialised towards tablets.
    #[serde(default, skip_serializing)]
    pub correct: Vec<String>,
    #[serde(default)]
    pub time_limit_s: Option<u32>,
}

impl Question {
    fn validate(&self) -> Result<(), InvalidCommand> {
        identifier("id", &self.id)?;
        text_field("prompt", &self.prompt, true)?;
        if self.time_limit_s == Some(0) {
            return Err(InvalidCommand::NoTime);
        }
        match self.question_kind {
            QuestionKind::ShortAnswer if !self.choices.is_empty() => {
                Err(InvalidCommand::ChoicesOfShortAnswer)
            }
            QuestionKind::ShortAnswer => Ok(self
                .correct
                .iter()
                .try_for_each(|answer| text_field("correct", answer, true))?),
            QuestionKind::TrueFalse
                if self
                    .choices
                    .iter()
                    .map(|c| c.id.as_str())
                    .ne(["true", "false"]) =>
            {
                Err(InvalidCommand::NotTrueFalse)
            }
            QuestionKind::SingleChoice | QuestionKind::MultipleChoice | QuestionKind::TrueFalse => {
                if !(2..=MAX_CHOICES).contains(&self.choices.len()) {
                    return Err(InvalidCommand::ChoiceCount(self.choices.len()));
                }
                for (index, choice) in self.choices.iter().enumerate() {
                    identifier("choices[].id", &choice.id)?;
                    text_field("choices[].text", &choice.text, true)?;
                    if self.choices[..index]
                        .iter()
                        .any(|earlier| earlier.id == choice.id)
                    {
                        return Err(InvalidCommand::ChoiceTwice(choice.id.clone()));
                    }
                }
                if let Some(unknown) = self
                    .correct
                    .iter()
                    .find(|id| !self.choices.iter().any(|c| &c.id == *id))
                {
                    return Err(InvalidCommand::UnknownCorrect(unknown.clone()));
                }
                if self.question_kind != QuestionKind::MultipleChoice && self.correct.len() > 1 {
                    return Err(InvalidCommand::SeveralCorrect);
                }
                Ok(())
            }
        }
    }

    /// Whether `choices`/`text` is a well-formed answer to this question.
    pub fn check_answer(&self, choices: &[String], text: &str) -> Result<(), InvalidAnswer> {
        match self.question_kind {
            QuestionKind::ShortAnswer if !choices.is_empty() => Err(InvalidAnswer::ChoicesForText),
            QuestionKind::ShortAnswer => {
                text_field("text", text, true).map_err(InvalidAnswer::Text)
            }
            QuestionKind::SingleChoice | QuestionKind::TrueFalse if choices.len() != 1 => {
                Err(InvalidAnswer::NotOne)
            }
            QuestionKind::SingleChoice | QuestionKind::MultipleChoice | QuestionKind::TrueFalse => {
                if choices.is_empty() {
                    return Err(InvalidAnswer::NoChoice);
                }
                if choices.len() > self.choices.len() {
                    return Err(InvalidAnswer::TooMany {
                        given: choices.len(),
                        choices: self.choices.len(),
                    });
                }
                if let Some(unknown) = choices
                    .iter()
                    .find(|id| !self.choices.iter().any(|c| &c.id == *id))
                {
                    return Err(InvalidAnswer::UnknownChoice(unknown.clone()));
                }
                match choices
                    .iter()
                    .enumerate()
                    .find(|(index, id)| choices[..*index].contains(id))
                {
                    Some((_, repeated)) => Err(InvalidAnswer::Repeated(repeated.clone())),
                    None => Ok(()),
                }
            }
        }
    }

    /// `Some(correct)` for a graded question, `None` when it has no correct answer.
    pub fn grade(&self, choices: &[String], text: &str) -> Option<bool> {
        if self.correct.is_empty() {
            return None;
        }
        Some(match self.question_kind {
            QuestionKind::ShortAnswer => {
                let given = normalise(text);
                self.correct
                    .iter()
                    .any(|accepted| normalise(accepted) == given)
            }
            QuestionKind::SingleChoice | QuestionKind::MultipleChoice | QuestionKind::TrueFalse => {
                let mut given: Vec<&String> = choices.iter().collect();
                let mut expected: Vec<&String> = self.correct.iter().collect();
                given.sort();
                expected.sort();
                given == expected
            }
        })
    }
}

/// Short answers compare without case, surrounding space or Unicode form differences.
fn normalise(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.trim().nfc().collect::<String>().to_lowercase()
}

/// What a tablet should show right now; sent in `welcome`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveState {
    pub locked: bool,
    pub lock_message: String,
    /// The last `open` command's target, if any.
    pub open: Option<Command>,
    pub question: Option<OpenQuestionView>,
    /// The id of the newest command given.
    pub last_command: u64,
    /// The material and page the tablet follows, or null when it browses freely.
    pub follow: Option<super::follow::Following>,
}

/// The open question as a tablet sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenQuestionView {
    pub question: Question,
    pub started_at: Timestamp,
    /// Set per tablet: whether this tablet has answered already.
    pub answered: bool,
}

/// A command as sent to tablets: its id orders the lesson's commands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandEnvelope {
    pub id: u64,
    pub command: Command,
}

/// What the agent sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage<'a> {
    /// The answer to `hello`: who the tablet is, the lesson as it is now, and
    /// the commands it missed since `last_command`.
    Welcome {
        v: u32,
        tablet_id: &'a str,
        name: &'a str,
        /// The full name of the pupil bound to the tablet, null while none is.
        pupil: Option<&'a str>,
        heartbeat_s: u32,
        state: &'a LiveState,
        missed: Vec<&'a CommandEnvelope>,
    },
    Command(&'a CommandEnvelope),
    Pong,
    /// The answer is stored: the tablet may show it as sent.
    AnswerReceived {
        question: &'a str,
    },
    Error {
        code: ErrorCode,
        detail: String,
    },
}

impl AgentMessage<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("agent messages always serialise")
    }
}

/// Why a tablet's message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object of a known `type`, or a field of the wrong type.
    Malformed,
    /// Longer than `tablets.max_message_bytes`.
    TooLarge,
    /// `hello.v` names a version this agent does not speak.
    UnsupportedVersion,
    /// A message that makes no sense now: anything before `hello`, a second
    /// `hello`, an ack of a command never sent.
    OutOfOrder,
    /// The token is unknown or revoked; the connection is closed.
    Unauthorized,
    /// An answer to a question that is not open, or after its time limit.
    QuestionClosed,
    AlreadyAnswered,
    InvalidAnswer,
    /// The agent could not store the answer; the tablet should send it again.
    Unavailable,
}

/// A refused message: the code and what was wrong, for the tablet's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub detail: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    pub fn to_json(&self) -> String {
        AgentMessage::Error {
            code: self.code,
            detail: self.detail.clone(),
        }
        .to_json()
    }
}

/// Reads one text frame from a tablet.
pub fn parse(frame: &str, max_bytes: usize) -> Result<TabletMessage, ProtocolError> {
    if frame.len() > max_bytes {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("{} bytes, the limit is {max_bytes}", frame.len()),
        ));
    }
    let message: TabletMessage = serde_json::from_str(frame)
        .map_err(|err| ProtocolError::new(ErrorCode::Malformed, err.to_string()))?;
    if let TabletMessage::Hello { v, .. } = &message
        && *v != VERSION
    {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedVersion,
            format!("this agent speaks version {VERSION}, not {v}"),
        ));
    }
    Ok(message)
}

/// Why the teacher's command cannot be given: the field and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    #[error(transparent)]
    Field(#[from] InvalidField),
    #[error(transparent)]
    ContentName(#[from] BadContentName),
    #[error("url `{0}` must start with http:// or https://")]
    UrlScheme(String),
    #[error("give exactly one of `url` or `file`")]
    UrlOrFile,
    #[error("time_limit_s must be at least 1 (leave it out for no limit)")]
    NoTime,
    #[error("a short-answer question has no choices")]
    ChoicesOfShortAnswer,
    #[error("a choice question needs 2 to {MAX_CHOICES} choices, not {0}")]
    ChoiceCount(usize),
    #[error("choice id `{0}` appears twice")]
    ChoiceTwice(String),
    #[error("correct answer `{0}` is not one of the choice ids")]
    UnknownCorrect(String),
    #[error("a single-choice question has at most one correct choice")]
    SeveralCorrect,
    /// Larger than one record for the hub may hold; said in Vietnamese first,
    /// since the teacher reads it at the panel.
    #[error(
        "Lệnh quá dài: {recorded} byte, tối đa {MAX_ARGUMENTS_BYTES} byte; hãy rút gọn nội dung hoặc các lựa chọn. \
         (the command takes {recorded} bytes as recorded, more than the {MAX_ARGUMENTS_BYTES} one record for the hub may hold: shorten its text or choices)"
    )]
    TooLarge { recorded: usize },
    #[error(transparent)]
    Page(#[from] super::follow::BadPage),
    #[error(
        "a true/false question has exactly the choices `true` and `false`, in that order: \
         [{{\"id\": \"true\", \"text\": \"Đúng\"}}, {{\"id\": \"false\", \"text\": \"Sai\"}}]"
    )]
    NotTrueFalse,
}

/// Why a tablet's answer is not a well-formed answer to its question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAnswer {
    #[error(transparent)]
    Text(InvalidField),
    #[error("a short answer is given as `text`, not `choices`")]
    ChoicesForText,
    #[error("choose exactly one choice")]
    NotOne,
    #[error("choose at least one choice")]
    NoChoice,
    #[error("{given} choices given; this question has {choices}")]
    TooMany { given: usize, choices: usize },
    #[error("`{0}` is not a choice of this question")]
    UnknownChoice(String),
    #[error("choice `{0}` is given more than once; give each chosen choice once")]
    Repeated(String),
}

/// A text or identifier field that breaks its rule, by its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidField {
    #[error("`{0}` is empty")]
    Empty(&'static str),
    #[error("`{0}` is longer than {MAX_TEXT_CHARS} characters")]
    TooLong(&'static str),
    #[error("`{name}` = `{value}` must be 1 to 64 letters, digits, `-`, `_` or `.`")]
    NotIdentifier { name: &'static str, value: String },
}

/// A name that cannot be a file of the content store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a content file name: use a relative path such as `toan/bai-3.pdf`")]
pub struct BadContentName(pub String);

fn text_field(name: &'static str, value: &str, required: bool) -> Result<(), InvalidField> {
    if required && value.trim().is_empty() {
        return Err(InvalidField::Empty(name));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(InvalidField::TooLong(name));
    }
    Ok(())
}

fn identifier(name: &'static str, value: &str) -> Result<(), InvalidField> {
    if (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(())
    } else {
        Err(InvalidField::NotIdentifier {
            name,
            value: value.to_owned(),
        })
    }
}

/// A content-store file name: a relative path of plain segments.
pub fn content_name(name: &str) -> Result<(), BadContentName> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && !segment.chars().any(|c| c.is_control() || c == '\\')
        });
    if valid {
        Ok(())
    } else {
        Err(BadContentName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice_question() -> Question {
        Question {
            id: "q1".into(),
            question_kind: QuestionKind::MultipleChoice,
            prompt: "Số nào là số chẵn?".into(),
            choices: ["2", "3", "4"]
                .iter()
                .map(|id| Choice {
                    id: (*id).into(),
                    text: (*id).into(),
                })
                .collect(),
            correct: vec!["2".into(), "4".into()],
            time_limit_s: None,
        }
    }

    #[test]
    fn refusals_name_their_cause() {
        assert_eq!(
            parse("{\"type\":\"ping\"", 100).unwrap_err().code,
            ErrorCode::Malformed
        );
        assert_eq!(
            parse("{\"type\":\"shout\"}", 100).unwrap_err().code,
            ErrorCode::Malformed
        );
        assert_eq!(
            parse(&" ".repeat(101), 100).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            parse("{\"type\":\"hello\",\"v\":2,\"token\":\"x\"}", 100)
                .unwrap_err()
                .code,
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            parse(
                "{\"type\":\"hello\",\"v\":1,\"token\":\"x\",\"future\":true}",
                100
            )
            .unwrap(),
            TabletMessage::Hello {
                v: 1,
                token: "x".into(),
                last_command: 0
            }
        );
        assert_eq!(
            parse(
                "{\"type\":\"presence\",\"visible\":false,\"focused\":true}",
                100
            )
            .unwrap(),
            TabletMessage::Presence {
                visible: false,
                focused: true
            }
        );
        assert_eq!(
            parse("{\"type\":\"presence\",\"visible\":\"no\"}", 100)
                .unwrap_err()
                .code,
            ErrorCode::Malformed,
            "a presence says both, as booleans"
        );
    }

    #[test]
    fn a_question_too_large_for_its_record_is_refused_though_each_field_fits() {
        let long = "ữ".repeat(MAX_TEXT_CHARS);
        let choices = (0..MAX_CHOICES)
            .map(|i| Choice {
                id: format!("c{i}"),
                text: long.clone(),
            })
            .collect();
        let question = Question {
            prompt: long.clone(),
            choices,
            correct: vec![],
            ..choice_question()
        };
        let err = Command::QuestionStart(question)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("Lệnh quá dài"), "{err}");
        assert!(
            err.contains(&format!("more than the {MAX_ARGUMENTS_BYTES} one record")),
            "{err}"
        );
        let fits = Question {
            prompt: long,
            ..choice_question()
        };
        assert_eq!(Command::QuestionStart(fits).validate(), Ok(()));
    }

    #[test]
    fn an_answer_gives_no_more_choices_than_its_question_has() {
        let question = choice_question();
        assert_eq!(question.check_answer(&["2".into(), "4".into()], ""), Ok(()));
        let repeated = vec!["2".to_owned(); 3_000];
        assert_eq!(
            question
                .check_answer(&repeated, "")
                .unwrap_err()
                .to_string(),
            "3000 choices given; this question has 3"
        );
    }

    #[test]
    fn correct_answers_stay_on_the_agent() {
        let envelope = CommandEnvelope {
            id: 3,
            command: Command::QuestionStart(choice_question()),
        };
        let json = AgentMessage::Command(&envelope).to_json();
        assert!(!json.contains("correct"), "{json}");
        assert!(json.contains("\"kind\":\"question_start\""), "{json}");
    }

    #[test]
    fn answers_are_checked_and_graded() {
        let question = choice_question();
        assert!(
            question
                .check_answer(&["5".into()], "")
                .unwrap_err()
                .to_string()
                .contains("`5` is not a choice")
        );
        let repeated: Vec<String> = std::iter::repeat_n("2".to_owned(), 3000).collect();
        assert!(
            question
                .check_answer(&repeated, "")
                .unwrap_err()
                .to_string()
                .contains("3000 choices given; this question has")
        );
        assert!(
            question
                .check_answer(&["2".into(), "2".into()], "")
                .unwrap_err()
                .to_string()
                .contains("choice `2` is given more than once")
        );
        assert!(
            question
                .check_answer(&["4".into(), "2".into(), "4".into()], "")
                .is_err()
        );
        assert_eq!(question.grade(&["4".into(), "2".into()], ""), Some(true));
        assert_eq!(question.grade(&["2".into()], ""), Some(false));
        let short = Question {
            question_kind: QuestionKind::ShortAnswer,
            choices: vec![],
            correct: vec!["Hà Nội".into()],
            ..question
        };
        assert_eq!(short.grade(&[], "  hà nội "), Some(true));
        assert_eq!(
            Question {
                correct: vec![],
                ..short
            }
            .grade(&[], "x"),
            None
        );
    }

    #[test]
    fn commands_are_validated() {
        assert!(
            Command::Open {
                url: Some("file:///etc/passwd".into()),
                file: None
            }
            .validate()
            .is_err()
        );
        assert!(
            Command::Open {
                url: None,
                file: Some("../secret".into())
            }
            .validate()
            .is_err()
        );
        assert!(
            Command::Open {
                url: None,
                file: Some("toan/bai-3.pdf".into())
            }
            .validate()
            .is_ok()
        );
        let mut question = choice_question();
        question.correct = vec!["9".into()];
        assert!(
            Command::QuestionStart(question)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("`9`")
        );
    }
}
