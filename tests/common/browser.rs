//! Debian's Chromium, headless, driven over the DevTools protocol: what the
//! browser tests of the tablets' page and the panel share.
#![allow(dead_code)] // each test or bench uses its own part of this module

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

const PATIENCE: Duration = Duration::from_secs(20);

pub struct Chromium {
    child: Child,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts a browser showing `url` in a window of `width` x `height` CSS pixels.
    pub async fn open(url: &str) -> Chromium {
        Self::open_sized(url, 1280, 800).await
    }

    pub async fn open_sized(url: &str, width: u32, height: u32) -> Chromium {
        Self::open_with(url, width, height, &[]).await
    }

    /// Starts a browser as [`Chromium::open_sized`] does, with `extra` command-line switches.
    pub async fn open_with(url: &str, width: u32, height: u32, extra: &[&str]) -> Chromium {
        Self::launch(url, width, height, extra, None).await
    }

    /// Starts a browser as [`Chromium::open`] does, whose home is `home`: it
    /// trusts the CAs of the NSS database in `home/.pki/nssdb`.
    pub async fn open_at_home(url: &str, home: &std::path::Path) -> Chromium {
        Self::launch(url, 1280, 800, &[], Some(home)).await
    }

    async fn launch(
        url: &str,
        width: u32,
        height: u32,
        extra: &[&str],
        home: Option<&std::path::Path>,
    ) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new("/usr/bin/chromium");
        if let Some(home) = home {
            command.env("HOME", home);
        }
        let mut child = command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Debian's chromium at /usr/bin/chromium: run `make setup`");
        let stderr = child.stderr.take().unwrap();
        let endpoint = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stderr).lines();
            let endpoint = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|line| {
                    line.strip_prefix("DevTools listening on ")
                        .map(str::to_owned)
                })
                .expect("chromium announces its DevTools endpoint");
            std::thread::spawn(move || lines.for_each(drop));
            endpoint
        })
        .await
        .unwrap();
        let port: u16 = endpoint
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let targets: Value = tokio::task::spawn_blocking(move || {
            let mut response = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .unwrap();
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
        })
        .await
        .unwrap();
        let page_url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (page, _) = connect_async(page_url).await.unwrap();
        let mut chromium = Chromium {
            child,
            page,
            next_id: 1,
            _profile: profile,
        };
        chromium
            .call("Emulation.setDeviceMetricsOverride", json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }))
            .await;
        chromium
    }

    /// One DevTools call; the whole reply.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.call_within(method, params, PATIENCE).await
    }

    /// Evaluates `expression` in the page, awaiting a promise; returns its value.
    pub async fn evaluate(&mut self, expression: &str) -> Value {
        let reply = self.evaluate_once(expression).await;
        assert!(
            reply.get("error").is_none() && reply["result"].get("exceptionDetails").is_none(),
            "{expression}: {reply}"
        );
        reply["result"]["result"]["value"].clone()
    }

    async fn evaluate_once(&mut self, expression: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        )
        .await
    }

    async fn call_within(&mut self, method: &str, params: Value, patience: Duration) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        loop {
            let frame = tokio::time::timeout(patience, self.page.next())
                .await
                .expect("DevTools answers")
                .unwrap()
                .unwrap();
            let reply: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
            if reply["id"] == id {
                return reply;
            }
        }
    }

    /// Touches the middle of the element `selector` names, as a finger on
    /// the panel would (a touch start and end), once it exists, scrolled into view.
    pub async fn tap(&mut self, selector: &str) {
        let quoted = serde_json::to_string(selector).unwrap();
        self.wait_for(&format!("document.querySelector({quoted}) !== null"))
            .await;
        let point = self
            .evaluate(&format!(
                "(() => {{ const e = document.querySelector({quoted}); \
                 e.scrollIntoView({{ block: 'center' }}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = (point[0].as_f64().unwrap(), point[1].as_f64().unwrap());
        for (kind, points) in [
            ("touchStart", json!([{ "x": x, "y": y }])),
            ("touchEnd", json!([])),
        ] {
            self.call(
                "Input.dispatchTouchEvent",
                json!({ "type": kind, "touchPoints": points }),
            )
            .await;
        }
    }

    /// Resolves once `condition` (a JS expression) holds in the page, checked every 20 ms inside the page.
    pub async fn wait_for(&mut self, condition: &str) {
        self.wait_for_within(condition, Duration::from_secs(15))
            .await
    }

    /// As [`Chromium::wait_for`], for conditions that may take longer (a camera's frames).
    pub async fn wait_for_within(&mut self, condition: &str, patience: Duration) {
        let script = format!(
            "new Promise((resolve, reject) => {{ const give_up = Date.now() + {}; \
             const check = () => {{ try {{ if ({condition}) return resolve(true); }} catch (e) {{}} \
             if (Date.now() > give_up) return reject(new Error('timed out waiting for: {}')); setTimeout(check, 20); }}; check(); }})",
            patience.as_millis(),
            condition.replace('\'', "\\'")
        );
        let params = json!({ "expression": script, "awaitPromise": true, "returnByValue": true });
        // The page may still be navigating (from about:blank, or reloading): its context is
        // then destroyed under the evaluation, which is asked again in the new one.
        for _ in 0..3 {
            let reply = self
                .call_within("Runtime.evaluate", params.clone(), patience + PATIENCE)
                .await;
            if reply["result"]["result"]["value"] == Value::Bool(true) {
                return;
            }
            let text = reply.to_string();
            let destroyed = [
                "context was destroyed",
                "Cannot find context",
                "Inspected target navigated",
            ]
            .iter()
            .any(|sign| text.contains(sign));
            assert!(destroyed, "waiting for {condition}: {reply}");
        }
        panic!("the page kept navigating while waiting for {condition}");
    }

    /// A PNG of the page as it is shown now.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let reply = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let data = reply["result"]["data"].as_str().expect("a screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A home whose NSS database (the one Chromium reads) trusts `ca` for web sites.
pub fn home_trusting(ca: &std::path::Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let database = format!("sql:{}", nssdb.display());
    for args in [
        vec!["-N", "-d", &database, "--empty-password"],
        vec![
            "-A",
            "-d",
            &database,
            "-t",
            "C,,",
            "-n",
            "room-ca",
            "-i",
            ca.to_str().unwrap(),
        ],
    ] {
        let output = Command::new("certutil")
            .args(&args)
            .output()
            .expect("certutil from Debian's libnss3-tools: run `make setup`");
        assert!(
            output.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    home
}
