//! The whole path from a photo's bytes to the embeddings of its faces, with the
//! time each stage of the models took.
//!
//! # Design
//! - A [`Pipeline`] owns one session per model and is used by one thread at a
//!   time (ONNX Runtime's `run` takes the session mutably). Sessions are built
//!   once, when the pipeline is made, from model bytes already checked by
//!   [`ModelSet`], each running on the one thread that calls it.
//! - One frame is spread over a *crew*, a pipeline per inference thread
//!   (`attendance.threads`): the detector's tiles are shared among them
//!   ([`find_faces_spread`]), then the faces' own work, landmarks, liveness,
//!   alignment and embedding ([`spread`]). Each pipeline takes the next item
//!   when it is done with its last, so a thread held up by the rest of the
//!   machine takes fewer; the results come back in the items' order, so a
//!   frame's faces and verdicts are the same on one thread or on many. The
//!   helpers are scoped threads started for each share-out: starting one
//!   costs tens of microseconds against the tens of milliseconds of even a
//!   1080p frame's detection, and nothing lives between frames.
//! - Why a crew rather than ONNX Runtime's own intra-op threads: the models
//!   are small (a 320x240 detector, 112x112 and 128x128 faces), so one run
//!   splits into little pieces whose hand-over costs about what they save; a
//!   face or a tile is a whole run per thread with nothing to hand over. On
//!   this machine with other work running, one detector run took a median of
//!   6.6 ms on one intra-op thread and 14.8 ms on two, one embedding 14.5 ms
//!   and 29.4 ms: ONNX Runtime's threads spin waiting for each other, and on a
//!   busy mini-PC the wait is long.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};
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
    #[error(
        "the image is {width}x{height} pixels, more than the {MAX_SIDE_PIXELS} a side and \
         {MAX_DECODED_MIB} MiB of pixels decoded: send a smaller photo, or lower the camera's resolution"
    )]
    TooLarge { width: u32, height: u32 },
}

/// The widest and tallest image [`decode`] takes: an 8K camera frame fits.
const MAX_SIDE_PIXELS: u32 = 8192;
/// The most memory the decoder may take for one image's pixels: an 8K frame,
/// or a photo of some 40 megapixels. A few hundred kilobytes of PNG or JPEG can
/// claim far more (a 446 KB PNG of 12000x12000 grey pixels took 432 MB), so
/// an image beyond this is refused before its pixels are allocated.
const MAX_DECODED_MIB: u64 = 128;

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
    Ok(decode_within_limits(bytes, false)?.into_rgb8())
}

/// Decodes an encoded image as [`decode`] does, within the same limits, and
/// turns it upright as its EXIF orientation says: a photo a tablet's camera
/// took sideways is stored as the pupil saw it.
pub fn decode_upright(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    Ok(decode_within_limits(bytes, true)?.into_rgb8())
}

