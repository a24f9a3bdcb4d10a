//! The room's people changing under the running agent, end to end: roster
//! pushes over gRPC after enrollment, and enrollment, `face forget` and a
//! roster import run beside a live roll call, each made by the real binary as
//! a separate process, as IT staff run them on the room's mini-PC. The roll
//! calls run on simulated time: the test opens and closes the first period's.

#[path = "common/classroom.rs"]
mod classroom;
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use classroom::{
    FIRST_PERIOD, MONDAY_0659, MONDAY_0700, MONDAY_0715, PEOPLE, RULES, attendance_room_with,
    enroll, faces, import_class, models_config, present_by_face, roll_of, room_without_roster,
    wait_for_all,
};
use common::{Room, agent_binary};
use firmware_agent::clock::SystemClock;
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{self, MarkSource, MarkStatus, PutRosterRequest};
use firmware_agent::store::Store;

/// Shows the camera (a folder source reading `frame000.jpg` at every frame) `photo`, at once and whole.
fn show(folder: &Path, photo: &Path) {
    let next = folder.join("next.tmp");
    std::fs::copy(photo, &next).unwrap();
    std::fs::rename(next, folder.join("frame000.jpg")).unwrap();
}

/// A folder the camera reads `frame000.jpg` from, showing an empty room; its source config.
fn camera(dir: &Path) -> (std::path::PathBuf, String) {
    let folder = dir.join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    image::RgbImage::from_pixel(640, 480, image::Rgb([180, 170, 160]))
        .save(folder.join("frame000.jpg"))
        .unwrap();
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 4.0\nrepeat = true\n",
        folder.display()
    );
    (folder, source)
}

fn enroll_ok(room: &Room, index: usize) {
    let (id, person) = PEOPLE[index];
    let enrolled = enroll(
        room,
        id,
        &[&faces().join(format!("enroll/{person}/{person}_a.jpg"))],
    );
    assert!(
        enrolled.status.success(),
        "{person}: {}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
}

/// Whether `id` was marked present by face: seen while the clock stood at the period's start.
fn marked_by_face(
    marks: &std::collections::BTreeMap<String, (MarkStatus, MarkSource)>,
    id: &str,
) -> bool {
    matches!(marks.get(id), Some((MarkStatus::Present, MarkSource::Face)))
}

/// Obama is enrolled when the roll call opens and Biden is not; while it runs,
/// Biden is enrolled and Obama forgotten, each by its own command. Only then
/// do both come into view: Biden is marked, Obama's face marks nobody.
#[test]
fn enrollment_and_face_forget_beside_a_running_roll_call_take_effect_without_a_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let (folder, source) = camera(scratch.path());
    let room = attendance_room_with(&source, RULES, FIRST_PERIOD);
    let ((biden, _), (obama, _)) = (PEOPLE[1], PEOPLE[3]);
    enroll_ok(&room, 3);
    let mut agent = room.start_at(MONDAY_0659);
    agent.advance_to(MONDAY_0700);
    agent.wait_for_log("roll call opened", Duration::from_secs(20));

    enroll_ok(&room, 1);
    let forgotten = room.command(&["face", "forget", "--student", obama]);
    assert!(
        forgotten.status.success(),
        "{}",
        String::from_utf8_lossy(&forgotten.stderr)
    );
    agent.advance("1s");
    show(&folder, &faces().join("probe/group_two_people.jpg"));

    wait_for_all(
        &agent,
        &[&present_by_face(biden), "unknown faces counted"],
        Duration::from_secs(60),
    );
    agent.advance_to(MONDAY_0715);
    agent.wait_for_log("roll call closed", Duration::from_secs(20));
    let (marks, closed) = roll_of(&room);
    let log = agent.log.lock().unwrap().join("\n");
    assert!(
        marked_by_face(&marks, biden),
        "enrolled while the agent ran, Biden is recognised: {marks:?}\n{log}"
    );
    assert_eq!(
        marks[obama],
        (MarkStatus::Absent, MarkSource::WindowClosed),
        "forgotten, Obama is marked by nobody: {marks:?}"
    );
    assert_eq!(closed.enrolled, 1, "{closed:?}");
    assert!(
        closed.unknown_faces >= 1,
        "Obama's face is now a face the camera does not know: {closed:?}"
    );
}

/// Attendance started before the roster: it waits, says why, and takes the
/// roll once the roster is imported and the class enrolled beside it.
#[test]
fn a_class_without_pupils_waits_for_its_roster_and_then_takes_the_roll() {
    let scratch = tempfile::tempdir().unwrap();
    let (folder, source) = camera(scratch.path());
    show(&folder, &faces().join("probe/group_two_people.jpg"));
    let room = room_without_roster(&source, RULES, FIRST_PERIOD);
    let mut agent = room.start_at(MONDAY_0659);
    let waiting = agent.wait_for_log("has no pupils", Duration::from_secs(60));
    assert!(
        waiting.contains("subsystem=\"attendance\" state=Degraded")
            && waiting.contains("import the roster"),
        "{waiting}"
    );

    import_class(&room);
    enroll_ok(&room, 1);
    enroll_ok(&room, 3);
    agent.advance_to(MONDAY_0700);
    agent.wait_for_log("roll call opened", Duration::from_secs(30));
    wait_for_all(
        &agent,
        &[&present_by_face(PEOPLE[1].0), &present_by_face(PEOPLE[3].0)],
        Duration::from_secs(60),
    );
    agent.advance_to(MONDAY_0715);
    agent.wait_for_log("roll call closed", Duration::from_secs(20));
    let (marks, closed) = roll_of(&room);
    for (id, person) in [PEOPLE[1], PEOPLE[3]] {
        assert!(marked_by_face(&marks, id), "{person}: {marks:?}");
    }
    assert_eq!(closed.absent, PEOPLE.len() as u32 + 1 - 2, "{closed:?}");
}

