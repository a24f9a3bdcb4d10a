//! One shape for every error reply of the agent's HTTP API, whoever reads it:
//! the teacher's panel, a tablet, the `bell`/`light` commands, IT staff with curl.
//!
//! ```json
//! {"error": "wrong_pin", "message": "Mã PIN không đúng", "detail": "wrong teacher PIN; 4 tries left before a lockout", "tries_left": 4}
//! ```
//! - `error`: a stable machine code in snake_case that programs switch on
//!   (`wrong_pin`, `not_kept`, `store_unavailable`, …); it never changes meaning.
//! - `message`: Vietnamese, for the person at the panel or the tablet: shown as is.
//! - `detail`: English, for IT staff and the log: what went wrong, where, and how to fix it.
//! - Further fields where a reply needs them: `tries_left`, `retry_after_seconds`
//!   (with a `Retry-After` header), `store` (the recorder's cause and queue).
//!
//! A request the extractors refuse (a body that is not the JSON a route takes, a
//! bad path or query) gets the same shape, `invalid_request`, with the status and
//! the words of the library: handlers take [`JsonBody`] (or
//! [`OptionalJsonBody`]), [`PathParams`] and [`QueryParams`] instead of axum's own.
//!
//! # Design
//! Every refusal is logged with its code and English detail as it is answered.
//! A refusal the agent caused (5xx) is logged at warn, at error when it is a bug
//! (500); one the caller caused (4xx) only at debug: anyone on the room's Wi-Fi
//! can send bad requests, and one log line each would let them fill the disk.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::store::StoreError;
use crate::store::recorder::Refusal;

/// An error reply: its status, its stable code, the Vietnamese message and the English detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        detail: impl std::fmt::Display,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: detail.to_string(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// 400: the request is not one the agent can carry out as it is.
    pub fn bad_request(
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        detail: impl std::fmt::Display,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message, detail)
    }

    /// 404: what the request names does not exist.
    pub fn not_found(
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        detail: impl std::fmt::Display,
    ) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message, detail)
    }

    /// Adds a field the reply needs beyond the four every error has.
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Says when to try again: `retry_after_seconds` in the body and a `Retry-After` header (at least 1 s).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self.with("retry_after_seconds", wait.as_secs())
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The JSON body, also for a problem reported inside a successful reply.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".to_owned(), self.code.into());
        body.insert("message".to_owned(), self.message.as_ref().into());
        body.insert("detail".to_owned(), self.detail.clone().into());
        body.extend(self.extra.clone());
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = (self.status.as_u16(), self.code, self.detail.as_str());
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status, error = code, detail, "request failed");
        } else if self.status.is_server_error() {
            tracing::warn!(status, error = code, detail, "request refused");
        } else {
            tracing::debug!(status, error = code, detail, "request refused");
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = HeaderValue::from(wait.as_secs().max(1));
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

/// A database the agent cannot use: 503, try again once IT staff fixed what the
/// detail names; 500 when the work itself broke (a bug).
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let status = match err {
            StoreError::Worker { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(
            status,
            "store_unavailable",
            "Không truy cập được dữ liệu của lớp",
            err,
        )
    }
}

/// An action refused before it was done because its record could not be kept:
/// 503 with the store's cause and queue under `store`.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let store = serde_json::json!({ "cause": refusal.cause.label(), "queued": refusal.queued, "bytes": refusal.bytes, "full": refusal.full });
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_kept",
            refusal.vietnamese(),
            refusal.english(),
        )
        .with("store", store)
    }
}

/// A request body as JSON of type `T`; refused as an [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// A request body as JSON of type `T`, or `None` when the body is empty: a
/// command without arguments, sent as JSON with no body (every change must
/// say JSON, see [`super::guard`]); refused as an [`ApiError`].
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|refused| refused_request(refused.status(), refused.body_text()))?;
        if body.trim_ascii().is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        let Json(value) = Json::<T>::from_bytes(&body)?;
        Ok(OptionalJsonBody(Some(value)))
    }
}

/// The path's parameters as `T`; refused as an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParams<T>(pub T);

/// The query string as `T`; refused as an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

fn refused_request(status: StatusCode, detail: String) -> ApiError {
    ApiError::new(status, "invalid_request", "Yêu cầu không hợp lệ", detail)
}

impl From<JsonRejection> for ApiError {
    fn from(refused: JsonRejection) -> Self {
        refused_request(refused.status(), refused.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(refused: PathRejection) -> Self {
        refused_request(refused.status(), refused.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(refused: QueryRejection) -> Self {
        refused_request(refused.status(), refused.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::recorder::Cause;

    async fn reply(error: ApiError) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = error.into_response();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn every_error_has_its_code_a_vietnamese_message_and_an_english_detail_with_the_fields_it_needs()
     {
        let error = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_pin",
            "Mã PIN không đúng",
            "wrong teacher PIN",
        )
        .with("tries_left", 4);
        let (status, headers, body) = reply(error).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body,
            serde_json::json!({ "error": "wrong_pin", "message": "Mã PIN không đúng", "detail": "wrong teacher PIN", "tries_left": 4 })
        );
    }

    #[tokio::test]
    async fn a_wait_goes_in_the_body_and_in_retry_after_never_as_zero() {
        let (status, headers, body) = reply(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "locked_out",
                "Thử lại sau",
                "locked",
            )
            .retry_after(Duration::from_secs(299)),
        )
        .await;
        assert_eq!(
            (
                status,
                &headers[header::RETRY_AFTER],
                &body["retry_after_seconds"]
            ),
            (
                StatusCode::TOO_MANY_REQUESTS,
                &HeaderValue::from(299),
                &Value::from(299)
            )
        );
        let (_, headers, body) = reply(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "locked_out",
                "Thử lại sau",
                "locked",
            )
            .retry_after(Duration::from_millis(300)),
        )
        .await;
        assert_eq!(
            (&headers[header::RETRY_AFTER], &body["retry_after_seconds"]),
            (&HeaderValue::from(1), &Value::from(0))
        );
    }

    #[tokio::test]
    async fn a_refused_record_says_why_in_both_languages_with_the_store_queue() {
        let refusal = Refusal {
            cause: Cause::DiskFull,
            queued: 3,
            bytes: 120,
            full: false,
        };
        let (status, _, body) = reply(refusal.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "not_kept");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Không lưu được bản ghi: ổ đĩa đã đầy"),
            "{body}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains("disk is full"),
            "{body}"
        );
        assert_eq!(
            body["store"],
            serde_json::json!({ "cause": "disk_full", "queued": 3, "bytes": 120, "full": false })
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_the_json_a_route_takes_gets_the_same_shape_with_the_library_status()
    {
        let request = axum::http::Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(r#"{"code": "1234"}"#))
            .unwrap();
        let refused = JsonBody::<Vec<u32>>::from_request(request, &())
            .await
            .unwrap_err();
        let (status, _, body) = reply(refused).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"], "invalid_request");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("expected a sequence"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_database_in_trouble_is_unavailable_and_names_its_file() {
        let err = StoreError::ReadOnly {
            path: "/var/lib/agent/agent.sqlite3".into(),
        };
        let (status, _, body) = reply(err.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "store_unavailable");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("/var/lib/agent/agent.sqlite3: the database is read-only"),
            "{body}"
        );
    }
}
