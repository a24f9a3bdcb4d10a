//! The teacher's JSON API for the panel: the tablets (`/api/tablets/…`) and
//! the live lesson (`/api/lesson/…`): commands to the class, to a few tablets
//! or to a group (`"to": {"tablets": [...]}` or `"to": {"group": "..."}` in
//! the body), the teacher's groups (`/api/lesson/groups`), and the class at a
//! glance (`/api/lesson/class`).
//!
//! Only the panel itself or a teacher signed in with the room's PIN may use it
//! (decided in `http/mod.rs`); a tablet's device token gives no access
//! here. Errors have the one shape of [`ApiError`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::protocol::Command;
use super::{Audience, IssueError, Lesson};
use crate::http::error::{ApiError, JsonBody, OptionalJsonBody, PathParams, QueryParams};
use crate::roster::PersonalId;
use crate::store::tablets::TabletChange;

/// The longest a caller may ask to wait for acks or answers.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn router() -> Router<Arc<Lesson>> {
    Router::new()
        .route("/api/tablets", get(list))
        .route(
            "/api/tablets/pairing",
            post(open_pairing).get(pairing).delete(close_pairing),
        )
        .route("/api/tablets/pairing/qr.svg", get(pairing_qr))
        .route("/api/tablets/{id}/rename", post(rename))
        .route("/api/tablets/{id}/bind", post(bind))
        .route("/api/tablets/{id}/revoke", post(revoke))
        .route("/api/lesson/class", get(class_view))
        .route("/api/lesson/groups", get(groups))
        .route(
            "/api/lesson/groups/{name}",
            axum::routing::put(save_group).delete(delete_group),
        )
        .route("/api/lesson/question", get(question_results))
        .route("/api/lesson/hands/lower", post(lower_hands))
        .route("/api/lesson/commands/{id}", get(command_progress))
        .route("/api/lesson/question/{action}", post(question_command))
        .route("/api/lesson/{action}", post(command))
        .merge(super::quiz_api::router())
}

/// A command the lesson did not give: it does not fit (400), or its record could not be kept (503).
impl From<IssueError> for ApiError {
    fn from(err: IssueError) -> Self {
        match err {
            IssueError::Invalid(refused) => invalid_command(refused),
            IssueError::NotKept(refusal) => refusal.into(),
        }
    }
}

/// 400 for a command the lesson cannot take as it was written.
fn invalid_command(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_command", "Lệnh không hợp lệ", detail)
}

fn no_pairing_window() -> ApiError {
    ApiError::not_found(
        "no_pairing_window",
        "Chưa mở ghép nối",
        "no pairing window is open: POST /api/tablets/pairing",
    )
}

async fn list(State(lesson): State<Arc<Lesson>>) -> Result<Response, ApiError> {
    let tablets = lesson.store().blocking(|store| store.tablets()).await?;
    let live = lesson.live_tablets();
    let rows: Vec<Value> = tablets
        .into_iter()
        .map(|tablet| {
            let status = live.get(&tablet.tablet_id);
            json!({ "tablet": tablet, "connected": status.is_some(), "status": status })
        })
        .collect();
    Ok(Json(json!({ "tablets": rows, "connected": live.len() })).into_response())
}

async fn open_pairing(State(lesson): State<Arc<Lesson>>) -> Response {
    let window = lesson.open_pairing();
    let (link, link_problem) = match pairing_link(&lesson, &window.code) {
        Some(link) => (Some(link), None),
        None => (None, Some(no_lan_address().body())),
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

async fn pairing(State(lesson): State<Arc<Lesson>>) -> Result<Response, ApiError> {
    let window = lesson.pairing_view().ok_or_else(no_pairing_window)?;
    Ok(Json(json!({ "window": window })).into_response())
}

async fn close_pairing(State(lesson): State<Arc<Lesson>>) -> StatusCode {
    lesson.close_pairing();
    StatusCode::NO_CONTENT
}

async fn pairing_qr(State(lesson): State<Arc<Lesson>>) -> Result<Response, ApiError> {
    let window = lesson.pairing_view().ok_or_else(no_pairing_window)?;
    let Some(link) = pairing_link(&lesson, &window.code) else {
        // The panel shows this image where the QR code would be.
        let svg = message_svg(&[NO_LAN_ADDRESS.0, NO_LAN_ADDRESS.1]);
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            svg,
        )
            .into_response());
    };
    let code = qrcode::QrCode::new(link.as_bytes()).map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "qr_failed",
            "Không tạo được mã QR",
            err,
        )
    })?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(320, 320)
        .build();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

