//! The teacher's JSON API for the panel: the tablets (`/api/tablets/…`) and
//! the live lesson (`/api/lesson/…`).
//!
//! Only the panel itself or a teacher signed in with the room's PIN may use it
//! ([`crate::panel::access`]); a tablet's device token gives no access here. Errors are JSON `{"error": "…"}` in
//! Vietnamese first, then the technical detail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Lesson;
use super::protocol::Command;
use crate::roster::PersonalId;
use crate::store::tablets::TabletChange;

/// The longest a caller may ask to wait for acks or answers.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn routes() -> Router<Arc<Lesson>> {
    Router::new()
        .route("/api/tablets", get(list))
        .route("/api/tablets/pairing", post(open_pairing).get(pairing).delete(close_pairing))
        .route("/api/tablets/pairing/qr.svg", get(pairing_qr))
        .route("/api/tablets/{id}/rename", post(rename))
        .route("/api/tablets/{id}/bind", post(bind))
        .route("/api/tablets/{id}/revoke", post(revoke))
        .route("/api/lesson/question", get(question_results))
        .route("/api/lesson/hands/lower", post(lower_hands))
        .route("/api/lesson/commands/{id}", get(command_progress))
        .route("/api/lesson/question/{action}", post(question_command))
        .route("/api/lesson/{action}", post(command))
        .route_layer(middleware::from_fn(crate::panel::access::require_teacher))
}

fn failure(status: StatusCode, vietnamese: &str, detail: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": vietnamese, "detail": detail.to_string() }))).into_response()
}

fn store_failure(err: impl std::fmt::Display) -> Response {
    failure(StatusCode::INTERNAL_SERVER_ERROR, "Lỗi lưu dữ liệu", err)
}

async fn list(State(lesson): State<Arc<Lesson>>) -> Response {
    let tablets = match lesson.store().blocking(|store| store.tablets()).await {
        Ok(tablets) => tablets,
        Err(err) => return store_failure(err),
    };
    let live = lesson.live_tablets();
    let rows: Vec<Value> = tablets
        .into_iter()
        .map(|tablet| {
            let status = live.get(&tablet.tablet_id);
            json!({ "tablet": tablet, "connected": status.is_some(), "status": status })
        })
        .collect();
    Json(json!({ "tablets": rows, "connected": live.len() })).into_response()
}

async fn open_pairing(State(lesson): State<Arc<Lesson>>) -> Response {
    let window = lesson.open_pairing();
    let (link, link_problem) = match pairing_link(&lesson, &window.code) {
        Some(link) => (Some(link), None),
        None => (None, Some(json!({ "error": NO_LAN_ADDRESS.0, "detail": NO_LAN_ADDRESS.1 }))),
    };
    Json(json!({
        "window": window,
        "link": link,
        "link_problem": link_problem,
        "qr_svg": "/api/tablets/pairing/qr.svg",
        "tls": super::tls::advertised(),
    }))
    .into_response()
}

async fn pairing(State(lesson): State<Arc<Lesson>>) -> Response {
    match lesson.pairing_view() {
        Some(window) => Json(json!({ "window": window })).into_response(),
        None => failure(StatusCode::NOT_FOUND, "Chưa mở ghép nối", "no pairing window is open: POST /api/tablets/pairing"),
    }
}

async fn close_pairing(State(lesson): State<Arc<Lesson>>) -> StatusCode {
    lesson.close_pairing();
    StatusCode::NO_CONTENT
}

async fn pairing_qr(State(lesson): State<Arc<Lesson>>) -> Response {
    let Some(window) = lesson.pairing_view() else {
        return failure(StatusCode::NOT_FOUND, "Chưa mở ghép nối", "no pairing window is open");
    };
    let Some(link) = pairing_link(&lesson, &window.code) else {
        // The panel shows this image where the QR code would be.
        let svg = message_svg(&[NO_LAN_ADDRESS.0, NO_LAN_ADDRESS.1]);
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response();
    };
    match qrcode::QrCode::new(link.as_bytes()) {
        Ok(code) => {
            let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(320, 320).build();
            ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response()
        }
        Err(err) => failure(StatusCode::INTERNAL_SERVER_ERROR, "Không tạo được mã QR", err),
    }
}