fn decode_within_limits(bytes: &[u8], upright: bool) -> Result<DynamicImage, DecodeError> {
    if is_cut_short_jpeg(bytes) {
        return Err(DecodeError::Unreadable(
            "the JPEG data ends before its end marker".to_owned(),
        ));
    }
    let unreadable = |err: ImageError| DecodeError::Unreadable(err.to_string());
    let mut decoder = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .expect("reading the format from memory cannot fail")
        .into_decoder()
        .map_err(unreadable)?;
    let (width, height) = decoder.dimensions();
    let too_large = |err| match err {
        ImageError::Limits(_) => DecodeError::TooLarge { width, height },
        err => unreadable(err),
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE_PIXELS);
    limits.max_image_height = Some(MAX_SIDE_PIXELS);
    limits.max_alloc = Some(MAX_DECODED_MIB * 1024 * 1024);
    decoder.set_limits(limits).map_err(too_large)?;
    let orientation = if upright {
        decoder.orientation().ok()
    } else {
        None
    };
    let mut image = DynamicImage::from_decoder(decoder).map_err(too_large)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
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
        find_faces_spread(std::slice::from_mut(self), image)
    }

    /// The boxes the detector finds in one run's tile.
    fn detect_tile(
        &mut self,
        image: &RgbImage,
        run: &detect::TileRun,
    ) -> Result<Vec<detect::Candidate>, InferenceError> {
        let started = Instant::now();
        let found =
            detect::detect_in_tile(&mut self.detector, image, run, &mut self.times.onnx_runtime)?;
        self.times.detect += started.elapsed();
        Ok(found)
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

/// The box and score of every face in `image`, best score first, with the
/// detector's tiles shared among `crew`'s pipelines; the first pipeline's
/// smallest face sets the tiles.
pub fn find_faces_spread(
    crew: &mut [Pipeline],
    image: &RgbImage,
) -> Result<Vec<([f32; 4], f32)>, InferenceError> {
    let smallest_face = crew
        .first()
        .map_or(DEFAULT_SMALLEST_FACE_PIXELS, |p| p.smallest_face);
    let runs = detect::tile_runs(image.width(), image.height(), smallest_face);
    let found = spread(crew, &runs, |pipeline, run| {
        pipeline.detect_tile(image, run)
    })?;
    Ok(detect::merge(found.into_iter().flatten().collect()))
}

/// `work` done on every item, the items shared among `crew`'s pipelines, one
/// thread each (the calling thread is the first's); the results in the
/// items' order. The first error stops the share-out and is returned.
pub fn spread<T: Sync, R: Send>(
    crew: &mut [Pipeline],
    items: &[T],
    work: impl Fn(&mut Pipeline, &T) -> Result<R, InferenceError> + Sync,
) -> Result<Vec<R>, InferenceError> {
    let next = AtomicUsize::new(0);
    let take_items = |pipeline: &mut Pipeline| -> Result<Vec<(usize, R)>, InferenceError> {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return Ok(done);
            };
            match work(pipeline, item) {
                Ok(result) => done.push((index, result)),
                Err(err) => {
                    next.store(items.len(), Ordering::Relaxed);
                    return Err(err);
                }
            }
        }
    };
    let Some((first, helpers)) = crew.split_first_mut() else {
        panic!("a crew has at least one pipeline");
    };
    let helpers_needed = items.len().saturating_sub(1).min(helpers.len());
    let take_items = &take_items;
    let shares = std::thread::scope(|scope| {
        let helpers: Vec<_> = helpers[..helpers_needed]
            .iter_mut()
            .map(|pipeline| scope.spawn(move || take_items(pipeline)))
            .collect();
        let mut shares = vec![take_items(first)];
        shares.extend(helpers.into_iter().map(|helper| {
            helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }));
        shares
    });
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for share in shares {
        for (index, result) in share? {
            results[index] = Some(result);
        }
    }
    Ok(results
        .into_iter()
        .map(|result| result.expect("every item was taken by one pipeline"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 54-byte header of a 24-bit BMP of `width`x`height` pixels, without its pixels.
    fn bmp_header(width: u32, height: u32) -> Vec<u8> {
        let pixels = width * 3 * height;
        let mut bmp = b"BM".to_vec();
        for value in [54 + pixels, 0, 54, 40, width, height] {
            bmp.extend(value.to_le_bytes());
        }
        bmp.extend(1u16.to_le_bytes()); // planes
        bmp.extend(24u16.to_le_bytes()); // bits a pixel
        bmp.extend(
            [0u32, pixels, 2835, 2835, 0, 0]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        );
        bmp
    }

    #[test]
    fn an_image_claiming_more_pixels_than_the_limits_is_refused_naming_its_size() {
        // 54 bytes that claim 432 MB of pixels.
        let err = decode(&bmp_header(12_000, 12_000)).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    width: 12_000,
                    height: 12_000
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("12000x12000"), "{err}");
    }

    #[test]
    fn an_image_within_the_limits_cut_short_is_unreadable_not_too_large() {
        let err = decode(&bmp_header(640, 480)).unwrap_err();
        assert!(matches!(err, DecodeError::Unreadable(_)), "{err}");
    }
}
