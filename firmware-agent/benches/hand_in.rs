//! Hand-ins' figures against the real agent binary over loopback: 40 tablets
//! (HTTP clients) each hand in a 2 MB photo at the same moment; the time until
//! all 40 are on the panel's live feed, and the agent's peak memory
//! (VmHWM, reset before each round through `/proc/PID/clear_refs`) while it
//! happens, and each upload's time from its first byte to the agent's answer
//! (p50/p99 over the rounds). The baseline, in the same run, is one tablet
//! handing in the same photo alone.
//!
//! Run with `cargo bench -p firmware-agent --bench hand_in`.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Cursor};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::Engine;
use common::tablets::{Agent, pair_and_bind};
use serde_json::json;

const TABLETS: usize = 40;
/// Rounds of each scenario; a tablet may hand in 10 times a minute.
const ROUNDS: usize = 3;
const PHOTO_BYTES: usize = 2 * 1024 * 1024;

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

/// The agent with a class of `pupils`, each holding a paired tablet; their tokens.
fn start(pupils: usize) -> (Agent, Vec<String>) {
    let agent = Agent::start_class(pupils);
    let tokens = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pair_and_bind(agent.address, pupils));
    (agent, tokens)
}

/// A photo of about 2 MB: a 12-megapixel picture with grain, as a tablet's camera makes.
fn photo() -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let picture = image::RgbImage::from_fn(4000, 3000, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let grain = (seed % 24) as u8;
        image::Rgb([
            (x / 16) as u8 ^ grain,
            (y / 12) as u8 ^ grain,
            ((x + y) / 28) as u8,
        ])
    });
    let mut best = Vec::new();
    for quality in (40..=95).rev().step_by(5) {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), quality)
            .encode_image(&picture)
            .unwrap();
        best = bytes;
        if best.len() <= PHOTO_BYTES {
            break;
        }
    }
    best
}

/// Follows the panel's feed; sends the instant each `lesson.hand_in` record arrives.
fn follow_feed(address: SocketAddr) -> mpsc::Receiver<Instant> {
    let (sent, seen) = mpsc::channel();
    let (ready, opened) = mpsc::channel();
    std::thread::spawn(move || {
        let response = ureq::Agent::config_builder()
            .timeout_global(None)
            .build()
            .new_agent()
            .get(&format!("http://{address}/api/panel/events"))
            .call()
            .unwrap();
        let mut lines = BufReader::new(response.into_body().into_reader()).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.starts_with("event: hello") {
                let _ = ready.send(());
            }
            if line.starts_with("data:") && line.contains("\"lesson.hand_in\"") {
                let _ = sent.send(Instant::now());
            }
        }
    });
    opened
        .recv_timeout(Duration::from_secs(10))
        .expect("the feed opens");
    seen
}

/// The agent's peak resident memory since the last reset, in MiB; resets it.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    kib / 1024.0
}

/// One round's figures: the time until the last hand-in was on the feed, the
/// agent's peak memory meanwhile, and each upload's time until its answer.
struct Round {
    all_on_the_panel: Duration,
    peak_rss_mib: f64,
    uploads: Vec<Duration>,
}

/// `tokens` hand in `body` at the same moment.
fn round(
    agent: &Agent,
    tokens: &[String],
    body: &Arc<String>,
    feed: &mpsc::Receiver<Instant>,
) -> Round {
    let pid = agent.child.id();
    peak_rss_mib(pid);
    let barrier = Arc::new(Barrier::new(tokens.len() + 1));
    let clients: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (barrier, body, token) = (barrier.clone(), body.clone(), token.clone());
            let url = format!("http://{}/tablet/hand-in", agent.address);
            std::thread::spawn(move || {
                barrier.wait();
                let sent = Instant::now();
                let response = http()
                    .post(&url)
                    .header("authorization", &format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .send(body.as_bytes())
                    .unwrap();
                assert_eq!(response.status().as_u16(), 201, "a hand-in is taken");
                sent.elapsed()
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut last = start;
    for _ in tokens {
        last = feed
            .recv_timeout(Duration::from_secs(120))
            .expect("every hand-in reaches the panel's feed");
    }
    let uploads = clients
        .into_iter()
        .map(|client| client.join().unwrap())
        .collect();
    Round {
        all_on_the_panel: last - start,
        peak_rss_mib: peak_rss_mib(pid),
        uploads,
    }
}

fn spread(label: &str, rounds: &mut [Round]) {
    rounds.sort_by_key(|r| r.all_on_the_panel);
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    let totals: Vec<String> = rounds.iter().map(|r| ms(r.all_on_the_panel)).collect();
    let peak = rounds.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    let low = rounds
        .iter()
        .map(|r| r.peak_rss_mib)
        .fold(f64::MAX, f64::min);
    let mut uploads: Vec<Duration> = rounds.iter().flat_map(|r| r.uploads.clone()).collect();
    uploads.sort();
    let percentile = |p: usize| uploads[(uploads.len() * p / 100).min(uploads.len() - 1)];
    println!(
        "{label:<28} all on the panel after {} ms (rounds, sorted); an upload p50 {} ms, p99 {} ms; peak RSS {low:.0}–{peak:.0} MiB",
        totals.join(" / "),
        ms(percentile(50)),
        ms(percentile(99)),
    );
}

fn main() {
    let photo = photo();
    let body = Arc::new(
        json!({ "kind": "photo", "image": base64::engine::general_purpose::STANDARD.encode(&photo) })
            .to_string(),
    );
    let (agent, tokens) = start(TABLETS + 1);
    let feed = follow_feed(agent.address);
    println!(
        "hand-in: {TABLETS} tablets, a {:.2} MB photo (4000x3000 JPEG), {ROUNDS} rounds each",
        photo.len() as f64 / 1e6
    );
    println!(
        "idle agent: {:.0} MiB resident",
        peak_rss_mib(agent.child.id())
    );
    let (alone, class) = tokens.split_at(1);
    let mut baseline: Vec<_> = (0..ROUNDS)
        .map(|_| round(&agent, alone, &body, &feed))
        .collect();
    let mut together: Vec<_> = (0..ROUNDS)
        .map(|_| round(&agent, class, &body, &feed))
        .collect();
    spread("baseline: one tablet alone", &mut baseline);
    spread("40 tablets at once", &mut together);
    let median = |rounds: &[Round]| rounds[rounds.len() / 2].all_on_the_panel.as_secs_f64();
    println!(
        "40 at once took {:.1}x one alone ({:.0} ms a hand-in)",
        median(&together) / median(&baseline),
        median(&together) * 1000.0 / TABLETS as f64
    );
}
