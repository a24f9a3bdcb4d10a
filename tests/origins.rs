//! Only the panel's own pages may drive the room. The panel's kiosk browser
//! is trusted on loopback, so these tests attack from inside a real browser
//! on loopback: a page of another site (served by Python's `http.server` on a
//! port of its own), and a page reaching the agent under a name that resolves
//! to it (DNS rebinding, through Chromium's own host-resolver rules).

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{Room, http_get, metric};
use firmware_agent::proto::event::Payload;
use serde_json::Value;

const BELL: &str =
    "[[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = { type = \"simulated\" }\n";

/// Another web site on loopback: Python's `http.server` serving a folder
/// with one empty page; stopped when dropped.
struct OtherSite {
    child: Child,
    origin: String,
    _folder: tempfile::TempDir,
}

impl OtherSite {
    fn start() -> OtherSite {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(
            folder.path().join("index.html"),
            "<!doctype html><meta charset=utf-8><title>Trò chơi</title><p>Chơi nào!</p>",
        )
        .unwrap();
        let port = common::free_port();
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-u",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(folder.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 from Debian: run `make setup`");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert!(
            ready.starts_with("Serving HTTP"),
            "the other site did not start: {ready}"
        );
        OtherSite {
            child,
            origin: format!("http://127.0.0.1:{port}"),
            _folder: folder,
        }
    }
}

