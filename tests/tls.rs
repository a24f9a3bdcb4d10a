//! HTTPS from a room CA, end to end: the real binary makes the CA and the
//! room's certificate, the real agent serves them, headless Chromium trusts
//! the CA through an NSS database made with `certutil` (or, without it,
//! refuses the page), and curl checks what plain HTTP still gives.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use common::{Room, agent_binary, free_addresses};
use serde_json::Value;

/// A room with a school CA and a certificate issued for `TEST-01-P101.local`
/// and 127.0.0.1, served on its own HTTPS port.
struct SecureRoom {
    room: Room,
    https: SocketAddr,
    ca: PathBuf,
}

impl SecureRoom {
    fn new(extra: &str) -> SecureRoom {
        let room = Room::new(extra);
        let dir = room.dir.path();
        let ca_dir = dir.join("ca");
        run_ok(&["tls", "init-ca", "--dir", ca_dir.to_str().unwrap()]);
        let issued = run_ok(&[
            "tls",
            "issue",
            "--ca",
            ca_dir.to_str().unwrap(),
            "--name",
            "TEST-01-P101.local",
            "--ip",
            "127.0.0.1",
            "--out",
            dir.join("room").to_str().unwrap(),
        ]);
        assert!(issued.contains("expires "), "{issued}");
        let [https] = free_addresses();
        let config = std::fs::read_to_string(&room.config_path).unwrap().replace(
            &format!("listen = \"{}\"\n", room.http),
            &format!(
                "listen = \"{}\"\ntls_cert = \"room/room.pem\"\ntls_key = \"room/room-key.pem\"\ntls_listen = \"{https}\"\n",
                room.http
            ),
        );
        std::fs::write(&room.config_path, config).unwrap();
        SecureRoom {
            room,
            https,
            ca: ca_dir.join("ca.pem"),
        }
    }

    /// curl over HTTPS trusting only the room's CA: the status, the headers and the body.
    fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
        let url = format!("https://127.0.0.1:{}{path}", self.https.port());
        curl(&["--cacert", self.ca.to_str().unwrap()], method, &url, body)
    }
}

