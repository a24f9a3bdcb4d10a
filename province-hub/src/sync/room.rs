//! The async loop of one room: ask the room who it is, resume from the
//! stored cursor, land every batch, acknowledge. [`sync_over`] is that loop,
//! whichever way the link was opened: [`run_pulled_room`] dials the room and
//! starts again after a back-off, [`run_dialled_room`] runs it once over a
//! link the room opened (the room dials again when it ends).
//!
//! # Design
//! A link holds a PostgreSQL connection from the shared pool only while it
//! reads its cursor or lands one batch, never while it waits for the room,
//! so a pool of a few connections serves hundreds of mostly idle rooms.
//! A link lands its room only while it holds the room's lease
//! ([`super::lease`]), so a room linked twice never has two links racing for
//! its cursor.
//!
//! **A pipeline of three.** A link once pulled a batch, landed it, sent its
//! Ack and only then read the next, so the room, the network and PostgreSQL
//! each waited on the others in turn. Now three parts run side by side over
//! channels: [`read_stream`] decodes and checks up to [`READ_AHEAD`] messages
//! ahead, [`land_batches`] stores them one transaction each, in order, and
//! [`acknowledge`] sends one Ack of the newest committed cursor whenever the
//! room is behind it ([`super::acks`]). The first of them to fail ends the
//! link, dropping the others: a batch whose transaction did not commit is
//! never acknowledged, and the next link starts from the stored cursor.
//!
//! Where the time goes, landing one room's backlog of face marks
//! (`benches/landing.rs`): PostgreSQL spends about two thirds of the CPU, the
//! hub a fifth, the room's agent the rest; within PostgreSQL, about 60% of
//! the time is index maintenance (five index entries per mark: `events`'
//! key and room index, `attendance_marks`' key, pupil and lesson indexes).
//! With the parts overlapping, the link goes as fast as the busiest of them
//! allows, which is PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::acks::Acks;
use super::content::{ContentPush, Library, PushContext};
use super::dial_in::RoomLink;
use super::lease::Leases;
use super::link::{Backoff, Link, LinkError, Received, Resume, resume};
use crate::config::{RoomConfig, RoomKey, SyncConfig};
use crate::health::{self, Board};
use crate::proto::sync_service_client::SyncServiceClient;
use crate::proto::{AckRequest, GetStatusRequest, PullRequest, PullResponse};
use crate::store::{self, OutboxPosition, StoreError, roster};
use crate::sync::lan_cert::{LanCa, renew_if_due};

/// Messages read and checked ahead of the batch landing: enough that the
/// room and the network never wait on PostgreSQL while a batch is in hand,
/// few enough to bound what a link holds in memory.
const READ_AHEAD: usize = 3;

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
    #[error("the room that dialled in did not say which room it is")]
    Anonymous,
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a link needs besides its channel and the database.
pub struct LinkContext<'a> {
    pub room: &'a RoomKey,
    pub sync: &'a SyncConfig,
    pub board: &'a Board,
    /// Ends the link at its next wait: the hub stops, or another link of the room takes over.
    pub shutdown: &'a CancellationToken,
    /// How the room is linked: [`health::PULL`] or [`health::DIAL_IN`].
    pub link: &'static str,
    /// The province's LAN CA, when the hub issues the rooms' HTTPS certificates.
    pub lan_ca: Option<&'a LanCa>,
    /// The province's learning content, when the hub pushes any.
    pub content: Option<&'a Arc<Library>>,
}

