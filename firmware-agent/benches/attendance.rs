//! The attendance pipeline's figures: time per stage on a 1280x720 frame with
//! one face and with several, the share of that time spent outside ONNX
//! Runtime (with decoding, and without it as for a frame that arrives decoded
//! from a camera), 1:N matching against 2 000 templates, resident memory with
//! the models loaded, and the same frames through the Python baseline
//! (`attendance_baseline.py`: onnxruntime + OpenCV, the same models), timed in
//! the same run (also taking turns, so that a machine changing speed during
//! the run favours neither), with the faces each found; and the optional
//! liveness check.
//!
//! Run with `make bench` (or `cargo bench --bench attendance` with
//! `ORT_DYLIB_PATH` and `FIRMWARE_AGENT_MODELS` set as the Makefile sets them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use firmware_agent::attendance::detect::DetectedFace;
use firmware_agent::attendance::embed::{DIMENSIONS, Embedding};
use firmware_agent::attendance::matcher::Gallery;
use firmware_agent::attendance::models::ModelSet;
use firmware_agent::attendance::pipeline::{Pipeline, StageTimes};
use image::{RgbImage, imageops};

const ROUNDS: u32 = 30;
/// Turns the agent and the baseline take in the head-to-head comparison.
const BLOCKS: usize = 5;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let models_dir = std::env::var_os("FIRMWARE_AGENT_MODELS").map(PathBuf::from).unwrap_or_else(|| root.join("models"));
    let library = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".local/onnxruntime/libonnxruntime.so"));
    let faces = std::env::var_os("CLASSROOM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"))
        .join("testdata/faces");

    let rss_before = resident_mb();
    let models = ModelSet::load(&models_dir, &library).unwrap_or_else(|err| panic!("{err}"));
    let mut pipeline = Pipeline::new(&models).unwrap();
    let rss_loaded = resident_mb();

    let scratch = tempfile::tempdir().unwrap();
    let one_face = faces.join("probe/obama_720p.jpg");
    let many_faces = scratch.path().join("six_faces_720p.jpg");
    compose_six_faces(&faces, &many_faces);
    let gallery = random_gallery(2000);

    println!("attendance pipeline, release build, one inference thread, {ROUNDS} rounds a frame");
    for (label, frame) in [("1280x720, 1 face", &one_face), ("1280x720, 6 faces", &many_faces)] {
        let (times, matching, found) = time_frame(&mut pipeline, frame, &gallery);
        let total = times.total() + matching;
        let outside = total.saturating_sub(times.onnx_runtime);
        let decoded_total = total.saturating_sub(times.decode);
        let decoded_outside = outside.saturating_sub(times.decode);
        println!("\n{label} ({} faces found)", found.len());
        println!(
            "  agent:  decode {:6.2} ms  detect {:6.2} ms  landmarks {:6.2} ms  align {:6.2} ms  embed {:6.2} ms  match {:6.3} ms  total {:6.2} ms",
            ms(times.decode), ms(times.detect), ms(times.landmarks), ms(times.align), ms(times.embed), ms(matching), ms(total)
        );
        println!(
            "          ONNX Runtime's own run time {:6.2} ms; everything else {:5.2} ms = {:4.1}% of the total",
            ms(times.onnx_runtime),
            ms(outside),
            100.0 * outside.as_secs_f64() / total.as_secs_f64()
        );
        println!(
            "          a frame that arrives decoded: total {:6.2} ms; everything else {:5.2} ms = {:4.1}% of it",
            ms(decoded_total),
            ms(decoded_outside),
            100.0 * decoded_outside.as_secs_f64() / decoded_total.as_secs_f64()
        );
        let python = python_baseline(&root, &models_dir, frame);
        match &python {
            Ok(json) => println!("  python: {}", python_stages(json)),
            Err(err) => println!("  python: baseline not run: {err}"),
        }
        println!("  faces:  agent  {}", faces_line(found.iter().map(|f| (f.bbox, f.score))));
        if let Ok(json) = &python {
            println!("          python {}", faces_line(python_faces(json)));
            let (agent, python, wins) = head_to_head(&mut pipeline, &root, &models_dir, frame, &gallery);
            println!(
                "  head to head, {BLOCKS} alternating blocks of {ROUNDS} rounds: agent {agent:6.2} ms, python {python:6.2} ms (medians); the agent faster in {wins} of {BLOCKS}"
            );
        }
    }

    let (liveness, onnx) = time_liveness(&mut pipeline, &one_face);
    println!("\nliveness check (optional, off by default): {:.2} ms a face, of which ONNX Runtime {:.2} ms", ms(liveness), ms(onnx));

    let probe = Embedding(vec![1.0 / (DIMENSIONS as f32).sqrt(); DIMENSIONS]);
    let started = Instant::now();
    let rounds = 2000;
    for _ in 0..rounds {
        std::hint::black_box(gallery.nearest(std::hint::black_box(&probe)));
    }
    println!("\n1:N match against {} templates: {:.3} ms", gallery.len(), ms(started.elapsed()) / rounds as f64);
    println!(
        "resident memory: {rss_before:.0} MB before the models, {rss_loaded:.0} MB with the models loaded, {:.0} MB after the runs",
        resident_mb()
    );
}

