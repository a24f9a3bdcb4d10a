//! The class view's figures, with 40 tablets on the release agent over
//! loopback and the panel page in headless Chromium at 4K:
//! - from a tablet saying it left (or came back to) the lesson page to its
//!   tile changing on the panel, aim ≤ 100 ms; beside it, in the same run, the
//!   baseline: the same change's arrival as a raw `class` event of the feed in
//!   the same page, so the page's own share is the difference;
//! - the page's frame time with 40 live tiles changing 20 times a second,
//!   against the same page idle as the baseline.
//!
//! Both ends read one clock: the tablet's send time (the bench's wall clock)
//! and the page's `performance.timeOrigin + performance.now()`, on one machine.
//! Run with `cargo bench --bench class_view` after `make setup` (chromium).

#[path = "../../tests/common/browser.rs"]
mod browser;

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::tablets::{Agent, connect, open_pairing, pair};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const TABLETS: usize = 40;
const CHANGES: usize = 120;
const FRAME_WINDOW: Duration = Duration::from_secs(5);
const CHANGES_PER_SECOND: u64 = 20;

/// Pairs and connects a tablet; returns its id and a sender of presence changes
/// (`visible`), each sent at once, with pings every 10 s to stay connected.
async fn tablet(address: SocketAddr, code: &str, n: usize) -> (String, mpsc::Sender<bool>) {
    let (id, token) = pair(address, code, &format!("Bàn {n:02}")).await;
    let mut socket = connect(address, &token).await;
    let (changes, mut pending) = mpsc::channel::<bool>(16);
    tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
        loop {
            let message = tokio::select! {
                change = pending.recv() => match change {
                    Some(visible) => json!({ "type": "presence", "visible": visible, "focused": visible }),
                    None => return,
                },
                _ = heartbeat.tick() => json!({ "type": "ping" }),
                frame = socket.next() => match frame { Some(Ok(_)) => continue, _ => return },
            };
            if socket
                .send(Message::text(message.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    (id, changes)
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn summary(what: &str, mut samples: Vec<f64>, aim: Option<f64>) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let deviation =
        (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    let verdict = match aim {
        Some(aim) if at(0.99) <= aim => format!("; aim ≤ {aim} ms: meets at p99"),
        Some(aim) => format!("; aim ≤ {aim} ms: MISSES at p99"),
        None => String::new(),
    };
    println!(
        "{what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, mean {mean:.1} ± {deviation:.1} ms over {} samples{verdict}",
        at(0.5),
        at(0.99),
        samples.last().unwrap(),
        samples.len()
    );
}

/// Records, in the page, when each tile's `data-away` changes (the tile as
/// drawn) and when each `class` event arrives on a second feed (the baseline).
const WATCH: &str = r#"(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.tileSeen = []; window.feedSeen = [];
  const last = new Map();
  new MutationObserver(() => {
    for (const tile of document.querySelectorAll('#class-tiles .tile')) {
      const id = tile.dataset.tabletId, away = tile.dataset.away;
      if (last.has(id) && last.get(id) !== away) window.tileSeen.push([id, away, now()]);
      last.set(id, away);
    }
  }).observe(document.getElementById('class-tiles'), { subtree: true, childList: true, attributes: true });
  const feed = new EventSource('/api/panel/events');
  const away = new Map();
  feed.addEventListener('class', e => {
    const at = now();
    for (const tile of JSON.parse(e.data).tiles) {
      const value = String(tile.away);
      if (away.has(tile.tablet_id) && away.get(tile.tablet_id) !== value) window.feedSeen.push([tile.tablet_id, value, at]);
      away.set(tile.tablet_id, value);
    }
  });
  return true;
})()"#;

/// Frame intervals, in ms, over `window` of the page's own animation frames.
fn frames(window: Duration) -> String {
    format!(
        "new Promise(resolve => {{ const intervals = []; let previous = performance.now(); const end = previous + {}; \
         const frame = at => {{ intervals.push(at - previous); previous = at; if (at < end) requestAnimationFrame(frame); else resolve(intervals.slice(1)); }}; \
         requestAnimationFrame(frame); }})",
        window.as_millis()
    )
}

async fn measure() {
    let agent = Agent::launch(tempfile::tempdir().unwrap(), "", "plaintext = true\n", "");
    let address = agent.address;
    let code = open_pairing(address).await;
    let mut tablets = Vec::new();
    for n in 1..=TABLETS {
        tablets.push(tablet(address, &code, n).await);
    }
    let mut page =
        browser::Chromium::open_sized(&format!("http://{address}/panel/"), 3840, 2160).await;
    page.wait_for("document.querySelector('[data-view=class]') !== null")
        .await;
    page.evaluate("document.querySelector('[data-view=class]').click(); true")
        .await;
    page.wait_for(&format!(
        "document.querySelectorAll('#class-tiles .tile[data-connected=true]').length === {TABLETS}"
    ))
    .await;
    page.evaluate(WATCH).await;
    // Each tablet reports itself on the page, then the changes begin.
    for (_, changes) in &tablets {
        changes.send(true).await.unwrap();
    }
    page.wait_for("window.feedSeen !== undefined").await;

    let idle: Vec<f64> =
        serde_json::from_value(page.evaluate(&frames(FRAME_WINDOW)).await).unwrap();

    let (mut tile_ms, mut feed_ms) = (Vec::new(), Vec::new());
    for change in 0..CHANGES {
        let (id, changes) = &tablets[change % TABLETS];
        let visible = change / TABLETS % 2 == 1;
        let away = (!visible).to_string();
        let sent = epoch_ms();
        changes.send(visible).await.unwrap();
        let find = |list: &str| {
            format!(
                "window.{list}.find(([id, away, at]) => id === '{id}' && away === '{away}' && at >= {sent})"
            )
        };
        page.wait_for(&format!("{} && {}", find("tileSeen"), find("feedSeen")))
            .await;
        let seen = page
            .evaluate(&format!(
                "[{}[2], {}[2]]",
                find("tileSeen"),
                find("feedSeen")
            ))
            .await;
        tile_ms.push(seen[0].as_f64().unwrap() - sent);
        feed_ms.push(seen[1].as_f64().unwrap() - sent);
    }

    // 40 live tiles: tablets come and go 20 times a second while frames are timed.
    let driver = {
        let senders: Vec<mpsc::Sender<bool>> = tablets.iter().map(|(_, s)| s.clone()).collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / CHANGES_PER_SECOND));
            for n in 0.. {
                tick.tick().await;
                if senders[n % TABLETS]
                    .send((n / TABLETS).is_multiple_of(2))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    let live: Vec<f64> =
        serde_json::from_value(page.evaluate(&frames(FRAME_WINDOW)).await).unwrap();
    driver.abort();

    println!("class view, {TABLETS} tablets, panel at 3840x2160 in headless Chromium:");
    summary(
        "  tablet's change → its `class` event in the page (baseline: the feed)",
        feed_ms,
        None,
    );
    summary(
        "  tablet's change → its tile changed on the page",
        tile_ms,
        Some(100.0),
    );
    summary("  frame time, page idle (baseline)", idle, None);
    summary(
        &format!("  frame time, 40 live tiles, {CHANGES_PER_SECOND} changes/s"),
        live,
        None,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure());
}
