//! The `classroom-bundle` tool as the district office runs it: make the
//! province's keys, open a room's bundle (pinning the room's key on first
//! sight), write the acknowledgement, pack an office bundle.

use std::path::Path;
use std::process::{Command, Output};

use classroom_bundle::keys::RoomKeys;
use classroom_bundle::{Room, ack, keys, office, records};

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_classroom-bundle"))
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn room() -> Room {
    Room {
        school_code: "LC-0101".into(),
        room_id: "6A1".into(),
    }
}

/// A bundle of `seqs` from a room whose keys are in `keys_file`, to `recipient`.
fn bundle(
    stick: &Path,
    keys_file: &Path,
    recipient: &str,
    seqs: std::ops::RangeInclusive<i64>,
) -> String {
    let keys = RoomKeys::load_or_create(keys_file).unwrap();
    let mut writer = records::Writer::create(
        stick,
        &room(),
        uuid::Uuid::from_u128(42),
        jiff::Timestamp::now(),
        &keys,
        &keys::parse_recipient(recipient).unwrap(),
    )
    .unwrap();
    for seq in seqs {
        writer.event(seq, &seq.to_be_bytes()).unwrap();
    }
    writer.finish().unwrap().path.to_str().unwrap().to_owned()
}

#[test]
fn the_office_opens_a_rooms_bundle_pins_its_key_acknowledges_it_and_packs_a_roster() {
    let dir = tempfile::tempdir().unwrap();
    let province = dir.path().join("province");
    let output = tool(&["keygen", "--out", province.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    let recipient = printed
        .lines()
        .find_map(|line| line.strip_prefix("province_recipient = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let verifying = printed
        .lines()
        .find_map(|line| line.strip_prefix("province_signing_key = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let identity = province.join("province.age");
    let signing = province.join("province-signing.key");
    let pins = dir.path().join("pins");
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).unwrap();

    let first = bundle(&stick, &dir.path().join("room-keys"), &recipient, 1..=3);
    let output = tool(&[
        "open",
        &first,
        "--identity",
        identity.to_str().unwrap(),
        "--pins",
        pins.to_str().unwrap(),
        "--events",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "the header, then three events");
    assert_eq!(lines[0]["summary"]["last_seq"], 3);
    assert_eq!(lines[0]["header"]["school_code"], "LC-0101");
    assert_eq!(lines[3]["seq"], 3);
    assert!(String::from_utf8_lossy(&output.stderr).contains("is now pinned"));

    // Another machine claiming the same room is refused once the room is pinned.
    std::fs::remove_file(&first).unwrap();
    let impostor = bundle(&stick, &dir.path().join("other-keys"), &recipient, 1..=3);
    let output = tool(&[
        "open",
        &impostor,
        "--identity",
        identity.to_str().unwrap(),
        "--pins",
        pins.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is pinned to"));
    std::fs::remove_file(&impostor).unwrap();

    let second = bundle(&stick, &dir.path().join("room-keys"), &recipient, 1..=9);
    let output = tool(&[
        "ack",
        &second,
        "--identity",
        identity.to_str().unwrap(),
        "--pins",
        pins.to_str().unwrap(),
        "--signing-key",
        signing.to_str().unwrap(),
        "--out",
        stick.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let ack_path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let acknowledged = ack::open(
        Path::new(&ack_path),
        &keys::parse_verifying_key(&verifying).unwrap(),
    )
    .unwrap();
    assert_eq!((acknowledged.room, acknowledged.acked_seq), (room(), 9));
    assert_eq!(acknowledged.outbox_identity, uuid::Uuid::from_u128(42));

    let room_keys = RoomKeys::load_or_create(&dir.path().join("room-keys")).unwrap();
    let payload = dir.path().join("roster.pb");
    std::fs::write(&payload, b"roster bytes").unwrap();
    let output = tool(&[
        "pack",
        "--payload",
        "roster",
        "--file",
        payload.to_str().unwrap(),
        "--school",
        "LC-0101",
        "--room",
        "6A1",
        "--room-recipient",
        &room_keys.recipient_text(),
        "--signing-key",
        signing.to_str().unwrap(),
        "--out",
        stick.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let packed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let opened = office::open(
        Path::new(&packed),
        &room_keys.identity,
        &keys::parse_verifying_key(&verifying).unwrap(),
    )
    .unwrap();
    assert_eq!(opened.payload_bytes(1024).unwrap(), b"roster bytes");

    let output = tool(&["open", &packed, "--identity", identity.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not for this key"),
        "{}",
        text(&output)
    );
}
