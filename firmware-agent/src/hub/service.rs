//! The `SyncService` the hub calls: a thin async layer that reads and writes the
//! store off the runtime's threads and lets [`super::cursor`] decide.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::cursor::{self, PullCursor, Step};
use super::wire;
use crate::agent::Agent;
use crate::config::Config;
use crate::proto::sync_service_server::SyncService;
use crate::proto::{
    AckRequest, AckResponse, AgentStatus, GetStatusRequest, Heartbeat, PullRequest, PullResponse,
    PutCertificateRequest, PutCertificateResponse, PutContentChunk, PutContentResponse,
    PutRosterRequest, PutRosterResponse, RoomIdentity, pull_response,
};
use crate::roster::{Candidate, Role, Roster, check_person};
use crate::schedule::ScheduleConfig;
use crate::store::hub::StaleRoster;
use crate::store::outbox::read_after;
use crate::store::roster::ImportSummary;
use crate::store::{Store, StoreError};

/// Batches read ahead of the network, per stream: reading the next batch
/// overlaps sending this one, and a slow hub holds at most this many in memory.
const PIPELINE_DEPTH: usize = 4;

/// The service, sharing the running agent.
pub struct SyncServer {
    agent: Arc<Agent>,
}

impl SyncServer {
    pub fn new(agent: Arc<Agent>) -> SyncServer {
        SyncServer { agent }
    }
}

/// The room's identity as every event and status carries it.
pub fn room_identity(agent: &Agent) -> RoomIdentity {
    let config = agent.config();
    RoomIdentity {
        school_code: config.room.school_code.clone(),
        room_id: config.room.room_id.clone(),
    }
}

/// A database that cannot be read is unavailable for now; a worker that died is a fault of the agent.
fn database_failure(err: StoreError) -> Status {
    tracing::error!(%err, "hub request failed on the database");
    match err {
        StoreError::Worker { source, .. } => {
            Status::internal(format!("the request's worker failed: {source}"))
        }
        err => Status::unavailable(format!("the agent cannot read its database: {err}")),
    }
}

#[tonic::async_trait]
impl SyncService for SyncServer {
    type PullStream = ReceiverStream<Result<PullResponse, Status>>;

