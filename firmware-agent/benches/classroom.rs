//! The whole class from one frame: the faces found of forty on the classroom
//! `tests/compose_classroom.py` composes at 4K and 1080p, and the time for one
//! frame from its JPEG bytes to every face detected, and to every face
//! described (landmarks and embedding), seen whole (the frame squeezed into
//! the detector's 320x240, as before tiles) and in tiles, in the same run.
//!
//! Run with `cargo bench --bench classroom` with `ORT_DYLIB_PATH` and
//! `FIRMWARE_AGENT_MODELS` set as the Makefile sets them.

#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use firmware_agent::attendance::detect::iou;
use firmware_agent::attendance::models::ModelSet;
use firmware_agent::attendance::pipeline::{Pipeline, decode};
use serde::Deserialize;

/// Runs of each way of seeing a frame, taken in turns.
const ROUNDS: usize = 5;
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
        let smallest = frame
            .faces
            .iter()
            .map(|s| s.bbox[2] - s.bbox[0])
            .fold(f32::MAX, f32::min)
            .floor() as u32;
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
