//! The agent's HTTP server: health and metrics for IT staff and monitoring, the
//! teacher's panel and its API, bells and lights by hand, the roll call's
//! corrections and export, and the tablets' page, channel and content.
//!
//! # Design
//! Each part offers its routes with the state they need: [`health`] and
//! [`actuators`] here, [`crate::panel`], [`crate::tablets`] and
//! [`crate::attendance::desk`] in their parts. [`router`] assembles them, and is
//! the one place that decides who may use which route:
//! - anyone who reaches the port: `/healthz` and `/metrics`, the panel's page and
//!   its PIN sign-in, and what tablets reach (their page and pairing, which the
//!   panel's code guards; the live channel and the content store, which take a
//!   tablet's device token);
//! - the panel itself or a teacher signed in with the room's PIN: everything
//!   else, every route that reads or changes the room
//!   ([`crate::panel::access::require_teacher`]).
//!
//! Before any route, [`guard`] refuses a request that does not name the agent
//! as its host, and a change that is not JSON from the agent's own origin.
//!
//! Every error reply has one shape, [`ApiError`] ([`error`]).

mod actuators;
pub mod error;
pub mod guard;
mod health;
pub mod limits;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::agent::Agent;
use crate::attendance::desk::{self, DeskState};
use crate::panel::access::{self, SharedGate};
use crate::tablets::Lesson;

/// Every route the agent serves, each open to those [the design](self) says.
pub fn router(agent: Arc<Agent>, lesson: Arc<Lesson>) -> Router {
    let own_names = own_names(&agent);
    let gate = SharedGate::new(agent.clock.clone(), agent.health.clone());
    let desk = DeskState {
        desk: agent.attendance.clone(),
        store: agent.store.clone(),
        config: agent.config.subscribe(),
    };
    let anyone = Router::new()
        .merge(health::router(agent.clone()))
        .merge(crate::panel::page_router(agent.clone(), gate.clone()))
        .merge(crate::tablets::tablet_router(lesson.clone()));
    let teacher = Router::new()
        .merge(crate::panel::router(agent.clone(), lesson.clone()))
        .merge(crate::tablets::router(lesson))
        .merge(actuators::router(agent))
        .merge(desk::router(desk))
        .route_layer(axum::middleware::from_fn_with_state(
            gate,
            access::require_teacher,
        ));
    anyone
        .merge(teacher)
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::not_found(
                "no_such_route",
                "Không có trang này",
                format!("nothing is served at {}", uri.path()),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            own_names,
            guard::admit,
        ))
}

/// The names [`guard`] lets in: the room's and `http.server_names`.
fn own_names(agent: &Agent) -> Arc<guard::OwnNames> {
    let config = agent.config();
    Arc::new(guard::OwnNames::new(
        &config.room.school_code,
        &config.room.room_id,
        &config.http.server_names,
    ))
}

/// Marks a request that came over TLS, so that what it is given back (a
/// sign-in cookie) is kept to TLS too.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Serves until shutdown, then lets requests in flight finish. The same routes
/// are served over TLS on `tablets_tls` when the tablets' TLS is enabled, and
/// on `browser_tls` when the room has a certificate ([`crate::tls`]); plain
/// HTTP then only redirects to it. Every listener's connections count
/// against `connections` ([`limits`]).
pub async fn serve(
    listener: TcpListener,
    connections: Arc<limits::Connections>,
    tablets_tls: Option<crate::tablets::tls::TlsListener>,
    browser_tls: Option<crate::tablets::tls::TlsListener>,
    agent: Arc<Agent>,
    lesson: Arc<crate::tablets::Lesson>,
) -> std::io::Result<()> {
    use axum::serve::{Listener, ListenerExt};
    let shutdown = agent.shutdown.clone();
    let routes = router(agent.clone(), lesson);
    let plain_routes = match &browser_tls {
        Some(tls) => crate::tls::redirect::router(tls.local_addr()?.port()).layer(
            axum::middleware::from_fn_with_state(own_names(&agent), guard::admit),
        ),
        None => routes.clone(),
    };
    // Peer addresses let routes tell the panel itself (loopback) from the LAN.
    let plain_app = plain_routes.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Small replies must not wait for the peer's delayed ACK (Nagle's algorithm).
    let listener = limits::Capped::new(listener, connections).tap_io(|connection| {
        let _ = connection.get_ref().set_nodelay(true);
    });
    let plain = axum::serve(listener, plain_app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let over_tls = routes
        .layer(axum::Extension(OverTls))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let secure = [tablets_tls, browser_tls].into_iter().flatten().map(|tls| {
        axum::serve(tls.tap_io(|_| ()), over_tls.clone())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future()
    });
    let (plain, secure) = tokio::join!(plain, futures_util::future::join_all(secure));
    secure.into_iter().fold(plain, Result::and)
}
