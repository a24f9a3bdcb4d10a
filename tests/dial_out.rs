//! A room the hub cannot reach dials the hub: the real agent binary in a
//! network namespace of its own (the hub on the host side of a veth pair, no
//! way in from the hub's side), a hub in this process built on the province
//! hub's dial-in acceptor (`province_hub::sync::dial_in`) that stores what it receives in a SQLite
//! file of its own, each batch with its cursor in one transaction, and acks
//! after storing, as the contract asks of a hub.

mod common;
#[path = "common/netns.rs"]
mod netns;
#[path = "common/pki.rs"]
mod pki;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Room, RunningAgent, free_port, metric};
use firmware_agent::clock::SystemClock;
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{
    self, AckRequest, GetStatusRequest, PullRequest, PutRosterRequest, pull_response,
};
use firmware_agent::store::Store;
use firmware_agent::store::outbox::{NewEvent, read_after};
use netns::Namespace;
use pki::Pki;
use province_hub::sync::dial_in::{DialIn, DialInTls, RoomLink};
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);

/// An attendance mark numbered `n`.
fn mark(n: usize) -> NewEvent {
    NewEvent::new(
        jiff::Timestamp::now(),
        proto::AttendanceMark {
            session_id: format!("s{}", n / 40),
            personal_id: format!("0102060{:05}", n % 100_000),
            status: proto::MarkStatus::Present as i32,
            source: proto::MarkSource::Face as i32,
            best_similarity: 0.8,
            ..Default::default()
        },
    )
}

/// The room's database, opened by this process as a second writer.
fn writer(room: &Room) -> Store {
    Store::open(&room.database(), Arc::new(SystemClock)).unwrap()
}

/// Every event of the room's outbox, as (seq, id).
fn outbox(room: &Room) -> Vec<(i64, Vec<u8>)> {
    let store = writer(room);
    read_after(&store.reader().unwrap(), 0, 10_000_000)
        .unwrap()
        .into_iter()
        .map(|event| (event.seq, event.id.as_bytes().to_vec()))
        .collect()
}

// ---- Certificates

/// The province's certificates: a room CA and a hub CA, the room's
/// certificate (server and client use), the hub's (`hub.test`).
struct Certificates {
    dir: tempfile::TempDir,
    room: (PathBuf, PathBuf),
    room_ca: PathBuf,
    hub: (PathBuf, PathBuf),
    hub_ca: PathBuf,
}

impl Certificates {
    fn new() -> Certificates {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let dir = tempfile::tempdir().unwrap();
        let (room_ca, hub_ca) = (Pki::new("room CA"), Pki::new("hub CA"));
        Certificates {
            room: room_ca.issue(
                dir.path(),
                "room-P101",
                &["p101.local", "127.0.0.1"],
                vec![ServerAuth, ClientAuth],
            ),
            room_ca: room_ca.write_ca(&dir.path().join("room-ca.pem")),
            hub: hub_ca.issue(
                dir.path(),
                "hub",
                &["hub.test"],
                vec![ServerAuth, ClientAuth],
            ),
            hub_ca: hub_ca.write_ca(&dir.path().join("hub-ca.pem")),
            dir,
        }
    }

    /// The hub's dial-in TLS files.
    fn dial_in(&self) -> (PathBuf, PathBuf, PathBuf) {
        (self.hub.0.clone(), self.hub.1.clone(), self.room_ca.clone())
    }

    /// The `[hub]` keys of a room that dials `hub` over mutual TLS.
    fn room_dialling(&self, hub: SocketAddr) -> String {
        format!(
            "tls_cert = {:?}\ntls_key = {:?}\nconnect = \"{hub}\"\nconnect_ca = {:?}\nconnect_name = \"hub.test\"\n",
            self.room.0, self.room.1, self.hub_ca
        )
    }
}

