//! `POST /api/bell/ring`, `POST /api/lights/{zone}` and `GET /api/actuators`:
//! the bells and lights by hand, for `firmware-agent bell ring`, `light on|off`
//! and (later) the panel.
//!
//! # Design
//! Commands here come from the teacher, so they rank first (see
//! [`crate::actuators::arbiter`]). Only the panel itself or a teacher signed in
//! with the room's PIN may use them ([`crate::panel::access`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::actuators::controller::{Request, RequestError};
use crate::agent::Agent;
use crate::proto::actuation::{Cause, Outcome};
use crate::schedule::Action;

pub fn routes() -> axum::Router<Arc<Agent>> {
    axum::Router::new()
        .route("/api/bell/ring", post(ring))
        .route("/api/lights/{zone}", post(lights))
        .route("/api/actuators", get(status))
        .route_layer(axum::middleware::from_fn(crate::panel::access::require_teacher))
}

/// The body of `POST /api/bell/ring`; both keys are optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingBody {
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
}

/// The body of `POST /api/lights/{zone}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightsBody {
    pub on: bool,
}

fn refuse(code: StatusCode, vietnamese: &str, english: String) -> Response {
    (code, Json(json!({ "error": format!("{vietnamese} ({english})") }))).into_response()
}

fn request_error(err: RequestError) -> Response {
    refuse(StatusCode::BAD_REQUEST, "Yêu cầu không hợp lệ", err.to_string())
}

fn outcome_status(outcomes: impl IntoIterator<Item = i32>) -> StatusCode {
    let failed = outcomes.into_iter().any(|o| o == Outcome::Failed as i32 || o == Outcome::TimedOut as i32);
    if failed { StatusCode::BAD_GATEWAY } else { StatusCode::OK }
}

async fn ring(State(agent): State<Arc<Agent>>, body: Option<Json<RingBody>>) -> Response {
    let body = body.map(|Json(body)| body).unwrap_or_default();
    let Some(device) = body.device.or_else(|| agent.actuators.default_bell()) else {
        return refuse(StatusCode::NOT_FOUND, "Phòng này không có chuông", "no bell is configured in [[actuators.device]]".to_owned());
    };
    let pattern = body.pattern.unwrap_or_else(|| "start".to_owned());
    let request = Request { device, action: Action::Ring { pattern }, cause: Cause::Teacher, hold_until: None, note: String::new() };
    match agent.actuators.perform(request).await {
        Ok(record) => (outcome_status([record.outcome]), Json(record_json(&record))).into_response(),
        Err(err) => request_error(err),
    }
}

async fn lights(State(agent): State<Arc<Agent>>, Path(zone): Path<String>, Json(body): Json<LightsBody>) -> Response {
    let devices = agent.actuators.lights_in(&zone);
    if devices.is_empty() {
        return refuse(StatusCode::NOT_FOUND, "Không có đèn nào trong khu này", format!("no light has zone `{zone}`; `all` names every light"));
    }
    let mut records = Vec::new();
    for device in devices {
        let request = Request { device, action: Action::Switch { on: body.on }, cause: Cause::Teacher, hold_until: None, note: String::new() };
        match agent.actuators.perform(request).await {
            Ok(record) => records.push(record),
            Err(err) => return request_error(err),
        }
    }
    let code = outcome_status(records.iter().map(|r| r.outcome));
    (code, Json(json!({ "zone": zone, "actuations": records.iter().map(record_json).collect::<Vec<_>>() }))).into_response()
}

async fn status(State(agent): State<Arc<Agent>>) -> Response {
    Json(json!({ "devices": agent.actuators.status() })).into_response()
}

fn record_json(record: &crate::proto::Actuation) -> serde_json::Value {
    let outcome = Outcome::try_from(record.outcome).unwrap_or(Outcome::Unspecified);
    json!({
        "device": record.device,
        "command": record.command,
        "outcome": outcome.as_str_name().to_lowercase(),
        "detail": record.detail,
        "latency_ms": record.latency_ms,
    })
}
