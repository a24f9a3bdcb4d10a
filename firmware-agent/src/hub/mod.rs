//! Hub sync: the gRPC `SyncService` through which the provincial hub pulls the
//! room's outbox, acknowledges what it stored, reads the room's status and
//! pushes its roster and timetable.
//!
//! # Design
//! - **Exactly once for a hub that acks.** The outbox gives every event a fixed
//!   id and a sequence number that orders commits and is never reused. A Pull
//!   sends events with `seq > after_seq` in order and nothing else, so pulling
//!   again from an older cursor sends the same events with the same ids. A hub
//!   that stores events and its cursor in one transaction, and acks only what it
//!   stored, therefore gets each event once whatever crashes when: a broken
//!   stream has sent a gap-free prefix, and nothing is pruned that was not acked.
//! - **Every event reaches the hub, or its place is said.** An event is bounded
//!   where its content comes from (`events`), the store refuses a payload over
//!   the bound, and check-config refuses a `hub.max_message_bytes` below the
//!   largest event so bounded ([`wire::largest_message`]). An event that still
//!   does not fit one message (a row another build wrote) is not sent: a
//!   `SkippedEvent` with its seq, id and reason takes its place, logged as a
//!   warning and counted (`hub_pull_events_skipped_total`), and the stream goes
//!   on. One event never stops a room's sync.
//! - **An outbox has an identity.** Every outbox has a random identity, made
//!   with its database. Batches, skip notices, heartbeats and the status carry
//!   it; a Pull from beyond the newest seq ever handed out is refused with
//!   OUT_OF_RANGE, and an Ack naming another identity with FAILED_PRECONDITION,
//!   so a hub resuming with a cursor from a database since moved aside learns
//!   so instead of silently missing events. Heartbeats say the newest seq the
//!   database holds. How a hub resumes, and what it does when the identity
//!   changes, is written in the proto.
//! - **Protocol logic without I/O.** [`cursor`] decides whether a Pull may
//!   start, what a stream does next (read, wait, heartbeat, finish), whether an
//!   event can be sent or is skipped, and whether an ack may move the cursor;
//!   [`service`] is the thin async loop around it; [`wire`] turns rows into
//!   messages; `store::hub` holds the SQL.
//! - **Follow mode** wakes on the store's commit channel for this process's own
//!   appends, and also looks at the database every [`cursor::POLL_INTERVAL`]
//!   for events another process committed (a command-line tool writing to the
//!   same file): a cheap indexed read that finds nothing when nothing is new.
//!   That interval, the heartbeat's and the hourly pruning are timed by the
//!   agent's clock (`DESIGN.md`, "Time").
//! - **Back-pressure.** Each stream reads at most [`cursor::MAX_BATCH`] rows at a
//!   time and keeps a few batches in flight; a slow hub slows the reads, and the
//!   memory a stream holds does not grow with the backlog.
//! - **Security.** Mutual TLS (rustls): the agent presents its certificate and
//!   accepts only clients whose certificate chains to `hub.client_ca`. Plaintext
//!   only when `hub.plaintext = true` says so; with neither, the room runs on
//!   and reports the hub link as failed rather than serving its records openly.
//! - **Limits.** Messages are bounded by `hub.max_message_bytes` both ways,
//!   unary calls by `hub.request_timeout_seconds` (or the client's shorter
//!   deadline), responses are gzip-compressed when the client asks for it.
//! - **Pruning** runs at start and hourly: acknowledged events older than
//!   `hub.retention_days` go; unacknowledged ones stay, however old.
//! - **No network at all.** The same records leave on a USB stick ([`usb`],
//!   the `classroom-bundle` crate): the province's acknowledgement file moves
//!   the cursor through the very function an Ack call does
//!   ([`service::acknowledge`]), and an office bundle's roster through the
//!   one PutRoster uses ([`service::apply_roster`]).
//!
//! # Rooms the hub cannot reach (NAT, 4G): the agent dials out
//! The same semantics run over a connection the agent opens. The agent connects
//! to the hub (mutual TLS, the same certificates) and the hub then drives the
//! exchange over it: the cheapest form is a reversed transport, where the agent
//! dials a TCP/TLS connection and then serves this very `SyncService` over it
//! as an HTTP/2 server (tonic's `serve_with_incoming` accepts any stream of
//! connected sockets, so the dialled socket is fed in as the only "incoming"
//! one), while the hub runs its usual client over its accepted socket. Nothing
//! in `cursor`, `service`, `wire` or the store changes: the hub still sends
//! Pull from its stored cursor, Ack after storing, PutRoster when it has one;
//! the agent only adds a dialler that reconnects with back-off while the hub is
//! unreachable and reports the link in health. If a firewall allows only
//! client-initiated gRPC, the alternative is an `Attach` RPC on the hub, whose
//! bidirectional stream carries the same `PullRequest`/`PullResponse`/`Ack`
//! messages; the stream loop here would then write into that stream instead
//! of a `ReceiverStream`, again with the same cursor state machine.

