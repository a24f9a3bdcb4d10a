//! A committed event survives the writer being killed at any moment, and a
//! transaction cut short never appears in part.
//!
//! The test re-runs its own executable as the writer: a child process that
//! appends batches of events through the store and reports each commit on
//! stdout. The parent kills it with SIGKILL at a random moment, many times,
//! and after each kill checks the database against what was reported.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use firmware_agent::clock::SystemClock;
use firmware_agent::store::Store;
use firmware_agent::store::outbox::{NewEvent, read_after};

const CHILD_DATABASE: &str = "DURABILITY_TEST_WRITER_DATABASE";
const KILLS: usize = 30;

#[test]
fn committed_events_survive_kill_9_and_no_batch_is_half_written() {
    if let Some(database) = std::env::var_os(CHILD_DATABASE) {
        write_until_killed(Path::new(&database));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("agent.sqlite3");
    let mut committed_up_to = 0i64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "committed_events_survive_kill_9_and_no_batch_is_half_written",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DATABASE, &database)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, commits) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(seq) = line.strip_prefix("committed ") {
                    let _ = tx.send(seq.parse::<i64>().unwrap());
                }
            }
        });
        // Wait for the first commit of this round, then let the writer run for a
        // random while, so the kill lands anywhere in a transaction.
        let first = commits
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer commits");
        seed = xorshift(seed);
        std::thread::sleep(Duration::from_micros(seed % 20_000));
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        reader.join().unwrap();
        let reported = commits.try_iter().last().unwrap_or(first);
        committed_up_to = committed_up_to.max(reported);
        check(&database, committed_up_to, round);
    }
}

/// Every reported commit is there; every batch is whole; seq and ids are unique.
fn check(database: &Path, committed_up_to: i64, round: usize) {
    let store =
        Store::open(database, Arc::new(SystemClock)).expect("the database opens after a kill");
    let events = read_after(&store.reader().unwrap(), 0, usize::MAX >> 1).unwrap();
    let last = events.last().map_or(0, |e| e.seq);
    assert!(
        last >= committed_up_to,
        "round {round}: committed seq {committed_up_to} is missing (last is {last})"
    );
    let mut ids = HashSet::new();
    let mut batches: std::collections::HashMap<(u32, u64), (u32, u32)> =
        std::collections::HashMap::new();
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event.seq,
            index as i64 + 1,
            "round {round}: a gap or reorder at seq {}",
            event.seq
        );
        assert!(ids.insert(event.id), "round {round}: duplicate id");
        let marker: [u8; 20] = event.payload[..20].try_into().unwrap();
        let process = u32::from_le_bytes(marker[0..4].try_into().unwrap());
        let batch = u64::from_le_bytes(marker[4..12].try_into().unwrap());
        let size = u32::from_le_bytes(marker[12..16].try_into().unwrap());
        let entry = batches.entry((process, batch)).or_insert((size, 0));
        entry.1 += 1;
    }
    for ((process, batch), (size, found)) in batches {
        assert_eq!(
            size, found,
            "round {round}: batch {batch} of writer {process} is half there"
        );
    }
}

/// The child: appends batches of 1 to 64 events forever, reporting each commit.
fn write_until_killed(database: &Path) {
    let store = Store::open(database, Arc::new(SystemClock)).unwrap();
    let process = std::process::id();
    let mut seed = u64::from(process) | 1;
    let mut stdout = std::io::stdout().lock();
    for batch in 0u64.. {
        seed = xorshift(seed);
        let size = (seed % 64 + 1) as u32;
        let events = (0..size)
            .map(|index| {
                let mut payload = Vec::with_capacity(256);
                payload.extend_from_slice(&process.to_le_bytes());
                payload.extend_from_slice(&batch.to_le_bytes());
                payload.extend_from_slice(&size.to_le_bytes());
                payload.extend_from_slice(&index.to_le_bytes());
                payload.resize(256, 0xA5);
                NewEvent {
                    kind: "test.durability".into(),
                    occurred_at: jiff::Timestamp::now(),
                    payload,
                }
            })
            .collect();
        let stored = store.append_batch(events).unwrap();
        use std::io::Write;
        writeln!(stdout, "committed {}", stored.last().unwrap().seq).unwrap();
        stdout.flush().unwrap();
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
