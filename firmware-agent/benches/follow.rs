//! Follow the teacher's figure, measured against the real agent binary over
//! loopback with 40 real WebSocket tablets that ack every command:
//! - a page turn from the panel's API call until all 40 tablets acked the
//!   new page: aim p99 ≤ 100 ms;
//! - beside it, in the same run and measured the same way, the lock fan-out
//!   (lock and unlock in turn) as the baseline; the baseline is measured
//!   before and after the page turns, so the spread between its two runs
//!   shows the machine's noise.
//!
//! Each sample is the whole HTTP call with `?wait_ms=`, as the panel makes
//! it, and the agent's own time from giving the command to the last ack.
//!
//! Run with `cargo bench -p firmware-agent --bench follow`.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::tablets::{Agent, acking_tablet, call, no_reply, open_pairing, pair};
use serde_json::{Value, json};

const TABLETS: usize = 40;
const ROUNDS: usize = 200;

/// The agent, with a PDF in its content store.
fn start_agent() -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("data/content");
    std::fs::create_dir_all(&content).unwrap();
    // The agent never reads the PDF: only tablets' pdf.js would.
    std::fs::write(content.join("bai-3.pdf"), b"%PDF-1.4\n").unwrap();
    Agent::launch(dir, "", "", "")
}

/// The round trips and the agent's own times of `ROUNDS` commands, each until all tablets acked.
async fn measure(
    address: SocketAddr,
    command: impl Fn(usize) -> (&'static str, Value),
) -> (Vec<f64>, Vec<f64>) {
    let (mut round_trips, mut agent_times) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (path, body) = command(round);
        let started = Instant::now();
        let given = call(address, path, body).await;
        round_trips.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            given["acknowledged"].as_u64(),
            Some(TABLETS as u64),
            "{given}"
        );
        agent_times.push(given["elapsed_ms"].as_f64().unwrap());
    }
    (round_trips, agent_times)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(
    what: &str,
    (round_trips, agent_times): (Vec<f64>, Vec<f64>),
    target_p99_ms: Option<f64>,
) {
    for (how, mut samples) in [("API call", round_trips), ("agent", agent_times)] {
        samples.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        let verdict = match target_p99_ms {
            Some(target) if how == "API call" && p99 <= target => {
                format!("; target p99 ≤ {target} ms: meets")
            }
            Some(target) if how == "API call" => format!("; target p99 ≤ {target} ms: MISSES"),
            _ => String::new(),
        };
        println!(
            "{what} ({how}): p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms over {} rounds{verdict}",
            samples.last().unwrap(),
            samples.len()
        );
    }
}

fn lock_or_unlock(round: usize) -> (&'static str, Value) {
    if round.is_multiple_of(2) {
        ("/api/lesson/lock?wait_ms=5000", json!({}))
    } else {
        ("/api/lesson/unlock?wait_ms=5000", json!({}))
    }
}

async fn run() {
    let agent = start_agent();
    let address = agent.address;
    let code = open_pairing(address).await;
    for n in 0..TABLETS {
        let (_, token) = pair(address, &code, &format!("Máy {n}")).await;
        acking_tablet(address, &token, no_reply).await;
    }
    report(
        "baseline, before: lock fan-out to 40 tablets until the last ack",
        measure(address, lock_or_unlock).await,
        None,
    );
    let started = call(
        address,
        "/api/lesson/follow/start?wait_ms=5000",
        json!({ "file": "bai-3.pdf", "page": 1 }),
    )
    .await;
    assert_eq!(
        started["acknowledged"].as_u64(),
        Some(TABLETS as u64),
        "{started}"
    );
    report(
        "page turn to 40 following tablets until the last ack",
        measure(address, |round| {
            (
                "/api/lesson/follow/page?wait_ms=5000",
                json!({ "page": round % 50 + 2 }),
            )
        })
        .await,
        Some(100.0),
    );
    call(address, "/api/lesson/follow/release", json!({})).await;
    report(
        "baseline, after: lock fan-out to 40 tablets until the last ack",
        measure(address, lock_or_unlock).await,
        None,
    );
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