/// `/healthz`'s `hub_link` subsystem and `/metrics`, read from inside the room's namespace.
fn link_health(namespace: &Namespace, room: &Room) -> (String, String, String) {
    namespace.inside(|| {
        let (_, body) = common::http_get(room.http, "/healthz");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        let link = &health["subsystems"]["hub_link"];
        let (_, metrics) = common::http_get(room.http, "/metrics");
        (
            link["state"].as_str().unwrap_or_default().to_owned(),
            link["detail"].as_str().unwrap_or_default().to_owned(),
            metrics,
        )
    })
}

/// `link_health` once the link's state is `state`; panics with what it was after [`WAIT`].
fn link_health_once(namespace: &Namespace, room: &Room, state: &str) -> (String, String, String) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let health = link_health(namespace, room);
        if health.0 == state || std::time::Instant::now() > deadline {
            return health;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- The hub

/// The hub's own store: events and one cursor per outbox, in a SQLite file.
struct HubStore {
    connection: Mutex<rusqlite::Connection>,
    /// What a correct agent never does (an event sent twice or out of order).
    violations: Mutex<Vec<String>>,
}

impl HubStore {
    fn open(path: &Path) -> HubStore {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;
                 CREATE TABLE IF NOT EXISTS events (outbox BLOB NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL, kind TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS cursors (outbox BLOB PRIMARY KEY, seq INTEGER NOT NULL);",
            )
            .unwrap();
        HubStore {
            connection: Mutex::new(connection),
            violations: Mutex::default(),
        }
    }

    fn cursor(&self, outbox: &[u8]) -> i64 {
        let connection = self.connection.lock().unwrap();
        connection
            .query_row(
                "SELECT seq FROM cursors WHERE outbox = ?1",
                [outbox],
                |row| row.get(0),
            )
            .unwrap_or(0)
    }

    /// Stores a batch and moves the cursor from `expected`, in one
    /// transaction; refused when another link moved the cursor meanwhile.
    fn store(&self, outbox: &[u8], expected: i64, events: &[proto::Event]) -> Result<i64, String> {
        let mut connection = self.connection.lock().unwrap();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|err| err.to_string())?;
        let current: i64 = transaction
            .query_row(
                "SELECT seq FROM cursors WHERE outbox = ?1",
                [outbox],
                |row| row.get(0),
            )
            .unwrap_or(0);
        if current != expected {
            return Err(format!(
                "another link moved the cursor to {current} (this one is at {expected})"
            ));
        }
        let mut last = expected;
        for event in events {
            if event.seq <= last {
                self.violations
                    .lock()
                    .unwrap()
                    .push(format!("seq {} after {last}", event.seq));
            }
            last = last.max(event.seq);
            transaction
                .execute(
                    "INSERT INTO events (outbox, seq, id, kind) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![outbox, event.seq, event.id, event.kind],
                )
                .map_err(|err| err.to_string())?;
        }
        transaction
            .execute(
                "INSERT INTO cursors (outbox, seq) VALUES (?1, ?2)
                 ON CONFLICT (outbox) DO UPDATE SET seq = excluded.seq",
                rusqlite::params![outbox, last],
            )
            .map_err(|err| err.to_string())?;
        transaction.commit().map_err(|err| err.to_string())?;
        Ok(last)
    }

    /// Every event stored, in the order stored, as (seq, id).
    fn events(&self) -> Vec<(i64, Vec<u8>)> {
        let connection = self.connection.lock().unwrap();
        let mut query = connection
            .prepare("SELECT seq, id FROM events ORDER BY rowid")
            .unwrap();
        query
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// What the running hub shows the test.
#[derive(Default)]
struct Seen {
    /// The latest room link's client and certificate (DER).
    latest: Option<(SyncServiceClient<Channel>, Vec<u8>)>,
    links: u32,
    refused: Vec<String>,
    /// What ended each link's sync, for the test's messages.
    ended: Vec<String>,
}

/// A hub in this process, on a runtime of its own so that killing it closes
/// every socket it holds, as a killed process's would.
struct TestHub {
    runtime: Option<tokio::runtime::Runtime>,
    address: SocketAddr,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    database: PathBuf,
    store: Arc<HubStore>,
    /// How far the hub has stored and acknowledged.
    acked: watch::Receiver<i64>,
    seen: Arc<Mutex<Seen>>,
    seen_changed: watch::Receiver<u64>,
}

impl TestHub {
    fn start(
        address: SocketAddr,
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
        database: &Path,
    ) -> TestHub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(HubStore::open(database));
        let (acked_tx, acked) = watch::channel(0);
        let (changed_tx, seen_changed) = watch::channel(0);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let listener = runtime
            .block_on(DialIn::bind(
                address,
                tls.as_ref().map(|(certificate, key, room_ca)| DialInTls {
                    certificate,
                    key,
                    room_ca,
                }),
            ))
            .unwrap();
        runtime.spawn(accept_rooms(
            listener,
            store.clone(),
            acked_tx,
            seen.clone(),
            changed_tx,
        ));
        TestHub {
            runtime: Some(runtime),
            address,
            tls,
            database: database.to_owned(),
            store,
            acked,
            seen,
            seen_changed,
        }
    }

    /// Kills the hub: every task and socket it had is gone.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// A new hub on the same address and the same database.
    fn restart(&mut self) {
        self.kill();
        *self = TestHub::start(self.address, self.tls.clone(), &self.database);
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the hub runs")
            .block_on(future)
    }

    /// Waits until the hub has stored and acknowledged every event up to `seq`.
    fn wait_for_acked(&self, seq: i64) {
        let mut acked = self.acked.clone();
        let reached = self
            .block_on(async { tokio::time::timeout(WAIT, acked.wait_for(|at| *at >= seq)).await });
        assert!(
            matches!(reached, Ok(Ok(_))),
            "the hub acknowledged up to {}, not {seq}; links: {}, ended: {:?}",
            *self.acked.borrow(),
            self.seen.lock().unwrap().links,
            self.seen.lock().unwrap().ended
        );
    }

    /// Waits until `test` holds of what the hub has seen; returns its answer.
    fn wait_until<T>(&self, mut test: impl FnMut(&Seen) -> Option<T>) -> T {
        let mut changed = self.seen_changed.clone();
        self.block_on(async {
            tokio::time::timeout(WAIT, async {
                loop {
                    if let Some(answer) = test(&self.seen.lock().unwrap()) {
                        return answer;
                    }
                    changed.changed().await.unwrap();
                }
            })
            .await
            .expect("the hub did not see it in time")
        })
    }

    /// The client of the latest link, once `links` rooms' links have been accepted.
    fn client_after_links(&self, links: u32) -> (SyncServiceClient<Channel>, Vec<u8>) {
        self.wait_until(|seen| seen.latest.clone().filter(|_| seen.links >= links))
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Accepts rooms' links; each new link's sync replaces the previous one's.
async fn accept_rooms(
    listener: DialIn,
    store: Arc<HubStore>,
    acked: watch::Sender<i64>,
    seen: Arc<Mutex<Seen>>,
    changed: watch::Sender<u64>,
) {
    let acked = Arc::new(acked);
    let changed = Arc::new(changed);
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let link = match listener.accept().await {
            Ok(incoming) => incoming.admit().await,
            Err(err) => Err(err),
        };
        let link = match link {
            Ok(link) => link,
            Err(err) => {
                seen.lock().unwrap().refused.push(err.to_string());
                changed.send_modify(|n| *n += 1);
                continue;
            }
        };
        if let Some(previous) = current.take() {
            previous.abort();
        }
        {
            let mut seen = seen.lock().unwrap();
            seen.links += 1;
            seen.latest = Some((
                client(link.channel.clone()),
                link.certificate
                    .as_ref()
                    .map(|c| c.to_vec())
                    .unwrap_or_default(),
            ));
        }
        changed.send_modify(|n| *n += 1);
        let (store, acked, seen, changed) =
            (store.clone(), acked.clone(), seen.clone(), changed.clone());
        current = Some(tokio::spawn(async move {
            let ended = sync_room(link, store, &acked).await;
            seen.lock().unwrap().ended.push(ended);
            changed.send_modify(|n| *n += 1);
        }));
    }
}

/// A client of the room's `SyncService` over its link, with the agent's default message limit.
fn client(channel: Channel) -> SyncServiceClient<Channel> {
    const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
    SyncServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The hub's work on one link: the status, then Pull from the stored cursor,
/// storing each batch with its cursor, then acking it and telling the test
/// how far it acked. Returns why it ended.
async fn sync_room(link: RoomLink, store: Arc<HubStore>, acked_tx: &watch::Sender<i64>) -> String {
    let mut client = client(link.channel);
    let status = match client.get_status(GetStatusRequest {}).await {
        Ok(status) => status.into_inner(),
        Err(status) => return format!("GetStatus: {status}"),
    };
    let outbox = status.outbox_identity;
    let mut cursor = {
        let (store, outbox) = (store.clone(), outbox.clone());
        tokio::task::spawn_blocking(move || store.cursor(&outbox))
            .await
            .unwrap()
    };
    let request = PullRequest {
        after_seq: cursor,
        max_batch: 200,
        follow: true,
    };
    let mut stream = match client.pull(request).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return format!("Pull: {status}"),
    };
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return "the stream ended".to_owned(),
            Err(status) => return format!("the stream failed: {status}"),
        };
        match message.message {
            Some(pull_response::Message::Batch(batch)) => {
                let stored = {
                    let (store, outbox) = (store.clone(), outbox.clone());
                    tokio::task::spawn_blocking(move || store.store(&outbox, cursor, &batch.events))
                        .await
                        .unwrap()
                };
                cursor = match stored {
                    Ok(cursor) => cursor,
                    Err(conflict) => return conflict,
                };
                let ack = AckRequest {
                    seq: cursor,
                    outbox_identity: outbox.clone(),
                };
                if let Err(status) = client.ack(ack).await {
                    return format!("Ack: {status}");
                }
                acked_tx.send_replace(cursor);
            }
            Some(pull_response::Message::Skipped(skipped)) => {
                return format!("an event was skipped: {skipped:?}");
            }
            Some(pull_response::Message::Heartbeat(_)) | None => {}
        }
    }
}