async fn connection(pool: &Pool) -> Result<Object, StoreError> {
    Ok(pool.get().await?)
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

/// Runs one link over `client` until it fails (an error) or `context.shutdown`
/// ends it (`Ok`). `backoff` is told each time the link gets somewhere.
pub async fn sync_over(
    client: &mut SyncServiceClient<Channel>,
    pool: &Pool,
    context: &LinkContext<'_>,
    backoff: &mut Backoff,
) -> Result<(), SyncError> {
    let LinkContext {
        room,
        sync,
        board,
        shutdown,
        lan_ca,
        ..
    } = context;
    let timeout = sync.request_timeout();
    let status = call("GetStatus", timeout, client.get_status(GetStatusRequest {})).await?;
    if let Some(ca) = lan_ca {
        renew_if_due(client, ca, room, &status, timeout).await;
    }
    let mut db = connection(pool).await?;
    let stored = store::current_outbox(&db, room).await?;
    let position = match resume(room, stored, &status)? {
        Resume::From(position) => position,
        Resume::Adopt(identity) => {
            let position = store::adopt_identity(&mut db, room, identity).await?;
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
    drop(db);
    board.connected(room, position, status.last_seq);
    let mut roster_version = status.roster_version;
    push_roster(client, pool, context, &mut roster_version).await?;
    let status = crate::proto::AgentStatus {
        roster_version,
        ..status
    };
    let content = context.content.map(|library| {
        let push = PushContext {
            library: library.clone(),
            client: client.clone(),
            pool: pool.clone(),
            room: (*room).clone(),
            link: context.link,
            sync: (*sync).clone(),
        };
        ContentPush::start(push, shutdown)
    });
    let request = PullRequest {
        after_seq: position.cursor,
        max_batch: *sync.max_batch.get_ref(),
        follow: true,
    };
    let stream = call("Pull", timeout, client.pull(request)).await?;
    let link = Link::new(
        position,
        sync.silence_timeout(),
        tokio::time::Instant::now(),
    );
    let (to_land, landing) = mpsc::channel(READ_AHEAD);
    let (stored_sender, stored) = watch::channel(position);
    let (heard_sender, heard) = watch::channel(());
    let pipeline = async {
        tokio::try_join!(
            read_stream(stream, link, to_land, heard_sender, context),
            land_batches(pool, position, landing, stored_sender, context),
            acknowledge(
                client,
                pool,
                &status,
                stored,
                heard,
                backoff,
                context,
                content.as_ref()
            ),
        )
    };
    tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        ended = pipeline => ended.map(|_| ()),
    }
}

/// What the stream handed over to be stored, in seq order.
enum ToLand {
    Batch(Vec<crate::proto::Event>),
    Skip(crate::proto::SkippedEvent),
}

/// Reads and checks the Pull stream ahead of the landing, at most
/// [`READ_AHEAD`] messages ahead; tells [`acknowledge`] of each heartbeat.
async fn read_stream(
    mut stream: tonic::Streaming<PullResponse>,
    mut link: Link,
    to_land: mpsc::Sender<ToLand>,
    heard: watch::Sender<()>,
    context: &LinkContext<'_>,
) -> Result<(), SyncError> {
    let room = context.room;
    loop {
        let message = tokio::time::timeout_at(link.silence_deadline(), stream.message()).await;
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
        let next = match link.receive(message, tokio::time::Instant::now())? {
            Received::Land(events) => ToLand::Batch(events),
            Received::Skip(skipped) => ToLand::Skip(skipped),
            Received::Heartbeat { last_seq } => {
                context.board.heartbeat(room, last_seq);
                heard.send_replace(());
                continue;
            }
            Received::Nothing => continue,
        };
        if to_land.send(next).await.is_err() {
            return Ok(());
        }
        // The room waited on the hub, not the other way round.
        link.listening(tokio::time::Instant::now());
    }
}

/// Stores each batch handed over, with the cursor after it, one PostgreSQL
/// transaction each; publishes every committed position.
async fn land_batches(
    pool: &Pool,
    mut position: OutboxPosition,
    mut landing: mpsc::Receiver<ToLand>,
    stored: watch::Sender<OutboxPosition>,
    context: &LinkContext<'_>,
) -> Result<(), SyncError> {
    let (room, board) = (context.room, context.board);
    while let Some(next) = landing.recv().await {
        let mut db = connection(pool).await?;
        position = match next {
            ToLand::Batch(events) => {
                let recorded_at = events
                    .last()
                    .and_then(|event| event.recorded_at.as_ref())
                    .map(store::rows::system_time);
                let landed = store::land_batch(&mut db, room, position, &events).await?;
                board.landed(room, events.len(), landed, recorded_at);
                landed
            }
            ToLand::Skip(skipped) => {
                tracing::warn!(
                    room = %room,
                    seq = skipped.seq,
                    kind = %skipped.kind,
                    bytes = skipped.message_bytes,
                    reason = %skipped.reason,
                    "the room skipped an event too large for the link; recorded in skipped_events"
                );
                let landed = store::record_skipped(&mut db, room, position, &skipped).await?;
                board.landed(room, 0, landed, None);
                landed
            }
        };
        drop(db);
        stored.send_replace(position);
    }
    Ok(())
}

/// Acknowledges the newest committed cursor whenever the room (as `status`
/// found it) is behind it (see [`Acks`]), and after each heartbeat pushes the
/// roster and nudges the link's content push.
#[allow(clippy::too_many_arguments)]
async fn acknowledge(
    client: &mut SyncServiceClient<Channel>,
    pool: &Pool,
    status: &crate::proto::AgentStatus,
    mut stored: watch::Receiver<OutboxPosition>,
    mut heard: watch::Receiver<()>,
    backoff: &mut Backoff,
    context: &LinkContext<'_>,
    content: Option<&ContentPush>,
) -> Result<(), SyncError> {
    let timeout = context.sync.request_timeout();
    let mut acks = Acks::new(*stored.borrow_and_update(), status.acked_seq);
    let mut roster_version = status.roster_version;
    loop {
        if let Some(due) = acks.due() {
            let ack = AckRequest {
                seq: due.cursor,
                outbox_identity: due.identity.as_bytes().to_vec(),
            };
            call("Ack", timeout, client.ack(ack)).await?;
            acks.acknowledged(due.cursor);
            continue;
        }
        tokio::select! {
            changed = stored.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                acks.stored(*stored.borrow_and_update());
                backoff.succeeded();
            }
            changed = heard.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                backoff.succeeded();
                push_roster(client, pool, context, &mut roster_version).await?;
                if let Some(content) = content {
                    content.heartbeat();
                }
            }
        }
    }
}

