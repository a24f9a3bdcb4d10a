//! Rooms that dial the hub: the real agent binary in a network namespace of
//! its own (no way in from the hub's side) opens its link to the hub binary,
//! whose events land in a PostgreSQL server of the test's own, exactly once,
//! through a SIGKILL of the hub; and a room that both dials in and is pulled
//! is landed over one link at a time, every event once.

mod common;
#[allow(dead_code)] // shared with the agent's dial-out tests; these use part of it
#[path = "../../tests/common/netns.rs"]
mod netns;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Db, HubConfig, Postgres, Room, free_addresses, http_get, wait_until};
use firmware_agent::proto;
use firmware_agent::store::outbox::NewEvent;
use netns::Namespace;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

fn mark(n: usize) -> NewEvent {
    NewEvent::new(
        jiff::Timestamp::now(),
        proto::AttendanceMark {
            session_id: format!("s{}", n / 40),
            lesson_id: "2026-09-07/morning/1".into(),
            personal_id: format!("0102060{n:05}"),
            status: proto::MarkStatus::Present as i32,
            source: proto::MarkSource::Teacher as i32,
            ..Default::default()
        },
    )
}

/// Commits `count` events in the room; adds their ids to `committed`.
fn append(room: &Room, from: usize, count: usize, committed: &mut BTreeSet<Uuid>) {
    let events = room
        .writer()
        .append_batch((from..from + count).map(mark).collect())
        .unwrap();
    committed.extend(events.into_iter().map(|event| event.id));
}

/// The test's marks landed for the room (the agent records events of its own
/// too), and how many distinct ids among them.
fn landed(db: &Db, room: &Room) -> (i64, i64) {
    let row = &db.query(
        "SELECT count(*), count(DISTINCT id) FROM events \
         WHERE school_code = $1 AND room_id = $2 AND kind = 'attendance.mark'",
        &[&room.school_code, &room.room_id],
    )[0];
    (row.get(0), row.get(1))
}

/// Waits until the `committed` events of the room are landed and
/// acknowledged, then asserts PostgreSQL holds each of them exactly once, and
/// nothing else.
fn assert_every_event_once(db: &Db, room: &Room, committed: &BTreeSet<Uuid>) {
    let count = committed.len() as i64;
    wait_until("every event landed", WAIT, || landed(db, room).0 >= count);
    wait_until("every event acknowledged", WAIT, || {
        room.acked_seq() >= count
    });
    let (rows, distinct) = landed(db, room);
    assert_eq!((rows, distinct), (count, count), "every event once");
    let stored: BTreeSet<Uuid> = db
        .query(
            "SELECT id FROM events \
             WHERE school_code = $1 AND room_id = $2 AND kind = 'attendance.mark'",
            &[&room.school_code, &room.room_id],
        )
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(stored == *committed, "the landed events are the room's");
    let marks = db.number(
        "SELECT count(*) FROM attendance_marks WHERE school_code = $1 AND room_id = $2",
        &[&room.school_code, &room.room_id],
    );
    assert_eq!(marks, count, "each mark once in the analyst's table");
}

