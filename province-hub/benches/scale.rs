//! Scale figure (run with `cargo bench -p province-hub --bench scale`): how
//! many rooms one hub process keeps in sync, each room committing one event a
//! second, as a busy classroom's roll call and lesson do.
//!
//! For each size (10 rooms, the baseline, and 100 in the same run) the real
//! `province-hub` binary, a process of its own with its production defaults
//! (pool of 16 PostgreSQL connections, batches of up to 5 000, one task per
//! room), pulls that many simulated rooms listed in its config, plaintext on
//! loopback, into a database of its own on a PostgreSQL server of the bench's
//! own. Once every room has a follow stream open, a window of
//! `PROVINCE_HUB_SCALE_SECONDS` (default 60) is measured:
//! - the hub's CPU (utime + stime from `/proc/PID/stat` over the window, as a
//!   share of one core) and PostgreSQL's (the postmaster and its backends);
//! - the hub's memory: VmRSS at the end of the window and its peak VmHWM;
//! - events landed per second (acknowledged in the window);
//! - the end-to-end lag of every event committed in the window: from its
//!   commit in the room to the hub's Ack of it, which the hub sends only once
//!   the event is stored in PostgreSQL (p50, p99, max).
//!
//! Then the rooms stop committing, the hub catches up, and the bench checks
//! that every event committed in every room is in PostgreSQL exactly once
//! (the same ids, no more, no fewer); a size that loses or doubles an event
//! fails the bench. `PROVINCE_HUB_SCALE_ROOMS=10,100,300` picks the sizes,
//! and `PROVINCE_HUB_SCALE_POOL=64` the hub's PostgreSQL pool
//! (`postgres.max_connections`). The simulator's own CPU is shown beside the
//! hub's, so a size at which the simulator, not the hub, ran out is seen.
//!
//! # Why the simulator is faithful
//! Each simulated room (`sim`) serves the agent's own generated `SyncService`
//! on a loopback port of its own, and keeps the Pull contract as the agent
//! does: batches in seq order woken by each commit, heartbeats after five
//! idle seconds, Ack refusing another outbox or a seq beyond the newest,
//! GetStatus with the room, outbox identity and last seq. Its events are
//! realistic attendance marks, so the hub decodes and lands each into
//! `events` and `attendance_marks` as it would a real room's. It does not
//! read SQLite (one event a second is far from what limits an agent), use
//! TLS (which adds handshakes at connect and per-byte cost on the hub), or
//! fail and restart: those belong to the hub's tests with real agents. The
//! rooms share the bench's process and its runtime, so their CPU is not in
//! the hub's figure; they share the machine's cores with the hub and
//! PostgreSQL, so the figures are for this machine as loaded at the time.

#[path = "../tests/common/mod.rs"]
mod common;
mod sim;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Postgres, Process};
use sim::SimRoom;
use tokio_util::sync::CancellationToken;

/// How long the rooms have to connect, and the hub to catch up at the end.
const SETTLE: Duration = Duration::from_secs(120);

fn window() -> Duration {
    let seconds = std::env::var("PROVINCE_HUB_SCALE_SECONDS")
        .ok()
        .map(|value| {
            value.parse::<u64>().unwrap_or_else(|_| {
                panic!("PROVINCE_HUB_SCALE_SECONDS={value:?} is not a whole number of seconds")
            })
        })
        .unwrap_or(60);
    Duration::from_secs(seconds.max(1))
}

/// The hub's PostgreSQL pool (`postgres.max_connections`); unset keeps the hub's default.
fn pool_size() -> Option<usize> {
    let value = std::env::var("PROVINCE_HUB_SCALE_POOL").ok()?;
    match value.parse() {
        Ok(size) if size >= 1 => Some(size),
        _ => panic!("PROVINCE_HUB_SCALE_POOL={value:?} is not a number of connections (1 or more)"),
    }
}

fn sizes() -> Vec<usize> {
    let sizes = std::env::var("PROVINCE_HUB_SCALE_ROOMS").unwrap_or_else(|_| "10,100".into());
    sizes
        .split(',')
        .map(|size| match size.trim().parse::<usize>() {
            Ok(size) if (1..=5_000).contains(&size) => size,
            _ => panic!(
                "PROVINCE_HUB_SCALE_ROOMS={sizes:?}: give room counts from 1 to 5000 separated by commas, such as 10,100"
            ),
        })
        .collect()
}

/// CPU time of one process from `/proc/PID/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
struct Ticks {
    /// utime + stime of the process itself.
    own: u64,
    /// cutime + cstime: its children that exited and were waited for.
    reaped_children: u64,
    parent: u32,
}

fn ticks(pid: u32) -> Option<Ticks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(Ticks {
        parent: field(1)? as u32,
        own: field(11)? + field(12)?,
        reaped_children: field(13)? + field(14)?,
    })
}

