//! The panel's questions as teachers use them: the live results of the open
//! question per choice and per pupil with the time left, question sets from
//! the content store run one after another, and the lesson's summary as a
//! workbook or CSV.
//!
//! Routes (under the same access as the rest of the teacher's API):
//! - `GET /api/lesson/quiz` (`?answers=N&wait_ms=T` waits until N answers):
//!   the open or last question, its tally, each tablet's answer with the
//!   pupil's name, the seconds left, and the set being run.
//! - `GET /api/lesson/quiz/sets`: the content store's `*.quiz.toml` files,
//!   each with its title and question count, or its problems.
//! - `POST /api/lesson/quiz/run` `{"file": "...", "to": …}`: checks the set
//!   and asks its first question; `POST /api/lesson/quiz/next` `{"to": …}`
//!   stops the open question and asks the next.
//! - `GET /api/lesson/summary?format=xlsx|csv&lesson=ID`: the summary of the
//!   lesson going on now, or of lesson ID.
//!
//! # Design
//! The run of a set lives beside the lesson, in this module's [`Runs`]: the
//! session knows only questions, however they were written.
//!
//! The panel follows the results on its live feed ([`crate::panel::feed`]),
//! which sends [`live_view`] as it is whenever the class changed (an answer,
//! a question given or stopped, a tablet bound); the route gives the same
//! view to other callers, and waits for answers for those who ask it to.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::protocol::Command;
use super::question_set::{self, QuestionSet, RunView, SetRun};
use super::{Lesson, summary};
use crate::http::error::{ApiError, OptionalJsonBody, QueryParams};

/// The longest a caller may wait for answers.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The set being run, if any, and how many runs this agent started.
#[derive(Default)]
pub struct Runs {
    current: Option<SetRun>,
    started: u64,
}

pub fn router() -> Router<Arc<Lesson>> {
    Router::new()
        .route("/api/lesson/quiz", get(live))
        .route("/api/lesson/quiz/sets", get(sets))
        .route("/api/lesson/quiz/run", post(run))
        .route("/api/lesson/quiz/next", post(next))
        .route("/api/lesson/summary", get(lesson_summary))
}

fn lock(runs: &Mutex<Runs>) -> std::sync::MutexGuard<'_, Runs> {
    runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Deserialize, Default)]
struct LiveQuery {
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    answers: usize,
}

async fn live(
    State(lesson): State<Arc<Lesson>>,
    QueryParams(query): QueryParams<LiveQuery>,
) -> Result<Response, ApiError> {
    let results = if query.wait_ms > 0 {
        let patience = Duration::from_millis(query.wait_ms).min(MAX_WAIT);
        lesson.wait_for_answers(query.answers, patience).await
    } else {
        lesson.results()
    };
    Ok(Json(live_view(&lesson, results).await?).into_response())
}

/// The open or last question's `results`, each tablet's answer with its
/// pupil, the time left and the set being run, as the panel shows them.
pub async fn live_view(
    lesson: &Lesson,
    results: Option<super::session::QuestionResults>,
) -> Result<Value, crate::store::StoreError> {
    let time_left_ms = lesson.time_left().map(|left| left.as_millis() as u64);
    let tablets = lesson.store().blocking(|store| store.tablets()).await?;
    let pupils: Vec<Value> = tablets
        .iter()
        .filter(|tablet| !tablet.revoked)
        .map(|tablet| {
            let answer = results
                .as_ref()
                .and_then(|r| r.answers.iter().find(|a| a.tablet_id == tablet.tablet_id));
            json!({
                "tablet_id": tablet.tablet_id,
                "tablet": tablet.name,
                "pupil": tablet.pupil_full_name,
                "answered": answer.is_some(),
                "choices": answer.map(|a| a.choices.clone()),
                "text": answer.map(|a| a.text.clone()),
                "correct": answer.and_then(|a| a.correct),
                "time_to_answer_ms": answer.map(|a| a.time_to_answer_ms),
            })
        })
        .collect();
    let run = lock(&lesson.quiz_runs).current.as_ref().map(SetRun::view);
    Ok(json!({
        "results": results,
        "time_left_ms": time_left_ms,
        "pupils": pupils,
        "run": run,
    }))
}