/// Why there is no QR code when this machine has no address on the room's
/// network, and how to give it one: Vietnamese, then the technical detail.
const NO_LAN_ADDRESS: (&str, &str) = (
    "Máy của lớp chưa có địa chỉ trong mạng của lớp nên máy tính bảng chưa ghép nối được: hãy nối mạng cho máy, hoặc đặt http.listen là địa chỉ LAN của máy",
    "no address on the room's network is known for this machine: connect it to the room's network, or set http.listen to its LAN address, such as \"192.168.1.10:8080\"",
);

/// What the QR code holds: the page's address on the room network with the
/// code and, when TLS is on, the TLS port and the certificate's fingerprint.
/// None when the agent listens on every interface and none has an address a
/// tablet could reach.
fn pairing_link(lesson: &Lesson, code: &str) -> Option<String> {
    let listen = lesson.http_listen();
    let host = if listen.ip().is_unspecified() { super::discovery::lan_address()? } else { listen.ip() };
    let mut link = format!("http://{}/tablet/#code={code}", SocketAddr::new(host, listen.port()));
    if let Some(tls) = super::tls::advertised() {
        link.push_str(&format!("&tls={}&fp={}", tls.port, tls.fingerprint));
    }
    Some(link)
}

/// A square SVG of the same size as the QR code, showing `paragraphs` as text.
fn message_svg(paragraphs: &[&str]) -> String {
    const CHARS_PER_LINE: usize = 38;
    let mut lines = Vec::new();
    for paragraph in paragraphs {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > CHARS_PER_LINE {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
        lines.push(String::new());
    }
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, line)| format!("<text x=\"8\" y=\"{}\">{}</text>", 20 + 14 * i, escape(line)))
        .collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"320\" viewBox=\"0 0 320 320\" font-family=\"sans-serif\" font-size=\"12\"><rect width=\"320\" height=\"320\" fill=\"#fff\"/>{text}</svg>"
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bind {
    pupil_personal_id: Option<String>,
}

async fn rename(State(lesson): State<Arc<Lesson>>, Path(id): Path<String>, Json(body): Json<Rename>) -> Response {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return failure(StatusCode::BAD_REQUEST, "Tên máy không hợp lệ", "the name must have 1 to 64 characters");
    }
    change(lesson, id, TabletChange::Rename(name.to_owned())).await
}

async fn bind(State(lesson): State<Arc<Lesson>>, Path(id): Path<String>, Json(body): Json<Bind>) -> Response {
    let pupil = match body.pupil_personal_id {
        None => None,
        Some(raw) => match raw.parse::<PersonalId>() {
            Ok(pupil) => Some(pupil),
            Err(err) => return failure(StatusCode::BAD_REQUEST, "Mã định danh không hợp lệ", err),
        },
    };
    if let Some(pupil) = &pupil {
        let lookup = pupil.clone();
        match lesson.store().blocking(move |store| store.pupil(&lookup)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return failure(StatusCode::NOT_FOUND, "Không có học sinh này trong danh sách lớp", format!("pupil {pupil} is not in the roster: import the roster first"));
            }
            Err(err) => return store_failure(err),
        }
    }
    change(lesson, id, TabletChange::Bind(pupil.map(String::from))).await
}

async fn revoke(State(lesson): State<Arc<Lesson>>, Path(id): Path<String>) -> Response {
    change(lesson, id, TabletChange::Revoke).await
}

async fn change(lesson: Arc<Lesson>, id: String, change: TabletChange) -> Response {
    let revoking = change == TabletChange::Revoke;
    let tablet_id = id.clone();
    match lesson.store().blocking(move |store| store.change_tablet(&tablet_id, &change)).await {
        Ok(Some(tablet)) => {
            if revoking {
                lesson.drop_tablet(&tablet.tablet_id);
                tracing::info!(tablet = %tablet.tablet_id, "tablet revoked");
            } else {
                lesson.refresh_tablet(&tablet);
            }
            Json(json!({ "tablet": tablet })).into_response()
        }
        Ok(None) => failure(StatusCode::NOT_FOUND, "Không có máy này", format!("no paired, unrevoked tablet `{id}`")),
        Err(err) => store_failure(err),
    }
}

