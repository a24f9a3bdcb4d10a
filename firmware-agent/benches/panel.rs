//! The panel's figures, in headless Chromium against the release agent on
//! loopback: first paint of the page, the bytes its first load transfers, and
//! how long a teacher's roll-call correction takes from the request to the
//! changed tile on the page (HTTP, the roll call, the durable commit, the live
//! feed and the page's rendering all included).
//!
//! Run with `cargo bench --bench panel` after `make setup` (models, chromium).

#[path = "../../tests/common/browser.rs"]
mod browser;

#[path = "common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOADS: usize = 10;
const CORRECTIONS: usize = 30;

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
    // Both listeners held until both ports are chosen, so they differ.
    let listeners = [
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let [port, grpc] = listeners.map(|l| l.local_addr().unwrap().port());
    let (models, library) = (
        common::models_dir().display().to_string(),
        common::onnxruntime_library().display().to_string(),
    );
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let photo = common::faces_dir().join("probe/stranger_a.png");
    std::fs::copy(&photo, frames.join("frame.png")).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[room]\nschool_code = \"BENCH\"\nroom_id = \"P1\"\nname = \"Phòng đo\"\n[storage]\ndata_dir = \"data\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[hub]\nlisten = \"127.0.0.1:{grpc}\"\nplaintext = true\n[log]\nfilter = \"warn\"\n\
             [attendance]\nenabled = true\nclass = \"6A1\"\nmodels_dir = \"{models}\"\nonnxruntime_library = \"{library}\"\nwindow_minutes = 120\n\
             [attendance.source]\nkind = \"folder\"\npath = \"{}\"\nrate = 1.0\nrepeat = true\n",
            frames.display()
        ),
    )
    .unwrap();
    let mut roster = String::from(
        "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n",
    );
    for n in 0..40 {
        roster.push_str(&format!("pupil,0012060{n:05},Học sinh {n},6A1,no,no,\n"));
    }
    std::fs::write(dir.path().join("roster.csv"), roster).unwrap();
    let agent_binary = env!("CARGO_BIN_EXE_firmware-agent");
    let imported = Command::new(agent_binary)
        .args(["roster", "import"])
        .arg(dir.path().join("roster.csv"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let mut agent = Command::new(agent_binary)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !roll_call_open(&base) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the roll call did not open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut page = browser::Chromium::open_sized("about:blank", 1920, 1080).await;
    page.call("Network.enable", serde_json::json!({})).await;
    page.call(
        "Network.setCacheDisabled",
        serde_json::json!({ "cacheDisabled": true }),
    )
    .await;
    let mut paints = Vec::new();
    let mut bytes = 0.0;
    for _ in 0..LOADS {
        page.call(
            "Page.navigate",
            serde_json::json!({ "url": format!("{base}/panel/") }),
        )
        .await;
        page.wait_for("document.readyState === 'complete' && performance.getEntriesByName('first-contentful-paint').length > 0 && document.getElementById('room-name').textContent === 'Phòng đo'").await;
        paints.push(
            page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
                .await
                .as_f64()
                .unwrap(),
        );
        bytes = page
            .evaluate("performance.getEntriesByType('navigation')[0].transferSize + performance.getEntriesByType('resource').reduce((sum, r) => sum + r.transferSize, 0)")
            .await
            .as_f64()
            .unwrap();
    }
    paints.sort_by(f64::total_cmp);

    page.evaluate("document.querySelector('[data-view=rollcall]').click(); true")
        .await;
    page.wait_for("document.querySelectorAll('#rollcall-grid .pupil').length === 40")
        .await;
    let statuses = ["PRESENT", "LATE", "ABSENT", "EXCUSED"];
    let mut visible = Vec::new();
    for n in 0..CORRECTIONS {
        let pupil = format!("0012060{:05}", n % 40);
        let status = statuses[n % 4];
        let asked = Instant::now();
        let body = serde_json::json!({ "personal_id": pupil, "status": status, "reason": "đo" })
            .to_string();
        let url = format!("{base}/api/attendance/correct");
        tokio::task::spawn_blocking(move || {
            ureq::post(&url)
                .header("content-type", "application/json")
                .send(&body)
                .unwrap()
        })
        .await
        .unwrap();
        page.wait_for(&format!("document.querySelector('[data-personal-id=\"{pupil}\"]').classList.contains('{status}')")).await;
        visible.push(asked.elapsed());
    }
    visible.sort();
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    agent.wait().unwrap();

    println!("panel benchmark (release agent, headless Chromium, loopback)");
    println!(
        "first contentful paint over {LOADS} uncached loads: median {:.0} ms, max {:.0} ms (aim: <= 500 ms)",
        paints[LOADS / 2],
        paints[LOADS - 1]
    );
    println!(
        "bytes transferred on first load (page, script, style, state and feed headers): {bytes:.0}"
    );
    println!(
        "roll-call correction to the changed tile, {CORRECTIONS} samples: median {:.1} ms, p90 {:.1} ms, max {:.1} ms (aim: <= 200 ms)",
        ms(visible[CORRECTIONS / 2]),
        ms(visible[CORRECTIONS * 9 / 10]),
        ms(visible[CORRECTIONS - 1])
    );
}

fn roll_call_open(base: &str) -> bool {
    let Ok(mut response) = ureq::get(&format!("{base}/healthz")).call() else {
        return false;
    };
    let body = response.body_mut().read_to_string().unwrap_or_default();
    body.contains("roll call of 6A1 open")
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
