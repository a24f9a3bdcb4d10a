//! Question sets prepared ahead: a TOML file in the content store (written by
//! the teacher or IT staff, or pushed by the hub through `PutContent`), run on
//! the panel one question after another.
//!
//! # Design
//! - A set is a file named `*.quiz.toml` anywhere in the content store. Its
//!   correct answers must never reach tablets, so the content store refuses to
//!   serve such files to them ([`is_question_set`]).
//! - A file is checked whole when the teacher opens it: every problem names
//!   the file, the line and column, and the field, so that whoever wrote it can
//!   fix it; a set with a problem is not run at all.
//! - Each question of a run gets an id made of the set's run number and its
//!   place, so that the same set can be run twice in a lesson and every
//!   answer still names the question it answers.
//! - Running is a cursor over the checked questions ([`SetRun`]); the panel
//!   asks for the next one and gives it like any question it typed.
//!
//! The format:
//! ```toml
//! title = "Ôn tập bài 3"            # shown on the panel
//!
//! [[question]]
//! kind = "multiple_choice"          # single_choice, multiple_choice, true_false, short_answer
//! prompt = "Những số nào là số nguyên tố?"
//! choices = ["2", "4", "5", "9"]    # 2 to 12; their ids are A, B, C, …
//! correct = ["A", "C"]              # optional: ungraded without
//! time_limit_s = 30                 # optional
//!
//! [[question]]
//! kind = "true_false"
//! prompt = "Hà Nội là thủ đô của Việt Nam."
//! correct = true                    # optional
//!
//! [[question]]
//! kind = "short_answer"
//! prompt = "Thủ đô của Việt Nam là gì?"
//! accepted = ["Hà Nội", "Ha Noi"]   # compared without case, spaces around or Unicode form
//! ```

use serde::Deserialize;

use super::protocol::{Choice, Command, Question, QuestionKind};
use crate::config::diagnostics::line_column;

/// The most questions one set may hold.
pub const MAX_QUESTIONS: usize = 200;

/// Whether a content-store name is a question set's file.
pub fn is_question_set(name: &str) -> bool {
    name.ends_with(".quiz.toml")
}

