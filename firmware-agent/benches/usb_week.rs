//! A busy week offline carried by USB: how long `hub export` takes, how large
//! the bundle is, and how long the province takes to open it and decode every
//! event, each beside its baseline in the same run:
//! - export against a plain dump: the same rows read and encoded as the same
//!   `Event`s, written length-delimited to a file and fsynced, with no
//!   signature and no encryption (what the bundle format adds is the difference;
//!   the export also pays for starting the process and opening the database);
//! - the bundle's size against the events' own bytes and the database file;
//! - opening (decrypt, verify, decode) against reading the plain dump back and
//!   decoding it.
//!
//! The week: 40 pupils, 10 periods a day (two shifts of five), 6 school days.
//! Each period has a roll-call mark per pupil (2 400), 8 questions answered by
//! every pupil (19 200) and 10 commands to the tablets (600); each day 20 bells
//! and 4 light switches (144). 22 344 events. Files go to a temporary directory
//! on the machine's disk: a real stick writes slower, and the figures say what
//! the software costs. Run with `cargo bench --bench usb_week`.

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_agent::clock::SystemClock;
use firmware_agent::hub::wire;
use firmware_agent::proto::{Event, RoomIdentity};
use firmware_agent::store::Store;
use firmware_agent::store::outbox::read_after;
use prost::Message;

#[path = "common/week.rs"]
mod week;

const RUNS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let province_dir = dir.path().join("province");
    std::fs::create_dir(&province_dir).unwrap();
    let province = classroom_bundle::keys::generate_province(&province_dir).unwrap();
    let identity =
        classroom_bundle::keys::load_identity(&province_dir.join("province.age")).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[room]\nschool_code = \"LC-0101\"\nroom_id = \"6A1\"\n[storage]\ndata_dir = \"data\"\n\
             [hub]\nplaintext = true\nprovince_recipient = \"{}\"\nprovince_signing_key = \"{}\"\n",
            province.recipient, province.verifying_key
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let store = Store::open(&data.join("agent.sqlite3"), Arc::new(SystemClock)).unwrap();
    let events = week::record_a_busy_week(&store);
    let database_bytes = std::fs::metadata(data.join("agent.sqlite3")).unwrap().len()
        + std::fs::metadata(data.join("agent.sqlite3-wal")).map_or(0, |m| m.len());
    println!(
        "usb_week benchmark ({} build): a busy week is {events} events, database {} KB",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        database_bytes / 1024
    );

    let (mut export, mut dump, mut open, mut reread) = (vec![], vec![], vec![], vec![]);
    let (mut bundle_bytes, mut dump_bytes, mut event_bytes) = (0, 0, 0);
    for run in 0..RUNS {
        let stick = dir.path().join(format!("stick-{run}"));
        std::fs::create_dir(&stick).unwrap();
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_firmware-agent"))
            .args(["hub", "export", "--to"])
            .arg(&stick)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        export.push(started.elapsed());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bundle = std::fs::read_dir(&stick)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == "bundle"))
            .unwrap();
        bundle_bytes = std::fs::metadata(&bundle).unwrap().len();

        let started = Instant::now();
        let (written, bytes) = plain_dump(&store, &stick.join("plain.dump"));
        dump.push(started.elapsed());
        assert_eq!(written, events);
        dump_bytes = std::fs::metadata(stick.join("plain.dump")).unwrap().len();
        event_bytes = bytes;

        let started = Instant::now();
        let opened = classroom_bundle::records::open(&bundle, &identity, None).unwrap();
        let decoded = opened
            .events
            .iter()
            .filter(|(_, bytes)| Event::decode(bytes.as_slice()).is_ok())
            .count();
        open.push(started.elapsed());
        assert_eq!(decoded as u64, events);

        let started = Instant::now();
        assert_eq!(read_plain_dump(&stick.join("plain.dump")), events);
        reread.push(started.elapsed());
    }
    println!("{:<46} {:>9} {:>9} {:>9}", "", "min", "median", "max");
    line(
        "hub export (process, read, sign, encrypt, fsync)",
        &mut export,
    );
    line("baseline: plain dump (read, encode, fsync)", &mut dump);
    line("province opens the bundle, decodes every event", &mut open);
    line("baseline: read the plain dump back, decode", &mut reread);
    println!(
        "bundle {} KB for {} KB of events ({} KB plain dump, {} KB database): {:.1} bytes an event",
        bundle_bytes / 1024,
        event_bytes / 1024,
        dump_bytes / 1024,
        database_bytes / 1024,
        bundle_bytes as f64 / events as f64
    );
}

fn line(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{what:<46} {:>9} {:>9} {:>9}",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}

/// The baseline: the same events, length-delimited, unsigned and in clear; (events, their bytes).
fn plain_dump(store: &Store, path: &Path) -> (u64, u64) {
    let room = RoomIdentity {
        school_code: "LC-0101".into(),
        room_id: "6A1".into(),
    };
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    let reader = store.reader().unwrap();
    let (mut after, mut count, mut bytes) = (0, 0, 0);
    loop {
        let rows = read_after(&reader, after, 2_000).unwrap();
        let Some(last) = rows.last().map(|row| row.seq) else {
            break;
        };
        for row in rows {
            let encoded = wire::event(row, &room).encode_length_delimited_to_vec();
            bytes += encoded.len() as u64;
            out.write_all(&encoded).unwrap();
            count += 1;
        }
        after = last;
    }
    let file = out.into_inner().unwrap();
    file.sync_all().unwrap();
    (count, bytes)
}

fn read_plain_dump(path: &Path) -> u64 {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let mut rest = bytes.as_slice();
    let mut count = 0;
    while !rest.is_empty() {
        Event::decode_length_delimited(&mut rest).unwrap();
        count += 1;
    }
    count
}