    async fn pull(
        &self,
        request: Request<PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let request = request.into_inner();
        let newest = self
            .agent
            .store
            .blocking(|store| store.newest_seq())
            .await
            .map_err(database_failure)?;
        let started = self.agent.clock.monotonic();
        let cursor = PullCursor::new(
            request.after_seq,
            request.max_batch,
            request.follow,
            newest,
            started,
        )
        .map_err(|refused| match refused {
            cursor::PullRefused::NegativeCursor(_) => Status::invalid_argument(refused.to_string()),
            cursor::PullRefused::BeyondEnd { .. } => {
                tracing::warn!(
                    after_seq = request.after_seq,
                    newest,
                    "a hub pulled from beyond the end of this outbox; refused"
                );
                Status::out_of_range(format!(
                    "{refused} (this outbox: {})",
                    self.agent.store.outbox_identity()
                ))
            }
        })?;
        tracing::info!(
            after_seq = request.after_seq,
            follow = request.follow,
            "hub pull started"
        );
        let (tx, rx) = mpsc::channel(PIPELINE_DEPTH);
        tokio::spawn(stream_events(self.agent.clone(), cursor, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let request = request.into_inner();
        let outcome = self
            .agent
            .store
            .blocking(move |store| acknowledge(store, &request.outbox_identity, request.seq))
            .await;
        match outcome.map_err(database_failure)? {
            Ok(acked_seq) => Ok(Response::new(AckResponse { acked_seq })),
            Err(refused @ AckRejected::OtherOutbox(_)) => {
                Err(Status::failed_precondition(refused.to_string()))
            }
            Err(refused @ AckRejected::Refused(cursor::AckRefused::Negative(_))) => {
                Err(Status::invalid_argument(refused.to_string()))
            }
            Err(refused @ AckRejected::Refused(cursor::AckRefused::Beyond { .. })) => {
                Err(Status::out_of_range(refused.to_string()))
            }
        }
    }

    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<AgentStatus>, Status> {
        let data_dir = self.agent.config().storage.data_dir.clone();
        let (outbox, roster_version, free_disk_bytes) = self
            .agent
            .store
            .blocking(move |store| {
                let outbox = store.outbox_status()?;
                let roster_version = store.roster_version()?;
                Ok((outbox, roster_version, free_bytes(&data_dir)))
            })
            .await
            .map_err(database_failure)?;
        let (lan_source, lan_not_after, lan_names) = super::certificate::status(&self.agent);
        Ok(Response::new(AgentStatus {
            room: Some(room_identity(&self.agent)),
            software_version: env!("CARGO_PKG_VERSION").to_owned(),
            oldest_unacked_seq: outbox.oldest_unacked.map_or(0, |(seq, _)| seq),
            oldest_unacked_at: outbox.oldest_unacked.map(|(_, at)| wire::timestamp(at)),
            backlog: outbox.backlog,
            acked_seq: outbox.acked_seq,
            last_seq: outbox.last_seq,
            free_disk_bytes,
            agent_time: Some(wire::timestamp(self.agent.clock.now())),
            clock_synced: self.agent.clock.is_synchronized(),
            roster_version,
            outbox_identity: self.agent.store.outbox_identity().as_bytes().to_vec(),
            lan_certificate_source: lan_source.into(),
            lan_certificate_not_after: lan_not_after,
            lan_certificate_names: lan_names,
        }))
    }

    async fn put_certificate(
        &self,
        request: Request<PutCertificateRequest>,
    ) -> Result<Response<PutCertificateResponse>, Status> {
        let request = request.into_inner();
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || super::certificate::receive(&agent, &request))
            .await
            .map_err(|err| Status::internal(format!("the certificate's worker failed: {err}")))?
            .map(Response::new)
    }

    async fn put_content(
        &self,
        request: Request<tonic::Streaming<PutContentChunk>>,
    ) -> Result<Response<PutContentResponse>, Status> {
        super::content::receive(self.agent.clone(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn put_roster(
        &self,
        request: Request<PutRosterRequest>,
    ) -> Result<Response<PutRosterResponse>, Status> {
        let request = request.into_inner();
        let version = request.version;
        let config = self.agent.config();
        let outcome = self
            .agent
            .store
            .blocking(move |store| apply_roster(store, &config, &request))
            .await;
        match outcome.map_err(database_failure)? {
            Ok((summary, schedule)) => {
                if let Some(schedule) = schedule {
                    self.agent
                        .config
                        .send_modify(|config| Arc::make_mut(config).schedule = schedule);
                    tracing::info!(version, "timetable pushed by the hub applied");
                }
                Ok(Response::new(PutRosterResponse {
                    version,
                    pupils: summary.pupils as u32,
                    teachers: summary.teachers as u32,
                }))
            }
            Err(RosterRefused::Problems(problems)) => {
                Err(Status::invalid_argument(problems.to_string()))
            }
            Err(refused @ RosterRefused::Stale(_)) => {
                Err(Status::failed_precondition(refused.to_string()))
            }
        }
    }
}

/// Why an acknowledgement did not move the cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckRejected {
    #[error(transparent)]
    OtherOutbox(#[from] cursor::OtherOutbox),
    #[error(transparent)]
    Refused(#[from] cursor::AckRefused),
}

/// What an acknowledgement does, however it came (an Ack call, an ack file
/// carried back on a stick): checks that it names this outbox and a seq
/// already handed out, and moves the acknowledged cursor forward to it.
/// Blocking; returns the cursor after it.
pub fn acknowledge(
    store: &Store,
    claimed_outbox: &[u8],
    asked: i64,
) -> Result<Result<i64, AckRejected>, StoreError> {
    if let Err(other) = cursor::same_outbox(claimed_outbox, store.outbox_identity()) {
        return Ok(Err(other.into()));
    }
    let moved = store.acknowledge(|acked, last| cursor::acknowledge(acked, last, asked))?;
    if let Ok(acked_seq) = moved {
        metrics::gauge!("hub_acked_seq").set(acked_seq as f64);
    }
    Ok(moved.map_err(AckRejected::from))
}

/// Why a roster push was not applied; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterRefused {
    #[error(transparent)]
    Problems(#[from] RosterProblems),
    #[error("{0}; nothing was changed")]
    Stale(#[from] StaleRoster),
}

/// What a roster push does, however it came (PutRoster, an office bundle
/// carried in on a stick): checks it whole against `config`, applies people,
/// templates and timetable in one transaction when its version is newer, and
/// gives back the timetable in force for the running agent to follow.
/// Blocking.
pub fn apply_roster(
    store: &Store,
    config: &Config,
    request: &PutRosterRequest,
) -> Result<Result<(ImportSummary, Option<ScheduleConfig>), RosterRefused>, StoreError> {
    let (roster, timetable) = match checked_roster(request, config) {
        Ok(checked) => checked,
        Err(problems) => return Ok(Err(problems.into())),
    };
    let version = request.version;
    let text = timetable.as_ref().map(|(text, _)| text.as_str());
    match store.replace_roster(version, &roster, text)? {
        Ok(summary) => {
            tracing::info!(
                version,
                pupils = summary.pupils,
                teachers = summary.teachers,
                removed = summary.removed,
                templates_erased_of = summary.erased,
                "roster pushed by the hub applied"
            );
            Ok(Ok((summary, timetable.map(|(_, schedule)| schedule))))
        }
        Err(stale) => Ok(Err(stale.into())),
    }
}

/// Every problem of a pushed roster, each naming its place (`pupils[i].field`,
/// `teachers[i].field`, `timetable_toml: key`); one is enough to refuse the push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s); nothing was applied:\n{}", problems.len(), problems.join("\n"))]
pub struct RosterProblems {
    pub problems: Vec<String>,
}

/// Checks a pushed roster whole, the same way a CSV import is checked: every
/// problem is listed as `pupils[i].field` or `teachers[i].field`, and one is
/// enough to refuse the push.
/// The pushed roster, and the pushed timetable (as sent, and laid over the
/// room's config), when every row and key fits; else every problem.
pub fn checked_roster(
    request: &PutRosterRequest,
    config: &Config,
) -> Result<(Roster, Option<(String, ScheduleConfig)>), RosterProblems> {
    if request.version == 0 {
        return Err(RosterProblems {
            problems: vec!["version: must be 1 or more, and above the version in force".to_owned()],
        });
    }
    let mut roster = Roster::default();
    let mut seen = HashMap::new();
    let mut problems = Vec::new();
    for (index, pupil) in request.pupils.iter().enumerate() {
        let place = format!("pupils[{index}]");
        let candidate = Candidate {
            role: Role::Pupil,
            personal_id: &pupil.personal_id,
            full_name: &pupil.full_name,
            class_name: &pupil.class_name,
            face_consent: pupil.face_consent,
            learning_data_consent: pupil.learning_data_consent,
            consent_date: &pupil.consent_date,
        };
        check_person(
            &candidate,
            &place,
            &mut seen,
            &mut roster,
            &mut |field, reason| problems.push(format!("{place}.{field}: {reason}")),
        );
    }
    for (index, teacher) in request.teachers.iter().enumerate() {
        let place = format!("teachers[{index}]");
        let candidate = Candidate {
            role: Role::Teacher,
            personal_id: &teacher.personal_id,
            full_name: &teacher.full_name,
            class_name: "",
            face_consent: false,
            learning_data_consent: false,
            consent_date: "",
        };
        check_person(
            &candidate,
            &place,
            &mut seen,
            &mut roster,
            &mut |field, reason| problems.push(format!("{place}.{field}: {reason}")),
        );
    }
    let timetable = match request.timetable_toml.as_str() {
        "" => None,
        text => match crate::schedule::pushed::overlay(config, text) {
            Ok(schedule) => Some((text.to_owned(), schedule)),
            Err(found) => {
                problems.extend(
                    found
                        .into_iter()
                        .map(|problem| format!("timetable_toml: {problem}")),
                );
                None
            }
        },
    };
    if problems.is_empty() {
        Ok((roster, timetable))
    } else {
        Err(RosterProblems { problems })
    }
}

/// Free bytes for an unprivileged writer on the file system holding `path`; 0 when unknown.
fn free_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs fills the zeroed struct it is given and reads only the NUL-terminated path.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return 0;
    }
    stats.f_bavail as u64 * stats.f_frsize as u64
}

/// Runs one Pull stream until it finishes, the hub goes away, or the agent stops.
async fn stream_events(
    agent: Arc<Agent>,
    mut cursor: PullCursor,
    tx: mpsc::Sender<Result<PullResponse, Status>>,
) {
    let mut commits = agent.store.subscribe_commits();
    let room = room_identity(&agent);
    let outbox = agent.store.outbox_identity();
    let max_message_bytes = agent.config().hub.max_message_bytes;
    // Half the message limit: room for the framing, and a margin for the hub.
    let batch_bytes = max_message_bytes / 2;
    let mut reader: Option<Connection> = None;
    loop {
        if agent.shutdown.is_cancelled() {
            let _ = tx
                .send(Err(Status::unavailable(
                    "the agent is stopping; pull again from the last stored event",
                )))
                .await;
            return;
        }
        match cursor.next() {
            Step::Read { after, limit } => {
                let connection = reader.take();
                let room = room.clone();
                let read = agent
                    .store
                    .blocking(move |store| {
                        let connection = match connection {
                            Some(connection) => connection,
                            None => store.reader()?,
                        };
                        let rows = read_after(&connection, after, limit).map_err(|err| {
                            StoreError::Sqlite {
                                path: store.path().to_owned(),
                                source: err,
                            }
                        })?;
                        let count = rows.len();
                        let last = rows.last().map(|row| row.seq);
                        let events = rows
                            .into_iter()
                            .map(|row| wire::event(row, &room))
                            .collect();
                        Ok((
                            connection,
                            count,
                            last,
                            wire::messages(events, batch_bytes, max_message_bytes, outbox),
                        ))
                    })
                    .await;
                let (connection, count, last, messages) = match read {
                    Ok(read) => read,
                    Err(err) => {
                        let _ = tx.send(Err(database_failure(err))).await;
                        return;
                    }
                };
                reader = Some(connection);
                let mut skipped_count = 0;
                for message in messages {
                    if let pull_response::Message::Skipped(skipped) = &message {
                        skipped_count += 1;
                        tracing::warn!(
                            seq = skipped.seq,
                            kind = skipped.kind,
                            reason = skipped.reason,
                            "an event was skipped in the hub's stream"
                        );
                        metrics::counter!("hub_pull_events_skipped_total").increment(1);
                    }
                    if !send(&tx, message).await {
                        return;
                    }
                }
                cursor.sent(count, last, agent.clock.monotonic());
                metrics::counter!("hub_pull_events_sent_total")
                    .increment((count - skipped_count) as u64);
            }
            Step::Wait => tokio::select! {
                _ = agent.shutdown.cancelled() => {}
                _ = tx.closed() => return,
                changed = commits.changed() => match changed {
                    Ok(()) => cursor.committed(*commits.borrow_and_update()),
                    Err(_) => return,
                },
                () = agent.clock.sleep_until(cursor.next_deadline()) => cursor.handle_timeout(agent.clock.monotonic()),
            },
            Step::Heartbeat { last_seq } => {
                let heartbeat = Heartbeat {
                    last_seq,
                    agent_time: Some(wire::timestamp(agent.clock.now())),
                    outbox_identity: outbox.as_bytes().to_vec(),
                };
                if !send(&tx, pull_response::Message::Heartbeat(heartbeat)).await {
                    return;
                }
                cursor.heartbeat_sent(agent.clock.monotonic());
            }
            Step::Finish => {
                tracing::info!(last_seq = cursor.after(), "hub pull finished");
                return;
            }
        }
    }
}

/// Sends one message; false when the hub has gone away.
async fn send(
    tx: &mpsc::Sender<Result<PullResponse, Status>>,
    message: pull_response::Message,
) -> bool {
    tx.send(Ok(PullResponse {
        message: Some(message),
    }))
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Pupil, Teacher};

    fn room() -> Config {
        Config::parse(
            std::path::Path::new("agent.toml"),
            "[room]\nschool_code = \"LC-0101\"\nroom_id = \"6A1\"\n",
        )
        .unwrap()
    }

    fn pupil(id: &str, name: &str) -> Pupil {
        Pupil {
            personal_id: id.into(),
            full_name: name.into(),
            class_name: "6A1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_pushed_roster_names_each_bad_entry_and_field() {
        let request = PutRosterRequest {
            version: 2,
            pupils: vec![
                pupil("010206001234", "Nguyễn Thị Hoa"),
                pupil("0102", "Lò Văn Páo"),
                pupil("010206001234", ""),
            ],
            teachers: vec![Teacher {
                personal_id: "010186004321".into(),
                full_name: "Trần Văn Nam".into(),
            }],
            timetable_toml: "[schedule\n".into(),
        };
        let message = checked_roster(&request, &room()).unwrap_err().to_string();
        assert!(
            message.starts_with("4 problem(s); nothing was applied"),
            "{message}"
        );
        assert!(message.contains("pupils[1].personal_id:"), "{message}");
        assert!(
            message.contains("pupils[2].personal_id: 010206001234 already appears on pupils[0]"),
            "{message}"
        );
        assert!(
            message.contains("pupils[2].full_name: is empty"),
            "{message}"
        );
        assert!(
            message.contains("timetable_toml: not valid TOML"),
            "{message}"
        );
    }

    #[test]
    fn a_good_roster_passes_with_its_timetable() {
        let request = PutRosterRequest {
            version: 1,
            pupils: vec![pupil("010206001234", "Nguyễn Thị Hoa")],
            teachers: vec![],
            timetable_toml: "[schedule]\ngrace_seconds = 60\n".into(),
        };
        let (roster, timetable) = checked_roster(&request, &room()).unwrap();
        assert_eq!(roster.pupils.len(), 1);
        let (text, schedule) = timetable.unwrap();
        assert_eq!(
            (text.as_str(), schedule.grace_seconds),
            ("[schedule]\ngrace_seconds = 60\n", 60)
        );
    }
}