impl Drop for OtherSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn outbox(room: &Room, kind: &str) -> Vec<Payload> {
    let conn = rusqlite::Connection::open_with_flags(
        room.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT payload FROM outbox WHERE kind = ?1 ORDER BY seq")
        .unwrap();
    let rows = stmt
        .query_map([kind], |row| row.get::<_, Vec<u8>>(0))
        .unwrap();
    rows.map(|bytes| {
        Payload::decode_stored(kind, &bytes.unwrap())
            .unwrap()
            .unwrap()
    })
    .collect()
}

fn refused(room: &Room, reason: &str) -> f64 {
    let (_, scrape) = http_get(room.http, "/metrics");
    metric(
        &scrape,
        &format!("http_requests_refused_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// A page of another site, open in the panel's own browser, tries everything
/// a page can send without the agent's consent: a `no-cors` fetch, a form, a
/// JSON fetch (which needs a CORS preflight), a WebSocket to the tablets'
/// channel. Nothing rings, nothing locks, no pairing opens; the agent counts
/// the refusals. The same JSON request from the panel's own page rings the
/// bell, so it is the origin that was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_in_the_panels_browser_changes_nothing() {
    let room = Room::new(BELL);
    let _agent = room.start();
    let site = OtherSite::start();
    let agent = format!("http://{}", room.http);
    let mut page = browser::Chromium::open(&format!("{}/index.html", site.origin)).await;
    page.wait_for("document.title === 'Trò chơi'").await;

    let no_cors = page
        .evaluate(&format!(
            "fetch('{agent}/api/bell/ring', {{ method: 'POST', mode: 'no-cors', body: '{{\"device\":\"bell\"}}' }}).then(r => r.type, e => 'failed: ' + e)"
        ))
        .await;
    assert_eq!(
        no_cors, "opaque",
        "the request went out; the page cannot read the reply"
    );
    let preflighted = page
        .evaluate(&format!(
            "fetch('{agent}/api/tablets/pairing', {{ method: 'POST', headers: {{ 'content-type': 'application/json' }} }}).then(r => 'read ' + r.status, e => e.name)"
        ))
        .await;
    assert_eq!(
        preflighted, "TypeError",
        "the agent grants no CORS preflight, so the request is never sent"
    );
    let websocket = page
        .evaluate(&format!(
            "new Promise(done => {{ const ws = new WebSocket('ws://{}/tablet/ws'); ws.onopen = () => done('open'); ws.onclose = () => done('closed'); }})",
            room.http
        ))
        .await;
    assert_eq!(
        websocket, "closed",
        "the tablets' channel refuses a handshake from another site"
    );
    let refused_before_form = refused(&room, "cross_origin");
    let form = page
        .evaluate(&format!(
            "new Promise(done => {{ \
               const sink = Object.assign(document.createElement('iframe'), {{ name: 'sink' }}); document.body.append(sink); \
               sink.onload = () => done('answered'); \
               const form = Object.assign(document.createElement('form'), {{ method: 'POST', action: '{agent}/api/lesson/lock', target: 'sink' }}); \
               form.innerHTML = '<input name=message value=hacked>'; document.body.append(form); form.submit(); }})"
        ))
        .await;
    assert_eq!(form, "answered");
    assert!(
        refused_before_form >= 2.0,
        "the no-cors fetch and the handshake were refused: {refused_before_form}"
    );
    assert_eq!(refused(&room, "cross_origin"), refused_before_form + 1.0);
    assert!(outbox(&room, "actuation").is_empty(), "the bell never rang");
    let (_, pairing) = http_get(room.http, "/api/tablets/pairing");
    assert!(
        !pairing.contains("\"code\""),
        "no pairing window opened: {pairing}"
    );

    // The same request from the panel's own page rings the bell.
    let mut panel = browser::Chromium::open(&format!("{agent}/panel/")).await;
    panel
        .wait_for("document.getElementById('room-name').textContent === 'Phòng thử'")
        .await;
    let rang = panel
        .evaluate("fetch('/api/bell/ring', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{\"device\":\"bell\"}' }).then(r => r.status)")
        .await;
    assert_eq!(rang, 200);
    assert_eq!(
        outbox(&room, "actuation").len(),
        1,
        "the panel's own page rang it"
    );
}

/// A page whose name an attacker points at the agent (DNS rebinding) is the
/// agent's origin as far as the browser knows, so it could read every reply;
/// the agent answers nothing that names another host, not even the panel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_gets_nothing_from_the_agent() {
    let room = Room::new(BELL);
    let _agent = room.start();
    let rebound = format!("http://rebound.example:{}", room.http.port());
    let rules = "--host-resolver-rules=MAP rebound.example 127.0.0.1";
    let mut page =
        browser::Chromium::open_with(&format!("{rebound}/panel/"), 1280, 800, &[rules]).await;
    page.wait_for("document.body && document.body.innerText.includes('unknown_host')")
        .await;
    let state = page
        .evaluate(
            "fetch('/api/panel/state').then(r => r.status + ' ' + r.headers.get('content-type'))",
        )
        .await;
    assert_eq!(state, "421 application/json", "the roster is not read");
    let pairing = page
        .evaluate("fetch('/api/tablets/pairing', { method: 'POST', headers: { 'content-type': 'application/json' } }).then(r => r.text())")
        .await;
    let pairing: Value = serde_json::from_str(pairing.as_str().unwrap()).unwrap();
    assert_eq!(pairing["error"], "unknown_host", "{pairing}");
    assert!(
        pairing["detail"]
            .as_str()
            .unwrap()
            .contains("http.server_names"),
        "IT staff are told how to allow a name: {pairing}"
    );
    assert!(refused(&room, "unknown_host") >= 3.0);
    let (_, window) = http_get(room.http, "/api/tablets/pairing");
    assert!(
        !window.contains("\"code\""),
        "no pairing window opened: {window}"
    );

    // A name IT staff list is served.
    let config = std::fs::read_to_string(&room.config_path)
        .unwrap()
        .replace("[http]\n", "[http]\nserver_names = [\"rebound.example\"]\n");
    std::fs::write(&room.config_path, config).unwrap();
    drop(_agent);
    let _agent = room.start();
    let status = page
        .evaluate("fetch('/api/panel/state').then(r => r.status)")
        .await;
    assert_eq!(status, 200, "a name in http.server_names is the agent's");
}