/// Why there is no QR code when this machine has no address on the room's
/// network, and how to give it one: Vietnamese, then the technical detail.
const NO_LAN_ADDRESS: (&str, &str) = (
    "Máy của lớp chưa có địa chỉ trong mạng của lớp nên máy tính bảng chưa ghép nối được: hãy nối mạng cho máy, hoặc đặt http.listen là địa chỉ LAN của máy",
    "no address on the room's network is known for this machine: connect it to the room's network, or set http.listen to its LAN address, such as \"192.168.1.10:8080\"",
);

/// [`NO_LAN_ADDRESS`] as the problem the pairing reply carries beside the window.
fn no_lan_address() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_lan_address",
        NO_LAN_ADDRESS.0,
        NO_LAN_ADDRESS.1,
    )
}

/// What the QR code holds: the page's address on the room network (over
/// HTTPS when the room has a certificate) with the code and, when TLS is on, the TLS port and the certificate's fingerprint.
/// None when the agent listens on every interface and none has an address a
/// tablet could reach.
fn pairing_link(lesson: &Lesson, code: &str) -> Option<String> {
    let listen = lesson.http_listen();
    let host = if listen.ip().is_unspecified() {
        super::discovery::lan_address()?
    } else {
        listen.ip()
    };
    let scheme = if lesson.https() { "https" } else { "http" };
    let mut link = format!(
        "{scheme}://{}/tablet/#code={code}",
        SocketAddr::new(host, listen.port())
    );
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
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > CHARS_PER_LINE
            {
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
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            format!(
                "<text x=\"8\" y=\"{}\">{}</text>",
                20 + 14 * i,
                escape(line)
            )
        })
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

async fn rename(
    State(lesson): State<Arc<Lesson>>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<Rename>,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "Tên máy không hợp lệ",
            "the name must have 1 to 64 characters",
        ));
    }
    change(lesson, id, TabletChange::Rename(name.to_owned())).await
}

async fn bind(
    State(lesson): State<Arc<Lesson>>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<Bind>,
) -> Result<Response, ApiError> {
    let pupil = match body.pupil_personal_id {
        None => None,
        Some(raw) => Some(raw.parse::<PersonalId>().map_err(|err| {
            ApiError::bad_request("invalid_personal_id", "Mã định danh không hợp lệ", err)
        })?),
    };
    if let Some(pupil) = &pupil {
        let lookup = pupil.clone();
        if lesson
            .store()
            .blocking(move |store| store.pupil(&lookup))
            .await?
            .is_none()
        {
            let detail = format!("pupil {pupil} is not in the roster: import the roster first");
            return Err(ApiError::not_found(
                "unknown_pupil",
                "Không có học sinh này trong danh sách lớp",
                detail,
            ));
        }
    }
    change(lesson, id, TabletChange::Bind(pupil.map(String::from))).await
}

async fn revoke(
    State(lesson): State<Arc<Lesson>>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    change(lesson, id, TabletChange::Revoke).await
}

