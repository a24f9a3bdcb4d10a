//! Only the agent's own pages may drive the room: every request must name the
//! agent as its host, and a request that changes anything must come from the
//! agent's own origin, as JSON.
//!
//! The panel's kiosk browser is trusted on loopback, so a page it happens to
//! open (any web page, or one whose domain an attacker points at 127.0.0.1:
//! DNS rebinding) could otherwise ring the bell, lock every tablet or read the
//! pairing code with the kiosk's trust.
//!
//! # Design
//! - **Host.** A request is served only when its `Host` names the agent: an
//!   IP address (a rebinding page's requests carry its own domain name, never
//!   an address), `localhost`, the room's mDNS name (`SCHOOL-ROOM.local`) or a
//!   name IT staff list in `http.server_names`. Anything else is answered 421
//!   `unknown_host` before any route runs, so a rebinding page reads nothing.
//! - **Origin.** A request that changes state (any method but GET, HEAD and
//!   OPTIONS) and a WebSocket handshake are refused 403 `cross_origin` when
//!   the browser says they come from another site: an `Origin` whose host and
//!   port are not the request's `Host` (or `null`, an opaque origin), or a
//!   `Sec-Fetch-Site` other than `same-origin` or `none`. Programs that are
//!   not browsers (curl, the tablets' tests) send neither and are judged by
//!   the routes' own checks.
//! - **JSON.** A request that changes state must say `Content-Type:
//!   application/json`, even without a body. A page of another site can then
//!   only send it after a CORS preflight, which the agent never grants; the
//!   forms and `no-cors` requests a page may send freely are refused 415
//!   `json_required`.
//! - The decision is [`judge`], a pure function of the request's head and the
//!   agent's names; [`admit`] is the middleware that applies it to every route.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The names the agent answers to besides its addresses and `localhost`.
#[derive(Debug, Clone, Default)]
pub struct OwnNames {
    names: Vec<String>,
}

impl OwnNames {
    /// The room's mDNS name (`school_code-room_id.local`) and `extra`
    /// (`http.server_names`), compared without case.
    pub fn new(school_code: &str, room_id: &str, extra: &[String]) -> Self {
        let mdns = format!("{school_code}-{room_id}.local");
        let names = std::iter::once(mdns.as_str())
            .chain(extra.iter().map(String::as_str))
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        OwnNames { names }
    }

    /// Whether `host` (a `Host` header's value, port included or not) names the agent.
    fn include(&self, host: &str) -> bool {
        let name = host_without_port(host)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok() || name == "localhost" || self.names.contains(&name)
    }
}