/// A problem in a question set's file, where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SetProblem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A checked question set.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionSet {
    /// Its content-store name, such as `toan/on-tap.quiz.toml`.
    pub file: String,
    pub title: String,
    /// Each with an id of its place alone (`1`, `2`, …), made unique per run.
    pub questions: Vec<Question>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFile {
    #[serde(default)]
    title: String,
    #[serde(default)]
    question: Vec<toml::Spanned<Entry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    kind: QuestionKind,
    prompt: String,
    #[serde(default)]
    choices: Vec<String>,
    correct: Option<Correct>,
    #[serde(default)]
    accepted: Vec<String>,
    time_limit_s: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Correct {
    Truth(bool),
    Choices(Vec<String>),
}

/// The id a set gives the choice at `index`: A, B, C, …
fn choice_id(index: usize) -> String {
    char::from(b'A' + index as u8).to_string()
}

impl Entry {
    /// The question this entry asks, or what is wrong with it.
    fn question(self, place: usize) -> Result<Question, String> {
        let correct = match (self.kind, self.correct) {
            (QuestionKind::TrueFalse, Some(Correct::Truth(truth))) => vec![truth.to_string()],
            (QuestionKind::TrueFalse, Some(Correct::Choices(_))) => {
                return Err("`correct` of a true_false question is true or false".into());
            }
            (QuestionKind::ShortAnswer, Some(_)) => {
                return Err(
                    "a short_answer question lists its answers in `accepted`, not `correct`".into(),
                );
            }
            (_, Some(Correct::Truth(_))) => {
                return Err(
                    "`correct` of a choice question lists choice ids such as [\"A\"]".into(),
                );
            }
            (_, Some(Correct::Choices(ids))) => ids,
            (_, None) => Vec::new(),
        };
        if self.kind != QuestionKind::ShortAnswer && !self.accepted.is_empty() {
            return Err("only a short_answer question has `accepted`".into());
        }
        let choices = match self.kind {
            QuestionKind::TrueFalse if !self.choices.is_empty() => {
                return Err("a true_false question has no `choices`: they are Đúng and Sai".into());
            }
            QuestionKind::TrueFalse => vec![
                Choice {
                    id: "true".into(),
                    text: "Đúng".into(),
                },
                Choice {
                    id: "false".into(),
                    text: "Sai".into(),
                },
            ],
            _ => self
                .choices
                .into_iter()
                .enumerate()
                .map(|(index, text)| Choice {
                    id: choice_id(index),
                    text,
                })
                .collect(),
        };
        let correct = if self.kind == QuestionKind::ShortAnswer {
            self.accepted
        } else {
            correct
        };
        let question = Question {
            id: place.to_string(),
            question_kind: self.kind,
            prompt: self.prompt,
            choices,
            correct,
            time_limit_s: self.time_limit_s,
        };
        Command::QuestionStart(question.clone())
            .validate()
            .map_err(|err| err.to_string())?;
        Ok(question)
    }
}

/// Reads and checks a set from the text of `file`.
pub fn parse(file: &str, text: &str) -> Result<QuestionSet, Vec<SetProblem>> {
    let problem = |offset: usize, message: String| {
        let (line, column) = line_column(text, offset);
        SetProblem {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    };
    let parsed: SetFile = toml::from_str(text).map_err(|err| {
        let offset = err.span().map_or(0, |span| span.start);
        vec![problem(offset, err.message().trim().to_owned())]
    })?;
    if parsed.question.is_empty() {
        return Err(vec![problem(
            0,
            "the set has no questions: add a [[question]] table".into(),
        )]);
    }
    if parsed.question.len() > MAX_QUESTIONS {
        return Err(vec![problem(
            parsed.question[MAX_QUESTIONS].span().start,
            format!("a set holds at most {MAX_QUESTIONS} questions: split it into two files"),
        )]);
    }
    let mut problems = Vec::new();
    let mut questions = Vec::new();
    for (index, entry) in parsed.question.into_iter().enumerate() {
        let start = entry.span().start;
        match entry.into_inner().question(index + 1) {
            Ok(question) => questions.push(question),
            Err(message) => {
                problems.push(problem(start, format!("question {}: {message}", index + 1)))
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(QuestionSet {
        file: file.to_owned(),
        title: parsed.title,
        questions,
    })
}

/// A set being run on the panel: which question comes next.
#[derive(Debug, Clone, PartialEq)]
pub struct SetRun {
    set: QuestionSet,
    /// Makes this run's question ids differ from an earlier run's.
    run: u64,
    /// How many questions were given.
    given: usize,
}

/// Where a run stands, for the panel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunView {
    pub file: String,
    pub title: String,
    pub total: usize,
    /// How many questions were given so far.
    pub given: usize,
}

impl SetRun {
    pub fn new(set: QuestionSet, run: u64) -> SetRun {
        SetRun { set, run, given: 0 }
    }

    /// The next question with its id for this run, or `None` after the last.
    pub fn next_question(&mut self) -> Option<Question> {
        let mut question = self.set.questions.get(self.given)?.clone();
        question.id = format!("set{}-{}", self.run, question.id);
        self.given += 1;
        Some(question)
    }

    /// Puts back the question just taken: it could not be given.
    pub fn put_back(&mut self) {
        self.given = self.given.saturating_sub(1);
    }

    pub fn view(&self) -> RunView {
        RunView {
            file: self.set.file.clone(),
            title: self.set.title.clone(),
            total: self.set.questions.len(),
            given: self.given,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = r#"title = "Ôn tập"

[[question]]
kind = "multiple_choice"
prompt = "Những số nào là số nguyên tố?"
choices = ["2", "4", "5"]
correct = ["A", "C"]
time_limit_s = 30

[[question]]
kind = "true_false"
prompt = "Hà Nội là thủ đô."
correct = true

[[question]]
kind = "short_answer"
prompt = "Thủ đô?"
accepted = ["Hà Nội"]
"#;

    #[test]
    fn a_set_is_read_with_choice_ids_and_true_false_choices() {
        let set = parse("on-tap.quiz.toml", SET).unwrap();
        assert_eq!(set.title, "Ôn tập");
        assert_eq!(set.questions.len(), 3);
        assert_eq!(set.questions[0].correct, ["A", "C"]);
        assert_eq!(set.questions[0].choices[2].id, "C");
        assert_eq!(set.questions[1].correct, ["true"]);
        assert_eq!(set.questions[1].choices[1].text, "Sai");
        assert!(set.questions[2].grade(&[], " hà nội ").unwrap());
    }

    #[test]
    fn a_wrong_correct_choice_names_its_question_and_line() {
        let text = SET.replace(r#"correct = ["A", "C"]"#, r#"correct = ["A", "E"]"#);
        let problems = parse("on-tap.quiz.toml", &text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            (problems[0].line, problems[0].file.as_str()),
            (3, "on-tap.quiz.toml")
        );
        assert!(
            problems[0].message.contains("question 1"),
            "{}",
            problems[0]
        );
        assert!(problems[0].message.contains("`E`"), "{}", problems[0]);
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line_and_column() {
        let text = SET.replace("time_limit_s = 30", "time_limit = 30");
        let problems = parse("on-tap.quiz.toml", &text).unwrap_err();
        assert_eq!(
            (problems[0].line, problems[0].column),
            (8, 1),
            "{problems:?}"
        );
        assert!(
            problems[0].message.contains("time_limit"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn each_run_gives_the_questions_in_order_with_ids_of_its_own() {
        let set = parse("on-tap.quiz.toml", SET).unwrap();
        let mut first = SetRun::new(set.clone(), 1);
        let mut second = SetRun::new(set, 2);
        let ids: Vec<String> = std::iter::from_fn(|| first.next_question())
            .map(|q| q.id)
            .collect();
        assert_eq!(ids, ["set1-1", "set1-2", "set1-3"]);
        assert_eq!(first.view().given, 3);
        assert_eq!(second.next_question().unwrap().id, "set2-1");
        second.put_back();
        assert_eq!(second.view().given, 0);
    }
}
