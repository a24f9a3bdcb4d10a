//! The live lesson's figures, measured against the real agent binary over
//! loopback with real WebSocket clients, and compared with the targets the
//! room asks for:
//! - pairing 40 tablets in one window (all at once);
//! - one command fanned out to 40 tablets until the last ack: p99 ≤ 20 ms;
//! - 40 answers aggregated and visible to the panel: p99 ≤ 50 ms;
//! - the same fan-out to 400 tablets (a whole school): p99 ≤ 100 ms;
//! - the agent's memory per idle connection.
//!
//! Run with `cargo bench -p firmware-agent --bench tablets`.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::tablets::{Agent, acking_tablet, call, open_pairing, pair};
use serde_json::{Value, json};

const ROUNDS: usize = 200;
const QUESTION_ROUNDS: usize = 100;

/// Pairs `count` tablets at once; returns their tokens and the time it took.
async fn pair_at_once(address: SocketAddr, count: usize) -> (Vec<String>, Duration) {
    let code = open_pairing(address).await;
    let started = Instant::now();
    let pairings: Vec<_> = (0..count)
        .map(|n| {
            let code = code.clone();
            tokio::spawn(async move { pair(address, &code, &format!("Máy {n}")).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for pairing in pairings {
        tokens.push(pairing.await.unwrap().1);
    }
    (tokens, started.elapsed())
}

/// Answers every question with choice `a`.
fn answer_a(command: &Value) -> Option<Value> {
    (command["kind"] == "question_start")
        .then(|| json!({ "type": "answer", "question": command["id"], "choices": ["a"] }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<f64>, target_p99_ms: Option<f64>) {
    samples.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    let verdict = match target_p99_ms {
        Some(target) if p99 <= target => format!("; target p99 ≤ {target} ms: meets"),
        Some(target) => format!("; target p99 ≤ {target} ms: MISSES"),
        None => String::new(),
    };
    println!(
        "{what}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms over {} rounds{verdict}",
        samples.last().unwrap(),
        samples.len()
    );
}

/// Lock and unlock in turn; each sample is the agent's time from giving the
/// command to the last ack, as the API reports it.
async fn fan_out(address: SocketAddr, tablets: usize) -> Vec<f64> {
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let path = if round % 2 == 0 {
            "/api/lesson/lock?wait_ms=5000"
        } else {
            "/api/lesson/unlock?wait_ms=5000"
        };
        let issued = call(address, path, json!({})).await;
        assert_eq!(
            issued["acknowledged"].as_u64(),
            Some(tablets as u64),
            "{issued}"
        );
        samples.push(issued["elapsed_ms"].as_f64().unwrap());
    }
    samples
}

async fn run() {
    let agent = Agent::start("");
    let address = agent.address;
    let mut pairing = Vec::new();
    for _ in 0..5 {
        let (_, took) = pair_at_once(address, 40).await;
        pairing.push(took.as_secs_f64() * 1000.0);
    }
    let (tokens, _) = pair_at_once(address, 40).await;
    report(
        "pairing 40 tablets at once (all 40 HTTP pairings, token hash stored, outbox record each)",
        pairing,
        None,
    );
    for token in tokens {
        acking_tablet(address, &token, answer_a).await;
    }
    report(
        "fan-out to 40 tablets until the last ack",
        fan_out(address, 40).await,
        Some(20.0),
    );

    let mut answers = Vec::new();
    for round in 0..QUESTION_ROUNDS {
        let question = json!({ "id": format!("q{round}"), "question_kind": "single_choice", "prompt": "?", "choices": [{ "id": "a", "text": "A" }, { "id": "b", "text": "B" }], "correct": ["a"] });
        let started = Instant::now();
        call(address, "/api/lesson/question/start", question).await;
        let results = call(
            address,
            "/api/lesson/question?answers=40&wait_ms=5000",
            Value::Null,
        )
        .await;
        assert_eq!(results["results"]["answers"].as_array().unwrap().len(), 40);
        answers.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report(
        "question to 40 answers visible to the panel (two HTTP round trips included)",
        answers,
        Some(50.0),
    );
    drop(agent);

    let agent = Agent::start("");
    let address = agent.address;
    let (tokens, took) = pair_at_once(address, 400).await;
    println!(
        "pairing 400 tablets at once: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let before = agent.rss_kib();
    for token in tokens {
        acking_tablet(address, &token, answer_a).await;
    }
    let after = agent.rss_kib();
    println!(
        "agent memory: {before} KiB before, {after} KiB with 400 idle tablets: {:.1} KiB per connection",
        (after - before) as f64 / 400.0
    );
    report(
        "fan-out to 400 tablets until the last ack",
        fan_out(address, 400).await,
        Some(100.0),
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
