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
//! - A face more than twice the aligned size is first averaged over blocks of
//!   whole pixels (as many a side as it is times larger), then sampled once a
//!   pixel: what a mipmap does. Averaging a block costs a few additions a
//!   pixel where a grid of bilinear samples costs four reads and a dozen
//!   multiplications each, and the aligned face is as smooth.
//! - On an unrotated square (the landmarks' crop) the grid's samples add up to
//!   one set of weights per output column and one per row, so [`square_crop`]
//!   gives the same pixels axis by axis at a fraction of the cost; the rotated
//!   alignment samples the grid ([`warp`]).

use image::RgbImage;

/// Where the five landmarks (left eye, right eye, nose, left and right mouth
/// corners) sit in the 112x112 aligned face.
pub const TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// The side of the aligned face.
pub const ALIGNED_SIZE: u32 = 112;

/// A 2-D affine map `(x, y) -> (a x + b y + c, d x + e y + f)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine([f32; 6]);

impl Affine {
    /// The map that sends the rectangle `(left, top, width, height)` of the
    /// image onto `[0, out_width) x [0, out_height)`, stretching it as needed.
    pub fn rectangle_crop(
        left: f32,
        top: f32,
        width: f32,
        height: f32,
        out_width: u32,
        out_height: u32,
    ) -> Affine {
        let (sx, sy) = (out_width as f32 / width, out_height as f32 / height);
        Affine([sx, 0.0, -left * sx, 0.0, sy, -top * sy])
    }

