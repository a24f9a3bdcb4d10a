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
//! - The detector finds faces down to about [`DETECTABLE_FACE`] pixels of its
//!   320x240 input, so a 4K frame seen whole (squeezed 12 times across) loses
//!   faces narrower than about 120 pixels, where the back row's are 45: on
//!   the composed classroom it found 27 of 40. A frame
//!   is therefore cut into overlapping [`tiles`], each seen at the frame's own
//!   resolution or close to it: tiles in which the smallest face the room must
//!   see is [`DETECTABLE_FACE`] wide, then tiles twice as large, and so on up to
//!   tiles as high (or wide) as the frame, so that faces of every size find a
//!   level where they are big enough. Tiles are 4:3, the detector's own
//!   shape, so no face is squeezed; a frame no larger than the first level's
//!   tile is seen whole, as it always was.
//! - Tiles of a level overlap by a quarter of their width across and a third
//!   down (faces are taller than wide), the four-fold range of face widths a
//!   level is responsible for; so a face cut by one tile's edge lies whole in
//!   its neighbour. Boxes from every tile and level meet in
//!   one NMS in which a box touching an inner tile edge ranks after every whole
//!   box and is dropped when it lies mostly inside one: the face is kept from
//!   the tile that holds it whole. A box wider than the level's overlap is
//!   left to the next level, which holds its face whole: the detector may
//!   draw a cut face's box short of the tile's edge.

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
/// Face score below which a box from a tile is dropped: a tile shows the
/// detector smaller things, and on the test photos a hand scored 0.77 in one
/// while every composed pupil's face scored above 0.9.
const TILE_MIN_SCORE: f32 = 0.9;
/// Boxes overlapping a better one by more than this IoU are the same face.
const NMS_IOU: f32 = 0.4;
/// A box cut by a tile's edge that lies this much inside a whole box (as a
/// share of its own area) is part of that face.
const CUT_INSIDE_WHOLE: f32 = 0.5;
/// The face width, in the detector's input pixels, it finds reliably.
const DETECTABLE_FACE: u32 = 14;
/// How close, in the detector's input pixels, a box must come to a tile's
/// edge to be taken as cut by it.
const EDGE_TOLERANCE: f32 = 4.0;
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

/// A part of the frame the detector sees at once, in the frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl Tile {
    fn whole(width: u32, height: u32) -> Tile {
        Tile {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    /// Whether `bbox` touches one of this tile's edges that is not the frame's.
    fn cuts(&self, bbox: &[f32; 4], frame_width: u32, frame_height: u32) -> bool {
        let tolerance = EDGE_TOLERANCE * self.width as f32 / DETECTOR_WIDTH as f32;
        let (left, top) = (self.left as f32, self.top as f32);
        let (right, bottom) = (left + self.width as f32, top + self.height as f32);
        (self.left > 0 && bbox[0] <= left + tolerance)
            || (self.top > 0 && bbox[1] <= top + tolerance)
            || (self.left + self.width < frame_width && bbox[2] >= right - tolerance)
            || (self.top + self.height < frame_height && bbox[3] >= bottom - tolerance)
    }
}

/// Tiles of one size, and the widest face they are trusted with (a face up to
/// a third taller than wide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub tiles: Vec<Tile>,
    /// A wider box at this level may be part of a face cut by the tile and
    /// not reaching its edge; the next level holds that face whole. `None` at
    /// the last level, which holds every face whole.
    pub widest_face: Option<u32>,
}

/// The levels of tiles a `width` x `height` frame is seen in so that faces
/// from `smallest_face` pixels wide up are found (see the module's design).
pub fn tiles(width: u32, height: u32, smallest_face: u32) -> Vec<Level> {
    // A multiple of 4, so that the tile is exactly 4:3.
    let mut tile_width =
        (smallest_face.max(1) * (DETECTOR_WIDTH / DETECTABLE_FACE)).next_multiple_of(4);
    if width <= tile_width && height <= tile_width * 3 / 4 {
        return vec![Level {
            tiles: vec![Tile::whole(width, height)],
            widest_face: None,
        }];
    }
    let mut levels = Vec::new();
    loop {
        // The level's 4:3 tile, shrunk to fit the frame at the last level.
        let fitted_width = tile_width.min(width).min(height * 4 / 3).max(1);
        let fitted_height = (fitted_width * 3).div_ceil(4).min(height);
        let last = fitted_width < tile_width;
        let (columns, rows) = (
            spread(width, fitted_width, fitted_width / 4),
            spread(height, fitted_height, fitted_width / 3),
        );
        let tiles = rows
            .into_iter()
            .flat_map(|top| columns.iter().map(move |&left| (left, top)))
            .map(|(left, top)| Tile {
                left,
                top,
                width: fitted_width,
                height: fitted_height,
            })
            .collect();
        levels.push(Level {
            tiles,
            widest_face: (!last).then_some(fitted_width / 4),
        });
        if last {
            return levels;
        }
        tile_width *= 2;
    }
}

