//! The room survives a hostile device on its network: a connection flood (on
//! the plain port, and on the HTTPS port with stalled TLS handshakes), a
//! tablet that stops reading, a tablet that falls silent, a pairing flood.
//!
//! Each test runs the built agent in a network namespace of its own, the
//! attacker and the tablet on LAN addresses there (192.0.2.66 and 192.0.2.2),
//! the panel on loopback; the clients are a small Python script (stdlib only,
//! a raw WebSocket client) that prints `key value` lines. Counts and times
//! are small and bounded: the caps are configured small, and the flood is
//! scaled to them.

mod common;

use common::{NamespaceRun, Room, metric};

/// The clients, written beside the room's config and run inside the namespace.
const CLIENTS: &str = r#"
import base64, http.client, json, os, socket, ssl, struct, sys, time

# The room's LAN: a documentation range, or a private one where a certificate must name it.
NET = os.environ.get("NET", "192.0.2")
AGENT = NET + ".1"
PLAIN_PORT = int(os.environ["PORT"])
# With TLS_PORT set, the agent serves over HTTPS there (trusting the room CA in CA).
SECURE = "TLS_PORT" in os.environ
PORT = int(os.environ["TLS_PORT"]) if SECURE else PLAIN_PORT
TABLET = NET + ".2"
ATTACKER = NET + ".66"