/// Asserts the hub holds every outbox event up to the last it stored exactly
/// once, in order, and nothing else; returns how many.
fn assert_exactly_once(hub: &TestHub, room: &Room) -> usize {
    let stored = hub.store.events();
    let cursor = stored.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
    let expected: Vec<(i64, Vec<u8>)> = outbox(room)
        .into_iter()
        .filter(|(seq, _)| *seq <= cursor)
        .collect();
    assert!(
        hub.store.violations.lock().unwrap().is_empty(),
        "{:?}",
        hub.store.violations.lock().unwrap()
    );
    let ids: std::collections::HashSet<&Vec<u8>> = stored.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), stored.len(), "every event once");
    assert_eq!(
        stored.len(),
        expected.len(),
        "every event up to the last stored"
    );
    assert!(stored == expected, "the events, in order, are the outbox's");
    stored.len()
}

#[test]
fn a_room_behind_its_own_network_dials_out_and_the_hub_stores_every_event_once_and_acks() {
    let certificates = Certificates::new();
    let namespace = Namespace::new();
    let hub_address = namespace.hub_address(free_port());
    let hub = TestHub::start(
        hub_address,
        Some(certificates.dial_in()),
        &certificates.dir.path().join("hub.sqlite3"),
    );
    let room = Room::with_hub(&certificates.room_dialling(hub_address), "");
    let store = writer(&room);
    let before: Vec<_> = (0..30)
        .flat_map(|chunk| {
            store
                .append_batch((chunk * 100..(chunk + 1) * 100).map(mark).collect())
                .unwrap()
        })
        .collect();
    let agent = RunningAgent::spawn_in_network_namespace(&room.config_path, &namespace.name);
    agent.wait_for_log("agent ready", WAIT);

    // The hub cannot open a connection to the room: it is the room that dials.
    let toward_room = SocketAddr::new(IpAddr::V4(namespace.room_ip), room.grpc.port());
    assert!(
        std::net::TcpStream::connect_timeout(&toward_room, Duration::from_secs(2)).is_err(),
        "nothing in the room is reachable from the hub's side"
    );

    let (mut client, certificate) = hub.client_after_links(1);
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificate).unwrap();
    assert_eq!(
        parsed
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "room-P101",
        "the hub knows the room by its certificate"
    );
    hub.wait_for_acked(before.last().unwrap().seq);
    // Events committed while linked follow at once on the same stream.
    let after = store
        .append_batch((3000..3500).map(mark).collect())
        .unwrap();
    hub.wait_for_acked(after.last().unwrap().seq);

    let status = hub
        .block_on(client.get_status(GetStatusRequest {}))
        .unwrap()
        .into_inner();
    let identity = status.room.unwrap();
    assert_eq!(
        (identity.school_code.as_str(), identity.room_id.as_str()),
        ("TEST-01", "P101")
    );
    assert!(
        status.acked_seq >= after.last().unwrap().seq,
        "the room holds the hub's acks: {} < {}",
        status.acked_seq,
        after.last().unwrap().seq
    );
    assert!(assert_exactly_once(&hub, &room) >= 3500);

    let (state, detail, metrics) = link_health(&namespace, &room);
    assert_eq!(state, "ok", "{detail}");
    assert!(
        detail.contains(&format!(
            "linked to the hub at {hub_address} (mutual TLS) since"
        )),
        "{detail}"
    );
    assert_eq!(metric(&metrics, "hub_link_connects_total"), Some(1.0));
    assert_eq!(metric(&metrics, "hub_link_up"), Some(1.0));
}