/// Where tiles of `side` start along an axis of `length` so that they cover it
/// with neighbours overlapping by at least `overlap`.
fn spread(length: u32, side: u32, overlap: u32) -> Vec<u32> {
    if length <= side {
        return vec![0];
    }
    let step = side - overlap;
    let count = (length - side).div_ceil(step) + 1;
    (0..count)
        .map(|i| ((length - side) as u64 * i as u64 / (count - 1) as u64) as u32)
        .collect()
}

/// A box from one tile, before the boxes of all tiles are merged.
pub struct Candidate {
    bbox: [f32; 4],
    score: f32,
    /// Touches an edge of its tile inside the frame: the face may go on beyond it.
    cut: bool,
}

/// One run of the detector on a frame: a tile and what is kept of its boxes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileRun {
    pub tile: Tile,
    /// Boxes wider than this are left to a later level (see [`Level::widest_face`]).
    widest_face: f32,
    /// Boxes scoring at or below this are dropped.
    min_score: f32,
}

/// Every run of the detector that lets it see faces down to `smallest_face`
/// pixels wide in a `width` x `height` frame, level by level. The runs are
/// independent of each other, so they may be shared among threads; their
/// boxes, gathered in this order, go to [`merge`].
pub fn tile_runs(width: u32, height: u32, smallest_face: u32) -> Vec<TileRun> {
    let levels = tiles(width, height, smallest_face);
    let min_score = if levels.len() == 1 && levels[0].tiles.len() == 1 {
        MIN_SCORE
    } else {
        TILE_MIN_SCORE
    };
    levels
        .into_iter()
        .flat_map(|level| {
            let widest_face = level.widest_face.map_or(f32::MAX, |pixels| pixels as f32);
            level.tiles.into_iter().map(move |tile| TileRun {
                tile,
                widest_face,
                min_score,
            })
        })
        .collect()
}

/// The boxes the detector finds in one run's tile, in the frame's pixels,
/// before they are merged with the other tiles'.
pub fn detect_in_tile(
    session: &mut Session,
    image: &RgbImage,
    run: &TileRun,
    onnx: &mut Duration,
) -> Result<Vec<Candidate>, ort::Error> {
    let tile = &run.tile;
    let input = detector_input(image, tile);
    let started = std::time::Instant::now();
    let outputs = session.run(ort::inputs!["input" => TensorRef::from_array_view(&input)?])?;
    *onnx += started.elapsed();
    let (_, scores) = outputs["scores"].try_extract_tensor::<f32>()?;
    let (_, boxes) = outputs["boxes"].try_extract_tensor::<f32>()?;
    let (x, y, w, h) = (
        tile.left as f32,
        tile.top as f32,
        tile.width as f32,
        tile.height as f32,
    );
    Ok(scores
        .chunks_exact(2)
        .zip(boxes.chunks_exact(4))
        .filter(|(score, _)| score[1] > run.min_score)
        .map(|(score, b)| {
            let bbox = [x + b[0] * w, y + b[1] * h, x + b[2] * w, y + b[3] * h];
            Candidate {
                bbox,
                score: score[1],
                cut: tile.cuts(&bbox, image.width(), image.height()),
            }
        })
        .filter(|c| c.bbox[2] - c.bbox[0] <= run.widest_face)
        .collect())
}

