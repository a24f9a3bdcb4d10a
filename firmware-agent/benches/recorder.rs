//! The recorder's figures on a real full disk: how many records of a room's
//! usual kinds it can queue before it refuses the room's own actions, what
//! that costs in memory, and how long a freed disk takes to receive them all,
//! in order.
//!
//! Needs root: the database lives on a small tmpfs this benchmark mounts,
//! fills with a file until SQLite reports SQLITE_FULL, then frees.
//! Run with `cargo bench --bench recorder` (release profile).

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_agent::clock::SystemClock;
use firmware_agent::proto::{self, event::Payload};
use firmware_agent::store::Store;
use firmware_agent::store::outbox::read_after;
use firmware_agent::store::recorder::{Kept, LIMITS, Who, Write};

const RUNS: usize = 3;

fn main() {
    println!(
        "recorder benchmark ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for run in 0..RUNS {
        runtime.block_on(queue_on_a_full_disk_then_free_it(run));
    }
}

/// A room's records, in turn: a bell, a roll-call mark, a health change.
fn record(n: u32) -> Write {
    let now = jiff::Timestamp::now();
    match n % 3 {
        0 => Write::event(
            now,
            proto::Actuation {
                device: "bell".into(),
                command: format!("ring:start#{n}"),
                detail: "muộn 2 s (late)".into(),
                ..Default::default()
            },
        ),
        1 => Write::RollCall {
            occurred_at: now,
            payloads: vec![Payload::AttendanceMark(proto::AttendanceMark {
                session_id: "0192f0c4-1b2a-7c3d-8e4f-5a6b7c8d9e0f".into(),
                lesson_id: format!("2026-09-07/morning/0700#{n}"),
                personal_id: format!("{:012}", 10_206_000_000u64 + u64::from(n)),
                best_similarity: 0.71,
                ..Default::default()
            })],
        },
        _ => Write::event(
            now,
            proto::DeviceHealth {
                subsystem: "camera".into(),
                state: "degraded".into(),
                detail: format!("rtsp://192.168.1.64/stream1: timed out; reopening #{n}"),
            },
        ),
    }
}

async fn queue_on_a_full_disk_then_free_it(run: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this benchmark mounts a tmpfs: run it as root"
    );
    let store =
        Arc::new(Store::open(&dir.path().join("agent.sqlite3"), Arc::new(SystemClock)).unwrap());
    let recorder = store.recorder().clone();
    let filler = dir.path().join("filler");
    fill(&filler);

    let rss_before = rss_kib();
    let mut kept = 0u32;
    let mut committed_while_full = 0;
    while recorder.admit(Who::Room).is_ok() {
        match recorder.keep(record(kept)).await {
            Kept::Committed => committed_while_full += 1,
            Kept::Queued(_) => {}
            Kept::Refused(refusal) => panic!("a record of something done was refused: {refusal}"),
        }
        kept += 1;
    }
    let status = recorder.status();
    let rss_grew = rss_kib().saturating_sub(rss_before);

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    while recorder.status().queued > 0 {
        assert!(
            freed.elapsed() < Duration::from_secs(60),
            "the queue did not drain"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let drained = freed.elapsed();

    let events = read_after(&store.reader().unwrap(), 0, 1_000_000).unwrap();
    let in_order = events.len() == kept as usize
        && events
            .windows(2)
            .all(|w| w[0].occurred_at <= w[1].occurred_at);
    println!(
        "run {run}: queued {} records ({} KiB counted, resident memory +{} KiB) before refusing the room's actions \
         (bound {} records / {} MiB); {committed_while_full} fitted in SQLite's free pages first; \
         {} of {kept} in the outbox after the disk was freed, in order: {in_order}; drained in {:.0} ms (first retry within 250 ms to 5 s of freeing)",
        status.queued,
        status.bytes / 1024,
        rss_grew,
        LIMITS.max_records,
        LIMITS.max_bytes / (1024 * 1024),
        events.len(),
        drained.as_secs_f64() * 1000.0,
    );
    drop(recorder);
    drop(store);
    let _ = Command::new("umount").arg(dir.path()).status();
}

/// Writes `path` until the file system has no byte left.
fn fill(path: &Path) {
    let mut filler = File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 4096];
    while let Ok(written) = filler.write(&chunk) {
        if written == 0 {
            break;
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
