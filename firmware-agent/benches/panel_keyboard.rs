//! The on-screen keyboard's figure, in headless Chromium with touch emulation
//! against the release agent on loopback: from a key's touch to its character
//! in the field on screen, for letters typed the Telex way, compared in the
//! same run with the baseline of the same field typed on a physical keyboard
//! (a key event the browser handles itself).
//!
//! Both are timed inside the page, from the input event's own timestamp
//! (`pointerdown` of the touch, `keydown` of the key) to the first task after
//! the animation frame that follows the field's change, so the DevTools
//! round trip that sends each touch is left out of both.
//!
//! Run with `cargo bench --bench panel_keyboard` after `make setup` (chromium).

#[path = "../../tests/common/browser.rs"]
mod browser;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// Touches, and key presses for the baseline, each.
const SAMPLES: usize = 300;
/// The keys typed, over and over: Vietnamese words in Telex ("Điểm danh lớp sáu").
const TELEX: &str = "ddieemr danh lowps saus ";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure());
}

async fn measure() {
    let dir = tempfile::tempdir().unwrap();
    let listeners = [
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let [port, grpc] = listeners.map(|l| l.local_addr().unwrap().port());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[room]\nschool_code = \"BENCH\"\nroom_id = \"P1\"\nname = \"Phòng đo\"\n[storage]\ndata_dir = \"data\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[hub]\nlisten = \"127.0.0.1:{grpc}\"\nplaintext = true\n[log]\nfilter = \"warn\"\n"
        ),
    )
    .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_firmware-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while ureq::get(&format!("{base}/healthz")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the agent did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The window holds headless Chromium's toolbars besides the 1080 lines shown,
    // and a touch outside the window is lost.
    let mut page = browser::Chromium::open_sized(&format!("{base}/panel/"), 1920, 1200).await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    page.call(
        "Emulation.setTouchEmulationEnabled",
        json!({ "enabled": true, "maxTouchPoints": 5 }),
    )
    .await;
    page.wait_for("document.getElementById('room-name').textContent === 'Phòng đo'")
        .await;
    page.evaluate(
        "document.querySelector('[data-view=tablets]').click(); \
         window.latencies = []; let since = 0; \
         document.addEventListener('pointerdown', e => { since = e.timeStamp; }, true); \
         document.addEventListener('keydown', e => { since = e.timeStamp; }, true); \
         document.getElementById('message-text').addEventListener('input', () => { const from = since; \
           requestAnimationFrame(() => setTimeout(() => latencies.push(performance.now() - from), 0)); }); true",
    )
    .await;

    // The baseline: the browser's own typing, from a physical key.
    page.evaluate("document.getElementById('message-text').focus(); true")
        .await;
    let mut keys = TELEX.chars().cycle();
    let mut baseline = Vec::new();
    for n in 1..=SAMPLES {
        let key = keys.next().unwrap().to_string();
        page.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyDown", "text": key, "key": key }),
        )
        .await;
        page.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key }),
        )
        .await;
        baseline.push(sample(&mut page, n).await);
        if n % 100 == 0 {
            page.evaluate("document.getElementById('message-text').value = ''; true")
                .await;
        }
    }

    // The on-screen keyboard, Telex on, each key touched.
    page.evaluate("document.getElementById('message-text').value = ''; latencies.length = 0; true")
        .await;
    let field = centre(&mut page, "#message-text").await;
    touch(&mut page, field).await;
    page.wait_for("!document.getElementById('osk').hidden")
        .await;
    page.evaluate("latencies.length = 0; true").await;
    let mut positions = std::collections::HashMap::new();
    let mut keys = TELEX.chars().cycle();
    let mut touched = Vec::new();
    for n in 1..=SAMPLES {
        let key = match keys.next().unwrap() {
            ' ' => "space".to_owned(),
            letter => letter.to_string(),
        };
        if !positions.contains_key(&key) {
            let at = centre(&mut page, &format!("#osk [data-key=\"{key}\"]")).await;
            positions.insert(key.clone(), at);
        }
        touch(&mut page, positions[&key]).await;
        touched.push(sample(&mut page, n).await);
        if n % 100 == 0 {
            page.evaluate("document.getElementById('message-text').value = ''; true")
                .await;
        }
    }
    let typed = page
        .evaluate("document.getElementById('osk').hidden === false")
        .await;
    assert_eq!(typed, true, "the keyboard stayed open for every touch");
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    agent.wait().unwrap();

    println!(
        "panel keyboard benchmark (release agent, headless Chromium with touch emulation, 1920x1080)"
    );
    report(
        "physical key to character on screen (baseline)",
        &mut baseline,
    );
    report(
        "on-screen key touch to character on screen, Telex",
        &mut touched,
    );
    let (base, keyboard) = (median(&baseline), median(&touched));
    println!(
        "the on-screen keyboard adds {:.2} ms to the median (aim: a key shows within one 60 Hz frame, 16.7 ms)",
        keyboard - base
    );
}

/// The `n`th latency the page measured, in milliseconds, once it is there.
async fn sample(page: &mut browser::Chromium, n: usize) -> f64 {
    page.wait_for(&format!("latencies.length >= {n}")).await;
    page.evaluate(&format!("latencies[{}]", n - 1))
        .await
        .as_f64()
        .unwrap()
}

async fn centre(page: &mut browser::Chromium, selector: &str) -> (f64, f64) {
    let at = page
        .evaluate(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView({{ block: 'nearest' }}); \
             const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ))
        .await;
    (at[0].as_f64().unwrap(), at[1].as_f64().unwrap())
}

async fn touch(page: &mut browser::Chromium, (x, y): (f64, f64)) {
    page.call(
        "Input.dispatchTouchEvent",
        json!({ "type": "touchStart", "touchPoints": [{ "x": x, "y": y }] }),
    )
    .await;
    page.call(
        "Input.dispatchTouchEvent",
        json!({ "type": "touchEnd", "touchPoints": [] }),
    )
    .await;
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn report(what: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let mean = samples.iter().sum::<f64>() / n as f64;
    let spread = (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    println!(
        "{what}, {n} samples: median {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {mean:.2} ± {spread:.2} ms",
        samples[n / 2],
        samples[n * 99 / 100],
        samples[n - 1]
    );
}
