//! The hub end to end: real room agents serving gRPC on loopback, the hub
//! binary pulling them, and a PostgreSQL server of the test's own; events are
//! written into each room's database the way any second process on the
//! room's mini-PC would.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{HubConfig, Postgres, Room, http_get, hub_binary, wait_until};
use firmware_agent::proto;
use firmware_agent::store::Store;
use firmware_agent::store::outbox::NewEvent;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const PUPIL_A: &str = "010206000001";
const PUPIL_B: &str = "010206000002";

fn mark(n: usize, personal_id: &str) -> NewEvent {
    NewEvent::new(
        jiff::Timestamp::now(),
        proto::AttendanceMark {
            session_id: format!("s{}", n / 40),
            lesson_id: "2026-09-07/morning/1".into(),
            personal_id: personal_id.into(),
            status: proto::MarkStatus::Present as i32,
            source: proto::MarkSource::Face as i32,
            best_similarity: 0.75,
            ..Default::default()
        },
    )
}

fn marks(store: &Store, count: usize) -> Vec<Uuid> {
    let batch = (0..count)
        .map(|n| mark(n, if n % 2 == 0 { PUPIL_A } else { PUPIL_B }))
        .collect();
    store
        .append_batch(batch)
        .unwrap()
        .into_iter()
        .map(|event| event.id)
        .collect()
}

