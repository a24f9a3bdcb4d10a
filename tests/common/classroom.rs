//! A class of five real faces for the end-to-end tests: a roster, the models as
//! `make setup` installs them, enrollment through the real binary, and a folder
//! of frames a camera might deliver.
#![allow(dead_code)] // each test file uses its own part of this module

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use firmware_agent::clock::SystemClock;
use firmware_agent::proto::attendance_session::Phase;
use firmware_agent::proto::event::Payload;
use firmware_agent::proto::{AttendanceSession, MarkSource, MarkStatus};
use firmware_agent::store::Store;

use crate::common::{Room, RunningAgent, http_get, metric, repo_root, shared_testdata};

pub const PEOPLE: [(&str, &str); 5] = [
    ("001206001000", "alex_lacamoire"),
    ("001206001001", "biden"),
    ("001206001002", "kit_harington"),
    ("001206001003", "obama"),
    ("001206001004", "rose_leslie"),
];
/// A pupil of the class whose parents gave no face consent.
pub const NO_CONSENT: &str = "001206001005";

/// A Monday morning a minute before the first period, as the simulated clock starts.
pub const MONDAY_0659: &str = "2026-09-07T06:59:00+07:00";
/// The first period's start on that Monday.
pub const MONDAY_0700: &str = "2026-09-07T07:00:00+07:00";
/// Its roll call's close: a window of 15 minutes.
pub const MONDAY_0715: &str = "2026-09-07T07:15:00+07:00";

/// A school's roll call: a 15-minute window, late after 5 minutes.
pub const RULES: &str = "late_after_minutes = 5.0\nwindow_minutes = 15.0\n";

/// A morning's first period, 07:00–07:45, every day of the week, and the bell it rings.
pub const FIRST_PERIOD: &str = "[[schedule.shifts]]\nname = \"Sáng\"\n\
    days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
    periods = [{ start = \"07:00\", end = \"07:45\" }]\n\n\
    [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = { type = \"simulated\" }\n";

/// Waits until the agent has logged, in any order, a line containing each of `needles`.
pub fn wait_for_all(agent: &RunningAgent, needles: &[&str], timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let mut missing: Vec<&str> = needles.to_vec();
    missing.retain(|needle| {
        !agent
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    });
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no log lines containing {missing:?} within {timeout:?}; log:\n{}",
            agent.log.lock().unwrap().join("\n")
        );
        let line = agent.wait_for_log("", left);
        missing.retain(|needle| !line.contains(needle));
    }
}

/// The needle of the log line of a mark by face of `personal_id`, present (not late).
pub fn present_by_face(personal_id: &str) -> String {
    format!("attendance mark personal_id={personal_id} status=Present source=Face")
}

/// Waits until the agent's /metrics counts `series` at `at_least`; returns the count.
pub fn wait_for_metric(
    room: &Room,
    series: &str,
    at_least: f64,
    timeout: std::time::Duration,
) -> f64 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (_, scrape) = http_get(room.http, "/metrics");
        let count = metric(&scrape, series).unwrap_or(0.0);
        if count >= at_least {
            return count;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} is {count}, not {at_least}, after {timeout:?}:\n{scrape}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The count of `series` in the agent's /metrics now; 0 before it is counted.
pub fn metric_now(room: &Room, series: &str) -> f64 {
    let (_, scrape) = http_get(room.http, "/metrics");
    metric(&scrape, series).unwrap_or(0.0)
}

pub fn faces() -> PathBuf {
    shared_testdata().join("faces")
}

/// The models and runtime as `make setup` installs them, named in the config so
/// the test does not depend on the environment `make` sets.
pub fn models_config() -> String {
    let root = repo_root();
    let models = std::env::var("FIRMWARE_AGENT_MODELS")
        .unwrap_or_else(|_| root.join("models").display().to_string());
    let library = std::env::var("ORT_DYLIB_PATH").unwrap_or_else(|_| {
        root.join(".local/onnxruntime/libonnxruntime.so")
            .display()
            .to_string()
    });
    format!("models_dir = \"{models}\"\nonnxruntime_library = \"{library}\"\n")
}

pub fn attendance_room(source: &str) -> Room {
    attendance_room_with(
        source,
        "late_after_minutes = 0.25\nwindow_minutes = 0.5\n",
        "",
    )
}

/// A room of class 6A1 with the roll-call `rules` and `extra` config sections.
pub fn attendance_room_with(source: &str, rules: &str, extra: &str) -> Room {
    let room = room_without_roster(source, rules, extra);
    import_class(&room);
    room
}

/// The room of [`attendance_room_with`] before its roster is imported.
pub fn room_without_roster(source: &str, rules: &str, extra: &str) -> Room {
    Room::new(&format!(
        "{extra}\n[attendance]\nenabled = true\nclass = \"6A1\"\nconfirm_frames = 2\n{rules}{}\n[attendance.source]\n{source}\n",
        models_config()
    ))
}

