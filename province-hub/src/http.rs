//! `/healthz` (every room's link as JSON) and `/metrics` (Prometheus), on
//! `http.listen`. Both only read; nothing here changes the hub's state, so no
//! route needs to know who is asking.
//!
//! # Design
//! The server is bounded like the agent's: at most `http.max_connections`
//! connections at once (one over the cap is closed before a byte is read), and
//! each connection closed `http.connection_timeout_seconds` after it was
//! accepted, whatever it is doing, so a monitoring client that hangs cannot
//! hold the hub's file descriptors.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::health::Board;

#[derive(Clone)]
struct Shared {
    board: Board,
    metrics: PrometheusHandle,
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    max_connections: usize,
    connection_timeout: Duration,
    board: Board,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .with_state(Shared { board, metrics });
    let listener = Capped {
        listener,
        permits: Arc::new(Semaphore::new(max_connections)),
        lifetime: connection_timeout,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    let rooms = shared.board.snapshot();
    let failing = rooms.iter().filter(|room| room.state == "failing").count();
    let body = serde_json::json!({
        "status": if failing == 0 { "ok" } else { "degraded" },
        "rooms_failing": failing,
        "rooms": rooms,
        "content_unsendable": shared.board.unsendable_content(),
    });
    (StatusCode::OK, axum::Json(body))
}

async fn prometheus(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// The listener with its caps.
struct Capped {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    lifetime: Duration,
}

impl axum::serve::Listener for Capped {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!("HTTP accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        Bounded {
                            stream,
                            _permit: permit,
                            deadline: Box::pin(tokio::time::sleep(self.lifetime)),
                        },
                        peer,
                    );
                }
                Err(_) => {
                    metrics::counter!("province_hub_http_connections_refused_total").increment(1);
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An accepted connection: holds its place under the cap and ends at its deadline.
struct Bounded {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
}

impl Bounded {
    fn expired(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection outlived http.connection_timeout_seconds",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.expired(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.expired(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
