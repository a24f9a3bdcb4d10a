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
//! - The 320x240 input is made as OpenCV's `cv2.resize` (`INTER_LINEAR`) makes
//!   it, which is how the detector's authors fed it: a separable bilinear
//!   resize with pixel centres at half-integers, written straight into the
//!   normalised planes in one pass. Sampling at whole source pixels instead
//!   (pixel corners) shifts the view by 1.5 x 1 pixels of a 1280x720 frame; on
//!   a composed test frame that alone lifted a patch of painted background to
//!   a face score of 0.70.
//! - The detector sees the whole frame scaled to 320x240, so a face narrower
//!   than about 1/16 of the frame's width is not found: at 1280x720 that is
//!   about 40 pixels, as small as a pupil at the back of a classroom appears.

use image::RgbImage;
use std::time::Duration;

use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use super::align::square_crop;

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
    let crop = square_crop(image, left, top, side, LANDMARK_SIZE, 4);
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
    Array4::from_shape_vec((1, 3, h, w), resized_planes(image, w, h)).expect("three planes of the detector's size")
}

/// `image` resized to `width` x `height` as OpenCV's `INTER_LINEAR` does it
/// (pixel centres at half-integers, edges repeated), written straight into
/// normalised RGB planes: one pass, no intermediate image.
fn resized_planes(image: &RgbImage, width: usize, height: usize) -> Vec<f32> {
    let (source_width, source_height) = (image.width() as usize, image.height() as usize);
    let mut planes = vec![0.0f32; 3 * width * height];
    if source_width == 0 || source_height == 0 {
        return planes;
    }
    let columns = linear_taps(source_width, width);
    let raw = image.as_raw();
    // One source row resized horizontally, as three planes of `width` values.
    let resize_row = |y: usize, out: &mut [f32]| {
        let row = &raw[y * source_width * 3..(y + 1) * source_width * 3];
        let (red, rest) = out.split_at_mut(width);
        let (green, blue) = rest.split_at_mut(width);
        for (x, tap) in columns.iter().enumerate() {
            let (p, q) = (&row[tap.first * 3..tap.first * 3 + 3], &row[tap.second * 3..tap.second * 3 + 3]);
            let lerp = |c: usize| p[c] as f32 + (q[c] as f32 - p[c] as f32) * tap.weight;
            (red[x], green[x], blue[x]) = (lerp(0), lerp(1), lerp(2));
        }
    };
    let (mut upper, mut lower) = (vec![0.0f32; 3 * width], vec![0.0f32; 3 * width]);
    for (y, tap) in linear_taps(source_height, height).iter().enumerate() {
        resize_row(tap.first, &mut upper);
        resize_row(tap.second, &mut lower);
        for c in 0..3 {
            let out = &mut planes[(c * height + y) * width..][..width];
            let (p, q) = (&upper[c * width..][..width], &lower[c * width..][..width]);
            for x in 0..width {
                out[x] = (p[x] + (q[x] - p[x]) * tap.weight - 127.0) * (1.0 / 128.0);
            }
        }
    }
    planes
}

/// Where one output sample of a linear resize reads along an axis: two
/// neighbouring source indices and the weight of the second.
struct Tap {
    first: usize,
    second: usize,
    weight: f32,
}

/// The taps of resizing `source` samples to `output`, with OpenCV's
/// half-pixel-centre convention; beyond the edges the edge sample repeats.
fn linear_taps(source: usize, output: usize) -> Vec<Tap> {
    let scale = source as f32 / output as f32;
    (0..output)
        .map(|i| {
            let at = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
            let first = (at as usize).min(source - 1);
            Tap { first, second: (first + 1).min(source - 1), weight: at - first as f32 }
        })
        .collect()
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

    /// A 6x4 image of pseudo-random pixels, row-major RGB.
    const SMALL: [u8; 72] = [
        248, 194, 190, 207, 147, 26, 237, 21, 245, 211, 239, 45, 5, 157, 159, 60, 54, 236, 109, 46, 199, 82, 32, 205,
        36, 7, 134, 222, 57, 146, 8, 149, 14, 15, 22, 10, 144, 208, 24, 24, 7, 41, 11, 85, 59, 104, 225, 110, 226, 201,
        8, 159, 26, 27, 163, 122, 33, 41, 201, 67, 70, 166, 228, 40, 50, 179, 0, 177, 137, 63, 13, 188,
    ];

    /// Asserts that `planes` are `expected` (interleaved RGB, as OpenCV gives
    /// it, rounded to bytes) normalised into planes.
    fn assert_matches_opencv(planes: &[f32], expected: &[u8]) {
        let pixels = expected.len() / 3;
        for (i, want) in expected.chunks_exact(3).enumerate() {
            for (c, &want) in want.iter().enumerate() {
                let got = planes[c * pixels + i] * 128.0 + 127.0;
                assert!((got - want as f32).abs() <= 0.75, "pixel {i} channel {c}: {got} vs OpenCV's {want}");
            }
        }
    }

    #[test]
    fn resizing_down_matches_opencv_inter_linear() {
        let image = RgbImage::from_raw(6, 4, SMALL.to_vec()).unwrap();
        // cv2.resize(image, (4, 3)), OpenCV 4.12.
        let expected = [
            215, 159, 157, 199, 46, 184, 161, 195, 80, 41, 75, 182, 108, 100, 114, 31, 39, 103, 152, 150, 99, 94, 62,
            17, 129, 144, 39, 55, 156, 165, 47, 104, 154, 69, 57, 150,
        ];
        assert_matches_opencv(&resized_planes(&image, 4, 3), &expected);
    }

    #[test]
    fn resizing_up_matches_opencv_inter_linear_with_repeated_edges() {
        let image = RgbImage::from_raw(6, 4, SMALL.to_vec()).unwrap();
        // cv2.resize(image, (9, 5)), OpenCV 4.12.
        let expected = [
            248, 194, 190, 227, 170, 108, 212, 126, 62, 232, 42, 208, 224, 130, 145, 177, 225, 64, 39, 171, 140, 32,
            105, 197, 60, 54, 236, 151, 90, 196, 135, 78, 174, 116, 57, 154, 100, 20, 165, 157, 61, 141, 183, 118, 106,
            42, 145, 67, 18, 91, 67, 28, 31, 78, 127, 127, 112, 90, 73, 117, 48, 24, 118, 28, 42, 101, 93, 94, 112, 155,
            147, 109, 125, 169, 30, 102, 100, 15, 87, 24, 19, 150, 182, 27, 89, 124, 38, 29, 72, 59, 29, 102, 99, 57,
            141, 120, 97, 176, 117, 146, 190, 60, 144, 108, 61, 130, 22, 75, 163, 122, 33, 102, 161, 50, 46, 195, 94,
            65, 172, 201, 55, 108, 203, 33, 71, 172, 6, 156, 144, 31, 95, 162, 63, 13, 188,
        ];
        assert_matches_opencv(&resized_planes(&image, 9, 5), &expected);
    }

    #[test]
    fn resizing_by_a_whole_factor_samples_between_the_middle_source_pixels() {
        // Along x, 1280 -> 320 reads source pixels 4i+1 and 4i+2 half and half.
        let image = RgbImage::from_fn(16, 3, |x, y| image::Rgb([x as u8 * 10, y as u8 * 50, 200]));
        let planes = resized_planes(&image, 4, 1);
        let values: Vec<f32> = planes.iter().map(|v| v * 128.0 + 127.0).collect();
        assert_eq!(values, [15.0, 55.0, 95.0, 135.0, 50.0, 50.0, 50.0, 50.0, 200.0, 200.0, 200.0, 200.0]);
    }
}
