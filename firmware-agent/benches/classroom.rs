//! The whole class from one frame: the faces found of forty on the classroom
//! `tests/compose_classroom.py` composes at 4K and 1080p, and the time for one
//! frame from its JPEG bytes to every face detected, and to every face
//! described (landmarks and embedding), seen whole (the frame squeezed into
//! the detector's 320x240, as before tiles) and in tiles, in the same run;
//! then the 4K frame from its bytes to every face matched against the five
//! test people's enrollments, as the daemon's inference thread takes it, on
//! one pipeline and on a crew of two, with the liveness check off and on
//! (on with a minimum score of 0, so that every face is checked and still
//! embedded: the most work a frame can ask), side by side with the Python
//! same-model pipeline (`attendance_baseline.py`) seeing the same tiles with
//! ONNX Runtime's own two threads. Last, the resident memory of the built
//! daemon taking a roll call from a folder camera showing the 4K frame, on
//! two inference threads, read from `/proc` once it has analysed
//! [`MEMORY_FRAMES`] frames; with `BASELINE_AGENT` set to another build of
//! the agent, that build first, in the same run.
//!
//! Run with `cargo bench --bench classroom` with `ORT_DYLIB_PATH` and
//! `FIRMWARE_AGENT_MODELS` set as the Makefile sets them.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use firmware_agent::attendance::detect::iou;
use firmware_agent::attendance::enroll;
use firmware_agent::attendance::matcher::Gallery;
use firmware_agent::attendance::models::ModelSet;
use firmware_agent::attendance::pipeline::{Pipeline, decode};
use firmware_agent::attendance::recognise::{Checks, Recogniser, Verdict};
use firmware_agent::roster::PersonalId;
use serde::Deserialize;

/// Runs of each way of seeing a frame, taken in turns.
const ROUNDS: usize = 5;
/// Runs of the 4K frame to every face matched, for each crew and liveness setting.
const MATCH_ROUNDS: usize = 9;
/// Frames the daemon analyses before its memory is read.
const MEMORY_FRAMES: u64 = 12;
/// The test people the composer seats.
const PEOPLE: [&str; 5] = [
    "alex_lacamoire",
    "biden",
    "kit_harington",
    "obama",
    "rose_leslie",
];
/// A box overlapping a seat's by more than this IoU is that seat's face.
const SAME_FACE_IOU: f32 = 0.4;

#[derive(Deserialize)]
struct Composition {
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    file: String,
    faces: Vec<Seat>,
}

#[derive(Deserialize)]
struct Seat {
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

fn main() {
    let root = common::root();
    let (models_dir, library, faces) = (
        common::models_dir(),
        common::onnxruntime_library(),
        common::faces_dir(),
    );
    let scratch = tempfile::tempdir().unwrap();
    let status = Command::new(root.join(".local/venv/bin/python"))
        .arg(root.join("tests/compose_classroom.py"))
        .args([faces.as_path(), scratch.path()])
        .status()
        .expect("the set-up's Python environment runs the composer");
    assert!(status.success(), "the composer failed: {status}");
    let composition: Composition =
        serde_json::from_slice(&std::fs::read(scratch.path().join("classroom.json")).unwrap())
            .unwrap();

    let models = ModelSet::load(&models_dir, &library).unwrap_or_else(|err| panic!("{err}"));
    let mut pipeline = Pipeline::new(&models).unwrap();
    println!(
        "a class of forty in one frame, release build, one inference thread, {ROUNDS} rounds, median [min-max]"
    );
    for frame in &composition.frames {
        let bytes = std::fs::read(scratch.path().join(&frame.file)).unwrap();
        let image = decode(&bytes).unwrap();
        let smallest = smallest_face(frame);
        for (label, pixels) in [("whole", image.width()), ("tiles", smallest)] {
            pipeline.set_smallest_face(pixels);
            let boxes: Vec<[f32; 4]> = pipeline
                .find_faces(&image)
                .unwrap()
                .into_iter()
                .map(|(b, _)| b)
                .collect();
            let (found, stray) = seats_found(frame, &boxes);
            let (mut detected, mut described) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let started = Instant::now();
                pipeline.find_faces(&decode(&bytes).unwrap()).unwrap();
                detected.push(started.elapsed());
                let started = Instant::now();
                pipeline.faces(&decode(&bytes).unwrap()).unwrap();
                described.push(started.elapsed());
            }
            println!(
                "  {} ({}x{}), {label:>5}: {found} of {} faces found, {stray} stray boxes; decode to every face detected {}, to every face described {}",
                frame.file,
                image.width(),
                image.height(),
                frame.faces.len(),
                spread(&mut detected),
                spread(&mut described),
            );
        }
    }
    let four_k = &composition.frames[0];
    time_to_every_face_matched(&models, four_k, &scratch.path().join(&four_k.file), &faces);
    let mut agents = Vec::new();
    if let Some(baseline) = std::env::var_os("BASELINE_AGENT") {
        agents.push(("baseline", PathBuf::from(baseline)));
    }
    agents.push((
        "this build",
        PathBuf::from(env!("CARGO_BIN_EXE_firmware-agent")),
    ));
    println!(
        "\nthe daemon's memory during a roll call of {} on 2 inference threads, after {MEMORY_FRAMES} frames analysed",
        four_k.file
    );
    for (label, agent) in agents {
        let (high_water, resident) = daemon_memory(&agent, &scratch.path().join(&four_k.file));
        println!(
            "  {label:<10}: peak {high_water:.0} MB (VmHWM), now {resident:.0} MB (VmRSS)  {}",
            agent.display()
        );
    }
}