/// Mean stage times over [`ROUNDS`] runs of one frame, the mean time matching its faces, and the faces found.
fn time_frame(pipeline: &mut Pipeline, frame: &Path, gallery: &Gallery) -> (StageTimes, Duration, Vec<DetectedFace>) {
    let bytes = std::fs::read(frame).unwrap();
    let run = |pipeline: &mut Pipeline| {
        let image = pipeline.decode(&bytes).unwrap();
        let faces = pipeline.faces(&image).unwrap();
        let started = Instant::now();
        for face in &faces {
            std::hint::black_box(gallery.nearest(&face.embedding));
        }
        (started.elapsed(), faces.into_iter().map(|face| face.detected).collect())
    };
    for _ in 0..3 {
        run(pipeline);
    }
    pipeline.take_times();
    let mut matching = Duration::ZERO;
    let mut found = Vec::new();
    for _ in 0..ROUNDS {
        let (spent, faces) = run(pipeline);
        matching += spent;
        found = faces;
    }
    let t = pipeline.take_times();
    let mean = |d: Duration| d / ROUNDS;
    let times = StageTimes {
        decode: mean(t.decode),
        detect: mean(t.detect),
        landmarks: mean(t.landmarks),
        align: mean(t.align),
        embed: mean(t.embed),
        liveness: mean(t.liveness),
        onnx_runtime: mean(t.onnx_runtime),
    };
    (times, mean(matching), found)
}

/// The agent and the baseline taking turns on `frame`, so that a machine
/// slowing down or speeding up during the run favours neither: the median of
/// each side's block means, and in how many blocks the agent was faster.
fn head_to_head(pipeline: &mut Pipeline, root: &Path, models: &Path, frame: &Path, gallery: &Gallery) -> (f64, f64, usize) {
    let (mut agent, mut python) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        let (times, matching, _) = time_frame(pipeline, frame, gallery);
        agent.push(ms(times.total() + matching));
        python.push(python_baseline(root, models, frame).map_or(f64::NAN, |json| json["total"].as_f64().unwrap_or(f64::NAN)));
    }
    let wins = agent.iter().zip(&python).filter(|(a, p)| a < p).count();
    (median(agent), median(python), wins)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Mean time of the liveness check on the main face of `frame`, and ONNX Runtime's part of it.
fn time_liveness(pipeline: &mut Pipeline, frame: &Path) -> (Duration, Duration) {
    let image = pipeline.decode(&std::fs::read(frame).unwrap()).unwrap();
    let face = pipeline.detect(&image).unwrap().remove(0);
    pipeline.take_times();
    for _ in 0..ROUNDS {
        std::hint::black_box(pipeline.liveness(&image, &face).unwrap());
    }
    let times = pipeline.take_times();
    (times.liveness / ROUNDS, times.onnx_runtime / ROUNDS)
}

