//! The teacher's screen: a web app the agent serves, shown full screen on the
//! room's interactive panel by a kiosk browser, and reachable from a teacher's
//! laptop on the LAN with the room's PIN.
//!
//! # Design
//! - Made for an 86-inch 4K touch panel read from the back row: large type,
//!   large touch targets, strong contrast; Vietnamese by default, English one
//!   touch away. Every asset is compiled into the binary: the room may be offline.
//! - No build step and no framework: one HTML page, one script, one stylesheet,
//!   and the on-screen keyboard beside them (`keyboard.js`, `keyboard.css`, with
//!   its Telex engine `telex.js`), which types Vietnamese into every text field.
//!   The page renders from a snapshot (`GET /api/panel/state`) and then from the
//!   live feed (`GET /api/panel/events`, Server-Sent Events): no polling. The
//!   snapshot holds the newest roll call whole (its `attendance.session` record and every pupil's
//!   mark as it stands) and a window of recent records for the other views; the
//!   feed resumes after the newest record the snapshot held (see [`feed`]), so
//!   nothing committed between the two is lost.
//! - Access: see [`access`]. The page and its assets are public (they hold no
//!   data), and so is the PIN sign-in ([`page_router`]); the snapshot and the
//!   feed ([`router`]) are for the panel itself and teachers signed in, as
//!   the HTTP server (`http/mod.rs`) decides.
//! - The class view (`assets/class.js`) shows every tablet as a tile, from
//!   the feed's `class` events; the teacher touches tiles (or a group) to
//!   choose them, then the same command buttons act on the chosen tiles only,
//!   or on the whole class when none is chosen.

pub mod access;
pub mod config;
pub mod feed;
pub mod power;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::agent::Agent;
use crate::http::error::{ApiError, JsonBody, QueryParams};
use access::{Attempt, Lockout, SharedGate};

