//! The teacher's side of the roll call: corrections from the panel
//! (`POST /api/attendance/correct`) handed to the running roll call, which
//! records them as the teacher's and lets no later sighting change them; and
//! the day's or month's marks for the school office (`GET /api/attendance/export`).
//!
//! The desk exists from start-up; attendance takes its inbox once its models are loaded.
//! While no roll call is open (attendance off, models missing, before the
//! first one) a correction is refused with a clear message rather than lost,
//! and so it is, with 503, while the store refuses records
//! ([`crate::store::recorder`]).

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::agent::Agent;
use crate::proto::MarkStatus;
use crate::store::recorder::Who;

/// One correction on its way to the roll call, with where to send the verdict.
pub struct Correction {
    pub personal_id: String,
    pub status: MarkStatus,
    pub reason: String,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Where corrections are posted; shared by the HTTP route and the roll call.
pub struct Desk {
    sender: mpsc::Sender<Correction>,
    inbox: Mutex<Option<mpsc::Receiver<Correction>>>,
}

impl Default for Desk {
    fn default() -> Self {
        let (sender, inbox) = mpsc::channel(32);
        Desk { sender, inbox: Mutex::new(Some(inbox)) }
    }
}

impl Desk {
    /// The roll call takes the inbox once, when it opens.
    pub fn take_inbox(&self) -> Option<mpsc::Receiver<Correction>> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Hands a correction to the roll call and waits for its verdict.
    pub async fn correct(&self, personal_id: String, status: MarkStatus, reason: String) -> Result<(), String> {
        if self.inbox.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            return Err("Chưa có buổi điểm danh nào đang mở (no roll call is open)".to_owned());
        }
        let (reply, verdict) = oneshot::channel();
        let sent = self.sender.send(Correction { personal_id, status, reason, reply }).await;
        if sent.is_err() {
            return Err("Buổi điểm danh đã dừng (the roll call has stopped)".to_owned());
        }
        verdict.await.unwrap_or_else(|_| Err("Buổi điểm danh đã dừng (the roll call has stopped)".to_owned()))
    }
}

/// The teacher's routes of the roll call.
pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/api/attendance/correct", post(correct))
        .route("/api/attendance/export", axum::routing::get(export))
        .route_layer(axum::middleware::from_fn(crate::panel::access::require_teacher))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrectionBody {
    personal_id: String,
    /// PRESENT, LATE, ABSENT or EXCUSED.
    status: String,
    #[serde(default)]
    reason: String,
}

async fn correct(State(agent): State<Arc<Agent>>, Json(body): Json<CorrectionBody>) -> Response {
    let status = match MarkStatus::from_str_name(&body.status.to_uppercase()) {
        Some(status) if status != MarkStatus::Unspecified => status,
        _ => {
            let detail = format!("`{}` is not PRESENT, LATE, ABSENT or EXCUSED", body.status);
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": "Trạng thái không hợp lệ", "detail": detail }))).into_response();
        }
    };
    if body.reason.chars().count() > 200 {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "Lý do quá dài", "detail": "at most 200 characters" }))).into_response();
    }
    // A correction whose record could not be kept is refused before the roll call takes it.
    if let Err(refusal) = agent.store.recorder().admit(Who::Teacher) {
        return crate::http::not_kept(&refusal);
    }
    match agent.attendance.correct(body.personal_id, status, body.reason).await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(message) => (StatusCode::CONFLICT, Json(json!({ "error": message }))).into_response(),
    }
}

#[derive(Deserialize)]
struct ExportQuery {
    /// A day (YYYY-MM-DD) or a month (YYYY-MM).
    period: String,
    /// `xlsx` (the default) or `csv`.
    #[serde(default)]
    format: Option<String>,
}

/// The roll call of a day or a month, as a file to download for the school office.
async fn export(State(agent): State<Arc<Agent>>, axum::extract::Query(query): axum::extract::Query<ExportQuery>) -> Response {
    use axum::http::header;
    let refuse = |detail: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": "Yêu cầu không hợp lệ", "detail": detail }))).into_response();
    let period = match super::export::Period::parse(&query.period) {
        Ok(period) => period,
        Err(detail) => return refuse(detail.to_string()),
    };
    let format = query.format.as_deref().unwrap_or("xlsx").to_owned();
    if format != "xlsx" && format != "csv" {
        return refuse(format!("format `{format}` is neither xlsx nor csv"));
    }
    let zone = jiff::tz::TimeZone::get(&agent.config().room.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let store = agent.store.clone();
    let built = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let (from, to) = period.bounds(&zone).map_err(|err| err.to_string())?;
        let rows = store.marks_between(from, to).map_err(|err| err.to_string())?;
        if format == "csv" { Ok(super::export::csv(&rows, &zone)) } else { super::export::xlsx(&rows, &zone).map_err(|err| err.to_string()) }
    })
    .await;
    let ext = query.format.as_deref().unwrap_or("xlsx");
    match built {
        Ok(Ok(bytes)) => {
            let content_type = if ext == "csv" { "text/csv; charset=utf-8" } else { "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" };
            let disposition = format!("attachment; filename=\"{}.{ext}\"", period.file_stem());
            ([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response()
        }
        Ok(Err(detail)) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "Không xuất được", "detail": detail }))).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "Không xuất được", "detail": err.to_string() }))).into_response(),
    }
}
