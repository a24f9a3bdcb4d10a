//! `firmware-agent face enroll | forget | detect | compare`: face templates for
//! the roll call, and the tools IT staff use to check photos and models.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::attendance::enroll;
use crate::attendance::models::{self, ModelSet};
use crate::attendance::pipeline::{self, DecodeError, Face, InferenceError, Pipeline};
use crate::attendance::{AttendanceConfig, config::DEFAULT_THRESHOLD};
use crate::config::Config;
use crate::exit::Exit;
use crate::roster::PersonalId;

pub fn enroll(student: &str, images: &[PathBuf], config_path: &Path) -> Exit {
    let Some(personal_id) = parse_id(student) else {
        return Exit::InvalidInput;
    };
    let (config, store) = match super::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    match store.pupil(&personal_id) {
        Ok(Some(pupil)) if pupil.face_consent => {}
        Ok(Some(_)) => {
            eprintln!(
                "{personal_id}: no face consent is recorded for this pupil; nothing was enrolled\n  hint: record the parent's consent in the roster (face_consent = yes) and import it again"
            );
            return Exit::InvalidInput;
        }
        Ok(None) => {
            eprintln!(
                "{personal_id}: no such pupil in the roster\n  hint: check the ID, or import the class with `firmware-agent roster import`"
            );
            return Exit::InvalidInput;
        }
        Err(err) => {
            eprintln!("{err}");
            return Exit::Failure;
        }
    }
    let Some(mut pipeline) = open_pipeline(&config.attendance) else {
        return Exit::Failure;
    };
    let mut templates = Vec::new();
    for path in images {
        match photo_faces(&mut pipeline, path) {
            Ok(face) => match enroll::choose(face) {
                Ok(face) => {
                    println!("{}: enrolled", path.display());
                    templates.push(face.embedding);
                    if config.attendance.keep_debug_photos {
                        keep_debug_photo(&config, &personal_id, path);
                    }
                }
                Err(refusal) => eprintln!("{}: refused: {refusal}", path.display()),
            },
            Err(err) => eprintln!("{}: refused: {err}", path.display()),
        }
    }
    if templates.is_empty() {
        eprintln!("{personal_id}: no photo was usable; nothing was enrolled");
        return Exit::InvalidInput;
    }
    match store.add_face_templates(&personal_id, &templates, models::embedder_sha256()) {
        Ok(added) => {
            let total = store.face_template_count(&personal_id).unwrap_or(added);
            println!("{personal_id}: {added} template(s) added, {total} in all");
            Exit::Success
        }
        Err(err) => {
            eprintln!("{personal_id}: nothing was enrolled: {err}");
            Exit::Failure
        }
    }
}

pub fn forget(student: &str, reason: &str, config_path: &Path) -> Exit {
    let Some(personal_id) = parse_id(student) else {
        return Exit::InvalidInput;
    };
    let (_config, store) = match super::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    match store.forget_faces(&personal_id, reason) {
        Ok(count) => {
            println!(
                "{personal_id}: {count} face template(s) erased; the erasure is recorded for the hub"
            );
            Exit::Success
        }
        Err(err) => {
            eprintln!("{personal_id}: nothing was erased: {err}");
            Exit::Failure
        }
    }
}

pub fn detect(image: &Path, config_path: Option<&Path>) -> Exit {
    let Some(attendance) = attendance_config(config_path) else {
        return Exit::InvalidInput;
    };
    let Some(mut pipeline) = open_pipeline(&attendance) else {
        return Exit::Failure;
    };
    let decoded = match read_image(image) {
        Ok(decoded) => decoded,
        Err(err) => {
            eprintln!("{}: {err}", image.display());
            return Exit::InvalidInput;
        }
    };
    let faces = pipeline.detect(&decoded).and_then(|faces| {
        faces
            .into_iter()
            .map(|face| {
                let liveness = pipeline.liveness(&decoded, &face)?;
                let mut described = json!(face);
                described["liveness"] = json!(liveness);
                Ok(described)
            })
            .collect::<Result<Vec<_>, _>>()
    });
    match faces {
        Ok(faces) => {
            let output = json!({
                "image": image.display().to_string(),
                "width": decoded.width(),
                "height": decoded.height(),
                "liveness_min_score": attendance.liveness_min_score,
                "faces": faces,
            });
            println!("{output}");
            Exit::Success
        }
        Err(err) => {
            eprintln!("{}: {err}", image.display());
            Exit::Failure
        }
    }
}