async fn change(
    lesson: Arc<Lesson>,
    id: String,
    change: TabletChange,
) -> Result<Response, ApiError> {
    let revoking = change == TabletChange::Revoke;
    let tablet_id = id.clone();
    let lesson_id = lesson.lesson_id();
    let Some(tablet) = lesson
        .store()
        .blocking(move |store| store.change_tablet(&tablet_id, &change, &lesson_id))
        .await?
    else {
        return Err(ApiError::not_found(
            "unknown_tablet",
            "Không có máy này",
            format!("no paired, unrevoked tablet `{id}`"),
        ));
    };
    if revoking {
        lesson.drop_tablet(&tablet.tablet_id);
        tracing::info!(tablet = %tablet.tablet_id, "tablet revoked");
    } else {
        lesson.refresh_tablet(&tablet);
    }
    Ok(Json(json!({ "tablet": tablet })).into_response())
}

#[derive(Deserialize, Default)]
pub(super) struct Wait {
    /// Wait up to this many milliseconds for every connected tablet to ack (or for answers).
    #[serde(default)]
    wait_ms: u64,
    /// For the question's results: wait until this many answers arrived.
    #[serde(default)]
    answers: usize,
}

fn unknown_command(detail: String) -> ApiError {
    ApiError::not_found("unknown_command", "Không có lệnh này", detail)
}

async fn command(
    State(lesson): State<Arc<Lesson>>,
    PathParams(action): PathParams<String>,
    QueryParams(wait): QueryParams<Wait>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    match action.as_str() {
        "lock" | "unlock" | "open" | "message" => give(lesson, &action, body, wait).await,
        _ => Err(unknown_command(format!(
            "unknown lesson command `{action}`: use lock, unlock, open, message, question/start or question/stop"
        ))),
    }
}

async fn question_command(
    State(lesson): State<Arc<Lesson>>,
    PathParams(action): PathParams<String>,
    QueryParams(wait): QueryParams<Wait>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    match action.as_str() {
        "start" => give(lesson, "question_start", body, wait).await,
        "stop" => give(lesson, "question_stop", body, wait).await,
        _ => Err(unknown_command(format!(
            "unknown question command `{action}`: use start or stop"
        ))),
    }
}

/// Who a command is for, as the body's `to` says; the whole class without one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum To {
    Tablets(Vec<String>),
    Group(String),
}

/// The tablets `to` names, each checked to be paired and unrevoked.
pub(super) async fn audience(lesson: &Lesson, to: Option<Value>) -> Result<Audience, ApiError> {
    let Some(to) = to else {
        return Ok(Audience::Class);
    };
    let to: To = serde_json::from_value(to).map_err(|err| {
        invalid_command(format!(
            "`to` must be {{\"tablets\": [tablet ids]}} or {{\"group\": \"name\"}}: {err}"
        ))
    })?;
    match to {
        To::Tablets(ids) => {
            let tablets = lesson.store().blocking(|store| store.tablets()).await?;
            let unknown: Vec<&String> = ids
                .iter()
                .filter(|id| !tablets.iter().any(|t| !t.revoked && &&t.tablet_id == id))
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::not_found(
                    "unknown_tablet",
                    "Không có máy này",
                    format!(
                        "no paired, unrevoked tablet {unknown:?}: choose among GET /api/tablets"
                    ),
                ));
            }
            Ok(Audience::Tablets {
                ids: ids.into_iter().collect(),
                group: None,
            })
        }
        To::Group(name) => {
            let groups = lesson.store().blocking(|store| store.groups()).await?;
            let group = groups
                .into_iter()
                .find(|group| group.name == name)
                .ok_or_else(|| unknown_group(&name))?;
            Ok(Audience::Tablets {
                ids: group.tablet_ids.into_iter().collect(),
                group: Some(group.name),
            })
        }
    }
}

fn unknown_group(name: &str) -> ApiError {
    ApiError::not_found(
        "unknown_group",
        "Không có nhóm này",
        format!("no group `{name}`: save it first with PUT /api/lesson/groups/{{name}}"),
    )
}

