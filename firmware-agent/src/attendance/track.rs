//! Following faces from one frame to the next, so that one person seen in many
//! frames is one person: each face gets the id of the track whose last box it
//! overlaps most, or a new one.
//!
//! # Design
//! Greedy IoU matching is enough at a classroom camera's pace: pupils move
//! little between frames. A wrong join costs little: an unknown-face count,
//! or a few frames in which a recognised pupil's match stands for whoever
//! took their place until the recogniser checks that face again, marking
//! nobody; pupils are marked only from faces the models checked, never by a
//! track alone. A track not seen for [`MAX_MISSED`] frames ends.

use super::detect::iou;

/// Boxes overlapping a track's last box by at least this IoU continue it.
const MIN_IOU: f32 = 0.3;
/// Frames a track may go unseen before it ends.
const MAX_MISSED: u32 = 5;

struct Track {
    id: u64,
    bbox: [f32; 4],
    missed: u32,
}

/// The tracks of one camera.
#[derive(Default)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// The track id of each box of a new frame, in the order given.
    pub fn assign(&mut self, boxes: &[[f32; 4]]) -> Vec<u64> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (b, bbox) in boxes.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let overlap = iou(bbox, &track.bbox);
                if overlap >= MIN_IOU {
                    pairs.push((overlap, b, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut ids: Vec<Option<u64>> = vec![None; boxes.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, b, t) in pairs {
            if ids[b].is_none() && !taken[t] {
                ids[b] = Some(self.tracks[t].id);
                taken[t] = true;
                self.tracks[t].bbox = boxes[b];
                self.tracks[t].missed = 0;
            }
        }
        for (track, taken) in self.tracks.iter_mut().zip(&taken) {
            if !taken {
                track.missed += 1;
            }
        }
        self.tracks.retain(|track| track.missed <= MAX_MISSED);
        ids.into_iter()
            .zip(boxes)
            .map(|(id, bbox)| {
                id.unwrap_or_else(|| {
                    self.next_id += 1;
                    self.tracks.push(Track {
                        id: self.next_id,
                        bbox: *bbox,
                        missed: 0,
                    });
                    self.next_id
                })
            })
            .collect()
    }

    /// Whether the track `id` is still followed (it has not ended).
    pub fn follows(&self, id: u64) -> bool {
        self.tracks.iter().any(|track| track.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_face_that_moves_a_little_keeps_its_track_and_a_new_one_gets_another() {
        let mut tracker = Tracker::default();
        let first = tracker.assign(&[[0.0, 0.0, 100.0, 100.0]]);
        let second = tracker.assign(&[[10.0, 5.0, 110.0, 105.0], [300.0, 0.0, 400.0, 100.0]]);
        assert_eq!(second[0], first[0]);
        assert_ne!(second[1], first[0]);
        for _ in 0..=MAX_MISSED {
            tracker.assign(&[]);
        }
        assert!(!tracker.follows(first[0]));
        assert_ne!(
            tracker.assign(&[[10.0, 5.0, 110.0, 105.0]])[0],
            first[0],
            "an ended track is not resumed"
        );
    }
}
