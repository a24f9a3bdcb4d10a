//! Geometry: the 5-point similarity alignment that puts every face in the same
//! place of a 112x112 image before it is embedded, and the resampling it needs.
//!
//! # Design
//! - The embedder was trained on faces whose eyes, nose tip and mouth corners
//!   sit at fixed points ([`TEMPLATE`]); a similarity transform (rotation, uniform
//!   scale, translation) fitted by least squares (Umeyama's closed form in 2-D)
//!   maps the detected landmarks there without distorting the face.
//! - Resampling averages a small grid of bilinear samples per output pixel when
//!   the transform shrinks the image, so a 400-pixel face reduced to 48 or 112
//!   pixels is not aliased (what an area filter does, without a copy of the crop).

use image::RgbImage;

/// Where the five landmarks (left eye, right eye, nose, left and right mouth
/// corners) sit in the 112x112 aligned face.
pub const TEMPLATE: [[f32; 2]; 5] =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// The side of the aligned face.
pub const ALIGNED_SIZE: u32 = 112;

/// A 2-D affine map `(x, y) -> (a x + b y + c, d x + e y + f)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine([f32; 6]);

impl Affine {
    /// The map that sends the square `(left, top, side)` of the image onto `[0, size)²`.
    pub fn square_crop(left: f32, top: f32, side: f32, size: u32) -> Affine {
        let scale = size as f32 / side;
        Affine([scale, 0.0, -left * scale, 0.0, scale, -top * scale])
    }

    /// The similarity transform sending `from` onto `to` with the least squared error.
    pub fn similarity(from: &[[f32; 2]; 5], to: &[[f32; 2]; 5]) -> Affine {
        let mean = |points: &[[f32; 2]; 5]| {
            let sum = points.iter().fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
            [sum[0] / 5.0, sum[1] / 5.0]
        };
        let (mf, mt) = (mean(from), mean(to));
        let (mut dot, mut cross, mut norm) = (0.0f32, 0.0f32, 0.0f32);
        for (p, q) in from.iter().zip(to) {
            let (px, py) = (p[0] - mf[0], p[1] - mf[1]);
            let (qx, qy) = (q[0] - mt[0], q[1] - mt[1]);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        let norm = norm.max(f32::EPSILON);
        let (c, s) = (dot / norm, cross / norm);
        Affine([c, -s, mt[0] - (c * mf[0] - s * mf[1]), s, c, mt[1] - (s * mf[0] + c * mf[1])])
    }

    pub fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let m = &self.0;
        [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]]
    }

    /// The inverse map; `None` for a degenerate one.
    pub fn inverse(&self) -> Option<Affine> {
        let [a, b, c, d, e, f] = self.0;
        let det = a * e - b * d;
        if det.abs() < 1e-12 {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine([ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)]))
    }

    /// How many image pixels one output pixel spans.
    fn shrink(&self) -> f32 {
        let [a, b, _, d, e, _] = self.0;
        (a * e - b * d).abs().sqrt()
    }
}

/// Resamples `image` through `to_output` into a `width` x `height` RGB buffer
/// (row-major, 3 bytes a pixel); outside the image is black. At most
/// `max_grid`² samples are averaged per output pixel.
pub fn warp(image: &RgbImage, to_output: Affine, width: u32, height: u32, max_grid: u32) -> Vec<u8> {
    let Some(to_input) = to_output.inverse() else {
        return vec![0; (width * height * 3) as usize];
    };
    let grid = (to_input.shrink().ceil() as u32).clamp(1, max_grid.max(1));
    let step = 1.0 / grid as f32;
    let weight = 1.0 / (grid * grid) as f32;
    let mut out = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let mut sum = [0.0f32; 3];
            for gy in 0..grid {
                for gx in 0..grid {
                    let point = [x as f32 + (gx as f32 + 0.5) * step - 0.5, y as f32 + (gy as f32 + 0.5) * step - 0.5];
                    let [sx, sy] = to_input.apply(point);
                    let pixel = bilinear(image, sx, sy);
                    for c in 0..3 {
                        sum[c] += pixel[c];
                    }
                }
            }
            out.extend(sum.map(|v| (v * weight).round().clamp(0.0, 255.0) as u8));
        }
    }
    out
}

/// The aligned 112x112 face for the given landmarks.
pub fn align(image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Vec<u8> {
    warp(image, Affine::similarity(landmarks, &TEMPLATE), ALIGNED_SIZE, ALIGNED_SIZE, 2)
}

fn bilinear(image: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let raw = image.as_raw();
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let at = |px: i64, py: i64| -> [f32; 3] {
        if px < 0 || py < 0 || px >= w || py >= h {
            [0.0; 3]
        } else {
            let i = ((py * w + px) * 3) as usize;
            [raw[i] as f32, raw[i + 1] as f32, raw[i + 2] as f32]
        }
    };
    let (p00, p10, p01, p11) = (at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1));
    std::array::from_fn(|c| {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        top + (bottom - top) * fy
    })
}

/// Sharpness of an aligned face: the variance of its grey Laplacian. A blurred
/// or out-of-focus photo scores low.
pub fn sharpness(aligned: &[u8]) -> f32 {
    let size = ALIGNED_SIZE as usize;
    let grey: Vec<f32> =
        aligned.chunks_exact(3).map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).collect();
    let mut values = Vec::with_capacity(size * size);
    // The central part only: the corners of an aligned face are background.
    for y in 16..size - 16 {
        for x in 16..size - 16 {
            let at = |dx: isize, dy: isize| grey[(y as isize + dy) as usize * size + (x as isize + dx) as usize];
            values.push(at(-1, 0) + at(1, 0) + at(0, -1) + at(0, 1) - 4.0 * at(0, 0));
        }
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / values.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_recovers_a_known_rotation_scale_and_shift() {
        let (angle, scale, shift) = (0.3f32, 2.5f32, [40.0f32, -7.0f32]);
        let known = Affine([
            scale * angle.cos(),
            -scale * angle.sin(),
            shift[0],
            scale * angle.sin(),
            scale * angle.cos(),
            shift[1],
        ]);
        let moved = TEMPLATE.map(|p| known.apply(p));
        let fitted = Affine::similarity(&TEMPLATE, &moved);
        for (a, b) in fitted.0.iter().zip(known.0) {
            assert!((a - b).abs() < 1e-3, "{fitted:?} vs {known:?}");
        }
        let back = fitted.inverse().unwrap().apply(moved[2]);
        assert!((back[0] - TEMPLATE[2][0]).abs() < 1e-3 && (back[1] - TEMPLATE[2][1]).abs() < 1e-3);
    }

    #[test]
    fn warp_of_a_crop_copies_the_pixels() {
        let image = RgbImage::from_fn(20, 10, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let out = warp(&image, Affine::square_crop(5.0, 2.0, 4.0, 4), 4, 4, 4);
        assert_eq!(&out[0..3], &[50, 40, 7]);
        assert_eq!(&out[(3 * 4 + 3) * 3..], &[80, 100, 7]);
    }
}
