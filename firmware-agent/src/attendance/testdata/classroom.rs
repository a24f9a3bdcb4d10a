//! The whole class from one frame: the seats of a classroom composed from the
//! test people by `tests/compose_classroom.py`, at 4K and 1080p, found and
//! identified by the real models.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use image::RgbImage;
use serde::Deserialize;

use super::{DEFAULT_THRESHOLD, faces_dir, gallery, person_of, pipeline};
use crate::attendance::config::DEFAULT_SMALLEST_FACE_PIXELS;
use crate::attendance::detect::iou;
use crate::attendance::pipeline::{Pipeline, decode};

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
    person: String,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

impl Frame {
    /// The narrowest face in the frame, as the room's config would name it.
    fn smallest_face(&self) -> u32 {
        self.faces
            .iter()
            .map(|seat| seat.bbox[2] - seat.bbox[0])
            .fold(f32::MAX, f32::min)
            .floor() as u32
    }

    /// The seat each box is the face of (by IoU), or `None` for a box that is
    /// no seat's face or a second box on a seat already taken.
    fn seats_of(&self, boxes: &[[f32; 4]]) -> Vec<Option<usize>> {
        let mut taken = vec![false; self.faces.len()];
        boxes
            .iter()
            .map(|bbox| {
                let (seat, overlap) = self
                    .faces
                    .iter()
                    .enumerate()
                    .map(|(i, seat)| (i, iou(&seat.bbox, bbox)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))?;
                (overlap > SAME_FACE_IOU && !std::mem::replace(&mut taken[seat], true))
                    .then_some(seat)
            })
            .collect()
    }
}

/// A detection's box overlapping a seat's by more than this IoU is that seat's face.
const SAME_FACE_IOU: f32 = 0.4;

/// Where the frames are composed: under the build's own (ignored) directory,
/// made again by every test run.
fn classroom() -> &'static (PathBuf, Composition) {
    static CLASSROOM: OnceLock<(PathBuf, Composition)> = OnceLock::new();
    CLASSROOM.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = root.join("target/classroom");
        let status = std::process::Command::new(root.join(".local/venv/bin/python"))
            .arg(root.join("tests/compose_classroom.py"))
            .args([faces_dir().as_path(), dir.as_path()])
            .status()
            .expect("the set-up's Python environment runs the composer");
        assert!(status.success(), "the composer failed: {status}");
        let composition =
            serde_json::from_slice(&std::fs::read(dir.join("classroom.json")).unwrap()).unwrap();
        (dir, composition)
    })
}

/// What `run` gives with the shared pipeline finding faces down to `pixels` wide.
fn down_to<T>(pixels: u32, run: impl FnOnce(&mut Pipeline) -> T) -> T {
    let mut pipeline = pipeline();
    pipeline.set_smallest_face(pixels);
    let result = run(&mut pipeline);
    pipeline.set_smallest_face(DEFAULT_SMALLEST_FACE_PIXELS);
    result
}

fn frames() -> impl Iterator<Item = (&'static Frame, RgbImage)> {
    let (dir, composition) = classroom();
    composition.frames.iter().map(|frame| {
        (
            frame,
            decode(&std::fs::read(dir.join(&frame.file)).unwrap()).unwrap(),
        )
    })
}

#[test]
fn every_seat_of_a_class_of_forty_is_found_at_4k_and_1080p_and_nothing_else() {
    for (frame, image) in frames() {
        assert_eq!(frame.faces.len(), 40);
        let found = down_to(frame.smallest_face(), |pipeline| {
            pipeline.find_faces(&image)
        })
        .unwrap();
        let boxes: Vec<[f32; 4]> = found.iter().map(|(bbox, _)| *bbox).collect();
        let seats = frame.seats_of(&boxes);
        let strays: Vec<_> = boxes
            .iter()
            .zip(&seats)
            .filter(|(_, seat)| seat.is_none())
            .map(|(b, _)| b)
            .collect();
        assert!(
            strays.is_empty(),
            "{}: boxes on no seat, or a seat's second box: {strays:?}",
            frame.file
        );
        assert!(
            seats.len() >= 39,
            "{}: {} of 40 faces found",
            frame.file,
            seats.len()
        );
    }
}

#[test]
fn seen_whole_the_4k_frame_loses_the_back_rows() {
    let (frame, image) = frames().next().unwrap();
    let found = down_to(image.width(), |pipeline| pipeline.find_faces(&image)).unwrap();
    assert!(
        found.len() < 30,
        "{}: {} faces found in the squeezed frame",
        frame.file,
        found.len()
    );
}

#[test]
fn every_pupil_of_the_4k_classroom_is_identified_as_who_sits_there() {
    let (frame, image) = frames().next().unwrap();
    let faces = down_to(frame.smallest_face(), |pipeline| pipeline.faces(&image)).unwrap();
    let seats = frame.seats_of(
        &faces
            .iter()
            .map(|face| face.detected.bbox)
            .collect::<Vec<_>>(),
    );
    let mut identified = 0;
    for (face, seat) in faces.iter().zip(seats) {
        let seat = &frame.faces[seat.expect("every face is a seat's")];
        let found = gallery().identify(&face.embedding, DEFAULT_THRESHOLD);
        let name = found.map(|m| person_of(&m.personal_id));
        assert!(
            name.is_none() || name == Some(seat.person.as_str()),
            "{} identified as {name:?}",
            seat.person
        );
        identified += usize::from(name.is_some());
    }
    assert!(identified >= 39, "{identified} of 40 pupils identified");
}

#[test]
fn one_4k_frame_shared_by_two_pipelines_gets_the_verdicts_of_one_with_liveness_off_and_on() {
    use crate::attendance::liveness::DEFAULT_MIN_SCORE;
    use crate::attendance::models::testing::models;
    use crate::attendance::recognise::{Checks, Recogniser, Verdict};
    let (frame, image) = frames().next().unwrap();
    let models = models();
    let crew_of = |size: usize| -> Vec<Pipeline> {
        (0..size)
            .map(|_| {
                let mut pipeline = Pipeline::new(&models).unwrap();
                pipeline.set_smallest_face(frame.smallest_face());
                pipeline
            })
            .collect()
    };
    let (mut alone, mut pair) = (crew_of(1), crew_of(2));
    for liveness_min_score in [None, Some(DEFAULT_MIN_SCORE)] {
        let checks = Checks {
            threshold: DEFAULT_THRESHOLD,
            min_face: 0.0,
            liveness_min_score,
            confirm_frames: 1,
        };
        let verdicts_alone = Recogniser::new(gallery().clone(), checks)
            .analyse(&mut alone, &image)
            .unwrap();
        let verdicts_shared = Recogniser::new(gallery().clone(), checks)
            .analyse(&mut pair, &image)
            .unwrap();
        assert_eq!(verdicts_alone.len(), 40);
        if liveness_min_score.is_none() {
            let pupils = verdicts_alone
                .iter()
                .filter(|(_, verdict)| matches!(verdict, Verdict::Pupil(_)))
                .count();
            assert!(pupils >= 39, "{pupils} of 40 pupils identified");
        }
        assert_eq!(
            verdicts_shared, verdicts_alone,
            "liveness {liveness_min_score:?}"
        );
        for (index, pipeline) in pair.iter_mut().enumerate() {
            let times = pipeline.take_times();
            let face_work = match liveness_min_score {
                None => times.embed,
                Some(_) => times.liveness,
            };
            assert!(
                times.detect > Duration::ZERO && face_work > Duration::ZERO,
                "pipeline {index} of two took no share of the frame: {times:?}"
            );
        }
    }
}
