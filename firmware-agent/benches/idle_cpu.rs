//! The daemon's CPU between roll calls: the built agent runs a room with
//! attendance on, a folder of classroom photos as its camera (five frames a
//! second, as a camera delivers them) and a timetable with no period in the
//! coming hour; its user and system time (from `/proc/PID/stat`) over a
//! stretch of that idle time is scaled to an hour. With `BASELINE_AGENT` set
//! to another build of the agent, that build runs the same room in the same
//! run, before this one, for comparison.
//!
//! Run with `cargo bench --bench idle_cpu` (with `ORT_DYLIB_PATH` and
//! `FIRMWARE_AGENT_MODELS` set as the Makefile sets them);
//! `IDLE_CPU_SECONDS` sets the measured stretch (60 by default).

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Time the agent is given to load its models and settle before measuring.
const SETTLE: Duration = Duration::from_secs(10);
/// The photos the camera shows, over and over.
const FRAMES: [&str; 4] = [
    "probe/obama_720p.jpg",
    "probe/group_two_people.jpg",
    "probe/kit_harington_b.jpg",
    "probe/stranger_a.png",
];

fn main() {
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_firmware-agent"));
    let stretch = Duration::from_secs(
        std::env::var("IDLE_CPU_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    println!(
        "daemon CPU with no roll call open: {} s measured after {} s to settle, scaled to an hour",
        stretch.as_secs(),
        SETTLE.as_secs()
    );
    let mut runs = Vec::new();
    if let Some(baseline) = std::env::var_os("BASELINE_AGENT") {
        runs.push(("baseline", PathBuf::from(baseline)));
    }
    runs.push(("this build", agent));
    for (label, binary) in runs {
        let (seconds, frames) = idle_cpu(&binary, stretch);
        println!(
            "  {label:<10} {seconds:8.1} CPU seconds an hour ({:5.1}% of one core); frames so far: {frames}  {}",
            seconds / 36.0,
            binary.display()
        );
    }
}

/// The CPU seconds an hour `binary` spends running an idle room, and the
/// frames its /metrics counted by the end.
fn idle_cpu(binary: &Path, stretch: Duration) -> (f64, String) {
    let room = tempfile::tempdir().unwrap();
    let (config, http) = write_room(room.path());
    let roster = room.path().join("roster.csv");
    std::fs::write(&roster, roster_csv()).unwrap();
    let imported = Command::new(binary)
        .args(["roster", "import"])
        .arg(&roster)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );

    let mut child = Command::new(binary)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "agent ready", Duration::from_secs(60));
    std::thread::sleep(SETTLE);
    let before = common::cpu_seconds(child.id());
    let started = Instant::now();
    std::thread::sleep(stretch);
    let spent = common::cpu_seconds(child.id()) - before;
    let elapsed = started.elapsed();
    let metrics = ureq::get(&format!("http://{http}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let frames: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("attendance_frames_total{"))
        .collect();
    // SAFETY: kill(2) on the PID of the child this bench started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    (spent / elapsed.as_secs_f64() * 3600.0, frames.join(", "))
}

/// A room whose only period starts two hours from now, with attendance on
/// and the camera a folder of photos; its config and HTTP address.
fn write_room(dir: &Path) -> (PathBuf, std::net::SocketAddr) {
    let faces = common::faces_dir();
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for (index, photo) in FRAMES.iter().enumerate() {
        let extension = Path::new(photo).extension().unwrap().to_str().unwrap();
        std::fs::copy(
            faces.join(photo),
            frames.join(format!("frame{index:03}.{extension}")),
        )
        .unwrap();
    }
    let (models, library) = (
        common::models_dir().display().to_string(),
        common::onnxruntime_library().display().to_string(),
    );
    let zone = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
    let start = jiff::Timestamp::now()
        .to_zoned(zone)
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    // A period that would cross midnight ends at it.
    let end = start
        .checked_add(jiff::SignedDuration::from_mins(45))
        .unwrap();
    let end = if end.date() == start.date() {
        end.strftime("%H:%M").to_string()
    } else {
        "23:59".to_owned()
    };
    let listen = |_| std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let [http, grpc]: [std::net::TcpListener; 2] = std::array::from_fn(listen);
    let config = format!(
        "[room]\nschool_code = \"BENCH-01\"\nroom_id = \"P101\"\nname = \"Phòng đo\"\n\n[storage]\ndata_dir = \"data\"\n\n\
         [http]\nlisten = \"{}\"\n\n[hub]\nlisten = \"{}\"\nplaintext = true\n\n\
         [[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         periods = [{{ start = \"{}\", end = \"{}\" }}]\n\n\
         [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = {{ type = \"simulated\" }}\n\n\
         [attendance]\nenabled = true\nclass = \"6A1\"\nmodels_dir = \"{models}\"\nonnxruntime_library = \"{library}\"\n\n\
         [attendance.source]\nkind = \"folder\"\npath = \"{}\"\nrate = 5.0\nrepeat = true\n",
        http.local_addr().unwrap(),
        grpc.local_addr().unwrap(),
        start.strftime("%H:%M"),
        end,
        frames.display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    (path, http.local_addr().unwrap())
}

/// Class 6A1: forty pupils, the norm.
fn roster_csv() -> String {
    let mut csv = String::from(
        "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n",
    );
    for index in 0..40 {
        csv.push_str(&format!(
            "pupil,0012060010{index:02},Học sinh {index},6A1,yes,yes,2026-08-20\n"
        ));
    }
    csv
}

/// Reads the child's log until a line holds `needle`, then drains the rest on a thread of its own.
fn wait_for_line(child: &mut Child, needle: &str, timeout: Duration) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + timeout;
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the agent stopped before saying {needle:?}"))
            .unwrap();
        if line.contains(needle) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} within {timeout:?}"
        );
    }
    std::thread::spawn(move || lines.for_each(drop));
}
