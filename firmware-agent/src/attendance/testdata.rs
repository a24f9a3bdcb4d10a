//! The pipeline on the shared test faces (`testdata/faces`): real photographs,
//! real models, the expectations written in the test set's `manifest.csv`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use image::RgbImage;

use super::config::DEFAULT_THRESHOLD;
use super::embed::Embedding;
use super::enroll::{self, Refusal};
use super::matcher::Gallery;
use super::models::testing::models;
use super::pipeline::Pipeline;
use crate::roster::PersonalId;

mod classroom;

const PEOPLE: [&str; 5] = [
    "alex_lacamoire",
    "biden",
    "kit_harington",
    "obama",
    "rose_leslie",
];

fn faces_dir() -> PathBuf {
    let shared = std::env::var_os("CLASSROOM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("testdata/faces")
}

/// One pipeline for the whole test binary: sessions are built once.
fn pipeline() -> MutexGuard<'static, Pipeline> {
    static PIPELINE: OnceLock<Mutex<Pipeline>> = OnceLock::new();
    PIPELINE
        .get_or_init(|| Mutex::new(Pipeline::new(&models()).unwrap()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A made-up personal ID standing for each test person.
fn id_of(person: &str) -> PersonalId {
    let index = PEOPLE.iter().position(|p| *p == person).unwrap();
    format!("00120600100{index}").parse().unwrap()
}

fn person_of(id: &PersonalId) -> &'static str {
    PEOPLE.iter().find(|p| id_of(p) == *id).unwrap()
}

fn load(relative: &str) -> RgbImage {
    let bytes = std::fs::read(faces_dir().join(relative)).unwrap();
    super::pipeline::decode(&bytes).unwrap()
}

/// Every face of the photo at `relative`, aligned and embedded.
fn faces_of(relative: &str) -> Vec<super::pipeline::Face> {
    let image = load(relative);
    pipeline().faces(&image).unwrap()
}

/// The five people enrolled from `enroll/`, as `face enroll` does it.
fn gallery() -> &'static Gallery {
    static GALLERY: OnceLock<Gallery> = OnceLock::new();
    GALLERY.get_or_init(|| {
        Gallery::new(PEOPLE.map(|person| {
            let image = load(&format!("enroll/{person}/{person}_a.jpg"));
            let faces = pipeline().faces(&image).unwrap();
            let face =
                enroll::choose(faces).unwrap_or_else(|refusal| panic!("{person}: {refusal}"));
            (id_of(person), face.embedding)
        }))
    })
}

fn identify_all(image: &RgbImage) -> (Vec<&'static str>, usize) {
    let faces = pipeline().faces(image).unwrap();
    let mut known = Vec::new();
    let mut unknown = 0;
    for face in faces {
        match gallery().identify(&face.embedding, DEFAULT_THRESHOLD) {
            Some(m) => known.push(person_of(&m.personal_id)),
            None => unknown += 1,
        }
    }
    known.sort();
    (known, unknown)
}

#[test]
fn every_probe_gives_exactly_the_listed_people() {
    let manifest = std::fs::read_to_string(faces_dir().join("manifest.csv")).unwrap();
    let mut checked = 0;
    for line in manifest.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (file, expected, min_unknown) =
            (fields[0], fields[1], fields[2].parse::<usize>().unwrap());
        let mut expected: Vec<&str> = expected.split(';').filter(|s| !s.is_empty()).collect();
        expected.sort();
        let (known, unknown) = identify_all(&load(file));
        assert_eq!(
            known, expected,
            "{file}: recognised {known:?}, expected {expected:?}"
        );
        assert!(
            unknown >= min_unknown,
            "{file}: {unknown} unknown face(s), expected at least {min_unknown}"
        );
        let distinct: BTreeSet<_> = known.iter().collect();
        assert_eq!(
            distinct.len(),
            known.len(),
            "{file}: one result per face, never one person twice"
        );
        checked += 1;
    }
    assert_eq!(checked, 16, "every probe of the manifest was checked");
}

#[test]
fn the_240p_photo_is_recognised_with_a_small_face() {
    let image = load("probe/obama_240p.jpg");
    let faces = pipeline().faces(&image).unwrap();
    assert_eq!(faces.len(), 1);
    assert!(
        faces[0].detected.width() < 64.0,
        "the face is small: {}",
        faces[0].detected.width()
    );
    let found = gallery()
        .identify(&faces[0].embedding, DEFAULT_THRESHOLD)
        .expect("recognised");
    assert_eq!(person_of(&found.personal_id), "obama");
}

#[test]
fn a_small_background_face_does_not_stop_the_main_face_from_enrolling() {
    // Obama's enrollment photo with a small copy of Biden's face pasted in a corner.
    let mut photo = load("enroll/obama/obama_a.jpg");
    let biden = load("enroll/biden/biden_a.jpg");
    let biden_face = image::imageops::crop_imm(&biden, 400, 150, 330, 450).to_image();
    let small =
        image::imageops::resize(&biden_face, 110, 150, image::imageops::FilterType::Triangle);
    let bottom = (photo.height() - 160) as i64;
    image::imageops::overlay(&mut photo, &small, 10, bottom);
    let faces = pipeline().faces(&photo).unwrap();
    assert_eq!(faces.len(), 2, "both faces are found");
    let chosen = enroll::choose(faces).expect("the main face enrolls");
    let obama = Gallery::new([(id_of("obama"), chosen.embedding.clone())]);
    let probe = faces_of("probe/obama_b.jpg").remove(0).embedding;
    assert!(
        obama.identify(&probe, DEFAULT_THRESHOLD).is_some(),
        "the template is Obama's"
    );
}