/// Every `*.quiz.toml` under `dir`, by name relative to it.
fn set_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() => {
                    if let Ok(relative) = path.strip_prefix(dir)
                        && let Some(name) = relative.to_str()
                        && question_set::is_question_set(name)
                    {
                        found.push(name.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// Reads and checks the set `file` of the content store.
fn load(dir: &Path, file: &str) -> Result<QuestionSet, ApiError> {
    if !question_set::is_question_set(file) || super::protocol::content_name(file).is_err() {
        return Err(ApiError::bad_request(
            "not_a_question_set",
            "Đây không phải tệp bộ câu hỏi",
            format!(
                "`{file}` is not a question set: choose a *.quiz.toml file of the content store (GET /api/lesson/quiz/sets)"
            ),
        ));
    }
    let text = std::fs::read_to_string(dir.join(file)).map_err(|err| {
        ApiError::not_found(
            "unknown_question_set",
            "Không có bộ câu hỏi này",
            format!("cannot read `{file}` in the content store: {err}"),
        )
    })?;
    question_set::parse(file, &text).map_err(|problems| {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_question_set",
            "Bộ câu hỏi có lỗi, hãy sửa tệp rồi mở lại",
            listed.join("; "),
        )
        .with("problems", listed)
    })
}

async fn sets(State(lesson): State<Arc<Lesson>>) -> Response {
    let dir = lesson.content_dir().to_owned();
    let listed = tokio::task::spawn_blocking(move || {
        set_files(&dir)
            .into_iter()
            .map(|file| match load(&dir, &file) {
                Ok(set) => {
                    json!({ "file": file, "title": set.title, "questions": set.questions.len() })
                }
                Err(err) => json!({ "file": file, "problems": err.body()["problems"] }),
            })
            .collect::<Vec<Value>>()
    })
    .await
    .unwrap_or_default();
    Json(json!({ "sets": listed })).into_response()
}

/// Splits the body into the set's file (for `run`) and whom to ask.
fn body_fields(body: Option<Value>) -> Result<serde_json::Map<String, Value>, ApiError> {
    match body {
        None | Some(Value::Null) => Ok(serde_json::Map::new()),
        Some(Value::Object(fields)) => Ok(fields),
        Some(_) => Err(ApiError::bad_request(
            "invalid_command",
            "Lệnh không hợp lệ",
            "the body must be a JSON object",
        )),
    }
}

async fn run(
    State(lesson): State<Arc<Lesson>>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let mut fields = body_fields(body)?;
    let file = match fields.remove("file") {
        Some(Value::String(file)) => file,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_command",
                "Hãy chọn một bộ câu hỏi",
                "give `file`: a question set of the content store (GET /api/lesson/quiz/sets)",
            ));
        }
    };
    let dir = lesson.content_dir().to_owned();
    let set = tokio::task::spawn_blocking(move || load(&dir, &file))
        .await
        .map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Lỗi nội bộ",
                err,
            )
        })??;
    {
        let mut runs = lock(&lesson.quiz_runs);
        runs.started += 1;
        let number = runs.started;
        runs.current = Some(SetRun::new(set, number));
    }
    ask_next(&lesson, fields.remove("to")).await
}

async fn next(
    State(lesson): State<Arc<Lesson>>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let mut fields = body_fields(body)?;
    ask_next(&lesson, fields.remove("to")).await
}

/// Stops the open question, if any, and asks the set's next one of `to`.
async fn ask_next(lesson: &Arc<Lesson>, to: Option<Value>) -> Result<Response, ApiError> {
    let runs = &lesson.quiz_runs;
    let audience = super::api::audience(lesson, to).await?;
    let question = {
        let mut runs = lock(runs);
        let Some(current) = runs.current.as_mut() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_question_set",
                "Chưa mở bộ câu hỏi nào",
                "no question set is being run: start one with POST /api/lesson/quiz/run",
            ));
        };
        current.next_question().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "question_set_finished",
                "Đã hết câu hỏi của bộ này",
                "every question of the set was asked: start a set again to run it once more",
            )
        })?
    };
    if let Some(open) = lesson.results().filter(|results| results.open) {
        lesson.issue(
            Command::QuestionStop {
                question: open.question.id,
            },
            super::Audience::Class,
        )?;
    }
    let id = question.id.clone();
    if let Err(err) = lesson.issue(Command::QuestionStart(question), audience) {
        if let Some(current) = lock(runs).current.as_mut() {
            current.put_back();
        }
        return Err(err.into());
    }
    let view: Option<RunView> = lock(runs).current.as_ref().map(SetRun::view);
    Ok(Json(json!({ "question": id, "run": view })).into_response())
}

#[derive(Deserialize)]
struct SummaryQuery {
    #[serde(default = "default_format")]
    format: String,
    /// The lesson; the one going on now without it.
    lesson: Option<String>,
}

fn default_format() -> String {
    "xlsx".to_owned()
}

async fn lesson_summary(
    State(lesson): State<Arc<Lesson>>,
    QueryParams(query): QueryParams<SummaryQuery>,
) -> Result<Response, ApiError> {
    if !matches!(query.format.as_str(), "xlsx" | "csv") {
        return Err(ApiError::bad_request(
            "unknown_format",
            "Định dạng không hỗ trợ",
            format!("format `{}`: use xlsx or csv", query.format),
        ));
    }
    let lesson_id = query.lesson.unwrap_or_else(|| lesson.lesson_id());
    let class = lesson.class_name();
    let rows = {
        let lesson_id = lesson_id.clone();
        lesson
            .store()
            .blocking(move |store| {
                store.lesson_rows(&lesson_id, Some(class.as_str()).filter(|c| !c.is_empty()))
            })
            .await?
    };
    let (bytes, content_type) = if query.format == "csv" {
        (summary::csv(&rows), "text/csv; charset=utf-8")
    } else {
        let bytes = summary::xlsx(&rows).map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "workbook_failed",
                "Không tạo được tệp Excel",
                err,
            )
        })?;
        (
            bytes,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    };
    let disposition = format!(
        "attachment; filename=\"{}.{}\"",
        summary::file_stem(&lesson_id),
        query.format
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
