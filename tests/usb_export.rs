//! Records on a USB stick for rooms with no network, end to end: the real
//! agent binary's `hub export`, `hub import-ack` and `hub import` against a
//! real file system mounted by the test (an ext4 image on a loop device, as a
//! stick is, or a small tmpfs for a full stick), and the province's side
//! through the `classroom-bundle` library the hub and the office tool use.
//! Mounting needs root, as on the machines that run these tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use classroom_bundle::keys::{self, ProvincePublic};
use classroom_bundle::{BundleError, ack, office, records};
use common::Room;
use firmware_agent::clock::{ManualClock, SystemClock};
use firmware_agent::proto::{self, Event, PutRosterRequest};
use firmware_agent::store::Store;
use firmware_agent::store::outbox::{NewEvent, read_after};
use prost::Message;

/// A file system mounted for one test, unmounted when dropped.
struct Stick {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl Stick {
    /// An ext4 image of `megabytes` labelled `label`, mounted through a loop device.
    fn image(label: &str, megabytes: u64) -> Stick {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("stick.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        succeed(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-L", label])
                .arg(&image),
        );
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        succeed(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mount),
        );
        Stick { _dir: dir, mount }
    }

    /// A tmpfs of `size` (such as `96k`): a stick that fills up.
    fn small(size: &str) -> Stick {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        succeed(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(&mount),
        );
        Stick { _dir: dir, mount }
    }

    fn path(&self) -> &Path {
        &self.mount
    }

    /// The names of the files on the stick, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.mount)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "lost+found")
            .collect();
        names.sort();
        names
    }

    /// The one records bundle on the stick.
    fn bundle(&self) -> PathBuf {
        let bundles: Vec<String> = self
            .files()
            .into_iter()
            .filter(|name| name.ends_with(".bundle"))
            .collect();
        assert_eq!(bundles.len(), 1, "one bundle: {:?}", self.files());
        self.mount.join(&bundles[0])
    }
}