def request(method, path, body=None, source=None, host="127.0.0.1"):
    source_address = (source, 0) if source else None
    if SECURE:
        conn = http.client.HTTPSConnection(host, PORT, timeout=10, context=tls_context(),
                                           source_address=source_address)
    else:
        conn = http.client.HTTPConnection(host, PORT, timeout=10, source_address=source_address)
    headers = {"content-type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    reply = conn.getresponse()
    text = reply.read().decode()
    conn.close()
    return reply.status, text

def tls_context():
    return ssl.create_default_context(cafile=os.environ["CA"])

def raw_connect(source, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect((AGENT, port))
    return sock

def pair_tablet():
    status, window = request("POST", "/api/tablets/pairing", {})
    code = json.loads(window)["window"]["code"]
    status, paired = request("POST", "/tablet/pair", {"code": code, "name": "Bàn 2"},
                             source=TABLET, host=AGENT)
    assert status == 200, paired
    return json.loads(paired)["token"]

def ws_connect(source, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect((AGENT, PORT))
    if SECURE:
        sock = tls_context().wrap_socket(sock, server_hostname=AGENT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /tablet/ws HTTP/1.1\r\nHost: {AGENT}:{PORT}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock

def send_frame(sock, opcode, payload):
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x80 | opcode])
    if size < 126:
        header += bytes([0x80 | size])
    elif size < 65536:
        header += bytes([0x80 | 126]) + struct.pack(">H", size)
    else:
        header += bytes([0x80 | 127]) + struct.pack(">Q", size)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

def send_text(sock, text):
    send_frame(sock, 0x1, text.encode())

def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data

def read_frame(sock):
    first, second = read_exact(sock, 2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack(">H", read_exact(sock, 2))[0]
    elif size == 127:
        size = struct.unpack(">Q", read_exact(sock, 8))[0]
    return first & 0x0F, read_exact(sock, size)

def hello(sock, token):
    send_text(sock, json.dumps({"type": "hello", "v": 1, "token": token}))
    opcode, payload = read_frame(sock)
    assert b'"welcome"' in payload, payload

def closed_by_agent(sock, within):
    """Whether the agent closes `sock` within `within` seconds (reading whatever comes first)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionError, OSError) as err:
        return not isinstance(err, socket.timeout)

def connected_tablets():
    return json.loads(request("GET", "/api/tablets")[1])["connected"]

def metrics():
    return request("GET", "/metrics")[1].replace("\n", " | ")

def open_connections():
    for line in request("GET", "/metrics")[1].splitlines():
        if line.startswith("http_connections_open "):
            return float(line.split()[1])

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def wait_until(condition, within):
    start = time.monotonic()
    while time.monotonic() - start < within:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    return None

def connection_flood():
    token = pair_tablet()
    upgraded = []
    for _ in range(4):
        sock = ws_connect(ATTACKER)
        send_frame(sock, 0x9, b"ping")
        upgraded.append(sock)
    held = []
    for _ in range(60):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((ATTACKER, 0))
        sock.connect((AGENT, PORT))
        held.append(sock)
    start = time.monotonic()
    status, _ = request("GET", "/healthz")
    print("healthz", status, round(time.monotonic() - start, 3))
    start = time.monotonic()
    tablet = ws_connect(TABLET)
    hello(tablet, token)
    print("tablet_welcomed_in", round(time.monotonic() - start, 3))
    # Pings do not stand for `hello`; the attacker's sockets are closed by their deadlines.
    start = time.monotonic()
    for sock in upgraded:
        send_frame(sock, 0x9, b"ping")
    unpaired_closed = all(closed_by_agent(sock, 10) for sock in upgraded)
    print("unpaired_ws_closed", unpaired_closed, round(time.monotonic() - start, 3))
    silent_closed = sum(closed_by_agent(sock, 0.1) for sock in held)
    print("silent_connections_closed", silent_closed, len(held))
    send_text(tablet, json.dumps({"type": "ping"}))
    print("tablet_pong", b'"pong"' in read_frame(tablet)[1])
    print("metrics", metrics())

# A TLS record header promising a 512-byte ClientHello, and its first bytes.
STALLED_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])

def tls_flood():
    token = pair_tablet()
    # Idle connections on the plain port count against the same per-address cap.
    plain = [raw_connect(ATTACKER, PLAIN_PORT) for _ in range(4)]
    held = []
    for n in range(60):
        sock = raw_connect(ATTACKER, PORT)
        if n % 2:
            sock.sendall(STALLED_HELLO)
        held.append(sock)
    start = time.monotonic()
    status, _ = request("GET", "/healthz")
    print("healthz", status, round(time.monotonic() - start, 3))
    start = time.monotonic()
    tablet = ws_connect(TABLET)
    hello(tablet, token)
    print("tablet_welcomed_in", round(time.monotonic() - start, 3))
    start = time.monotonic()
    status, reply = request("POST", "/api/lesson/lock", {"message": "Các em nhìn lên bảng"})
    opcode, payload = read_frame(tablet)
    print("tablet_locked", status, b'"lock"' in payload, round(time.monotonic() - start, 3))
    start = time.monotonic()
    closed = wait_until(lambda: all(closed_by_agent(sock, 0.01) for sock in held + plain), 8)
    print("flood_closed_after", closed)
    print("metrics", metrics())

def slow_reader(pid):
    token = pair_tablet()
    tablet = ws_connect(TABLET, rcvbuf=4096)
    hello(tablet, token)
    # The tablet reads nothing from here on, while the teacher's commands flow.
    rss_before = rss_kib(pid)
    message = "Các em nhìn lên bảng. " * 90
    start = time.monotonic()
    for n in range(2500):
        status, reply = request("POST", "/api/lesson/lock", {"message": message})
        assert status == 200, reply
    print("commands_given_in", round(time.monotonic() - start, 3))
    # Only the scrape's own connection is left once the slow reader's is closed.
    gone = wait_until(lambda: open_connections() <= 1, 15)
    print("slow_reader_closed_after", gone)
    print("rss_growth_kib", rss_kib(pid) - rss_before)
    print("connected", connected_tablets())

def silent_tablet():
    token = pair_tablet()
    tablet = ws_connect(TABLET)
    hello(tablet, token)
    tablet.settimeout(0.05)
    start = time.monotonic()
    shown_gone = None
    # The tablet reads every command but sends nothing, not even a heartbeat.
    while time.monotonic() - start < 15:
        request("POST", "/api/lesson/unlock", {})
        try:
            while tablet.recv(65536):
                pass
        except socket.timeout:
            pass
        except OSError:
            pass
        if connected_tablets() == 0:
            shown_gone = round(time.monotonic() - start, 3)
            break
        time.sleep(0.2)
    print("silent_shown_disconnected_after", shown_gone)

def pairing_flood():
    status, window = request("POST", "/api/tablets/pairing", {})
    code = json.loads(window)["window"]["code"]
    wrong = "000000" if code != "000000" else "111111"
    replies = {}
    start = time.monotonic()
    # One second of wrong codes: the address's delays (0.1 s, then 0.2 s) pass inside it.
    while time.monotonic() - start < 1.0:
        status, reply = request("POST", "/tablet/pair", {"code": wrong}, source=ATTACKER, host=AGENT)
        key = json.loads(reply)["error"]
        replies[key] = replies.get(key, 0) + 1
    print("flood_replies", json.dumps(replies, sort_keys=True), round(time.monotonic() - start, 3))
    status, paired = request("POST", "/tablet/pair", {"code": code, "name": "Bàn 2"}, source=TABLET, host=AGENT)
    print("tablet_pairs", status)
    status, window = request("GET", "/api/tablets/pairing")
    print("window", window)
    print("health", request("GET", "/healthz")[1])

scenario = sys.argv[1]
if scenario == "slow_reader":
    slow_reader(int(sys.argv[2]))
else:
    globals()[scenario]()
"#;

/// Runs `scenario` of [`CLIENTS`] against the agent of a room with `http`
/// keys in its `[http]` section and `extra` sections, listening on every
/// address of its namespace.
fn attack(http: &str, extra: &str, scenario: &str) -> NamespaceRun {
    attack_room(&Room::new(extra), http, "", scenario)
}

/// Runs `scenario` against a room served over HTTPS on its own port, with a
/// certificate from a school CA for 192.168.77.1 and 127.0.0.1 (the clients
/// trust that CA; the LAN is 192.168.77.0/24 here, an address a school CA may vouch for), and `http` keys in its `[http]` section.
fn attack_over_tls(http: &str, scenario: &str) -> NamespaceRun {
    let room = Room::new("");
    let dir = room.dir.path();
    let ca = dir.join("ca");
    for args in [
        vec!["tls", "init-ca", "--dir", ca.to_str().unwrap()],
        vec![
            "tls",
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            "--name",
            "TEST-01-P101.local",
            "--ip",
            "192.168.77.1",
            "--ip",
            "127.0.0.1",
            "--out",
            dir.join("room").to_str().unwrap(),
        ],
    ] {
        let made = std::process::Command::new(common::agent_binary())
            .args(&args)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
    }
    let tls_port = common::free_port();
    let tls = format!(
        "tls_cert = \"room/room.pem\"\ntls_key = \"room/room-key.pem\"\ntls_listen = \"0.0.0.0:{tls_port}\"\n"
    );
    let env = format!(
        "NET=192.168.77 TLS_PORT={tls_port} CA='{}'",
        ca.join("ca.pem").display()
    );
    attack_room(&room, &format!("{http}{tls}"), &env, scenario)
}

/// Runs `scenario` with `env` against `room`, its `[http]` section given `http` keys.
fn attack_room(room: &Room, http: &str, env: &str, scenario: &str) -> NamespaceRun {
    let port = room.http.port();
    room.set_http_listen(&format!("0.0.0.0:{port}"));
    let config = std::fs::read_to_string(&room.config_path).unwrap();
    std::fs::write(
        &room.config_path,
        config.replace("[http]\n", &format!("[http]\n{http}")),
    )
    .unwrap();
    let clients = room.dir.path().join("clients.py");
    std::fs::write(&clients, CLIENTS).unwrap();
    room.run_in_own_network(
        "for net in 192.0.2 192.168.77; do for host in 1 2 66; do ip addr add $net.$host/32 dev lo; done; done",
        &format!(
            "PORT={port} {env} LOG='{log}' timeout 60 python3 '{clients}' {scenario} $agent",
            clients = clients.display(),
            log = room.dir.path().join("agent.log").display(),
        ),
    )
}

fn seconds(run: &NamespaceRun, key: &str) -> f64 {
    let answer = run.answer(key);
    answer
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{key}: {answer}\n{}", run.text))
}

/// 60 silent connections and 4 unpaired WebSockets from one address, against
/// a cap of 8 per address and 20 in all: the attacker gets 8, the panel's
/// `/healthz` and a paired tablet are served at once, and what the attacker
/// holds is closed by the header and `hello` deadlines.
#[test]
fn a_connection_flood_from_one_address_leaves_the_panel_and_a_paired_tablet_served() {
    let run = attack(
        "max_connections = 20\nmax_connections_per_address = 8\nheader_read_timeout_ms = 1000\n",
        "",
        "connection_flood",
    );
    let text = &run.text;
    assert!(run.answer("healthz").starts_with("200 "), "{text}");
    assert!(seconds(&run, "healthz") < 1.0, "{text}");
    assert!(seconds(&run, "tablet_welcomed_in") < 1.0, "{text}");
    assert!(
        run.answer("unpaired_ws_closed").starts_with("True "),
        "{text}"
    );
    assert!(
        seconds(&run, "unpaired_ws_closed") < 8.0,
        "within the 5 s hello deadline, pings notwithstanding: {text}"
    );
    assert_eq!(run.answer("silent_connections_closed"), "60 60", "{text}");
    assert_eq!(run.answer("tablet_pong"), "True", "{text}");
    let scrape = run.answer("metrics").replace(" | ", "\n");
    let refused = metric(
        &scrape,
        "http_connections_refused_total{reason=\"per_address\"}",
    )
    .unwrap_or(0.0);
    assert!(
        refused >= 52.0,
        "60 + 4 tries, at most 8 admitted at a time: {refused}\n{text}"
    );
    let timed_out = metric(
        &scrape,
        "http_connections_timed_out_total{phase=\"headers\"}",
    )
    .unwrap_or(0.0);
    assert!(timed_out >= 4.0, "{timed_out}\n{text}");
    assert_eq!(run.answer("exit"), "0");
}

/// On the HTTPS port, 60 connections from one address (half of them silent,
/// half stalled a few bytes into their TLS ClientHello) while the same
/// address holds 4 idle connections on the plain port, against a cap of 8 per
/// address across both ports: the attacker gets 4 more, the rest are closed
/// at once, what it holds is closed by the header deadline (which covers the
/// handshake), and meanwhile the panel's `/healthz` answers over HTTPS and a
/// paired tablet is welcomed over WSS and follows a lock.
#[test]
fn a_flood_of_idle_and_stalled_tls_connections_leaves_https_and_a_paired_tablet_served() {
    let run = attack_over_tls(
        "max_connections = 20\nmax_connections_per_address = 8\nheader_read_timeout_ms = 1000\n",
        "tls_flood",
    );
    let text = &run.text;
    assert!(run.answer("healthz").starts_with("200 "), "{text}");
    assert!(seconds(&run, "healthz") < 1.0, "{text}");
    assert!(seconds(&run, "tablet_welcomed_in") < 1.0, "{text}");
    assert!(
        run.answer("tablet_locked").starts_with("200 True "),
        "{text}"
    );
    let closed_after = run.answer("flood_closed_after");
    assert_ne!(
        closed_after, "None",
        "the attacker's connections still open 8 s on: {text}"
    );
    assert!(
        closed_after.parse::<f64>().unwrap() < 3.0,
        "within the 1 s header deadline: {text}"
    );
    let scrape = run.answer("metrics").replace(" | ", "\n");
    let refused = metric(
        &scrape,
        "http_connections_refused_total{reason=\"per_address\"}",
    )
    .unwrap_or(0.0);
    assert!(
        refused >= 56.0,
        "64 tries, at most 8 admitted at a time across both ports: {refused}\n{text}"
    );
    let handshakes = metric(
        &scrape,
        "http_connections_timed_out_total{phase=\"handshake\"}",
    )
    .unwrap_or(0.0);
    assert!(handshakes >= 4.0, "{handshakes}\n{text}");
    assert_eq!(run.answer("exit"), "0");
}

/// A paired tablet that stops reading while the teacher gives 2 500 commands
/// with 2 000-character messages (some 6 MB in all, more than the kernel's
/// socket buffers hold) is closed within the write
/// timeout: its connection is no longer open and the agent's memory does not
/// keep its backlog.
#[test]
fn a_tablet_that_stops_reading_is_closed_within_the_write_timeout() {
    let run = attack("", "", "slow_reader");
    let text = &run.text;
    let closed_after = run.answer("slow_reader_closed_after");
    assert_ne!(
        closed_after, "None",
        "the slow reader's connection is still open 15 s after the commands: {text}"
    );
    assert!(
        closed_after.parse::<f64>().unwrap() < 8.0,
        "within the 5 s write timeout: {text}"
    );
    assert_eq!(run.answer("connected"), "0", "{text}");
    let growth: i64 = run.answer("rss_growth_kib").parse().unwrap();
    assert!(growth < 16 * 1024, "RSS grew by {growth} KiB: {text}");
    assert_eq!(run.answer("exit"), "0");
}

/// A tablet that reads the teacher's commands but sends nothing is shown
/// disconnected once its heartbeat timeout passes: the agent's own sends do
/// not keep it "connected".
#[test]
fn a_silent_tablet_is_shown_disconnected_after_the_heartbeat_timeout_while_commands_flow() {
    let run = attack(
        "",
        "[tablets]\nheartbeat_s = 1\nheartbeat_timeout_s = 3\n",
        "silent_tablet",
    );
    let text = &run.text;
    let after = seconds(&run, "silent_shown_disconnected_after");
    assert!(
        (2.5..6.0).contains(&after),
        "3 s timeout, shown at {after} s: {text}"
    );
    assert_eq!(run.answer("exit"), "0");
}

/// A second of wrong codes from one address (hundreds) locks out that address
/// only: three are checked (the third locks the address out), the rest
/// refused unchecked, and a tablet on another address still
/// pairs; the panel's health shows that someone is guessing.
#[test]
fn a_pairing_flood_from_one_address_locks_out_only_that_address() {
    let run = attack("", "[tablets]\nretry_delay_ms = 100\n", "pairing_flood");
    let text = &run.text;
    let replies: serde_json::Value =
        serde_json::from_str(run.answer("flood_replies").rsplit_once(' ').unwrap().0).unwrap();
    let count = |key: &str| replies.get(key).and_then(|n| n.as_u64()).unwrap_or(0);
    assert_eq!(count("wrong_code"), 2, "{text}");
    assert_eq!(count("locked"), 0, "{text}");
    assert!(count("too_soon") > 0, "{text}");
    assert!(count("address_locked_out") > 100, "{text}");
    assert_eq!(run.answer("tablet_pairs"), "200", "{text}");
    let window: serde_json::Value = serde_json::from_str(&run.answer("window")).unwrap();
    assert_eq!(window["window"]["locked"], false, "{text}");
    assert_eq!(window["window"]["paired"], 1, "{text}");
    let health: serde_json::Value = serde_json::from_str(&run.answer("health")).unwrap();
    let shown = &health["subsystems"]["tablet_pairing"];
    assert_eq!(shown["state"], "degraded", "{text}");
    assert!(
        shown["detail"]
            .as_str()
            .unwrap()
            .contains("đoán mã ghép nối"),
        "{shown}"
    );
    assert_eq!(run.answer("exit"), "0");
}