pub mod config;
pub mod content;
pub mod cursor;
pub mod service;
pub mod tls;
pub mod usb;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::agent::Agent;
use crate::proto::sync_service_server::SyncServiceServer;
use config::Transport;

/// How often acknowledged events past their retention are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address} (hub.listen): {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The server's socket, bound, and its TLS set-up, checked: everything that can
/// fail because of the config fails here, before the agent says it is ready.
pub struct HubListener {
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
}

impl HubListener {
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// Binds `hub.listen` and loads the TLS files when the config lets the server
/// run; `None` when it has neither TLS files nor `plaintext = true`.
pub async fn bind(config: &config::HubConfig) -> Result<Option<HubListener>, ServeError> {
    let tls = match config.transport() {
        Transport::Unconfigured => return Ok(None),
        Transport::Plaintext => None,
        Transport::MutualTls(files) => {
            let tls = tls::server_config(&files)?;
            // Builds the rustls configuration once, so a key that does not match
            // its certificate is reported now rather than at the first connection.
            Server::builder()
                .tls_config(tls.clone())
                .map_err(|err| tls::TlsError::unusable(&files, err))?;
            Some(tls)
        }
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen,
            source,
        })?;
    Ok(Some(HubListener { listener, tls }))
}

/// Serves `SyncService` until the agent shuts down, and prunes the outbox on the side.
pub async fn serve(hub: HubListener, agent: Arc<Agent>) -> Result<(), ServeError> {
    let config = agent.config().hub.clone();
    let mut builder = Server::builder()
        .timeout(Duration::from_secs(config.request_timeout_seconds))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = hub.tls {
        builder = builder.tls_config(tls)?;
    }
    let service = SyncServiceServer::new(service::SyncServer::new(agent.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let pruning = tokio::spawn(prune_periodically(agent.clone()));
    let shutdown = agent.shutdown.clone();
    let served = builder
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(hub.listener), shutdown.cancelled_owned())
        .await;
    pruning.abort();
    Ok(served?)
}

async fn prune_periodically(agent: Arc<Agent>) {
    loop {
        let days = i64::from(agent.config().hub.retention_days);
        let cutoff = agent.clock.now() - jiff::SignedDuration::from_hours(24 * days);
        match agent
            .store
            .blocking(move |store| store.prune_acknowledged(cutoff))
            .await
        {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!(pruned, retention_days = days, "pruned acknowledged events")
            }
            Err(err) => tracing::warn!(%err, "pruning the outbox failed; will retry"),
        }
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            () = agent.clock.sleep(PRUNE_INTERVAL) => {}
        }
    }
}

/// Spawns the server on the bound listener, reporting its state in health,
/// and the watch on the USB stick's outcomes.
pub fn start(
    agent: &Arc<Agent>,
    listener: Option<HubListener>,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::health::State;
    tasks.spawn(usb::follow_outcomes(agent.clone()));
    let Some(listener) = listener else {
        let detail = "not serving: set hub.tls_cert, hub.tls_key and hub.client_ca (or hub.plaintext = true on a trusted network)";
        tracing::error!("hub sync {detail}");
        agent.health.set("hub", State::Failed, detail.to_owned());
        return;
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let plaintext = agent.config().hub.plaintext;
    let agent = agent.clone();
    tasks.spawn(async move {
        let mode = if plaintext { "plaintext" } else { "mutual TLS" };
        tracing::info!(%address, mode, "hub sync listening");
        agent
            .health
            .set("hub", State::Ok, format!("listening on {address} ({mode})"));
        if let Err(err) = serve(listener, agent.clone()).await {
            tracing::error!("hub sync stopped: {err}");
            agent.health.set("hub", State::Failed, err.to_string());
        }
    });
}
