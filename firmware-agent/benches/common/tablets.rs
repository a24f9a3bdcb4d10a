//! The room's agent and its tablets as the live-lesson benches drive them: the
//! release binary started on a config of the bench's own, calls to its API as
//! the panel makes them, and tablets that pair, say hello on the live channel
//! and ack every command (over plain WebSocket, TLS, or a socket bound to a
//! LAN address), optionally answering what they are given.
//!
//! # Design
//! A tablet's reader runs on its own task for as long as the agent keeps the
//! channel open, so a bench holds no handle to it: it measures the agent's
//! side (acks counted, answers visible), never the tablet's.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

/// The agent binary cargo built for the benches.
pub fn agent_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_firmware-agent"))
}

/// A running agent of the bench's own, in a temporary directory; killed when dropped.
pub struct Agent {
    pub child: Child,
    /// Where its HTTP server listens, on loopback.
    pub address: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// The agent with `sections` of config beside the bench's minimal one.
    pub fn start(sections: &str) -> Agent {
        Agent::launch(tempfile::tempdir().unwrap(), "", "", sections)
    }

    /// The agent of class 6A1 with `pupils` pupils (see [`pupil_id`]), each of
    /// whom consented to keeping learning records.
    pub fn start_class(pupils: usize) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let mut roster = String::from(
            "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n",
        );
        for n in 0..pupils {
            roster.push_str(&format!(
                "pupil,{},Học sinh {n:02},6A1,no,yes,2026-08-20\n",
                pupil_id(n)
            ));
        }
        let csv = dir.path().join("roster.csv");
        std::fs::write(&csv, roster).unwrap();
        // The roster is imported before the agent starts, on the config it will run with.
        Agent::launch_after(dir, "", "", "[attendance]\nclass = \"6A1\"\n", |config| {
            let imported = Command::new(agent_binary())
                .args(["roster", "import"])
                .arg(&csv)
                .arg("--config")
                .arg(config)
                .output()
                .unwrap();
            assert!(
                imported.status.success(),
                "{}",
                String::from_utf8_lossy(&imported.stderr)
            );
        })
    }

    /// The agent in `dir` with `http_keys` in its `[http]` section, `hub_keys`
    /// in its `[hub]` section and `sections` after them; its HTTP and hub
    /// listeners on free loopback ports.
    pub fn launch(
        dir: tempfile::TempDir,
        http_keys: &str,
        hub_keys: &str,
        sections: &str,
    ) -> Agent {
        Agent::launch_after(dir, http_keys, hub_keys, sections, |_| {})
    }

    /// As [`Agent::launch`], running `before_start` on the written config first.
    fn launch_after(
        dir: tempfile::TempDir,
        http_keys: &str,
        hub_keys: &str,
        sections: &str,
        before_start: impl FnOnce(&Path),
    ) -> Agent {
        // Both listeners are held until both are chosen, so they differ.
        let listeners = [free_listener(), free_listener()];
        let [address, hub] = listeners.each_ref().map(|l| l.local_addr().unwrap());
        drop(listeners);
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[room]\nschool_code = \"BENCH\"\nroom_id = \"P1\"\n[storage]\ndata_dir = \"data\"\n\
                 [http]\nlisten = \"{address}\"\n{http_keys}[hub]\nlisten = \"{hub}\"\n{hub_keys}\
                 [log]\nfilter = \"warn,firmware_agent::daemon=info\"\nformat = \"text\"\n{sections}"
            ),
        )
        .unwrap();
        before_start(&config);
        let child = super::start_agent(agent_binary(), &config);
        Agent {
            child,
            address,
            dir,
        }
    }

    /// The agent's data directory, where its content store lives.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The agent's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback listener on a port free at the time of asking.
pub fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// The personal ID of pupil `n` of a bench's class.
pub fn pupil_id(n: usize) -> String {
    format!("0102060{n:05}")
}

/// A call to the agent's API off the runtime's threads: a GET when `body` is
/// null, else a POST of it; the reply's JSON, whatever its status.
pub async fn call(address: SocketAddr, path: &str, body: Value) -> Value {
    let url = format!("http://{address}{path}");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let text = if body.is_null() {
            agent.get(&url).call()
        } else {
            agent.post(&url).send_json(body)
        }
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
        serde_json::from_str(&text).unwrap()
    })
    .await
    .unwrap()
}

/// Opens a pairing window; returns its code.
pub async fn open_pairing(address: SocketAddr) -> String {
    call(address, "/api/tablets/pairing", json!({})).await["window"]["code"]
        .as_str()
        .expect("a pairing window")
        .to_owned()
}

/// Pairs a tablet named `name` with `code`; returns its id and token.
pub async fn pair(address: SocketAddr, code: &str, name: &str) -> (String, String) {
    let paired = call(
        address,
        "/tablet/pair",
        json!({ "code": code, "name": name }),
    )
    .await;
    let token = paired["token"].as_str().expect("paired").to_owned();
    (paired["tablet_id"].as_str().unwrap().to_owned(), token)
}

/// Pairs `count` tablets, one after another, and binds tablet `n` to pupil
/// `n` of the class ([`pupil_id`]); returns their tokens.
pub async fn pair_and_bind(address: SocketAddr, count: usize) -> Vec<String> {
    let code = open_pairing(address).await;
    let mut tokens = Vec::new();
    for n in 0..count {
        let (id, token) = pair(address, &code, &format!("Bàn {n}")).await;
        let bound = call(
            address,
            &format!("/api/tablets/{id}/bind"),
            json!({ "pupil_personal_id": pupil_id(n) }),
        )
        .await;
        assert!(bound.get("error").is_none(), "bind {id}: {bound}");
        tokens.push(token);
    }
    tokens
}

/// Opens the live channel over plain WebSocket with TCP_NODELAY (tablets send
/// an ack and an answer back to back: without it the second would wait for
/// the agent's delayed ACK, as a browser's would not) and says hello.
pub async fn connect(
    address: SocketAddr,
    token: &str,
) -> WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut socket, _) =
        connect_async_with_config(format!("ws://{address}/tablet/ws"), None, true)
            .await
            .unwrap();
    hello(&mut socket, token).await;
    socket
}

/// Says hello with `token` on an open live channel and waits for the welcome.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    token: &str,
) {
    socket
        .send(Message::text(
            json!({ "type": "hello", "v": 1, "token": token }).to_string(),
        ))
        .await
        .unwrap();
    let welcome = socket.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("\"welcome\""));
}

/// What a tablet sends after acking a command: nothing, or its answer.
pub type Reply = fn(&Value) -> Option<Value>;

/// A tablet that only acks.
pub fn no_reply(_: &Value) -> Option<Value> {
    None
}

/// Reads the live channel on a task of its own until it closes: acks every
/// command and then sends what `reply` makes of the command, if anything.
pub fn ack_every_command<S>(mut socket: WebSocketStream<S>, reply: Reply)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            let Ok(text) = frame.to_text() else { continue };
            let message: Value = serde_json::from_str(text).unwrap();
            if message["type"] != "command" {
                continue;
            }
            let ack = json!({ "type": "ack", "id": message["id"] });
            socket.send(Message::text(ack.to_string())).await.unwrap();
            if let Some(answer) = reply(&message["command"]) {
                socket
                    .send(Message::text(answer.to_string()))
                    .await
                    .unwrap();
            }
        }
    });
}

/// Connects a tablet with `token` over plain WebSocket that acks every
/// command and replies as `reply` says.
pub async fn acking_tablet(address: SocketAddr, token: &str, reply: Reply) {
    ack_every_command(connect(address, token).await, reply);
}
