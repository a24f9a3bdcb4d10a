//! HTTPS from a room CA, measured against the real agent binary over
//! loopback: the lock fan-out to 40 tablets over WSS until the last ack
//! (target p99 ≤ 20 ms, as over plain WebSocket), and a new connection's TLS
//! handshake against a plain TCP connect; the tablets' page in headless
//! Chromium over HTTPS (trusting the CA through an NSS database) against
//! plain HTTP: first contentful paint, each load in a new browser.
//!
//! Run with `cargo bench -p firmware-agent --bench tls`.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

#[path = "../../tests/common/browser.rs"]
mod browser;

use common::tablets::{self, ack_every_command, hello, no_reply};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

const TABLETS: usize = 40;
const ROUNDS: usize = 200;
/// Page loads per scheme, each in a new browser (no connection or cache to reuse).
const PAGE_LOADS: usize = 10;

/// The room's agent and, when it serves TLS, where.
struct Agent {
    room: tablets::Agent,
    https: SocketAddr,
}

impl Agent {
    fn start() -> Agent {
        Agent::launch(true)
    }

    /// An agent serving plain HTTP only, for comparison.
    fn start_plain() -> Agent {
        Agent::launch(false)
    }

    fn launch(tls: bool) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let status = Command::new(tablets::agent_binary())
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(status.status.success(), "{args:?}");
        };
        run(&["tls", "init-ca", "--dir", "ca"]);
        run(&[
            "tls",
            "issue",
            "--ca",
            "ca",
            "--name",
            "BENCH-P1.local",
            "--ip",
            "127.0.0.1",
            "--out",
            "room",
        ]);
        let https = tablets::free_listener().local_addr().unwrap();
        let tls_keys = if tls {
            format!(
                "tls_cert = \"room/room.pem\"\ntls_key = \"room/room-key.pem\"\ntls_listen = \"{https}\"\n"
            )
        } else {
            String::new()
        };
        Agent {
            room: tablets::Agent::launch(dir, &tls_keys, "", ""),
            https,
        }
    }

    /// The room CA's certificate.
    fn ca(&self) -> std::path::PathBuf {
        self.room.dir.path().join("ca/ca.pem")
    }

    /// One request over HTTPS with curl, trusting only the room's CA.
    fn call(&self, path: &str, body: Option<Value>) -> Value {
        let output = Command::new("curl")
            .args(["-s", "-H", "content-type: application/json", "--cacert"])
            .arg(self.ca())
            .args(
                body.map(|body| ["-d".to_owned(), body.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg(format!("https://127.0.0.1:{}{path}", self.https.port()))
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.ca()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// Connects a tablet over WSS that acks every command.
async fn connect(agent: &Agent, connector: &TlsConnector, token: String) {
    let tcp = tokio::net::TcpStream::connect(agent.https).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let url = format!("wss://127.0.0.1:{}/tablet/ws", agent.https.port());
    let (mut socket, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    hello(&mut socket, &token).await;
    ack_every_command(socket, no_reply);
}

fn report(what: &str, mut samples: Vec<f64>, target_p99_ms: Option<f64>) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    let verdict = match target_p99_ms {
        Some(target) if at(0.99) <= target => format!("; target p99 ≤ {target} ms: meets"),
        Some(target) => format!("; target p99 ≤ {target} ms: MISSES"),
        None => String::new(),
    };
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} rounds{verdict}",
        at(0.5),
        at(0.99),
        samples.last().unwrap(),
        samples.len()
    );
}

/// Loads `url` in a new browser: its first contentful paint, in ms from the
/// navigation's start (TCP connect and TLS handshake included).
async fn page_load(url: &str, home: &std::path::Path) -> f64 {
    let mut chromium = browser::Chromium::open_at_home("about:blank", home).await;
    chromium.call("Page.navigate", json!({ "url": url })).await;
    chromium
        .wait_for("performance.getEntriesByName('first-contentful-paint').length > 0")
        .await;
    chromium
        .evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
        .await
        .as_f64()
        .unwrap()
}

async fn page_loads(url: &str, home: &std::path::Path, scheme: &str) {
    let mut paints = Vec::new();
    for _ in 0..PAGE_LOADS {
        paints.push(page_load(url, home).await);
    }
    report(
        &format!("tablets' page over {scheme}: first contentful paint"),
        paints,
        None,
    );
}

async fn run() {
    let agent = Agent::start();
    let home = browser::home_trusting(&agent.ca());
    let https_page = format!("https://127.0.0.1:{}/tablet/", agent.https.port());
    page_loads(&https_page, home.path(), "HTTPS").await;
    let plain = Agent::start_plain();
    page_loads(
        &format!("http://{}/tablet/", plain.room.address),
        home.path(),
        "plain HTTP",
    )
    .await;
    drop(plain);

    let connector = agent.connector();

    let (mut tcp, mut tls) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let stream = tokio::net::TcpStream::connect(agent.https).await.unwrap();
        tcp.push(started.elapsed().as_secs_f64() * 1000.0);
        let name = ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, stream).await.unwrap();
        tls.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report("TCP connect", tcp, None);
    report(
        "TCP connect and TLS 1.3 handshake (ECDSA P-256, full, no resumption)",
        tls,
        None,
    );

    let code = agent.call("/api/tablets/pairing", Some(json!({})))["window"]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 0..TABLETS {
        let paired = agent.call(
            "/tablet/pair",
            Some(json!({ "code": code, "name": format!("Máy {n}") })),
        );
        connect(
            &agent,
            &connector,
            paired["token"].as_str().expect("paired").to_owned(),
        )
        .await;
    }
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let path = if round % 2 == 0 {
            "/api/lesson/lock?wait_ms=5000"
        } else {
            "/api/lesson/unlock?wait_ms=5000"
        };
        let issued = tokio::task::block_in_place(|| agent.call(path, Some(json!({}))));
        assert_eq!(
            issued["acknowledged"].as_u64(),
            Some(TABLETS as u64),
            "{issued}"
        );
        samples.push(issued["elapsed_ms"].as_f64().unwrap());
    }
    report(
        "fan-out to 40 tablets over WSS until the last ack",
        samples,
        Some(20.0),
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
