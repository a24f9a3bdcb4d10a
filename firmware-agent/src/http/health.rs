//! `GET /healthz` (JSON for people and probes) and `GET /metrics` (Prometheus).
//!
//! The outbox's newest seq is read from the database, not this process's
//! memory: a command run beside the daemon (`face forget`) commits events the
//! daemon is not told about.
//!
//! A store that refuses records shows as the subsystem `store`, degraded, and
//! under `database.records` with its cause and queue.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::agent::Agent;
use crate::health::State as Health;

pub fn router(agent: Arc<Agent>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(agent)
}

async fn healthz(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    let database = agent
        .store
        .blocking(|store| store.check().and_then(|()| store.newest_seq()))
        .await;
    let (database_state, database_detail, last_seq) = match database {
        Ok(last_seq) => (Health::Ok, String::new(), last_seq),
        Err(err) => (Health::Failed, err.to_string(), agent.store.last_seq()),
    };
    let overall = agent.health.overall().max(database_state);
    let config = agent.config();
    let body = json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": agent.health.uptime().as_secs_f64(),
        "room": { "school_code": config.room.school_code, "room_id": config.room.room_id, "name": config.room.name },
        "database": {
            "state": database_state,
            "detail": database_detail,
            "path": agent.store.path(),
            "last_seq": last_seq,
            "records": records_json(&agent.store.recorder().status()),
        },
        "subsystems": agent.health.snapshot(),
    });
    let code = if overall == Health::Failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body))
}

/// The recorder's queue: what waits for the store, and why.
fn records_json(status: &crate::store::recorder::Status) -> serde_json::Value {
    json!({
        "queued": status.queued,
        "queued_bytes": status.bytes,
        "cause": status.trouble.as_ref().map(|t| t.cause.label()),
        "detail": status.trouble.as_ref().map(|t| t.cause.to_string()),
        "since": status.trouble.as_ref().map(|t| t.since.to_string()),
    })
}

async fn metrics(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    metrics::gauge!("agent_uptime_seconds").set(agent.health.uptime().as_secs_f64());
    let last_seq = agent
        .store
        .blocking(|store| store.newest_seq())
        .await
        .unwrap_or_else(|_| agent.store.last_seq());
    metrics::gauge!("agent_outbox_last_seq").set(last_seq as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        agent.metrics.render(),
    )
}
