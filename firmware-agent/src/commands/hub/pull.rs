//! `firmware-agent hub pull|status`: the reference hub client, for IT staff
//! checking a room and for the end-to-end tests.
//!
//! # Design
//! `hub pull` is a hub in miniature: it prints each event as one JSON line on
//! stdout, flushes, saves the cursor file (write a temporary file, fsync,
//! rename, fsync the directory), and only then acknowledges. So what the agent
//! may prune is always something already written out, and a rerun with the same
//! cursor file continues after the last line written. The one window left is a
//! crash of this client between flushing and renaming the cursor file, after
//! which the last batch is printed again with the same ids; a real hub closes
//! it by storing events and cursor in one transaction.
//!
//! An event the agent cannot send arrives as a skip notice in its place: it is
//! printed as a JSON line with `skipped` instead of `payload`, warned about on
//! stderr, and the cursor moves past it like past an event. Every line and
//! every ack names the outbox identity it came from; given
//! `--outbox-identity`, the command first checks that the agent still keeps
//! that outbox and stops with a clear message when it does not (the room's
//! database was replaced: the cursor means nothing there).
//!
//! Speed: lines are serialised straight from the received messages into one
//! buffer written once a batch, while a second runtime worker reads and
//! decodes the stream; the sync bench compares it with a plain Python grpcio
//! client on the same backlog.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::exit::Exit;
use crate::proto::sync_service_client::SyncServiceClient;
use crate::proto::{
    AckRequest, Event, GetStatusRequest, PullRequest, SkippedEvent, event, pull_response,
};

/// How to reach the agent.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `http://host:port` (plaintext) or `https://host:port` (mutual TLS).
    pub endpoint: String,
    /// The CA that signed the agent's certificate (PEM).
    pub ca: Option<PathBuf>,
    /// This client's certificate and key (PEM), signed by the agent's `hub.client_ca`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Ask for gzip-compressed responses.
    pub gzip: bool,
}

/// What `hub pull` is asked to do.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub cursor_file: Option<PathBuf>,
    pub follow: bool,
    pub max_events: Option<u64>,
    pub max_batch: u32,
    /// The outbox the cursor belongs to, when known.
    pub outbox_identity: Option<uuid::Uuid>,
}

/// Lines are gathered here and written out once a batch: one write call a
/// batch rather than one a line, as stdout's own line buffering would make.
const OUTPUT_BUFFER_BYTES: usize = 1 << 16;

/// Why the command stopped: a message and the exit code it means.
struct Failure(Exit, String);

impl Failure {
    fn input(message: impl Into<String>) -> Failure {
        Failure(Exit::InvalidInput, message.into())
    }
    fn failed(message: impl Into<String>) -> Failure {
        Failure(Exit::Failure, message.into())
    }
    fn status(what: &str, status: tonic::Status) -> Failure {
        let exit = if status.code() == Code::InvalidArgument {
            Exit::InvalidInput
        } else {
            Exit::Failure
        };
        let hint = match status.code() {
            Code::Unknown | Code::Unavailable | Code::Cancelled => {
                "\n  hint: the connection to the agent was lost; what was printed is saved, rerun with the same --cursor-file to continue"
            }
            // OUT_OF_RANGE also reports a message over a size limit; only this one is a replaced database.
            Code::OutOfRange if status.message().contains("beyond the newest event") => {
                "\n  hint: the room's database was replaced; keep what was pulled so far, then pull the new outbox from 0 (a new --cursor-file) with its --outbox-identity"
            }
            _ => "",
        };
        Failure(
            exit,
            format!("{what}: {:?}: {}{hint}", status.code(), status.message()),
        )
    }
}

fn finish(result: Result<(), Failure>) -> Exit {
    match result {
        Ok(()) => Exit::Success,
        Err(Failure(exit, message)) => {
            eprintln!("{message}");
            exit
        }
    }
}

/// Two workers: one reads and decodes the stream while the other writes lines.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a two-thread runtime starts")
}

/// `hub pull`: prints events as JSON lines, saves the cursor, acks.
pub fn pull(connection: &Connection, options: &PullOptions) -> Exit {
    finish(runtime().block_on(run_pull(connection, options)))
}

/// `hub status`: prints the agent's status.
pub fn status(connection: &Connection) -> Exit {
    finish(runtime().block_on(run_status(connection)))
}