#[test]
fn a_roster_pushed_over_the_link_is_applied_in_the_room_and_a_stale_one_refused() {
    let certificates = Certificates::new();
    let namespace = Namespace::new();
    let hub_address = namespace.hub_address(free_port());
    let hub = TestHub::start(
        hub_address,
        Some(certificates.dial_in()),
        &certificates.dir.path().join("hub.sqlite3"),
    );
    let room = Room::with_hub(&certificates.room_dialling(hub_address), "");
    let agent = RunningAgent::spawn_in_network_namespace(&room.config_path, &namespace.name);
    agent.wait_for_log("agent ready", WAIT);
    let (mut client, _) = hub.client_after_links(1);
    let roster = |version| PutRosterRequest {
        version,
        pupils: vec![proto::Pupil {
            personal_id: "010206001234".into(),
            full_name: "Nguyễn Thị Hoa".into(),
            class_name: "6A1".into(),
            ..Default::default()
        }],
        teachers: vec![],
        timetable_toml: "[schedule]\ngrace_seconds = 60\n".into(),
    };

    let applied = hub
        .block_on(client.put_roster(roster(7)))
        .unwrap()
        .into_inner();
    assert_eq!((applied.version, applied.pupils), (7, 1));
    let store = writer(&room);
    assert_eq!(store.roster_version().unwrap(), 7);
    assert_eq!(
        store.pupils_of_class("6A1").unwrap()[0].full_name,
        "Nguyễn Thị Hoa"
    );
    let stale = hub.block_on(client.put_roster(roster(6))).unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");
    assert_eq!(store.roster_version().unwrap(), 7);
}