#[derive(Deserialize, Default)]
struct Wait {
    /// Wait up to this many milliseconds for every connected tablet to ack (or for answers).
    #[serde(default)]
    wait_ms: u64,
    /// For the question's results: wait until this many answers arrived.
    #[serde(default)]
    answers: usize,
}

async fn command(State(lesson): State<Arc<Lesson>>, Path(action): Path<String>, Query(wait): Query<Wait>, body: Option<Json<Value>>) -> Response {
    let kind = match action.as_str() {
        "lock" | "unlock" | "open" | "message" => action,
        _ => return failure(StatusCode::NOT_FOUND, "Không có lệnh này", format!("unknown lesson command `{action}`: use lock, unlock, open, message, question/start or question/stop")),
    };
    give(lesson, &kind, body, wait).await
}

async fn question_command(State(lesson): State<Arc<Lesson>>, Path(action): Path<String>, Query(wait): Query<Wait>, body: Option<Json<Value>>) -> Response {
    match action.as_str() {
        "start" => give(lesson, "question_start", body, wait).await,
        "stop" => give(lesson, "question_stop", body, wait).await,
        _ => failure(StatusCode::NOT_FOUND, "Không có lệnh này", format!("unknown question command `{action}`: use start or stop")),
    }
}

/// Parses the body as the command `kind`, gives it, and optionally waits for the acks.
async fn give(lesson: Arc<Lesson>, kind: &str, body: Option<Json<Value>>, wait: Wait) -> Response {
    let mut fields = match body.map(|Json(value)| value) {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(fields)) => fields,
        Some(_) => return failure(StatusCode::BAD_REQUEST, "Lệnh không hợp lệ", "the body must be a JSON object"),
    };
    fields.insert("kind".to_owned(), Value::String(kind.to_owned()));
    let command: Command = match serde_json::from_value(Value::Object(fields)) {
        Ok(command) => command,
        Err(err) => return failure(StatusCode::BAD_REQUEST, "Lệnh không hợp lệ", err),
    };
    let started = std::time::Instant::now();
    let envelope = match lesson.issue(command) {
        Ok(envelope) => envelope,
        Err(super::IssueError::Invalid(detail)) => return failure(StatusCode::BAD_REQUEST, "Lệnh không hợp lệ", detail),
        Err(super::IssueError::NotKept(refusal)) => return crate::http::not_kept(&refusal),
    };
    let progress = if wait.wait_ms > 0 {
        let limit = Duration::from_millis(wait.wait_ms).min(MAX_WAIT);
        lesson.wait_for_acks(envelope.id, limit).await
    } else {
        lesson.ack_progress(envelope.id)
    };
    Json(json!({
        "id": envelope.id,
        "connected": progress.expected,
        "acknowledged": progress.acknowledged,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
    }))
    .into_response()
}

async fn command_progress(State(lesson): State<Arc<Lesson>>, Path(id): Path<u64>) -> Response {
    let progress = lesson.ack_progress(id);
    Json(json!({ "id": id, "connected": progress.expected, "acknowledged": progress.acknowledged })).into_response()
}

async fn question_results(State(lesson): State<Arc<Lesson>>, Query(wait): Query<Wait>) -> Response {
    let results = if wait.wait_ms > 0 {
        lesson.wait_for_answers(wait.answers, Duration::from_millis(wait.wait_ms).min(MAX_WAIT)).await
    } else {
        lesson.results()
    };
    match results {
        Some(results) => Json(json!({ "results": results })).into_response(),
        None => failure(StatusCode::NOT_FOUND, "Chưa có câu hỏi", "no question was asked in this lesson yet"),
    }
}

async fn lower_hands(State(lesson): State<Arc<Lesson>>) -> StatusCode {
    lesson.lower_hands();
    StatusCode::NO_CONTENT
}
