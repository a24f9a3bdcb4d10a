//! The whole path from a photo's bytes to the embeddings of its faces, with the
//! time each stage of the models took.
//!
//! # Design
//! A [`Pipeline`] owns one session per model and is used by one thread at a
//! time (ONNX Runtime's `run` takes the session mutably); the roll call runs one
//! per inference worker, the commands one each. Sessions are built once, when
//! the pipeline is made, from model bytes already checked by [`ModelSet`].

use std::time::{Duration, Instant};

use image::RgbImage;
use ort::session::Session;

use super::align;
use super::config::DEFAULT_SMALLEST_FACE_PIXELS;
use super::detect::{self, DetectedFace};
use super::embed::{self, Embedding};
use super::liveness;
use super::models::{self, ModelError, ModelSet};

/// Why a photo could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JPEG, PNG, BMP or WebP image, or the file is cut short or damaged: {0}")]
    Unreadable(String),
}

/// A JPEG whose end-of-image marker is missing: a file or camera frame cut
/// short, which the decoder would otherwise fill in with grey.
fn is_cut_short_jpeg(bytes: &[u8]) -> bool {
    let trimmed = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(&bytes[..0], |end| &bytes[..=end]);
    bytes.starts_with(&[0xFF, 0xD8]) && !trimmed.ends_with(&[0xFF, 0xD9])
}

/// Decodes an encoded image (JPEG, PNG, BMP, WebP) to RGB.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    if is_cut_short_jpeg(bytes) {
        return Err(DecodeError::Unreadable(
            "the JPEG data ends before its end marker".to_owned(),
        ));
    }
    Ok(image::load_from_memory(bytes)
        .map_err(|err| DecodeError::Unreadable(err.to_string()))?
        .into_rgb8())
}

/// Why a frame could not go through the models.
#[derive(Debug, thiserror::Error)]
#[error("ONNX Runtime failed on the frame: {0}")]
pub struct InferenceError(String);

impl From<ort::Error> for InferenceError {
    fn from(err: ort::Error) -> Self {
        InferenceError(err.to_string())
    }
}

/// Time spent in each stage since the pipeline was made (or the times were taken).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub detect: Duration,
    pub landmarks: Duration,
    pub align: Duration,
    pub embed: Duration,
    pub liveness: Duration,
    /// Of the above, the time inside ONNX Runtime's own `run`.
    pub onnx_runtime: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.detect + self.landmarks + self.align + self.embed + self.liveness
    }
}

/// A face found, aligned and embedded.
#[derive(Debug, Clone)]
pub struct Face {
    pub detected: DetectedFace,
    /// The 112x112 RGB aligned face.
    pub aligned: Vec<u8>,
    pub embedding: Embedding,
}

/// The models, ready to run on one thread.
pub struct Pipeline {
    detector: Session,
    landmarker: Session,
    embedder: Session,
    liveness: Session,
    /// The narrowest face, in the frame's pixels, the detector must find.
    smallest_face: u32,
    times: StageTimes,
}

impl Pipeline {
    pub fn new(models: &ModelSet) -> Result<Pipeline, ModelError> {
        Ok(Pipeline {
            detector: models.session(models::DETECTOR)?,
            landmarker: models.session(models::LANDMARKS)?,
            embedder: models.session(models::EMBEDDER)?,
            liveness: models.session(models::LIVENESS)?,
            smallest_face: DEFAULT_SMALLEST_FACE_PIXELS,
            times: StageTimes::default(),
        })
    }

    /// Makes the detector find faces down to `pixels` wide in a frame
    /// (`attendance.smallest_face_pixels`): the larger the frame against it,
    /// the more tiles the detector sees it in.
    pub fn set_smallest_face(&mut self, pixels: u32) {
        self.smallest_face = pixels;
    }

    /// Every face in `image` with its box, score and landmarks, best score first.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<DetectedFace>, InferenceError> {
        let boxes = self.find_faces(image)?;
        boxes
            .into_iter()
            .map(|(bbox, score)| self.locate_landmarks(image, bbox, score))
            .collect()
    }

    /// The box and score of every face in `image`, best score first: the
    /// detector alone, before any landmarks.
    pub fn find_faces(&mut self, image: &RgbImage) -> Result<Vec<([f32; 4], f32)>, InferenceError> {
        let started = Instant::now();
        let boxes = detect::detect_boxes(
            &mut self.detector,
            image,
            self.smallest_face,
            &mut self.times.onnx_runtime,
        )?;
        self.times.detect += started.elapsed();
        Ok(boxes)
    }

    /// The face found in `bbox`, with its landmarks.
    pub fn locate_landmarks(
        &mut self,
        image: &RgbImage,
        bbox: [f32; 4],
        score: f32,
    ) -> Result<DetectedFace, InferenceError> {
        let started = Instant::now();
        let landmarks = detect::landmarks(
            &mut self.landmarker,
            image,
            &bbox,
            &mut self.times.onnx_runtime,
        )?;
        self.times.landmarks += started.elapsed();
        Ok(DetectedFace {
            bbox,
            score,
            landmarks,
        })
    }

    /// The aligned face and its embedding.
    pub fn describe(
        &mut self,
        image: &RgbImage,
        face: DetectedFace,
    ) -> Result<Face, InferenceError> {
        let started = Instant::now();
        let aligned = align::align(image, &face.landmarks);
        self.times.align += started.elapsed();
        let started = Instant::now();
        let embedding = embed::embed(&mut self.embedder, &aligned, &mut self.times.onnx_runtime)?;
        self.times.embed += started.elapsed();
        Ok(Face {
            detected: face,
            aligned,
            embedding,
        })
    }

    /// The chance, from 0 to 1, that `face` is a live person rather than a photo held up to the camera.
    pub fn liveness(
        &mut self,
        image: &RgbImage,
        face: &DetectedFace,
    ) -> Result<f32, InferenceError> {
        let started = Instant::now();
        let score = liveness::score(
            &mut self.liveness,
            image,
            face,
            &mut self.times.onnx_runtime,
        )?;
        self.times.liveness += started.elapsed();
        Ok(score)
    }

    /// Every face in `image`, aligned and embedded.
    pub fn faces(&mut self, image: &RgbImage) -> Result<Vec<Face>, InferenceError> {
        let detected = self.detect(image)?;
        detected
            .into_iter()
            .map(|face| self.describe(image, face))
            .collect()
    }

    /// The stage times gathered so far, resetting them.
    pub fn take_times(&mut self) -> StageTimes {
        std::mem::take(&mut self.times)
    }
}