#[test]
fn a_killed_hub_is_redialled_with_back_off_and_resumes_from_its_stored_cursor() {
    let certificates = Certificates::new();
    let namespace = Namespace::new();
    let hub_address = namespace.hub_address(free_port());
    let mut hub = TestHub::start(
        hub_address,
        Some(certificates.dial_in()),
        &certificates.dir.path().join("hub.sqlite3"),
    );
    let room = Room::with_hub(&certificates.room_dialling(hub_address), "");
    let store = writer(&room);
    let first = store.append_batch((0..1000).map(mark).collect()).unwrap();
    let agent = RunningAgent::spawn_in_network_namespace(&room.config_path, &namespace.name);
    hub.wait_for_acked(first.last().unwrap().seq);

    hub.kill();
    agent.wait_for_log("hub link failed", WAIT);
    // Written while the hub is away: they wait in the outbox.
    let second = store
        .append_batch((1000..2000).map(mark).collect())
        .unwrap();
    let refused = agent.wait_for_log("cause=\"unreachable\"", WAIT);
    assert!(refused.contains("retry_in_ms"), "{refused}");
    let (state, detail, metrics) = link_health_once(&namespace, &room, "degraded");
    assert_eq!(state, "degraded", "{detail}");
    assert!(
        detail.contains("cannot link to the hub") && detail.contains("unreachable"),
        "{detail}"
    );
    assert!(metric(&metrics, "hub_link_failures_total{cause=\"unreachable\"}").unwrap() >= 1.0);

    hub.restart();
    hub.client_after_links(1);
    hub.wait_for_acked(second.last().unwrap().seq);
    assert!(assert_exactly_once(&hub, &room) >= 2000);
    let (state, detail, metrics) = link_health(&namespace, &room);
    assert_eq!(state, "ok", "{detail}");
    assert_eq!(metric(&metrics, "hub_link_connects_total"), Some(2.0));
}