fn run_ok(args: &[&str]) -> String {
    let output = Command::new(agent_binary()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One request with curl: the status, the response's head and its body.
fn curl(options: &[&str], method: &str, url: &str, body: Option<&str>) -> (u16, String, String) {
    let head = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .args(["-s", "-X", method, "-H", "content-type: application/json"])
        .args(["-D", head.path().to_str().unwrap(), "-w", "\n%{http_code}"])
        .args(options)
        .args(body.map(|body| ["-d", body]).into_iter().flatten())
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl {url}: exit {:?}",
        output.status.code()
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        std::fs::read_to_string(head.path()).unwrap(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_trusting_the_room_ca_pairs_and_follows_a_lock_over_https() {
    let secure = SecureRoom::new("");
    let _agent = secure.room.start();
    let (status, _, opened) = secure.curl("POST", "/api/tablets/pairing", None);
    assert_eq!(status, 200, "{opened}");
    let opened: Value = serde_json::from_str(&opened).unwrap();
    let link = opened["link"].as_str().unwrap();
    let page = format!("https://127.0.0.1:{}/tablet/#code=", secure.https.port());
    assert!(link.starts_with(&page), "the QR code opens HTTPS: {link}");

    let home = browser::home_trusting(&secure.ca);
    let mut chromium = browser::Chromium::open_at_home(link, home.path()).await;
    chromium.wait_for("!document.getElementById('pairing').hidden && document.getElementById('code').value.length === 6").await;
    assert_eq!(chromium.evaluate("location.protocol").await, "https:");
    chromium.evaluate("document.getElementById('name').value = 'Bàn HTTPS'; document.getElementById('pair-button').click(); true").await;
    chromium
        .wait_for("document.getElementById('status').dataset.state === 'online'")
        .await;

    let (status, _, lock) = secure.curl(
        "POST",
        "/api/lesson/lock?wait_ms=10000",
        Some(r#"{"message":"Nhìn lên bảng"}"#),
    );
    let lock: Value = serde_json::from_str(&lock).unwrap();
    assert_eq!(
        (status, lock["acknowledged"].as_u64()),
        (200, Some(1)),
        "{lock}"
    );
    chromium
        .wait_for("!document.getElementById('lock').hidden")
        .await;
    assert_eq!(
        chromium
            .evaluate("document.getElementById('lock-message').textContent")
            .await,
        "Nhìn lên bảng"
    );

    let (_, _, health) = secure.curl("GET", "/healthz", None);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["subsystems"]["tls"]["state"], "ok", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_the_room_ca_refuses_the_page() {
    let secure = SecureRoom::new("");
    let _agent = secure.room.start();
    let url = format!("https://127.0.0.1:{}/tablet/", secure.https.port());
    let untrusting = tempfile::tempdir().unwrap();
    let mut chromium = browser::Chromium::open_at_home("about:blank", untrusting.path()).await;
    let navigation = chromium
        .call("Page.navigate", serde_json::json!({ "url": url }))
        .await;
    assert_eq!(
        navigation["result"]["errorText"], "net::ERR_CERT_AUTHORITY_INVALID",
        "{navigation}"
    );
    let refused = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &url])
        .status()
        .unwrap();
    assert_eq!(refused.code(), Some(60), "curl refuses the certificate");
}

#[test]
fn plain_http_only_redirects_to_https_and_gives_no_token() {
    let secure = SecureRoom::new("[panel]\nteacher_pin = \"482193\"\n");
    let _agent = secure.room.start();
    let plain = |method: &str, path: &str, body: Option<&str>| {
        curl(
            &[],
            method,
            &format!("http://{}{path}", secure.room.http),
            body,
        )
    };
    for (method, path, body) in [
        ("POST", "/api/tablets/pairing", None),
        ("GET", "/api/tablets/pairing", None),
        (
            "POST",
            "/tablet/pair",
            Some(r#"{"code":"123456","name":"Kẻ nghe lén"}"#),
        ),
        ("POST", "/api/panel/login", Some(r#"{"pin":"482193"}"#)),
        ("GET", "/tablet/?x=1", None),
        ("GET", "/healthz", None),
    ] {
        let (status, head, reply) = plain(method, path, body);
        let expected = format!("location: https://127.0.0.1:{}{path}", secure.https.port());
        assert_eq!(status, 308, "{method} {path}: {reply}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&expected.to_ascii_lowercase()),
            "{method} {path}: {head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("set-cookie") && !reply.contains("code"),
            "{method} {path} gives nothing away: {head}{reply}"
        );
    }
    let (status, _, window) = secure.curl("GET", "/api/tablets/pairing", None);
    assert_eq!(status, 404, "plain HTTP opened no pairing window: {window}");

    let (status, head, _) = secure.curl("POST", "/api/panel/login", Some(r#"{"pin":"482193"}"#));
    let cookie = head
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{status}: no cookie in {head}"));
    assert!(cookie.trim_end().ends_with("; Secure"), "{cookie}");
}

#[test]
fn the_certificate_shows_degraded_in_healthz_within_thirty_days_of_expiry() {
    let secure = SecureRoom::new("");
    // The certificate is valid for 398 days from today.
    let in_380_days = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .saturating_add(jiff::Span::new().days(380))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let _agent = secure.room.start_at(&in_380_days);
    let (_, _, health) = secure.curl("GET", "/healthz", None);
    let health: Value = serde_json::from_str(&health).unwrap();
    let tls = &health["subsystems"]["tls"];
    assert_eq!(
        (&tls["state"], &health["status"]),
        (&Value::from("degraded"), &Value::from("degraded")),
        "{health}"
    );
    assert!(
        tls["detail"].as_str().unwrap().contains("tls issue"),
        "{tls}"
    );
}

#[test]
fn check_config_refuses_a_missing_or_mismatched_key_naming_the_key_and_file() {
    let secure = SecureRoom::new("");
    let dir = secure.room.dir.path();
    let check = |config: &str| {
        std::fs::write(&secure.room.config_path, config).unwrap();
        let output = Command::new(agent_binary())
            .arg("check-config")
            .arg(&secure.room.config_path)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let config = std::fs::read_to_string(&secure.room.config_path).unwrap();
    assert_eq!(check(&config).0, Some(0));

    let (code, message) = check(&config.replace("room/room-key.pem", "room/gone.pem"));
    assert_eq!(code, Some(2), "{message}");
    assert!(
        message.contains("http.tls_key") && message.contains("room/gone.pem"),
        "{message}"
    );

    run_ok(&[
        "tls",
        "issue",
        "--ca",
        dir.join("ca").to_str().unwrap(),
        "--name",
        "TEST-01-P102.local",
        "--out",
        dir.join("other").to_str().unwrap(),
    ]);
    let (code, message) = check(&config.replace("room/room-key.pem", "other/room-key.pem"));
    assert_eq!(code, Some(2), "{message}");
    assert!(
        message.contains("http.tls_key")
            && message.contains("other/room-key.pem")
            && message.contains("not the key of"),
        "{message}"
    );
}
