//! Hub sync end to end: the real agent binary serving gRPC on loopback, the
//! real `hub pull`/`hub status` client, and this test process writing events
//! into the same database file the way any second process on the room's
//! mini-PC would (SQLite WAL lets it write beside the running agent).

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{Room, agent_binary};
use firmware_agent::clock::SystemClock;
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{self, GetStatusRequest, PullRequest, PutRosterRequest};
use firmware_agent::store::Store;
use firmware_agent::store::outbox::NewEvent;
use pki::Pki;
use serde_json::Value;
use tonic::Code;

/// The room's database, opened by this process as a second writer.
fn writer(room: &Room) -> Store {
    Store::open(&room.database(), Arc::new(SystemClock)).unwrap()
}

/// An attendance mark numbered `n`, so each payload is recognisable.
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

fn endpoint(room: &Room) -> String {
    format!("http://{}", room.grpc)
}

/// Runs `hub pull` to completion and returns its JSON lines.
fn pull_all(room: &Room, extra: &[&str]) -> Vec<Value> {
    let output = Command::new(agent_binary())
        .args(["hub", "pull", "--endpoint", &endpoint(room)])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hub pull failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A `hub pull` left running, its stdout lines arriving on a channel.
struct PullProcess {
    child: Child,
    lines: mpsc::Receiver<Value>,
    reader: std::thread::JoinHandle<()>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl PullProcess {
    fn spawn(room: &Room, extra: &[&str]) -> PullProcess {
        let mut child = Command::new(agent_binary())
            .args(["hub", "pull", "--endpoint", &endpoint(room)])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut errors = child.stderr.take().unwrap();
        let stderr = Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut errors, &mut text);
            text
        }));
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap());
            }
        });
        PullProcess {
            child,
            lines,
            reader,
            stderr,
        }
    }

    fn next(&mut self, timeout: Duration) -> Value {
        self.lines.recv_timeout(timeout).unwrap_or_else(|err| {
            let _ = self.child.kill();
            let stderr = self
                .stderr
                .take()
                .map(|thread| thread.join().unwrap())
                .unwrap_or_default();
            panic!("hub pull printed no event in time ({err}); its stderr: {stderr}")
        })
    }

    /// Waits for the client to exit and returns every line it printed that was not yet taken.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<Value>) {
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        (status, self.lines.try_iter().collect())
    }
}

fn seqs(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .map(|line| line["seq"].as_i64().unwrap())
        .collect()
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["id"].as_str().unwrap().to_owned())
        .collect()
}