/// `host` without its `:port`; an IPv6 address keeps its brackets.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split(':').next().unwrap_or(host)
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` is not one of the agent's names (or is missing).
    UnknownHost(String),
    /// A browser says the request comes from another site.
    CrossOrigin(String),
    /// A request that changes state without `Content-Type: application/json`.
    JsonRequired,
}

/// Whether the request whose head is `method` and `headers` may reach the routes.
pub fn judge(method: &Method, headers: &HeaderMap, names: &OwnNames) -> Result<(), Refusal> {
    let header = |name: header::HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
    let host = header(header::HOST).unwrap_or("");
    if !names.include(host) {
        return Err(Refusal::UnknownHost(host.to_owned()));
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let handshake =
        header(header::UPGRADE).is_some_and(|upgrade| upgrade.eq_ignore_ascii_case("websocket"));
    if !changes_state && !handshake {
        return Ok(());
    }
    if let Some(site) = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Refusal::CrossOrigin(format!("Sec-Fetch-Site: {site}")));
    }
    if let Some(origin) = header(header::ORIGIN) {
        let authority = origin.split_once("://").map(|(_, authority)| authority);
        if !authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host)) {
            return Err(Refusal::CrossOrigin(format!("Origin: {origin}")));
        }
    }
    let json = header(header::CONTENT_TYPE)
        .and_then(|value| value.split(';').next())
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"));
    if changes_state && !json {
        return Err(Refusal::JsonRequired);
    }
    Ok(())
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::UnknownHost(host) => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                "Hãy mở bảng điều khiển bằng địa chỉ của máy lớp học",
                format!(
                    "the request names the host `{host}`, which is not this agent: open it by its IP address, `localhost` or its mDNS name, or add the name to `http.server_names`"
                ),
            ),
            Refusal::CrossOrigin(said) => ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "Chỉ trang của máy lớp học mới điều khiển được phòng học",
                format!("the browser says this request comes from another site ({said}); only the agent's own pages may change the room"),
            ),
            Refusal::JsonRequired => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json_required",
                "Yêu cầu không hợp lệ",
                "a request that changes the room must be sent with `Content-Type: application/json`, even without a body",
            ),
        }
        .into_response()
    }
}

/// Middleware that refuses what [`judge`] refuses, before any route runs.
pub async fn admit(State(names): State<Arc<OwnNames>>, request: Request, next: Next) -> Response {
    match judge(request.method(), request.headers(), &names) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            metrics::counter!("http_requests_refused_total", "reason" => refusal.code())
                .increment(1);
            refusal.into_response()
        }
    }
}

impl Refusal {
    /// The refusal's stable code, as its reply and /metrics name it.
    fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownHost(_) => "unknown_host",
            Refusal::CrossOrigin(_) => "cross_origin",
            Refusal::JsonRequired => "json_required",
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn names() -> OwnNames {
        OwnNames::new("THCS-01", "P101", &["lop6a1.truong.edu.vn".to_owned()])
    }

    fn head(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_agent_answers_to_its_addresses_and_names_and_to_nothing_else() {
        for host in [
            "127.0.0.1:8080",
            "192.168.1.10",
            "[::1]:8080",
            "[fe80::1]",
            "localhost:8080",
            "LOCALHOST",
            "thcs-01-p101.local:8080",
            "thcs-01-p101.local.",
            "lop6a1.truong.edu.vn",
        ] {
            assert_eq!(
                judge(&Method::GET, &head(&[("host", host)]), &names()),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:8080",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "p101.local",
            "",
        ] {
            assert_eq!(
                judge(&Method::GET, &head(&[("host", host)]), &names()),
                Err(Refusal::UnknownHost(host.to_owned())),
                "{host}"
            );
        }
        assert_eq!(
            judge(&Method::GET, &HeaderMap::new(), &names()),
            Err(Refusal::UnknownHost(String::new()))
        );
    }

    #[test]
    fn a_change_must_come_as_json_from_the_agents_own_origin() {
        let host = ("host", "127.0.0.1:8080");
        let json = ("content-type", "application/json; charset=utf-8");
        let post = |pairs: &[(&'static str, &str)]| judge(&Method::POST, &head(pairs), &names());
        assert_eq!(
            post(&[host, json]),
            Ok(()),
            "curl, or a program that is not a browser"
        );
        assert_eq!(
            post(&[
                host,
                json,
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin")
            ]),
            Ok(()),
            "the panel's page"
        );
        assert_eq!(
            post(&[host]),
            Err(Refusal::JsonRequired),
            "a bodiless POST says JSON too"
        );
        assert_eq!(
            post(&[host, ("content-type", "text/plain")]),
            Err(Refusal::JsonRequired)
        );
        assert_eq!(
            post(&[host, ("content-type", "application/x-www-form-urlencoded")]),
            Err(Refusal::JsonRequired)
        );
        assert_eq!(
            post(&[host, json, ("origin", "http://evil.example")]),
            Err(Refusal::CrossOrigin(
                "Origin: http://evil.example".to_owned()
            ))
        );
        assert_eq!(
            post(&[host, json, ("origin", "http://127.0.0.1:9999")]),
            Err(Refusal::CrossOrigin(
                "Origin: http://127.0.0.1:9999".to_owned()
            ))
        );
        assert_eq!(
            post(&[host, json, ("origin", "null")]),
            Err(Refusal::CrossOrigin("Origin: null".to_owned()))
        );
        assert_eq!(
            post(&[host, json, ("sec-fetch-site", "cross-site")]),
            Err(Refusal::CrossOrigin(
                "Sec-Fetch-Site: cross-site".to_owned()
            ))
        );
        assert_eq!(
            post(&[host, json, ("sec-fetch-site", "same-site")]),
            Err(Refusal::CrossOrigin("Sec-Fetch-Site: same-site".to_owned()))
        );
        assert_eq!(
            judge(&Method::DELETE, &head(&[host]), &names()),
            Err(Refusal::JsonRequired)
        );
    }

    #[test]
    fn reads_need_only_the_host_and_a_websocket_handshake_its_own_origin() {
        let host = ("host", "127.0.0.1:8080");
        let get = |pairs: &[(&'static str, &str)]| judge(&Method::GET, &head(pairs), &names());
        assert_eq!(
            get(&[
                host,
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site")
            ]),
            Ok(()),
            "a read another site cannot see without CORS"
        );
        let upgrade = ("upgrade", "websocket");
        assert_eq!(
            get(&[host, upgrade, ("origin", "http://127.0.0.1:8080")]),
            Ok(())
        );
        assert_eq!(get(&[host, upgrade]), Ok(()));
        assert_eq!(
            get(&[host, upgrade, ("origin", "http://evil.example")]),
            Err(Refusal::CrossOrigin(
                "Origin: http://evil.example".to_owned()
            ))
        );
    }
}