    /// The similarity transform sending `from` onto `to` with the least squared error.
    pub fn similarity(from: &[[f32; 2]; 5], to: &[[f32; 2]; 5]) -> Affine {
        let mean = |points: &[[f32; 2]; 5]| {
            let sum = points
                .iter()
                .fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
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
        Affine([
            c,
            -s,
            mt[0] - (c * mf[0] - s * mf[1]),
            s,
            c,
            mt[1] - (s * mf[0] + c * mf[1]),
        ])
    }

    /// This map applied after `first`.
    pub fn after(&self, first: &Affine) -> Affine {
        let [a, b, c, d, e, f] = self.0;
        let [p, q, r, s, t, u] = first.0;
        Affine([
            a * p + b * s,
            a * q + b * t,
            a * r + b * u + c,
            d * p + e * s,
            d * q + e * t,
            d * r + e * u + f,
        ])
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
        Some(Affine([
            ia,
            ib,
            -(ia * c + ib * f),
            id,
            ie,
            -(id * c + ie * f),
        ]))
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
pub fn warp(
    image: &RgbImage,
    to_output: Affine,
    width: u32,
    height: u32,
    max_grid: u32,
) -> Vec<u8> {
    let Some(to_input) = to_output.inverse() else {
        return vec![0; (width * height * 3) as usize];
    };
    let grid = (to_input.shrink().ceil() as u32).clamp(1, max_grid.max(1));
    let step = 1.0 / grid as f32;
    let offsets: Vec<[f32; 2]> = (0..grid * grid)
        .map(|k| {
            [
                ((k % grid) as f32 + 0.5) * step - 0.5,
                ((k / grid) as f32 + 0.5) * step - 0.5,
            ]
        })
        .collect();
    let weight = 1.0 / offsets.len() as f32;
    let sampler = Sampler::new(image);
    let mut out = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let mut sum = [0.0f32; 3];
            for [dx, dy] in &offsets {
                let [sx, sy] = to_input.apply([x as f32 + dx, y as f32 + dy]);
                sampler.add(sx, sy, &mut sum);
            }
            // Adding a half and truncating rounds these non-negative sums and
            // saturates at 255, without `f32::round`'s library call.
            out.extend(sum.map(|v| (v * weight + 0.5) as u8));
        }
    }
    out
}

/// The square `(left, top, side)` of `image` scaled to `size` x `size`: the
/// pixels [`warp`] gives for that crop, computed axis by axis. On an unrotated
/// square the grid of bilinear samples of a pixel adds up to one set of
/// weights per column and one per row, so a pixel costs a few dozen
/// multiply-adds where the grid costs up to `max_grid`² full samples.
pub fn square_crop(
    image: &RgbImage,
    left: f32,
    top: f32,
    side: f32,
    size: u32,
    max_grid: u32,
) -> Vec<u8> {
    let scale = side / size as f32;
    let grid = (scale.ceil() as u32).clamp(1, max_grid.max(1));
    let columns = crop_taps(left, scale, size, grid, image.width());
    let stride = image.width() as usize * 3;
    let raw = image.as_raw();
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    let mut row = vec![0.0f32; size as usize * 3];
    for taps in crop_taps(top, scale, size, grid, image.height()) {
        row.fill(0.0);
        for (y, row_weight) in taps {
            let source = &raw[y * stride..][..stride];
            for (pixel, column) in row.chunks_exact_mut(3).zip(&columns) {
                let mut sum = [0.0f32; 3];
                for &(x, weight) in column {
                    for c in 0..3 {
                        sum[c] += weight * source[x * 3 + c] as f32;
                    }
                }
                for c in 0..3 {
                    pixel[c] += row_weight * sum[c];
                }
            }
        }
        // Rounds as `warp` does.
        out.extend(row.iter().map(|v| (v + 0.5) as u8));
    }
    out
}

/// For each of `size` outputs along one axis of a crop starting at `start`
/// with `scale` source pixels an output, the source indices and weights that
/// `grid` bilinear samples add up to; indices outside `0..limit` (black) are
/// left out.
fn crop_taps(start: f32, scale: f32, size: u32, grid: u32, limit: u32) -> Vec<Vec<(usize, f32)>> {
    let step = 1.0 / grid as f32;
    (0..size)
        .map(|output| {
            let mut taps: Vec<(usize, f32)> = Vec::with_capacity(2 * grid as usize);
            for g in 0..grid {
                let at = start + (output as f32 + (g as f32 + 0.5) * step - 0.5) * scale;
                let first = floor(at);
                let fraction = at - first as f32;
                for (index, weight) in
                    [(first, 1.0 - fraction), (first.saturating_add(1), fraction)]
                {
                    if index < 0 || index as u32 >= limit {
                        continue;
                    }
                    match taps.iter_mut().find(|tap| tap.0 == index as usize) {
                        Some(tap) => tap.1 += weight * step,
                        None => taps.push((index as usize, weight * step)),
                    }
                }
            }
            taps
        })
        .collect()
}

/// The aligned 112x112 face for the given landmarks.
pub fn align(image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Vec<u8> {
    let to_output = Affine::similarity(landmarks, &TEMPLATE);
    let black = || vec![0; (ALIGNED_SIZE * ALIGNED_SIZE * 3) as usize];
    let Some(to_input) = to_output.inverse() else {
        return black();
    };
    let factor = to_input.shrink() as u32;
    if factor < 2 {
        return warp(image, to_output, ALIGNED_SIZE, ALIGNED_SIZE, 1);
    }
    let Some((reduced, reduced_to_image)) = reduce_around(image, &to_input, factor) else {
        return black();
    };
    warp(
        &reduced,
        to_output.after(&reduced_to_image),
        ALIGNED_SIZE,
        ALIGNED_SIZE,
        1,
    )
}

/// The part of `image` that `to_input` takes the aligned face from, averaged
/// over `factor` x `factor` blocks; with the map from the reduced image's
/// pixels back to `image`'s. `None` when that part lies outside the image.
fn reduce_around(image: &RgbImage, to_input: &Affine, factor: u32) -> Option<(RgbImage, Affine)> {
    let side = ALIGNED_SIZE as f32;
    let corners = [
        [-1.0, -1.0],
        [side + 1.0, -1.0],
        [-1.0, side + 1.0],
        [side + 1.0, side + 1.0],
    ]
    .map(|c| to_input.apply(c));
    let (xs, ys) = (corners.map(|c| c[0]), corners.map(|c| c[1]));
    let low = |v: [f32; 4], limit: u32| {
        (v.iter()
            .copied()
            .fold(f32::INFINITY, f32::min)
            .floor()
            .max(0.0) as u32)
            .min(limit)
    };
    let high = |v: [f32; 4], limit: u32| {
        (v.iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
            .ceil()
            .max(0.0) as u32)
            .min(limit)
    };
    let (left, top) = (low(xs, image.width()), low(ys, image.height()));
    let (width, height) = (
        (high(xs, image.width()) - left) / factor,
        (high(ys, image.height()) - top) / factor,
    );
    if width == 0 || height == 0 {
        return None;
    }
    let raw = image.as_raw();
    let stride = image.width() as usize * 3;
    let area = factor * factor;
    let mut reduced = RgbImage::new(width, height);
    let mut sums = vec![0u32; width as usize * 3];
    for (y, row) in reduced
        .as_mut()
        .chunks_exact_mut(width as usize * 3)
        .enumerate()
    {
        sums.fill(0);
        for dy in 0..factor as usize {
            let start = (top as usize + y * factor as usize + dy) * stride + left as usize * 3;
            let line = &raw[start..start + (width * factor) as usize * 3];
            for (x, block) in line.chunks_exact(factor as usize * 3).enumerate() {
                for pixel in block.chunks_exact(3) {
                    for c in 0..3 {
                        sums[x * 3 + c] += u32::from(pixel[c]);
                    }
                }
            }
        }
        for (out, sum) in row.iter_mut().zip(&sums) {
            *out = ((sum + area / 2) / area) as u8;
        }
    }
    // A reduced pixel's centre is the centre of its block.
    let f = factor as f32;
    let reduced_to_image = Affine([
        f,
        0.0,
        left as f32 + 0.5 * f - 0.5,
        0.0,
        f,
        top as f32 + 0.5 * f - 0.5,
    ]);
    Some((reduced, reduced_to_image))
}

/// Bilinear samples of an RGB image, black outside it.
struct Sampler<'a> {
    raw: &'a [u8],
    width: usize,
    height: usize,
}

impl<'a> Sampler<'a> {
    fn new(image: &'a RgbImage) -> Self {
        Sampler {
            raw: image.as_raw(),
            width: image.width() as usize,
            height: image.height() as usize,
        }
    }

