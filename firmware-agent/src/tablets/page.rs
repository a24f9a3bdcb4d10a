//! What a tablet reaches over plain HTTP: the browser client (`/tablet/`) and
//! pairing (`POST /tablet/pair`).
//!
//! The client is three small files embedded in the binary: no build step, no
//! CDN, nothing fetched from outside the room. With
//! `tablets.browser_client = "disabled"` none of this is served.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::pairing::Attempt;
use super::{BrowserClient, Lesson, PairingRefused};
use crate::http::error::{ApiError, JsonBody};

const INDEX: &str = include_str!("client/index.html");
const SCRIPT: &str = include_str!("client/tablet.js");
const STYLE: &str = include_str!("client/tablet.css");

pub fn router(browser: BrowserClient) -> Router<Arc<Lesson>> {
    let pair = Router::new().route("/tablet/pair", post(pair));
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
