//! A lightweight classroom for the scale figure: the room's `SyncService` on a
//! loopback port of its own, over an outbox kept in memory that commits one
//! attendance mark a second, so that hundreds of rooms fit in one process
//! beside the hub under measure.
//!
//! # Design
//! The hub cannot tell a simulated room from an agent on the wire: the
//! service is the agent's own generated code from the shared proto, and it
//! keeps the agent's contract (`proto/classroom/hub/v1/sync.proto`):
//! - `Pull` refuses a negative cursor (INVALID_ARGUMENT) and one beyond the
//!   newest seq (OUT_OF_RANGE); it sends batches in seq order with no gaps,
//!   wakes on each commit as the agent does (not on a poll), and on a follow
//!   stream sends a heartbeat after five idle seconds, like the agent's
//!   `HEARTBEAT_INTERVAL`;
//! - `Ack` refuses another outbox's identity (FAILED_PRECONDITION) and a seq
//!   beyond the newest (OUT_OF_RANGE), never moves back, and records when each
//!   seq was first acknowledged: the end of the end-to-end lag;
//! - `GetStatus` gives the room, the outbox identity, the last seq and the backlog;
//! - `PutRoster` takes a newer version and refuses an older one;
//!   `PutContent` and `PutCertificate` answer UNIMPLEMENTED (the hub pushes
//!   neither without content or a LAN CA configured).
//!
//! What it does not exercise: SQLite (reading a batch of one event is not
//! what limits the hub), TLS, and rooms that fail or restart; the hub's
//! correctness against real agents is what its tests check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use firmware_agent::proto::sync_service_server::{SyncService, SyncServiceServer};
use firmware_agent::proto::{
    AckRequest, AckResponse, AgentStatus, AttendanceMark, Event, EventBatch, GetStatusRequest,
    Heartbeat, LanCertificateSource, MarkSource, MarkStatus, PullRequest, PullResponse,
    PutCertificateRequest, PutCertificateResponse, PutContentChunk, PutContentResponse,
    PutRosterRequest, PutRosterResponse, RoomIdentity, event, pull_response,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// How often an idle follow stream sends a heartbeat, as the agent does.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Events per batch when the hub lets the room choose, as the agent does.
const DEFAULT_BATCH: usize = 1_000;
/// The most events per batch whatever the hub asks, as the agent does.
const MAX_BATCH: usize = 10_000;

/// One committed event and when it was committed and first acknowledged.
struct Committed {
    event: Event,
    committed_at: Instant,
    acked_at: Option<Instant>,
}

/// A room's outbox, in memory. `events[i]` has seq `i + 1`.
#[derive(Default)]
struct Outbox {
    events: Vec<Committed>,
    acked_seq: i64,
    roster_version: u64,
}

/// One simulated room: its identity, its outbox, and who is pulling it.
pub struct SimRoom {
    pub school_code: String,
    pub room_id: String,
    pub address: SocketAddr,
    identity: uuid::Uuid,
    outbox: Mutex<Outbox>,
    /// The newest committed seq, watched by every Pull stream.
    newest: watch::Sender<i64>,
    /// Follow streams open now.
    following: watch::Sender<usize>,
    /// Batches sent on every Pull stream so far.
    batches_sent: AtomicU64,
}

/// One event's path from commit to acknowledgement.
pub struct Journey {
    pub id: uuid::Uuid,
    pub committed_at: Instant,
    pub acked_at: Option<Instant>,
}

impl SimRoom {
    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits one attendance mark now; returns its seq.
    fn commit(&self) -> i64 {
        let now = SystemTime::now();
        let mut outbox = self.outbox();
        let seq = outbox.events.len() as i64 + 1;
        let lesson_id = "2026-12-07/morning/2".to_owned();
        let event = Event {
            id: uuid::Uuid::now_v7().as_bytes().to_vec(),
            seq,
            kind: "attendance.mark".into(),
            occurred_at: Some(now.into()),
            recorded_at: Some(now.into()),
            clock_synced: true,
            clock_step_back_ms: 0,
            room: Some(self.identity_message()),
            raw_payload: Vec::new(),
            payload: Some(event::Payload::AttendanceMark(AttendanceMark {
                session_id: format!("{lesson_id}/6A{}", seq % 4 + 1),
                lesson_id,
                personal_id: format!("0102060{:05}", seq % 40 + 1),
                status: MarkStatus::Present as i32,
                source: MarkSource::Face as i32,
                best_similarity: 0.81,
                ..Default::default()
            })),
        };
        outbox.events.push(Committed {
            event,
            committed_at: Instant::now(),
            acked_at: None,
        });
        drop(outbox);
        self.newest.send_replace(seq);
        seq
    }

    fn identity_message(&self) -> RoomIdentity {
        RoomIdentity {
            school_code: self.school_code.clone(),
            room_id: self.room_id.clone(),
        }
    }

    /// Up to `limit` events after `after`.
    fn read_after(&self, after: i64, limit: usize) -> Vec<Event> {
        let outbox = self.outbox();
        outbox
            .events
            .iter()
            .skip(after as usize)
            .take(limit)
            .map(|committed| committed.event.clone())
            .collect()
    }

    /// Every event committed so far, with when it was committed and acknowledged.
    pub fn journeys(&self) -> Vec<Journey> {
        self.outbox()
            .events
            .iter()
            .map(|committed| Journey {
                id: uuid::Uuid::from_slice(&committed.event.id).expect("16-byte ids"),
                committed_at: committed.committed_at,
                acked_at: committed.acked_at,
            })
            .collect()
    }

    pub fn last_seq(&self) -> i64 {
        *self.newest.borrow()
    }

    pub fn acked_seq(&self) -> i64 {
        self.outbox().acked_seq
    }

    pub fn following(&self) -> usize {
        *self.following.borrow()
    }

    pub fn batches_sent(&self) -> u64 {
        self.batches_sent.load(Ordering::Relaxed)
    }
}

/// The `SyncService` of one simulated room.
#[derive(Clone)]
struct Service(Arc<SimRoom>);

/// Counts a follow stream open for as long as it lives.
struct Following(Arc<SimRoom>);

impl Following {
    fn new(room: Arc<SimRoom>) -> Following {
        room.following.send_modify(|open| *open += 1);
        Following(room)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.0.following.send_modify(|open| *open -= 1);
    }
}

#[tonic::async_trait]
impl SyncService for Service {
    type PullStream = ReceiverStream<Result<PullResponse, Status>>;

    async fn pull(
        &self,
        request: Request<PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let request = request.into_inner();
        let newest = self.0.last_seq();
        if request.after_seq < 0 {
            return Err(Status::invalid_argument(format!(
                "after_seq is {}; a cursor is 0 or a sequence number the room sent",
                request.after_seq
            )));
        }
        if request.after_seq > newest {
            return Err(Status::out_of_range(format!(
                "after_seq {} is beyond the newest event of outbox {} ({newest})",
                request.after_seq, self.0.identity
            )));
        }
        let limit = match request.max_batch as usize {
            0 => DEFAULT_BATCH,
            asked => asked.min(MAX_BATCH),
        };
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(stream_events(
            self.0.clone(),
            request.after_seq,
            limit,
            request.follow,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let request = request.into_inner();
        let room = &self.0;
        if !request.outbox_identity.is_empty()
            && request.outbox_identity != room.identity.as_bytes()
        {
            return Err(Status::failed_precondition(format!(
                "the ack names another outbox than {}",
                room.identity
            )));
        }
        let now = Instant::now();
        let mut outbox = room.outbox();
        let newest = outbox.events.len() as i64;
        if request.seq < 0 || request.seq > newest {
            return Err(Status::out_of_range(format!(
                "ack of seq {} outside 0..={newest}",
                request.seq
            )));
        }
        let from = outbox.acked_seq;
        for committed in &mut outbox.events[from as usize..request.seq.max(from) as usize] {
            committed.acked_at = Some(now);
        }
        outbox.acked_seq = outbox.acked_seq.max(request.seq);
        Ok(Response::new(AckResponse {
            acked_seq: outbox.acked_seq,
        }))
    }

    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<AgentStatus>, Status> {
        let room = &self.0;
        let outbox = room.outbox();
        let last_seq = outbox.events.len() as i64;
        let oldest_unacked = outbox.events.get(outbox.acked_seq as usize);
        Ok(Response::new(AgentStatus {
            room: Some(room.identity_message()),
            software_version: "scale-simulator".into(),
            oldest_unacked_seq: oldest_unacked.map_or(0, |c| c.event.seq),
            oldest_unacked_at: oldest_unacked.and_then(|c| c.event.recorded_at),
            backlog: (last_seq - outbox.acked_seq) as u64,
            acked_seq: outbox.acked_seq,
            last_seq,
            free_disk_bytes: 100 << 30,
            agent_time: Some(SystemTime::now().into()),
            clock_synced: true,
            roster_version: outbox.roster_version,
            outbox_identity: room.identity.as_bytes().to_vec(),
            lan_certificate_source: LanCertificateSource::None as i32,
            lan_certificate_not_after: None,
            lan_certificate_names: Vec::new(),
        }))
    }

    async fn put_roster(
        &self,
        request: Request<PutRosterRequest>,
    ) -> Result<Response<PutRosterResponse>, Status> {
        let request = request.into_inner();
        let mut outbox = self.0.outbox();
        if request.version <= outbox.roster_version {
            return Err(Status::failed_precondition(format!(
                "roster version {} is not newer than {}",
                request.version, outbox.roster_version
            )));
        }
        outbox.roster_version = request.version;
        Ok(Response::new(PutRosterResponse {
            version: request.version,
            pupils: request.pupils.len() as u32,
            teachers: request.teachers.len() as u32,
        }))
    }

    async fn put_content(
        &self,
        _request: Request<Streaming<PutContentChunk>>,
    ) -> Result<Response<PutContentResponse>, Status> {
        Err(Status::unimplemented("a simulated room keeps no content"))
    }

    async fn put_certificate(
        &self,
        _request: Request<PutCertificateRequest>,
    ) -> Result<Response<PutCertificateResponse>, Status> {
        Err(Status::unimplemented("a simulated room serves no HTTPS"))
    }
}

/// One Pull stream: batches from `after` in seq order until caught up, then,
/// when following, each commit as it happens and a heartbeat when idle.
async fn stream_events(
    room: Arc<SimRoom>,
    mut after: i64,
    limit: usize,
    follow: bool,
    tx: mpsc::Sender<Result<PullResponse, Status>>,
) {
    let _following = follow.then(|| Following::new(room.clone()));
    let mut newest = room.newest.subscribe();
    let mut heartbeat_at = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
    loop {
        newest.mark_unchanged();
        let events = room.read_after(after, limit);
        let message = if let Some(last) = events.last() {
            after = last.seq;
            room.batches_sent.fetch_add(1, Ordering::Relaxed);
            heartbeat_at = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
            pull_response::Message::Batch(EventBatch {
                events,
                outbox_identity: room.identity.as_bytes().to_vec(),
            })
        } else if !follow {
            return;
        } else {
            tokio::select! {
                () = tx.closed() => return,
                changed = newest.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                () = tokio::time::sleep_until(heartbeat_at) => {}
            }
            heartbeat_at = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
            pull_response::Message::Heartbeat(Heartbeat {
                last_seq: room.last_seq(),
                agent_time: Some(SystemTime::now().into()),
                outbox_identity: room.identity.as_bytes().to_vec(),
            })
        };
        let response = PullResponse {
            message: Some(message),
        };
        if tx.send(Ok(response)).await.is_err() {
            return;
        }
    }
}

/// Starts `count` rooms of school `school_code` on loopback, each serving
/// its `SyncService` until `servers` is cancelled and committing one event a
/// second, at a phase of its own, until `commits` is.
pub async fn start_rooms(
    school_code: &str,
    count: usize,
    commits: &CancellationToken,
    servers: &CancellationToken,
) -> Vec<Arc<SimRoom>> {
    let mut rooms = Vec::with_capacity(count);
    for index in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for a simulated room");
        let room = Arc::new(SimRoom {
            school_code: school_code.to_owned(),
            room_id: format!("P{:04}", index + 1),
            address: listener.local_addr().expect("a bound address"),
            identity: uuid::Uuid::new_v4(),
            outbox: Mutex::default(),
            newest: watch::Sender::new(0),
            following: watch::Sender::new(0),
            batches_sent: AtomicU64::new(0),
        });
        let server = tonic::transport::Server::builder()
            .timeout(Duration::from_secs(30))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(SyncServiceServer::new(Service(room.clone())))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                servers.clone().cancelled_owned(),
            );
        tokio::spawn(async move {
            if let Err(err) = server.await {
                eprintln!("a simulated room's server failed: {err}");
            }
        });
        let phase = Duration::from_millis(rand::random_range(0..1_000));
        tokio::spawn(commit_every_second(room.clone(), phase, commits.clone()));
        rooms.push(room);
    }
    rooms
}

async fn commit_every_second(room: Arc<SimRoom>, phase: Duration, stop: CancellationToken) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => { room.commit(); }
        }
    }
}