impl Drop for Stick {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn succeed(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed (these tests mount file systems and must run as root): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The province's keys, made in a directory of their own.
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

    fn identity(&self) -> age::x25519::Identity {
        keys::load_identity(&self.dir.path().join("province.age")).unwrap()
    }

    fn signing(&self) -> ed25519_dalek::SigningKey {
        keys::load_signing_key(&self.dir.path().join("province-signing.key")).unwrap()
    }

    /// The `[hub]` keys naming this province, for a room's config.
    fn hub_keys(&self) -> String {
        format!(
            "plaintext = true\nprovince_recipient = \"{}\"\nprovince_signing_key = \"{}\"\n",
            self.public.recipient, self.public.verifying_key
        )
    }
}

fn room_for(province: &Province) -> Room {
    Room::with_hub(&province.hub_keys(), "")
}

/// Appends `n` attendance marks recorded at `at`, returning their (seq, id).
fn record_marks(room: &Room, at: jiff::Timestamp, n: usize) -> Vec<(i64, Vec<u8>)> {
    std::fs::create_dir_all(room.data_dir()).unwrap();
    let store = Store::open(&room.database(), Arc::new(ManualClock::new(at))).unwrap();
    let marks = (0..n)
        .map(|i| {
            NewEvent::new(
                at,
                proto::AttendanceMark {
                    session_id: format!("tiet-{}", i / 40),
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
        .map(|event| (event.seq, event.id.as_bytes().to_vec()))
        .collect()
}

/// The room's database as a second process sees it.
fn store(room: &Room) -> Store {
    Store::open(&room.database(), Arc::new(SystemClock)).unwrap()
}

fn outbox_rows(room: &Room) -> usize {
    read_after(&store(room).reader().unwrap(), 0, 1_000_000)
        .unwrap()
        .len()
}

fn hub(room: &Room, args: &[&str]) -> Output {
    let mut all = vec!["hub"];
    all.extend_from_slice(args);
    room.command(&all)
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn export(room: &Room, stick: &Stick) -> Output {
    hub(room, &["export", "--to", stick.path().to_str().unwrap()])
}

/// Each event of a bundle as (seq, id), decoded as the hub decodes them.
fn seqs_and_ids(opened: &records::Records) -> Vec<(i64, Vec<u8>)> {
    opened
        .events
        .iter()
        .map(|(seq, bytes)| {
            let event = Event::decode(bytes.as_slice()).unwrap();
            assert_eq!(event.seq, *seq, "the item's number is the event's seq");
            (event.seq, event.id)
        })
        .collect()
}

#[test]
fn records_go_out_on_a_stick_and_the_provinces_acknowledgement_brings_the_room_to_prune_them() {
    let province = Province::new();
    let room = room_for(&province);
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40);
    let recorded = record_marks(&room, long_ago, 500);
    let stick = Stick::image("LOPHOC-XUAT", 16);

    let output = export(&room, &stick);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("exported 500 records"),
        "{}",
        text(&output)
    );
    let identity = store(&room).outbox_identity();
    let first = stick.bundle();
    assert_eq!(
        first.file_name().unwrap().to_string_lossy(),
        format!(
            "TEST-01.P101.{identity}.{}-{}.bundle",
            recorded[0].0, recorded[499].0
        )
    );
    let opened = records::open(&first, &province.identity(), None).unwrap();
    assert_eq!(
        (
            opened.header.room.school_code.as_str(),
            opened.header.room.room_id.as_str()
        ),
        ("TEST-01", "P101")
    );
    assert_eq!(opened.header.outbox_identity, identity);
    assert_eq!(
        seqs_and_ids(&opened),
        recorded,
        "every record, with its id, in order"
    );
    let event = Event::decode(opened.events[0].1.as_slice()).unwrap();
    assert!(
        matches!(
            event.payload,
            Some(proto::event::Payload::AttendanceMark(_))
        ),
        "the same typed Event a Pull sends: {event:?}"
    );

    // Before the acknowledgement comes back, the room exports everything again:
    // the same events with the same ids, and the newer ones.
    let newer = record_marks(&room, jiff::Timestamp::now(), 10);
    std::fs::rename(&first, stick.path().join("first.kept")).unwrap();
    let output = export(&room, &stick);
    assert!(output.status.success(), "{}", text(&output));
    let again = records::open(&stick.bundle(), &province.identity(), None).unwrap();
    let reopened =
        records::open(&stick.path().join("first.kept"), &province.identity(), None).unwrap();
    assert_eq!(
        seqs_and_ids(&reopened),
        recorded,
        "opened twice, the same ids"
    );
    let mut everything = recorded.clone();
    everything.extend(newer.clone());
    assert_eq!(seqs_and_ids(&again), everything);

    // The province acknowledges the first bundle; the room prunes what is past its retention.
    let ack_path = ack::write(
        stick.path(),
        &ack::Ack {
            room: opened.header.room.clone(),
            outbox_identity: identity,
            acked_seq: opened.summary.last_seq,
            created_at: jiff::Timestamp::now().to_string(),
        },
        &province.signing(),
    )
    .unwrap();
    assert_eq!(outbox_rows(&room), 510);
    let output = hub(&room, &["import-ack", ack_path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("pruned 500 acknowledged record(s)"),
        "{}",
        text(&output)
    );
    let status = store(&room).outbox_status().unwrap();
    assert_eq!((status.acked_seq, status.backlog), (recorded[499].0, 10));
    assert_eq!(
        outbox_rows(&room),
        10,
        "the 500 acknowledged are pruned, the newer kept"
    );

    // The same acknowledgement again changes nothing; the next export carries only the newer.
    let output = hub(&room, &["import-ack", ack_path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    std::fs::remove_file(stick.bundle()).unwrap();
    let output = export(&room, &stick);
    assert!(output.status.success(), "{}", text(&output));
    let rest = records::open(&stick.bundle(), &province.identity(), None).unwrap();
    assert_eq!(seqs_and_ids(&rest), newer);
}

#[test]
fn a_stick_pulled_mid_write_leaves_nothing_that_opens_and_the_next_export_is_whole() {
    let province = Province::new();
    let room = room_for(&province);
    let recorded = record_marks(&room, jiff::Timestamp::now(), 3_000);
    let stick = Stick::image("LOPHOC-XUAT", 16);
    let output = export(&room, &stick);
    assert!(output.status.success(), "{}", text(&output));
    let bundle = stick.bundle();
    let whole = std::fs::read(&bundle).unwrap();

    // What a pulled stick can leave: the bundle's first bytes, under its name
    // (had it been renamed early) or as the partial file the export writes.
    for len in [
        0,
        10,
        100,
        1_000,
        whole.len() / 3,
        whole.len() / 2,
        whole.len() - 17,
        whole.len() - 1,
    ] {
        std::fs::write(&bundle, &whole[..len]).unwrap();
        let err = records::open(&bundle, &province.identity(), None).unwrap_err();
        assert!(
            err.is_refused_input(),
            "cut at {len} of {}: {err}",
            whole.len()
        );
        if len > 200 {
            assert!(
                matches!(err, BundleError::Damaged { .. }),
                "cut at {len}: {err}"
            );
            assert!(err.to_string().contains("export again"), "{err}");
        }
    }
    std::fs::remove_file(&bundle).unwrap();
    let partial = stick.path().join(format!(
        ".{}.partial",
        bundle.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&partial, &whole[..whole.len() / 2]).unwrap();

    let output = export(&room, &stick);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        stick.files().len(),
        1,
        "the partial file is gone, one whole bundle: {:?}",
        stick.files()
    );
    let opened = records::open(&stick.bundle(), &province.identity(), None).unwrap();
    assert_eq!(seqs_and_ids(&opened), recorded);
}

#[test]
fn a_full_stick_says_so_leaves_nothing_on_it_and_loses_nothing() {
    let province = Province::new();
    let room = room_for(&province);
    let recorded = record_marks(&room, jiff::Timestamp::now(), 4_000);
    let full = Stick::small("96k");
    let output = export(&room, &full);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the stick is full"), "{}", text(&output));
    assert!(stderr.contains("nothing was lost"), "{}", text(&output));
    assert!(
        full.files().is_empty(),
        "no bundle, no partial: {:?}",
        full.files()
    );
    let status = store(&room).outbox_status().unwrap();
    assert_eq!((status.acked_seq, status.backlog), (0, 4_000));
    let outcome = firmware_agent::hub::usb::last(&room.data_dir()).unwrap();
    assert!(!outcome.ok);
    assert!(outcome.message.contains("USB đã đầy"), "{outcome:?}");

    let roomy = Stick::image("LOPHOC-XUAT", 16);
    let output = export(&room, &roomy);
    assert!(output.status.success(), "{}", text(&output));
    let opened = records::open(&roomy.bundle(), &province.identity(), None).unwrap();
    assert_eq!(seqs_and_ids(&opened), recorded);
}

#[test]
fn another_provinces_key_a_forged_ack_and_an_ack_beyond_the_outbox_are_refused() {
    let province = Province::new();
    let stranger = Province::new();
    let room = room_for(&province);
    let recorded = record_marks(&room, jiff::Timestamp::now(), 20);
    let stick = Stick::image("LOPHOC-XUAT", 16);
    let output = export(&room, &stick);
    assert!(output.status.success(), "{}", text(&output));

    let err = records::open(&stick.bundle(), &stranger.identity(), None).unwrap_err();
    assert!(matches!(err, BundleError::OtherRecipient { .. }), "{err}");
    assert!(err.to_string().contains("another province's key"), "{err}");

    let identity = store(&room).outbox_identity();
    let last = recorded.last().unwrap().0;
    let ack_of = |seq: i64, school: &str| ack::Ack {
        room: classroom_bundle::Room {
            school_code: school.into(),
            room_id: "P101".into(),
        },
        outbox_identity: identity,
        acked_seq: seq,
        created_at: jiff::Timestamp::now().to_string(),
    };
    let refused = |path: &Path, needle: &str| {
        let output = hub(&room, &["import-ack", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(needle),
            "{}",
            text(&output)
        );
        assert_eq!(
            store(&room).outbox_status().unwrap().acked_seq,
            0,
            "nothing acknowledged"
        );
    };
    let forged = tempfile::tempdir().unwrap();
    let path = ack::write(forged.path(), &ack_of(last, "TEST-01"), &stranger.signing()).unwrap();
    refused(&path, "the signature does not match");
    let path = ack::write(
        stick.path(),
        &ack_of(last + 1, "TEST-01"),
        &province.signing(),
    )
    .unwrap();
    refused(&path, &format!("seq {} was never sent", last + 1));
    let path = ack::write(stick.path(), &ack_of(last, "TEST-02"), &province.signing()).unwrap();
    refused(&path, "this file is for TEST-02/P101");
    assert_eq!(outbox_rows(&room), 20);
}

/// The room's age recipient, as `hub keys` prints it.
fn room_recipient(room: &Room) -> String {
    let output = hub(room, &["keys"]);
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("room_recipient: "))
        .unwrap()
        .to_owned()
}

fn pupil(id: &str, name: &str) -> proto::Pupil {
    proto::Pupil {
        personal_id: id.into(),
        full_name: name.into(),
        class_name: "6A1".into(),
        ..Default::default()
    }
}

#[test]
fn an_office_roster_bundle_is_applied_as_a_push_and_a_tampered_or_stale_one_changes_nothing() {
    let province = Province::new();
    let room = room_for(&province);
    let recipient = keys::parse_recipient(&room_recipient(&room)).unwrap();
    let stick = Stick::image("LOPHOC-NHAP", 16);
    let work = tempfile::tempdir().unwrap();
    let pack = |version: u64, pupils: Vec<proto::Pupil>| {
        let request = PutRosterRequest {
            version,
            pupils,
            teachers: vec![],
            timetable_toml: "[schedule]\ngrace_seconds = 90\n".into(),
        };
        let payload = work.path().join(format!("roster-{version}.pb"));
        std::fs::write(&payload, request.encode_to_vec()).unwrap();
        let packed = office::pack(
            stick.path(),
            &classroom_bundle::Room {
                school_code: "TEST-01".into(),
                room_id: "P101".into(),
            },
            office::Payload::Roster,
            &format!("v{version}"),
            &payload,
            &recipient,
            &province.signing(),
        )
        .unwrap();
        packed.to_str().unwrap().to_owned()
    };
    let first = pack(
        1,
        vec![
            pupil("010206001234", "Nguyễn Thị Hoa"),
            pupil("010206001235", "Lò Văn Páo"),
        ],
    );
    let output = hub(&room, &["import", &first]);
    assert!(output.status.success(), "{}", text(&output));
    let db = store(&room);
    assert_eq!(db.roster_version().unwrap(), 1);
    assert_eq!(db.pupils_of_class("6A1").unwrap().len(), 2);
    assert_eq!(
        db.pushed_timetable().unwrap().unwrap().toml,
        "[schedule]\ngrace_seconds = 90\n"
    );

    let output = hub(&room, &["import", &first]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not newer than version 1"),
        "{}",
        text(&output)
    );

    let second = pack(2, vec![pupil("010206001236", "Giàng A Sử")]);
    let mut bytes = std::fs::read(&second).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&second, &bytes).unwrap();
    let output = hub(&room, &["import", &second]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("nothing in it was used"),
        "{}",
        text(&output)
    );
    let db = store(&room);
    assert_eq!(db.roster_version().unwrap(), 1);
    assert_eq!(
        db.pupils_of_class("6A1").unwrap().len(),
        2,
        "the tampered roster changed nothing"
    );

    let stranger = Province::new();
    let bad_rows = PutRosterRequest {
        version: 3,
        pupils: vec![pupil("0102", "Lò Văn Páo")],
        ..Default::default()
    };
    let payload = work.path().join("bad.pb");
    std::fs::write(&payload, bad_rows.encode_to_vec()).unwrap();
    let room_name = classroom_bundle::Room {
        school_code: "TEST-01".into(),
        room_id: "P101".into(),
    };
    let unsigned = office::pack(
        work.path(),
        &room_name,
        office::Payload::Roster,
        "stranger",
        &payload,
        &recipient,
        &stranger.signing(),
    )
    .unwrap();
    let output = hub(&room, &["import", unsigned.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the signature does not match"));
    let bad = office::pack(
        work.path(),
        &room_name,
        office::Payload::Roster,
        "bad",
        &payload,
        &recipient,
        &province.signing(),
    )
    .unwrap();
    let output = hub(&room, &["import", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pupils[0].personal_id"),
        "checked as a push is: {}",
        text(&output)
    );
    assert_eq!(store(&room).roster_version().unwrap(), 1);
}

#[test]
fn an_office_content_bundle_reaches_the_tablets_store() {
    let province = Province::new();
    let room = room_for(&province);
    let recipient = keys::parse_recipient(&room_recipient(&room)).unwrap();
    let stick = Stick::image("LOPHOC-NHAP", 16);
    let lesson = stick.path().join("bai-1.pdf.src");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&lesson, &content).unwrap();
    let packed = office::pack(
        stick.path(),
        &classroom_bundle::Room {
            school_code: "TEST-01".into(),
            room_id: "P101".into(),
        },
        office::Payload::Content,
        "bai-1.pdf",
        &lesson,
        &recipient,
        &province.signing(),
    )
    .unwrap();
    let output = hub(&room, &["import", packed.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read(room.data_dir().join("content/bai-1.pdf")).unwrap(),
        content
    );
}

#[test]
fn the_panel_shows_how_the_last_stick_went_in_vietnamese() {
    let province = Province::new();
    let room = room_for(&province);
    let agent = room.start();
    record_marks(&room, jiff::Timestamp::now(), 30);
    let stick = Stick::image("LOPHOC-XUAT", 16);
    let output = export(&room, &stick);
    assert!(output.status.success(), "{}", text(&output));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = common::http_get(room.http, "/healthz");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        let usb = &health["subsystems"]["usb_stick"];
        if usb["state"] == "ok" {
            let detail = usb["detail"].as_str().unwrap();
            assert!(detail.contains("Đã chép 30 bản ghi ra USB"), "{detail}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "healthz never showed the stick: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);
}
