//! The async loop of one room: dial, ask the room who it is, resume from the
//! stored cursor, land every batch, acknowledge, and on any failure start
//! again after a back-off.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::link::{Backoff, Link, LinkError, Received, Resume, resume};
use crate::config::{RoomConfig, RoomKey, SyncConfig};
use crate::health::Board;
use crate::proto::sync_service_client::SyncServiceClient;
use crate::proto::{AckRequest, GetStatusRequest, PullRequest};
use crate::store::{self, StoreError};
use crate::sync::lan_cert::{LanCa, renew_if_due};

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("{call} failed: {status}")]
    Rpc {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("{call} got no answer within {timeout:?}")]
    TimedOut {
        call: &'static str,
        timeout: Duration,
    },
    #[error("the room ended its Pull stream")]
    StreamEnded,
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a link needs besides its channel and its database connection.
pub struct LinkContext<'a> {
    pub room: &'a RoomKey,
    pub sync: &'a SyncConfig,
    pub board: &'a Board,
    pub shutdown: &'a CancellationToken,
    /// The province's LAN CA, when the hub issues the rooms' HTTPS certificates.
    pub lan_ca: Option<&'a LanCa>,
}

async fn call<T>(
    name: &'static str,
    timeout: Duration,
    future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, SyncError> {
    match tokio::time::timeout(timeout, future).await {
        Err(_) => Err(SyncError::TimedOut {
            call: name,
            timeout,
        }),
        Ok(Err(status)) => Err(SyncError::Rpc {
            call: name,
            status: Box::new(status),
        }),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// Runs one link over `client` until it fails (an error) or the hub shuts
/// down (`Ok`). `backoff` is told each time the link gets somewhere.
pub async fn sync_over(
    client: &mut SyncServiceClient<Channel>,
    db: &mut Client,
    context: &LinkContext<'_>,
    backoff: &mut Backoff,
) -> Result<(), SyncError> {
    let LinkContext {
        room,
        sync,
        board,
        shutdown,
        lan_ca,
    } = context;
    let timeout = sync.request_timeout();
    let status = call("GetStatus", timeout, client.get_status(GetStatusRequest {})).await?;
    if let Some(ca) = lan_ca {
        renew_if_due(client, ca, room, &status, timeout).await;
    }
    let stored = store::current_outbox(db, room).await?;
    let position = match resume(room, stored, &status)? {
        Resume::From(position) => position,
        Resume::Adopt(identity) => {
            let position = store::adopt_identity(db, room, identity).await?;
            match stored {
                Some(old) => tracing::warn!(
                    room = %room,
                    old = %old.identity,
                    old_cursor = old.cursor,
                    new = %identity,
                    cursor = position.cursor,
                    "the room's outbox identity changed (its database was replaced): what was stored from the old one is kept, the new one is pulled from its stored cursor"
                ),
                None => {
                    tracing::info!(room = %room, identity = %identity, "first contact with the room")
                }
            }
            position
        }
    };
    board.connected(room, position, status.last_seq);
    let request = PullRequest {
        after_seq: position.cursor,
        max_batch: *sync.max_batch.get_ref(),
        follow: true,
    };
    let mut stream = call("Pull", timeout, client.pull(request)).await?;
    let mut link = Link::new(
        position,
        sync.silence_timeout(),
        tokio::time::Instant::now(),
    );
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = tokio::time::timeout_at(link.silence_deadline(), stream.message()) => message,
        };
        let message = match message {
            Err(_) => return Err(link.timed_out().into()),
            Ok(Err(status)) => {
                return Err(SyncError::Rpc {
                    call: "Pull",
                    status: Box::new(status),
                });
            }
            Ok(Ok(None)) => return Err(SyncError::StreamEnded),
            Ok(Ok(Some(message))) => message,
        };
        let stored = match link.receive(message, tokio::time::Instant::now())? {
            Received::Land(events) => {
                let recorded_at = events
                    .last()
                    .and_then(|event| event.recorded_at.as_ref())
                    .map(store::rows::system_time);
                let count = events.len();
                let stored = store::land_batch(db, room, link.position(), &events).await?;
                board.landed(room, count, stored, recorded_at);
                stored
            }
            Received::Skip(skipped) => {
                tracing::warn!(
                    room = %room,
                    seq = skipped.seq,
                    kind = %skipped.kind,
                    bytes = skipped.message_bytes,
                    reason = %skipped.reason,
                    "the room skipped an event too large for the link; recorded in skipped_events"
                );
                let stored = store::record_skipped(db, room, link.position(), &skipped).await?;
                board.landed(room, 0, stored, None);
                stored
            }
            Received::Heartbeat { last_seq } => {
                board.heartbeat(room, last_seq);
                backoff.succeeded();
                continue;
            }
            Received::Nothing => continue,
        };
        link.stored(stored);
        backoff.succeeded();
        let ack = AckRequest {
            seq: stored.cursor,
            outbox_identity: stored.identity.as_bytes().to_vec(),
        };
        call("Ack", timeout, client.ack(ack)).await?;
    }
}

/// Opens a channel to a room the hub dials.
pub async fn dial(
    room: &RoomConfig,
    tls: Option<&ClientTlsConfig>,
    sync: &SyncConfig,
) -> Result<SyncServiceClient<Channel>, SyncError> {
    let address = room.address.get_ref();
    let failed = |reason: String| SyncError::Connect {
        address: address.clone(),
        reason,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|err| failed(err.to_string()))?
        .connect_timeout(sync.request_timeout())
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        let mut tls = tls.clone();
        if let Some(name) = &room.tls_server_name {
            tls = tls.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|err| failed(err.to_string()))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| failed(format!("{err}: {}", source_chain(&err))))?;
    let limit = *sync.max_message_bytes.get_ref();
    Ok(SyncServiceClient::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit))
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

/// What every pulled room's task shares.
pub struct Shared {
    pub postgres_url: String,
    pub postgres_timeout: Duration,
    pub tls: Option<ClientTlsConfig>,
    pub sync: SyncConfig,
    pub board: Board,
    pub lan_ca: Option<LanCa>,
}

/// Keeps one room the hub dials landed until `shutdown`.
pub async fn run_pulled_room(room: RoomConfig, shared: &Shared, shutdown: CancellationToken) {
    let key = room.key();
    let sync = &shared.sync;
    let mut backoff = Backoff::new(
        Duration::from_millis(*sync.retry_min_ms.get_ref()),
        Duration::from_millis(*sync.retry_max_ms.get_ref()),
    );
    let mut jitter = rand::rngs::StdRng::from_os_rng();
    let mut db: Option<Client> = None;
    let context = LinkContext {
        room: &key,
        sync,
        board: &shared.board,
        shutdown: &shutdown,
        lan_ca: shared.lan_ca.as_ref(),
    };
    loop {
        let result = async {
            let connection = match db.as_mut() {
                Some(connection) if !connection.is_closed() => connection,
                _ => {
                    db.insert(store::connect(&shared.postgres_url, shared.postgres_timeout).await?)
                }
            };
            let mut client = dial(&room, shared.tls.as_ref(), sync).await?;
            sync_over(&mut client, connection, &context, &mut backoff).await
        }
        .await;
        let error = match result {
            Ok(()) => return,
            Err(error) => error,
        };
        if matches!(error, SyncError::Store(_)) {
            db = None;
        }
        let delay = backoff.failed(jitter.random());
        tracing::warn!(room = %key, failures = backoff.failures(), retry_in_ms = delay.as_millis() as u64, "room link failed: {error}");
        shared
            .board
            .failed(&key, error.to_string(), backoff.failures());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}
