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
//! With `hub.connect`, the agent opens the link itself ([`dial_out`]): it
//! connects to the hub over TCP and TLS as the client, presenting the room's
//! certificate and checking the hub's against `hub.connect_ca`, and then
//! serves this very `SyncService` as the HTTP/2 server over that one
//! connection (tonic's `serve_with_incoming_shutdown`, fed the dialled socket
//! as its only "incoming" one), while the hub runs its ordinary client over
//! the socket it accepted. Nothing in `cursor`, `service`, `wire` or the store
//! changes: the hub still sends Pull from its stored cursor, Ack after
//! storing, PutRoster and PutContent when it has something newer; the
//! exactly-once contract is the Pull contract. The agent only adds the
//! dialler, whose decisions ([`redial`]: redial with capped exponential
//! back-off and full jitter, reset after a link that lasted) are a state
//! machine without I/O on the agent's clock, and the `hub_link` subsystem in
//! health. The listener stays as it was: a room may dial out and be pulled,
//! and without `hub.client_ca` a dialling room does not listen at all.
//!
//! Why not a new `Attach` RPC on the hub, whose bidirectional stream would
//! carry `PullRequest`/`PullResponse`/`Ack` messages: it would need new
//! messages to multiplex five calls (and PutContent's stream) over one
//! stream, a second implementation of flow control that HTTP/2 already does
//! per call, and a second code path in every hub. The reversed transport needs
//! none of that, only that the path allows a TLS connection from the room to
//! the hub's port, which a NAT or a 4G carrier does. A firewall that admits
//! only an HTTP/1 proxy, or breaks TLS open, would need the RPC form, added
//! then beside this one.

pub mod certificate;
pub mod config;
pub mod content;
pub mod cursor;
pub mod dial_out;
pub mod redial;
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

/// The gRPC server's settings, the same for the listener and the dialled link.
fn server_builder(config: &config::HubConfig) -> Server {
    Server::builder()
        .timeout(Duration::from_secs(config.request_timeout_seconds))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
}

/// `SyncService` with its limits, the same for the listener and the dialled link.
fn sync_service(
    agent: Arc<Agent>,
    config: &config::HubConfig,
) -> SyncServiceServer<service::SyncServer> {
    SyncServiceServer::new(service::SyncServer::new(agent))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
}

/// Serves `SyncService` on the listener until the agent shuts down.
pub async fn serve(hub: HubListener, agent: Arc<Agent>) -> Result<(), ServeError> {
    let config = agent.config().hub.clone();
    let mut builder = server_builder(&config);
    if let Some(tls) = hub.tls {
        builder = builder.tls_config(tls)?;
    }
    let shutdown = agent.shutdown.clone();
    builder
        .add_service(sync_service(agent, &config))
        .serve_with_incoming_shutdown(TcpIncoming::from(hub.listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
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

/// Spawns the server on the bound listener and the dialler, each reporting
/// its state in health, the outbox's pruning, and the watch on the USB
/// stick's outcomes.
pub fn start(
    agent: &Arc<Agent>,
    listener: Option<HubListener>,
    dialler: Option<dial_out::Dialler>,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::health::State;
    tasks.spawn(prune_periodically(agent.clone()));
    if let Some(dialler) = dialler {
        tasks.spawn(dial_out::run(dialler, agent.clone()));
    }
    tasks.spawn(usb::follow_outcomes(agent.clone()));
    let Some(listener) = listener else {
        if agent.config().hub.connect.is_some() {
            let detail =
                "not listening (hub.client_ca is not set): the room dials the hub, see hub_link";
            tracing::info!("hub sync {detail}");
            agent.health.set("hub", State::Disabled, detail);
        } else {
            let detail = "not serving: set hub.tls_cert, hub.tls_key and hub.client_ca (or hub.plaintext = true on a trusted network), or hub.connect to dial the hub";
            tracing::error!("hub sync {detail}");
            agent.health.set("hub", State::Failed, detail.to_owned());
        }
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