/// CPU ticks of the postmaster `pid` and every process it started, living or reaped.
fn postgres_ticks(pid: u32) -> u64 {
    let postmaster = ticks(pid).unwrap_or_default();
    let children: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(ticks)
        .filter(|child| child.parent == pid)
        .map(|child| child.own)
        .sum();
    postmaster.own + postmaster.reaped_children + children
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(ticks > 0, "sysconf(_SC_CLK_TCK) failed");
    ticks as f64
}

/// A `kB` line of `/proc/PID/status`, in MiB.
fn memory_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("/proc/{pid}/status: {err}"));
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    kib / 1024.0
}

/// The figures of one size.
struct Figures {
    rooms: usize,
    landed_per_second: f64,
    hub_cpu_percent: f64,
    postgres_cpu_percent: f64,
    simulator_cpu_percent: f64,
    /// Transactions committed in the hub's database per event landed.
    transactions_per_event: f64,
    /// Events per batch the rooms sent, over the whole run.
    events_per_batch: f64,
    hub_rss_mib: f64,
    hub_hwm_mib: f64,
    lag_p50: Duration,
    lag_p99: Duration,
    lag_max: Duration,
    events: usize,
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

fn hub_config(dir: &std::path::Path, url: &str, rooms: &[Arc<SimRoom>]) -> std::path::PathBuf {
    let [http] = common::free_addresses();
    let pool = pool_size()
        .map(|size| format!("max_connections = {size}\n"))
        .unwrap_or_default();
    let entries: String = rooms
        .iter()
        .map(|room| {
            format!(
                "[[rooms]]\nschool_code = \"{}\"\nroom_id = \"{}\"\naddress = \"{}\"\n\n",
                room.school_code, room.room_id, room.address
            )
        })
        .collect();
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!(
            "[postgres]\nurl = \"{url}\"\n{pool}\n[http]\nlisten = \"{http}\"\n\n[tls]\nplaintext = true\n\n{entries}"
        ),
    )
    .unwrap();
    path
}

fn start_hub(config: &std::path::Path) -> Process {
    let mut command = Command::new(common::hub_binary());
    command
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info");
    let hub = Process::spawn(command);
    hub.wait_for_log("province hub ready", Duration::from_secs(60));
    hub
}