/// Pushes the room's roster when PostgreSQL holds a version newer than
/// `held`, the version the room holds, and records the room's answer. A
/// refusal (the room found the roster wrong, or holds a newer one) is recorded
/// and the link goes on; a failed call ends the link like any other.
async fn push_roster(
    client: &mut SyncServiceClient<Channel>,
    pool: &Pool,
    context: &LinkContext<'_>,
    held: &mut u64,
) -> Result<(), SyncError> {
    let room = context.room;
    let mut db = connection(pool).await?;
    let Some(request) = roster::newer_roster(&mut db, room, *held).await? else {
        return Ok(());
    };
    drop(db);
    let version = request.version;
    let answer = tokio::time::timeout(context.sync.request_timeout(), client.put_roster(request))
        .await
        .map_err(|_| SyncError::TimedOut {
            call: "PutRoster",
            timeout: context.sync.request_timeout(),
        })?;
    let db = connection(pool).await?;
    match answer {
        Ok(response) => {
            let response = response.into_inner();
            roster::record_answer(&db, room, version, context.link, Ok(&response)).await?;
            *held = version;
            tracing::info!(room = %room, version, pupils = response.pupils, teachers = response.teachers, "the room accepted its roster");
        }
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            roster::record_answer(&db, room, version, context.link, Err(status.message())).await?;
            tracing::warn!(room = %room, version, "the room refused its roster: {}; see roster_deliveries", status.message());
        }
        Err(status) => {
            return Err(SyncError::Rpc {
                call: "PutRoster",
                status: Box::new(status),
            });
        }
    }
    Ok(())
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
    Ok(client(channel, sync))
}

