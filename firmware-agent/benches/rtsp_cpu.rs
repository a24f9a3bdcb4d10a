//! CPU spent on an RTSP camera: a 1080p, 25 frames a second H.264 stream from
//! `tests/rtsp_server.py` (software encoding in its own process, not counted).
//!
//! - The frame source alone, in this process, as the daemon's source thread
//!   drives it: every frame decoded (a roll call open), then keyframes only
//!   (frames wanted now and then, for the empty-room rule). The models are
//!   not run: this is what the camera costs on top of them.
//! - The built daemon with attendance on, the camera configured, no roll call
//!   in the coming hour and the empty-room rule off: nothing wants frames, so
//!   the camera should cost nothing.
//!
//! Each figure is user and system time over a measured stretch, as a
//! percentage of one core. Run with `cargo bench --bench rtsp_cpu` (with
//! `ORT_DYLIB_PATH` and `FIRMWARE_AGENT_MODELS` set as the Makefile sets them);
//! `RTSP_CPU_SECONDS` sets each stretch (20 by default).

#[path = "common/mod.rs"]
mod common;
#[path = "../../tests/common/rtsp.rs"]
mod rtsp;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firmware_agent::attendance::config::Transport;
use firmware_agent::attendance::source::rtsp::RtspSource;
use firmware_agent::attendance::source::{FrameSource, Need};

/// Time given to the stream (and the daemon) to settle before measuring.
const SETTLE: Duration = Duration::from_secs(5);

fn main() {
    let stretch = Duration::from_secs(
        std::env::var("RTSP_CPU_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let scratch = tempfile::tempdir().unwrap();
    let frames = rtsp::frames_of(
        scratch.path(),
        "class",
        &common::faces_dir(),
        &["probe/obama_1080p.jpg", "probe/group_two_people.jpg"],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let camera = rtsp::RtspServer::start_with(
        port,
        &frames,
        "h264",
        &["--width", "1920", "--height", "1080", "--rate", "25"],
    );
    println!(
        "CPU on a 1080p 25 fps H.264 RTSP camera, {} s measured after {} s to settle, % of one core:",
        stretch.as_secs(),
        SETTLE.as_secs()
    );
    for (label, need) in [
        ("every frame decoded (roll call open)", Need::EveryFrame),
        ("keyframes only (empty-room rule)", Need::NowAndThen),
    ] {
        let (percent, frames) = source_cpu(&camera.url(), need, stretch);
        println!("  source, {label:<38} {percent:5.1}%  ({frames} frames delivered)");
    }
    let percent = idle_daemon_cpu(scratch.path(), &camera.url(), stretch);
    println!("  daemon, nothing wants frames{:<18} {percent:5.1}%", "");
}

/// This process's CPU while it reads the camera wanting `need`, and the frames it got.
fn source_cpu(url: &str, need: Need, stretch: Duration) -> (f64, u32) {
    let mut camera = RtspSource::open(url, Transport::Tcp, need).unwrap();
    let settled = Instant::now();
    while settled.elapsed() < SETTLE {
        camera.next_frame().unwrap();
    }
    let before = common::cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut frames = 0;
    while started.elapsed() < stretch {
        camera.next_frame().unwrap();
        frames += 1;
    }
    let spent = common::cpu_seconds(std::process::id()) - before;
    (spent / started.elapsed().as_secs_f64() * 100.0, frames)
}

/// The daemon's CPU with the camera configured and nothing wanting frames.
fn idle_daemon_cpu(dir: &Path, url: &str, stretch: Duration) -> f64 {
    let binary = env!("CARGO_BIN_EXE_firmware-agent");
    let listen = |_| std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let [http, grpc]: [std::net::TcpListener; 2] = std::array::from_fn(listen);
    // No timetable, and a room that looks only for faces: no roll call is
    // ever open and the empty-room rule is off.
    let config = format!(
        "[room]\nschool_code = \"BENCH-01\"\nroom_id = \"P101\"\nname = \"Phòng đo\"\n\n[storage]\ndata_dir = \"data\"\n\n\
         [http]\nlisten = \"{}\"\n\n[hub]\nlisten = \"{}\"\nplaintext = true\n\n\
         [[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\"]\nperiods = [{{ start = \"00:00\", end = \"00:01\" }}]\n\n\
         [attendance]\nenabled = true\nclass = \"6A1\"\nempty_room_minutes = 0.0\nmodels_dir = \"{}\"\nonnxruntime_library = \"{}\"\n\n\
         [attendance.source]\nkind = \"rtsp\"\nurl = \"{url}\"\n",
        http.local_addr().unwrap(),
        grpc.local_addr().unwrap(),
        common::models_dir().display(),
        common::onnxruntime_library().display(),
    );
    drop((http, grpc));
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(binary)
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        if line.unwrap().contains("agent ready") {
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not get ready");
    }
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::sleep(SETTLE);
    let before = common::cpu_seconds(child.id());
    let started = Instant::now();
    std::thread::sleep(stretch);
    let spent = common::cpu_seconds(child.id()) - before;
    // SAFETY: kill(2) on the PID of the child this bench started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    spent / started.elapsed().as_secs_f64() * 100.0
}
