//! The roll call end to end: a roster imported and five people enrolled with
//! the real binary, then the daemon plays a sequence of photos as a camera
//! would deliver them, and the marks land in the store's outbox.
//!
//! The daemon runs on simulated time (`Room::start_at`): the test opens the
//! first period's roll call and closes it by moving the clock, so what it
//! checks does not depend on how fast the machine is. One test runs on the
//! real clock, as a room does.

#[path = "common/classroom.rs"]
mod classroom;
mod common;

use std::time::Duration;

use classroom::{
    FIRST_PERIOD, MONDAY_0659, MONDAY_0700, MONDAY_0715, NO_CONSENT, PEOPLE, RULES,
    attendance_room, attendance_room_with, enroll, faces, frames, held_up_print, liveness_scores,
    metric_now, present_by_face, roll_of, wait_for_all, wait_for_metric,
};
use common::{Room, http_get, local_time_in, metric};
use firmware_agent::proto::event::Payload;
use firmware_agent::proto::{MarkSource, MarkStatus};

#[test]
fn the_camera_takes_the_roll_and_the_marks_reach_the_outbox() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = frames(scratch.path());
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 4.0\nrepeat = true\n",
        folder.display()
    );
    let room = attendance_room_with(&source, RULES, FIRST_PERIOD);

    for (id, person) in PEOPLE {
        let photo = faces().join(format!("enroll/{person}/{person}_a.jpg"));
        let enrolled = enroll(&room, id, &[&photo]);
        assert!(
            enrolled.status.success(),
            "{person}: {}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
    }
    let refused = enroll(
        &room,
        NO_CONSENT,
        &[&faces().join("enroll/obama/obama_a.jpg")],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no face consent"));

    let mut agent = room.start_at(MONDAY_0659);
    agent.advance_to(MONDAY_0700);
    let opened = agent.wait_for_log("roll call opened", Duration::from_secs(20));
    assert!(
        opened.contains("lesson=2026-09-07/Sáng/1"),
        "the first period's roll call: {opened}"
    );
    let seen = ["001206001001", "001206001002", "001206001003"];
    let needles: Vec<String> = seen
        .iter()
        .map(|id| present_by_face(id))
        .chain(["unknown faces counted".to_owned()])
        .collect();
    wait_for_all(
        &agent,
        &needles.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(60),
    );
    agent.advance_to(MONDAY_0715);
    agent.wait_for_log("roll call closed", Duration::from_secs(20));

    let store = firmware_agent::store::Store::open(
        &room.database(),
        std::sync::Arc::new(firmware_agent::clock::SystemClock),
    )
    .unwrap();
    let events =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000).unwrap();
    let mut marks = std::collections::BTreeMap::new();
    let mut summaries = Vec::new();
    for event in &events {
        match event.payload().unwrap() {
            Some(Payload::AttendanceMark(mark)) => {
                assert!(
                    marks
                        .insert(mark.personal_id.clone(), (mark.status(), mark.source()))
                        .is_none(),
                    "one mark per pupil"
                );
            }
            Some(Payload::AttendanceSession(summary)) => {
                summaries.push((event.occurred_at, summary))
            }
            _ => {}
        }
    }
    let log = agent.log.lock().unwrap().join("\n");
    for id in seen {
        let (status, source) = *marks
            .get(id)
            .unwrap_or_else(|| panic!("{id} has no mark: {marks:?}\n{log}"));
        assert_eq!(
            (status, source),
            (MarkStatus::Present, MarkSource::Face),
            "{id}, seen as the period began"
        );
    }
    for id in ["001206001000", "001206001004", NO_CONSENT] {
        assert_eq!(
            marks[id],
            (MarkStatus::Absent, MarkSource::WindowClosed),
            "{id} never came"
        );
    }
    assert_eq!(summaries.len(), 2, "opened and closed");
    let at = |instant: &str| instant.parse::<jiff::Timestamp>().unwrap();
    assert_eq!(
        (summaries[0].0, summaries[1].0),
        (at(MONDAY_0700), at(MONDAY_0715)),
        "opened and closed on the room's clock"
    );
    let closed = &summaries[1].1;
    assert_eq!((closed.present, closed.late), (3, 0));
    assert_eq!((closed.absent, closed.enrolled), (3, 5));
    assert!(closed.unknown_faces >= 1, "the stranger is counted");

    let (_, health) = http_get(room.http, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["subsystems"]["attendance"]["state"], "ok",
        "{health}"
    );
}

