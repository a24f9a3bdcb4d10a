//! Hub sync figures, over real gRPC on loopback (run with `cargo bench --bench sync`):
//! - Pull throughput from a 1 000 000-event backlog, against reading the same
//!   rows straight out of SQLite in the same run (the baseline);
//! - resident memory while the million events stream (it must stay flat);
//! - a week offline for one room (20 000 events) caught up, connection included;
//! - `firmware-agent hub pull` (the reference client, printing JSON lines)
//!   taking the whole backlog, beside a plain Python grpcio client pulling and
//!   acking the same backlog (`pull_baseline.py`, the baseline), and beside
//!   another build's `hub pull` when `BASELINE_AGENT` names one; each in turn,
//!   `PULL_ROUNDS` times (3 by default).
//!
//! The agent's sync server runs in this process on its own runtime, exactly as
//! the daemon runs it; the client is the generated gRPC client a hub would use.

#[path = "common/mod.rs"]
mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use firmware_agent::agent::Agent;
use firmware_agent::clock::{Clock, SystemClock};
use firmware_agent::config::Config;
use firmware_agent::health::Health;
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{PullRequest, pull_response};
use firmware_agent::store::Store;
use firmware_agent::store::outbox::read_after;
use tokio_util::sync::CancellationToken;

const BACKLOG: usize = 1_000_000;
const WEEK_OFFLINE: usize = 20_000;
const TARGET_EVENTS_PER_SECOND: f64 = 200_000.0;

