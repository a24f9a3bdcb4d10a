//! A live lesson for the end-to-end tests of the class view, follow the
//! teacher, questions and hand-ins: class 6A1 with its Vietnamese roster and a
//! Monday morning timetable, the agent started on it, the panel in headless
//! Chromium touched as the interactive panel is, browser tablets that pair and
//! choose their pupil, and tablets that speak the live channel's protocol
//! themselves.
//!
//! # Design
//! The room's config, the roster and each kind of tablet are separate pieces
//! rather than one do-everything constructor: each test keeps its own order of
//! steps (one opens the pairing window on the panel, another through the API,
//! another after a roll call), and asserts what it asserts between them.
#![allow(dead_code)] // each test file uses its own part of this module

use std::net::SocketAddr;
use std::time::Duration;

use firmware_agent::proto::event::Payload;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::browser::Chromium;
use crate::common::{Room, RunningAgent, api_call as call};

/// How long a test waits for a message, a page's condition or a log line.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// Inside the first period of the Monday morning shift of [`MONDAY_TIMETABLE`].
pub const MONDAY_FIRST_PERIOD: &str = "2026-09-07T07:05:00+07:00";
/// The lesson id of that first period.
pub const FIRST_LESSON: &str = "2026-09-07/Sáng/1";

/// A Monday morning shift of two periods, and the bell that rings them.
pub const MONDAY_TIMETABLE: &str = "[schedule]\n\n[[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\"]\n\
    periods = [{ start = \"07:00\", end = \"07:45\" }, { start = \"07:50\", end = \"08:35\" }]\n\n\
    [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = { type = \"simulated\" }\n";

/// The pupils of 6A1 in the roster's order: personal ID and full name. None
/// gave face consent; all consented to keeping learning records.
pub const PUPILS: [(&str, &str); 5] = [
    ("010206000001", "Nguyễn Văn An"),
    ("010206000002", "Lò Thị Bình"),
    ("010206000003", "Phạm Văn Cường"),
    ("010206000004", "Hà Thị Dung"),
    ("010206000005", "Vàng A Dế"),
];

/// A room of class 6A1 with `extra` config sections, the Monday timetable and
/// the first `pupils` of [`PUPILS`] imported.
pub fn class_6a1(extra: &str, pupils: usize) -> Room {
    let room = Room::new(&format!(
        "[attendance]\nclass = \"6A1\"\n\n{extra}\n{MONDAY_TIMETABLE}"
    ));
    import_pupils(&room, pupils);
    room
}

/// Imports the first `count` of [`PUPILS`] into `room`'s roster.
pub fn import_pupils(room: &Room, count: usize) {
    let mut csv = String::from(
        "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n",
    );
    for (id, name) in &PUPILS[..count] {
        csv.push_str(&format!("pupil,{id},{name},6A1,no,yes,2026-08-20\n"));
    }
    room.import_roster(&csv);
}

/// The panel at `width`x`height` with touch on, once it shows the room's name.
pub async fn open_panel(address: SocketAddr, width: u32, height: u32) -> Chromium {
    let mut panel = Chromium::open_sized(&format!("http://{address}/panel/"), width, height).await;
    panel
        .call(
            "Emulation.setTouchEmulationEnabled",
            json!({ "enabled": true, "maxTouchPoints": 5 }),
        )
        .await;
    panel
        .wait_for("document.getElementById('room-name').textContent === 'Phòng thử'")
        .await;
    panel
}

/// Opens a pairing window through the panel's API; returns its code.
pub async fn open_pairing(address: SocketAddr) -> String {
    let (status, body) = call(address, "POST", "/api/tablets/pairing", None).await;
    assert_eq!(status, 200, "{body}");
    body["window"]["code"].as_str().unwrap().to_owned()
}

