//! The fuzzing harnesses: one function for each input the agent takes from
//! outside, fed arbitrary bytes the way the agent would be.
//!
//! # Design
//! - A harness goes through the agent's own public path (the parser, the
//!   checks, the state machine, the error message a person reads), so a panic
//!   here is a panic in the agent. Each is a plain function: libFuzzer calls it
//!   from `fuzz_targets/`, and `tests/fuzz_corpus.rs` replays every file of
//!   `corpus/` through it on stable Rust in `make test`.
//! - Structured inputs are cut from the bytes with the least framing that
//!   reaches the state behind the parser: one tablet frame a line, the gRPC
//!   method in the first byte and its protobuf message after it.
//! - Formatting every error is part of each harness: a message that cannot be
//!   written (an offset past the text, say) is a crash as much as any other.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use firmware_agent::attendance::pipeline;
use firmware_agent::clock::Monotonic;
use firmware_agent::config::{Config, diagnostics};
use firmware_agent::hub::cursor::{self, PullCursor, Step};
use firmware_agent::hub::service::checked_roster;
use firmware_agent::proto::{AckRequest, PullRequest, PutContentChunk, PutRosterRequest};
use firmware_agent::roster;
use firmware_agent::schedule::{Timetable, pushed, timetable};
use firmware_agent::tablets::content::store_pushed;
use firmware_agent::tablets::protocol::{self, Command, TabletMessage};
use firmware_agent::tablets::session::{Audience, Session};
use jiff::Timestamp;
use jiff::civil::Date;
use prost::Message;
use uuid::Uuid;

/// The demo room's config: pushed rosters and timetables are checked against it.
fn room_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::parse(
            Path::new("config/demo.toml"),
            include_str!("../../config/demo.toml"),
        )
        .expect("the demo config is valid")
    })
}

/// Frames from two tablets, taking turns line by line, and teacher's commands
/// (a line that is a [`Command`]) through the protocol's parser and the lesson's
/// session, a second of monotonic and wall time passing at each line.
pub fn tablet_messages(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // a WebSocket text frame is UTF-8 before it reaches the parser
    };
    let limit = room_config().tablets.max_message_bytes;
    let connected: BTreeSet<String> = ["bàn-1".to_owned(), "bàn-2".to_owned()].into();
    let mut session = Session::new(Duration::from_secs(10));
    let mut at = Monotonic::default();
    let mut now = Timestamp::from_second(1_788_000_000).expect("a valid instant");
    for (turn, frame) in text.lines().enumerate() {
        let tablet = if turn % 2 == 0 { "bàn-1" } else { "bàn-2" };
        at = at + Duration::from_secs(1);
        now += jiff::SignedDuration::from_secs(1);
        if let Ok(command) = serde_json::from_str::<Command>(frame) {
            // Every third command goes to the class, the others to one tablet.
            let audience = if turn % 3 == 0 {
                Audience::Class
            } else {
                Audience::Tablets {
                    ids: [tablet.to_owned()].into(),
                    group: None,
                }
            };
            if let Err(refused) =
                session.issue(now, at, "tiết-1", command, audience, connected.clone())
            {
                let _ = refused.to_string();
            }
        } else {
            let reply = match protocol::parse(frame, limit) {
                Ok(TabletMessage::Hello { last_command, .. }) => {
                    let _ = session.state_for(tablet);
                    let _ = session.missed(tablet, last_command);
                    Ok(())
                }
                Ok(TabletMessage::Ack { id }) => session.ack(tablet, id).map(drop),
                Ok(TabletMessage::Answer {
                    question,
                    choices,
                    text,
                }) => session
                    .answer(now, tablet, None, &question, choices, text)
                    .map(drop),
                Ok(_) => Ok(()),
                Err(error) => Err(error),
            };
            if let Err(error) = reply {
                let _ = error.to_json();
            }
        }
        if session.poll_timeout().is_some_and(|due| due <= at) {
            session.handle_timeout(at);
        }
        let _ = session.take_records();
        let _ = session.results();
    }
    session.settle_all();
    let _ = session.take_records();
}

/// A config file as `check-config` reads it.
pub fn config_file(data: &[u8]) {
    let path = Path::new("/etc/firmware-agent/agent.toml");
    let checked =
        diagnostics::utf8_text(path, data.to_vec()).and_then(|source| Config::parse(path, &source));
    if let Err(err) = checked {
        let _ = err.to_string();
    }
}

