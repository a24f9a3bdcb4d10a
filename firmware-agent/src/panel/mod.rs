//! The teacher's screen: a web app the agent serves, shown full screen on the
//! room's interactive panel by a kiosk browser, and reachable from a teacher's
//! laptop on the LAN with the room's PIN.
//!
//! # Design
//! - Made for an 86-inch 4K touch panel read from the back row: large type,
//!   large touch targets, strong contrast; Vietnamese by default, English one
//!   touch away. Every asset is compiled into the binary: the room may be offline.
//! - No build step and no framework: one HTML page, one script, one stylesheet.
//!   The page renders from a snapshot (`GET /api/panel/state`) and then from the
//!   live feed (`GET /api/panel/events`, Server-Sent Events): no polling. The
//!   snapshot holds the newest roll call whole (its session and every pupil's
//!   mark as it stands) and a window of recent records for the other views; the
//!   feed resumes after the newest record the snapshot held (see [`feed`]), so
//!   nothing committed between the two is lost.
//! - Access: see [`access`]. Static assets are public (they hold no data); every
//!   `/api/` route that reads or changes the room takes a [`access::Teacher`].

pub mod access;
pub mod config;
pub mod feed;
pub mod power;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::agent::Agent;
use access::{Attempt, SharedGate, Teacher};

/// The panel's page, assets and API.
pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/panel/") }))
        .route("/panel/", get(|headers: HeaderMap| async move { asset(&headers, INDEX, "text/html; charset=utf-8") }))
        .route("/panel/app.js", get(|headers: HeaderMap| async move { asset(&headers, SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/panel/app.css", get(|headers: HeaderMap| async move { asset(&headers, STYLE, "text/css; charset=utf-8") }))
        .route("/api/panel/login", post(login))
        .route("/api/panel/state", get(state))
        .route("/api/panel/events", get(events))
}

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Serves an embedded asset with an ETag, so the kiosk revalidates cheaply.
fn asset(headers: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let etag = format!("\"{}\"", &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()))[..16]);
    if headers.get(header::IF_NONE_MATCH).is_some_and(|tag| tag.as_bytes() == etag.as_bytes()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header value"));
    response
}

#[derive(Deserialize)]
struct Login {
    pin: String,
}

async fn login(
    State(agent): State<Arc<Agent>>,
    Extension(gate): Extension<SharedGate>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(login): Json<Login>,
) -> Response {
    let expected = agent.config().panel.teacher_pin.clone();
    let attempt = gate.lock().unwrap_or_else(|e| e.into_inner()).attempt(peer.ip(), &login.pin, &expected, Instant::now());
    match attempt {
        Attempt::Granted(token) => {
            let cookie = format!("{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", access::COOKIE, access::SESSION_LIFETIME.as_secs());
            ([(header::SET_COOKIE, cookie)], Json(json!({ "ok": true }))).into_response()
        }
        Attempt::Wrong { tries_left } => {
            tracing::warn!(%peer, tries_left, "wrong teacher PIN");
            (StatusCode::UNAUTHORIZED, Json(json!({ "error": "wrong_pin", "tries_left": tries_left }))).into_response()
        }
        Attempt::LockedOut(wait) => {
            tracing::warn!(%peer, "teacher PIN locked out after repeated wrong tries");
            let retry = wait.as_secs().max(1).to_string();
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry)], Json(json!({ "error": "locked_out", "retry_after_seconds": wait.as_secs() })))
                .into_response()
        }
        Attempt::Disabled => (StatusCode::FORBIDDEN, Json(json!({ "error": "panel_only" }))).into_response(),
    }
}

/// How many of the newest records the snapshot holds, for the views that show recent activity.
const RECENT_RECORDS: i64 = 200;