/// Imports the class 6A1: the five people with face consent, and [`NO_CONSENT`].
pub fn import_class(room: &Room) {
    let mut csv = String::from(
        "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n",
    );
    for (id, person) in PEOPLE {
        csv.push_str(&format!("pupil,{id},{person},6A1,yes,yes,2026-08-20\n"));
    }
    csv.push_str(&format!("pupil,{NO_CONSENT},Lò Văn Páo,6A1,no,no,\n"));
    room.import_roster(&csv);
}

pub fn enroll(room: &Room, id: &str, photos: &[&Path]) -> std::process::Output {
    let mut args = vec!["face", "enroll", "--student", id];
    args.extend(photos.iter().map(|p| p.to_str().unwrap()));
    room.command(&args)
}

/// A folder of frames: photos of three of the five (rose_leslie and alex_lacamoire stay away)
/// and a stranger who stands still for two frames, in the order a camera might see them.
pub fn frames(dir: &Path) -> PathBuf {
    let folder = dir.join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    let sequence = [
        "probe/obama_720p.jpg",
        "probe/group_two_people.jpg",
        "probe/kit_harington_b.jpg",
        "probe/stranger_a.png",
        "probe/stranger_a.png",
        "probe/kit_harington_c.jpg",
        "probe/obama_b.jpg",
    ];
    for (index, file) in sequence.iter().enumerate() {
        let extension = Path::new(file).extension().unwrap().to_str().unwrap();
        std::fs::copy(
            faces().join(file),
            folder.join(format!("frame{index:03}.{extension}")),
        )
        .unwrap();
    }
    folder
}

/// The photo at `relative` as a print held up to the camera, saved as a JPEG
/// frame in `dir`: its main face (found by `face detect`) with the surroundings
/// cut out, shrunk to half, given a white border and shown on a plain wall in
/// a 1280x720 frame.
pub fn held_up_print(room: &Room, relative: &str, dir: &Path) -> PathBuf {
    let path = faces().join(relative);
    let detected = room.command(&["face", "detect", path.to_str().unwrap()]);
    assert!(
        detected.status.success(),
        "{}",
        String::from_utf8_lossy(&detected.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&detected.stdout).unwrap();
    let area = |face: &serde_json::Value| {
        let b: Vec<f64> = face["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        ((b[2] - b[0]) * (b[3] - b[1]), b)
    };
    let (_, bbox) = json["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(area)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    let photo = image::open(&path).unwrap().into_rgb8();
    let (centre_x, centre_y, width, height) = (
        (bbox[0] + bbox[2]) / 2.0,
        (bbox[1] + bbox[3]) / 2.0,
        bbox[2] - bbox[0],
        bbox[3] - bbox[1],
    );
    let left = (centre_x - 1.5 * width).max(0.0) as u32;
    let top = (centre_y - 1.8 * height).max(0.0) as u32;
    let right = ((centre_x + 1.5 * width) as u32).min(photo.width());
    let bottom = ((centre_y + 1.8 * height) as u32).min(photo.height());
    let cut = image::imageops::crop_imm(&photo, left, top, right - left, bottom - top).to_image();
    let shrunk = image::imageops::resize(
        &cut,
        cut.width() / 2,
        cut.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    let border = 8;
    let mut print = image::RgbImage::from_pixel(
        shrunk.width() + 2 * border,
        shrunk.height() + 2 * border,
        image::Rgb([245, 245, 245]),
    );
    image::imageops::overlay(&mut print, &shrunk, border as i64, border as i64);
    let mut frame = image::RgbImage::from_pixel(1280, 720, image::Rgb([140, 120, 100]));
    image::imageops::overlay(&mut frame, &print, 900, 150);
    let name = Path::new(relative).file_stem().unwrap().to_str().unwrap();
    let out = dir.join(format!("{name}_held_up.jpg"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 90)
        .encode_image(&frame)
        .unwrap();
    out
}

/// The liveness scores `face detect` gives the faces of `photo`.
pub fn liveness_scores(room: &Room, photo: &Path) -> Vec<f64> {
    let detected = room.command(&["face", "detect", photo.to_str().unwrap()]);
    assert!(
        detected.status.success(),
        "{}",
        String::from_utf8_lossy(&detected.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&detected.stdout).unwrap();
    json["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|face| face["liveness"].as_f64().unwrap())
        .collect()
}

/// The marks of the room's roll calls as (status, source) by pupil, and the closed session.
pub fn roll_of(
    room: &Room,
) -> (
    BTreeMap<String, (MarkStatus, MarkSource)>,
    AttendanceSession,
) {
    let store = Store::open(&room.database(), Arc::new(SystemClock)).unwrap();
    let events =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000).unwrap();
    let mut marks = BTreeMap::new();
    let mut closed = None;
    for event in &events {
        match event.payload().unwrap() {
            Some(Payload::AttendanceMark(mark)) => {
                assert!(
                    marks
                        .insert(mark.personal_id.clone(), (mark.status(), mark.source()))
                        .is_none(),
                    "one mark a pupil: {mark:?}"
                );
            }
            Some(Payload::AttendanceSession(session)) if session.phase() == Phase::Closed => {
                closed = Some(session)
            }
            _ => {}
        }
    }
    (marks, closed.expect("the roll call closed"))
}