#[test]
fn sigkill_at_random_moments_over_many_cycles_leaves_every_event_in_the_hub_once() {
    let certificates = Certificates::new();
    let namespace = Namespace::new();
    let hub_address = namespace.hub_address(free_port());
    let hub = TestHub::start(
        hub_address,
        Some(certificates.dial_in()),
        &certificates.dir.path().join("hub.sqlite3"),
    );
    let room = Room::with_hub(&certificates.room_dialling(hub_address), "");
    let store = Arc::new(writer(&room));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut n, mut last) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<NewEvent> = (0..1 + n % 7).map(|i| mark(n + i)).collect();
                n += batch.len();
                last = store.append_batch(batch).unwrap().last().unwrap().seq;
                // A gap after each commit, so the agent's own writes (acks,
                // health) get SQLite's write lock as beside any real writer.
                std::thread::sleep(Duration::from_millis(2));
            }
            last
        })
    };
    let mut random = rand::rngs::StdRng::seed_from_u64(17);
    for cycle in 0..25 {
        let mut agent =
            RunningAgent::spawn_in_network_namespace(&room.config_path, &namespace.name);
        // The moment: during start-up, or once the hub has stored a random
        // number of further events.
        let further: i64 = random.random_range(0..300);
        if further > 0 {
            let at = *hub.acked.borrow();
            hub.wait_for_acked(at + further);
        }
        agent.kill();
        assert!(
            hub.store.violations.lock().unwrap().is_empty(),
            "cycle {cycle}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let last = writing.join().unwrap();
    let mut agent = RunningAgent::spawn_in_network_namespace(&room.config_path, &namespace.name);
    hub.wait_for_acked(last);
    agent.signal(libc::SIGTERM);
    agent.wait_exit(WAIT).expect("the agent stops");
    let count = assert_exactly_once(&hub, &room);
    assert!(count > 1000, "events were written throughout: {count}");
}

#[test]
fn a_hub_with_a_certificate_from_another_ca_is_refused_and_health_says_why() {
    let certificates = Certificates::new();
    let stranger = Pki::new("another province");
    let (certificate, key) = stranger.issue(
        certificates.dir.path(),
        "impostor",
        &["hub.test"],
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
    );
    let namespace = Namespace::new();
    let hub_address = namespace.hub_address(free_port());
    let hub = TestHub::start(
        hub_address,
        Some((certificate, key, certificates.room_ca.clone())),
        &certificates.dir.path().join("hub.sqlite3"),
    );
    let room = Room::with_hub(&certificates.room_dialling(hub_address), "");
    writer(&room).append(mark(1)).unwrap();
    let agent = RunningAgent::spawn_in_network_namespace(&room.config_path, &namespace.name);
    let line = agent.wait_for_log("hub link failed", WAIT);
    assert!(line.contains("cause=\"certificate\""), "{line}");
    let (state, detail, metrics) = link_health_once(&namespace, &room, "degraded");
    assert_eq!(state, "degraded", "{detail}");
    assert!(
        detail.contains("certificate: the hub's certificate is not trusted")
            && detail.contains("UnknownIssuer"),
        "{detail}"
    );
    assert!(metric(&metrics, "hub_link_failures_total{cause=\"certificate\"}").unwrap() >= 1.0);
    hub.wait_until(|seen| (!seen.refused.is_empty()).then_some(()));
    let seen = hub.seen.lock().unwrap();
    assert_eq!(seen.links, 0, "no link was made: {:?}", seen.refused);
    assert!(
        hub.store.events().is_empty(),
        "nothing reached the impostor"
    );
}

#[test]
fn a_room_whose_certificate_the_hub_does_not_trust_shows_the_hub_refusing_it() {
    let certificates = Certificates::new();
    let other = Certificates::new();
    let namespace = Namespace::new();
    let hub_address = namespace.hub_address(free_port());
    // This hub admits only rooms of `other`'s room CA.
    let hub = TestHub::start(
        hub_address,
        Some((
            certificates.hub.0.clone(),
            certificates.hub.1.clone(),
            other.room_ca.clone(),
        )),
        &certificates.dir.path().join("hub.sqlite3"),
    );
    let room = Room::with_hub(&certificates.room_dialling(hub_address), "");
    let agent = RunningAgent::spawn_in_network_namespace(&room.config_path, &namespace.name);
    let line = agent.wait_for_log("cause=\"tls_refused\"", WAIT);
    assert!(line.contains("hub link failed"), "{line}");
    let (state, detail, _) = link_health_once(&namespace, &room, "degraded");
    assert_eq!(state, "degraded", "{detail}");
    assert!(
        detail.contains("the hub refused the TLS handshake"),
        "{detail}"
    );
    assert_eq!(hub.seen.lock().unwrap().links, 0);
}

#[test]
fn a_room_that_dials_out_and_is_pulled_gives_both_hubs_every_event_once() {
    let certificates = Certificates::new();
    let hub_address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let hub = TestHub::start(
        hub_address,
        Some(certificates.dial_in()),
        &certificates.dir.path().join("hub.sqlite3"),
    );
    let keys = format!(
        "{}client_ca = {:?}\n",
        certificates.room_dialling(hub_address),
        certificates.hub_ca
    );
    let room = Room::with_hub(&keys, "");
    let store = writer(&room);
    let committed = store.append_batch((0..2000).map(mark).collect()).unwrap();
    let _agent = room.start();
    hub.wait_for_acked(committed.last().unwrap().seq);

    // The same room pulled over its listener by the reference client.
    let output = std::process::Command::new(common::agent_binary())
        .args([
            "hub",
            "pull",
            "--endpoint",
            &format!("https://{}", room.grpc),
        ])
        .arg("--ca")
        .arg(&certificates.room_ca)
        .arg("--cert")
        .arg(&certificates.hub.0)
        .arg("--key")
        .arg(&certificates.hub.1)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pulled: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let outbox_ids: Vec<String> = outbox(&room)
        .into_iter()
        .map(|(_, id)| uuid::Uuid::from_slice(&id).unwrap().to_string())
        .collect();
    assert_eq!(pulled, outbox_ids, "the pulling hub got every event once");
    assert!(assert_exactly_once(&hub, &room) >= 2000);
    let health: serde_json::Value =
        serde_json::from_str(&common::http_get(room.http, "/healthz").1).unwrap();
    assert_eq!(health["subsystems"]["hub"]["state"], "ok");
    assert_eq!(health["subsystems"]["hub_link"]["state"], "ok");
}