fn pupil(index: usize, face_consent: bool) -> proto::Pupil {
    let (id, person) = PEOPLE[index];
    proto::Pupil {
        personal_id: id.into(),
        full_name: person.into(),
        class_name: "6A1".into(),
        face_consent,
        learning_data_consent: false,
        consent_date: "2026-08-20".into(),
    }
}

fn push(version: u64, pupils: Vec<proto::Pupil>) -> PutRosterRequest {
    PutRosterRequest {
        version,
        pupils,
        teachers: vec![],
        timetable_toml: String::new(),
    }
}

/// The erasure events `hub pull` prints, as (personal ID, count, reason).
fn erasures_pulled(room: &Room) -> Vec<(String, u64, String)> {
    let endpoint = format!("http://{}", room.grpc);
    let output = Command::new(agent_binary())
        .args(["hub", "pull", "--endpoint", &endpoint])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hub pull: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut found = Vec::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["kind"] == "erasure" {
            let erasure = &event["payload"]["erasure"];
            found.push((
                erasure["personal_id"].as_str().unwrap().to_owned(),
                erasure["count"].as_u64().unwrap(),
                erasure["reason"].as_str().unwrap().to_owned(),
            ));
        }
    }
    found.sort();
    found
}

/// Three pupils pushed by the hub and enrolled; the same roster pushed again,
/// then one without a pupil, one withdrawing a consent, and a CSV import
/// withdrawing another: each keeps the templates of who stays with consent,
/// and the hub pulls an erasure for each pupil whose templates went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_pushes_after_enrollment_keep_the_templates_of_who_stays_and_erase_the_rest_for_the_hub()
 {
    let room = Room::new(&format!(
        "[attendance]\nenabled = false\n{}",
        models_config()
    ));
    let room = Arc::new(room);
    let _agent = room.start_async("agent ready").await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", room.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut hub = SyncServiceClient::new(channel);
    let everyone = || vec![pupil(1, true), pupil(2, true), pupil(3, true)];
    hub.put_roster(push(1, everyone())).await.unwrap();
    let enrolling = room.clone();
    tokio::task::spawn_blocking(move || (1..=3).for_each(|index| enroll_ok(&enrolling, index)))
        .await
        .unwrap();
    let store = Store::open(&room.database(), Arc::new(SystemClock)).unwrap();
    let templates = |index: usize| {
        store
            .face_template_count(&PEOPLE[index].0.parse().unwrap())
            .unwrap()
    };

    let again = hub
        .put_roster(push(2, everyone()))
        .await
        .expect("the same roster pushed again after enrollment");
    assert_eq!(again.into_inner().pupils, 3);
    assert_eq!(
        (templates(1), templates(2), templates(3)),
        (1, 1, 1),
        "every template kept"
    );

    hub.put_roster(push(3, vec![pupil(1, true), pupil(3, true)]))
        .await
        .expect("a push that drops a pupil");
    assert_eq!(templates(2), 0, "the dropped pupil's templates are erased");
    assert!(
        store
            .pupil(&PEOPLE[2].0.parse().unwrap())
            .unwrap()
            .is_none()
    );

    hub.put_roster(push(4, vec![pupil(1, true), pupil(3, false)]))
        .await
        .expect("a push that withdraws consent");
    assert_eq!(
        (templates(1), templates(3)),
        (1, 0),
        "only the withdrawn pupil's templates are erased"
    );

    // A CSV file of one pupil whose parents withdrew consent erases hers too, and nobody else's.
    let (id, person) = PEOPLE[1];
    let csv = room.dir.path().join("withdrawn.csv");
    std::fs::write(&csv, format!("role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\npupil,{id},{person},6A1,no,no,\n")).unwrap();
    let importing = room.clone();
    let imported = tokio::task::spawn_blocking(move || {
        importing.command(&["roster", "import", csv.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        String::from_utf8_lossy(&imported.stdout)
            .contains("the face templates of 1 pupil(s) without face consent were erased")
    );
    assert_eq!(templates(1), 0);

    let pulled = tokio::task::spawn_blocking(move || erasures_pulled(&room))
        .await
        .unwrap();
    assert_eq!(
        pulled,
        vec![
            (
                PEOPLE[1].0.to_owned(),
                1,
                "face consent withdrawn in the roster".to_owned()
            ),
            (
                PEOPLE[2].0.to_owned(),
                1,
                "removed from the roster".to_owned()
            ),
            (
                PEOPLE[3].0.to_owned(),
                1,
                "face consent withdrawn in the roster".to_owned()
            ),
        ]
    );
}
