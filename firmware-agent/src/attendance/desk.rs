//! The teacher's side of the roll call: corrections from the panel
//! (`POST /api/attendance/correct`) handed to the running roll call, which
//! records them as the teacher's and lets no later sighting change them; and
//! the day's or month's marks for the school office (`GET /api/attendance/export`).
//!
//! The desk exists from start-up; the attendance service takes its inbox once
//! its models are loaded and it runs. While no roll call is open (attendance
//! off, models missing, before the first one) a correction is refused with 409
//! and a clear message rather than lost, and so it is, with 503, while the
//! store refuses records ([`crate::store::recorder`]).
//!
//! The routes take a [`DeskState`], not the whole agent: the agent holds the
//! desk, and the desk needs nothing else of it.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

pub use super::state::CorrectionRefused;
use crate::config::Config;
use crate::http::error::{ApiError, JsonBody, QueryParams};
use crate::proto::MarkStatus;
use crate::store::Store;
use crate::store::recorder::Who;

/// One correction on its way to the roll call, with where to send the verdict.
pub struct Correction {
    pub personal_id: String,
    pub status: MarkStatus,
    pub reason: String,
    pub reply: oneshot::Sender<Result<(), CorrectionRefused>>,
}

impl From<CorrectionRefused> for ApiError {
    fn from(refused: CorrectionRefused) -> Self {
        let (code, message) = match &refused {
            CorrectionRefused::NoRollCall => ("no_roll_call", "Chưa có buổi điểm danh nào đang mở"),
            CorrectionRefused::Stopped => ("roll_call_stopped", "Buổi điểm danh đã dừng"),
            CorrectionRefused::NotOnRoll(_) => {
                ("not_on_roll", "Học sinh này không có trong buổi điểm danh")
            }
        };
        ApiError::new(StatusCode::CONFLICT, code, message, refused)
    }
}

/// Where corrections are posted; shared by the HTTP route and the roll call.
pub struct Desk {
    sender: mpsc::Sender<Correction>,
    inbox: Mutex<Option<mpsc::Receiver<Correction>>>,
}

impl Default for Desk {
    fn default() -> Self {
        let (sender, inbox) = mpsc::channel(32);
        Desk {
            sender,
            inbox: Mutex::new(Some(inbox)),
        }
    }
}

impl Desk {
    /// The roll call takes the inbox once, when it opens.
    pub fn take_inbox(&self) -> Option<mpsc::Receiver<Correction>> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Hands a correction to the roll call and waits for its verdict.
    pub async fn correct(
        &self,
        personal_id: String,
        status: MarkStatus,
        reason: String,
    ) -> Result<(), CorrectionRefused> {
        if self
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Err(CorrectionRefused::NoRollCall);
        }
        let (reply, verdict) = oneshot::channel();
        let sent = self
            .sender
            .send(Correction {
                personal_id,
                status,
                reason,
                reply,
            })
            .await;
        if sent.is_err() {
            return Err(CorrectionRefused::Stopped);
        }
        verdict.await.unwrap_or(Err(CorrectionRefused::Stopped))
    }
}

/// What the desk's routes work with: the desk, the store (the recorder that
/// admits a correction, the marks the office exports) and the config in force,
/// for the room's time zone.
#[derive(Clone)]
pub struct DeskState {
    pub desk: Arc<Desk>,
    pub store: Arc<Store>,
    pub config: watch::Receiver<Arc<Config>>,
}

/// The teacher's routes of the roll call.
pub fn router(state: DeskState) -> Router {
    Router::new()
        .route("/api/attendance/correct", post(correct))
        .route("/api/attendance/export", get(export))
        .with_state(state)
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

async fn correct(
    State(state): State<DeskState>,
    JsonBody(body): JsonBody<CorrectionBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = match MarkStatus::from_str_name(&body.status.to_uppercase()) {
        Some(status) if status != MarkStatus::Unspecified => status,
        _ => {
            let detail = format!("`{}` is not PRESENT, LATE, ABSENT or EXCUSED", body.status);
            return Err(ApiError::bad_request(
                "invalid_status",
                "Trạng thái không hợp lệ",
                detail,
            ));
        }
    };
    if body.reason.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "reason_too_long",
            "Lý do quá dài",
            "the reason has at most 200 characters",
        ));
    }
    // A correction whose record could not be kept is refused before the roll call takes it.
    state.store.recorder().admit(Who::Teacher)?;
    state
        .desk
        .correct(body.personal_id, status, body.reason)
        .await?;
    Ok(Json(json!({ "ok": true })))
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
async fn export(
    State(state): State<DeskState>,
    QueryParams(query): QueryParams<ExportQuery>,
) -> Result<Response, ApiError> {
    let invalid =
        |detail: String| ApiError::bad_request("invalid_request", "Yêu cầu không hợp lệ", detail);
    let period =
        super::export::Period::parse(&query.period).map_err(|err| invalid(err.to_string()))?;
    let ext = query.format.unwrap_or_else(|| "xlsx".to_owned());
    if ext != "xlsx" && ext != "csv" {
        return Err(invalid(format!("format `{ext}` is neither xlsx nor csv")));
    }
    let zone = jiff::tz::TimeZone::get(&state.config.borrow().room.timezone)
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let (from, to) = period
        .bounds(&zone)
        .map_err(|err| invalid(format!("`{}` is out of range: {err}", query.period)))?;
    let csv = ext == "csv";
    let built = state
        .store
        .blocking(move |store| {
            let rows = store.marks_between(from, to)?;
            Ok(if csv {
                Ok(super::export::csv(&rows, &zone))
            } else {
                super::export::xlsx(&rows, &zone)
            })
        })
        .await?;
    let bytes = built.map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "export_failed",
            "Không xuất được",
            err,
        )
    })?;
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    };
    let disposition = format!("attachment; filename=\"{}.{ext}\"", period.file_stem());
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
