//! The agent's HTTP server: health and metrics for IT staff and monitoring, the
//! teacher's panel and its API, bells and lights by hand, and the tablets'
//! page, channel and content. Who may use which route is decided in
//! [`crate::panel::access`].

mod actuators;
mod health;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::agent::Agent;
use crate::store::recorder::Refusal;

/// 503 for an action refused because its record could not be kept: the reason
/// in Vietnamese first with the English detail, and the store's cause.
pub fn not_kept(refusal: &Refusal) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({
        "error": refusal.to_string(),
        "store": { "cause": refusal.cause.label(), "queued": refusal.queued, "bytes": refusal.bytes, "full": refusal.full },
    });
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// Every route the agent serves.
pub fn router(agent: Arc<Agent>, lesson: Arc<crate::lesson::Lesson>) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(crate::panel::routes())
        .merge(crate::lesson::routes(lesson))
        .merge(actuators::routes())
        .merge(crate::attendance::desk::routes())
        .layer(axum::Extension(crate::panel::access::SharedGate::default()))
        .with_state(agent)
}

/// Serves until shutdown, then lets requests in flight finish. The same routes
/// are served over TLS on `tablets_tls` when the tablets' TLS is enabled.
pub async fn serve(
    listener: TcpListener,
    tablets_tls: Option<crate::lesson::tls::TlsListener>,
    agent: Arc<Agent>,
    lesson: Arc<crate::lesson::Lesson>,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let shutdown = agent.shutdown.clone();
    // Peer addresses let routes tell the panel itself (loopback) from the LAN.
    let app = router(agent, lesson).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Small replies must not wait for the peer's delayed ACK (Nagle's algorithm).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let plain = axum::serve(listener, app.clone()).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    match tablets_tls {
        None => plain.await,
        Some(tls) => {
            let secure = axum::serve(tls.tap_io(|_| ()), app).with_graceful_shutdown(shutdown.cancelled_owned());
            let (plain, secure) = tokio::join!(plain.into_future(), secure.into_future());
            plain.and(secure)
        }
    }
}