/// Six faces from the probe photos on a 1280x720 frame, saved as a JPEG as a camera would send it.
fn compose_six_faces(faces: &Path, out: &Path) {
    let mut frame = RgbImage::from_pixel(1280, 720, image::Rgb([128, 128, 128]));
    let tiles = [
        "probe/biden_b.jpg",
        "probe/kit_harington_b.jpg",
        "probe/rose_leslie_b.jpg",
        "probe/alex_lacamoire_b.png",
        "probe/obama_d.jpg",
        "probe/stranger_a.png",
    ];
    for (index, tile) in tiles.iter().enumerate() {
        let photo = image::open(faces.join(tile)).unwrap().into_rgb8();
        let scaled = imageops::resize(&photo, 420, 340, imageops::FilterType::Triangle);
        let (x, y) = ((index % 3) as i64 * 426, (index / 3) as i64 * 360);
        imageops::overlay(&mut frame, &scaled, x, y);
    }
    frame.save(out).unwrap();
}

/// `n` random unit vectors.
fn random_gallery(n: usize) -> Gallery {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    Gallery::new((0..n).map(|i| {
        let v: Vec<f32> = (0..DIMENSIONS).map(|_| next()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let id = format!("0012060{i:05}").parse().unwrap();
        (id, Embedding(v.into_iter().map(|x| x / norm).collect()))
    }))
}

/// The Python baseline on the same frame, timed in this run: its JSON report.
fn python_baseline(root: &Path, models: &Path, frame: &Path) -> Result<serde_json::Value, String> {
    let python = root.join(".local/venv/bin/python");
    let script = root.join("firmware-agent/benches/attendance_baseline.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(models)
        .arg("--time")
        .arg(frame)
        .args(["--repeat", &ROUNDS.to_string()])
        // One thread, as the agent: NumPy's BLAS would otherwise start a
        // thread per core for the match, whose spinning takes the core ONNX
        // Runtime's thread runs on.
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .map_err(|err| format!("{}: {err} (run `models/install`)", python.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|err| err.to_string())
}

/// The baseline's stage times, laid out as the agent's.
fn python_stages(json: &serde_json::Value) -> String {
    let get = |key: &str| json[key].as_f64().unwrap_or(f64::NAN);
    format!(
        "decode {:6.2} ms  detect {:6.2} ms  landmarks+align {:6.2} ms  embed {:6.2} ms  match {:6.3} ms  total {:6.2} ms ({} faces)",
        get("decode"), get("detect"), get("align"), get("embed"), get("match"), get("total"), json["faces"]
    )
}

/// The boxes and scores the baseline found, as `[left, top, right, bottom, score]` in its report.
fn python_faces(json: &serde_json::Value) -> impl Iterator<Item = ([f32; 4], f32)> + '_ {
    json["boxes"].as_array().into_iter().flatten().map(|face| {
        let value = |i: usize| face[i].as_f64().unwrap_or(f64::NAN) as f32;
        ([value(0), value(1), value(2), value(3)], value(4))
    })
}

/// Faces as `(left, top)-(right, bottom) score`, left to right.
fn faces_line(faces: impl Iterator<Item = ([f32; 4], f32)>) -> String {
    let mut faces: Vec<_> = faces.collect();
    faces.sort_by(|a, b| a.0[0].total_cmp(&b.0[0]).then(a.0[1].total_cmp(&b.0[1])));
    let text: Vec<String> = faces
        .iter()
        .map(|(b, score)| format!("({:.0},{:.0})-({:.0},{:.0}) {score:.3}", b[0], b[1], b[2], b[3]))
        .collect();
    text.join("  ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// This process's resident memory, from /proc.
fn resident_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
