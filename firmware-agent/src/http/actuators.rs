//! `POST /api/bell/ring`, `POST /api/lights/{zone}` and `GET /api/actuators`:
//! the bells and lights by hand, for `firmware-agent bell ring`, `light on|off`
//! and (later) the panel.
//!
//! # Design
//! Commands here come from the teacher, so they rank first (see
//! [`crate::actuators::arbiter`]). Only the panel itself or a teacher signed in
//! with the room's PIN may use them (decided in [`super::router`]).
//!
//! A command whose record could not be kept is refused before it is done:
//! 503 `not_kept` ([`ApiError`]). One done whose record the store then refused
//! answers 202 with `"record": "queued"` and the reason: it was done, and its
//! record waits in the recorder's queue.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, JsonBody, OptionalJsonBody, PathParams};
use crate::actuators::controller::{Performed, Request, RequestError};
use crate::agent::Agent;
use crate::proto::actuation::{Cause, Outcome};
use crate::schedule::Action;
use crate::store::recorder::Kept;

pub fn router(agent: Arc<Agent>) -> axum::Router {
    axum::Router::new()
        .route("/api/bell/ring", post(ring))
        .route("/api/lights/{zone}", post(lights))
        .route("/api/actuators", get(status))
        .with_state(agent)
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

impl From<RequestError> for ApiError {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::NotKept(refusal) => refusal.into(),
            invalid => ApiError::bad_request("invalid_request", "Yêu cầu không hợp lệ", invalid),
        }
    }
}

/// 502 when a device failed, 202 when all went well but a record waits in the queue, else 200.
fn outcome_status(performed: &[Performed]) -> StatusCode {
    let failed = performed.iter().any(|p| {
        p.record.outcome == Outcome::Failed as i32 || p.record.outcome == Outcome::TimedOut as i32
    });
    if failed {
        StatusCode::BAD_GATEWAY
    } else if performed.iter().any(|p| p.kept != Kept::Committed) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    }
}

async fn ring(
    State(agent): State<Arc<Agent>>,
    OptionalJsonBody(body): OptionalJsonBody<RingBody>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    let Some(device) = body.device.or_else(|| agent.actuators.default_bell()) else {
        return Err(ApiError::not_found(
            "no_bell",
            "Phòng này không có chuông",
            "no bell is configured in [[actuators.device]]",
        ));
    };
    let pattern = body.pattern.unwrap_or_else(|| "start".to_owned());
    let request = Request {
        device,
        action: Action::Ring { pattern },
        cause: Cause::Teacher,
        hold_until: None,
        note: String::new(),
    };
    let performed = agent.actuators.perform_and_keep(request).await?;
    Ok((
        outcome_status(std::slice::from_ref(&performed)),
        Json(performed_json(&performed)),
    )
        .into_response())
}

async fn lights(
    State(agent): State<Arc<Agent>>,
    PathParams(zone): PathParams<String>,
    JsonBody(body): JsonBody<LightsBody>,
) -> Result<Response, ApiError> {
    let devices = agent.actuators.lights_in(&zone);
    if devices.is_empty() {
        return Err(ApiError::not_found(
            "no_such_zone",
            "Không có đèn nào trong khu này",
            format!("no light has zone `{zone}`; `all` names every light"),
        ));
    }
    let mut performed = Vec::new();
    for device in devices {
        let request = Request {
            device,
            action: Action::Switch { on: body.on },
            cause: Cause::Teacher,
            hold_until: None,
            note: String::new(),
        };
        performed.push(agent.actuators.perform_and_keep(request).await?);
    }
    let code = outcome_status(&performed);
    Ok((code, Json(json!({ "zone": zone, "actuations": performed.iter().map(performed_json).collect::<Vec<_>>() }))).into_response())
}

async fn status(State(agent): State<Arc<Agent>>) -> Response {
    Json(json!({ "devices": agent.actuators.status() })).into_response()
}

fn performed_json(performed: &Performed) -> serde_json::Value {
    let record = &performed.record;
    let outcome = Outcome::try_from(record.outcome).unwrap_or(Outcome::Unspecified);
    let (kept, reason) = match &performed.kept {
        Kept::Committed => ("committed", String::new()),
        Kept::Queued(refusal) => ("queued", refusal.to_string()),
        Kept::Refused(refusal) => ("lost", refusal.to_string()),
    };
    json!({
        "device": record.device,
        "command": record.command,
        "outcome": outcome.as_str_name().to_lowercase(),
        "detail": record.detail,
        "latency_ms": record.latency_ms,
        "record": kept,
        "record_reason": reason,
    })
}
