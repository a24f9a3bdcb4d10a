//! Rooms that dial the hub: the real agent binary in a network namespace of
//! its own (no way in from the hub's side) opens its link to the hub binary,
//! whose events land in a PostgreSQL server of the test's own, exactly once,
//! through a SIGKILL of the hub; and a room that both dials in and is pulled
//! is landed over one link at a time, every event once.
//! Over mutual TLS, a room is the room its certificate names: a room that
//! dials with another room's certificate lands nothing. And rooms keep every
//! event landed once through fifty SIGKILLs of the hub and of their agents at
//! random moments, and a crash of PostgreSQL.

mod common;
#[allow(dead_code)] // shared with the agent's dial-out tests; these use part of it
#[path = "../../tests/common/netns.rs"]
mod netns;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Db, HubConfig, Postgres, Room, free_addresses, http_get, wait_until};
use firmware_agent::proto;
use firmware_agent::store::outbox::NewEvent;
use netns::Namespace;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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

/// The province's certificates for links over mutual TLS: a CA for the rooms
/// and one for the hub, the hub's certificate for `hub.test`, and each room's
/// naming it as `urn:classroom:room:<school_code>:<room_id>`.
struct Certificates {
    dir: tempfile::TempDir,
    room_ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    room_ca_pem: PathBuf,
    hub: (PathBuf, PathBuf),
    hub_ca_pem: PathBuf,
}

fn certificate_authority(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// Signs a certificate for `names` with `issuer`; writes `stem.pem` and `stem.key` into `dir`.
fn issue(
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: &Path,
    stem: &str,
    names: Vec<rcgen::SanType>,
) -> (PathBuf, PathBuf) {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = names;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, stem);
    params.extended_key_usages = vec![ServerAuth, ClientAuth];
    let certificate = params.signed_by(&key, issuer).unwrap();
    let paths = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&paths.0, certificate.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    paths
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let (room_ca, hub_ca) = (
            certificate_authority("room CA"),
            certificate_authority("hub CA"),
        );
        let room_ca_pem = dir.path().join("room-ca.pem");
        let hub_ca_pem = dir.path().join("hub-ca.pem");
        std::fs::write(&room_ca_pem, room_ca.pem()).unwrap();
        std::fs::write(&hub_ca_pem, hub_ca.pem()).unwrap();
        let hub_name = rcgen::SanType::DnsName("hub.test".try_into().unwrap());
        let hub = issue(&hub_ca, dir.path(), "hub", vec![hub_name]);
        Certificates {
            dir,
            room_ca,
            room_ca_pem,
            hub,
            hub_ca_pem,
        }
    }

    /// The certificate and key the province issues the room `school_code/room_id`.
    fn room(&self, school_code: &str, room_id: &str) -> (PathBuf, PathBuf) {
        let uri = format!("urn:classroom:room:{school_code}:{room_id}");
        let names = vec![
            rcgen::SanType::DnsName(format!("{room_id}.local").try_into().unwrap()),
            rcgen::SanType::URI(uri.try_into().unwrap()),
        ];
        issue(
            &self.room_ca,
            self.dir.path(),
            &format!("{school_code}-{room_id}"),
            names,
        )
    }

    /// The `[hub]` keys of a room that dials `hub` with `certificate`.
    fn room_dialling(&self, certificate: &(PathBuf, PathBuf), hub: SocketAddr) -> String {
        format!(
            "tls_cert = {:?}\ntls_key = {:?}\nconnect = \"{hub}\"\nconnect_ca = {:?}\nconnect_name = \"hub.test\"\n",
            certificate.0, certificate.1, self.hub_ca_pem
        )
    }

    /// The hub's certificate, its key and the rooms' CA.
    fn hub_files(&self) -> [&Path; 3] {
        [
            self.hub.0.as_path(),
            self.hub.1.as_path(),
            self.room_ca_pem.as_path(),
        ]
    }
}

