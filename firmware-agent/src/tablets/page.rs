//! What a tablet reaches over plain HTTP: the browser client (`/tablet/`),
//! pairing (`POST /tablet/pair`), and the pupil's choice of their own name
//! (`GET /tablet/roster`, `POST /tablet/pupil`, with the device token as
//! `Authorization: Bearer`).
//!
//! The client is three small files embedded in the binary: no build step, no
//! CDN, nothing fetched from outside the room. With
//! `tablets.browser_client = "disabled"` none of this is served.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::pairing::Attempt;
use super::{BrowserClient, ChoiceRefused, Lesson, PairingRefused};
use crate::http::error::{ApiError, JsonBody};
use crate::store::tablets::{ClaimRefused, Tablet};

const INDEX: &str = include_str!("client/index.html");
const SCRIPT: &str = include_str!("client/tablet.js");
const STYLE: &str = include_str!("client/tablet.css");
const FOLLOW_SCRIPT: &str = include_str!("client/follow.js");
/// The question's countdown.
const QUIZ_SCRIPT: &str = include_str!("client/quiz.js");

pub fn router(browser: BrowserClient) -> Router<Arc<Lesson>> {
    let pair = Router::new()
        .route("/tablet/pair", post(pair))
        .route("/tablet/roster", get(roster))
        .route("/tablet/pupil", post(choose_pupil));
    match browser {
        BrowserClient::Disabled => pair,
        BrowserClient::PlainHttp => pair
            .route(
                "/tablet",
                get(|| async { axum::response::Redirect::permanent("/tablet/") }),
            )
            .route(
                "/tablet/",
                get(|| async { asset("text/html; charset=utf-8", INDEX) }),
            )
            .route(
                "/tablet/tablet.js",
                get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
            )
            .route(
                "/tablet/tablet.css",
                get(|| async { asset("text/css; charset=utf-8", STYLE) }),
            )
            .route(
                "/tablet/follow.js",
                get(|| async { asset("text/javascript; charset=utf-8", FOLLOW_SCRIPT) }),
            )
            .route(
                "/tablet/quiz.js",
                get(|| async { asset("text/javascript; charset=utf-8", QUIZ_SCRIPT) }),
            ),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct PairRequest {
    code: String,
    #[serde(default)]
    name: String,
}

/// A tablet presents the code the panel shows; it gets its id and token once.
async fn pair(
    State(lesson): State<Arc<Lesson>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(request): JsonBody<PairRequest>,
) -> Result<Response, ApiError> {
    let (tablet, token) = lesson
        .pair(peer.ip(), request.code.trim(), &request.name)
        .await?;
    Ok(Json(json!({
        "tablet_id": tablet.tablet_id,
        "name": tablet.name,
        "token": token,
        "protocol": super::protocol::VERSION,
    }))
    .into_response())
}

/// The paired tablet whose device token the request carries as `Authorization: Bearer`.
async fn paired_tablet(lesson: &Lesson, headers: &HeaderMap) -> Result<Tablet, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let tablet = match token {
        Some(token) => lesson.authenticate(token).await,
        None => None,
    };
    tablet.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Máy này cần ghép nối lại",
            "send the device token as `Authorization: Bearer <token>`; an unknown or revoked one must pair again",
        )
    })
}

/// `GET /tablet/roster`: the pupil holding the tablet (null while none), and
/// while none, the class's names no tablet holds to choose from.
async fn roster(
    State(lesson): State<Arc<Lesson>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tablet = paired_tablet(&lesson, &headers).await?;
    let choices = match tablet.pupil_full_name {
        Some(_) => Vec::new(),
        None => lesson.roster_choices(&tablet).await?,
    };
    Ok(Json(json!({ "pupil": tablet.pupil_full_name, "choices": choices })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Choice {
    pupil: String,
}

/// `POST /tablet/pupil` with `{"pupil": "<reference>"}`: the pupil chose their name.
async fn choose_pupil(
    State(lesson): State<Arc<Lesson>>,
    headers: HeaderMap,
    JsonBody(choice): JsonBody<Choice>,
) -> Result<Response, ApiError> {
    let tablet = paired_tablet(&lesson, &headers).await?;
    let chosen = lesson
        .choose_pupil(&tablet, &choice.pupil)
        .await
        .map_err(|refused| match refused {
            ChoiceRefused::Unknown => ApiError::not_found(
                "unknown_pupil",
                "Không tìm thấy tên này, hãy chọn lại",
                "no pupil of the class has this reference (references change when the agent restarts): GET /tablet/roster again",
            ),
            ChoiceRefused::Refused(ClaimRefused::AlreadyBound) => ApiError::new(
                StatusCode::CONFLICT,
                "already_bound",
                "Máy này đã có tên học sinh; nhờ giáo viên đổi nếu sai",
                "this tablet holds a pupil already: only the teacher changes it, at the panel",
            ),
            ChoiceRefused::Refused(ClaimRefused::Taken) => ApiError::new(
                StatusCode::CONFLICT,
                "pupil_taken",
                "Bạn này đã có máy khác; nhờ giáo viên kiểm tra",
                "another tablet holds this pupil: the teacher can move the pupil at the panel",
            ),
            ChoiceRefused::Refused(ClaimRefused::NoTablet) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Máy này cần ghép nối lại",
                "the tablet was revoked meanwhile: pair again",
            ),
            ChoiceRefused::Store(err) => err.into(),
        })?;
    Ok(Json(json!({ "pupil": chosen.pupil_full_name })).into_response())
}

/// A refused pairing, its code as `tablets/PROTOCOL.md` lists it; the message is for the pupil.
impl From<PairingRefused> for ApiError {
    fn from(refused: PairingRefused) -> Self {
        match refused {
            PairingRefused::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Máy của lớp đang gặp sự cố, hãy thử lại",
                "the tablet could not be stored; try again",
            ),
            PairingRefused::Attempt(Attempt::WrongCode { tries_left }) => ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_code",
                "Mã ghép nối không đúng",
                format!("wrong code; {tries_left} tries left for the room"),
            ),
            PairingRefused::Attempt(Attempt::TooSoon { retry_after }) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_soon",
                "Vui lòng chờ một chút rồi thử lại",
                format!(
                    "too soon after a wrong code; retry in {} ms",
                    retry_after.as_millis()
                ),
            ),
            PairingRefused::Attempt(Attempt::AddressLockedOut) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "address_locked_out",
                "Máy này đã nhập sai mã quá nhiều lần, hãy nhờ giáo viên mở lại ghép nối",
                "this address gave too many wrong codes in this window: the teacher must open a new pairing window for it to try again",
            ),
            PairingRefused::Attempt(Attempt::Locked) => ApiError::new(
                StatusCode::LOCKED,
                "locked",
                "Ghép nối đã bị khóa, hãy nhờ giáo viên mở lại",
                "too many wrong codes: the teacher must open a new pairing window",
            ),
            PairingRefused::Attempt(Attempt::Closed | Attempt::Accepted) => ApiError::new(
                StatusCode::GONE,
                "closed",
                "Chưa mở ghép nối hoặc mã đã hết hạn",
                "no pairing window is open",
            ),
        }
    }
}
