//! Plain HTTP with TLS on: every request is sent to the same host and path
//! over HTTPS, and nothing else is served, so no token, pairing code or PIN
//! is ever given or taken in clear.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Answers every request with a permanent redirect (308, which keeps the
/// method) to `https://HOST:tls_port/PATH`.
pub fn router(tls_port: u16) -> Router {
    Router::new().fallback(redirect).with_state(tls_port)
}

async fn redirect(State(tls_port): State<u16>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    match location(host, tls_port, path) {
        Some(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location.clone())],
            format!("Trang này chỉ mở qua HTTPS / this agent is served over HTTPS: {location}\n"),
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            "Thiếu tên máy / the request names no host: open https://ADDRESS/\n",
        )
            .into_response(),
    }
}

/// `https://` and `host` (a `Host` header, its port replaced by `tls_port`) and `path`.
fn location(host: &str, tls_port: u16, path: &str) -> Option<String> {
    let name = match host.rsplit_once(':') {
        // An IPv6 address is bracketed; a colon inside the brackets is not a port.
        Some((name, port)) if !port.contains(']') => name,
        _ => host,
    };
    if name.is_empty() {
        return None;
    }
    let port = if tls_port == 443 {
        String::new()
    } else {
        format!(":{tls_port}")
    };
    Some(format!("https://{name}{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn the_redirect_keeps_host_and_path_and_takes_the_tls_port() {
        let cases = [
            (
                "10.0.0.5:8080",
                8443,
                "/tablet/?x=1",
                "https://10.0.0.5:8443/tablet/?x=1",
            ),
            ("room.local", 443, "/", "https://room.local/"),
            ("[fd00::5]:8080", 8443, "/api", "https://[fd00::5]:8443/api"),
            ("[fd00::5]", 8443, "/", "https://[fd00::5]:8443/"),
        ];
        for (host, port, path, expected) in cases {
            assert_eq!(
                location(host, port, path).as_deref(),
                Some(expected),
                "{host}"
            );
        }
        assert_eq!(location("", 8443, "/"), None);
    }
}
