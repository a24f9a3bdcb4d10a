//! The agent's HTTP server: health and metrics for IT staff and monitoring,
//! and (as later parts arrive) the panel and the tablets' channel.

mod actuators;
mod health;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::agent::Agent;

/// Every route the agent serves.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new().merge(health::routes()).merge(actuators::routes()).with_state(agent)
}

/// Serves until shutdown, then lets requests in flight finish.
pub async fn serve(listener: TcpListener, agent: Arc<Agent>) -> std::io::Result<()> {
    let shutdown = agent.shutdown.clone();
    // Peer addresses let routes that switch devices answer loopback only.
    let app = router(agent).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