async fn connect(connection: &Connection) -> Result<SyncServiceClient<Channel>, Failure> {
    let endpoint = Endpoint::from_shared(connection.endpoint.clone())
        .map_err(|err| {
            Failure::input(format!(
                "--endpoint {}: {err}\n  hint: write it as http://HOST:PORT or https://HOST:PORT",
                connection.endpoint
            ))
        })?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30));
    let tls = connection.endpoint.starts_with("https://");
    let endpoint = match (tls, &connection.ca, &connection.cert, &connection.key) {
        (true, Some(ca), cert, key) => {
            crate::hub::tls::install_crypto_provider();
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca", ca)?));
            match (cert, key) {
                (Some(cert), Some(key)) => {
                    config = config.identity(Identity::from_pem(
                        read("--cert", cert)?,
                        read("--key", key)?,
                    ))
                }
                (None, None) => {}
                _ => return Err(Failure::input("--cert and --key go together")),
            }
            endpoint
                .tls_config(config)
                .map_err(|err| Failure::input(format!("TLS files: {err}")))?
        }
        (true, None, ..) => {
            return Err(Failure::input(
                "an https:// endpoint needs --ca (the CA that signed the agent's certificate)",
            ));
        }
        (false, None, None, None) => endpoint,
        (false, ..) => {
            return Err(Failure::input(
                "--ca, --cert and --key are for https:// endpoints; this one is plaintext",
            ));
        }
    };
    let channel = endpoint.connect().await.map_err(|err| {
        Failure::failed(format!(
            "{}: cannot connect: {}",
            connection.endpoint,
            error_chain(&err)
        ))
    })?;
    let mut client = SyncServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    if connection.gzip {
        client = client.accept_compressed(CompressionEncoding::Gzip);
    }
    Ok(client)
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|err| Failure::input(format!("{flag} {}: cannot read: {err}", path.display())))
}

async fn run_pull(connection: &Connection, options: &PullOptions) -> Result<(), Failure> {
    let mut cursor = match &options.cursor_file {
        Some(path) => read_cursor(path)?,
        None => 0,
    };
    let mut client = connect(connection).await?;
    let mut outbox = options.outbox_identity;
    if let Some(expected) = outbox {
        let status = client
            .get_status(GetStatusRequest {})
            .await
            .map_err(|status| Failure::status("status", status))?
            .into_inner();
        check_outbox(expected, &status.outbox_identity)?;
    }
    let request = PullRequest {
        after_seq: cursor,
        max_batch: options.max_batch,
        follow: options.follow,
    };
    let mut stream = client
        .pull(request)
        .await
        .map_err(|status| Failure::status("pull", status))?
        .into_inner();
    let mut left = options.max_events.unwrap_or(u64::MAX);
    let mut out = std::io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout().lock());
    while left > 0 {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => return Err(Failure::status("pull", status)),
        };
        let printed = match message.message {
            Some(pull_response::Message::Batch(batch)) => {
                let identity = accept_outbox(&mut outbox, &batch.outbox_identity)?;
                let identity = identity.to_string();
                let wanted = usize::try_from(left).unwrap_or(usize::MAX);
                let events = &batch.events[..batch.events.len().min(wanted)];
                for event in events {
                    write_line(
                        &mut out,
                        &mut cursor,
                        event.seq,
                        &EventLine::new(event, &identity),
                    )?;
                }
                events.len()
            }
            Some(pull_response::Message::Skipped(skipped)) => {
                eprintln!(
                    "warning: seq {} ({}) was skipped by the agent: {}",
                    skipped.seq, skipped.kind, skipped.reason
                );
                accept_outbox(&mut outbox, &skipped.outbox_identity)?;
                write_line(&mut out, &mut cursor, skipped.seq, &skipped_line(&skipped))?;
                1
            }
            Some(pull_response::Message::Heartbeat(heartbeat)) => {
                accept_outbox(&mut outbox, &heartbeat.outbox_identity)?;
                continue;
            }
            None => continue,
        };
        if printed == 0 {
            continue;
        }
        out.flush()
            .map_err(|err| Failure::failed(format!("stdout: {err}")))?;
        left = left.saturating_sub(printed as u64);
        if let Some(path) = &options.cursor_file {
            save_cursor(path, cursor)?;
        }
        let identity = outbox.expect("a line was printed, so its outbox is known");
        let ack = AckRequest {
            seq: cursor,
            outbox_identity: identity.as_bytes().to_vec(),
        };
        client
            .ack(ack)
            .await
            .map_err(|status| Failure::status("ack", status))?;
    }
    Ok(())
}

/// Prints one line, after checking it comes after the cursor, and moves the cursor to it.
fn write_line(
    out: &mut impl Write,
    cursor: &mut i64,
    seq: i64,
    line: &impl serde::Serialize,
) -> Result<(), Failure> {
    if seq <= *cursor {
        return Err(Failure::failed(format!(
            "the agent sent seq {seq} after {cursor}: out of order"
        )));
    }
    serde_json::to_writer(&mut *out, line)
        .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
        .map_err(|err| Failure::failed(format!("stdout: {err}")))?;
    *cursor = seq;
    Ok(())
}

/// The outbox a message names: the first one seen, or else the one expected.
fn accept_outbox(outbox: &mut Option<uuid::Uuid>, sent: &[u8]) -> Result<uuid::Uuid, Failure> {
    match *outbox {
        Some(expected) => check_outbox(expected, sent),
        None => Ok(*outbox.insert(outbox_of(sent)?)),
    }
}

/// The identity as the agent sent it.
fn outbox_of(bytes: &[u8]) -> Result<uuid::Uuid, Failure> {
    uuid::Uuid::from_slice(bytes).map_err(|_| {
        Failure::failed(format!(
            "the agent sent no outbox identity (got {} bytes); is it an older build?",
            bytes.len()
        ))
    })
}

