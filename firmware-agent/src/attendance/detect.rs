//! Finding faces: boxes from the SSD-style detector on a 320x240 copy of the
//! frame, then five landmarks for each box from MTCNN's last stage.
//!
//! # Design
//! - `fr_detect.onnx` returns, for each of its 4 420 prior boxes, a face score
//!   and a box already decoded to corners in [0, 1] of the frame; boxes above
//!   [`MIN_SCORE`] are kept and overlapping ones suppressed (NMS at IoU 0.4).
//! - Landmarks come from `onet.onnx` (MTCNN's output network) run on the square
//!   around each box: it is accurate where the face is known, and skipping
//!   MTCNN's image pyramid costs one small network run per face instead of
//!   dozens per frame. Its input is width-major (N, x, y, RGB) scaled to [-1, 1].
//! - The detector sees the whole frame scaled to 320x240, so a face narrower
//!   than about 1/16 of the frame's width is not found: at 1280x720 that is
//!   about 40 pixels, as small as a pupil at the back of a classroom appears.

use image::RgbImage;
use std::time::Duration;

use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use super::align::{Affine, warp};

/// The detector's input size.
const DETECTOR_WIDTH: u32 = 320;
const DETECTOR_HEIGHT: u32 = 240;
/// Face score below which a box is dropped.
pub const MIN_SCORE: f32 = 0.7;
/// Boxes overlapping a better one by more than this IoU are the same face.
const NMS_IOU: f32 = 0.4;
/// MTCNN's output network's input side.
const LANDMARK_SIZE: u32 = 48;

/// A face found in a frame, in the frame's pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectedFace {
    /// Left, top, right, bottom.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    /// Left eye, right eye, nose tip, left and right mouth corners, as (x, y).
    pub landmarks: [[f32; 2]; 5],
}

impl DetectedFace {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * (self.bbox[3] - self.bbox[1]).max(0.0)
    }
}

/// Boxes (before landmarks) from the detector.
pub fn detect_boxes(session: &mut Session, image: &RgbImage, onnx: &mut Duration) -> Result<Vec<([f32; 4], f32)>, ort::Error> {
    let input = detector_input(image);
    let started = std::time::Instant::now();
    let outputs = session.run(ort::inputs!["input" => TensorRef::from_array_view(&input)?])?;
    *onnx += started.elapsed();
    let (_, scores) = outputs["scores"].try_extract_tensor::<f32>()?;
    let (_, boxes) = outputs["boxes"].try_extract_tensor::<f32>()?;
    let (w, h) = (image.width() as f32, image.height() as f32);
    let mut candidates: Vec<([f32; 4], f32)> = scores
        .chunks_exact(2)
        .zip(boxes.chunks_exact(4))
        .filter(|(score, _)| score[1] > MIN_SCORE)
        .map(|(score, b)| ([b[0] * w, b[1] * h, b[2] * w, b[3] * h], score[1]))
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept: Vec<([f32; 4], f32)> = Vec::new();
    for candidate in candidates {
        if kept.iter().all(|k| iou(&k.0, &candidate.0) <= NMS_IOU) {
            kept.push(candidate);
        }
    }
    Ok(kept)
}

/// The five landmarks of the face in `bbox`.
pub fn landmarks(session: &mut Session, image: &RgbImage, bbox: &[f32; 4], onnx: &mut Duration) -> Result<[[f32; 2]; 5], ort::Error> {
    let side = (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]).max(1.0);
    let (left, top) = ((bbox[0] + bbox[2] - side) / 2.0, (bbox[1] + bbox[3] - side) / 2.0);
    let crop = warp(image, Affine::square_crop(left, top, side, LANDMARK_SIZE), LANDMARK_SIZE, LANDMARK_SIZE, 4);
    let n = LANDMARK_SIZE as usize;
    let input = Array4::from_shape_fn((1, n, n, 3), |(_, x, y, c)| (crop[(y * n + x) * 3 + c] as f32 - 127.5) * 0.0078125);
    let started = std::time::Instant::now();
    let outputs = session.run(ort::inputs!["input_3" => TensorRef::from_array_view(&input)?])?;
    *onnx += started.elapsed();
    let (_, points) = outputs["dense_6"].try_extract_tensor::<f32>()?;
    Ok(std::array::from_fn(|i| [left + points[i] * side, top + points[i + 5] * side]))
}

/// The frame scaled to 320x240 (bilinear, as the detector was trained), RGB
/// planes, (x - 127) / 128.
fn detector_input(image: &RgbImage) -> Array4<f32> {
    let (w, h) = (DETECTOR_WIDTH as usize, DETECTOR_HEIGHT as usize);
    let scaled = warp(
        image,
        Affine::scale(DETECTOR_WIDTH as f32 / image.width() as f32, DETECTOR_HEIGHT as f32 / image.height() as f32),
        DETECTOR_WIDTH,
        DETECTOR_HEIGHT,
        1,
    );
    let mut planes = vec![0.0f32; 3 * w * h];
    let (red, rest) = planes.split_at_mut(w * h);
    let (green, blue) = rest.split_at_mut(w * h);
    for (i, pixel) in scaled.chunks_exact(3).enumerate() {
        red[i] = (pixel[0] as f32 - 127.0) / 128.0;
        green[i] = (pixel[1] as f32 - 127.0) / 128.0;
        blue[i] = (pixel[2] as f32 - 127.0) / 128.0;
    }
    Array4::from_shape_vec((1, 3, h, w), planes).expect("three planes of the detector's size")
}

pub(crate) fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let inter = [a[0].max(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].min(b[3])];
    let i = area(&inter);
    if i <= 0.0 { 0.0 } else { i / (area(a) + area(b) - i) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