#[test]
fn refused_enrollment_photos_say_why() {
    let two = faces_of("probe/group_two_people.jpg");
    assert_eq!(
        enroll::choose(two).err(),
        Some(Refusal::SeveralFaces { count: 2 })
    );

    let blank = RgbImage::from_pixel(640, 480, image::Rgb([200, 190, 180]));
    assert_eq!(
        enroll::choose(pipeline().faces(&blank).unwrap()).err(),
        Some(Refusal::NoFace)
    );

    let small = faces_of("probe/obama_240p.jpg");
    assert!(matches!(
        enroll::choose(small),
        Err(Refusal::TooSmall { .. })
    ));

    let blurred = image::imageops::blur(&load("enroll/rose_leslie/rose_leslie_a.jpg"), 6.0);
    let Err(refusal) = enroll::choose(pipeline().faces(&blurred).unwrap()) else {
        panic!("a blurred photo enrolled")
    };
    assert!(matches!(refusal, Refusal::Blurred { .. }), "{refusal:?}");
    assert!(refusal.to_string().contains("blurred"), "{refusal}");
}

#[test]
fn a_truncated_photo_is_an_error_not_a_crash() {
    let bytes = std::fs::read(faces_dir().join("probe/biden_b.jpg")).unwrap();
    let err = super::pipeline::decode(&bytes[..bytes.len() / 3]).unwrap_err();
    assert!(err.to_string().contains("cut short or damaged"), "{err}");
    assert!(super::pipeline::decode(b"plain text").is_err());
}

#[test]
fn the_same_person_scores_above_the_threshold_and_strangers_below() {
    let embed = |file: &str| -> Embedding { faces_of(file).remove(0).embedding };
    let obama = embed("probe/obama_720p.jpg");
    assert!(obama.similarity(&embed("probe/obama_1080p.jpg")) > 0.9);
    assert!(obama.similarity(&embed("probe/stranger_a.png")) < DEFAULT_THRESHOLD);
}

#[test]
fn recognised_faces_skip_the_costly_stages_until_their_recheck_and_strangers_never_do() {
    use super::recognise::{Checks, RECHECK_AFTER, Recogniser, Verdict};
    let checks = Checks {
        threshold: DEFAULT_THRESHOLD,
        min_face: 0.0,
        liveness_min_score: None,
        confirm_frames: 3,
    };
    let (pair, stranger, gallery) = (
        load("probe/group_two_people.jpg"),
        load("probe/stranger_a.png"),
        gallery(),
    );
    let mut pipeline = pipeline();
    // Each face's verdict as "name" (checked) or "name, standing" (not checked
    // again), the frame's tracks, and the time spent describing faces.
    let mut frame_of = |recogniser: &Recogniser, image: &RgbImage| {
        pipeline.take_times();
        let faces = recogniser
            .analyse(std::slice::from_mut(&mut *pipeline), image)
            .unwrap();
        let times = pipeline.take_times();
        let mut names: Vec<String> = faces
            .iter()
            .map(|(_, verdict)| match verdict {
                Verdict::Pupil(m) => person_of(&m.personal_id).to_owned(),
                Verdict::Recognised(m) => format!("{}, standing", person_of(&m.personal_id)),
                Verdict::Unknown => "unknown".to_owned(),
                Verdict::Photo => "photo".to_owned(),
            })
            .collect();
        names.sort();
        let tracks: BTreeSet<u64> = faces.iter().map(|(track, _)| *track).collect();
        (names, tracks, times.landmarks + times.embed)
    };
    let checked = ["biden", "obama"];
    let standing = ["biden, standing", "obama, standing"];

    let recogniser = Recogniser::new(gallery.clone(), checks);
    let (names, tracks, described) = frame_of(&recogniser, &pair);
    assert_eq!(names, checked);
    assert!(described > std::time::Duration::ZERO);
    for _ in 1..3 {
        let (again, same_tracks, described) = frame_of(&recogniser, &pair);
        assert_eq!(again, checked);
        assert_eq!(same_tracks, tracks);
        assert!(
            described > std::time::Duration::ZERO,
            "checked until confirmed"
        );
    }
    for _ in 0..RECHECK_AFTER {
        let (again, same_tracks, described) = frame_of(&recogniser, &pair);
        assert_eq!(again, standing, "the tracks' matches stand");
        assert_eq!(same_tracks, tracks);
        assert_eq!(
            described,
            std::time::Duration::ZERO,
            "no landmarks nor embedding for recognised faces"
        );
    }
    let (again, _, described) = frame_of(&recogniser, &pair);
    assert_eq!(again, checked);
    assert!(described > std::time::Duration::ZERO, "the recheck is due");
    let (again, _, _) = frame_of(&recogniser, &pair);
    assert_eq!(again, standing, "the recheck agreed");
    recogniser.forget();
    let (again, same_tracks, described) = frame_of(&recogniser, &pair);
    assert_eq!(again, checked, "forgotten: checked again");
    assert_eq!(same_tracks, tracks, "on the same tracks");
    assert!(described > std::time::Duration::ZERO);

    let recogniser = Recogniser::new(gallery.clone(), checks);
    for _ in 0..5 {
        let (names, _, described) = frame_of(&recogniser, &stranger);
        assert_eq!(names, ["unknown"]);
        assert!(
            described > std::time::Duration::ZERO,
            "an unknown face is checked in every frame"
        );
    }
}