/// Pairs one tablet named `name` with `code`; returns its id and token.
pub async fn pair(address: SocketAddr, code: &str, name: &str) -> (String, String) {
    let (status, body) = call(
        address,
        "POST",
        "/tablet/pair",
        Some(json!({ "code": code, "name": name })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["tablet_id"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

/// A protocol tablet as paired and connected: its id, token and the welcome it was given.
pub struct PairedTablet {
    pub id: String,
    pub token: String,
    pub tablet: ProtocolTablet,
    pub welcome: Value,
}

/// Pairs and connects `count` protocol tablets named "Bàn N" from `first_desk` on.
pub async fn protocol_tablets(
    address: SocketAddr,
    code: &str,
    first_desk: usize,
    count: usize,
) -> Vec<PairedTablet> {
    let mut paired = Vec::new();
    for desk in first_desk..first_desk + count {
        let (id, token) = pair(address, code, &format!("Bàn {desk}")).await;
        let (tablet, welcome) = ProtocolTablet::connect(address, &token, 0).await;
        paired.push(PairedTablet {
            id,
            token,
            tablet,
            welcome,
        });
    }
    paired
}

/// The pupil of the tablet holding `token` chooses `pupil` from the names the roster offers.
pub async fn choose_pupil(address: SocketAddr, token: &str, pupil: &str) {
    let bearer = format!("Bearer {token}");
    let (roster_url, pupil_url) = (
        format!("http://{address}/tablet/roster"),
        format!("http://{address}/tablet/pupil"),
    );
    let pupil = pupil.to_owned();
    tokio::task::spawn_blocking(move || {
        let roster: Value = ureq::get(&roster_url)
            .header("authorization", &bearer)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let reference = roster["choices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["full_name"] == pupil.as_str())
            .map(|c| c["pupil"].clone())
            .expect("the pupil is offered");
        ureq::post(&pupil_url)
            .header("authorization", &bearer)
            .send_json(json!({ "pupil": reference }))
            .unwrap();
    })
    .await
    .unwrap();
}

/// A browser tablet (the tablets' page in Chromium) paired with `code`: named
/// `desk` when given, and whose pupil touches `pupil` among the class's names
/// when given; returned once its page shows the pupil, or else its desk.
pub async fn browser_tablet(
    address: SocketAddr,
    code: &str,
    desk: Option<&str>,
    pupil: Option<&str>,
) -> Chromium {
    let mut tablet = Chromium::open(&format!("http://{address}/tablet/#code={code}")).await;
    tablet
        .wait_for("!document.getElementById('pairing').hidden && document.getElementById('code').value.length === 6")
        .await;
    let name = desk.map_or(String::new(), |desk| {
        format!("document.getElementById('name').value = '{desk}'; ")
    });
    tablet
        .evaluate(&format!(
            "{name}document.getElementById('pair-button').click(); true"
        ))
        .await;
    match (pupil, desk) {
        (Some(pupil), _) => {
            let button = format!(
                "[...document.querySelectorAll('#pupil-names button')].find(b => b.textContent === '{pupil}')"
            );
            tablet.wait_for(&format!("{button} !== undefined")).await;
            tablet.evaluate(&format!("{button}.click(); true")).await;
            tablet
                .wait_for(&format!(
                    "document.getElementById('choose-pupil').hidden && document.getElementById('pupil').textContent === '{pupil}'"
                ))
                .await;
        }
        (None, Some(desk)) => {
            tablet
                .wait_for(&format!(
                    "document.getElementById('status').textContent === '{desk}'"
                ))
                .await;
        }
        (None, None) => panic!("a browser tablet is named, or its pupil chosen"),
    }
    tablet
}

/// The id of the tablet whose tile on the class view is named `name`.
pub async fn tablet_id_named(address: SocketAddr, name: &Value) -> String {
    let (_, listed) = call(address, "GET", "/api/lesson/class", None).await;
    listed["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tile| tile["name"] == *name)
        .and_then(|tile| tile["tablet_id"].as_str())
        .expect("the tablet has a tile")
        .to_owned()
}

/// A tablet's end of the live channel, speaking the protocol itself.
pub struct ProtocolTablet {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl ProtocolTablet {
    /// Opens the live channel without saying hello.
    pub async fn open(address: SocketAddr) -> ProtocolTablet {
        let (socket, _) = connect_async(format!("ws://{address}/tablet/ws"))
            .await
            .unwrap();
        ProtocolTablet { socket }
    }

    /// Connects and says hello with `token`, having seen commands up to
    /// `last_command`; returns the tablet and the welcome.
    pub async fn connect(
        address: SocketAddr,
        token: &str,
        last_command: u64,
    ) -> (ProtocolTablet, Value) {
        let mut tablet = ProtocolTablet::open(address).await;
        tablet
            .send(json!({ "type": "hello", "v": 1, "token": token, "last_command": last_command }))
            .await;
        let welcome = tablet.receive().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (tablet, welcome)
    }

    /// Sends `message` as a text frame.
    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    /// Sends `text` as it is, JSON or not.
    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// The next JSON message; `Value::Null` when the agent closed the connection.
    pub async fn receive(&mut self) -> Value {
        loop {
            match tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a message within the patience")
            {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).unwrap();
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Value::Null,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next command, acked, with its id; panics on anything else.
    pub async fn command(&mut self) -> (u64, Value) {
        let message = self.receive().await;
        assert_eq!(message["type"], "command", "{message}");
        self.send(json!({ "type": "ack", "id": message["id"] }))
            .await;
        (message["id"].as_u64().unwrap(), message["command"].clone())
    }

    /// Acks every command until one of `kind` arrives; returns its whole message.
    pub async fn follow_until(&mut self, kind: &str) -> Value {
        loop {
            let message = self.receive().await;
            assert_eq!(message["type"], "command", "{message}");
            self.send(json!({ "type": "ack", "id": message["id"] }))
                .await;
            if message["command"]["kind"] == kind {
                return message;
            }
        }
    }

    /// The next command of `kind`, acked (earlier commands are acked and passed over).
    pub async fn command_of(&mut self, kind: &str) -> Value {
        self.follow_until(kind).await["command"].clone()
    }

    /// Acks page commands until one is page `page`; returns its id.
    pub async fn until_page(&mut self, page: u32) -> u64 {
        loop {
            let (id, command) = self.command().await;
            assert_eq!(command["kind"], "page", "{command}");
            if command["page"] == page {
                return id;
            }
        }
    }

    /// Proves nothing was queued for this tablet before now: a ping's pong
    /// comes next, where a command given to it earlier would have come first.
    pub async fn heard_nothing(&mut self, why: &str) {
        self.send(json!({ "type": "ping" })).await;
        let next = self.receive().await;
        assert_eq!(next["type"], "pong", "{why}: {next}");
    }

    /// Answers `question` (a command's) with the fields of `answer`; returns what the agent said.
    pub async fn answer(&mut self, question: &Value, answer: Value) -> Value {
        let mut message = json!({ "type": "answer", "question": question["id"] });
        message
            .as_object_mut()
            .unwrap()
            .extend(answer.as_object().unwrap().clone());
        self.send(message).await;
        self.receive().await
    }
}

/// The outbox's payloads, decoded, in commit order.
pub fn outbox(room: &Room) -> Vec<Payload> {
    outbox_rows(room, "1 = 1", ())
        .into_iter()
        .filter_map(|(kind, bytes)| Payload::decode_stored(&kind, &bytes).unwrap())
        .collect()
}

/// The outbox's payloads of `kind`, decoded, in commit order; each must decode.
pub fn outbox_of_kind(room: &Room, kind: &str) -> Vec<Payload> {
    outbox_rows(room, "kind = ?1", [kind])
        .into_iter()
        .map(|(kind, bytes)| Payload::decode_stored(&kind, &bytes).unwrap().unwrap())
        .collect()
}

/// The kind and payload of the outbox's rows matching `condition`, read from its SQLite file.
fn outbox_rows<P: rusqlite::Params>(
    room: &Room,
    condition: &str,
    params: P,
) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open_with_flags(
        room.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT kind, payload FROM outbox WHERE {condition} ORDER BY seq"
        ))
        .unwrap();
    stmt.query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Screenshots of `page` at the panel's two usual sizes (1080p and 4K), kept as
/// test artefacts `NAME-WxH.png` in the folder `folder` of the tests' scratch
/// directory, which is returned; the page is left at 1080p.
pub async fn screenshots(page: &mut Chromium, folder: &str, name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    for (width, height) in [(1920, 1080), (3840, 2160)] {
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        let png = page.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(dir.join(format!("{name}-{width}x{height}.png")), png).unwrap();
    }
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    dir
}

/// Stops the agent with SIGTERM and asserts it exits 0 `within` that time.
pub fn stop(agent: &mut RunningAgent, within: Duration) {
    agent.signal(libc::SIGTERM);
    assert!(
        agent
            .wait_exit(within)
            .is_some_and(|status| status.success())
    );
}