/// One box per face, best score first: whole boxes are taken before cut ones,
/// better scores first, and a box is dropped when it overlaps a taken one by
/// more than [`NMS_IOU`] or, cut, lies mostly inside one.
pub fn merge(mut candidates: Vec<Candidate>) -> Vec<([f32; 4], f32)> {
    candidates.sort_by(|a, b| a.cut.cmp(&b.cut).then(b.score.total_cmp(&a.score)));
    let mut kept: Vec<([f32; 4], f32)> = Vec::new();
    for candidate in candidates {
        let same_face = |(bbox, _): &([f32; 4], f32)| {
            iou(bbox, &candidate.bbox) > NMS_IOU
                || (candidate.cut
                    && intersection(bbox, &candidate.bbox)
                        > CUT_INSIDE_WHOLE * area(&candidate.bbox))
        };
        if !kept.iter().any(same_face) {
            kept.push((candidate.bbox, candidate.score));
        }
    }
    kept.sort_by(|a, b| b.1.total_cmp(&a.1));
    kept
}

/// The five landmarks of the face in `bbox`.
pub fn landmarks(
    session: &mut Session,
    image: &RgbImage,
    bbox: &[f32; 4],
    onnx: &mut Duration,
) -> Result<[[f32; 2]; 5], ort::Error> {
    let side = (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]).max(1.0);
    let (left, top) = (
        (bbox[0] + bbox[2] - side) / 2.0,
        (bbox[1] + bbox[3] - side) / 2.0,
    );
    let crop = square_crop(image, left, top, side, LANDMARK_SIZE, 4);
    let n = LANDMARK_SIZE as usize;
    let input = Array4::from_shape_fn((1, n, n, 3), |(_, x, y, c)| {
        (crop[(y * n + x) * 3 + c] as f32 - 127.5) * 0.0078125
    });
    let started = std::time::Instant::now();
    let outputs = session.run(ort::inputs!["input_3" => TensorRef::from_array_view(&input)?])?;
    *onnx += started.elapsed();
    let (_, points) = outputs["dense_6"].try_extract_tensor::<f32>()?;
    Ok(std::array::from_fn(|i| {
        [left + points[i] * side, top + points[i + 5] * side]
    }))
}

/// The `tile` of the frame scaled to 320x240 (bilinear, as the detector was
/// trained), RGB planes, (x - 127) / 128.
fn detector_input(image: &RgbImage, tile: &Tile) -> Array4<f32> {
    let (w, h) = (DETECTOR_WIDTH as usize, DETECTOR_HEIGHT as usize);
    Array4::from_shape_vec((1, 3, h, w), resized_planes(image, tile, w, h))
        .expect("three planes of the detector's size")
}