/// Between roll calls the camera runs only what the empty-room rule needs:
/// with the rule off, no frame at all once the roll call has closed; with it
/// on (ten minutes), the detector alone on one frame every thirty seconds of
/// the room's clock, however fast the camera delivers them.
#[test]
fn between_roll_calls_the_camera_runs_only_what_the_empty_room_rule_needs() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = frames(scratch.path());
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 4.0\nrepeat = true\n",
        folder.display()
    );
    let (analysed, detected) = (
        "attendance_frames_total{outcome=\"analysed\"}",
        "attendance_frames_total{outcome=\"detected\"}",
    );

    let room = attendance_room_with(
        &source,
        &format!("{RULES}empty_room_minutes = 0\n"),
        FIRST_PERIOD,
    );
    let mut agent = room.start_at(MONDAY_0659);
    agent.wait_for_log("waiting for the next period", Duration::from_secs(20));
    agent.advance_to(MONDAY_0700);
    wait_for_metric(&room, analysed, 3.0, Duration::from_secs(60));
    agent.advance_to(MONDAY_0715);
    agent.wait_for_log("roll call closed", Duration::from_secs(20));
    agent.wait_for_log(
        "frame source closed until frames are wanted",
        Duration::from_secs(20),
    );
    let after_close = metric_now(&room, analysed);
    agent.advance("40m");

    // The same camera with the rule on, while the first room's stands closed.
    let detecting = attendance_room_with(&source, RULES, FIRST_PERIOD);
    let mut looking = detecting.start_at("2026-09-07T06:00:00+07:00");
    looking.wait_for_log("waiting for the next period", Duration::from_secs(20));
    wait_for_metric(&detecting, detected, 1.0, Duration::from_secs(60));
    for wanted in 2..=4 {
        looking.advance("30s");
        wait_for_metric(
            &detecting,
            detected,
            f64::from(wanted),
            Duration::from_secs(30),
        );
    }
    let (_, scrape) = http_get(detecting.http, "/metrics");
    assert_eq!(
        metric(&scrape, detected),
        Some(4.0),
        "one frame every thirty seconds of the room's clock: {scrape}"
    );
    assert_eq!(
        metric(&scrape, analysed),
        None,
        "through the detector alone: {scrape}"
    );
    assert_eq!(
        metric(&scrape, "attendance_faces_total{check=\"models\"}"),
        None,
        "no face through the other models: {scrape}"
    );

    let (_, scrape) = http_get(room.http, "/metrics");
    let analysed_since = metric(&scrape, analysed).unwrap() - after_close;
    assert!(
        analysed_since <= 2.0,
        "only the frames in the workers' hands when the roll call closed: {analysed_since} more: {scrape}"
    );
    assert_eq!(metric(&scrape, detected), None, "nor detected: {scrape}");
}

