//! Records carried on a USB stick, province side, end to end: the real agent
//! binary exports onto a tmpfs the test mounts (a stick), the hub binary's
//! `import-bundle` lands the bundle in a PostgreSQL server of the test's own
//! and writes the acknowledgement, and the agent's `hub import-ack` takes it
//! back. Mounting needs root, as on the machines that run these tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use classroom_bundle::keys::{self, ProvincePublic};
use common::{HubConfig, Postgres, Room, hub_binary, wait_until};
use firmware_agent::clock::ManualClock;
use firmware_agent::proto;
use firmware_agent::store::Store;
use firmware_agent::store::outbox::NewEvent;
use uuid::Uuid;

const SCHOOL: &str = "LC-THCS-07";
const ROOM: &str = "P102";

/// A tmpfs mounted for one test, unmounted when dropped.
struct Stick {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl Stick {
    fn mount() -> Stick {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"])
            .arg(&mount)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Stick { _dir: dir, mount }
    }

    fn path(&self) -> &Path {
        &self.mount
    }

    /// The files on the stick whose names end with `ending`, sorted.
    fn files(&self, ending: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.mount)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(ending))
            .collect();
        files.sort();
        files
    }

    /// The one records bundle on the stick.
    fn bundle(&self) -> PathBuf {
        let bundles = self.files(".bundle");
        assert_eq!(bundles.len(), 1, "{bundles:?}");
        bundles[0].clone()
    }
}

impl Drop for Stick {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// A province's keys, as `classroom-bundle keygen` makes them.
struct Province {
    dir: tempfile::TempDir,
    public: ProvincePublic,
}

impl Province {
    fn new() -> Province {
        let dir = tempfile::tempdir().unwrap();
        let public = keys::generate_province(dir.path()).unwrap();
        Province { dir, public }
    }

    /// A room whose config names this province's keys.
    fn room(&self, school_code: &str, room_id: &str) -> Room {
        Room::with_hub_keys(
            school_code,
            room_id,
            &format!(
                "province_recipient = \"{}\"\nprovince_signing_key = \"{}\"\n",
                self.public.recipient, self.public.verifying_key
            ),
        )
    }

