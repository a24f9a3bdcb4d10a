//! The room's people changing under the running agent, with the real binary
//! (run with `cargo bench --bench people`, `ORT_DYLIB_PATH` and
//! `FIRMWARE_AGENT_MODELS` set as the Makefile sets them):
//! - how long after `face forget` returns the running roll call stops
//!   recognising the pupil: the camera shows the pupil throughout; the time runs
//!   from the command's exit to the instant the daemon's log says the class was
//!   read again without them (its gallery replaced, the roll call following);
//! - a roster of 40 pupils with two templates each, pushed over gRPC on loopback
//!   to replace the same roster: the time of the call, and the templates counted
//!   after each push (none of a remaining pupil may be lost).

#[path = "../../tests/common/classroom.rs"]
mod classroom;
#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Room;
use firmware_agent::attendance::embed::{DIMENSIONS, Embedding};
use firmware_agent::clock::SystemClock;
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{self, PutRosterRequest};
use firmware_agent::store::Store;

/// Times the pupil is enrolled and forgotten beside the running roll call.
const FORGET_ROUNDS: usize = 10;
/// Pushes of the 40-pupil roster replacing itself.
const PUSH_ROUNDS: u64 = 20;
const CLASS_SIZE: usize = 40;
const TEMPLATES_EACH: usize = 2;

fn main() {
    forget_until_unrecognised();
    roster_push_replacing_itself();
}

fn forget_until_unrecognised() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        classroom::faces().join("probe/obama_720p.jpg"),
        folder.join("frame000.jpg"),
    )
    .unwrap();
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 5.0\nrepeat = true\n",
        folder.display()
    );
    let room = classroom::attendance_room_with(&source, "window_minutes = 30.0\n", "");
    let (obama, person) = classroom::PEOPLE[3];
    let photo = classroom::faces().join(format!("enroll/{person}/{person}_a.jpg"));
    let agent = room.start();
    agent.wait_for_log("roll call opened", Duration::from_secs(60));

    let mut delays = Vec::new();
    for _ in 0..FORGET_ROUNDS {
        let enrolled = classroom::enroll(&room, obama, &[&photo]);
        assert!(
            enrolled.status.success(),
            "{}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
        // The roll call follows the enrollment: its gallery has him, and the camera sees him.
        agent.wait_for_log("enrolled=1", Duration::from_secs(30));
        let forgotten = room.command(&["face", "forget", "--student", obama]);
        let returned = jiff::Timestamp::now();
        assert!(
            forgotten.status.success(),
            "{}",
            String::from_utf8_lossy(&forgotten.stderr)
        );
        let line = agent.wait_for_log("enrolled=0", Duration::from_secs(30));
        let followed: jiff::Timestamp = line.split_whitespace().next().unwrap().parse().unwrap();
        delays.push(followed.duration_since(returned).as_secs_f64() * 1000.0);
    }
    delays.sort_by(f64::total_cmp);
    println!(
        "face forget beside a running roll call, {FORGET_ROUNDS} rounds, the pupil in view at 5 frames a second: \
         from the command's return to the roll call no longer recognising him, median {:.0} ms, min {:.0} ms, max {:.0} ms",
        delays[delays.len() / 2],
        delays[0],
        delays[delays.len() - 1]
    );
}

fn roster_push_replacing_itself() {
    let room = Room::new("");
    let agent = room.start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut hub = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", room.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        SyncServiceClient::new(channel)
    });
    let pupils: Vec<proto::Pupil> = (0..CLASS_SIZE)
        .map(|i| proto::Pupil {
            personal_id: format!("0012060{i:05}"),
            full_name: format!("Học sinh {i}"),
            class_name: "6A1".into(),
            face_consent: true,
            learning_data_consent: true,
            consent_date: "2026-08-20".into(),
        })
        .collect();
    let push = |version: u64| PutRosterRequest {
        version,
        pupils: pupils.clone(),
        teachers: vec![],
        timetable_toml: String::new(),
    };
    runtime.block_on(hub.put_roster(push(1))).unwrap();
    let store = Store::open(&room.database(), Arc::new(SystemClock)).unwrap();
    let template = Embedding(vec![1.0 / (DIMENSIONS as f32).sqrt(); DIMENSIONS]);
    for pupil in &pupils {
        store
            .add_face_templates(
                &pupil.personal_id.parse().unwrap(),
                &vec![template.clone(); TEMPLATES_EACH],
                "model",
            )
            .unwrap();
    }
    let counted = || -> usize {
        pupils
            .iter()
            .map(|p| {
                store
                    .face_template_count(&p.personal_id.parse().unwrap())
                    .unwrap()
            })
            .sum()
    };

    let mut times = Vec::new();
    let mut lost = 0;
    for version in 2..2 + PUSH_ROUNDS {
        let started = Instant::now();
        runtime.block_on(hub.put_roster(push(version))).unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        lost += CLASS_SIZE * TEMPLATES_EACH - counted();
    }
    drop(agent);
    times.sort_by(f64::total_cmp);
    println!(
        "roster push over gRPC, {CLASS_SIZE} pupils with {TEMPLATES_EACH} templates each replacing the same roster, {PUSH_ROUNDS} pushes: \
         median {:.1} ms, min {:.1} ms, max {:.1} ms; templates lost: {lost} of {}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        CLASS_SIZE * TEMPLATES_EACH
    );
}
