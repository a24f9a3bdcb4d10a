//! The foundation, end to end: the real binary, its config checks, its HTTP
//! server, its signals and its store.

mod common;

use std::time::Duration;

use common::{Room, http_get};

#[test]
fn healthz_answers_and_sigterm_exits_zero() {
    let room = Room::new("");
    let mut agent = room.start();
    let (status, body) = http_get(room.http, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"]["state"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["subsystems"]["http"]["state"], "ok");
    agent.signal(libc::SIGTERM);
    let status = agent
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 seconds of SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_config_prints_every_problem_with_line_and_column() {
    let room = Room::new("");
    let bad = room.dir.path().join("bad.toml");
    std::fs::write(&bad, "[room]\nschool_code = \"LC 01\"\nroom_id = \"P1\"\nnmae = \"x\"\n\n[http]\nlisten = \"localhost\"\n").unwrap();
    let output = std::process::Command::new(common::agent_binary())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{path}:4:1: unknown field `nmae`")),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `name`?"), "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:7:10: invalid socket address")),
        "{stderr}"
    );

    let good = std::process::Command::new(common::agent_binary())
        .arg("check-config")
        .arg(&room.config_path)
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );

    for shipped in ["config/agent.example.toml", "config/demo.toml"] {
        let output = std::process::Command::new(common::agent_binary())
            .arg("check-config")
            .arg(common::repo_root().join(shipped))
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shipped}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn run_refuses_an_invalid_config_with_the_same_messages() {
    let room = Room::new("[camera]\ndevice = 0\n");
    let mut agent = common::RunningAgent::spawn(&room.config_path, &[]);
    let status = agent.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(2));
    let log = agent.log.lock().unwrap().join("\n");
    assert!(
        log.contains(&format!("{}:", room.config_path.display()))
            && log.contains("unknown field `camera`"),
        "{log}"
    );
}

#[test]
fn sighup_applies_a_valid_config_and_ignores_an_invalid_one() {
    let room = Room::new("");
    let mut agent = room.start();
    // A broken file: logged and ignored, the agent keeps serving.
    std::fs::write(&room.config_path, "[room\nbroken").unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_for_log("config reload refused", Duration::from_secs(10));
    assert_eq!(http_get(room.http, "/healthz").0, 200);
    // A valid one with a new room name: applied live.
    room.write_config("");
    let text = std::fs::read_to_string(&room.config_path)
        .unwrap()
        .replace("Phòng thử", "Phòng 202");
    std::fs::write(&room.config_path, text).unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_for_log("config reloaded", Duration::from_secs(10));
    let (_, body) = http_get(room.http, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["room"]["name"], "Phòng 202");
    agent.signal(libc::SIGINT);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
}

