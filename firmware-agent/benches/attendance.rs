//! The attendance pipeline's figures: time per stage on a 1280x720 frame with
//! one face and with several, the share of that time spent outside ONNX
//! Runtime (with decoding, and without it as for a frame that arrives decoded
//! from a camera), 1:N matching against 2 000 templates, resident memory with
//! the models loaded, and the same frames through the Python baseline
//! (`attendance_baseline.py`: onnxruntime + OpenCV, the same models), timed in
//! the same run (also taking turns, so that a machine changing speed during
//! the run favours neither), with the faces each found; the optional
//! liveness check; and a camera's stream of a seated class, which the agent
//! takes as the daemon does (a recognised face's track spares it the costly
//! stages, decoding on the source thread while the models run) and the
//! baseline frame by frame.
//!
//! Run with `make bench` (or `cargo bench --bench attendance` with
//! `ORT_DYLIB_PATH` and `FIRMWARE_AGENT_MODELS` set as the Makefile sets them).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use firmware_agent::attendance::AttendanceConfig;
use firmware_agent::attendance::detect::DetectedFace;
use firmware_agent::attendance::embed::{DIMENSIONS, Embedding};
use firmware_agent::attendance::enroll;
use firmware_agent::attendance::matcher::{Gallery, Match};
use firmware_agent::attendance::models::ModelSet;
use firmware_agent::attendance::pipeline::{self, Pipeline, StageTimes};
use firmware_agent::attendance::recognise::{Checks, Recogniser, Verdict};
use firmware_agent::roster::PersonalId;
use image::{RgbImage, imageops};

const ROUNDS: u32 = 30;
/// Turns the agent and the baseline take in the head-to-head comparison.
const BLOCKS: usize = 5;
/// Frames of the camera stream: six seconds at the default five frames a second.
const STREAM_FRAMES: usize = 30;
/// Times each side plays the stream in a block.
const STREAM_ROUNDS: u32 = 2;
/// The people enrolled from the shared test faces, in the six-face frame's order.
const PEOPLE: [&str; 5] = [
    "biden",
    "kit_harington",
    "rose_leslie",
    "alex_lacamoire",
    "obama",
];
/// The six-face frame's tiles: the enrolled people, then a stranger.
const TILES: [&str; 6] = [
    "probe/biden_b.jpg",
    "probe/kit_harington_b.jpg",
    "probe/rose_leslie_b.jpg",
    "probe/alex_lacamoire_b.png",
    "probe/obama_d.jpg",
    "probe/stranger_a.png",
];

