//! The questions asked in each lesson and the pupils' answers, as the lesson's
//! summary reads them.
//!
//! # Design
//! The outbox forgets what the hub acknowledged, so an answer is also kept in
//! `lesson_answers`, in the transaction that puts its event in the outbox:
//! the summary and the hub never disagree about which answers were given.
//! A pupil whose parents did not consent to keeping learning records has
//! answers without a name (as in the outbox); erasing a pupil erases theirs.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction, params};

use super::outbox::{NewEvent, StoredEvent};
use super::{Store, StoreError};
use crate::proto::QuestionAnswer;

/// A question as the lesson's summary names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedQuestion {
    pub lesson_id: String,
    pub question_id: String,
    /// `single_choice`, `multiple_choice`, `true_false` or `short_answer`.
    pub question_kind: String,
    pub prompt: String,
    /// Whether it had a correct answer.
    pub graded: bool,
    pub asked_at: Timestamp,
}

/// One pupil's answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PupilAnswer {
    /// The choice ids, comma-separated, or the short answer's text.
    pub answer: String,
    pub correct: Option<bool>,
    pub time_to_answer_ms: u32,
}

/// One pupil's line in the lesson's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PupilLine {
    pub personal_id: String,
    pub full_name: String,
    /// The roll call's mark for the lesson (`present`, `late`, `absent`,
    /// `excused`), or `None` when it made none.
    pub attendance: Option<String>,
    /// By question id.
    pub answers: HashMap<String, PupilAnswer>,
    /// The pieces of work they handed in during the lesson.
    pub hand_ins: usize,
}

impl PupilLine {
    pub fn answered(&self) -> usize {
        self.answers.len()
    }

    pub fn correct(&self) -> usize {
        self.answers
            .values()
            .filter(|answer| answer.correct == Some(true))
            .count()
    }

    /// The time all their answers took, in milliseconds.
    pub fn time_taken_ms(&self) -> u64 {
        self.answers
            .values()
            .map(|answer| u64::from(answer.time_to_answer_ms))
            .sum()
    }
}

/// A lesson's questions and, for every pupil of the class, their attendance and answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LessonRows {
    pub lesson_id: String,
    /// In the order they were asked.
    pub questions: Vec<AskedQuestion>,
    /// By name.
    pub pupils: Vec<PupilLine>,
    /// Answers kept without a name (no consent to keeping learning records).
    pub unnamed_answers: usize,
}

fn insert_question(tx: &Transaction<'_>, question: &AskedQuestion) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO lesson_questions
           (lesson_id, question_id, question_kind, prompt, graded, asked_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        question.lesson_id,
        question.question_id,
        question.question_kind,
        question.prompt,
        question.graded,
        question.asked_at.as_millisecond()
    ])?;
    Ok(())
}

impl Store {
    /// Keeps a question the teacher asked (once; asking it again changes nothing).
    pub(super) fn insert_asked_question(
        &self,
        tx: &Transaction<'_>,
        question: &AskedQuestion,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        insert_question(tx, question)?;
        Ok(Vec::new())
    }

    /// Keeps an answer for the summary and puts its event in the outbox.
    pub(super) fn insert_answer(
        &self,
        tx: &Transaction<'_>,
        question: &AskedQuestion,
        occurred_at: Timestamp,
        answer: QuestionAnswer,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        insert_question(tx, question)?;
        let given = if answer.choices.is_empty() {
            answer.text.clone()
        } else {
            answer.choices.join(",")
        };
        tx.prepare_cached(
            "INSERT INTO lesson_answers
               (lesson_id, question_id, tablet_id, personal_id, answer, correct, time_to_answer_ms, answered_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            answer.lesson_id,
            answer.question_id,
            answer.tablet_id,
            Some(answer.pupil_personal_id.as_str()).filter(|id| !id.is_empty()),
            given,
            answer.graded.then_some(answer.correct),
            answer.time_to_answer_ms,
            occurred_at.as_millisecond()
        ])?;
        self.insert_events(tx, vec![NewEvent::new(occurred_at, answer)])
    }

    /// The lesson's questions, and for each pupil of `class` (and every other
    /// pupil the roll call marked, who answered or who handed work in) the roll
    /// call's mark, the answers and the number of hand-ins.
    pub fn lesson_rows(
        &self,
        lesson_id: &str,
        class: Option<&str>,
    ) -> Result<LessonRows, StoreError> {
        self.read(|conn| {
            let questions = conn
                .prepare(
                    "SELECT question_id, question_kind, prompt, graded, asked_at_ms FROM lesson_questions
                     WHERE lesson_id = ?1 ORDER BY asked_at_ms, question_id",
                )?
                .query_map([lesson_id], |row| {
                    Ok(AskedQuestion {
                        lesson_id: lesson_id.to_owned(),
                        question_id: row.get(0)?,
                        question_kind: row.get(1)?,
                        prompt: row.get(2)?,
                        graded: row.get(3)?,
                        asked_at: Timestamp::from_millisecond(row.get(4)?)
                            .unwrap_or(Timestamp::UNIX_EPOCH),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut pupils: BTreeMap<String, PupilLine> = BTreeMap::new();
            let mut roster = conn.prepare(
                "SELECT personal_id, full_name FROM pupils
                 WHERE class_name = ?2
                    OR personal_id IN (SELECT personal_id FROM attendance_marks WHERE lesson_id = ?1)
                    OR personal_id IN (SELECT personal_id FROM lesson_answers WHERE lesson_id = ?1)
                    OR personal_id IN (SELECT personal_id FROM hand_ins WHERE lesson_id = ?1)",
            )?;
            let rows = roster.query_map(params![lesson_id, class], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (personal_id, full_name) = row?;
                let attendance = conn
                    .query_row(
                        "SELECT status FROM attendance_marks WHERE lesson_id = ?1 AND personal_id = ?2
                         ORDER BY marked_at_ms DESC LIMIT 1",
                        params![lesson_id, personal_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                let hand_ins = conn.query_row(
                    "SELECT count(*) FROM hand_ins WHERE lesson_id = ?1 AND personal_id = ?2",
                    params![lesson_id, personal_id],
                    |row| row.get::<_, i64>(0),
                )? as usize;
                pupils.insert(
                    personal_id.clone(),
                    PupilLine {
                        personal_id,
                        full_name,
                        attendance,
                        answers: HashMap::new(),
                        hand_ins,
                    },
                );
            }
            let mut unnamed_answers = 0;
            let mut answers = conn.prepare(
                "SELECT personal_id, question_id, answer, correct, time_to_answer_ms FROM lesson_answers
                 WHERE lesson_id = ?1",
            )?;
            let rows = answers.query_map([lesson_id], |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, String>(1)?,
                    PupilAnswer {
                        answer: row.get(2)?,
                        correct: row.get(3)?,
                        time_to_answer_ms: row.get(4)?,
                    },
                ))
            })?;
            for row in rows {
                let (personal_id, question_id, answer) = row?;
                match personal_id.and_then(|id| pupils.get_mut(&id)) {
                    Some(pupil) => {
                        pupil.answers.insert(question_id, answer);
                    }
                    None => unnamed_answers += 1,
                }
            }
            let mut pupils: Vec<PupilLine> = pupils.into_values().collect();
            pupils.sort_by(|a, b| a.full_name.cmp(&b.full_name).then(a.personal_id.cmp(&b.personal_id)));
            Ok(LessonRows {
                lesson_id: lesson_id.to_owned(),
                questions,
                pupils,
                unnamed_answers,
            })
        })
    }
}