#[test]
fn a_room_dialling_with_another_rooms_certificate_lands_nothing_and_is_reported() {
    let postgres = Postgres::start();
    let db = postgres.client();
    let certificates = Certificates::new();
    let [dial_in] = free_addresses();
    let p301 = certificates.room("LC-THCS-05", "P301");
    let honest = Room::dialling_over_tls(
        "LC-THCS-05",
        "P301",
        &certificates.room_dialling(&p301, dial_in),
    );
    // Room P302's agent was given P301's certificate and key.
    let impostor = Room::dialling_over_tls(
        "LC-THCS-05",
        "P302",
        &certificates.room_dialling(&p301, dial_in),
    );
    let (mut honest_events, mut impostor_events) = (BTreeSet::new(), BTreeSet::new());
    append(&honest, 0, 300, &mut honest_events);
    append(&impostor, 0, 300, &mut impostor_events);
    let config = HubConfig::with_tls_dial_in(&postgres, dial_in, certificates.hub_files());
    let hub = config.start();
    let _agents = [honest.start(), impostor.start()];

    let refusal = hub.wait_for_log("a room's link is refused before landing anything", WAIT);
    assert!(
        refusal.contains("LC-THCS-05/P301")
            && refusal.contains("LC-THCS-05/P302")
            && refusal.contains("urn:classroom:room:<school_code>:<room_id>"),
        "the refusal names both rooms and how to fix it: {refusal}"
    );
    // The same certificate with its own room's status is landed over TLS.
    assert_every_event_once(&db, &honest, &honest_events);
    wait_until("the refusal counted in /metrics", WAIT, || {
        http_get(config.http, "/metrics").1.lines().any(|line| {
            line.starts_with("province_hub_dial_in_refused_total{")
                && line.contains("room=\"P302\"")
                && line.contains("certified=\"LC-THCS-05/P301\"")
        })
    });

    let impostor_rows = db.number(
        "SELECT count(*) FROM events WHERE school_code = $1 AND room_id = $2",
        &[&impostor.school_code, &impostor.room_id],
    );
    assert_eq!(
        impostor_rows, 0,
        "nothing landed as the room the status named"
    );
    let elsewhere = db.number(
        "SELECT count(*) FROM events WHERE id = ANY($1)",
        &[&impostor_events.iter().copied().collect::<Vec<_>>()],
    );
    assert_eq!(
        elsewhere, 0,
        "nothing landed as the certificate's room either"
    );
    assert_eq!(
        impostor.acked_seq(),
        0,
        "nothing acknowledged to the impostor"
    );
    assert!(
        room_health(config.http, &impostor).is_null(),
        "the refused room is not on the board"
    );
}

/// Kill cycles in the test below.
const KILL_CYCLES: usize = 50;
/// The longest deliberate wait before a kill.
const LONGEST_KILL_DELAY_MS: u64 = 700;

