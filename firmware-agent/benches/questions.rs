//! Questions' figures, measured against the real agent binary over loopback
//! with 40 real WebSocket tablets, each bound to a pupil of the class:
//! - a question to 40 tablets answering at the same moment, until the panel's
//!   live results (`/api/lesson/quiz`, with every pupil's answer) show all 40:
//!   a timed multiple-choice question, beside the single-choice path of
//!   `/api/lesson/question` as the baseline, in alternate rounds of one run;
//! - the lesson's summary (40 pupils × 20 questions) exported as a workbook
//!   and as CSV.
//!
//! Run with `cargo bench -p firmware-agent --bench questions`.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::tablets::{Agent, acking_tablet, pair_and_bind};
use serde_json::{Value, json};

const TABLETS: usize = 40;
const ROUNDS: usize = 60;
const SUMMARY_QUESTIONS: usize = 20;
const EXPORT_ROUNDS: usize = 20;

async fn call(
    address: SocketAddr,
    method: &'static str,
    path: &str,
    body: Value,
) -> (u16, Vec<u8>) {
    let url = format!("http://{address}{path}");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut response = if method == "GET" {
            agent.get(&url).call()
        } else {
            agent.post(&url).send_json(body)
        }
        .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap())
    })
    .await
    .unwrap()
}

async fn call_json(address: SocketAddr, method: &'static str, path: &str, body: Value) -> Value {
    let (status, bytes) = call(address, method, path, body).await;
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(status < 300, "{path}: {status} {value}");
    value
}

/// Answers every question at once: `a` and `c` to a multiple choice, else `a`.
fn answer_at_once(command: &Value) -> Option<Value> {
    if command["kind"] != "question_start" {
        return None;
    }
    let choices = match command["question_kind"].as_str() {
        Some("multiple_choice") => json!(["a", "c"]),
        _ => json!(["a"]),
    };
    Some(json!({ "type": "answer", "question": command["id"], "choices": choices }))
}

/// The agent of a class of 40, each pupil's tablet paired, bound and answering.
async fn class_of_40() -> Agent {
    let agent = Agent::start_class(TABLETS);
    for token in pair_and_bind(agent.address, TABLETS).await {
        acking_tablet(agent.address, &token, answer_at_once).await;
    }
    agent
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "{what}: p50 {p50:.2} ms, p99 {p99:.2} ms, min {:.2} ms, max {:.2} ms over {} rounds",
        samples[0],
        samples.last().unwrap(),
        samples.len()
    );
    p50
}

fn choices() -> Value {
    json!([{ "id": "a", "text": "A" }, { "id": "b", "text": "B" }, { "id": "c", "text": "C" }, { "id": "d", "text": "D" }])
}

/// The baseline: a single-choice question, its 40 answers read from the older results route.
async fn single_choice_round(address: SocketAddr, round: usize) -> f64 {
    let question = json!({ "id": format!("s{round}"), "question_kind": "single_choice", "prompt": "?", "choices": choices(), "correct": ["a"] });
    let started = Instant::now();
    call_json(address, "POST", "/api/lesson/question/start", question).await;
    let results = call_json(
        address,
        "GET",
        &format!("/api/lesson/question?answers={TABLETS}&wait_ms=5000"),
        Value::Null,
    )
    .await;
    assert_eq!(
        results["results"]["answers"].as_array().unwrap().len(),
        TABLETS
    );
    started.elapsed().as_secs_f64() * 1000.0
}

/// A timed multiple-choice question, until the panel's live results show every pupil's answer.
async fn timed_multiple_choice_round(address: SocketAddr, round: usize) -> f64 {
    let question = json!({ "id": format!("m{round}"), "question_kind": "multiple_choice", "prompt": "?", "choices": choices(), "correct": ["a", "c"], "time_limit_s": 30 });
    let started = Instant::now();
    call_json(address, "POST", "/api/lesson/question/start", question).await;
    let live = call_json(
        address,
        "GET",
        &format!("/api/lesson/quiz?answers={TABLETS}&wait_ms=5000"),
        Value::Null,
    )
    .await;
    let answered = live["pupils"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pupil| pupil["answered"] == true && pupil["correct"] == true)
        .count();
    assert_eq!(answered, TABLETS, "{live}");
    started.elapsed().as_secs_f64() * 1000.0
}

async fn run() {
    let agent = class_of_40().await;
    let address = agent.address;
    let (mut baseline, mut timed) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        baseline.push(single_choice_round(address, round).await);
        timed.push(timed_multiple_choice_round(address, round).await);
    }
    let base = report(
        "baseline: single choice, 40 answers on /api/lesson/question",
        baseline,
    );
    let new = report(
        "timed multiple choice, 40 answers per pupil on /api/lesson/quiz",
        timed,
    );
    println!("timed multiple choice / baseline (p50): {:.2}", new / base);
    drop(agent);

    // A fresh lesson of 20 questions for the summary.
    let agent = class_of_40().await;
    let address = agent.address;
    for round in 0..SUMMARY_QUESTIONS {
        timed_multiple_choice_round(address, round).await;
    }
    for format in ["xlsx", "csv"] {
        let mut samples = Vec::new();
        let mut size = 0;
        for _ in 0..EXPORT_ROUNDS {
            let started = Instant::now();
            let (status, bytes) = call(
                address,
                "GET",
                &format!("/api/lesson/summary?format={format}"),
                Value::Null,
            )
            .await;
            assert_eq!(status, 200);
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            size = bytes.len();
        }
        report(
            &format!(
                "lesson summary, {TABLETS} pupils × {SUMMARY_QUESTIONS} questions, {format} ({size} bytes)"
            ),
            samples,
        );
    }
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
