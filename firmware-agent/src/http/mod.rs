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
    let own_names = {
        let config = agent.config();
        guard::OwnNames::new(
            &config.room.school_code,
            &config.room.room_id,
            &config.http.server_names,
        )
    };
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
        .merge(crate::panel::router(agent.clone()))
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
            Arc::new(own_names),
            guard::admit,
        ))
}

/// Marks a request that came over TLS, so that what it is given back (a
/// sign-in cookie) is kept to TLS too.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Serves until shutdown, then lets requests in flight finish. The same routes
/// are served over TLS on `tablets_tls` when the tablets' TLS is enabled.
pub async fn serve(
    listener: TcpListener,
    tablets_tls: Option<crate::tablets::tls::TlsListener>,
    agent: Arc<Agent>,
    lesson: Arc<crate::tablets::Lesson>,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let shutdown = agent.shutdown.clone();
    let caps = limits::Caps::from_config(&agent.config().http);
    let routes = router(agent, lesson);
    // Peer addresses let routes tell the panel itself (loopback) from the LAN.
    let app = routes
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Small replies must not wait for the peer's delayed ACK (Nagle's algorithm).
    let listener = limits::Capped::new(listener, caps).tap_io(|connection| {
        let _ = connection.tcp().set_nodelay(true);
    });
    let plain = axum::serve(listener, app.clone())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    match tablets_tls {
        None => plain.await,
        Some(tls) => {
            let over_tls = routes
                .layer(axum::Extension(OverTls))
                .into_make_service_with_connect_info::<std::net::SocketAddr>();
            let secure = axum::serve(tls.tap_io(|_| ()), over_tls)
                .with_graceful_shutdown(shutdown.cancelled_owned());
            let (plain, secure) = tokio::join!(plain.into_future(), secure.into_future());
            plain.and(secure)
        }
    }
}