/// The resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples RSS every few milliseconds until stopped; returns the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib()));
        let thread = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        RssSampler { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Reads every row after `after` straight out of SQLite, as the server's reads do.
fn read_raw(store: &Store, after: i64) -> (usize, Duration) {
    let started = Instant::now();
    let conn = store.reader().unwrap();
    let (mut cursor, mut count) = (after, 0);
    loop {
        let rows = read_after(&conn, cursor, 1_000).unwrap();
        let Some(last) = rows.last() else { break };
        cursor = last.seq;
        count += rows.len();
    }
    (count, started.elapsed())
}

/// Pulls everything after `after` over gRPC, checking order; returns the count,
/// the time from connecting to the last event, and RSS every 100 000 events.
async fn pull(address: std::net::SocketAddr, after: i64) -> (usize, Duration, Vec<u64>) {
    let started = Instant::now();
    let mut client = SyncServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20);
    let request = PullRequest {
        after_seq: after,
        max_batch: 0,
        follow: false,
    };
    let mut stream = client.pull(request).await.unwrap().into_inner();
    let (mut last, mut count, mut rss) = (after, 0usize, Vec::new());
    while let Some(message) = stream.message().await.unwrap() {
        let Some(pull_response::Message::Batch(batch)) = message.message else {
            continue;
        };
        for event in batch.events {
            assert!(
                event.seq > last && event.payload.is_some(),
                "in order and typed"
            );
            last = event.seq;
            count += 1;
            if count % 100_000 == 0 {
                rss.push(rss_kib());
            }
        }
    }
    (count, started.elapsed(), rss)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "[room]\nschool_code = \"BENCH-01\"\nroom_id = \"P101\"\n[storage]\ndata_dir = {:?}\n[hub]\nlisten = \"127.0.0.1:0\"\nplaintext = true\n",
        dir.path().to_str().unwrap()
    );
    let config = Config::parse(&dir.path().join("agent.toml"), &source).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(Store::open(&config.database_path(), clock.clone()).unwrap());

    let filling = Instant::now();
    common::fill_backlog(&store, BACKLOG);
    println!(
        "backlog: {BACKLOG} events committed in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let (actuators, _) =
        firmware_agent::actuators::runner::open(&config, store.clone(), clock.clone()).unwrap();
    let (config, _) = tokio::sync::watch::channel(Arc::new(config));
    let agent = Arc::new(Agent {
        config,
        store: store.clone(),
        health: Health::new(clock.clone()),
        clock,
        metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        actuators,
        attendance: Default::default(),
        lan_certificate: None,
        shutdown,
    });
    let listener = runtime
        .block_on(firmware_agent::hub::bind(&agent.config().hub))
        .unwrap()
        .expect("plaintext is configured");
    let address = listener.local_addr().unwrap();
    let server = runtime.spawn(firmware_agent::hub::serve(listener, agent.clone()));

    // Warm the page cache the same way for both, then measure each once.
    read_raw(&store, 0);
    let (raw_count, raw_time) = read_raw(&store, 0);
    let raw_rate = raw_count as f64 / raw_time.as_secs_f64();

    let rss_before = rss_kib();
    let sampler = RssSampler::start();
    let (count, time, rss_marks) = runtime.block_on(pull(address, 0));
    let rss_peak = sampler.stop();
    assert_eq!(count, raw_count);
    let rate = count as f64 / time.as_secs_f64();

    let week_after = store.last_seq() - WEEK_OFFLINE as i64;
    let (week_count, week_time, _) = runtime.block_on(pull(address, week_after));
    assert_eq!(week_count, WEEK_OFFLINE);

    println!(
        "raw SQLite read (baseline): {raw_count} rows in {:.3} s = {:.0} events/s",
        raw_time.as_secs_f64(),
        raw_rate
    );
    println!(
        "gRPC Pull over loopback:    {count} events in {:.3} s = {:.0} events/s",
        time.as_secs_f64(),
        rate
    );
    println!(
        "  target >= {TARGET_EVENTS_PER_SECOND:.0} events/s: {}; SQLite is {:.2}x faster (target within 3x): {}",
        if rate >= TARGET_EVENTS_PER_SECOND {
            "met"
        } else {
            "MISSED"
        },
        raw_rate / rate,
        if raw_rate / rate <= 3.0 {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "memory: RSS {} MiB before the pull, peak {} MiB during it; every 100 000 events (MiB): {:?}",
        rss_before / 1024,
        rss_peak / 1024,
        rss_marks.iter().map(|kib| kib / 1024).collect::<Vec<_>>()
    );
    println!(
        "a week offline: {week_count} events caught up in {:.3} s, connection included (target < 1 s): {}",
        week_time.as_secs_f64(),
        if week_time < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );

    compare_pull_clients(address, count);

    agent.shutdown.cancel();
    runtime.block_on(server).unwrap().unwrap();
}

/// `hub pull` of this build (and of `BASELINE_AGENT`'s) against the Python
/// grpcio client, each taking the whole backlog in turn, round after round.
fn compare_pull_clients(address: SocketAddr, backlog: usize) {
    let generated = tempfile::tempdir().unwrap();
    let python = python_client(generated.path());
    if python.is_none() {
        println!(
            "the Python baseline is skipped: /usr/bin/python3 with grpcio and protobuf (Debian's python3-grpcio, python3-protobuf) and protoc are needed"
        );
    }
    let baseline_agent = std::env::var_os("BASELINE_AGENT");
    let rounds: usize = std::env::var("PULL_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3);
    let mut rates: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut record = |name, rate| match rates.iter_mut().find(|(n, _)| *n == name) {
        Some((_, list)) => list.push(rate),
        None => rates.push((name, vec![rate])),
    };
    for _ in 0..rounds {
        let agent = Path::new(env!("CARGO_BIN_EXE_firmware-agent"));
        record(
            "hub pull (this build)",
            hub_pull_rate(agent, address, backlog),
        );
        if let Some(baseline) = &baseline_agent {
            record(
                "hub pull (BASELINE_AGENT)",
                hub_pull_rate(Path::new(baseline), address, backlog),
            );
        }
        if let Some(python) = &python {
            let output = python.run(address);
            let mut words = output.split_whitespace();
            let count: usize = words.next().and_then(|w| w.parse().ok()).unwrap();
            let seconds: f64 = words.next().and_then(|w| w.parse().ok()).unwrap();
            assert_eq!(count, backlog, "the Python client pulled everything");
            record("Python grpcio client (baseline)", count as f64 / seconds);
        }
    }
    println!(
        "pulling the {backlog}-event backlog, events/s over {rounds} rounds (median [min-max]):"
    );
    for (name, mut list) in rates {
        list.sort_by(f64::total_cmp);
        println!(
            "  {name:<32} {:>9.0} [{:.0}-{:.0}]",
            list[list.len() / 2],
            list[0],
            list[list.len() - 1]
        );
    }
}

/// Runs `hub pull` from the beginning, counting the JSON lines it prints.
fn hub_pull_rate(agent: &Path, address: SocketAddr, backlog: usize) -> f64 {
    let started = Instant::now();
    let mut child = Command::new(agent)
        .args(["hub", "pull", "--endpoint", &format!("http://{address}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (mut lines, mut buffer) = (0usize, vec![0u8; 1 << 16]);
    loop {
        let read = stdout.read(&mut buffer).unwrap();
        if read == 0 {
            break;
        }
        lines += buffer[..read].iter().filter(|byte| **byte == b'\n').count();
    }
    assert!(
        child.wait().unwrap().success(),
        "{} hub pull failed",
        agent.display()
    );
    let elapsed = started.elapsed();
    assert_eq!(lines, backlog, "{} printed every event", agent.display());
    backlog as f64 / elapsed.as_secs_f64()
}

/// The Python baseline, ready to run: its message classes generated by protoc.
struct PythonClient {
    generated: std::path::PathBuf,
}

fn python_client(generated: &Path) -> Option<PythonClient> {
    let root = common::root();
    let usable = Command::new("/usr/bin/python3")
        .args(["-c", "import grpc, google.protobuf"])
        .status()
        .is_ok_and(|status| status.success());
    let generated_ok = usable
        && Command::new("protoc")
            .arg(format!("--python_out={}", generated.display()))
            .arg(format!("-I{}", root.join("proto").display()))
            .arg(root.join("proto/classroom/hub/v1/sync.proto"))
            .status()
            .is_ok_and(|status| status.success());
    generated_ok.then(|| PythonClient {
        generated: generated.to_path_buf(),
    })
}

impl PythonClient {
    fn run(&self, address: SocketAddr) -> String {
        let script = common::root().join("firmware-agent/benches/pull_baseline.py");
        let output = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(&self.generated)
            .arg(address.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the Python client failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}