    /// Adds the sample at `(x, y)` (pixel centres at integers) to `sum`.
    #[inline]
    fn add(&self, x: f32, y: f32, sum: &mut [f32; 3]) {
        let (x0, y0) = (floor(x), floor(y));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let stride = self.width * 3;
        let inside =
            x0 >= 0 && y0 >= 0 && (x0 as usize) + 1 < self.width && (y0 as usize) + 1 < self.height;
        let (top, bottom): ([f32; 6], [f32; 6]) = if inside {
            // The common case: all four neighbours in the image, two
            // adjacent pixels from each of two rows.
            let i = y0 as usize * stride + x0 as usize * 3;
            let (top, bottom) = (&self.raw[i..i + 6], &self.raw[i + stride..i + stride + 6]);
            (
                std::array::from_fn(|k| top[k] as f32),
                std::array::from_fn(|k| bottom[k] as f32),
            )
        } else {
            let pixel = |px: i32, py: i32| -> [f32; 3] {
                if px < 0 || py < 0 || px as usize >= self.width || py as usize >= self.height {
                    [0.0; 3]
                } else {
                    let i = py as usize * stride + px as usize * 3;
                    std::array::from_fn(|c| self.raw[i + c] as f32)
                }
            };
            let pair = |py: i32| {
                let (left, right) = (pixel(x0, py), pixel(x0.saturating_add(1), py));
                std::array::from_fn(|k| if k < 3 { left[k] } else { right[k - 3] })
            };
            (pair(y0), pair(y0.saturating_add(1)))
        };
        for c in 0..3 {
            let upper = top[c] + (top[c + 3] - top[c]) * fx;
            let lower = bottom[c] + (bottom[c + 3] - bottom[c]) * fx;
            sum[c] += upper + (lower - upper) * fy;
        }
    }
}

/// `x.floor()` as an integer (saturating), without the library call that
/// `f32::floor` compiles to on baseline x86-64.
#[inline]
fn floor(x: f32) -> i32 {
    let truncated = x as i32;
    truncated.saturating_sub(((truncated as f32) > x) as i32)
}

/// Sharpness of an aligned face: the variance of its grey Laplacian. A blurred
/// or out-of-focus photo scores low.
pub fn sharpness(aligned: &[u8]) -> f32 {
    let size = ALIGNED_SIZE as usize;
    let grey: Vec<f32> = aligned
        .chunks_exact(3)
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect();
    let mut values = Vec::with_capacity(size * size);
    // The central part only: the corners of an aligned face are background.
    for y in 16..size - 16 {
        for x in 16..size - 16 {
            let at = |dx: isize, dy: isize| {
                grey[(y as isize + dy) as usize * size + (x as isize + dx) as usize]
            };
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
    fn a_large_face_is_aligned_through_block_averages_like_the_sample_grid() {
        // A smooth pattern at three times the aligned size, slightly rotated.
        let image = RgbImage::from_fn(640, 480, |x, y| {
            let (fx, fy) = (x as f32 / 37.0, y as f32 / 23.0);
            image::Rgb([
                (128.0 + 100.0 * fx.sin()) as u8,
                (128.0 + 100.0 * fy.cos()) as u8,
                ((x + y) / 5 % 256) as u8,
            ])
        });
        let landmarks = TEMPLATE.map(|[x, y]| {
            let (x, y) = (x * 3.0 + 150.0, y * 3.0 + 60.0);
            [x + 0.1 * (y - 200.0), y - 0.1 * (x - 300.0)]
        });
        let through_blocks = align(&image, &landmarks);
        let by_grid = warp(
            &image,
            Affine::similarity(&landmarks, &TEMPLATE),
            ALIGNED_SIZE,
            ALIGNED_SIZE,
            3,
        );
        let differences: Vec<i32> = through_blocks
            .iter()
            .zip(&by_grid)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .collect();
        let mean = differences.iter().sum::<i32>() as f32 / differences.len() as f32;
        assert!(mean < 2.0, "mean difference {mean}");
        assert!(
            differences.iter().all(|d| *d <= 12),
            "largest difference {:?}",
            differences.iter().max()
        );
    }

    #[test]
    fn a_face_beyond_the_image_aligns_to_black() {
        let image = RgbImage::from_pixel(100, 100, image::Rgb([200, 200, 200]));
        let far = TEMPLATE.map(|[x, y]| [x * 3.0 + 5000.0, y * 3.0 + 5000.0]);
        assert!(align(&image, &far).iter().all(|v| *v == 0));
    }

    #[test]
    fn after_composes_two_maps() {
        let (first, second) = (
            Affine([2.0, 0.5, 3.0, -1.0, 1.5, 4.0]),
            Affine([0.3, -0.2, 1.0, 0.7, 0.9, -2.0]),
        );
        let point = [5.0, -3.0];
        let [x, y] = second.after(&first).apply(point);
        let [ex, ey] = second.apply(first.apply(point));
        assert!((x - ex).abs() < 1e-4 && (y - ey).abs() < 1e-4);
    }

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

    /// The map that sends the square `(left, top, side)` of the image onto `[0, size)²`.
    fn crop_map(left: f32, top: f32, side: f32, size: u32) -> Affine {
        let scale = size as f32 / side;
        Affine([scale, 0.0, -left * scale, 0.0, scale, -top * scale])
    }

    #[test]
    fn warp_of_a_crop_copies_the_pixels() {
        let image = RgbImage::from_fn(20, 10, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let out = warp(&image, crop_map(5.0, 2.0, 4.0, 4), 4, 4, 4);
        assert_eq!(&out[0..3], &[50, 40, 7]);
        assert_eq!(&out[(3 * 4 + 3) * 3..], &[80, 100, 7]);
        assert_eq!(square_crop(&image, 5.0, 2.0, 4.0, 4, 4), out);
    }

    #[test]
    fn square_crop_gives_the_pixels_of_the_warp_at_every_grid_and_across_the_edges() {
        let image = RgbImage::from_fn(23, 17, |x, y| {
            image::Rgb([
                (x * 11 + y * 3) as u8,
                (x * y * 7) as u8,
                (250 - x * y) as u8,
            ])
        });
        // Shrunk 0.7, 1.9, 3.3 and 5.1 times (grids of 1 to 4 samples a side), some crops reaching past the edges.
        let crops = [
            (3.3, 2.7, 8.4, 12),
            (-2.6, 1.2, 17.1, 9),
            (6.1, -3.4, 19.8, 6),
            (-4.5, -5.2, 35.7, 7),
        ];
        for (left, top, side, size) in crops {
            let by_axis = square_crop(&image, left, top, side, size, 4);
            let by_grid = warp(&image, crop_map(left, top, side, size), size, size, 4);
            for (i, (a, b)) in by_axis.iter().zip(&by_grid).enumerate() {
                assert!(
                    a.abs_diff(*b) <= 1,
                    "crop ({left}, {top}, {side}) byte {i}: {a} vs {b}"
                );
            }
            assert_eq!(by_axis.len(), by_grid.len());
        }
    }

    /// One bilinear sample by the definition: each neighbour read on its own,
    /// black outside the image.
    fn reference_sample(image: &RgbImage, x: f32, y: f32) -> [f32; 3] {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let at = |px: f32, py: f32| -> [f32; 3] {
            if px < 0.0 || py < 0.0 || px >= image.width() as f32 || py >= image.height() as f32 {
                [0.0; 3]
            } else {
                image.get_pixel(px as u32, py as u32).0.map(f32::from)
            }
        };
        let (p00, p10, p01, p11) = (
            at(x0, y0),
            at(x0 + 1.0, y0),
            at(x0, y0 + 1.0),
            at(x0 + 1.0, y0 + 1.0),
        );
        std::array::from_fn(|c| {
            let weights = [
                (1.0 - fx) * (1.0 - fy),
                fx * (1.0 - fy),
                (1.0 - fx) * fy,
                fx * fy,
            ];
            weights[0] * p00[c] + weights[1] * p10[c] + weights[2] * p01[c] + weights[3] * p11[c]
        })
    }

    #[test]
    fn warp_matches_bilinear_sampling_by_the_definition_inside_and_across_the_edges() {
        let image = RgbImage::from_fn(13, 9, |x, y| {
            image::Rgb([
                (x * 19 + y * 7) as u8,
                (x * y * 5) as u8,
                (200 - x * y) as u8,
            ])
        });
        // A rotated view shrunk 1.3 times (so sampled 2x2 a pixel) that reaches past every edge.
        let to_input = Affine([1.2, -0.5, -2.3, 0.5, 1.2, -3.1]);
        let (width, height) = (14, 10);
        let out = warp(&image, to_input.inverse().unwrap(), width, height, 2);
        let mut outside = 0;
        for y in 0..height {
            for x in 0..width {
                let samples = [[-0.25, -0.25], [0.25, -0.25], [-0.25, 0.25], [0.25, 0.25]]
                    .map(|[dx, dy]| to_input.apply([x as f32 + dx, y as f32 + dy]));
                outside += samples
                    .iter()
                    .filter(|[sx, sy]| *sx < 0.0 || *sy < 0.0 || *sx > 12.0 || *sy > 8.0)
                    .count();
                let sum = samples.iter().fold([0.0f32; 3], |acc, &[sx, sy]| {
                    let sample = reference_sample(&image, sx, sy);
                    std::array::from_fn(|c| acc[c] + sample[c])
                });
                let got = &out[((y * width + x) * 3) as usize..][..3];
                for c in 0..3 {
                    let want = sum[c] / 4.0;
                    assert!(
                        (got[c] as f32 - want).abs() <= 0.51,
                        "({x}, {y}) channel {c}: {} vs {want}",
                        got[c]
                    );
                }
            }
        }
        assert!(outside > 0, "the view should reach past the edges");
    }
}