/// Checks that PostgreSQL holds every event of every room exactly once.
async fn check_landed_once(url: &str, rooms: &[Arc<SimRoom>]) -> usize {
    let db = province_hub::store::connect(url, Duration::from_secs(10))
        .await
        .unwrap();
    let mut total = 0;
    for room in rooms {
        let committed: HashSet<uuid::Uuid> = room.journeys().iter().map(|j| j.id).collect();
        let stored: Vec<uuid::Uuid> = db
            .query(
                "SELECT id FROM events WHERE school_code = $1 AND room_id = $2",
                &[&room.school_code, &room.room_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let distinct: HashSet<uuid::Uuid> = stored.iter().copied().collect();
        assert_eq!(
            stored.len(),
            distinct.len(),
            "room {}: an event is stored twice",
            room.room_id
        );
        assert_eq!(
            distinct,
            committed,
            "room {}: PostgreSQL holds other events than the room committed ({} stored, {} committed)",
            room.room_id,
            distinct.len(),
            committed.len()
        );
        total += committed.len();
    }
    let all: i64 = db
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(all as usize, total, "events from no room are stored");
    total
}

/// Transactions committed in `database` so far, as PostgreSQL's statistics
/// say (a backend reports its counts within a second or so).
fn transactions_committed(admin: &common::Db, database: &str) -> i64 {
    admin.number(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
        &[&database],
    )
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    postgres: &Postgres,
    admin: &common::Db,
    size: usize,
    window: Duration,
) -> Figures {
    let database = format!("scale_{size}_{}", std::process::id());
    admin.query(&format!("CREATE DATABASE {database}"), &[]);
    let url = postgres
        .url()
        .replace("dbname=postgres", &format!("dbname={database}"));
    let (commits, servers) = (CancellationToken::new(), CancellationToken::new());
    let rooms = runtime.block_on(sim::start_rooms(
        &format!("SCALE-{size}"),
        size,
        &commits,
        &servers,
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut hub = start_hub(&hub_config(dir.path(), &url, &rooms));
    common::wait_until(
        &format!("every one of {size} rooms followed by the hub"),
        SETTLE,
        || rooms.iter().all(|room| room.following() == 1),
    );

    let postmaster = postgres.postmaster_pid();
    let hub_before = ticks(hub.pid()).expect("the hub runs");
    let postgres_before = postgres_ticks(postmaster);
    let simulator_before = ticks(std::process::id()).expect("this process runs");
    let commits_before = transactions_committed(admin, &database);
    let started = Instant::now();
    std::thread::sleep(window); // the measured window itself, not a wait for anything
    let ended = Instant::now();
    let hub_after = ticks(hub.pid()).expect("the hub still runs");
    let postgres_after = postgres_ticks(postmaster);
    let simulator_after = ticks(std::process::id()).expect("this process runs");
    let commits_after = transactions_committed(admin, &database);
    let hub_rss_mib = memory_mib(hub.pid(), "VmRSS");
    let hub_hwm_mib = memory_mib(hub.pid(), "VmHWM");
    let elapsed = (ended - started).as_secs_f64();

    commits.cancel();
    common::wait_until("the hub acknowledged every event committed", SETTLE, || {
        rooms.iter().all(|room| room.acked_seq() == room.last_seq())
    });
    let events = runtime.block_on(check_landed_once(&url, &rooms));
    hub.kill();
    servers.cancel();

    let batches: u64 = rooms.iter().map(|room| room.batches_sent()).sum();
    let journeys: Vec<sim::Journey> = rooms.iter().flat_map(|room| room.journeys()).collect();
    let landed_in_window = journeys
        .iter()
        .filter_map(|journey| journey.acked_at)
        .filter(|acked| (started..ended).contains(acked))
        .count();
    let mut lags: Vec<Duration> = journeys
        .iter()
        .filter(|journey| (started..ended).contains(&journey.committed_at))
        .map(|journey| {
            journey
                .acked_at
                .expect("every event is acknowledged by now")
                .saturating_duration_since(journey.committed_at)
        })
        .collect();
    assert!(!lags.is_empty(), "no event was committed in the window");
    lags.sort();
    let core_percent = |ticks: u64| ticks as f64 / clock_ticks_per_second() / elapsed * 100.0;
    Figures {
        rooms: size,
        landed_per_second: landed_in_window as f64 / elapsed,
        hub_cpu_percent: core_percent(hub_after.own - hub_before.own),
        postgres_cpu_percent: core_percent(postgres_after.saturating_sub(postgres_before)),
        simulator_cpu_percent: core_percent(simulator_after.own - simulator_before.own),
        events_per_batch: events as f64 / batches.max(1) as f64,
        transactions_per_event: (commits_after - commits_before) as f64
            / landed_in_window.max(1) as f64,
        hub_rss_mib,
        hub_hwm_mib,
        lag_p50: percentile(&lags, 50),
        lag_p99: percentile(&lags, 99),
        lag_max: *lags.last().unwrap(),
        events,
    }
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let (window, sizes) = (window(), sizes());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let postgres = Postgres::start();
    let admin = postgres.client();
    println!(
        "each room commits one attendance mark a second; window {} s after every room is followed; hub pool {}",
        window.as_secs(),
        pool_size().map_or("as configured by default".to_owned(), |size| format!(
            "{size} connections"
        ))
    );
    let figures: Vec<Figures> = sizes
        .iter()
        .map(|&size| {
            let figures = measure(&runtime, &postgres, &admin, size, window);
            println!(
                "{size} rooms measured: {} events in PostgreSQL, each exactly once",
                figures.events
            );
            figures
        })
        .collect();
    println!();
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "rooms",
        "landed/s",
        "hub CPU%",
        "PG CPU%",
        "sim CPU%",
        "PG tx/ev",
        "ev/batch",
        "RSS MiB",
        "HWM MiB",
        "lag p50",
        "lag p99",
        "lag max"
    );
    for f in &figures {
        println!(
            "{:>6} {:>10.1} {:>9.1} {:>9.1} {:>9.1} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>7}ms {:>7}ms {:>7}ms",
            f.rooms,
            f.landed_per_second,
            f.hub_cpu_percent,
            f.postgres_cpu_percent,
            f.simulator_cpu_percent,
            f.transactions_per_event,
            f.events_per_batch,
            f.hub_rss_mib,
            f.hub_hwm_mib,
            milliseconds(f.lag_p50),
            milliseconds(f.lag_p99),
            milliseconds(f.lag_max)
        );
    }
    if let Some(baseline) = figures.first() {
        for f in &figures[1..] {
            println!(
                "{} rooms against the {}-room baseline: {:.1}x the rooms, {:.1}x the hub's CPU, {:.1}x its memory, {:.1}x the p99 lag",
                f.rooms,
                baseline.rooms,
                f.rooms as f64 / baseline.rooms as f64,
                f.hub_cpu_percent / baseline.hub_cpu_percent.max(0.1),
                f.hub_rss_mib / baseline.hub_rss_mib,
                f.lag_p99.as_secs_f64() / baseline.lag_p99.as_secs_f64()
            );
        }
    }
}