/// Lets `namespace` reach `address`, a host address outside its own link.
fn route_to(namespace: &Namespace, address: Ipv4Addr) {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &namespace.name, "ip", "route", "add"])
        .arg(format!("{address}/32"))
        .arg("via")
        .arg(namespace.hub_ip.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every event of the room's outbox, seq to id, read from its database.
fn outbox(room: &Room) -> BTreeMap<i64, Uuid> {
    let conn = rusqlite::Connection::open(room.database()).unwrap();
    let mut statement = conn
        .prepare("SELECT seq, id FROM outbox ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((row.get(0)?, Uuid::from_bytes(row.get::<_, [u8; 16]>(1)?)))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Waits until every event of the room's outbox (as it is now) is landed and
/// acknowledged, then asserts PostgreSQL holds each exactly once, and the
/// test's `committed` events among them.
fn assert_outbox_landed_once(db: &Db, room: &Room, committed: &BTreeSet<Uuid>) {
    let outbox = outbox(room);
    let newest = *outbox.keys().next_back().unwrap();
    let ids: BTreeSet<Uuid> = outbox.values().copied().collect();
    assert!(
        ids.is_superset(committed),
        "the outbox kept the test's events"
    );
    let count = || {
        db.number(
            "SELECT count(*) FROM events WHERE school_code = $1 AND room_id = $2 AND seq <= $3",
            &[&room.school_code, &room.room_id, &newest],
        )
    };
    wait_until("every event of the outbox landed", WAIT, || {
        count() >= outbox.len() as i64
    });
    wait_until("every event of the outbox acknowledged", WAIT, || {
        room.acked_seq() >= newest
    });
    let stored: Vec<(i64, Uuid)> = db
        .query(
            "SELECT seq, id FROM events WHERE school_code = $1 AND room_id = $2 AND seq <= $3 \
             ORDER BY seq, id",
            &[&room.school_code, &room.room_id, &newest],
        )
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        stored.len(),
        outbox.len(),
        "each event of {} once",
        room.room_id
    );
    assert!(
        stored.into_iter().eq(outbox),
        "PostgreSQL holds the room's events under their own seq"
    );
}

#[test]
fn dialling_rooms_land_every_event_once_through_fifty_random_kills_and_a_database_crash() {
    let began = Instant::now();
    let seed = std::env::var("DIAL_IN_KILL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("kill cycles with seed {seed} (DIAL_IN_KILL_SEED={seed} repeats them)");
    let mut rng = StdRng::seed_from_u64(seed);
    let postgres = Postgres::start();
    let certificates = Certificates::new();
    let namespaces = [Namespace::new(), Namespace::new()];
    let [spare] = free_addresses();
    // The hub listens on the first namespace's host side; the second reaches it over its own link.
    let dial_in = namespaces[0].hub_address(spare.port());
    route_to(&namespaces[1], namespaces[0].hub_ip);
    let rooms = [("LC-THCS-07", "P101"), ("LC-THCS-08", "P201")].map(|(school, id)| {
        let certificate = certificates.room(school, id);
        Room::dialling_over_tls(
            school,
            id,
            &certificates.room_dialling(&certificate, dial_in),
        )
    });
    let config = HubConfig::with_tls_dial_in(&postgres, dial_in, certificates.hub_files());
    let mut hub = config.start();
    let mut agent_starts = Vec::new();
    let mut start_agent = |i: usize| {
        let starting = Instant::now();
        let agent = rooms[i].start_in(&namespaces[i].name);
        agent_starts.push(starting.elapsed());
        agent
    };
    let mut agents = [start_agent(0), start_agent(1)];
    let mut committed = [BTreeSet::new(), BTreeSet::new()];
    let mut appended = [0; 2];
    let mut kills = [0; 3];
    for cycle in 0..KILL_CYCLES {
        for (i, room) in rooms.iter().enumerate() {
            let count = rng.random_range(1..400);
            append(room, appended[i], count, &mut committed[i]);
            appended[i] += count;
        }
        if cycle == KILL_CYCLES / 2 {
            postgres.crash();
            postgres.start_server();
        }
        // Deliberate: a random moment in whatever the link is doing.
        std::thread::sleep(Duration::from_millis(
            rng.random_range(0..LONGEST_KILL_DELAY_MS),
        ));
        let victim = rng.random_range(0..3);
        kills[victim] += 1;
        match victim {
            0 => {
                hub.kill();
                hub = config.start();
            }
            room => {
                agents[room - 1].kill();
                agents[room - 1] = start_agent(room - 1);
            }
        }
    }
    let killing = began.elapsed();

    let db = postgres.client();
    for (room, committed) in rooms.iter().zip(&committed) {
        assert_outbox_landed_once(&db, room, committed);
    }
    let mean_start = agent_starts.iter().sum::<Duration>() / agent_starts.len() as u32;
    eprintln!(
        "{KILL_CYCLES} cycles ({} hub kills, {} and {} agent kills, one PostgreSQL crash) in {killing:?}; \
         every event once after {:?}; {} agent starts, mean {mean_start:?}, longest {:?}",
        kills[0],
        kills[1],
        kills[2],
        began.elapsed(),
        agent_starts.len(),
        agent_starts.iter().max().unwrap()
    );
}