/// Parses the body as the command `kind` (with `to` saying for whom), gives
/// it, and optionally waits for the acks.
pub(super) async fn give(
    lesson: Arc<Lesson>,
    kind: &str,
    body: Option<Value>,
    wait: Wait,
) -> Result<Response, ApiError> {
    let invalid = invalid_command;
    let mut fields = match body {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(invalid("the body must be a JSON object".to_owned())),
    };
    let audience = audience(&lesson, fields.remove("to")).await?;
    fields.insert("kind".to_owned(), Value::String(kind.to_owned()));
    let command: Command =
        serde_json::from_value(Value::Object(fields)).map_err(|err| invalid(err.to_string()))?;
    let started = std::time::Instant::now();
    let envelope = lesson.issue(command, audience)?;
    let progress = if wait.wait_ms > 0 {
        let limit = Duration::from_millis(wait.wait_ms).min(MAX_WAIT);
        lesson.wait_for_acks(envelope.id, limit).await
    } else {
        lesson.ack_progress(envelope.id)
    };
    Ok(Json(json!({
        "id": envelope.id,
        "connected": progress.expected,
        "acknowledged": progress.acknowledged,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
    }))
    .into_response())
}

async fn command_progress(
    State(lesson): State<Arc<Lesson>>,
    PathParams(id): PathParams<u64>,
) -> Response {
    let progress = lesson.ack_progress(id);
    Json(json!({ "id": id, "connected": progress.expected, "acknowledged": progress.acknowledged }))
        .into_response()
}

async fn question_results(
    State(lesson): State<Arc<Lesson>>,
    QueryParams(wait): QueryParams<Wait>,
) -> Result<Response, ApiError> {
    let results = if wait.wait_ms > 0 {
        lesson
            .wait_for_answers(
                wait.answers,
                Duration::from_millis(wait.wait_ms).min(MAX_WAIT),
            )
            .await
    } else {
        lesson.results()
    };
    let results = results.ok_or_else(|| {
        ApiError::not_found(
            "no_question",
            "Chưa có câu hỏi",
            "no question was asked in this lesson yet",
        )
    })?;
    Ok(Json(json!({ "results": results })).into_response())
}

async fn class_view(State(lesson): State<Arc<Lesson>>) -> Result<Response, ApiError> {
    Ok(Json(lesson.class_view().await?).into_response())
}

async fn groups(State(lesson): State<Arc<Lesson>>) -> Result<Response, ApiError> {
    let groups = lesson.store().blocking(|store| store.groups()).await?;
    Ok(Json(json!({ "groups": groups })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    tablets: Vec<String>,
}

/// Creates or replaces a group of tablets, kept for the lessons to come.
async fn save_group(
    State(lesson): State<Arc<Lesson>>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<GroupBody>,
) -> Result<Response, ApiError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_group_name",
            "Tên nhóm không hợp lệ",
            "a group's name has 1 to 64 characters, none of them control characters",
        ));
    }
    if body.tablets.is_empty() || body.tablets.len() > super::session::MAX_AUDIENCE {
        return Err(ApiError::bad_request(
            "invalid_group",
            "Hãy chọn máy cho nhóm",
            format!(
                "a group has 1 to {} tablets, not {}",
                super::session::MAX_AUDIENCE,
                body.tablets.len()
            ),
        ));
    }
    let saved = lesson
        .store()
        .blocking(move |store| store.save_group(&name, &body.tablets))
        .await?
        .map_err(|unknown| {
            ApiError::not_found(
                "unknown_tablet",
                "Không có máy này",
                format!("no paired, unrevoked tablet {unknown:?}: the group was not saved"),
            )
        })?;
    tracing::info!(group = %saved.name, tablets = saved.tablet_ids.len(), "group saved");
    Ok(Json(json!({ "group": saved })).into_response())
}

async fn delete_group(
    State(lesson): State<Arc<Lesson>>,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let lookup = name.clone();
    if lesson
        .store()
        .blocking(move |store| store.delete_group(&lookup))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_group(&name))
    }
}

async fn lower_hands(State(lesson): State<Arc<Lesson>>) -> StatusCode {
    lesson.lower_hands();
    StatusCode::NO_CONTENT
}