/// A client of the room's `SyncService` over `channel`, with the configured message limit.
fn client(channel: Channel, sync: &SyncConfig) -> SyncServiceClient<Channel> {
    let limit = *sync.max_message_bytes.get_ref();
    SyncServiceClient::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
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

/// What every room's link shares.
pub struct Shared {
    pub pool: Pool,
    pub tls: Option<ClientTlsConfig>,
    pub sync: SyncConfig,
    pub board: Board,
    pub leases: Leases,
    pub lan_ca: Option<LanCa>,
    pub content: Option<Arc<Library>>,
}

impl Shared {
    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(*self.sync.retry_min_ms.get_ref()),
            Duration::from_millis(*self.sync.retry_max_ms.get_ref()),
        )
    }
}

/// Keeps one room the hub dials landed until `shutdown`; while the room has a
/// link of its own up, waits for it to end.
pub async fn run_pulled_room(room: RoomConfig, shared: &Shared, shutdown: CancellationToken) {
    let key = room.key();
    let mut backoff = shared.backoff();
    let mut jitter = rand::rngs::StdRng::from_os_rng();
    loop {
        let lease = tokio::select! {
            () = shutdown.cancelled() => return,
            lease = shared.leases.wait(&key, &shutdown) => lease,
        };
        shared
            .board
            .linked(&key, health::PULL, room.address.get_ref());
        let context = LinkContext {
            room: &key,
            sync: &shared.sync,
            board: &shared.board,
            shutdown: &lease.token,
            link: health::PULL,
            lan_ca: shared.lan_ca.as_ref(),
            content: shared.content.as_ref(),
        };
        let result = async {
            let mut client = dial(&room, shared.tls.as_ref(), &shared.sync).await?;
            sync_over(&mut client, &shared.pool, &context, &mut backoff).await
        }
        .await;
        drop(lease);
        let error = match result {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => {
                tracing::info!(room = %key, "the room dialled in: its own link lands it while it is up");
                continue;
            }
            Err(error) => error,
        };
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

/// Lands the room at the other end of `link`, a link the room opened, until
/// the link ends, a newer link of the room takes over, or `shutdown`. The room
/// is the one its `GetStatus` names, taken only when its certificate names the
/// same room ([`RoomLink::confirms`]); the room dials again after a failure.
pub async fn run_dialled_room(link: RoomLink, shared: &Shared, shutdown: CancellationToken) {
    let peer = link.peer.to_string();
    let mut client = client(link.channel.clone(), &shared.sync);
    let status = call(
        "GetStatus",
        shared.sync.request_timeout(),
        client.get_status(GetStatusRequest {}),
    )
    .await
    .and_then(|status| status.room.ok_or(SyncError::Anonymous));
    let key = match status {
        Ok(room) => RoomKey {
            school_code: room.school_code,
            room_id: room.room_id,
        },
        Err(error) => {
            tracing::warn!(peer = %peer, "a room's link was dropped before landing anything: {error}");
            return;
        }
    };
    if !link.confirms(&key) {
        return;
    }
    shared.board.linked(&key, health::DIAL_IN, &peer);
    let lease = tokio::select! {
        () = shutdown.cancelled() => return,
        lease = shared.leases.take(&key, &shutdown) => lease,
    };
    let Some(lease) = lease else {
        tracing::info!(room = %key, peer = %peer, "a newer link of the room arrived meanwhile; this one is dropped");
        return;
    };
    tracing::info!(room = %key, peer = %peer, "the room dialled in");
    let context = LinkContext {
        room: &key,
        sync: &shared.sync,
        board: &shared.board,
        shutdown: &lease.token,
        link: health::DIAL_IN,
        lan_ca: shared.lan_ca.as_ref(),
        content: shared.content.as_ref(),
    };
    let mut backoff = shared.backoff();
    match sync_over(&mut client, &shared.pool, &context, &mut backoff).await {
        Ok(()) => tracing::info!(room = %key, peer = %peer, "the room's link handed over"),
        Err(error) => {
            backoff.failed(0.0);
            tracing::warn!(room = %key, peer = %peer, "the room's link ended: {error}; the room dials again");
            shared
                .board
                .failed(&key, error.to_string(), backoff.failures());
        }
    }
}