fn status_of(room: &Room) -> std::collections::HashMap<String, String> {
    let output = Command::new(agent_binary())
        .args(["hub", "status", "--endpoint", &endpoint(room)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            line.split_once(": ")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[test]
fn ten_thousand_events_arrive_in_order_once_and_resume_from_the_cursor_file() {
    let room = Room::new("");
    let store = writer(&room);
    let mut committed = Vec::new();
    for chunk in 0..10 {
        let batch = (chunk * 1000..(chunk + 1) * 1000).map(mark).collect();
        committed.extend(store.append_batch(batch).unwrap());
    }
    let _agent = room.start();
    let cursor = room.dir.path().join("hub.cursor");
    let cursor_arg = cursor.to_str().unwrap();

    let first = pull_all(
        &room,
        &["--cursor-file", cursor_arg, "--max-events", "4000"],
    );
    assert_eq!(first.len(), 4000);
    assert_eq!(
        std::fs::read_to_string(&cursor).unwrap().trim(),
        committed[3999].seq.to_string()
    );
    let rest = pull_all(&room, &["--cursor-file", cursor_arg]);
    let all: Vec<Value> = first.into_iter().chain(rest).collect();

    let expected_ids: Vec<String> = committed.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(
        seqs(&all),
        committed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
    assert_eq!(ids(&all), expected_ids);
    let sample = &all[1234];
    assert_eq!(sample["kind"], "attendance.mark");
    assert_eq!(sample["school_code"], "TEST-01");
    assert_eq!(sample["room_id"], "P101");
    assert_eq!(
        sample["payload"]["attendance_mark"]["personal_id"],
        "010206001234"
    );
    assert!(sample["clock_synced"].is_boolean() && sample["recorded_at"].is_string());

    let status = status_of(&room);
    assert_eq!(
        status["acked_seq"],
        committed[9999].seq.to_string(),
        "{status:?}"
    );
    assert_eq!(status["backlog"], "0");
    assert_eq!(status["school_code"], "TEST-01");

    let again = pull_all(&room, &["--max-events", "10"]);
    assert_eq!(
        ids(&again),
        expected_ids[..10],
        "an older cursor gives the same events with the same ids"
    );
    let compressed = pull_all(&room, &["--gzip", "--max-events", "2500"]);
    assert_eq!(
        ids(&compressed),
        expected_ids[..2500],
        "gzip when the client asks changes nothing but the bytes"
    );
}

#[test]
fn sigkill_mid_stream_twenty_times_loses_nothing_and_duplicates_nothing() {
    let room = Room::new("");
    let store = Arc::new(writer(&room));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut committed = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<NewEvent> = (0..1 + n % 7).map(|i| mark(n + i)).collect();
                n += batch.len();
                committed.extend(
                    store
                        .append_batch(batch)
                        .unwrap()
                        .into_iter()
                        .map(|e| e.id.to_string()),
                );
                // Hundreds of commits a second, far above a room's rate, but with a
                // gap after each: SQLite hands its write lock to whoever asks first
                // when it is free, and a writer that never lets go would starve the
                // agent's acknowledgements, which no real writer beside it does.
                std::thread::sleep(Duration::from_millis(2));
            }
            committed
        })
    };
    let cursor = room.dir.path().join("hub.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    let mut received = Vec::new();
    for round in 0..20 {
        let mut agent = room.start();
        let mut client = PullProcess::spawn(
            &room,
            &["--cursor-file", cursor_arg, "--follow", "--max-batch", "50"],
        );
        for _ in 0..30 {
            received.push(client.next(Duration::from_secs(30)));
        }
        agent.kill();
        let (status, rest) = client.finish();
        assert!(
            !status.success(),
            "round {round}: the client must notice the agent died"
        );
        received.extend(rest);
    }
    stop.store(true, Ordering::SeqCst);
    let committed = writing.join().unwrap();
    let _agent = room.start();
    received.extend(pull_all(&room, &["--cursor-file", cursor_arg]));

    let received_ids = ids(&received);
    let unique: std::collections::HashSet<&String> = received_ids.iter().collect();
    assert_eq!(unique.len(), received_ids.len(), "each id once");
    assert_eq!(received_ids.len(), committed.len());
    assert_eq!(
        received_ids, committed,
        "what the client stored is what was committed, in order"
    );
    assert!(committed.len() > 600, "events were written throughout");
}

#[test]
fn follow_mode_delivers_a_new_event_within_100_ms() {
    let room = Room::new("");
    let store = writer(&room);
    let _agent = room.start();
    let mut client = PullProcess::spawn(&room, &["--follow"]);
    store.append(mark(0)).unwrap();
    client.next(Duration::from_secs(20));
    let mut delays = Vec::new();
    for n in 1..=15 {
        let committed = store.append(mark(n)).unwrap();
        let since = Instant::now();
        let line = client.next(Duration::from_secs(5));
        delays.push(since.elapsed());
        assert_eq!(line["id"], committed.id.to_string());
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    assert!(
        median < Duration::from_millis(100),
        "median delivery {median:?}; all: {delays:?}"
    );
}

#[test]
fn mutual_tls_admits_the_hub_and_turns_away_clients_without_a_trusted_certificate() {
    let pki_dir = tempfile::tempdir().unwrap();
    let dir = pki_dir.path();
    let room_ca = Pki::new("room CA");
    let hub_ca = Pki::new("hub CA");
    let stranger_ca = Pki::new("someone else");
    let (server_cert, server_key) = room_ca.issue(
        dir,
        "agent",
        &["127.0.0.1", "localhost"],
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
    );
    let (hub_cert, hub_key) = hub_ca.issue(
        dir,
        "hub",
        &["hub.example"],
        vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
    );
    let (stranger_cert, stranger_key) = stranger_ca.issue(
        dir,
        "stranger",
        &["stranger.example"],
        vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
    );
    let room_ca_path = room_ca.write_ca(&dir.join("room-ca.pem"));
    let hub_ca_path = hub_ca.write_ca(&dir.join("hub-ca.pem"));
    let hub = format!(
        "tls_cert = {:?}\ntls_key = {:?}\nclient_ca = {:?}\n",
        server_cert.to_str().unwrap(),
        server_key.to_str().unwrap(),
        hub_ca_path.to_str().unwrap()
    );
    let room = Room::with_hub(&hub, "");
    let agent = room.start();
    let https = format!("https://{}", room.grpc);
    let status = |extra: &[&Path]| {
        let mut command = Command::new(agent_binary());
        command
            .args(["hub", "status", "--endpoint", &https, "--ca"])
            .arg(&room_ca_path);
        if let [cert, key] = extra {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        command.output().unwrap()
    };

    let admitted = status(&[&hub_cert, &hub_key]);
    assert!(
        admitted.status.success(),
        "{}\nagent log:\n{}",
        String::from_utf8_lossy(&admitted.stderr),
        agent.log.lock().unwrap().join("\n")
    );
    assert!(String::from_utf8_lossy(&admitted.stdout).contains("school_code: TEST-01"));

    let without = status(&[]);
    assert_eq!(
        without.status.code(),
        Some(1),
        "no client certificate: {}",
        String::from_utf8_lossy(&without.stdout)
    );
    let stranger = status(&[&stranger_cert, &stranger_key]);
    assert_eq!(
        stranger.status.code(),
        Some(1),
        "a certificate from another CA: {}",
        String::from_utf8_lossy(&stranger.stdout)
    );
    let plaintext = Command::new(agent_binary())
        .args([
            "hub",
            "status",
            "--endpoint",
            &format!("http://{}", room.grpc),
        ])
        .output()
        .unwrap();
    assert_eq!(
        plaintext.status.code(),
        Some(1),
        "plaintext against the TLS port"
    );

    let again = status(&[&hub_cert, &hub_key]);
    assert!(
        again.status.success(),
        "the agent still serves the hub after refusing others"
    );
}

/// Sends raw bytes as a request body to `method`, bypassing the typed client.
mod raw {
    use prost::bytes::{Buf, BufMut};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    pub struct Bytes;

    impl Encoder for Bytes {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Bytes {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }

    impl Codec for Bytes {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Bytes;
        type Decoder = Bytes;
        fn encoder(&mut self) -> Bytes {
            Bytes
        }
        fn decoder(&mut self) -> Bytes {
            Bytes
        }
    }

    pub async fn call(
        channel: tonic::transport::Channel,
        method: &'static str,
        body: Vec<u8>,
    ) -> tonic::Status {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
        grpc.unary(tonic::Request::new(body), path, Bytes)
            .await
            .expect_err("the agent must refuse")
    }
}

async fn client(
    room: &Room,
) -> (
    tonic::transport::Channel,
    SyncServiceClient<tonic::transport::Channel>,
) {
    let channel = tonic::transport::Endpoint::from_shared(endpoint(room))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel.clone(), SyncServiceClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_a_status_and_the_agent_keeps_serving() {
    let room = Room::with_hub("plaintext = true\nmax_message_bytes = 65536\n", "");
    let _agent = room.start_async("agent ready").await;
    let (channel, mut hub) = client(&room).await;

    let truncated_varint = raw::call(
        channel.clone(),
        "/classroom.hub.v1.SyncService/Ack",
        vec![0x08, 0xff, 0xff],
    )
    .await;
    assert_eq!(
        truncated_varint.code(),
        Code::Internal,
        "{truncated_varint:?}"
    );
    assert!(
        truncated_varint.message().contains("decode"),
        "{truncated_varint:?}"
    );

    let oversized = raw::call(
        channel.clone(),
        "/classroom.hub.v1.SyncService/PutRoster",
        vec![0; 100_000],
    )
    .await;
    assert!(
        matches!(oversized.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{oversized:?}"
    );

    let unknown = raw::call(
        channel.clone(),
        "/classroom.hub.v1.SyncService/Delete",
        vec![],
    )
    .await;
    assert_eq!(unknown.code(), Code::Unimplemented);

    let negative = hub
        .pull(PullRequest {
            after_seq: -5,
            max_batch: 0,
            follow: false,
        })
        .await
        .unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
    assert!(negative.message().contains("after_seq"), "{negative:?}");
    let beyond = hub
        .ack(proto::AckRequest {
            seq: 1_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), Code::OutOfRange, "{beyond:?}");

    let status = hub
        .get_status(GetStatusRequest {})
        .await
        .expect("the agent keeps serving")
        .into_inner();
    assert_eq!(status.room.unwrap().room_id, "P101");
    let (_, mut other) = client(&room).await;
    assert!(
        other.get_status(GetStatusRequest {}).await.is_ok(),
        "and serves other clients"
    );
}

fn pupil(id: &str, name: &str, class: &str) -> proto::Pupil {
    proto::Pupil {
        personal_id: id.into(),
        full_name: name.into(),
        class_name: class.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_roster_applies_whole_and_refuses_bad_rows_and_stale_versions_changing_nothing() {
    let room = Room::new("");
    let _agent = room.start_async("agent ready").await;
    let (_, mut hub) = client(&room).await;
    let store = writer(&room);
    let roster = |version, pupils| PutRosterRequest {
        version,
        pupils,
        teachers: vec![proto::Teacher {
            personal_id: "010186004321".into(),
            full_name: "Trần Văn Nam".into(),
        }],
        timetable_toml: "[schedule]\ngrace_seconds = 60\n".into(),
    };

    let applied = hub
        .put_roster(roster(
            3,
            vec![
                pupil("010206001234", "Nguyễn Thị Hoa", "6A1"),
                pupil("010206001235", "Lò Văn Páo", "6A1"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (applied.version, applied.pupils, applied.teachers),
        (3, 2, 1)
    );

    let bad = roster(
        4,
        vec![
            pupil("010206001236", "Giàng A Sử", "6A2"),
            pupil("01020600123X", "Vàng Thị Mai", "6A2"),
        ],
    );
    let refused = hub.put_roster(bad).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("pupils[1].personal_id"),
        "{}",
        refused.message()
    );
    assert_eq!(
        store.pupils_of_class("6A1").unwrap().len(),
        2,
        "nothing applied"
    );
    assert!(
        store.pupils_of_class("6A2").unwrap().is_empty(),
        "nothing applied"
    );
    assert_eq!(store.roster_version().unwrap(), 3);

    let stale = hub
        .put_roster(roster(3, vec![pupil("010206001236", "Giàng A Sử", "6A2")]))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    assert!(store.pupils_of_class("6A2").unwrap().is_empty());

    hub.put_roster(roster(5, vec![pupil("010206001236", "Giàng A Sử", "6A2")]))
        .await
        .unwrap();
    assert!(
        store.pupils_of_class("6A1").unwrap().is_empty(),
        "the roster is replaced whole"
    );
    assert_eq!(
        store.pupils_of_class("6A2").unwrap()[0].full_name,
        "Giàng A Sử"
    );
    let timetable = store.pushed_timetable().unwrap().unwrap();
    assert_eq!(
        (timetable.version, timetable.toml.as_str()),
        (5, "[schedule]\ngrace_seconds = 60\n")
    );
    let status = hub
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.roster_version, 5);
}

#[test]
fn unusable_tls_files_stop_the_agent_before_ready_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("broken.key");
    std::fs::write(&not_a_key, "this is not a key\n").unwrap();
    let ca = Pki::new("room CA");
    let (cert, _) = ca.issue(
        dir.path(),
        "agent",
        &["127.0.0.1"],
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
    );
    let ca_path = ca.write_ca(&dir.path().join("ca.pem"));
    let hub = format!(
        "tls_cert = {:?}\ntls_key = {:?}\nclient_ca = {:?}\n",
        cert.to_str().unwrap(),
        not_a_key.to_str().unwrap(),
        ca_path.to_str().unwrap()
    );
    let room = Room::with_hub(&hub, "");
    let mut agent = common::RunningAgent::spawn(&room.config_path, &[]);
    let line = agent.wait_for_log("the agent did not start", Duration::from_secs(20));
    assert!(
        line.contains("hub.tls_key") && line.contains("no PEM block"),
        "{line}"
    );
    let status = agent
        .wait_exit(Duration::from_secs(20))
        .expect("the agent exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        !agent
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("agent ready"))
    );
}

#[test]
fn sigterm_ends_follow_streams_and_the_agent_exits_cleanly() {
    let room = Room::new("");
    let store = writer(&room);
    let mut agent = room.start();
    let mut client = PullProcess::spawn(&room, &["--follow"]);
    let committed = store.append(mark(1)).unwrap();
    assert_eq!(
        client.next(Duration::from_secs(20))["id"],
        committed.id.to_string()
    );
    agent.signal(libc::SIGTERM);
    let status = agent
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 seconds of SIGTERM with a hub following");
    assert_eq!(status.code(), Some(0));
    let (client_status, rest) = client.finish();
    assert_eq!(
        client_status.code(),
        Some(1),
        "the hub is told the stream ended early"
    );
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_content_streams_a_file_into_the_content_store_whole_or_not_at_all() {
    use sha2::Digest;
    let room = Room::new("");
    let _agent = room.start_async("agent ready").await;
    let (_, mut hub) = client(&room).await;
    let video: Vec<u8> = (0..3_000_000u32).map(|n| (n % 251) as u8).collect();
    let sha256 = sha2::Sha256::digest(&video).to_vec();
    let chunks = |data: Vec<u8>, sha256: Vec<u8>| {
        let mut messages = Vec::new();
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            let mut chunk = proto::PutContentChunk {
                data: piece.to_vec(),
                ..Default::default()
            };
            if i == 0 {
                chunk.name = "toan/lop6/bai-3.mp4".into();
                chunk.size = data.len() as u64;
                chunk.sha256 = sha256.clone();
            }
            messages.push(chunk);
        }
        tokio_stream::iter(messages)
    };
    let stored = hub
        .put_content(chunks(video.clone(), sha256.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stored.name.as_str(), stored.size),
        ("toan/lop6/bai-3.mp4", video.len() as u64)
    );
    let on_disk = room.data_dir().join("content/toan/lop6/bai-3.mp4");
    assert_eq!(std::fs::read(&on_disk).unwrap(), video);

    // A corrupted transfer is refused and the file tablets see stays as it was.
    let mut corrupted = video.clone();
    corrupted[1_500_000] ^= 0xFF;
    let refused = hub
        .put_content(chunks(corrupted, sha256))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::DataLoss, "{}", refused.message());
    assert_eq!(std::fs::read(&on_disk).unwrap(), video);
    let escape = hub
        .put_content(tokio_stream::iter(vec![proto::PutContentChunk {
            name: "../agent.sqlite3".into(),
            size: 1,
            sha256: vec![0; 32],
            data: vec![1],
        }]))
        .await
        .unwrap_err();
    assert_eq!(escape.code(), Code::InvalidArgument, "{}", escape.message());
}

/// POSTs JSON to the agent's HTTP API on loopback (the panel's place: no PIN), returning status and body.
fn post_json(address: std::net::SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .post(&format!("http://{address}{path}"))
        .send_json(body)
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    (
        response.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A choice question whose prompt and 12 choices each hold `chars` Vietnamese letters of 3 bytes.
fn long_question(id: &str, chars: usize) -> Value {
    let text = "ữ".repeat(chars);
    let choices: Vec<Value> = (0..12)
        .map(|i| serde_json::json!({ "id": format!("c{i}"), "text": text }))
        .collect();
    serde_json::json!({ "id": id, "question_kind": "single_choice", "prompt": text, "choices": choices })
}

/// The 1-based line of the first line of `path` containing `needle`.
fn line_of(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|line| line.contains(needle))
        .unwrap()
        + 1
}

#[test]
fn a_70_kb_question_is_refused_at_its_source_under_a_64_kib_limit_which_check_config_holds_to_the_largest_event()
 {
    let room = Room::with_hub("plaintext = true\nmax_message_bytes = 65536\n", "");
    let checked = Command::new(agent_binary())
        .arg("check-config")
        .arg(&room.config_path)
        .output()
        .unwrap();
    assert_eq!(
        checked.status.code(),
        Some(0),
        "a 64 KiB limit holds every event: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let agent = room.start();
    let mut hub = PullProcess::spawn(&room, &["--follow"]);

    let large = long_question("q-large", 1_950);
    assert!(serde_json::to_string(&large).unwrap().len() > 70_000);
    let (status, body) = post_json(room.http, "/api/lesson/question/start", large);
    assert_eq!(status, 400, "{body}");
    let refusal = body.to_string();
    assert!(
        refusal.contains("Lệnh quá dài") && refusal.contains("shorten its text or choices"),
        "{refusal}"
    );

    let (status, body) = post_json(
        room.http,
        "/api/lesson/question/start",
        long_question("q-fits", 800),
    );
    assert_eq!(status, 200, "a question within the bound is given: {body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let line = hub.next(deadline.saturating_duration_since(Instant::now()));
        if line["kind"] == "lesson.record" {
            break line;
        }
    };
    assert_eq!(
        record["payload"]["lesson_record"]["command"], "question.start",
        "{record}"
    );
    assert!(
        record["payload"]["lesson_record"]["arguments"]["id"] == "q-fits",
        "the refused question left no record: {record}"
    );
    drop(agent);
    let _ = hub.child.kill();

    let smallest = firmware_agent::hub::wire::largest_message();
    room.write_config_with_hub(
        &format!("plaintext = true\nmax_message_bytes = {}\n", smallest - 1),
        "",
    );
    let refused = Command::new(agent_binary())
        .arg("check-config")
        .arg(&room.config_path)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let line = line_of(&room.config_path, "max_message_bytes");
    let at = format!("{}:{line}:", room.config_path.display());
    assert!(stderr.contains(&at), "LINE:COL of the key ({at}): {stderr}");
    assert!(
        stderr.contains(&format!(
            "is below {smallest}, the largest message one event of this agent can need"
        )),
        "{stderr}"
    );
}

#[test]
fn an_undeliverable_row_is_skipped_with_its_seq_and_the_events_after_it_are_delivered() {
    let room = Room::new("");
    let mut agent = room.start();
    let store = writer(&room);
    let before = store.append(mark(1)).unwrap().seq;
    // Another build's row, of a kind this build does not know: 5 MiB, over the
    // default 4 MiB message limit, written as no producer of this build can.
    let huge = store
        .write(|tx| {
            tx.execute(
                "INSERT INTO outbox (id, kind, occurred_at_ms, recorded_at_ms, clock_synced, clock_step_back_ms, payload)
                 VALUES (?1, 'lesson.poll', 0, 0, 1, 0, ?2)",
                rusqlite::params![uuid::Uuid::now_v7().as_bytes(), vec![b'x'; 5 * 1024 * 1024]],
            )?;
            Ok(tx.last_insert_rowid())
        })
        .unwrap();
    let after: Vec<i64> = store
        .append_batch((2..5).map(mark).collect())
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();

    let cursor = room.dir.path().join("cursor");
    let output = Command::new(agent_binary())
        .args([
            "hub",
            "pull",
            "--endpoint",
            &endpoint(&room),
            "--cursor-file",
        ])
        .arg(&cursor)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs = seqs(&lines);
    let position = seqs
        .iter()
        .position(|seq| *seq == huge)
        .expect("the skipped seq is in the stream");
    assert!(seqs.contains(&before));
    assert_eq!(
        &seqs[position + 1..],
        &after[..],
        "every event after it was delivered, in order"
    );
    let skipped = &lines[position];
    assert!(skipped["payload"].is_null(), "{skipped}");
    assert_eq!(skipped["kind"], "lesson.poll");
    let reason = skipped["skipped"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("hub.max_message_bytes is 4194304"),
        "{reason}"
    );
    assert!(skipped["skipped"]["message_bytes"].as_u64().unwrap() > 5 * 1024 * 1024);
    assert!(
        stderr.contains(&format!("warning: seq {huge} (lesson.poll) was skipped")),
        "{stderr}"
    );
    agent.wait_for_log(
        "an event was skipped in the hub's stream",
        Duration::from_secs(10),
    );
    let scrape = common::http_get(room.http, "/metrics").1;
    assert_eq!(
        common::metric(&scrape, "hub_pull_events_skipped_total"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        std::fs::read_to_string(&cursor).unwrap().trim(),
        after[2].to_string()
    );
    assert_eq!(
        status_of(&room)["acked_seq"],
        after[2].to_string(),
        "the hub acknowledged past the skipped event"
    );
    agent.signal(libc::SIGTERM);
    agent
        .wait_exit(Duration::from_secs(10))
        .expect("the agent stops");
}

/// Reads a follow stream of an agent on a simulated clock until its first heartbeat, noting the batches'
/// outbox identities: once the batches reached `newest`, lets the heartbeat interval pass on the agent's
/// clock, twice, in case the agent was still noting its last batch when the clock first moved.
async fn first_heartbeat(
    stream: &mut tonic::Streaming<proto::PullResponse>,
    agent: &mut common::RunningAgent,
    newest: i64,
) -> (proto::Heartbeat, Vec<Vec<u8>>) {
    let mut identities = Vec::new();
    let mut caught_up = newest == 0;
    loop {
        if caught_up {
            tokio::task::block_in_place(|| {
                agent.advance("5s");
                agent.advance("5s");
            });
        }
        let message = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("a heartbeat in time")
            .unwrap();
        match message.and_then(|m| m.message) {
            Some(proto::pull_response::Message::Heartbeat(heartbeat)) => {
                return (heartbeat, identities);
            }
            Some(proto::pull_response::Message::Batch(batch)) => {
                caught_up = batch.events.last().is_some_and(|event| event.seq >= newest);
                identities.push(batch.outbox_identity);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_moved_aside_under_a_resuming_hub_shows_a_new_identity_and_refuses_the_old_cursor()
 {
    let room = Room::new("");
    let mut agent = room.start_async("agent ready").await;
    let store = writer(&room);
    store.append_batch((0..30).map(mark).collect()).unwrap();
    drop(store);
    let cursor = room.dir.path().join("cursor");
    let cursor_arg = cursor.to_str().unwrap().to_owned();
    let room_ref = &room;
    let pulled =
        tokio::task::block_in_place(|| pull_all(room_ref, &["--cursor-file", &cursor_arg]));
    let old_cursor = *seqs(&pulled).last().unwrap();
    let old_identity = pulled[0]["outbox_identity"].as_str().unwrap().to_owned();
    assert!(
        pulled
            .iter()
            .all(|line| line["outbox_identity"] == old_identity.as_str())
    );

    agent.signal(libc::SIGTERM);
    agent
        .wait_exit(Duration::from_secs(10))
        .expect("the agent stops");
    let aside = room.dir.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    for entry in std::fs::read_dir(room.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("agent.sqlite3")
        {
            std::fs::rename(&path, aside.join(path.file_name().unwrap())).unwrap();
        }
    }
    // On a simulated clock from here: the heartbeat interval passes when the test says so.
    let mut agent = tokio::task::block_in_place(|| room.start_at("2026-09-07T07:00:00+07:00"));
    writer(&room)
        .append_batch((0..2).map(mark).collect())
        .unwrap();

    let (_, mut hub) = client(&room).await;
    let status = hub
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let new_identity = uuid::Uuid::from_slice(&status.outbox_identity).unwrap();
    assert_ne!(
        new_identity.to_string(),
        old_identity,
        "a new outbox has a new identity"
    );
    assert!(
        status.last_seq < old_cursor,
        "the new outbox is shorter: {} < {old_cursor}",
        status.last_seq
    );

    let (changed, resumed) = tokio::task::block_in_place(|| {
        let changed = Command::new(agent_binary())
            .args([
                "hub",
                "pull",
                "--endpoint",
                &endpoint(room_ref),
                "--cursor-file",
                &cursor_arg,
                "--outbox-identity",
                &old_identity,
            ])
            .output()
            .unwrap();
        let resumed = Command::new(agent_binary())
            .args([
                "hub",
                "pull",
                "--endpoint",
                &endpoint(room_ref),
                "--cursor-file",
                &cursor_arg,
            ])
            .output()
            .unwrap();
        (changed, resumed)
    });
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert_eq!(changed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "outbox identity changed: it is now {new_identity}, not {old_identity}"
        )),
        "{stderr}"
    );
    assert!(changed.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("OutOfRange")
            && stderr.contains(&format!(
                "after_seq {old_cursor} is beyond the newest event"
            )),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the room's database was replaced"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&cursor).unwrap().trim(),
        old_cursor.to_string(),
        "the cursor file is untouched"
    );

    let beyond = hub
        .pull(PullRequest {
            after_seq: old_cursor,
            max_batch: 0,
            follow: true,
        })
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), Code::OutOfRange, "{beyond:?}");
    assert!(
        beyond.message().contains(&new_identity.to_string()),
        "{beyond:?}"
    );
    let old = uuid::Uuid::parse_str(&old_identity).unwrap();
    let into_other = hub
        .ack(proto::AckRequest {
            seq: 1,
            outbox_identity: old.as_bytes().to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        into_other.code(),
        Code::FailedPrecondition,
        "{into_other:?}"
    );
    assert_eq!(
        hub.get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .acked_seq,
        0,
        "nothing was acknowledged"
    );

    let newest = hub
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_seq;
    let mut stream = hub
        .pull(PullRequest {
            after_seq: 0,
            max_batch: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    let (heartbeat, batches) = first_heartbeat(&mut stream, &mut agent, newest).await;
    let last_seq = hub
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_seq;
    assert_eq!(
        heartbeat.last_seq, last_seq,
        "the heartbeat says the newest committed seq"
    );
    assert_eq!(heartbeat.outbox_identity, new_identity.as_bytes().to_vec());
    assert!(
        !batches.is_empty()
            && batches
                .iter()
                .all(|identity| identity == new_identity.as_bytes())
    );
    let acked = hub
        .ack(proto::AckRequest {
            seq: last_seq,
            outbox_identity: new_identity.as_bytes().to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(acked.into_inner().acked_seq, last_seq);
}

#[test]
fn healthz_and_metrics_count_an_erasure_committed_by_face_forget_beside_the_agent() {
    let room = Room::new("");
    let _agent = room.start();
    let health =
        || -> Value { serde_json::from_str(&common::http_get(room.http, "/healthz").1).unwrap() };
    let before = health()["database"]["last_seq"].as_i64().unwrap();
    let forgotten = room.command(&["face", "forget", "--student", "010206001234"]);
    assert!(
        forgotten.status.success(),
        "{}",
        String::from_utf8_lossy(&forgotten.stderr)
    );
    let last_seq: i64 = status_of(&room)["last_seq"].parse().unwrap();
    assert!(
        last_seq > before,
        "the erasure was committed: {last_seq} > {before}"
    );
    assert_eq!(health()["database"]["last_seq"].as_i64(), Some(last_seq));
    let scrape = common::http_get(room.http, "/metrics").1;
    assert_eq!(
        common::metric(&scrape, "agent_outbox_last_seq"),
        Some(last_seq as f64),
        "{scrape}"
    );
}
