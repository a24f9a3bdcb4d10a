//! A busy week offline carried by USB, province side (run with `cargo bench
//! -p province-hub --bench usb_import`): how long `province-hub import-bundle`
//! takes to land the week's bundle in PostgreSQL and write its
//! acknowledgement, beside its baseline in the same run: opening the same
//! bundle in process (decrypt, verify, decode every event), which any import
//! must do before it stores anything. The difference is what landing costs.
//!
//! The week is the one the agent's `usb_week` bench records (its
//! `benches/common/week.rs`, included here): 40 pupils, 10 periods a day,
//! 6 school days; a roll-call mark per pupil and period, 8 answers per pupil
//! and period, 10 tablet commands per period, 24 bells and lights a day:
//! 22 344 events. The room is the real agent binary's `hub export`; each import
//! run lands into emptied tables of a PostgreSQL server of the bench's own.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../firmware-agent/benches/common/week.rs"]
mod week;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{HubConfig, Postgres, Room, hub_binary};
use firmware_agent::proto::Event;
use prost::Message;

const RUNS: usize = 5;

fn main() {
    let postgres = Postgres::start();
    let province_dir = tempfile::tempdir().unwrap();
    let province = classroom_bundle::keys::generate_province(province_dir.path()).unwrap();
    let identity =
        classroom_bundle::keys::load_identity(&province_dir.path().join("province.age")).unwrap();
    let room = Room::with_hub_keys(
        "LC-0101",
        "6A1",
        &format!(
            "province_recipient = \"{}\"\nprovince_signing_key = \"{}\"\n",
            province.recipient, province.verifying_key
        ),
    );
    std::fs::create_dir_all(room.data_dir()).unwrap();
    let events = week::record_a_busy_week(&room.writer());
    let stick = tempfile::tempdir().unwrap();
    let output = room.command(&["hub", "export", "--to", stick.path().to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let bundle = std::fs::read_dir(stick.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "bundle"))
        .unwrap();
    let config = HubConfig::new(&postgres, &[]);
    let mut text = std::fs::read_to_string(&config.path).unwrap();
    text.push_str(&format!(
        "\n[usb]\nidentity = \"{}\"\nsigning_key = \"{}\"\n",
        province_dir.path().join("province.age").display(),
        province_dir.path().join("province-signing.key").display()
    ));
    std::fs::write(&config.path, text).unwrap();
    let db = postgres.client();
    println!(
        "usb_import benchmark: a busy week is {events} events, bundle {} KB",
        std::fs::metadata(&bundle).unwrap().len() / 1024
    );

    let (mut import, mut open) = (vec![], vec![]);
    for run in 0..RUNS {
        if run > 0 {
            db.query(
                "TRUNCATE attendance_marks, answers, actuations, erasures, events, outboxes, rooms, room_keys",
                &[],
            );
        }
        let acks = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let output = Command::new(hub_binary())
            .args(["import-bundle", "--config"])
            .arg(&config.path)
            .arg("--ack-to")
            .arg(acks.path())
            .arg(&bundle)
            .output()
            .unwrap();
        import.push(started.elapsed());
        assert!(output.status.success(), "{output:?}");
        assert_eq!(db.events() as u64, events, "every event landed once");

        let started = Instant::now();
        let opened = classroom_bundle::records::open(&bundle, &identity, None).unwrap();
        let decoded = opened
            .events
            .iter()
            .filter(|(_, bytes)| Event::decode(bytes.as_slice()).is_ok())
            .count();
        open.push(started.elapsed());
        assert_eq!(decoded as u64, events);
    }
    println!("{:<52} {:>9} {:>9} {:>9}", "", "min", "median", "max");
    line(
        "province-hub import-bundle (process, open, land, ack)",
        &mut import,
    );
    line("baseline: open the bundle, decode every event", &mut open);
}

fn line(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{what:<52} {:>9} {:>9} {:>9}",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}