/// The room's entry in the hub's `/healthz`, once it is there.
fn room_health(hub: SocketAddr, room: &Room) -> serde_json::Value {
    let (status, body) = http_get(hub, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    health["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == room.room_id.as_str())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_room_the_hub_cannot_reach_dials_in_and_lands_every_event_once_through_a_hub_sigkill() {
    let postgres = Postgres::start();
    let db = postgres.client();
    let namespace = Namespace::new();
    let [spare] = free_addresses();
    let dial_in = namespace.hub_address(spare.port());
    let room = Room::dialling("LC-THCS-01", "P301", dial_in);
    let mut committed = BTreeSet::new();
    append(&room, 0, 6_000, &mut committed);
    let config = HubConfig::with_dial_in(&postgres, &[], dial_in);
    let mut hub = config.start();
    let _agent = room.start_in(&namespace.name);

    // Nothing in the room can be reached from the hub's side: the room dials.
    let toward_room = SocketAddr::new(IpAddr::V4(namespace.room_ip), room.grpc.port());
    assert!(
        std::net::TcpStream::connect_timeout(&toward_room, Duration::from_secs(2)).is_err(),
        "the room's port is out of the hub's reach"
    );

    // Killed mid-stream, with part of the backlog landed.
    wait_until("part of the backlog landed", WAIT, || {
        landed(&db, &room).0 >= 500
    });
    hub.kill();
    let at_kill = landed(&db, &room).0;
    append(&room, 6_000, 1_000, &mut committed);
    let mut hub = config.start();
    assert_every_event_once(&db, &room, &committed);
    assert!(
        at_kill < 7_000,
        "the hub was killed before it had landed everything"
    );

    // Events committed while linked follow on the same link.
    append(&room, 7_000, 300, &mut committed);
    assert_every_event_once(&db, &room, &committed);

    let health = room_health(config.http, &room);
    assert_eq!(health["link"], "dial_in", "{health}");
    assert!(health["cursor"].as_i64().unwrap() >= 7_300, "{health}");
    assert_eq!(health["cursor"], health["newest_seq"], "{health}");
    assert_eq!(health["backlog"], 0, "{health}");
    assert!(health["last_contact_unix"].as_f64().is_some(), "{health}");
    assert!(
        health["address"]
            .as_str()
            .unwrap()
            .starts_with(&namespace.room_ip.to_string()),
        "{health}"
    );
    let (_, metrics) = http_get(config.http, "/metrics");
    assert!(
        metrics.contains("province_hub_room_dialled_in{school=\"LC-THCS-01\",room=\"P301\"} 1"),
        "{metrics}"
    );
    hub.kill();
}

#[test]
fn a_room_that_dials_in_and_is_pulled_is_landed_over_one_link_at_a_time_every_event_once() {
    let postgres = Postgres::start();
    let db = postgres.client();
    let [dial_in] = free_addresses();
    let room = Room::dialling("LC-THCS-02", "P102", dial_in);
    let mut committed = BTreeSet::new();
    append(&room, 0, 3_000, &mut committed);
    let config = HubConfig::with_dial_in(&postgres, &[&room], dial_in);
    let hub = config.start();
    let mut agent = room.start();
    hub.wait_for_log("the room dialled in", WAIT);
    for chunk in 0..10 {
        append(&room, 3_000 + chunk * 100, 100, &mut committed);
    }
    assert_every_event_once(&db, &room, &committed);
    wait_until("the room's own link lands it", WAIT, || {
        room_health(config.http, &room)["link"] == "dial_in"
    });

    // The room stops dialling: the hub pulls it again, from the stored cursor.
    agent.kill();
    room.write_config("");
    append(&room, 4_000, 500, &mut committed);
    let _agent = room.start();
    assert_every_event_once(&db, &room, &committed);
    let health = room_health(config.http, &room);
    assert_eq!(health["link"], "pull", "{health}");
    assert!(health["cursor"].as_i64().unwrap() >= 4_500, "{health}");
}

/// The full name the room's own database holds for `personal_id`, if any.
fn name_in_room(room: &Room, personal_id: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(room.database()).unwrap();
    conn.query_row(
        "SELECT full_name FROM pupils WHERE personal_id = ?1",
        [personal_id],
        |row| row.get(0),
    )
    .ok()
}

#[test]
fn a_roster_row_changed_in_postgresql_reaches_a_dialled_and_a_pulled_room() {
    let postgres = Postgres::start();
    let db = postgres.client();
    let [dial_in] = free_addresses();
    let dialling = Room::dialling("LC-THCS-03", "P201", dial_in);
    let pulled = Room::new("LC-THCS-03", "P202");
    let config = HubConfig::with_dial_in(&postgres, &[&pulled], dial_in);
    let _hub = config.start();
    let _agents = [dialling.start(), pulled.start()];
    wait_until("both rooms linked", WAIT, || {
        room_health(config.http, &dialling)["state"] == "caught_up"
            && room_health(config.http, &pulled)["state"] == "caught_up"
    });

    for (room, pupil) in [(&dialling, "010206000101"), (&pulled, "010206000102")] {
        // One statement, so one transaction: the room never sees half of it.
        db.query(
            "WITH teacher AS (INSERT INTO roster_teachers (school_code, room_id, personal_id, full_name) \
             VALUES ($1, $2, '010180000009', 'Trần Thị Bình')) \
             INSERT INTO roster_pupils (school_code, room_id, personal_id, full_name, class_name) \
             VALUES ($1, $2, $3, 'Nguyễn Văn An', '6A')",
            &[&room.school_code, &room.room_id, &pupil],
        );
    }
    for (room, pupil) in [(&dialling, "010206000101"), (&pulled, "010206000102")] {
        wait_until("the roster reached the room", WAIT, || {
            name_in_room(room, pupil).as_deref() == Some("Nguyễn Văn An")
        });
        db.query(
            "UPDATE roster_pupils SET full_name = 'Nguyễn Văn Ân' WHERE personal_id = $1",
            &[&pupil],
        );
        wait_until("the changed row reached the room", WAIT, || {
            name_in_room(room, pupil).as_deref() == Some("Nguyễn Văn Ân")
        });
    }

    let answered = |room: &Room| -> Vec<(String, bool, i32, i32)> {
        db.query(
            "SELECT link, accepted, pupils, teachers FROM roster_deliveries \
             WHERE school_code = $1 AND room_id = $2 ORDER BY version",
            &[&room.school_code, &room.room_id],
        )
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
    };
    let newest = |room: &Room| {
        db.number(
            "SELECT version FROM room_rosters WHERE school_code = $1 AND room_id = $2",
            &[&room.school_code, &room.room_id],
        )
    };
    for (room, link) in [(&dialling, "dial_in"), (&pulled, "pull")] {
        let answers = answered(room);
        assert!(!answers.is_empty());
        assert!(
            answers
                .iter()
                .all(|answer| *answer == (link.to_owned(), true, 1, 1)),
            "{answers:?}"
        );
        wait_until("the room's acceptance recorded", WAIT, || {
            db.number(
                "SELECT coalesce(max(version), 0) FROM roster_deliveries \
                 WHERE school_code = $1 AND room_id = $2 AND accepted",
                &[&room.school_code, &room.room_id],
            ) == newest(room)
        });
    }
}