/// The identity the agent sent, when it is the one expected.
fn check_outbox(expected: uuid::Uuid, sent: &[u8]) -> Result<uuid::Uuid, Failure> {
    let sent = outbox_of(sent)?;
    if sent == expected {
        return Ok(sent);
    }
    Err(Failure::failed(format!(
        "the agent's outbox identity changed: it is now {sent}, not {expected}: the room's database was replaced, and the cursor means nothing there; nothing was acknowledged\n  hint: keep what was pulled from {expected}, then pull the new outbox from 0 (a new --cursor-file) with --outbox-identity {sent}"
    )))
}

/// A skipped event's line: its place in the stream and why it holds no payload.
fn skipped_line(skipped: &SkippedEvent) -> serde_json::Value {
    serde_json::json!({
        "seq": skipped.seq,
        "id": uuid_text(&skipped.id),
        "kind": skipped.kind,
        "outbox_identity": uuid_text(&skipped.outbox_identity),
        "skipped": { "message_bytes": skipped.message_bytes, "reason": skipped.reason },
    })
}

fn uuid_text(bytes: &[u8]) -> String {
    uuid::Uuid::from_slice(bytes)
        .map(|id| id.to_string())
        .unwrap_or_else(|_| hex::encode(bytes))
}

/// One event as a JSON line: ids and times as text, the payload under its case name.
#[derive(serde::Serialize)]
struct EventLine<'a> {
    seq: i64,
    id: String,
    kind: &'a str,
    occurred_at: Option<String>,
    recorded_at: Option<String>,
    clock_synced: bool,
    clock_step_back_ms: i64,
    school_code: &'a str,
    room_id: &'a str,
    outbox_identity: &'a str,
    payload: Option<CaseNamed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_payload_base64: Option<String>,
}

impl<'a> EventLine<'a> {
    fn new(event: &'a Event, outbox_identity: &'a str) -> EventLine<'a> {
        let time = |t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
                .map(|t| t.to_string())
        };
        let raw_payload_base64 = (!event.raw_payload.is_empty()).then(|| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&event.raw_payload)
        });
        EventLine {
            seq: event.seq,
            id: uuid_text(&event.id),
            kind: &event.kind,
            occurred_at: time(&event.occurred_at),
            recorded_at: time(&event.recorded_at),
            clock_synced: event.clock_synced,
            clock_step_back_ms: event.clock_step_back_ms,
            school_code: event.room.as_ref().map_or("", |room| &room.school_code),
            room_id: event.room.as_ref().map_or("", |room| &room.room_id),
            outbox_identity,
            payload: event.payload.as_ref().map(CaseNamed),
            raw_payload_base64,
        }
    }
}

/// A payload as `{"case_name": {...}}`.
struct CaseNamed<'a>(&'a event::Payload);

impl serde::Serialize for CaseNamed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.0.case_name(), &self.0.to_json())?;
        map.end()
    }
}

fn read_cursor(path: &Path) -> Result<i64, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<i64>().ok().filter(|seq| *seq >= 0).ok_or_else(|| {
            Failure::input(format!(
                "--cursor-file {}: `{}` is not a cursor (a sequence number)\n  hint: delete the file to pull from the beginning of what the agent keeps",
                path.display(),
                text.trim()
            ))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(err) => Err(Failure::input(format!("--cursor-file {}: cannot read: {err}", path.display()))),
    }
}

/// Replaces the cursor file atomically and durably.
fn save_cursor(path: &Path, seq: i64) -> Result<(), Failure> {
    let fail = |err: std::io::Error| {
        Failure::failed(format!(
            "--cursor-file {}: cannot save: {err}",
            path.display()
        ))
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary).map_err(fail)?;
    file.write_all(format!("{seq}\n").as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)?;
    Ok(())
}

async fn run_status(connection: &Connection) -> Result<(), Failure> {
    let mut client = connect(connection).await?;
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .map_err(|status| Failure::status("status", status))?
        .into_inner();
    let time = |t: Option<prost_types::Timestamp>| {
        t.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
            .map_or_else(|| "-".to_owned(), |t| t.to_string())
    };
    let room = status.room.unwrap_or_default();
    println!("school_code: {}", room.school_code);
    println!("room_id: {}", room.room_id);
    println!("software_version: {}", status.software_version);
    println!("last_seq: {}", status.last_seq);
    println!("acked_seq: {}", status.acked_seq);
    println!("backlog: {}", status.backlog);
    println!("oldest_unacked_seq: {}", status.oldest_unacked_seq);
    println!("oldest_unacked_at: {}", time(status.oldest_unacked_at));
    println!("free_disk_bytes: {}", status.free_disk_bytes);
    println!("agent_time: {}", time(status.agent_time));
    println!("clock_synced: {}", status.clock_synced);
    println!("roster_version: {}", status.roster_version);
    println!("outbox_identity: {}", uuid_text(&status.outbox_identity));
    Ok(())
}