/// The panel's page, its assets and the PIN sign-in: what anyone may reach.
pub fn page_router(agent: Arc<Agent>, gate: SharedGate) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/panel/") }))
        .route("/panel/", get(|headers: HeaderMap| async move { asset(&headers, INDEX, "text/html; charset=utf-8") }))
        .route("/panel/app.js", get(|headers: HeaderMap| async move { asset(&headers, SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/panel/app.css", get(|headers: HeaderMap| async move { asset(&headers, STYLE, "text/css; charset=utf-8") }))
        .route("/panel/telex.js", get(|headers: HeaderMap| async move { asset(&headers, TELEX, "text/javascript; charset=utf-8") }))
        .route("/panel/keyboard.js", get(|headers: HeaderMap| async move { asset(&headers, KEYBOARD, "text/javascript; charset=utf-8") }))
        .route("/panel/keyboard.css", get(|headers: HeaderMap| async move { asset(&headers, KEYBOARD_STYLE, "text/css; charset=utf-8") }))
        .route("/panel/class.js", get(|headers: HeaderMap| async move { asset(&headers, CLASS_SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/panel/class.css", get(|headers: HeaderMap| async move { asset(&headers, CLASS_STYLE, "text/css; charset=utf-8") }))
        .route("/panel/follow.js", get(|headers: HeaderMap| async move { asset(&headers, FOLLOW_SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/panel/follow.css", get(|headers: HeaderMap| async move { asset(&headers, FOLLOW_STYLE, "text/css; charset=utf-8") }))
        .route("/panel/quiz.js", get(|headers: HeaderMap| async move { asset(&headers, QUIZ_SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/panel/quiz.css", get(|headers: HeaderMap| async move { asset(&headers, QUIZ_STYLE, "text/css; charset=utf-8") }))
        .route("/panel/hand_in.js", get(|headers: HeaderMap| async move { asset(&headers, HAND_IN_SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/panel/hand_in.css", get(|headers: HeaderMap| async move { asset(&headers, HAND_IN_STYLE, "text/css; charset=utf-8") }))
        .route("/api/panel/login", post(sign_in))
        .with_state((agent, gate))
}

/// The panel's snapshot and live feed: what the page reads of the room.
pub fn router(agent: Arc<Agent>, lesson: Arc<crate::tablets::Lesson>) -> Router {
    Router::new()
        .route("/api/panel/state", get(state))
        .with_state(agent.clone())
        .merge(
            Router::new()
                .route("/api/panel/events", get(events))
                .with_state((agent, lesson)),
        )
}

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
/// The on-screen keyboard and its Telex engine: the kiosk browser brings no keyboard.
const TELEX: &str = include_str!("assets/telex.js");
const KEYBOARD: &str = include_str!("assets/keyboard.js");
const KEYBOARD_STYLE: &str = include_str!("assets/keyboard.css");

/// The class view: every tablet as a tile, and the commands to the tiles chosen.
const CLASS_SCRIPT: &str = include_str!("assets/class.js");
const CLASS_STYLE: &str = include_str!("assets/class.css");
/// Follow the teacher: the content store's material on the panel, led page by page.
const FOLLOW_SCRIPT: &str = include_str!("assets/follow.js");
const FOLLOW_STYLE: &str = include_str!("assets/follow.css");

/// Questions of every kind, question sets, live results and the lesson's summary.
const QUIZ_SCRIPT: &str = include_str!("assets/quiz.js");
const QUIZ_STYLE: &str = include_str!("assets/quiz.css");

/// The pupils' hand-ins as thumbnails, and one full screen for the class.
const HAND_IN_SCRIPT: &str = include_str!("assets/hand_in.js");
const HAND_IN_STYLE: &str = include_str!("assets/hand_in.css");

/// Serves an embedded asset with an ETag, so the kiosk revalidates cheaply.
fn asset(headers: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let etag = format!(
        "\"{}\"",
        &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()))[..16]
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header value"),
    );
    response
}

#[derive(Deserialize)]
struct Login {
    pin: String,
}

/// `POST /api/panel/login`: a teacher on the LAN signs in with the room's PIN.
async fn sign_in(
    State((agent, gate)): State<(Arc<Agent>, SharedGate)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    over_tls: Option<axum::Extension<crate::http::OverTls>>,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let expected = agent.config().panel.teacher_pin.clone();
    let attempt = gate.attempt(peer.ip(), &login.pin, &expected);
    match attempt {
        Attempt::Granted(token) => {
            // Over TLS the cookie never travels in clear afterwards.
            let secure = if over_tls.is_some() { "; Secure" } else { "" };
            let cookie = format!(
                "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                access::COOKIE,
                access::SIGN_IN_LIFETIME.as_secs()
            );
            Ok(([(header::SET_COOKIE, cookie)], Json(json!({ "ok": true }))).into_response())
        }
        Attempt::Wrong { tries_left } => {
            tracing::warn!(%peer, tries_left, "wrong teacher PIN");
            let detail = format!("wrong teacher PIN; {tries_left} tries left before a lockout");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong_pin",
                "Mã PIN không đúng",
                detail,
            )
            .with("tries_left", tries_left))
        }
        Attempt::LockedOut { wait, scope } => {
            tracing::warn!(%peer, ?scope, "teacher PIN locked out after repeated wrong tries");
            let (message, detail) = match scope {
                Lockout::Address => (
                    "Nhập sai mã PIN quá nhiều lần, hãy thử lại sau",
                    format!(
                        "too many wrong PINs from this address; try again in {} s",
                        wait.as_secs().max(1)
                    ),
                ),
                Lockout::Room => (
                    "Đăng nhập từ xa đang bị khoá vì có người nhập sai mã PIN nhiều lần; hãy dùng màn hình của lớp",
                    format!(
                        "too many wrong PINs from the room's network; signing in from the LAN is locked for everyone for {} s, the panel itself still works",
                        wait.as_secs().max(1)
                    ),
                ),
            };
            Err(
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "locked_out", message, detail)
                    .retry_after(wait),
            )
        }
        Attempt::Disabled => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "panel_only",
            "Chỉ dùng được trên màn hình của lớp",
            "no teacher PIN is set: only the panel itself has access; set panel.teacher_pin to let teachers sign in from the LAN",
        )),
    }
}

/// How many of the newest records the snapshot holds, for the views that show recent activity.
const RECENT_RECORDS: i64 = 200;

/// Everything the page shows, as it is now. The roll call comes whole (its `attendance.session` record and every
/// pupil's mark, however many records came since); other views take the newest records. The page
/// then follows the live feed from `last_seq`, the newest record the snapshot holds.
async fn state(State(agent): State<Arc<Agent>>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = agent.config();
    let (last_seq, records, rollcall) = agent
        .store
        .blocking(|store| {
            let last = store.last_seq();
            let recent = store.read(|conn| {
                crate::store::outbox::read_after(
                    conn,
                    (last - RECENT_RECORDS).max(0),
                    RECENT_RECORDS as usize,
                )
            })?;
            let rollcall = newest_roll_call(store)?;
            Ok((
                recent.last().map_or(last, |record| record.seq),
                recent,
                rollcall,
            ))
        })
        .await?;
    let recent: Vec<_> = records.iter().map(feed::record_json).collect();
    let class = config.attendance.class.clone();
    let pupils = agent
        .store
        .blocking(move |store| store.pupils_of_class(&class))
        .await;
    let rollcall_pupils: Vec<_> = match pupils {
        Ok(pupils) => pupils
            .iter()
            .map(|p| json!({ "personal_id": p.personal_id, "full_name": p.full_name }))
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(Json(json!({
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
    })))
}

/// The newest roll call whole: its `attendance.session` record and every pupil's mark as it stands, or null before the first.
fn newest_roll_call(
    store: &crate::store::Store,
) -> Result<serde_json::Value, crate::store::StoreError> {
    let Some(session) =
        store.read(|conn| crate::store::outbox::newest_of_kind(conn, "attendance.session"))?
    else {
        return Ok(serde_json::Value::Null);
    };
    let session = feed::record_json(&session);
    let session_id = session["payload"]["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
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
    let Ok(timetable) = Timetable::new(config.schedule.clone(), &config.room.timezone) else {
        return serde_json::Value::Null;
    };
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
async fn events(
    State((agent, lesson)): State<(Arc<Agent>, Arc<crate::tablets::Lesson>)>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("(not text)"));
    let resume_after =
        feed::resume_point(last_event_id, query.after.as_deref()).map_err(|bad| {
            ApiError::bad_request("invalid_resume_point", "Yêu cầu không hợp lệ", bad)
        })?;
    Ok(feed::stream(agent, lesson, resume_after).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<String>,
}
