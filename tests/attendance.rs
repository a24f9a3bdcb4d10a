//! The roll call end to end: a roster imported and five people enrolled with
//! the real binary, then the daemon plays a sequence of photos as a camera
//! would deliver them, and the marks land in the store's outbox.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Room, http_get, repo_root, shared_testdata};
use firmware_agent::proto::event::Payload;
use firmware_agent::proto::{MarkSource, MarkStatus};

const PEOPLE: [(&str, &str); 5] = [
    ("001206001000", "alex_lacamoire"),
    ("001206001001", "biden"),
    ("001206001002", "kit_harington"),
    ("001206001003", "obama"),
    ("001206001004", "rose_leslie"),
];
/// A pupil of the class whose parents gave no face consent.
const NO_CONSENT: &str = "001206001005";

fn faces() -> PathBuf {
    shared_testdata().join("faces")
}

/// The models and runtime as `make setup` installs them, named in the config so
/// the test does not depend on the environment `make` sets.
fn models_config() -> String {
    let root = repo_root();
    let models = std::env::var("FIRMWARE_AGENT_MODELS").unwrap_or_else(|_| root.join("models").display().to_string());
    let library = std::env::var("ORT_DYLIB_PATH")
        .unwrap_or_else(|_| root.join(".local/onnxruntime/libonnxruntime.so").display().to_string());
    format!("models_dir = \"{models}\"\nonnxruntime_library = \"{library}\"\n")
}

fn attendance_room(source: &str) -> Room {
    let room = Room::new(&format!(
        "[attendance]\nenabled = true\nclass = \"6A1\"\nconfirm_frames = 2\nlate_after_minutes = 0.25\nwindow_minutes = 0.5\n{}\n[attendance.source]\n{source}\n",
        models_config()
    ));
    let mut csv = String::from("role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n");
    for (id, person) in PEOPLE {
        csv.push_str(&format!("pupil,{id},{person},6A1,yes,yes,2026-08-20\n"));
    }
    csv.push_str(&format!("pupil,{NO_CONSENT},Lò Văn Páo,6A1,no,no,\n"));
    let roster = room.dir.path().join("roster.csv");
    std::fs::write(&roster, csv).unwrap();
    let imported = room.command(&["roster", "import", roster.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    room
}

fn enroll(room: &Room, id: &str, photos: &[&Path]) -> std::process::Output {
    let mut args = vec!["face", "enroll", "--student", id];
    args.extend(photos.iter().map(|p| p.to_str().unwrap()));
    room.command(&args)
}

/// A folder of frames: photos of three of the five (rose_leslie and alex_lacamoire stay away)
/// and a stranger who stands still for two frames, in the order a camera might see them.
fn frames(dir: &Path) -> PathBuf {
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
        std::fs::copy(faces().join(file), folder.join(format!("frame{index:03}.{extension}"))).unwrap();
    }
    folder
}

#[test]
fn the_camera_takes_the_roll_and_the_marks_reach_the_outbox() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = frames(scratch.path());
    let room = attendance_room(&format!("kind = \"folder\"\npath = \"{}\"\nrate = 4.0\nrepeat = true\n", folder.display()));

    for (id, person) in PEOPLE {
        let photo = faces().join(format!("enroll/{person}/{person}_a.jpg"));
        let enrolled = enroll(&room, id, &[&photo]);
        assert!(enrolled.status.success(), "{person}: {}", String::from_utf8_lossy(&enrolled.stderr));
    }
    let refused = enroll(&room, NO_CONSENT, &[&faces().join("enroll/obama/obama_a.jpg")]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no face consent"));

    let agent = room.start();
    agent.wait_for_log("roll call opened", Duration::from_secs(60));
    agent.wait_for_log("roll call closed", Duration::from_secs(120));

    let store = firmware_agent::store::Store::open(&room.database(), std::sync::Arc::new(firmware_agent::clock::SystemClock)).unwrap();
    let events = firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000).unwrap();
    let mut marks = std::collections::BTreeMap::new();
    let mut sessions = Vec::new();
    for event in &events {
        match event.payload().unwrap() {
            Some(Payload::AttendanceMark(mark)) => {
                assert!(marks.insert(mark.personal_id.clone(), (mark.status(), mark.source())).is_none(), "one mark per pupil");
            }
            Some(Payload::AttendanceSession(session)) => sessions.push(session),
            _ => {}
        }
    }
    let log = agent.log.lock().unwrap().join("\n");
    let seen = |id: &str| {
        let (status, source) = *marks.get(id).unwrap_or_else(|| panic!("{id} has no mark: {marks:?}\n{log}"));
        assert!(matches!(status, MarkStatus::Present | MarkStatus::Late), "{id}: {status:?}");
        assert_eq!(source, MarkSource::Face);
    };
    for id in ["001206001001", "001206001002", "001206001003"] {
        seen(id);
    }
    for id in ["001206001000", "001206001004", NO_CONSENT] {
        assert_eq!(marks[id], (MarkStatus::Absent, MarkSource::WindowClosed), "{id} never came");
    }
    assert_eq!(sessions.len(), 2, "opened and closed");
    let closed = &sessions[1];
    assert_eq!(closed.present + closed.late, 3);
    assert_eq!((closed.absent, closed.enrolled), (3, 5));
    assert!(closed.unknown_faces >= 1, "the stranger is counted");

    let (_, health) = http_get(room.http, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["subsystems"]["attendance"]["state"], "ok", "{health}");
}