/// Two periods back to back, the same two pupils in view throughout: each
/// period's roll call marks them present from its own frames, though the
/// camera recognised them in the period before (the agent then spares their
/// faces the costly stages, which must not slow the next roll call down).
#[test]
fn each_period_takes_its_own_roll_of_the_pupils_who_stay_in_view() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        faces().join("probe/group_two_people.jpg"),
        folder.join("frame000.jpg"),
    )
    .unwrap();
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 2.0\nrepeat = true\n",
        folder.display()
    );
    // Late after 3 s; each window closes after 12 s, before the next period
    // starts. Confirmed afresh (two frames), a pupil is present within about
    // a second; confirmed only by the rechecks of faces recognised in the
    // period before (every eleventh frame), at 5.5 s at the earliest: late.
    let rules = "late_after_minutes = 0.05\nwindow_minutes = 0.2\n";
    let timetable = format!(
        "[[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         periods = [{{ start = \"{}\", end = \"{}\" }}, {{ start = \"{}\", end = \"{}\" }}]\n\n\
         [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = {{ type = \"simulated\" }}\n",
        local_time_in(6),
        local_time_in(20),
        local_time_in(22),
        local_time_in(36)
    );
    let room = attendance_room_with(&source, rules, &timetable);
    let pair = [PEOPLE[1], PEOPLE[3]];
    // A third enrolled pupil stays out of view, so each roll call keeps
    // looking for faces all period instead of resting once the pair is marked.
    for (id, person) in [PEOPLE[0], PEOPLE[1], PEOPLE[3]] {
        let enrolled = enroll(
            &room,
            id,
            &[&faces().join(format!("enroll/{person}/{person}_a.jpg"))],
        );
        assert!(
            enrolled.status.success(),
            "{person}: {}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
    }

    let agent = room.start();
    for _ in 0..2 {
        agent.wait_for_log("roll call closed", Duration::from_secs(90));
    }
    let store = firmware_agent::store::Store::open(
        &room.database(),
        std::sync::Arc::new(firmware_agent::clock::SystemClock),
    )
    .unwrap();
    let events =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000).unwrap();
    let mut marks =
        std::collections::BTreeMap::<String, Vec<(String, MarkStatus, MarkSource)>>::new();
    for event in &events {
        if let Some(Payload::AttendanceMark(mark)) = event.payload().unwrap() {
            marks.entry(mark.lesson_id.clone()).or_default().push((
                mark.personal_id.clone(),
                mark.status(),
                mark.source(),
            ));
        }
    }
    let lessons: Vec<&String> = marks.keys().collect();
    assert_eq!(lessons.len(), 2, "one roll call a period: {marks:?}");
    for (lesson, lesson_marks) in &marks {
        for (id, person) in pair {
            let found: Vec<_> = lesson_marks
                .iter()
                .filter(|(pupil, ..)| pupil == id)
                .collect();
            assert_eq!(
                found,
                [&(id.to_owned(), MarkStatus::Present, MarkSource::Face)],
                "{person} in {lesson}: {lesson_marks:?}"
            );
        }
        let absent = lesson_marks
            .iter()
            .filter(|(_, status, _)| *status == MarkStatus::Absent)
            .count();
        assert_eq!(
            absent,
            PEOPLE.len() + 1 - pair.len(),
            "everyone else is absent in {lesson}: {lesson_marks:?}"
        );
    }

    // Most of the time the two seated pupils' faces took their tracks' standing
    // matches instead of the models, as /metrics shows. One scrape, as the
    // agent goes on counting; a frame may be counted between its series.
    let (_, scrape) = http_get(room.http, "/metrics");
    let count = |series: &str| metric(&scrape, series).unwrap_or(0.0);
    let analysed = count("attendance_frames_total{outcome=\"analysed\"}");
    let (standing, models) = (
        count("attendance_faces_total{check=\"standing\"}"),
        count("attendance_faces_total{check=\"models\"}"),
    );
    assert!(
        analysed >= 20.0,
        "the camera's frames were analysed: {analysed}"
    );
    assert!(
        (standing + models - 2.0 * analysed).abs() <= 2.0,
        "two faces a frame: {standing} + {models} faces in {analysed} frames"
    );
    assert!(
        standing > 2.0 * models,
        "recognised faces were spared the models: {standing} standing, {models} through the models"
    );
}

#[test]
fn with_the_liveness_check_on_a_photo_held_up_to_the_camera_marks_nobody() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 4.0\nrepeat = true\n",
        folder.display()
    );
    let room = attendance_room_with(&source, &format!("{RULES}liveness = true\n"), FIRST_PERIOD);
    let (obama_id, _) = PEOPLE[3];
    let (kit_id, _) = PEOPLE[2];
    for (id, person) in [PEOPLE[2], PEOPLE[3]] {
        let enrolled = enroll(
            &room,
            id,
            &[&faces().join(format!("enroll/{person}/{person}_a.jpg"))],
        );
        assert!(
            enrolled.status.success(),
            "{person}: {}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
    }

    // Kit stands in front of the camera; somebody holds up a print of Obama's photo.
    let print = held_up_print(&room, "probe/obama_d.jpg", scratch.path());
    let straight = faces().join("probe/kit_harington_b.jpg");
    let (print_scores, straight_scores) = (
        liveness_scores(&room, &print),
        liveness_scores(&room, &straight),
    );
    assert!(
        print_scores.len() == 1 && print_scores[0] < 0.5,
        "face detect shows the print's low score: {print_scores:?}"
    );
    assert!(
        straight_scores.len() == 1 && straight_scores[0] >= 0.5,
        "and a straight face's high one: {straight_scores:?}"
    );
    // Without the check the print would pass for Obama: it is the check that keeps him absent.
    let obama_a = faces().join("enroll/obama/obama_a.jpg");
    let recognised = room.command(&[
        "face",
        "compare",
        obama_a.to_str().unwrap(),
        print.to_str().unwrap(),
    ]);
    assert_eq!(
        recognised.status.code(),
        Some(0),
        "the print is recognised as Obama: {}",
        String::from_utf8_lossy(&recognised.stdout)
    );
    for index in 0..6 {
        let from = if index < 3 { &print } else { &straight };
        std::fs::copy(from, folder.join(format!("frame{index:03}.jpg"))).unwrap();
    }

    let mut agent = room.start_at(MONDAY_0659);
    agent.advance_to(MONDAY_0700);
    agent.wait_for_log("roll call opened", Duration::from_secs(20));
    // Kit is marked, and the camera goes on until it has seen each photo of the sequence at least five times.
    agent.wait_for_log(&present_by_face(kit_id), Duration::from_secs(60));
    wait_for_metric(
        &room,
        "attendance_frames_total{outcome=\"analysed\"}",
        30.0,
        Duration::from_secs(90),
    );
    agent.advance_to(MONDAY_0715);
    agent.wait_for_log("roll call closed", Duration::from_secs(20));
    let (marks, closed) = roll_of(&room);
    assert_eq!(
        marks[obama_id],
        (MarkStatus::Absent, MarkSource::WindowClosed),
        "the print marked nobody: {marks:?}"
    );
    assert_eq!(
        marks[kit_id],
        (MarkStatus::Present, MarkSource::Face),
        "the pupil in front of the camera is marked: {marks:?}"
    );
    assert!(
        closed.photos_refused >= 1,
        "the print is counted as refused: {closed:?}"
    );
    assert_eq!(
        closed.unknown_faces, 0,
        "a refused print is not an unknown face"
    );
}