fn stored_ids(db: &common::Db, room: &Room) -> Vec<Uuid> {
    db.query(
        "SELECT id FROM events WHERE school_code = $1 AND room_id = $2 ORDER BY landed_at, seq",
        &[&room.school_code, &room.room_id],
    )
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[test]
fn check_config_reports_each_bad_value_at_its_line_and_column_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    std::fs::write(
        &path,
        "[postgres]\nurl = \"host=127.0.0.1 user=hub dbname=province\"\n\n[tls]\nplaintext = true\n\n\
         [[rooms]]\nschool_code = \"LC-01\"\nroom_id = \"P201\"\naddress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let output = Command::new(hub_binary())
        .args(["check-config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:10:11: rooms[0].address", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: write the room's gRPC HOST:PORT"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("127.0.0.1:0", "127.0.0.1:50051"),
    )
    .unwrap();
    let output = Command::new(hub_binary())
        .args(["check-config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK (1 room(s)"));

    for command in [
        &["--help"][..],
        &["run", "--help"],
        &["check-config", "--help"],
    ] {
        let output = Command::new(hub_binary()).args(command).output().unwrap();
        assert!(output.status.success(), "{command:?}");
        assert!(!output.stdout.is_empty());
    }
    let output = Command::new(hub_binary())
        .args(["run", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the config file"));
}

#[test]
fn every_kind_lands_once_in_its_table_and_an_erasure_drops_the_pupils_scores() {
    let postgres = Postgres::start();
    let room = Room::new("LC-THCS-01", "P201");
    let store = room.writer();
    let now = jiff::Timestamp::now();
    let mut written = marks(&store, 40);
    let others = vec![
        NewEvent::new(
            now,
            proto::QuestionAnswer {
                lesson_id: "2026-09-07/morning/2".into(),
                question_id: "q1".into(),
                tablet_id: "t7".into(),
                pupil_personal_id: PUPIL_B.into(),
                choices: vec!["A".into(), "C, \"d\"".into()],
                graded: true,
                correct: true,
                time_to_answer_ms: 8_400,
                ..Default::default()
            },
        ),
        NewEvent::new(
            now,
            proto::Actuation {
                device: "bell".into(),
                device_kind: proto::actuation::Kind::Bell as i32,
                command: "ring:long".into(),
                cause: proto::actuation::Cause::Timetable as i32,
                outcome: proto::actuation::Outcome::Confirmed as i32,
                latency_ms: 120,
                ..Default::default()
            },
        ),
        NewEvent::new(
            now,
            proto::AttendanceSession {
                session_id: "s0".into(),
                phase: proto::attendance_session::Phase::Closed as i32,
                present: 38,
                ..Default::default()
            },
        ),
        NewEvent {
            kind: "lesson.poll".into(),
            occurred_at: now,
            payload: vec![8, 1, 18, 2, 104, 105],
        },
    ];
    written.extend(
        store
            .append_batch(others)
            .unwrap()
            .into_iter()
            .map(|e| e.id),
    );
    let _agent = room.start();
    let hub_config = HubConfig::new(&postgres, &[&room]);
    let _hub = hub_config.start();
    let db = postgres.client();
    wait_until("every event stored", Duration::from_secs(30), || {
        db.events() == written.len() as i64
    });
    assert_eq!(stored_ids(&db, &room), written, "in seq order, each once");

    let scores = |pupil: &str| -> Vec<Option<f32>> {
        db.query(
            "SELECT best_similarity FROM attendance_marks WHERE personal_id = $1",
            &[&pupil],
        )
        .iter()
        .map(|row| row.get(0))
        .collect()
    };
    assert_eq!(scores(PUPIL_A), vec![Some(0.75); 20]);
    let answer = &db.query(
        "SELECT choices, graded, time_to_answer_ms, pupil_personal_id FROM answers",
        &[],
    )[0];
    assert_eq!(answer.get::<_, Vec<String>>(0), vec!["A", "C, \"d\""]);
    assert!(answer.get::<_, bool>(1));
    assert_eq!(answer.get::<_, i64>(2), 8_400);
    assert_eq!(answer.get::<_, String>(3), PUPIL_B);
    let actuation = &db.query(
        "SELECT device, device_kind, cause, outcome FROM actuations",
        &[],
    )[0];
    let actuation: Vec<String> = (0..4).map(|i| actuation.get(i)).collect();
    assert_eq!(actuation, ["bell", "bell", "timetable", "confirmed"]);
    let raw = db.query(
        "SELECT kind, payload FROM events WHERE payload IS NOT NULL ORDER BY seq",
        &[],
    );
    let raw: Vec<(String, Vec<u8>)> = raw.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        raw.len(),
        2,
        "marks, answers and actuations keep their content in their tables"
    );
    assert_eq!(raw[0].0, "attendance.session");
    assert_eq!(
        <proto::AttendanceSession as prost::Message>::decode(raw[0].1.as_slice())
            .unwrap()
            .present,
        38
    );
    assert_eq!(
        raw[1],
        ("lesson.poll".to_owned(), vec![8, 1, 18, 2, 104, 105])
    );

    // The pupil's face data is erased in the room: the hub drops the scores it holds at once.
    let erasure = store
        .append(NewEvent::new(
            jiff::Timestamp::now(),
            proto::Erasure {
                personal_id: PUPIL_A.into(),
                what: "face_templates".into(),
                count: 3,
                reason: "parent withdrew consent".into(),
            },
        ))
        .unwrap();
    wait_until("the erasure stored", Duration::from_secs(30), || {
        db.number("SELECT count(*) FROM erasures", &[]) == 1
    });
    assert_eq!(
        scores(PUPIL_A),
        vec![None; 20],
        "no score of the erased pupil is left"
    );
    assert_eq!(
        scores(PUPIL_B),
        vec![Some(0.75); 20],
        "other pupils keep theirs"
    );
    assert_eq!(
        db.number(
            "SELECT count(*) FROM attendance_marks WHERE personal_id = $1",
            &[&PUPIL_A]
        ),
        20,
        "the marks themselves are school records and stay"
    );
    wait_until(
        "the room acknowledged to the end",
        Duration::from_secs(10),
        || room.acked_seq() == erasure.seq,
    );

    let (status, body) = http_get(hub_config.http, "/healthz");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = &health["rooms"][0];
    assert_eq!(entry["room_id"], "P201");
    assert_eq!(entry["cursor"], erasure.seq);
    assert_eq!(entry["backlog"], 0);
    assert!(entry["last_contact_unix"].as_f64().unwrap() > 0.0, "{body}");
    assert!(entry["lag_seconds"].as_f64().is_some(), "{body}");
    let (_, scrape) = http_get(hub_config.http, "/metrics");
    let series = "{school=\"LC-THCS-01\",room=\"P201\"}";
    assert!(
        scrape.contains(&format!(
            "province_hub_events_landed_total{series} {}",
            written.len() + 1
        )),
        "{scrape}"
    );
    assert!(
        scrape.contains(&format!("province_hub_room_backlog_events{series} 0")),
        "{scrape}"
    );
}

#[test]
fn a_replaced_room_database_is_pulled_from_zero_and_the_old_rows_are_kept() {
    let postgres = Postgres::start();
    let room = Room::new("LC-THCS-02", "P105");
    let old = marks(&room.writer(), 30);
    let mut agent = room.start();
    let hub_config = HubConfig::new(&postgres, &[&room]);
    let _hub = hub_config.start();
    let db = postgres.client();
    wait_until("the old outbox stored", Duration::from_secs(30), || {
        db.events() == 30
    });

    agent.kill();
    let aside = room.dir.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    for entry in std::fs::read_dir(room.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("agent.sqlite3")
        {
            std::fs::rename(&path, aside.join(path.file_name().unwrap())).unwrap();
        }
    }
    let new = marks(&room.writer(), 5);
    let _agent = room.start();
    wait_until("the new outbox stored", Duration::from_secs(30), || {
        db.events() == 35
    });
    assert_eq!(stored_ids(&db, &room), [old, new].concat());
    let outboxes = db.query(
        "SELECT o.cursor, o.identity = r.current_identity FROM outboxes o JOIN rooms r USING (school_code, room_id) \
         ORDER BY o.first_seen_at",
        &[],
    );
    let outboxes: Vec<(i64, bool)> = outboxes
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        outboxes,
        [(30, false), (5, true)],
        "the old cursor kept, the new one from 0"
    );
    wait_until(
        "the new outbox acknowledged",
        Duration::from_secs(10),
        || room.acked_seq() == 5,
    );
}

#[test]
fn twenty_rooms_land_at_once() {
    let postgres = Postgres::start();
    let rooms: Vec<Room> = (0..20)
        .map(|i| Room::new(&format!("LC-THCS-{:02}", i / 4), &format!("P{}", 100 + i)))
        .collect();
    let mut written = Vec::new();
    for room in &rooms {
        written.push(marks(&room.writer(), 300));
    }
    let _agents: Vec<_> = rooms.iter().map(Room::start).collect();
    let hub_config = HubConfig::new(&postgres, &rooms.iter().collect::<Vec<_>>());
    let _hub = hub_config.start();
    let db = postgres.client();
    wait_until("every room stored", Duration::from_secs(60), || {
        db.events() == 20 * 300
    });
    // While they follow, each room records a little more.
    for (room, ids) in rooms.iter().zip(&mut written) {
        ids.extend(marks(&room.writer(), 7));
    }
    wait_until("the new events stored", Duration::from_secs(30), || {
        db.events() == 20 * 307
    });
    for (room, ids) in rooms.iter().zip(&written) {
        assert_eq!(
            &stored_ids(&db, room),
            ids,
            "{}/{}",
            room.school_code,
            room.room_id
        );
    }
    wait_until(
        "/healthz shows every room caught up",
        Duration::from_secs(10),
        || {
            let body = http_get(hub_config.http, "/healthz").1;
            let health: serde_json::Value = serde_json::from_str(&body).unwrap();
            let listed = health["rooms"].as_array().unwrap();
            listed.len() == 20
                && listed.iter().all(|room| {
                    room["backlog"] == 0 && room["cursor"] == 307 && room["state"] == "caught_up"
                })
        },
    );
    let (_, scrape) = http_get(hub_config.http, "/metrics");
    assert_eq!(
        scrape
            .lines()
            .filter(|line| line.starts_with("province_hub_room_backlog_events{"))
            .count(),
        20
    );
}

/// Agents and the hub killed with SIGKILL at random moments while rooms keep
/// recording, PostgreSQL crashed and restarted once: at the end every event of
/// every outbox is stored exactly once and acknowledged.
#[test]
fn every_event_lands_exactly_once_through_kills_of_agents_hub_and_database() {
    const CYCLES: usize = 60;
    let postgres = Postgres::start();
    let rooms: Vec<Room> = (0..3)
        .map(|i| Room::new("LC-THCS-09", &format!("P{}", 300 + i)))
        .collect();
    let writers: Vec<Store> = rooms.iter().map(Room::writer).collect();
    let hub_config = HubConfig::new(&postgres, &rooms.iter().collect::<Vec<_>>());
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut written: Vec<Vec<Uuid>> = vec![Vec::new(); rooms.len()];
    let mut agents: Vec<Option<common::Process>> = rooms.iter().map(|_| None).collect();
    let mut hub: Option<common::Process> = None;
    let (mut agent_kills, mut hub_kills) = (0, 0);
    for cycle in 0..CYCLES {
        for (writer, ids) in writers.iter().zip(&mut written) {
            ids.extend(marks(writer, rng.random_range(1..=40)));
        }
        for (room, agent) in rooms.iter().zip(&mut agents) {
            if agent.is_none() {
                *agent = Some(room.start());
            }
        }
        if hub.is_none() {
            hub = Some(hub_config.start());
        }
        if cycle == CYCLES / 2 {
            postgres.crash();
            postgres.start_server();
        }
        // The moment of the kill: anywhere from before the first batch to well after the last.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        match rng.random_range(0..3) {
            0 => {
                let victim = rng.random_range(0..rooms.len());
                agents[victim].take().unwrap().kill();
                agent_kills += 1;
            }
            1 => {
                hub.take().unwrap().kill();
                hub_kills += 1;
            }
            _ => {
                let victim = rng.random_range(0..rooms.len());
                agents[victim].take().unwrap().kill();
                hub.take().unwrap().kill();
                agent_kills += 1;
                hub_kills += 1;
            }
        }
    }
    assert!(
        agent_kills >= 15 && hub_kills >= 15,
        "{agent_kills} agent and {hub_kills} hub kills"
    );
    for (room, agent) in rooms.iter().zip(&mut agents) {
        if agent.is_none() {
            *agent = Some(room.start());
        }
    }
    let _hub = hub.unwrap_or_else(|| hub_config.start());
    let db = postgres.client();
    let total: usize = written.iter().map(Vec::len).sum();
    wait_until("every event stored", Duration::from_secs(60), || {
        db.events() == total as i64
    });
    for (room, ids) in rooms.iter().zip(&written) {
        assert_eq!(
            &stored_ids(&db, room),
            ids,
            "{}: every event, in order, once",
            room.room_id
        );
        let last = *ids.last().unwrap();
        let seq: i64 = db.number("SELECT seq FROM events WHERE id = $1", &[&last]);
        wait_until("every event acknowledged", Duration::from_secs(10), || {
            room.acked_seq() == seq
        });
    }
    assert_eq!(
        db.number("SELECT count(*) FROM attendance_marks", &[]),
        total as i64,
        "one analyst row per mark"
    );
    let distinct: BTreeSet<Uuid> = written.iter().flatten().copied().collect();
    assert_eq!(distinct.len(), total);
}