/// Everything the page shows, as it is now. The roll call comes whole (its session and every
/// pupil's mark, however many records came since); other views take the newest records. The page
/// then follows the live feed from `last_seq`, the newest record the snapshot holds.
async fn state(_teacher: Teacher, State(agent): State<Arc<Agent>>) -> Response {
    let config = agent.config();
    let read = agent
        .store
        .blocking(|store| {
            let last = store.last_seq();
            let recent = store.read(|conn| crate::store::outbox::read_after(conn, (last - RECENT_RECORDS).max(0), RECENT_RECORDS as usize))?;
            let rollcall = newest_roll_call(store)?;
            Ok((recent.last().map_or(last, |record| record.seq), recent, rollcall))
        })
        .await;
    let (last_seq, recent, rollcall) = match read {
        Ok((last_seq, records, rollcall)) => (last_seq, records.iter().map(feed::record_json).collect::<Vec<_>>(), rollcall),
        Err(err) => return snapshot_unavailable(err.to_string()),
    };
    let class = config.attendance.class.clone();
    let pupils = agent.store.blocking(move |store| store.pupils_of_class(&class)).await;
    let rollcall_pupils: Vec<_> = match pupils {
        Ok(pupils) => pupils.iter().map(|p| json!({ "personal_id": p.personal_id, "full_name": p.full_name })).collect(),
        Err(_) => Vec::new(),
    };
    Json(json!({
        "room": { "name": config.room.name, "school_code": config.room.school_code, "room_id": config.room.room_id, "timezone": config.room.timezone },
        "agent_time": agent.clock.now().to_string(),
        "clock_synced": agent.clock.is_synchronized(),
        "version": env!("CARGO_PKG_VERSION"),
        "health": agent.health.snapshot(),
        "last_seq": last_seq,
        "recent": recent,
        "rollcall": rollcall,
        "today": today(&config, agent.clock.now()),
        "rollcall_class": config.attendance.class,
        "rollcall_pupils": rollcall_pupils,
        "devices": agent.actuators.status(),
    }))
    .into_response()
}

fn snapshot_unavailable(cause: String) -> Response {
    tracing::error!(%cause, "cannot read the panel's snapshot");
    let error = format!("Không đọc được dữ liệu của lớp (cannot read the room's database: {cause})");
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": error }))).into_response()
}

/// The newest roll call whole: its session record and every pupil's mark as it stands, or null before the first.
fn newest_roll_call(store: &crate::store::Store) -> Result<serde_json::Value, crate::store::StoreError> {
    let Some(session) = store.read(|conn| crate::store::outbox::newest_of_kind(conn, "attendance.session"))? else {
        return Ok(serde_json::Value::Null);
    };
    let session = feed::record_json(&session);
    let session_id = session["payload"]["session_id"].as_str().unwrap_or_default().to_owned();
    let marks: Vec<_> = store
        .attendance_marks(&session_id)?
        .into_iter()
        .map(|(personal_id, status, source)| {
            json!({ "session_id": session_id, "personal_id": personal_id, "status": status.to_uppercase(), "source": source.to_uppercase() })
        })
        .collect();
    Ok(json!({ "session": session, "marks": marks }))
}

/// Today's periods and timetable actions, for the "now" view.
fn today(config: &crate::config::Config, now: jiff::Timestamp) -> serde_json::Value {
    use crate::schedule::timetable::Timetable;
    let Ok(timetable) = Timetable::new(config.schedule.clone(), &config.room.timezone) else { return serde_json::Value::Null };
    let plan = timetable.plan(timetable.date_of(now));
    json!({
        "date": plan.date.to_string(),
        "periods": plan.periods.iter().map(|p| json!({
            "shift": p.shift, "number": p.number,
            "start": crate::schedule::config::hh_mm(p.start), "end": crate::schedule::config::hh_mm(p.end),
        })).collect::<Vec<_>>(),
        "actions": plan.actions.iter().map(|a| json!({
            "at": a.at.to_string(), "device": a.device, "command": a.action.command(), "label": a.label,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/panel/events[?after=SEQ]`: the live feed, resumed after `Last-Event-ID` or `after` (see [`feed`]).
async fn events(_teacher: Teacher, State(agent): State<Arc<Agent>>, headers: HeaderMap, Query(query): Query<EventsQuery>) -> Response {
    let last_event_id = headers.get("last-event-id").map(|value| value.to_str().unwrap_or("(not text)"));
    match feed::resume_point(last_event_id, query.after.as_deref()) {
        Ok(resume_after) => feed::stream(agent, resume_after).into_response(),
        Err(reason) => (StatusCode::BAD_REQUEST, Json(json!({ "error": format!("Yêu cầu không hợp lệ ({reason})") }))).into_response(),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<String>,
}
