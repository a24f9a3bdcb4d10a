//! A full disk under the running agent: its data directory on a small tmpfs of
//! the test's own, filled with a file until SQLite reports SQLITE_FULL, then
//! freed. Nothing the agent said it did is lost, and a teacher's bell whose
//! record could not be kept is refused before it rings.
//!
//! Needs root (to mount); the file system is unmounted by a guard even when
//! the test fails.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Room, http_get, metric};
use firmware_agent::proto::event::Payload;
use firmware_agent::store::outbox::{StoredEvent, read_after};
use serde_json::Value;

/// A tmpfs mounted on `dir` for as long as it lives.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Writes `path` until the file system has no byte left.
fn fill(path: &Path) {
    let mut filler = File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 4096];
    loop {
        match filler.write(&chunk) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(err) => panic!("filling the disk: {err}"),
        }
    }
    let _ = filler.sync_all();
}

const BELL_ROOM: &str = r#"
[schedule]
bell = "bell"
[schedule.patterns.start]
pulses_ms = [20]
[[actuators.device]]
name = "bell"
kind = "bell"
driver = { type = "simulated" }
[[actuators.device]]
name = "lights"
kind = "light"
driver = { type = "simulated" }
"#;

/// POSTs `body` to the agent from loopback (the panel's place); returns the status and the JSON answer.
fn post(room: &Room, path: &str, body: Value) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .post(&format!("http://{}{path}", room.http))
        .send_json(body)
        .unwrap();
    (
        response.status().as_u16(),
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

fn healthz(room: &Room) -> Value {
    serde_json::from_str(&http_get(room.http, "/healthz").1).unwrap()
}

/// Polls `/healthz` until `condition` holds; panics with the last answer after 20 s.
fn wait_for_health(room: &Room, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = healthz(room);
        if condition(&health) {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 20 s; /healthz says {health:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every event of the room's outbox, read from the database file with the agent's own reader.
fn outbox(room: &Room) -> Vec<StoredEvent> {
    let conn = rusqlite::Connection::open_with_flags(
        room.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    read_after(&conn, 0, 100_000).unwrap()
}

fn bell_rings(events: &[StoredEvent]) -> Vec<&StoredEvent> {
    events
        .iter()
        .filter(
            |e| matches!(e.payload().unwrap(), Some(Payload::Actuation(a)) if a.device == "bell"),
        )
        .collect()
}

#[test]
fn a_full_disk_queues_what_was_done_refuses_the_teacher_and_loses_nothing_once_freed() {
    let room = Room::new(BELL_ROOM);
    let disk = Tmpfs::mount(&room.data_dir(), "8m");
    let agent = room.start();

    let rang = room.command(&["bell", "ring"]);
    assert_eq!(
        rang.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rang.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&rang.stdout).contains("queued"),
        "a healthy store commits at once"
    );

    let filler = disk.dir.join("filler");
    fill(&filler);
    // The teacher rings until the agent refuses: each ring done before that is
    // either committed (SQLite still had room in its pages) or queued.
    let mut done = 1;
    let mut queued = 0;
    let refused = loop {
        let ring = room.command(&["bell", "ring"]);
        let stdout = String::from_utf8_lossy(&ring.stdout).into_owned();
        match ring.status.code() {
            Some(0) => {
                done += 1;
                if stdout.contains("the record is queued, not yet on disk") {
                    assert!(
                        stdout.contains("disk is full"),
                        "the CLI says why: {stdout}"
                    );
                    queued += 1;
                }
            }
            _ => break ring,
        }
        assert!(done < 2_000, "the agent never noticed the full disk");
    };
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Không thực hiện (not done)")
            && stderr.contains("ổ đĩa đã đầy")
            && stderr.contains("disk is full"),
        "{stderr}"
    );
    assert!(
        queued >= 1,
        "the ring that met the full disk rang and its record was queued"
    );
    // Every other teacher's action is refused before it is done, the same way.
    let lights = room.command(&["light", "on", "all"]);
    assert_eq!(
        lights.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&lights.stderr)
    );
    assert!(String::from_utf8_lossy(&lights.stderr).contains("Không thực hiện (not done)"));
    for (path, body) in [
        (
            "/api/lesson/lock",
            serde_json::json!({ "message": "Nhìn lên bảng" }),
        ),
        (
            "/api/attendance/correct",
            serde_json::json!({ "personal_id": "010206001234", "status": "PRESENT" }),
        ),
    ] {
        let (status, answer) = post(&room, path, body);
        assert_eq!(status, 503, "{path}: {answer}");
        assert_eq!(answer["error"], "not_kept", "{path}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .starts_with("Không lưu được bản ghi: ổ đĩa đã đầy"),
            "{path}: {answer}"
        );
        assert!(
            answer["detail"].as_str().unwrap().contains("disk is full"),
            "{path}: {answer}"
        );
        assert_eq!(answer["store"]["cause"], "disk_full", "{path}: {answer}");
    }

    let health = healthz(&room);
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert_eq!(
        health["subsystems"]["store"]["state"], "degraded",
        "{health:#}"
    );
    assert!(
        health["subsystems"]["store"]["detail"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{health:#}"
    );
    assert_eq!(
        health["database"]["records"]["cause"], "disk_full",
        "{health:#}"
    );
    let waiting = health["database"]["records"]["queued"].as_u64().unwrap();
    assert!(waiting >= queued, "{health:#}");
    let scrape = http_get(room.http, "/metrics").1;
    assert_eq!(
        metric(&scrape, "agent_recorder_queued_records"),
        Some(waiting as f64),
        "{scrape}"
    );
    assert!(
        metric(
            &scrape,
            "agent_recorder_failures_total{cause=\"disk_full\"}"
        )
        .unwrap()
            >= 1.0,
        "{scrape}"
    );
    assert!(
        metric(
            &scrape,
            "agent_recorder_refused_actions_total{who=\"teacher\"}"
        )
        .unwrap()
            >= 1.0,
        "{scrape}"
    );

    let freed_at = jiff::Timestamp::now();
    std::fs::remove_file(&filler).unwrap();
    wait_for_health(&room, "the store takes records again", |h| {
        h["subsystems"]["store"]["state"] == "ok" && h["database"]["records"]["queued"] == 0
    });
    let after = room.command(&["bell", "ring"]);
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    done += 1;
    drop(agent);

    let events = outbox(&room);
    let rings = bell_rings(&events);
    assert_eq!(
        rings.len(),
        done,
        "every ring that was done is in the outbox, and the refused one is not"
    );
    assert!(
        !events.iter().any(
            |e| matches!(e.payload().unwrap(), Some(Payload::Actuation(a)) if a.device == "lights")
        ),
        "the refused lights were not switched"
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        rings
            .windows(2)
            .all(|w| w[0].occurred_at < w[1].occurred_at),
        "committed in the order they rang"
    );
    let late: Vec<_> = rings
        .iter()
        .filter(|e| e.recorded_at >= freed_at && e.occurred_at < freed_at)
        .collect();
    assert!(
        late.len() as u64 >= queued,
        "queued rings keep the time they rang, and were recorded once the disk was freed"
    );
    let store_health: Vec<String> = events
        .iter()
        .filter_map(|e| match e.payload().unwrap() {
            Some(Payload::DeviceHealth(h)) if h.subsystem == "store" => Some(h.state),
            _ => None,
        })
        .collect();
    assert!(
        store_health.ends_with(&["degraded".to_owned(), "ok".to_owned()]),
        "the store's trouble and its end are recorded: {store_health:?}"
    );
    drop(disk);
}