/// A roster CSV file as an import reads it; one that is accepted is written
/// out and read back unchanged.
pub fn roster_csv(data: &[u8]) {
    match roster::parse_csv(data) {
        Ok(parsed) => {
            let mut written = Vec::new();
            roster::write_csv(&parsed, &mut written).expect("a roster can be written");
            let reread = roster::parse_csv(&written).expect("a written roster reads back");
            assert_eq!(reread, parsed, "a roster changed on its way through a file");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

/// A gRPC request of the `SyncService`: the method in the first byte (Pull,
/// Ack, PutRoster, PutContent's first chunk), its protobuf message after it,
/// through the checks the service makes before it touches the store.
pub fn hub_requests(data: &[u8]) {
    let Some((&method, message)) = data.split_first() else {
        return;
    };
    match method % 4 {
        0 => pull(message),
        1 => ack(message),
        2 => put_roster(message),
        _ => put_content(message),
    }
}

/// The newest seq of the outbox a harness's hub pulls from and acknowledges.
const NEWEST_SEQ: i64 = 1_000;
/// The identity of that outbox.
const OUTBOX_IDENTITY: Uuid = Uuid::from_u128(0x0192_0000_7000_8000_0000_0000_0000_0001);

fn pull(message: &[u8]) {
    let Ok(request) = PullRequest::decode(message) else {
        return;
    };
    let start = Monotonic::default();
    let mut cursor = match PullCursor::new(
        request.after_seq,
        request.max_batch,
        request.follow,
        NEWEST_SEQ,
        start,
    ) {
        Ok(cursor) => cursor,
        Err(refused) => {
            let _ = refused.to_string();
            return;
        }
    };
    // Serve the stream from an outbox holding every seq up to the newest.
    let mut now = start;
    for _ in 0..64 {
        now = now + Duration::from_secs(1);
        match cursor.next() {
            Step::Read { after, limit } => {
                let last = (after + limit as i64).min(NEWEST_SEQ);
                let count = (last - after) as usize;
                cursor.sent(count, (count > 0).then_some(last), now);
            }
            Step::Heartbeat { .. } => cursor.heartbeat_sent(now),
            Step::Wait => cursor.handle_timeout(cursor.next_deadline()),
            Step::Finish => return,
        }
    }
}

fn ack(message: &[u8]) {
    let Ok(request) = AckRequest::decode(message) else {
        return;
    };
    if let Err(refused) = cursor::same_outbox(&request.outbox_identity, OUTBOX_IDENTITY) {
        let _ = refused.to_string();
        return;
    }
    if let Err(refused) = cursor::acknowledge(10, NEWEST_SEQ, request.seq) {
        let _ = refused.to_string();
    }
}

fn put_roster(message: &[u8]) {
    let Ok(request) = PutRosterRequest::decode(message) else {
        return;
    };
    if let Err(problems) = checked_roster(&request, room_config()) {
        let _ = problems.to_string();
    }
}

/// PutContent's first chunk, its data cut in two, stored in a scratch directory.
fn put_content(message: &[u8]) {
    static STORE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let Ok(first) = PutContentChunk::decode(message) else {
        return;
    };
    let Ok(sha256) = <[u8; 32]>::try_from(first.sha256.as_slice()) else {
        return; // refused before the store is asked
    };
    let dir = STORE
        .get_or_init(|| tempfile::tempdir().expect("a scratch directory"))
        .path();
    let (head, tail) = first.data.split_at(first.data.len() / 2);
    let chunks = [Ok::<_, String>(head.to_vec()), Ok(tail.to_vec())];
    match store_pushed(dir, &first.name, first.size, sha256, chunks) {
        Ok(stored) => {
            let path = dir.join(&stored.name);
            assert!(
                path.starts_with(dir),
                "`{}` was stored outside the content store",
                stored.name
            );
            std::fs::remove_file(path).expect("the stored file is there");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

/// A timetable the hub pushes, laid over the room's config, then planned for a
/// school week and rendered as `schedule show` does.
pub fn pushed_timetable(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // a protobuf string is UTF-8 before it reaches the overlay
    };
    let config = room_config();
    let schedule = match pushed::overlay(config, text) {
        Ok(schedule) => schedule,
        Err(problems) => {
            let _ = problems.join("\n");
            return;
        }
    };
    let zone = &config.room.timezone;
    let timetable = Timetable::new(schedule, zone).expect("the room's time zone is known");
    let monday = Date::new(2026, 9, 7).expect("a valid date");
    for day in 0..7 {
        let plan = timetable.plan(monday + jiff::Span::new().days(day));
        let _ = timetable::render(&plan, zone);
    }
}

/// An encoded photo or camera frame, decoded as the roll call decodes it.
pub fn image_decode(data: &[u8]) {
    if let Err(err) = pipeline::decode(data) {
        let _ = err.to_string();
    }
}