/// No face for the rule's ten minutes between periods switches the lights
/// off, once, however many empty frames follow.
#[test]
fn a_room_the_camera_sees_empty_has_its_lights_switched_off_as_automation() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    image::RgbImage::from_pixel(640, 480, image::Rgb([180, 170, 160]))
        .save(folder.join("empty_room.png"))
        .unwrap();
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 4.0\nrepeat = true\n",
        folder.display()
    );
    let light = "[[actuators.device]]\nname = \"lights\"\nkind = \"light\"\nzone = \"front\"\ndriver = { type = \"simulated\" }\n";
    let room = attendance_room_with(
        &source,
        &format!("{RULES}empty_room_minutes = 10\n"),
        &format!("{FIRST_PERIOD}\n{light}"),
    );
    let detected = "attendance_frames_total{outcome=\"detected\"}";
    // After the morning's first period: no roll call open, the camera looks every thirty seconds.
    let mut agent = room.start_at("2026-09-07T11:30:00+07:00");
    wait_for_metric(&room, detected, 1.0, Duration::from_secs(60));
    agent.advance("9m 30s");
    wait_for_metric(&room, detected, 2.0, Duration::from_secs(30));
    assert!(
        !agent
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("the room is empty")),
        "not yet ten minutes"
    );
    agent.advance("30s");
    agent.wait_for_log(
        "no face seen for 10 min 0 s: the room is empty",
        Duration::from_secs(30),
    );
    agent.wait_for_log(
        "command=off cause=\"AUTOMATION\" outcome=\"DONE\"",
        Duration::from_secs(10),
    );
    for wanted in 4..=6 {
        agent.advance("30s");
        wait_for_metric(&room, detected, f64::from(wanted), Duration::from_secs(30));
    }

    let store = firmware_agent::store::Store::open(
        &room.database(),
        std::sync::Arc::new(firmware_agent::clock::SystemClock),
    )
    .unwrap();
    let events =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000).unwrap();
    let switched_off: Vec<_> = events
        .iter()
        .filter_map(|event| match event.payload().unwrap() {
            Some(Payload::Actuation(actuation)) if actuation.command == "off" => {
                Some((event.occurred_at, actuation))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        switched_off.len(),
        1,
        "once, not at every empty frame: {switched_off:?}"
    );
    let (at, off) = &switched_off[0];
    assert_eq!(
        *at,
        "2026-09-07T11:40:00+07:00"
            .parse::<jiff::Timestamp>()
            .unwrap(),
        "ten minutes after the last face"
    );
    assert_eq!(off.device, "lights");
    assert_eq!(
        off.cause(),
        firmware_agent::proto::actuation::Cause::Automation
    );
    assert!(off.detail.contains("phòng trống"), "{off:?}");
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
    let detail = health["subsystems"]["attendance"]["detail"]
        .as_str()
        .unwrap();
    assert!(
        detail.contains("fr_detect.onnx: the face model is missing")
            && detail.contains("models/install"),
        "{detail}"
    );
    assert_eq!(
        health["subsystems"]["http"]["state"], "ok",
        "the rest of the agent runs on"
    );
    drop(agent);

    // A camera that is not there: the source is retried, shown degraded, and nothing crashes.
    let room = attendance_room("kind = \"ip_camera\"\nurl = \"http://127.0.0.1:9/video.mjpg\"\n");
    let mut agent = room.start();
    agent.wait_for_log("attendance_source", Duration::from_secs(60));
    let (_, body) = http_get(room.http, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health["subsystems"]["attendance_source"]["state"], "degraded",
        "{health}"
    );
    assert!(
        health["subsystems"]["attendance_source"]["detail"]
            .as_str()
            .unwrap()
            .contains("retrying"),
        "{health}"
    );
    agent.signal(libc::SIGTERM);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn face_commands_detect_compare_and_forget() {
    let room = attendance_room("kind = \"folder\"\npath = \"frames\"\n");
    let probe = faces().join("probe/group_two_people.jpg");
    let detected = room.command(&["face", "detect", probe.to_str().unwrap()]);
    assert!(
        detected.status.success(),
        "{}",
        String::from_utf8_lossy(&detected.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&detected.stdout).unwrap();
    let found = json["faces"].as_array().unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0]["landmarks"].as_array().unwrap().len(), 5);
    assert_eq!(found[0]["box"].as_array().unwrap().len(), 4);

    let obama_a = faces().join("enroll/obama/obama_a.jpg");
    let compare = |other: &str| {
        room.command(&[
            "face",
            "compare",
            obama_a.to_str().unwrap(),
            faces().join(other).to_str().unwrap(),
        ])
    };
    let same = compare("probe/obama_c.jpg");
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(verdict["verdict"], "same_person");
    assert_eq!(compare("probe/biden_b.jpg").status.code(), Some(1));
    let truncated = room.dir.path().join("truncated.jpg");
    let bytes = std::fs::read(faces().join("probe/obama_b.jpg")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let broken = room.command(&[
        "face",
        "compare",
        obama_a.to_str().unwrap(),
        truncated.to_str().unwrap(),
    ]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("cut short"),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );

    let (id, person) = PEOPLE[3];
    let group = faces().join("probe/group_two_people.jpg");
    let photo = faces().join(format!("enroll/{person}/{person}_a.jpg"));
    let enrolled = enroll(&room, id, &[&photo, &group]);
    assert!(enrolled.status.success());
    assert!(
        String::from_utf8_lossy(&enrolled.stderr)
            .contains("group_two_people.jpg: refused: 2 faces of similar size")
    );
    let forgotten = room.command(&["face", "forget", "--student", id]);
    assert!(forgotten.status.success());
    assert!(String::from_utf8_lossy(&forgotten.stdout).contains("1 face template(s) erased"));
}

#[test]
fn models_install_replaces_an_altered_model_from_the_checked_package() {
    let root = common::repo_root();
    let scratch = tempfile::tempdir().unwrap();
    let (models, local) = (scratch.path().join("models"), scratch.path().join(".local"));
    std::fs::create_dir_all(&models).unwrap();
    for file in ["install", "manifest.csv", "packages.csv"] {
        std::fs::copy(root.join("models").join(file), models.join(file)).unwrap();
    }
    // Everything in place as `make setup` left it, the package already downloaded: no network needed.
    let installed = std::env::var_os("FIRMWARE_AGENT_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    for model in [
        "fr_detect.onnx",
        "fr_feature.onnx",
        "fr_liveness.onnx",
        "onet.onnx",
    ] {
        std::fs::copy(installed.join(model), models.join(model)).unwrap();
    }
    std::fs::create_dir_all(local.join("downloads")).unwrap();
    std::os::unix::fs::symlink(root.join(".local/onnxruntime"), local.join("onnxruntime")).unwrap();
    std::os::unix::fs::symlink(root.join(".local/venv"), local.join("venv")).unwrap();
    let package = "faceplugin-face-recognition-js-0.0.1.tgz";
    std::fs::copy(
        root.join(".local/downloads").join(package),
        local.join("downloads").join(package),
    )
    .unwrap();

    std::fs::write(
        models.join("fr_liveness.onnx"),
        b"a model swapped for something else",
    )
    .unwrap();
    let run = std::process::Command::new(models.join("install"))
        .env_remove("FIRMWARE_AGENT_MODELS")
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{output}");
    assert!(
        output.contains(
            "installed fr_liveness.onnx (MIT) from npm faceplugin-face-recognition-js 0.0.1"
        ),
        "{output}"
    );
    assert!(
        !output.contains("installed fr_detect.onnx"),
        "models in place are left alone: {output}"
    );
    let replaced = std::fs::read(models.join("fr_liveness.onnx")).unwrap();
    assert_eq!(
        replaced,
        std::fs::read(installed.join("fr_liveness.onnx")).unwrap(),
        "the checked model is back"
    );
}

/// A photo as many IP cameras send it: an EXIF segment (APP1) after the start
/// marker, carrying a thumbnail that is itself a whole JPEG.
fn with_exif_thumbnail(photo: &[u8]) -> Vec<u8> {
    let thumbnail = faces().join("probe/kit_harington_b.jpg");
    let thumbnail = image::open(thumbnail).unwrap().thumbnail(16, 16).to_rgb8();
    let mut encoded = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut encoded)
        .encode_image(&thumbnail)
        .unwrap();
    let payload = [b"Exif\0\0".as_slice(), &encoded].concat();
    let length = u16::try_from(payload.len() + 2).unwrap().to_be_bytes();
    [&photo[..2], &[0xFF, 0xE1], &length, &payload, &photo[2..]].concat()
}

#[test]
fn an_ip_camera_behind_a_password_takes_the_roll_and_its_password_is_never_shown() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    // A camera on loopback that asks for basic auth and sends its frames as a
    // chunked multipart stream, four a second, until the test ends.
    let photo = with_exif_thumbnail(&std::fs::read(faces().join("probe/obama_720p.jpg")).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let camera = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut refused = 0;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if stop.load(Ordering::SeqCst) {
                    return refused;
                }
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).is_ok() {
                    request.push(byte[0]);
                }
                // `Basic` of "camera:m4t-khau-9" (the URL's user and password).
                let authorised = String::from_utf8_lossy(&request).lines().any(|line| {
                    line.split_once(':').is_some_and(|(name, value)| {
                        name.eq_ignore_ascii_case("authorization")
                            && value.trim() == "Basic Y2FtZXJhOm00dC1raGF1LTk="
                    })
                });
                if !authorised {
                    refused += 1;
                    let _ =
                        stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=cam\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                while !stop.load(Ordering::SeqCst) {
                    let part = [
                        b"--cam\r\nContent-Type: image/jpeg\r\n\r\n".as_slice(),
                        &photo,
                        b"\r\n",
                    ]
                    .concat();
                    let chunked =
                        [format!("{:x}\r\n", part.len()).as_bytes(), &part, b"\r\n"].concat();
                    if stream.write_all(&chunked).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            refused
        })
    };

    let source =
        format!("kind = \"ip_camera\"\nurl = \"http://camera:m4t-khau-9@{address}/video.mjpg\"\n");
    let room = attendance_room_with(&source, RULES, FIRST_PERIOD);
    let photo = faces().join("enroll/obama/obama_a.jpg");
    assert!(enroll(&room, "001206001003", &[&photo]).status.success());
    let mut agent = room.start_at(MONDAY_0659);
    agent.advance_to(MONDAY_0700);
    agent.wait_for_log(&present_by_face("001206001003"), Duration::from_secs(60));
    let (_, health) = http_get(room.http, "/healthz");
    assert!(!health.contains("m4t-khau-9"), "{health}");
    agent.signal(libc::SIGTERM);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(address);
    assert_eq!(
        camera.join().unwrap(),
        0,
        "every request carried the URL's credentials"
    );
    let log = agent.log.lock().unwrap().join("\n");
    assert!(!log.contains("m4t-khau-9"), "the password is never logged");

    // A URL that is not http(s) is refused before the agent starts, where it stands.
    let room = classroom::room_without_roster(
        "kind = \"ip_camera\"\nurl = \"rtsp://camera:m4t-khau-9@192.168.1.20/stream\"\n",
        RULES,
        "",
    );
    let (code, text) = room.check_config();
    assert_eq!(code, Some(2), "{text}");
    let line = room.config_line(|line| line.starts_with("url = "));
    assert!(
        text.contains(&format!(
            "agent.toml:{line}:1: attendance.source.url: `rtsp://camera:***@192.168.1.20/stream` is not an http:// or https:// URL"
        )),
        "{text}"
    );
    assert!(!text.contains("m4t-khau-9"), "{text}");
}
