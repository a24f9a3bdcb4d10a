//! The teacher's side of the roll call: corrections from the panel
//! (`POST /api/attendance/correct`) handed to the running roll call, which
//! records them as the teacher's and lets no later sighting change them.
//!
//! The desk exists from start-up; the roll call takes its inbox when it opens.
//! While no roll call is open (attendance off, models missing, before the
//! first one) a correction is refused with a clear message rather than lost.

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
    match agent.attendance.correct(body.personal_id, status, body.reason).await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(message) => (StatusCode::CONFLICT, Json(json!({ "error": message }))).into_response(),
    }
}
