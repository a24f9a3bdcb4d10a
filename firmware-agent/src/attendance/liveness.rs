//! The liveness check: is the face in front of the camera a person, or a photo
//! of one held up to it? A pupil's friend holding up the pupil's picture must
//! not mark the pupil present.
//!
//! # Design
//! - `fr_liveness.onnx` sees the face with its surroundings: the detector's box
//!   grown 2.7 times about its centre (less when the frame is too small), moved
//!   back inside the frame rather than cut, and resized to 128x128 without
//!   keeping the aspect ratio, as the model was trained. The surroundings
//!   matter: the edge of a print or of a phone's screen is much of what
//!   betrays a photo.
//! - Its input is RGB planes of raw 0–255 values; its three outputs, after a
//!   softmax, are the chance of a live face (the first) and of two kinds of
//!   spoof. The first is the face's liveness score.
//! - The cut-out has whole-pixel corners and is resized plain bilinear with
//!   half-pixel centres (no averaging over the pixels a sample spans), exactly
//!   as the model's own preprocessing does it: its scores move a lot with a
//!   shift of two pixels, so anything else would not be the model as measured.
//! - The check is off by default (`attendance.liveness`): measured on the shared
//!   test faces, most photos taken straight with a camera score above 0.9,
//!   a photo printed and held up in a frame scores below 0.05, but a few
//!   straight photos score low too (0.15 and 0.27), so a room turns it on where
//!   its camera and light have been seen to work with it.

use std::time::Duration;

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::align::{Affine, warp};
use super::detect::DetectedFace;
use super::embed::rgb_planes;

/// The model's input side.
pub const INPUT_SIZE: u32 = 128;
/// How much of the face's surroundings the model sees: the box grown this many times.
const CONTEXT: f32 = 2.7;
/// The score at or above which a face is taken as live, unless the config says otherwise.
pub const DEFAULT_MIN_SCORE: f32 = 0.5;

/// The part of the frame the model sees for a face: left, top, width, height.
pub fn context_box(bbox: &[f32; 4], frame_width: u32, frame_height: u32) -> [f32; 4] {
    let (frame_width, frame_height) = (frame_width as f32, frame_height as f32);
    let (width, height) = ((bbox[2] - bbox[0]).max(1.0), (bbox[3] - bbox[1]).max(1.0));
    let grow = CONTEXT
        .min((frame_width - 1.0) / width)
        .min((frame_height - 1.0) / height);
    let (grown_width, grown_height) = (width * grow, height * grow);
    let fit = |centre: f32, side: f32, limit: f32| {
        (centre - side / 2.0).clamp(0.0, (limit - 1.0 - side).max(0.0))
    };
    let left = fit((bbox[0] + bbox[2]) / 2.0, grown_width, frame_width);
    let top = fit((bbox[1] + bbox[3]) / 2.0, grown_height, frame_height);
    [left, top, grown_width, grown_height]
}

/// The chance, from 0 to 1, that `face` in `image` is a live person.
pub fn score(
    session: &mut Session,
    image: &RgbImage,
    face: &DetectedFace,
    onnx: &mut Duration,
) -> Result<f32, ort::Error> {
    let [left, top, width, height] =
        context_box(&face.bbox, image.width(), image.height()).map(f32::trunc);
    // Pixel centres at half-pixel offsets on both sides, as a plain resize of the cut-out takes them.
    let (half_x, half_y) = (
        0.5 * (width / INPUT_SIZE as f32 - 1.0),
        0.5 * (height / INPUT_SIZE as f32 - 1.0),
    );
    let to_input = Affine::rectangle_crop(
        left + half_x,
        top + half_y,
        width,
        height,
        INPUT_SIZE,
        INPUT_SIZE,
    );
    let crop = warp(image, to_input, INPUT_SIZE, INPUT_SIZE, 1);
    let input = rgb_planes(&crop, INPUT_SIZE, |v| v);
    let started = std::time::Instant::now();
    let outputs = session.run(ort::inputs!["input" => TensorRef::from_array_view(&input)?])?;
    *onnx += started.elapsed();
    let (_, logits) = outputs["output"].try_extract_tensor::<f32>()?;
    Ok(live_chance(logits))
}

/// The softmax of the model's three outputs, its first class: live.
fn live_chance(logits: &[f32]) -> f32 {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|v| (v - top).exp()).sum();
    (logits[0] - top).exp() / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_the_box_grown_about_its_centre() {
        let [left, top, width, height] = context_box(&[600.0, 300.0, 700.0, 420.0], 1280, 720);
        assert_eq!([width, height], [270.0, 324.0]);
        assert_eq!([left + width / 2.0, top + height / 2.0], [650.0, 360.0]);
    }

    #[test]
    fn a_context_past_the_frame_is_moved_back_inside_it() {
        let [left, top, width, height] = context_box(&[1200.0, 10.0, 1270.0, 90.0], 1280, 720);
        assert_eq!([width, height], [189.0, 216.0]);
        assert_eq!(top, 0.0);
        assert_eq!(left + width, 1279.0);
    }

    #[test]
    fn a_face_filling_the_frame_grows_only_as_far_as_the_frame() {
        let [left, top, width, height] = context_box(&[10.0, 20.0, 190.0, 180.0], 200, 200);
        assert!(width <= 199.0 && height <= 199.0, "{width}x{height}");
        assert!(left >= 0.0 && top >= 0.0);
    }

    #[test]
    fn the_live_chance_is_the_softmax_of_the_first_class() {
        assert!((live_chance(&[0.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert!(live_chance(&[10.0, 0.0, 0.0]) > 0.99);
        assert!(live_chance(&[-5.0, 5.0, 0.0]) < 0.01);
    }
}