fn main() {
    let root = common::root();
    let (models_dir, library, faces) = (
        common::models_dir(),
        common::onnxruntime_library(),
        common::faces_dir(),
    );

    let rss_before = resident_mb();
    let models = ModelSet::load(&models_dir, &library).unwrap_or_else(|err| panic!("{err}"));
    let mut pipeline = Pipeline::new(&models).unwrap();
    let rss_loaded = resident_mb();

    let scratch = tempfile::tempdir().unwrap();
    let one_face = faces.join("probe/obama_720p.jpg");
    let tiles = scaled_tiles(&faces);
    let many_faces = scratch.path().join("six_faces_720p.jpg");
    six_faces(&tiles, 0).save(&many_faces).unwrap();
    let gallery = Gallery::new(random_templates(2000));

    println!("attendance pipeline, release build, one inference thread, {ROUNDS} rounds a frame");
    for (label, frame) in [
        ("1280x720, 1 face", &one_face),
        ("1280x720, 6 faces", &many_faces),
    ] {
        let (times, decode, matching, found) = time_frame(&mut pipeline, frame, &gallery);
        let total = decode + times.total() + matching;
        let outside = total.saturating_sub(times.onnx_runtime);
        let decoded_total = total.saturating_sub(decode);
        let decoded_outside = outside.saturating_sub(decode);
        println!("\n{label} ({} faces found)", found.len());
        println!(
            "  agent:  decode {:6.2} ms  detect {:6.2} ms  landmarks {:6.2} ms  align {:6.2} ms  embed {:6.2} ms  match {:6.3} ms  total {:6.2} ms",
            ms(decode),
            ms(times.detect),
            ms(times.landmarks),
            ms(times.align),
            ms(times.embed),
            ms(matching),
            ms(total)
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
        let python = python_baseline(&root, &models_dir, std::slice::from_ref(frame), ROUNDS);
        match &python {
            Ok(json) => println!("  python: {}", python_stages(json)),
            Err(err) => println!("  python: baseline not run: {err}"),
        }
        println!(
            "  faces:  agent  {}",
            faces_line(found.iter().map(|f| (f.bbox, f.score)))
        );
        if let Ok(json) = &python {
            println!("          python {}", faces_line(python_faces(json)));
            let (agent, python, wins) = head_to_head(
                || {
                    let (times, decode, matching, _) = time_frame(&mut pipeline, frame, &gallery);
                    ms(decode + times.total() + matching)
                },
                || python_total(&root, &models_dir, std::slice::from_ref(frame), ROUNDS),
            );
            println!(
                "  head to head, {BLOCKS} alternating blocks of {ROUNDS} rounds: agent {agent:6.2} ms, python {python:6.2} ms (medians); the agent faster in {wins} of {BLOCKS}"
            );
        }
    }

    let stream = camera_stream(&tiles, scratch.path());
    let class = Gallery::new(
        enrolled_templates(&mut pipeline, &faces).chain(random_templates(2000 - PEOPLE.len())),
    );
    let checks = Checks::of(&AttendanceConfig::default());
    println!(
        "\ncamera stream: {STREAM_FRAMES} frames of 1280x720 JPEG, six faces (the five enrolled among {} templates, and a stranger), \
         each face a pixel or two from its place in the frame before; a fresh start each time, {STREAM_ROUNDS} plays a block",
        class.len()
    );
    let sequential = time_stream(&mut pipeline, &stream, &class, checks, Decoding::Inline);
    println!(
        "  agent, one thread:     {:6.2} ms a frame (decode {:5.2}  detect {:5.2}  landmarks {:5.2}  align {:5.2}  embed {:5.2}); \
         ONNX Runtime {:5.2} ms, everything else {:4.1}%",
        ms(sequential.per_frame),
        ms(sequential.decode),
        ms(sequential.stages.detect),
        ms(sequential.stages.landmarks),
        ms(sequential.stages.align),
        ms(sequential.stages.embed),
        ms(sequential.stages.onnx_runtime),
        100.0
            * (1.0
                - sequential.stages.onnx_runtime.as_secs_f64()
                    / sequential.per_frame.as_secs_f64())
    );
    println!(
        "                          verdicts over the stream: {}",
        sequential.verdicts
    );
    let overlapped = time_stream(&mut pipeline, &stream, &class, checks, Decoding::Beside);
    println!(
        "  agent, as the daemon:  {:6.2} ms a frame, decoding on the source thread while the models run on the inference thread; \
         the inference thread {:6.2} ms a frame, ONNX Runtime {:5.2} ms of it, everything else {:4.1}%",
        ms(overlapped.per_frame),
        ms(overlapped.inference),
        ms(overlapped.stages.onnx_runtime),
        100.0
            * (1.0
                - overlapped.stages.onnx_runtime.as_secs_f64()
                    / overlapped.inference.as_secs_f64())
    );
    match python_baseline(&root, &models_dir, &stream, STREAM_ROUNDS) {
        Ok(json) => {
            println!(
                "  python:                {:6.2} ms a frame ({})",
                json["total"].as_f64().unwrap_or(f64::NAN),
                python_stages(&json)
            );
            for (label, decoding) in [
                ("one thread", Decoding::Inline),
                ("as the daemon", Decoding::Beside),
            ] {
                let (agent, python, wins) = head_to_head(
                    || ms(time_stream(&mut pipeline, &stream, &class, checks, decoding).per_frame),
                    || python_total(&root, &models_dir, &stream, STREAM_ROUNDS),
                );
                println!(
                    "  head to head, agent {label}, {BLOCKS} alternating blocks: agent {agent:6.2} ms, python {python:6.2} ms a frame (medians); the agent faster in {wins} of {BLOCKS}"
                );
            }
        }
        Err(err) => println!("  python: baseline not run: {err}"),
    }

    let (liveness, onnx) = time_liveness(&mut pipeline, &one_face);
    println!(
        "\nliveness check (optional, off by default): {:.2} ms a face, of which ONNX Runtime {:.2} ms",
        ms(liveness),
        ms(onnx)
    );

    let probe = Embedding(vec![1.0 / (DIMENSIONS as f32).sqrt(); DIMENSIONS]);
    let started = Instant::now();
    let rounds = 2000;
    for _ in 0..rounds {
        std::hint::black_box(gallery.nearest(std::hint::black_box(&probe)));
    }
    println!(
        "\n1:N match against {} templates: {:.3} ms",
        gallery.len(),
        ms(started.elapsed()) / rounds as f64
    );
    println!(
        "resident memory: {rss_before:.0} MB before the models, {rss_loaded:.0} MB with the models loaded, {:.0} MB after the runs",
        resident_mb()
    );
}

/// Mean stage times over [`ROUNDS`] runs of one frame, the mean times decoding
/// it and matching its faces, and the faces found.
fn time_frame(
    pipeline: &mut Pipeline,
    frame: &Path,
    gallery: &Gallery,
) -> (StageTimes, Duration, Duration, Vec<DetectedFace>) {
    let bytes = std::fs::read(frame).unwrap();
    let run = |pipeline: &mut Pipeline| {
        let (image, decoding) = timed_decode(&bytes);
        let faces = pipeline.faces(&image).unwrap();
        let started = Instant::now();
        for face in &faces {
            std::hint::black_box(gallery.nearest(&face.embedding));
        }
        (
            decoding,
            started.elapsed(),
            faces.into_iter().map(|face| face.detected).collect(),
        )
    };
    for _ in 0..3 {
        run(pipeline);
    }
    pipeline.take_times();
    let (mut decoding, mut matching) = (Duration::ZERO, Duration::ZERO);
    let mut found = Vec::new();
    for _ in 0..ROUNDS {
        let (decoded, matched, faces) = run(pipeline);
        decoding += decoded;
        matching += matched;
        found = faces;
    }
    (
        mean_times(pipeline.take_times(), ROUNDS),
        decoding / ROUNDS,
        matching / ROUNDS,
        found,
    )
}

/// An encoded frame decoded as the daemon decodes it, and the time that took.
fn timed_decode(bytes: &[u8]) -> (RgbImage, Duration) {
    let started = Instant::now();
    let image = pipeline::decode(bytes).unwrap();
    (image, started.elapsed())
}

/// The agent and the baseline taking turns, each block timed by its closure
/// in milliseconds, so that a machine slowing down or speeding up during the
/// run favours neither: the median of each side's blocks, and in how many
/// blocks the agent was faster.
fn head_to_head(
    mut agent_block: impl FnMut() -> f64,
    python_block: impl Fn() -> f64,
) -> (f64, f64, usize) {
    let (mut agent, mut python) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        agent.push(agent_block());
        python.push(python_block());
    }
    let wins = agent.iter().zip(&python).filter(|(a, p)| a < p).count();
    (median(agent), median(python), wins)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Where the frames of a stream are decoded.
#[derive(Clone, Copy)]
enum Decoding {
    /// On the inference thread, before the models: one thread does it all.
    Inline,
    /// On a source thread of its own, while the inference thread runs the
    /// models on the frame before, as the daemon does it.
    Beside,
}

/// What the agent made of a camera stream.
struct StreamRun {
    /// Wall time a frame, from its encoded bytes to its faces' verdicts.
    per_frame: Duration,
    /// The inference thread's time a frame in the recogniser (decoding not included).
    inference: Duration,
    /// Mean stage times a frame.
    stages: StageTimes,
    /// Mean time decoding a frame on the inference thread (zero when decoded beside it).
    decode: Duration,
    /// How often each person was the verdict, over the last play.
    verdicts: String,
}

/// The stream through a [`Recogniser`], [`STREAM_ROUNDS`] times from a fresh start.
fn time_stream(
    pipeline: &mut Pipeline,
    stream: &[PathBuf],
    class: &Gallery,
    checks: Checks,
    decoding: Decoding,
) -> StreamRun {
    let frames: Vec<Vec<u8>> = stream
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    pipeline.take_times();
    let mut verdicts = Vec::new();
    let (mut inference, mut decode) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    for _ in 0..STREAM_ROUNDS {
        let recogniser = Recogniser::new(class.clone(), checks);
        verdicts.clear();
        let mut recognise = |pipeline: &mut Pipeline, image: &RgbImage| {
            let busy = Instant::now();
            verdicts.extend(
                recogniser
                    .analyse(std::slice::from_mut(pipeline), image)
                    .unwrap()
                    .into_iter()
                    .map(|(_, verdict)| verdict),
            );
            inference += busy.elapsed();
        };
        match decoding {
            Decoding::Inline => {
                for bytes in &frames {
                    let (image, decoding) = timed_decode(bytes);
                    decode += decoding;
                    recognise(pipeline, &image);
                }
            }
            Decoding::Beside => std::thread::scope(|scope| {
                let (decoded, images) = std::sync::mpsc::sync_channel::<RgbImage>(1);
                let frames = &frames;
                scope.spawn(move || {
                    for bytes in frames {
                        decoded.send(pipeline::decode(bytes).unwrap()).unwrap();
                    }
                });
                for image in images {
                    recognise(pipeline, &image);
                }
            }),
        }
    }
    let count = STREAM_ROUNDS * frames.len() as u32;
    StreamRun {
        per_frame: started.elapsed() / count,
        inference: inference / count,
        stages: mean_times(pipeline.take_times(), count),
        decode: decode / count,
        verdicts: tally(&verdicts),
    }
}

/// Stage times gathered over `frames` frames, a frame.
fn mean_times(t: StageTimes, frames: u32) -> StageTimes {
    StageTimes {
        detect: t.detect / frames,
        landmarks: t.landmarks / frames,
        align: t.align / frames,
        embed: t.embed / frames,
        liveness: t.liveness / frames,
        onnx_runtime: t.onnx_runtime / frames,
    }
}

/// "name count" for each verdict, most frequent first, with how many of a
/// pupil's were the standing match of a recognised track.
fn tally(verdicts: &[Verdict]) -> String {
    let name_of = |m: &Match| {
        PEOPLE
            .iter()
            .position(|p| id_of(p) == m.personal_id)
            .map_or("a random template", |i| PEOPLE[i])
    };
    let mut counts = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for verdict in verdicts {
        let (name, standing) = match verdict {
            Verdict::Pupil(m) => (name_of(m), 0),
            Verdict::Recognised(m) => (name_of(m), 1),
            Verdict::Unknown => ("unknown", 0),
            Verdict::Photo => ("photo", 0),
        };
        let count = counts.entry(name).or_default();
        *count = (count.0 + 1, count.1 + standing);
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
    let line = |(name, (count, standing)): &(&str, (usize, usize))| match standing {
        0 => format!("{name} {count}"),
        _ => format!("{name} {count} ({standing} standing)"),
    };
    counts.iter().map(line).collect::<Vec<_>>().join(", ")
}

/// A made-up personal ID for each enrolled person.
fn id_of(person: &str) -> PersonalId {
    let index = PEOPLE.iter().position(|p| *p == person).unwrap();
    format!("00120600100{index}").parse().unwrap()
}

/// The five people's templates from their enrollment photos, as `face enroll` makes them.
fn enrolled_templates(
    pipeline: &mut Pipeline,
    faces: &Path,
) -> impl Iterator<Item = (PersonalId, Embedding)> {
    let templates: Vec<_> = PEOPLE
        .iter()
        .map(|person| {
            let image = pipeline::decode(
                &std::fs::read(faces.join(format!("enroll/{person}/{person}_a.jpg"))).unwrap(),
            )
            .unwrap();
            let face = enroll::choose(pipeline.faces(&image).unwrap())
                .unwrap_or_else(|refusal| panic!("{person}: {refusal}"));
            (id_of(person), face.embedding)
        })
        .collect();
    templates.into_iter()
}

/// Mean time of the liveness check on the main face of `frame`, and ONNX Runtime's part of it.
fn time_liveness(pipeline: &mut Pipeline, frame: &Path) -> (Duration, Duration) {
    let image = pipeline::decode(&std::fs::read(frame).unwrap()).unwrap();
    let face = pipeline.detect(&image).unwrap().remove(0);
    pipeline.take_times();
    for _ in 0..ROUNDS {
        std::hint::black_box(pipeline.liveness(&image, &face).unwrap());
    }
    let times = pipeline.take_times();
    (times.liveness / ROUNDS, times.onnx_runtime / ROUNDS)
}

/// The six-face frame's tiles, scaled to a third of the frame's width.
fn scaled_tiles(faces: &Path) -> Vec<RgbImage> {
    TILES
        .iter()
        .map(|tile| {
            imageops::resize(
                &image::open(faces.join(tile)).unwrap().into_rgb8(),
                420,
                340,
                imageops::FilterType::Triangle,
            )
        })
        .collect()
}

/// Six faces on a 1280x720 frame, in two rows of three. Frame 0 is the still
/// frame of the per-frame figures; in frame `k` of a stream each tile is
/// shifted by up to two pixels across and one down, as a seated pupil moves.
fn six_faces(tiles: &[RgbImage], k: usize) -> RgbImage {
    let mut frame = RgbImage::from_pixel(1280, 720, image::Rgb([128, 128, 128]));
    for (index, tile) in tiles.iter().enumerate() {
        let (dx, dy) = if k == 0 {
            (0, 0)
        } else {
            (
                ((k * 3 + index) % 5) as i64 - 2,
                ((k + index) % 3) as i64 - 1,
            )
        };
        let (x, y) = ((index % 3) as i64 * 426 + dx, (index / 3) as i64 * 360 + dy);
        imageops::overlay(&mut frame, tile, x, y);
    }
    frame
}

/// [`STREAM_FRAMES`] frames of the six faces saved as JPEG files, as a camera sends them.
fn camera_stream(tiles: &[RgbImage], dir: &Path) -> Vec<PathBuf> {
    (0..STREAM_FRAMES)
        .map(|k| {
            let path = dir.join(format!("stream_{k:03}.jpg"));
            six_faces(tiles, k).save(&path).unwrap();
            path
        })
        .collect()
}

/// `n` random unit vectors, each its own pupil's.
fn random_templates(n: usize) -> impl Iterator<Item = (PersonalId, Embedding)> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n).map(move |i| {
        let v: Vec<f32> = (0..DIMENSIONS).map(|_| next()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let id = format!("0012069{i:05}").parse().unwrap();
        (id, Embedding(v.into_iter().map(|x| x / norm).collect()))
    })
}

/// The Python baseline's mean time a frame, in milliseconds, over `rounds` plays of `frames`.
fn python_total(root: &Path, models: &Path, frames: &[PathBuf], rounds: u32) -> f64 {
    python_baseline(root, models, frames, rounds)
        .map_or(f64::NAN, |json| json["total"].as_f64().unwrap_or(f64::NAN))
}

/// The Python baseline on the same frames, timed in this run: its JSON report.
fn python_baseline(
    root: &Path,
    models: &Path,
    frames: &[PathBuf],
    rounds: u32,
) -> Result<serde_json::Value, String> {
    let python = root.join(".local/venv/bin/python");
    let script = root.join("firmware-agent/benches/attendance_baseline.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(models)
        .arg("--time")
        .args(frames)
        .args(["--repeat", &rounds.to_string()])
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
        get("decode"),
        get("detect"),
        get("align"),
        get("embed"),
        get("match"),
        get("total"),
        json["faces"]
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
        .map(|(b, score)| {
            format!(
                "({:.0},{:.0})-({:.0},{:.0}) {score:.3}",
                b[0], b[1], b[2], b[3]
            )
        })
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
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
