//! IP cameras end to end: a real RTSP server on loopback (GStreamer's, from
//! `tests/rtsp_server.py`) streams H.264, H.265 or VP8 behind digest
//! authentication, the built daemon takes the roll call from it, and
//! `camera probe` reads it as IT staff would.

#[path = "common/classroom.rs"]
mod classroom;
mod common;
#[path = "common/rtsp.rs"]
mod rtsp;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use classroom::{PEOPLE, attendance_room_with, enroll, faces, present_by_face, wait_for_all};
use common::{Room, free_port, http_get};
use rtsp::{PASSWORD, RtspServer, frames_of};

/// A roll call that opens when the agent starts (no timetable) and stays
/// open for the whole test, everyone seen on time.
const LONG_ROLL_CALL: &str = "late_after_minutes = 10.0\nwindow_minutes = 20.0\n";

/// The five people of the class, each in at least one frame.
const WHOLE_CLASS: [&str; 5] = [
    "probe/obama_720p.jpg",
    "probe/biden_b.jpg",
    "probe/alex_lacamoire_b.png",
    "probe/group_kit_rose.jpg",
    "probe/kit_harington_b.jpg",
];

fn rtsp_source(url: &str) -> String {
    format!("kind = \"rtsp\"\nurl = \"{url}\"\ntransport = \"tcp\"\n")
}

