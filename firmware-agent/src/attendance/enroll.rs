//! Which face of an enrollment photo becomes the pupil's template, or why the
//! photo is refused.
//!
//! # Design
//! A template enrolled from the wrong face would mark another child present,
//! so a photo is refused rather than guessed at: no face; two faces of similar
//! size (which one is the pupil?); a face too small to give a reliable
//! template; a blurred face. A much smaller face in the background is taken to
//! be a passer-by and the main face is enrolled.

use std::fmt;

use super::align;
use super::pipeline::Face;

/// A second face at least this fraction of the main face's width makes the photo ambiguous.
pub const SIMILAR_SIZE: f32 = 0.6;
/// The narrowest face, in pixels, that gives a template.
pub const MIN_FACE_PIXELS: f32 = 64.0;
/// The least sharpness (variance of the aligned face's Laplacian) accepted.
/// Measured on the shared enrollment photos: 299 to 749 as taken; blurred with
/// a Gaussian of 1/80 of the face's width, 51 to 104; of 1/40, 9 to 26.
pub const MIN_SHARPNESS: f32 = 80.0;

/// Why a photo gives no template.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    NoFace,
    SeveralFaces { count: usize },
    TooSmall { width: f32 },
    Blurred { sharpness: f32 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoFace => write!(
                f,
                "no face found; use a photo of the pupil facing the camera"
            ),
            Refusal::SeveralFaces { count } => {
                write!(
                    f,
                    "{count} faces of similar size; use a photo of the pupil alone"
                )
            }
            Refusal::TooSmall { width } => write!(
                f,
                "the face is too small ({width:.0} pixels wide, at least {MIN_FACE_PIXELS:.0} needed); take the photo closer"
            ),
            Refusal::Blurred { sharpness } => write!(
                f,
                "the face is blurred (sharpness {sharpness:.0}, at least {MIN_SHARPNESS:.0} needed); hold the camera still and focus"
            ),
        }
    }
}

/// The face to enroll from `faces` (all the faces of one photo).
pub fn choose(mut faces: Vec<Face>) -> Result<Face, Refusal> {
    faces.sort_by(|a, b| b.detected.area().total_cmp(&a.detected.area()));
    let mut faces = faces.into_iter();
    let main = faces.next().ok_or(Refusal::NoFace)?;
    let similar = faces
        .filter(|other| other.detected.width() >= SIMILAR_SIZE * main.detected.width())
        .count();
    if similar > 0 {
        return Err(Refusal::SeveralFaces { count: similar + 1 });
    }
    if main.detected.width() < MIN_FACE_PIXELS {
        return Err(Refusal::TooSmall {
            width: main.detected.width(),
        });
    }
    let sharpness = align::sharpness(&main.aligned);
    if sharpness < MIN_SHARPNESS {
        return Err(Refusal::Blurred { sharpness });
    }
    Ok(main)
}
