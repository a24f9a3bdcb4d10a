//! Where the benches find what `make setup` installs: the face models, the
//! ONNX Runtime library and the shared test photos, each overridable by the
//! environment variable the Makefile and the agent use; and how much CPU a
//! process has spent, for the benches that measure the daemon; and a backlog
//! of attendance marks, for the benches that carry records to the hub; and
//! the agent and tablets of the live-lesson benches (`tablets`).

#![allow(dead_code)] // each bench uses its own part of this module

pub mod tablets;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The face models' directory: `$FIRMWARE_AGENT_MODELS`, or `models/`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("FIRMWARE_AGENT_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// The ONNX Runtime library: `$ORT_DYLIB_PATH`, or the one `make setup` installs.
pub fn onnxruntime_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".local/onnxruntime/libonnxruntime.so"))
}

/// The shared face photos: `$CLASSROOM_SHARED_DIR/testdata/faces`, or `../shared`'s.
pub fn faces_dir() -> PathBuf {
    std::env::var_os("CLASSROOM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
        .join("testdata/faces")
}

/// User and system time the process `pid` has spent so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
}

/// Starts the agent `binary` on `config` and returns it once it has logged
/// that it is ready; the rest of its log is read and dropped, so that it never
/// stalls on a full pipe.
pub fn start_agent(binary: impl AsRef<Path>, config: &Path) -> Child {
    let mut child = Command::new(binary.as_ref())
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("agent ready"))
        .expect("the agent starts");
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Commits `count` attendance marks to `store`'s outbox, 10 000 to a
/// transaction: the backlog of a busy room that has not synced.
pub fn fill_backlog(store: &firmware_agent::store::Store, count: usize) {
    for chunk in 0..count.div_ceil(10_000) {
        let marks = (chunk * 10_000..((chunk + 1) * 10_000).min(count)).map(backlog_mark);
        store.append_batch(marks.collect()).unwrap();
    }
}

/// The `n`th mark of a backlog: five periods of a class of 40, pupils by number.
fn backlog_mark(n: usize) -> firmware_agent::store::outbox::NewEvent {
    use firmware_agent::proto;
    firmware_agent::store::outbox::NewEvent::new(
        jiff::Timestamp::now(),
        proto::AttendanceMark {
            session_id: format!("2026-09-07/morning/{}/6A1", n / 40 % 5 + 1),
            lesson_id: format!("2026-09-07/morning/{}", n / 40 % 5 + 1),
            personal_id: format!("0102060{:05}", n % 100_000),
            status: proto::MarkStatus::Present as i32,
            source: proto::MarkSource::Face as i32,
            best_similarity: 0.83,
            ..Default::default()
        },
    )
}