/// The `tile` of `image` resized to `width` x `height` as OpenCV's
/// `INTER_LINEAR` does it on that crop (pixel centres at half-integers, the
/// crop's edges repeated), written straight into normalised RGB planes: one
/// pass, no intermediate image.
fn resized_planes(image: &RgbImage, tile: &Tile, width: usize, height: usize) -> Vec<f32> {
    let source_width = image.width() as usize;
    let mut planes = vec![0.0f32; 3 * width * height];
    if tile.width == 0 || tile.height == 0 {
        return planes;
    }
    let columns = linear_taps(tile.left as usize, tile.width as usize, width);
    let raw = image.as_raw();
    // One source row resized horizontally, as three planes of `width` values.
    let resize_row = |y: usize, out: &mut [f32]| {
        let row = &raw[y * source_width * 3..(y + 1) * source_width * 3];
        let (red, rest) = out.split_at_mut(width);
        let (green, blue) = rest.split_at_mut(width);
        for (x, tap) in columns.iter().enumerate() {
            let (p, q) = (
                &row[tap.first * 3..tap.first * 3 + 3],
                &row[tap.second * 3..tap.second * 3 + 3],
            );
            let lerp = |c: usize| p[c] as f32 + (q[c] as f32 - p[c] as f32) * tap.weight;
            (red[x], green[x], blue[x]) = (lerp(0), lerp(1), lerp(2));
        }
    };
    let (mut upper, mut lower) = (vec![0.0f32; 3 * width], vec![0.0f32; 3 * width]);
    for (y, tap) in linear_taps(tile.top as usize, tile.height as usize, height)
        .iter()
        .enumerate()
    {
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

/// The taps of resizing the `length` samples from `start` to `output`, with
/// OpenCV's half-pixel-centre convention; beyond the ends the end sample repeats.
fn linear_taps(start: usize, length: usize, output: usize) -> Vec<Tap> {
    let scale = length as f32 / output as f32;
    (0..output)
        .map(|i| {
            let at = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
            let first = (at as usize).min(length - 1);
            let weight = at - first as f32;
            Tap {
                first: start + first,
                second: start + (first + 1).min(length - 1),
                weight,
            }
        })
        .collect()
}

fn area(r: &[f32; 4]) -> f32 {
    (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0)
}

fn intersection(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    area(&[
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ])
}

/// Intersection over union of two boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let i = intersection(a, b);
    if i <= 0.0 {
        0.0
    } else {
        i / (area(a) + area(b) - i)
    }
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

    #[test]
    fn a_frame_no_larger_than_a_tile_is_seen_whole_as_before() {
        assert_eq!(
            tiles(640, 480, 45),
            [Level {
                tiles: vec![Tile::whole(640, 480)],
                widest_face: None
            }]
        );
        assert_eq!(
            tiles(1280, 720, 80),
            [Level {
                tiles: vec![Tile::whole(1280, 720)],
                widest_face: None
            }]
        );
    }

    #[test]
    fn a_4k_frame_is_covered_by_overlapping_4_3_tiles_at_every_level() {
        let levels = tiles(3840, 2160, 45);
        assert_eq!(
            levels[0].tiles[0].width, 992,
            "22 back-row faces of 45 pixels across, each 14 of the detector's 320"
        );
        assert_eq!(
            levels.last().unwrap().tiles[0].height,
            2160,
            "the last level's tiles are as high as the frame"
        );
        assert_eq!(levels.last().unwrap().widest_face, None);
        for level in &levels {
            let (face_width, face_height) = level.widest_face.map_or((0, 0), |w| (w, w * 4 / 3));
            for tile in &level.tiles {
                assert_eq!(tile.width * 3, tile.height * 4, "{tile:?} is 4:3");
                assert!(
                    tile.left + tile.width <= 3840 && tile.top + tile.height <= 2160,
                    "{tile:?} is inside"
                );
            }
            // Every face up to the level's widest, anywhere, lies whole in one of its tiles.
            let corners = (0..=3840 - face_width)
                .step_by(97)
                .flat_map(|x| (0..=2160 - face_height).step_by(89).map(move |y| (x, y)));
            for (x, y) in corners {
                let holds = |t: &Tile| {
                    t.left <= x
                        && x + face_width <= t.left + t.width
                        && t.top <= y
                        && y + face_height <= t.top + t.height
                };
                assert!(
                    level.tiles.iter().any(holds),
                    "a face of {face_width} at ({x}, {y}) is cut in every tile"
                );
            }
        }
    }

    #[test]
    fn a_face_cut_by_a_tile_edge_is_kept_once_from_the_tile_holding_it_whole() {
        let whole = Candidate {
            bbox: [100.0, 100.0, 150.0, 160.0],
            score: 0.8,
            cut: false,
        };
        // The same face's left part from the tile whose right edge is at x = 130, scored higher.
        let cut = Candidate {
            bbox: [101.0, 99.0, 130.0, 161.0],
            score: 0.99,
            cut: true,
        };
        let neighbour = Candidate {
            bbox: [160.0, 100.0, 210.0, 160.0],
            score: 0.9,
            cut: false,
        };
        let duplicate = Candidate {
            bbox: [102.0, 101.0, 151.0, 161.0],
            score: 0.75,
            cut: false,
        };
        assert_eq!(
            merge(vec![cut, whole, neighbour, duplicate]),
            [
                ([160.0, 100.0, 210.0, 160.0], 0.9),
                ([100.0, 100.0, 150.0, 160.0], 0.8)
            ]
        );
    }

    #[test]
    fn a_tile_is_resized_as_opencv_resizes_the_crop() {
        let image = RgbImage::from_raw(6, 4, SMALL.to_vec()).unwrap();
        let crop = image::imageops::crop_imm(&image, 2, 1, 4, 3).to_image();
        let tile = Tile {
            left: 2,
            top: 1,
            width: 4,
            height: 3,
        };
        assert_eq!(
            resized_planes(&image, &tile, 3, 2),
            resized_planes(&crop, &Tile::whole(4, 3), 3, 2)
        );
    }

    /// A 6x4 image of pseudo-random pixels, row-major RGB.
    const SMALL: [u8; 72] = [
        248, 194, 190, 207, 147, 26, 237, 21, 245, 211, 239, 45, 5, 157, 159, 60, 54, 236, 109, 46,
        199, 82, 32, 205, 36, 7, 134, 222, 57, 146, 8, 149, 14, 15, 22, 10, 144, 208, 24, 24, 7,
        41, 11, 85, 59, 104, 225, 110, 226, 201, 8, 159, 26, 27, 163, 122, 33, 41, 201, 67, 70,
        166, 228, 40, 50, 179, 0, 177, 137, 63, 13, 188,
    ];

    /// Asserts that `planes` are `expected` (interleaved RGB, as OpenCV gives
    /// it, rounded to bytes) normalised into planes.
    fn assert_matches_opencv(planes: &[f32], expected: &[u8]) {
        let pixels = expected.len() / 3;
        for (i, want) in expected.chunks_exact(3).enumerate() {
            for (c, &want) in want.iter().enumerate() {
                let got = planes[c * pixels + i] * 128.0 + 127.0;
                assert!(
                    (got - want as f32).abs() <= 0.75,
                    "pixel {i} channel {c}: {got} vs OpenCV's {want}"
                );
            }
        }
    }

    #[test]
    fn resizing_down_matches_opencv_inter_linear() {
        let image = RgbImage::from_raw(6, 4, SMALL.to_vec()).unwrap();
        // cv2.resize(image, (4, 3)), OpenCV 4.12.
        let expected = [
            215, 159, 157, 199, 46, 184, 161, 195, 80, 41, 75, 182, 108, 100, 114, 31, 39, 103,
            152, 150, 99, 94, 62, 17, 129, 144, 39, 55, 156, 165, 47, 104, 154, 69, 57, 150,
        ];
        assert_matches_opencv(&resized_planes(&image, &Tile::whole(6, 4), 4, 3), &expected);
    }

    #[test]
    fn resizing_up_matches_opencv_inter_linear_with_repeated_edges() {
        let image = RgbImage::from_raw(6, 4, SMALL.to_vec()).unwrap();
        // cv2.resize(image, (9, 5)), OpenCV 4.12.
        let expected = [
            248, 194, 190, 227, 170, 108, 212, 126, 62, 232, 42, 208, 224, 130, 145, 177, 225, 64,
            39, 171, 140, 32, 105, 197, 60, 54, 236, 151, 90, 196, 135, 78, 174, 116, 57, 154, 100,
            20, 165, 157, 61, 141, 183, 118, 106, 42, 145, 67, 18, 91, 67, 28, 31, 78, 127, 127,
            112, 90, 73, 117, 48, 24, 118, 28, 42, 101, 93, 94, 112, 155, 147, 109, 125, 169, 30,
            102, 100, 15, 87, 24, 19, 150, 182, 27, 89, 124, 38, 29, 72, 59, 29, 102, 99, 57, 141,
            120, 97, 176, 117, 146, 190, 60, 144, 108, 61, 130, 22, 75, 163, 122, 33, 102, 161, 50,
            46, 195, 94, 65, 172, 201, 55, 108, 203, 33, 71, 172, 6, 156, 144, 31, 95, 162, 63, 13,
            188,
        ];
        assert_matches_opencv(&resized_planes(&image, &Tile::whole(6, 4), 9, 5), &expected);
    }

    #[test]
    fn resizing_by_a_whole_factor_samples_between_the_middle_source_pixels() {
        // Along x, 1280 -> 320 reads source pixels 4i+1 and 4i+2 half and half.
        let image = RgbImage::from_fn(16, 3, |x, y| image::Rgb([x as u8 * 10, y as u8 * 50, 200]));
        let planes = resized_planes(&image, &Tile::whole(16, 3), 4, 1);
        let values: Vec<f32> = planes.iter().map(|v| v * 128.0 + 127.0).collect();
        assert_eq!(
            values,
            [
                15.0, 55.0, 95.0, 135.0, 50.0, 50.0, 50.0, 50.0, 200.0, 200.0, 200.0, 200.0
            ]
        );
    }
}