/// A room of class 6A1 reading the camera at `url`, with all five enrolled.
fn room_reading(url: &str) -> Room {
    let room = attendance_room_with(&rtsp_source(url), LONG_ROLL_CALL, "");
    for (id, person) in PEOPLE {
        let photo = faces().join(format!("enroll/{person}/{person}_a.jpg"));
        let enrolled = enroll(&room, id, &[&photo]);
        assert!(
            enrolled.status.success(),
            "{person}: {}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
    }
    room
}

/// `attendance_source` in /healthz once `settled` holds for it, before `timeout`.
fn source_health(
    room: &Room,
    settled: impl Fn(&serde_json::Value) -> bool,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, body) = http_get(room.http, "/healthz");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        let source = health["subsystems"]["attendance_source"].clone();
        if settled(&source) {
            return source;
        }
        assert!(
            Instant::now() < deadline,
            "attendance_source after {timeout:?}: {health}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn detail(source: &serde_json::Value) -> String {
    source["detail"].as_str().unwrap_or("").to_owned()
}

fn roll_call_from(codec: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let frames = frames_of(scratch.path(), "class", &faces(), &WHOLE_CLASS);
    let camera = RtspServer::start(free_port(), &frames, codec);
    let room = room_reading(&camera.url());
    let agent = room.start();
    let needles: Vec<String> = PEOPLE.iter().map(|(id, _)| present_by_face(id)).collect();
    wait_for_all(
        &agent,
        &needles.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(120),
    );
    let source = source_health(
        &room,
        |source| source["state"] == "ok",
        Duration::from_secs(5),
    );
    let shown = detail(&source);
    assert!(
        shown.ends_with(" delivering frames")
            && shown.starts_with("rtsp://")
            && shown.contains(":***@"),
        "the camera, without its password: {source}"
    );
    let log = agent.log.lock().unwrap().join("\n");
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");
}

#[test]
fn the_roll_call_is_taken_from_an_h264_camera() {
    roll_call_from("h264");
}

#[test]
fn the_roll_call_is_taken_from_an_h265_camera() {
    roll_call_from("h265");
}

#[test]
fn the_roll_call_carries_on_when_the_camera_is_killed_and_restarted() {
    let scratch = tempfile::tempdir().unwrap();
    let before = frames_of(
        scratch.path(),
        "before",
        &faces(),
        &["probe/obama_720p.jpg", "probe/obama_b.jpg"],
    );
    let after = frames_of(
        scratch.path(),
        "after",
        &faces(),
        &["probe/kit_harington_b.jpg", "probe/kit_harington_c.jpg"],
    );
    let port = free_port();
    let camera = RtspServer::start(port, &before, "h264");
    let room = room_reading(&camera.url());
    let agent = room.start();
    agent.wait_for_log(&present_by_face("001206001003"), Duration::from_secs(90));

    camera.kill();
    let lost = source_health(
        &room,
        |source| source["state"] == "degraded",
        Duration::from_secs(30),
    );
    assert!(
        detail(&lost).contains("rtsp://admin:***@127.0.0.1"),
        "{lost}"
    );
    assert!(detail(&lost).contains("failing since"), "{lost}");

    // The camera comes back on the same address; only Kit is in front of it now.
    let _camera = RtspServer::start(port, &after, "h264");
    agent.wait_for_log(&present_by_face("001206001002"), Duration::from_secs(90));
    source_health(
        &room,
        |source| source["state"] == "ok",
        Duration::from_secs(10),
    );
}

#[test]
fn a_wrong_password_shows_in_healthz_with_its_cause_and_without_the_password() {
    let scratch = tempfile::tempdir().unwrap();
    let frames = frames_of(scratch.path(), "class", &faces(), &["probe/obama_720p.jpg"]);
    let camera = RtspServer::start(free_port(), &frames, "h264");
    let wrong = "not-the-Lop6A1-password";
    let room = room_reading(&camera.url_with(wrong));
    let agent = room.start();
    let refused = source_health(
        &room,
        |source| source["state"] == "degraded",
        Duration::from_secs(30),
    );
    let said = detail(&refused);
    assert!(
        said.contains("wrong user or password (RTSP 401"),
        "{refused}"
    );
    assert!(
        said.contains(&format!(
            "rtsp://admin:***@127.0.0.1:{}/stream",
            camera.port
        )),
        "{refused}"
    );
    assert!(said.contains("failing since"), "{refused}");
    assert!(!said.contains(wrong), "{refused}");

    // The time the failure started is kept across the retries.
    let since = |detail: &str| {
        detail
            .split("failing since ")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    let retried = source_health(
        &room,
        |source| detail(source).contains("retrying in 4 s"),
        Duration::from_secs(30),
    );
    assert_eq!(since(&detail(&retried)), since(&said), "{retried}");
    let log = agent.log.lock().unwrap().join("\n");
    assert!(!log.contains(wrong), "the password was logged:\n{log}");
}

#[test]
fn a_camera_sending_vp8_shows_in_healthz_as_an_unsupported_codec() {
    let scratch = tempfile::tempdir().unwrap();
    let frames = frames_of(scratch.path(), "class", &faces(), &["probe/obama_720p.jpg"]);
    let camera = RtspServer::start(free_port(), &frames, "vp8");
    let room = room_reading(&camera.url());
    let _agent = room.start();
    let refused = source_health(
        &room,
        |source| source["state"] == "degraded",
        Duration::from_secs(30),
    );
    let said = detail(&refused);
    assert!(
        said.contains("unsupported codec: the camera sends VP8"),
        "{refused}"
    );
    assert!(!said.contains(PASSWORD), "{refused}");
}

#[test]
fn camera_probe_prints_what_the_camera_sends_and_saves_a_private_snapshot() {
    let scratch = tempfile::tempdir().unwrap();
    let frames = frames_of(
        scratch.path(),
        "class",
        &faces(),
        &["probe/obama_720p.jpg", "probe/biden_b.jpg"],
    );
    let camera = RtspServer::start(free_port(), &frames, "h265");
    let snapshot = scratch.path().join("snapshot.png");
    let probe = |args: &[&str]| {
        std::process::Command::new(common::agent_binary())
            .args(["camera", "probe"])
            .args(args)
            .output()
            .unwrap()
    };

    let probed = probe(&[
        &camera.url(),
        "--snapshot",
        snapshot.to_str().unwrap(),
        "--transport",
        "tcp",
    ]);
    let stdout = String::from_utf8_lossy(&probed.stdout);
    assert_eq!(
        probed.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&probed.stderr)
    );
    for line in [
        "codec: H265",
        "resolution: 1280x720",
        "frame rate: ",
        "decoded frame: 1280x720, 2764800 bytes",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    let saved = image::open(&snapshot).unwrap();
    assert_eq!((saved.width(), saved.height()), (1280, 720));
    let mode = std::fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let refused = probe(&[&camera.url_with("guessed-password")]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wrong user or password"), "{stderr}");
    assert!(!stderr.contains("guessed-password"), "{stderr}");

    let malformed = probe(&["rtsp://admin:secret@:554/x"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&malformed.stderr).contains("secret"));

    let help = probe(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--snapshot"));
}

#[test]
fn check_config_refuses_a_malformed_rtsp_url_where_it_stands_without_its_password() {
    let room = classroom::room_without_roster(
        "kind = \"rtsp\"\nstream = \"sub\"\nurl = \"rtsp://admin:m4t-khau-9@192.168.1.64:554/Streaming/Channels/101\"\nsub_url = \"rtsp://admin:m4t-khau-9@192.168.1.64:55x4/Streaming/Channels/102\"\n",
        LONG_ROLL_CALL,
        "",
    );
    let (code, text) = room.check_config();
    assert_eq!(code, Some(2), "{text}");
    let line = room.config_line(|line| line.starts_with("sub_url = "));
    assert!(
        text.contains(&format!(
            "agent.toml:{line}:1: attendance.source.sub_url: `rtsp://admin:***@192.168.1.64:55x4/Streaming/Channels/102`: `55x4` is not a port number"
        )),
        "{text}"
    );
    assert!(
        !text.contains("attendance.source.url:"),
        "the main stream's URL is well formed: {text}"
    );
    assert!(!text.contains("m4t-khau-9"), "{text}");
}

/// Frames the source delivers within `span`.
fn frames_within(
    camera: &mut dyn firmware_agent::attendance::source::FrameSource,
    span: Duration,
) -> u32 {
    let started = Instant::now();
    let mut frames = 0;
    while started.elapsed() < span {
        camera.next_frame().unwrap().unwrap();
        frames += 1;
    }
    frames
}

#[test]
fn while_frames_are_wanted_now_and_then_only_keyframes_are_decoded() {
    use firmware_agent::attendance::config::Transport;
    use firmware_agent::attendance::source::rtsp::RtspSource;
    use firmware_agent::attendance::source::{FrameSource, Need};

    // Five frames a second, a keyframe every fifth.
    let scratch = tempfile::tempdir().unwrap();
    let frames = frames_of(
        scratch.path(),
        "class",
        &faces(),
        &["probe/obama_720p.jpg", "probe/biden_b.jpg"],
    );
    let server = RtspServer::start(free_port(), &frames, "h264");
    let mut camera = RtspSource::open(&server.url(), Transport::Udp, Need::NowAndThen).unwrap();
    let span = Duration::from_secs(3);
    let keyframes = frames_within(&mut camera, span);
    assert!(
        (2..=5).contains(&keyframes),
        "{keyframes} frames in {span:?} while keyframes only were wanted"
    );
    camera.need(Need::EveryFrame);
    let every = frames_within(&mut camera, span);
    assert!(
        every >= 11,
        "{every} frames in {span:?} while every frame was wanted"
    );
}

#[test]
fn camera_probe_reads_an_mjpeg_camera_over_http_too() {
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let photo = std::fs::read(faces().join("probe/obama_720p.jpg")).unwrap();
    // A camera sending ten frames a second, each part with its Content-Length, until the probe hangs up.
    let camera = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).unwrap();
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=cam\r\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        loop {
            let part = [
                format!(
                    "--cam\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    photo.len()
                )
                .as_bytes(),
                &photo,
                b"\r\n",
            ]
            .concat();
            if stream.write_all(&part).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let probed = std::process::Command::new(common::agent_binary())
        .args(["camera", "probe", &format!("http://{address}/video.mjpg")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&probed.stdout);
    assert_eq!(
        probed.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&probed.stderr)
    );
    for line in [
        "codec: MJPEG",
        "resolution: 1280x720",
        "decoded frame: 1280x720",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    let rate: f64 = stdout
        .split("frame rate: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|rate| rate.parse().ok())
        .unwrap_or_else(|| panic!("no measured frame rate in:\n{stdout}"));
    assert!(
        (5.0..=11.0).contains(&rate),
        "{rate} frames per second from a camera sending 10:\n{stdout}"
    );
    camera.join().unwrap();
}
