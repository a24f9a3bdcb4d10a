//! Replays the fuzzing corpus through the fuzzing harnesses, without libFuzzer:
//! every seed, and every input a fuzzer once crashed the agent with (kept in
//! `fuzz/corpus/<target>/` once fixed), goes through the agent on each
//! `make test`, on stable Rust.

#[path = "../fuzz/src/lib.rs"]
mod harnesses;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs `harness` over every file of `fuzz/corpus/<target>/`; fails naming each file that panicked.
fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    let panicked: Vec<_> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).expect("a readable corpus file");
            catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err()
        })
        .collect();
    assert!(
        panicked.is_empty(),
        "{} of {} inputs panicked the {target} harness: {panicked:?}",
        panicked.len(),
        files.len()
    );
}

#[test]
fn tablet_messages() {
    replay("tablet_messages", harnesses::tablet_messages);
}

#[test]
fn config_file() {
    replay("config_file", harnesses::config_file);
}

#[test]
fn roster_csv() {
    replay("roster_csv", harnesses::roster_csv);
}

#[test]
fn hub_requests() {
    replay("hub_requests", harnesses::hub_requests);
}

#[test]
fn pushed_timetable() {
    replay("pushed_timetable", harnesses::pushed_timetable);
}

#[test]
fn image_decode() {
    replay("image_decode", harnesses::image_decode);
}