    /// The hub's `[usb]` section naming these keys.
    fn usb_section(&self, unknown_rooms: &str) -> String {
        format!(
            "\n[usb]\nidentity = \"{}\"\nsigning_key = \"{}\"\nunknown_rooms = \"{unknown_rooms}\"\n",
            self.dir.path().join("province.age").display(),
            self.dir.path().join("province-signing.key").display()
        )
    }
}

/// A hub config pulling `rooms`, with this province's `[usb]` keys.
fn hub_config(
    postgres: &Postgres,
    province: &Province,
    rooms: &[&Room],
    unknown: &str,
) -> HubConfig {
    let config = HubConfig::new(postgres, rooms);
    let mut text = std::fs::read_to_string(&config.path).unwrap();
    text.push_str(&province.usb_section(unknown));
    std::fs::write(&config.path, text).unwrap();
    config
}

/// Appends `n` attendance marks recorded at `at` through the room's store; their ids.
fn record_marks(room: &Room, at: jiff::Timestamp, n: usize) -> Vec<Uuid> {
    std::fs::create_dir_all(room.data_dir()).unwrap();
    let store = Store::open(&room.database(), Arc::new(ManualClock::new(at))).unwrap();
    let marks = (0..n)
        .map(|i| {
            NewEvent::new(
                at,
                proto::AttendanceMark {
                    session_id: format!("tiet-{}", i / 40),
                    lesson_id: "2026-11-02/morning/1".into(),
                    personal_id: format!("0102060{:05}", i % 40),
                    status: proto::MarkStatus::Present as i32,
                    source: proto::MarkSource::Face as i32,
                    best_similarity: 0.8,
                    ..Default::default()
                },
            )
        })
        .collect();
    store
        .append_batch(marks)
        .unwrap()
        .into_iter()
        .map(|event| event.id)
        .collect()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn export(room: &Room, stick: &Stick) {
    let output = room.command(&["hub", "export", "--to", stick.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
}

fn import(config: &HubConfig, bundles: &[&Path], ack_to: Option<&Path>) -> Output {
    let mut command = Command::new(hub_binary());
    command
        .args(["import-bundle", "--config"])
        .arg(&config.path);
    if let Some(dir) = ack_to {
        command.arg("--ack-to").arg(dir);
    }
    command.args(bundles).output().unwrap()
}

fn stored_ids(db: &common::Db) -> Vec<Uuid> {
    db.query("SELECT id FROM events ORDER BY seq", &[])
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn cursor(db: &common::Db) -> i64 {
    db.number(
        "SELECT cursor FROM outboxes WHERE school_code = $1 AND room_id = $2",
        &[&SCHOOL, &ROOM],
    )
}

#[test]
fn a_stick_lands_every_event_once_and_the_acknowledgement_lets_the_room_prune() {
    let postgres = Postgres::start();
    let province = Province::new();
    let room = province.room(SCHOOL, ROOM);
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40);
    let recorded = record_marks(&room, long_ago, 300);
    let stick = Stick::mount();
    export(&room, &stick);
    let bundle = stick.bundle();
    // The room is not listed: a hub that registers unknown rooms takes it.
    let config = hub_config(&postgres, &province, &[], "register");

    let output = import(&config, &[&bundle], Some(stick.path()));
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("300 new event(s) of 300") && stdout.contains("room key pinned"),
        "{}",
        text(&output)
    );
    let db = postgres.client();
    assert_eq!(stored_ids(&db), recorded, "every event once, in seq order");
    assert_eq!(
        db.number("SELECT count(*) FROM attendance_marks", &[]),
        300,
        "the analyst's table is filled"
    );
    assert_eq!(
        db.number(
            "SELECT count(DISTINCT personal_id) FROM attendance_marks WHERE school_code = $1 AND room_id = $2",
            &[&SCHOOL, &ROOM]
        ),
        40
    );
    assert_eq!(cursor(&db), 300);
    let keys = room.command(&["hub", "keys"]);
    let pinned: String = db.query("SELECT signing_key FROM room_keys", &[])[0].get(0);
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains(&format!("room_signing_key: {pinned}")),
        "the room's own key is pinned: {}",
        text(&keys)
    );

    // Imported again, the bundle adds nothing and is acknowledged the same.
    let output = import(&config, &[&bundle], Some(stick.path()));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("0 new event(s) of 300"),
        "{}",
        text(&output)
    );
    assert_eq!(db.events(), 300);
    assert_eq!(db.number("SELECT count(*) FROM attendance_marks", &[]), 300);

    let acks = stick.files(".ack");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(
        acks[0].to_string_lossy().ends_with(".ack-300.ack"),
        "{acks:?}"
    );
    let output = room.command(&["hub", "import-ack", acks[0].to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("pruned 300 acknowledged record(s)"),
        "{}",
        text(&output)
    );
    assert_eq!(room.acked_seq(), 300);
}

#[test]
fn a_bundle_whose_events_were_also_pulled_adds_nothing() {
    let postgres = Postgres::start();
    let province = Province::new();
    let room = province.room(SCHOOL, ROOM);
    let recorded = record_marks(&room, jiff::Timestamp::now(), 200);
    let stick = Stick::mount();
    export(&room, &stick);
    let bundle = stick.bundle();

    // The hub reaches the room after all and pulls everything.
    let config = hub_config(&postgres, &province, &[&room], "refuse");
    let agent = room.start();
    let mut hub = config.start();
    let db = postgres.client();
    wait_until(
        "the pull lands every event",
        Duration::from_secs(60),
        || db.events() == 200 && cursor(&db) == 200,
    );
    hub.kill();
    // Newer records, then the stick comes in with the older bundle: nothing is
    // added and the cursor stays where the pull left it.
    let newer = record_marks(&room, jiff::Timestamp::now(), 5);
    let output = import(&config, &[&bundle], Some(stick.path()));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("0 new event(s) of 200"),
        "{}",
        text(&output)
    );
    assert_eq!(stored_ids(&db), recorded);
    assert_eq!(cursor(&db), 200);
    // A bundle that overlaps the pulled events lands only the newer ones.
    drop(agent);
    for old in stick.files("") {
        std::fs::remove_file(old).unwrap();
    }
    let output = room.command(&["hub", "export", "--to", stick.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let output = import(&config, &[&stick.bundle()], Some(stick.path()));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("5 new event(s) of"),
        "{}",
        text(&output)
    );
    let mut everything = recorded;
    everything.extend(newer);
    assert_eq!(stored_ids(&db), everything);
    assert_eq!(cursor(&db), 205);
}

#[test]
fn truncated_foreign_resigned_and_unknown_bundles_are_refused_with_nothing_landed() {
    let postgres = Postgres::start();
    let province = Province::new();
    let room = province.room(SCHOOL, ROOM);
    record_marks(&room, jiff::Timestamp::now(), 2_000);
    let stick = Stick::mount();
    export(&room, &stick);
    let whole = stick.bundle();
    let config = hub_config(&postgres, &province, &[], "refuse");
    let db = postgres.client();
    let refused = |bundle: &Path, config: &HubConfig, needle: &str| {
        let output = import(config, &[bundle], Some(stick.path()));
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(needle) && stderr.contains(&bundle.display().to_string()),
            "{}",
            text(&output)
        );
        assert!(stick.files(".ack").is_empty(), "no acknowledgement");
    };
    let nothing_landed = || {
        assert_eq!(db.events(), 0);
        assert_eq!(db.number("SELECT count(*) FROM room_keys", &[]), 0);
        assert_eq!(db.number("SELECT count(*) FROM outboxes", &[]), 0);
    };

    // A stick pulled mid-copy: the bundle cut short.
    let bytes = std::fs::read(&whole).unwrap();
    let cut = stick.path().join("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    refused(&cut, &config, "truncated or damaged");
    nothing_landed();

    // A room of another province: encrypted to another key.
    let other = Province::new();
    let stranger = other.room(SCHOOL, "P999");
    record_marks(&stranger, jiff::Timestamp::now(), 3);
    let elsewhere = Stick::mount();
    export(&stranger, &elsewhere);
    refused(&elsewhere.bundle(), &config, "another province's key");
    nothing_landed();

    // A room the hub never heard of, with unknown_rooms = "refuse".
    refused(&whole, &config, "never heard of");
    nothing_landed();

    // Registered, the room is pinned; another machine claiming to be that
    // room (its own key) is refused.
    let registering = hub_config(&postgres, &province, &[], "register");
    let output = import(&registering, &[&whole], None);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(db.events(), 2_000);
    let impostor = province.room(SCHOOL, ROOM);
    record_marks(&impostor, jiff::Timestamp::now(), 4);
    let third = Stick::mount();
    export(&impostor, &third);
    refused(&third.bundle(), &registering, "is pinned to");
    assert_eq!(db.events(), 2_000, "nothing of the impostor's landed");
}

/// `systemd/province-hub-usb-stick --mounted`, as the stick's unit runs it
/// once the stick is mounted, with the hub binary under test on the PATH.
fn plug_into_hub(config: &HubConfig, stick: &Stick) -> Output {
    let handler = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/province-hub-usb-stick");
    let hub_dir = hub_binary().parent().unwrap().to_owned();
    let path = format!("{}:{}", hub_dir.display(), std::env::var("PATH").unwrap());
    Command::new(handler)
        .arg("--mounted")
        .arg(stick.path())
        .env("PROVINCE_HUB_CONFIG", &config.path)
        .env("PATH", path)
        .output()
        .unwrap()
}

/// The one file on the stick whose name starts with `prefix` and ends with `ending`.
fn file_of(stick: &Stick, prefix: &str, ending: &str) -> PathBuf {
    let files: Vec<PathBuf> = stick
        .files(ending)
        .into_iter()
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .collect();
    assert_eq!(files.len(), 1, "{prefix}*{ending}: {files:?}");
    files[0].clone()
}

#[test]
fn a_stick_plugged_into_the_hub_lands_each_rooms_bundle_and_carries_back_each_acknowledgement() {
    let postgres = Postgres::start();
    let province = Province::new();
    let now = jiff::Timestamp::now();
    let rooms = [
        (province.room(SCHOOL, "P201"), 120),
        (province.room(SCHOOL, "P202"), 80),
        (province.room(SCHOOL, "P203"), 10),
    ];
    let stick = Stick::mount();
    for (room, marks) in &rooms {
        record_marks(room, now, *marks);
        export(room, &stick);
    }
    // The third room's bundle was cut short when its stick was pulled.
    let damaged = file_of(&stick, &format!("{SCHOOL}.P203."), ".bundle");
    let length = std::fs::metadata(&damaged).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    let config = hub_config(&postgres, &province, &[], "register");

    let output = plug_into_hub(&config, &stick);
    assert_eq!(
        output.status.code(),
        Some(2),
        "one bundle refused: {}",
        text(&output)
    );
    let db = postgres.client();
    assert_eq!(
        db.events(),
        200,
        "both whole bundles landed, nothing of the cut one"
    );
    for (room, marks) in &rooms[..2] {
        let prefix = format!("{SCHOOL}.{}.", room.room_id);
        file_of(&stick, &prefix, ".bundle.imported");
        let ack = file_of(&stick, &prefix, ".ack");
        let output = room.command(&["hub", "import-ack", ack.to_str().unwrap()]);
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(
            room.acked_seq(),
            *marks as i64,
            "{} prunes what landed",
            room.room_id
        );
    }
    assert!(
        damaged.exists(),
        "the refused bundle keeps its name, to be exported again"
    );
    assert!(
        stick.files(".ack").len() == 2,
        "no acknowledgement for the refused bundle: {:?}",
        stick.files(".ack")
    );

    // The room exports again onto the same stick; plugged in again, only the
    // new bundle lands and nothing lands twice.
    std::fs::remove_file(&damaged).unwrap();
    export(&rooms[2].0, &stick);
    let output = plug_into_hub(&config, &stick);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(db.events(), 210);
    assert_eq!(
        db.number("SELECT count(DISTINCT id) FROM events", &[]),
        210,
        "every event once"
    );
    let output = plug_into_hub(&config, &stick);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("no records bundle"),
        "{}",
        text(&output)
    );
}

#[test]
fn check_config_locates_a_missing_province_key() {
    let postgres = Postgres::start();
    let province = Province::new();
    let config = hub_config(&postgres, &province, &[], "register");
    let source = std::fs::read_to_string(&config.path).unwrap();
    std::fs::write(
        &config.path,
        source.replace("province-signing.key", "nowhere.key"),
    )
    .unwrap();
    let output = Command::new(hub_binary())
        .arg("check-config")
        .arg(&config.path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let line = source
        .lines()
        .position(|line| line.starts_with("signing_key"))
        .unwrap()
        + 1;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:{line}:15: usb.signing_key",
            config.path.display()
        )),
        "{}",
        text(&output)
    );
}