#[test]
fn a_missing_model_stops_attendance_alone_and_a_vanished_camera_is_retried() {
    let scratch = tempfile::tempdir().unwrap();
    let models = scratch.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let room = Room::new(&format!(
        "[attendance]\nenabled = true\nclass = \"6A1\"\nmodels_dir = \"{}\"\n",
        models.display()
    ));
    let agent = room.start();
    agent.wait_for_log("attendance stopped", Duration::from_secs(20));
    let (status, body) = http_get(room.http, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(health["subsystems"]["attendance"]["state"], "failed");
    let detail = health["subsystems"]["attendance"]["detail"].as_str().unwrap();
    assert!(detail.contains("fr_detect.onnx: the face model is missing") && detail.contains("models/install"), "{detail}");
    assert_eq!(health["subsystems"]["http"]["state"], "ok", "the rest of the agent runs on");
    drop(agent);

    // A camera that is not there: the source is retried, shown degraded, and nothing crashes.
    let room = attendance_room("kind = \"ip_camera\"\nurl = \"http://127.0.0.1:9/video.mjpg\"\n");
    let mut agent = room.start();
    agent.wait_for_log("attendance_source", Duration::from_secs(60));
    let (_, body) = http_get(room.http, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["subsystems"]["attendance_source"]["state"], "degraded", "{health}");
    assert!(health["subsystems"]["attendance_source"]["detail"].as_str().unwrap().contains("retrying"), "{health}");
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(0));
}

#[test]
fn face_commands_detect_compare_and_forget() {
    let room = attendance_room("kind = \"folder\"\npath = \"frames\"\n");
    let probe = faces().join("probe/group_two_people.jpg");
    let detected = room.command(&["face", "detect", probe.to_str().unwrap()]);
    assert!(detected.status.success(), "{}", String::from_utf8_lossy(&detected.stderr));
    let json: serde_json::Value = serde_json::from_slice(&detected.stdout).unwrap();
    let found = json["faces"].as_array().unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0]["landmarks"].as_array().unwrap().len(), 5);
    assert_eq!(found[0]["box"].as_array().unwrap().len(), 4);

    let obama_a = faces().join("enroll/obama/obama_a.jpg");
    let compare = |other: &str| room.command(&["face", "compare", obama_a.to_str().unwrap(), faces().join(other).to_str().unwrap()]);
    let same = compare("probe/obama_c.jpg");
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stderr));
    let verdict: serde_json::Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(verdict["verdict"], "same_person");
    assert_eq!(compare("probe/biden_b.jpg").status.code(), Some(1));
    let truncated = room.dir.path().join("truncated.jpg");
    let bytes = std::fs::read(faces().join("probe/obama_b.jpg")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let broken = room.command(&["face", "compare", obama_a.to_str().unwrap(), truncated.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("cut short"), "{}", String::from_utf8_lossy(&broken.stderr));

    let (id, person) = PEOPLE[3];
    let group = faces().join("probe/group_two_people.jpg");
    let photo = faces().join(format!("enroll/{person}/{person}_a.jpg"));
    let enrolled = enroll(&room, id, &[&photo, &group]);
    assert!(enrolled.status.success());
    assert!(String::from_utf8_lossy(&enrolled.stderr).contains("group_two_people.jpg: refused: 2 faces of similar size"));
    let forgotten = room.command(&["face", "forget", "--student", id]);
    assert!(forgotten.status.success());
    assert!(String::from_utf8_lossy(&forgotten.stdout).contains("1 face template(s) erased"));
}