/// How many seats the boxes find, and how many boxes are no seat's face.
fn seats_found(frame: &Frame, boxes: &[[f32; 4]]) -> (usize, usize) {
    let mut taken = vec![false; frame.faces.len()];
    let mut stray = 0;
    for bbox in boxes {
        let best = frame
            .faces
            .iter()
            .enumerate()
            .map(|(i, s)| (i, iou(&s.bbox, bbox)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((seat, overlap)) if overlap > SAME_FACE_IOU && !taken[seat] => taken[seat] = true,
            _ => stray += 1,
        }
    }
    (taken.iter().filter(|t| **t).count(), stray)
}

fn spread(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:.0} ms [{:.0}-{:.0}]",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    )
}

/// The 4K frame from its bytes to every face matched, on crews of one and two
/// pipelines, liveness off and on, and the Python baseline on the same tiles.
fn time_to_every_face_matched(
    models: &ModelSet,
    frame: &Frame,
    path: &std::path::Path,
    faces: &std::path::Path,
) {
    let bytes = std::fs::read(path).unwrap();
    let smallest_face = smallest_face(frame);
    let mut enroller = Pipeline::new(models).unwrap();
    let gallery = Gallery::new(PEOPLE.map(|person| {
        let photo = std::fs::read(faces.join(format!("enroll/{person}/{person}_a.jpg"))).unwrap();
        let face = enroll::choose(enroller.faces(&decode(&photo).unwrap()).unwrap())
            .unwrap_or_else(|refusal| panic!("{person}: {refusal}"));
        (id_of(person), face.embedding)
    }));
    println!(
        "\n{} ({} faces) from its bytes to every face matched, {MATCH_ROUNDS} rounds, median [min-max]",
        frame.file,
        frame.faces.len()
    );
    for (label, liveness_min_score, python_liveness) in [
        ("liveness off", None, None),
        ("liveness on ", Some(0.0), Some("0")),
    ] {
        let checks = Checks {
            threshold: firmware_agent::attendance::config::DEFAULT_THRESHOLD,
            min_face: 0.0,
            liveness_min_score,
            confirm_frames: 1,
        };
        for threads in [1, 2] {
            let mut crew: Vec<Pipeline> = (0..threads)
                .map(|_| {
                    let mut pipeline = Pipeline::new(models).unwrap();
                    pipeline.set_smallest_face(smallest_face);
                    pipeline
                })
                .collect();
            let (mut times, mut identified) = (Vec::new(), 0);
            for _ in 0..MATCH_ROUNDS {
                // A fresh recogniser: no face is spared by an earlier frame's track.
                let recogniser = Recogniser::new(gallery.clone(), checks);
                let started = Instant::now();
                let verdicts = recogniser
                    .analyse(&mut crew, &decode(&bytes).unwrap())
                    .unwrap();
                times.push(started.elapsed());
                identified = verdicts
                    .iter()
                    .filter(|(_, verdict)| matches!(verdict, Verdict::Pupil(_)))
                    .count();
            }
            // Each pipeline's time in the models, a round: how the frame was shared out.
            let shares: Vec<String> = crew
                .iter_mut()
                .map(|pipeline| {
                    let stages = pipeline.take_times();
                    format!(
                        "{:.0} ms (liveness {:.0})",
                        stages.total().as_secs_f64() * 1000.0 / MATCH_ROUNDS as f64,
                        stages.liveness.as_secs_f64() * 1000.0 / MATCH_ROUNDS as f64
                    )
                })
                .collect();
            println!(
                "  {label}, agent on {threads} thread{}: {} ({identified} of {} matched a pupil; each pipeline's share {})",
                if threads == 1 { " " } else { "s" },
                spread(&mut times),
                frame.faces.len(),
                shares.join(" + ")
            );
        }
        match python_frames(path, smallest_face, python_liveness) {
            Ok((mut times, found)) => println!(
                "  {label}, python, 2 ONNX Runtime threads: {} ({found} faces found)",
                spread(&mut times)
            ),
            Err(err) => println!("  {label}, python: baseline not run: {err}"),
        }
    }
}

/// The made-up personal ID standing for a test person.
fn id_of(person: &str) -> PersonalId {
    let index = PEOPLE.iter().position(|p| *p == person).unwrap();
    format!("00120600100{index}").parse().unwrap()
}