/// Mistakes nobody sees in an editor: a Vietnamese letter among the hex bytes
/// of the panel's power command, a file saved in a legacy Vietnamese encoding,
/// a content directory that is the data directory. check-config names each
/// with its place and how to fix it; the running agent refuses each at SIGHUP
/// and keeps serving.
#[test]
fn check_config_and_reload_name_mistakes_nobody_sees_in_an_editor() {
    let room = Room::new("");
    let mut agent = room.start();
    let valid = std::fs::read_to_string(&room.config_path).unwrap();
    let path = room.config_path.display().to_string();
    // `Đ` (two bytes in UTF-8) falls inside a pair of hex digits.
    let power = format!(
        "{valid}[panel.power]\ncontrol = \"rs232\"\non_bytes = \"AA 11 FE 0Đ 1\"\noff_bytes = \"AA 11 00\"\n"
    );
    // "Phòng thử" in Windows-1258: ò is 0xF2; ử is ư (0xFD) and a combining hook (0xD2).
    let (before, after) = valid.split_once("Phòng thử").unwrap();
    let legacy = [before.as_bytes(), b"Ph\xF2ng th\xFD\xD2", after.as_bytes()].concat();
    let content = format!("{valid}[tablets]\ncontent_dir = \".\"\n");
    let cases = [
        (
            power.into_bytes(),
            "panel.power.on_bytes: `AA 11 FE 0Đ 1` is not hex: `Đ` is not a hex digit".to_owned(),
        ),
        (legacy, format!("{path}:4:11: byte 0xF2 is not UTF-8 text")),
        (content.into_bytes(), "tablets.content_dir:".to_owned()),
    ];
    for (file, expected) in cases {
        std::fs::write(&room.config_path, &file).unwrap();
        let output = std::process::Command::new(common::agent_binary())
            .arg("check-config")
            .arg(&room.config_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{expected}: {stderr}");
        assert!(
            stderr.contains(&expected) && stderr.contains("hint:"),
            "{expected}: {stderr}"
        );
        agent.signal(libc::SIGHUP);
        agent.wait_for_log("config reload refused", Duration::from_secs(10));
        assert_eq!(
            http_get(room.http, "/healthz").0,
            200,
            "still serving after {expected}"
        );
    }
    agent.signal(libc::SIGTERM);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
}

/// With `http.listen = "[::]:PORT"` an IPv4 client is seen as
/// `::ffff:127.0.0.1`: the panel on loopback is still the panel, and an
/// address of the LAN still needs the PIN. Run in a private network
/// namespace (`unshare`), where listening on every address reaches nobody.
#[test]
fn the_panel_on_loopback_is_trusted_when_the_server_listens_on_every_ipv6_address() {
    let room = Room::new("[tablets]\ndiscovery = false\n");
    let port = room.http.port();
    room.set_http_listen(&format!("[::]:{port}"));
    let run = room.run_in_own_network(
        "ip addr add 192.0.2.1/32 dev lo",
        &format!(
            r#"code() {{ curl -s -o /dev/null -w '%{{http_code}}' "$@"; }}
echo "ipv4_loopback $(code http://127.0.0.1:{port}/api/panel/state)"
echo "ipv6_loopback $(code 'http://[::1]:{port}/api/panel/state')"
echo "lan $(code http://192.0.2.1:{port}/api/panel/state)""#
        ),
    );
    let answer = |key: &str| run.answer(key);
    assert_eq!(
        answer("ipv4_loopback"),
        "200",
        "the panel's kiosk browser on 127.0.0.1"
    );
    assert_eq!(answer("ipv6_loopback"), "200");
    assert_eq!(answer("lan"), "401", "another machine still needs the PIN");
    assert_eq!(answer("exit"), "0");
}

#[test]
fn a_port_in_use_is_reported_and_exits_one() {
    let room = Room::new("");
    let _taken = std::net::TcpListener::bind(room.http).unwrap();
    let mut agent = common::RunningAgent::spawn(&room.config_path, &[]);
    let status = agent.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(1));
    let log = agent.log.lock().unwrap().join("\n");
    assert!(
        log.contains(&format!("cannot listen on {} (http.listen)", room.http))
            && log.contains("another program"),
        "{log}"
    );
}

#[test]
fn a_corrupt_database_is_reported_and_kept() {
    let room = Room::new("");
    std::fs::create_dir_all(room.data_dir()).unwrap();
    let garbage = vec![0x5Au8; 8192];
    std::fs::write(room.database(), &garbage).unwrap();
    let mut agent = common::RunningAgent::spawn(&room.config_path, &[]);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(1)
    );
    let log = agent.log.lock().unwrap().join("\n");
    assert!(
        log.contains("not a SQLite database or is corrupt") && log.contains("move the file aside"),
        "{log}"
    );
    assert_eq!(std::fs::read(room.database()).unwrap(), garbage);
}

const ROSTER_HEADER: &str =
    "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n";

