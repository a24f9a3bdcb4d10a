//! The foundation's figures: start to a 200 from /healthz, resident memory when
//! idle, outbox appends (one by one and in batches) against plain rusqlite
//! inserts of the same rows in the same run, and a short read (the roll call's
//! check for roster changes) on the store's pooled connections against one
//! opened for each read.
//!
//! Run with `cargo bench --bench foundation` (release profile).

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_agent::clock::SystemClock;
use firmware_agent::store::Store;
use firmware_agent::store::outbox::NewEvent;
use rusqlite::params;

const STARTS: usize = 20;
const ONE_BY_ONE: usize = 2_000;
const BATCHED: usize = 200_000;
const BATCH: usize = 1_000;

fn main() {
    // cargo passes `--bench`; this harness takes no options.
    println!(
        "foundation benchmark ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    startup_and_idle_memory();
    outbox_appends();
    short_reads();
}

fn startup_and_idle_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    let mut rss_kib = Vec::new();
    for run in 0..STARTS {
        // Both listeners held until both ports are chosen, so they differ.
        let listeners = [
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        let [port, grpc] = listeners.map(|l| l.local_addr().unwrap().port());
        let config = dir.path().join(format!("agent-{run}.toml"));
        std::fs::write(
            &config,
            format!(
                "[room]\nschool_code = \"BENCH\"\nroom_id = \"P1\"\n[storage]\ndata_dir = \"data-{run}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[hub]\nlisten = \"127.0.0.1:{grpc}\"\nplaintext = true\n[log]\nfilter = \"warn\"\n"
            ),
        )
        .unwrap();
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_firmware-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ready = loop {
            if healthz_ok(port) {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the agent did not answer /healthz"
            );
        };
        samples.push(ready);
        // Idle: let the first second pass, then read the kernel's count.
        std::thread::sleep(Duration::from_secs(1));
        rss_kib.push(rss_of(child.id()));
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
    }
    samples.sort();
    rss_kib.sort();
    println!(
        "start to 200 from /healthz over {STARTS} starts (fresh database each): median {:.1} ms, p90 {:.1} ms, max {:.1} ms (aim: <= 300 ms)",
        ms(samples[STARTS / 2]),
        ms(samples[STARTS * 9 / 10]),
        ms(samples[STARTS - 1])
    );
    println!(
        "resident memory when idle: median {:.1} MB, max {:.1} MB (aim: <= 30 MB)",
        rss_kib[STARTS / 2] as f64 / 1024.0,
        rss_kib[STARTS - 1] as f64 / 1024.0
    );
}

fn healthz_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    use std::io::Write;
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn outbox_appends() {
    let payload = vec![0x42u8; 200];
    let event = || NewEvent {
        kind: "attendance.mark".into(),
        occurred_at: jiff::Timestamp::now(),
        payload: payload.clone(),
    };

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("agent.sqlite3"), Arc::new(SystemClock)).unwrap();
    let started = Instant::now();
    for _ in 0..ONE_BY_ONE {
        store.append(event()).unwrap();
    }
    let store_single = rate(ONE_BY_ONE, started.elapsed());
    let started = Instant::now();
    for _ in 0..BATCHED / BATCH {
        store
            .append_batch((0..BATCH).map(|_| event()).collect())
            .unwrap();
    }
    let store_batched = rate(BATCHED, started.elapsed());

    // The baseline: the same rows, same pragmas, straight through rusqlite.
    let raw_dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(raw_dir.path().join("raw.sqlite3")).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL UNIQUE, kind TEXT NOT NULL,
         occurred_at_ms INTEGER NOT NULL, recorded_at_ms INTEGER NOT NULL, clock_synced INTEGER NOT NULL,
         clock_step_back_ms INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL) STRICT",
    )
    .unwrap();
    let insert = |conn: &rusqlite::Connection| {
        let now = jiff::Timestamp::now().as_millisecond();
        conn.prepare_cached(
            "INSERT INTO outbox (id, kind, occurred_at_ms, recorded_at_ms, clock_synced, clock_step_back_ms, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .unwrap()
        .execute(params![uuid::Uuid::now_v7().as_bytes(), "attendance.mark", now, now, true, 0, payload])
        .unwrap();
    };
    let started = Instant::now();
    for _ in 0..ONE_BY_ONE {
        insert(&conn);
    }
    let raw_single = rate(ONE_BY_ONE, started.elapsed());
    let started = Instant::now();
    for _ in 0..BATCHED / BATCH {
        let tx = conn.transaction().unwrap();
        for _ in 0..BATCH {
            insert(&tx);
        }
        tx.commit().unwrap();
    }
    let raw_batched = rate(BATCHED, started.elapsed());

    println!("outbox appends, 200-byte payloads, WAL + synchronous=FULL (every commit durable):");
    println!(
        "  one by one ({ONE_BY_ONE}):      store {store_single:>9.0}/s   plain rusqlite {raw_single:>9.0}/s   ratio {:.2}",
        store_single / raw_single
    );
    println!(
        "  batches of {BATCH} ({BATCHED}): store {store_batched:>9.0}/s   plain rusqlite {raw_batched:>9.0}/s   ratio {:.2} (aim: >= 50 000/s)",
        store_batched / raw_batched
    );
}

const SHORT_READS: usize = 5_000;

/// The people generation read through `Store::read` (a pooled connection)
/// against the same query on a connection opened for it, in alternating blocks.
fn short_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("agent.sqlite3"), Arc::new(SystemClock)).unwrap();
    let (mut pooled, mut opened) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..SHORT_READS {
            store.people_generation().unwrap();
        }
        pooled.push(started.elapsed().as_secs_f64() * 1e6 / SHORT_READS as f64);
        let started = Instant::now();
        for _ in 0..SHORT_READS {
            let conn = store.reader().unwrap();
            conn.query_row("SELECT generation FROM people_changes", [], |row| {
                row.get::<_, i64>(0)
            })
            .unwrap();
        }
        opened.push(started.elapsed().as_secs_f64() * 1e6 / SHORT_READS as f64);
    }
    let show = |blocks: &[f64]| {
        blocks
            .iter()
            .map(|us| format!("{us:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "short read (the people generation), microseconds a read, 5 alternating blocks of {SHORT_READS}:"
    );
    println!("  pooled connection (Store::read): {}", show(&pooled));
    println!("  connection opened for the read:  {}", show(&opened));
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