/// The narrowest seat's face, as the room's config would name it.
fn smallest_face(frame: &Frame) -> u32 {
    frame
        .faces
        .iter()
        .map(|s| s.bbox[2] - s.bbox[0])
        .fold(f32::MAX, f32::min)
        .floor() as u32
}

/// The Python baseline's time for each of [`MATCH_ROUNDS`] runs of the frame
/// on the same tiles, and the faces it found.
fn python_frames(
    path: &std::path::Path,
    smallest_face: u32,
    liveness: Option<&str>,
) -> Result<(Vec<Duration>, u64), String> {
    let root = common::root();
    let python = root.join(".local/venv/bin/python");
    let mut command = Command::new(&python);
    command
        .arg(root.join("firmware-agent/benches/attendance_baseline.py"))
        .arg(common::models_dir())
        .arg("--time")
        .arg(path)
        .args(["--repeat", &MATCH_ROUNDS.to_string()])
        .args(["--smallest-face", &smallest_face.to_string()])
        .args(["--threads", "2"])
        // NumPy's BLAS is kept to one thread, as in the attendance bench.
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1");
    if let Some(min_score) = liveness {
        command.args(["--liveness", min_score]);
    }
    let output = command
        .output()
        .map_err(|err| format!("{}: {err} (run `models/install`)", python.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|err| err.to_string())?;
    let times = json["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ms| ms.as_f64())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    Ok((times, json["faces"].as_u64().unwrap_or(0)))
}

/// The peak and present resident memory, in MB, of the daemon `agent` taking a
/// roll call, its camera a folder showing `frame`, once it has analysed
/// [`MEMORY_FRAMES`] frames.
fn daemon_memory(agent: &std::path::Path, frame: &std::path::Path) -> (f64, f64) {
    let room = tempfile::tempdir().unwrap();
    let frames = room.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::copy(frame, frames.join("frame000.jpg")).unwrap();
    let mut roster = String::from(
        "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n",
    );
    for index in 0..40 {
        roster.push_str(&format!(
            "pupil,0012060010{index:02},Học sinh {index},6A1,yes,yes,2026-08-20\n"
        ));
    }
    std::fs::write(room.path().join("roster.csv"), roster).unwrap();
    // A period that opened a minute ago, so its roll call's window is open
    // (cut at midnight on either side).
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap());
    let start = now.checked_sub(jiff::SignedDuration::from_mins(1)).unwrap();
    let end = now
        .checked_add(jiff::SignedDuration::from_mins(45))
        .unwrap();
    let start = if start.date() == now.date() {
        start.strftime("%H:%M").to_string()
    } else {
        "00:00".to_owned()
    };
    let end = if end.date() == now.date() {
        end.strftime("%H:%M").to_string()
    } else {
        "23:59".to_owned()
    };
    let listen = |_| std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let [http, grpc]: [std::net::TcpListener; 2] = std::array::from_fn(listen);
    let config = room.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[room]\nschool_code = \"BENCH-01\"\nroom_id = \"P101\"\nname = \"Phòng đo\"\n\n[storage]\ndata_dir = \"data\"\n\n\
             [http]\nlisten = \"{}\"\n\n[hub]\nlisten = \"{}\"\nplaintext = true\n\n\
             [[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
             periods = [{{ start = \"{start}\", end = \"{end}\" }}]\n\n\
             [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = {{ type = \"simulated\" }}\n\n\
             [attendance]\nenabled = true\nclass = \"6A1\"\nthreads = 2\nsmallest_face_pixels = {}\n\
             models_dir = \"{}\"\nonnxruntime_library = \"{}\"\n\n\
             [attendance.source]\nkind = \"folder\"\npath = \"{}\"\nrate = 5.0\nrepeat = true\n",
            http.local_addr().unwrap(),
            grpc.local_addr().unwrap(),
            firmware_agent::attendance::config::DEFAULT_SMALLEST_FACE_PIXELS,
            common::models_dir().display(),
            common::onnxruntime_library().display(),
            frames.display(),
        ),
    )
    .unwrap();
    let imported = Command::new(agent)
        .args(["roster", "import"])
        .arg(room.path().join("roster.csv"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let address = http.local_addr().unwrap();
    drop((http, grpc));
    let mut child = Command::new(agent)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let analysed = || -> u64 {
        ureq::get(&format!("http://{address}/metrics"))
            .call()
            .ok()
            .and_then(|mut response| response.body_mut().read_to_string().ok())
            .and_then(|metrics| {
                metrics.lines().find_map(|line| {
                    line.strip_prefix("attendance_frames_total{outcome=\"analysed\"} ")
                        .and_then(|count| count.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    };
    while analysed() < MEMORY_FRAMES {
        assert!(
            Instant::now() < deadline,
            "the daemon analysed fewer than {MEMORY_FRAMES} frames in 300 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "the daemon stopped");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    // SAFETY: kill(2) on the PID of the child this bench started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let megabytes = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (megabytes("VmHWM:"), megabytes("VmRSS:"))
}