#[test]
fn roster_import_applies_all_rows_or_none() {
    let room = Room::new("");
    let good = room.dir.path().join("good.csv");
    std::fs::write(
        &good,
        format!("{ROSTER_HEADER}học sinh,002208001111,Hoàng Thị Mai,6A1,có,có,2026-08-15\nhọc sinh,002208002222,Sùng A Dơ,6A1,không,có,2026-08-15\ngiáo viên,002185003333,Đặng Văn Lâm,,không,không,\n"),
    )
    .unwrap();
    let output = room.command(&["roster", "import", good.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("imported 2 pupil(s) in 1 class(es) and 1 teacher(s)")
    );

    let bad = room.dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{ROSTER_HEADER}pupil,002208004444,Lý Thị Hà,6A2,no,no,\npupil,097208005555,Vừ A Chứ,6A2,no,no,\n")).unwrap();
    let output = room.command(&["roster", "import", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("row 3, personal_id") && stderr.contains("nothing was imported"),
        "{stderr}"
    );

    let latin = room.dir.path().join("latin.csv");
    let mut bytes = ROSTER_HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"pupil,002208006666,L\xFD Th\xEF,6A2,no,no,\n");
    std::fs::write(&latin, bytes).unwrap();
    let output = room.command(&["roster", "import", latin.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CSV UTF-8"));

    let conn = rusqlite::Connection::open(room.database()).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT full_name FROM pupils ORDER BY personal_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        names,
        ["Hoàng Thị Mai", "Sùng A Dơ"],
        "only the good file's pupils"
    );
}

#[test]
fn roster_export_round_trips_through_import() {
    let room = Room::new("");
    let file = room.dir.path().join("class.csv");
    std::fs::write(
        &file,
        format!("{ROSTER_HEADER}pupil,002208001111,\"Hoàng Thị Mai\",6A1,yes,yes,2026-08-15\n"),
    )
    .unwrap();
    assert_eq!(
        room.command(&["roster", "import", file.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let exported = room.command(&["roster", "export"]);
    assert_eq!(exported.status.code(), Some(0));
    let text = String::from_utf8(exported.stdout).unwrap();
    assert_eq!(
        text,
        format!("{ROSTER_HEADER}pupil,002208001111,Hoàng Thị Mai,6A1,yes,yes,2026-08-15\n")
    );
}

#[test]
fn a_data_directory_that_cannot_be_created_is_reported() {
    let room = Room::new("");
    std::fs::write(
        room.data_dir(),
        b"a file where the data directory should be",
    )
    .unwrap();
    let mut agent = common::RunningAgent::spawn(&room.config_path, &[]);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(1)
    );
    let log = agent.log.lock().unwrap().join("\n");
    assert!(
        log.contains("cannot create the data directory") && log.contains("storage.data_dir"),
        "{log}"
    );
}

/// A full disk, for real: the data directory is a 256 KiB tmpfs mounted in a
/// private mount namespace (`unshare`), so nothing outside the test sees it.
#[test]
fn a_full_disk_refuses_the_import_and_keeps_what_was_there() {
    let room = Room::new("");
    std::fs::create_dir_all(room.data_dir()).unwrap();
    let small = room.dir.path().join("small.csv");
    std::fs::write(
        &small,
        format!("{ROSTER_HEADER}pupil,002208001111,Hoàng Thị Mai,6A1,no,no,\n"),
    )
    .unwrap();
    let huge = room.dir.path().join("huge.csv");
    let mut rows = String::from(ROSTER_HEADER);
    for n in 0..20_000 {
        rows.push_str(&format!(
            "pupil,0022080{n:05},Học sinh số {n} với một cái tên thật dài,6A{},no,no,\n",
            n % 9
        ));
    }
    std::fs::write(&huge, rows).unwrap();
    let exported = room.dir.path().join("exported.csv");
    let binary = common::agent_binary();
    let script = format!(
        "set -e; mount -t tmpfs -o size=256k tmpfs '{data}'; \
         '{bin}' roster import '{small}' --config '{config}'; \
         if '{bin}' roster import '{huge}' --config '{config}' 2>'{dir}/huge.err'; then echo 'huge import succeeded'; exit 1; fi; \
         '{bin}' roster export --config '{config}' > '{exported}'",
        data = room.data_dir().display(),
        bin = binary.display(),
        small = small.display(),
        huge = huge.display(),
        config = room.config_path.display(),
        dir = room.dir.path().display(),
        exported = exported.display(),
    );
    let output = std::process::Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let error = std::fs::read_to_string(room.dir.path().join("huge.err")).unwrap();
    assert!(
        error.contains("the disk is full; nothing was written"),
        "{error}"
    );
    let after = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(
        after.lines().count(),
        2,
        "only the small roster remains: {after}"
    );
    assert!(after.contains("Hoàng Thị Mai"));
}