pub fn compare(first: &Path, second: &Path, config_path: Option<&Path>) -> Exit {
    let Some(attendance) = attendance_config(config_path) else {
        return Exit::InvalidInput;
    };
    let Some(mut pipeline) = open_pipeline(&attendance) else {
        return Exit::InvalidInput;
    };
    let mut embeddings = Vec::new();
    for path in [first, second] {
        let largest = photo_faces(&mut pipeline, path).and_then(|faces| {
            faces
                .into_iter()
                .max_by(|a, b| a.detected.area().total_cmp(&b.detected.area()))
                .ok_or(PhotoError::NoFace)
        });
        match largest {
            Ok(face) => embeddings.push(face.embedding),
            Err(err) => {
                eprintln!("{}: {err}", path.display());
                return Exit::InvalidInput;
            }
        }
    }
    let similarity = embeddings[0].similarity(&embeddings[1]);
    let same = similarity >= attendance.threshold;
    let output = json!({
        "similarity": similarity,
        "threshold": attendance.threshold,
        "verdict": if same { "same_person" } else { "different_people" },
    });
    println!("{output}");
    if same { Exit::Success } else { Exit::Failure }
}

fn parse_id(student: &str) -> Option<PersonalId> {
    student
        .parse()
        .map_err(|err| {
            eprintln!(
                "`{student}`: {err}\n  hint: give the pupil's 12-digit personal ID (mã định danh)"
            )
        })
        .ok()
}

/// The `[attendance]` section of the config given, or the defaults (models from the environment).
fn attendance_config(config_path: Option<&Path>) -> Option<AttendanceConfig> {
    match config_path {
        Some(path) => Config::load(path)
            .map(|config| config.attendance)
            .map_err(|err| eprintln!("{err}"))
            .ok(),
        None => {
            let mut attendance = AttendanceConfig {
                threshold: DEFAULT_THRESHOLD,
                ..AttendanceConfig::default()
            };
            attendance.resolve_paths(|path| {
                std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
            });
            Some(attendance)
        }
    }
}

fn open_pipeline(attendance: &AttendanceConfig) -> Option<Pipeline> {
    ModelSet::load(&attendance.models_dir, &attendance.onnxruntime_library)
        .and_then(|models| Pipeline::new(&models))
        .map(|mut pipeline| {
            pipeline.set_smallest_face(attendance.smallest_face_pixels);
            pipeline
        })
        .map_err(|err| eprintln!("{err}"))
        .ok()
}

/// Why a photo gave no face to work with; printed after the photo's path.
#[derive(Debug, thiserror::Error)]
enum PhotoError {
    #[error("cannot read: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error(transparent)]
    NotAnImage(#[from] DecodeError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("no face found")]
    NoFace,
}

/// The photo at `path`, decoded.
fn read_image(path: &Path) -> Result<image::RgbImage, PhotoError> {
    Ok(pipeline::decode(&std::fs::read(path)?)?)
}

/// Every face of the photo at `path`, aligned and embedded.
fn photo_faces(pipeline: &mut Pipeline, path: &Path) -> Result<Vec<Face>, PhotoError> {
    let image = read_image(path)?;
    Ok(pipeline.faces(&image)?)
}

/// Copies an enrolled photo beside the database, for debugging only (off by default).
fn keep_debug_photo(config: &Config, personal_id: &PersonalId, photo: &Path) {
    let dir = config
        .storage
        .data_dir
        .join("debug-photos")
        .join(personal_id.as_str());
    let copied = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::copy(
            photo,
            dir.join(photo.file_name().unwrap_or(photo.as_os_str())),
        )
    });
    if let Err(err) = copied {
        tracing::warn!(%err, dir = %dir.display(), "cannot keep the debug photo");
    }
}
