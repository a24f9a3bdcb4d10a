//! One frame's faces to verdicts, as the inference workers make them: the
//! pipeline's stages, the class's gallery, and what earlier frames already
//! established about each face's track.
//!
//! # Design
//! - Faces are tracked right after the detector, before anything costly. A
//!   track whose face matched the same pupil in `confirm_frames` checked frames
//!   in a row is *recognised*: for the next [`RECHECK_AFTER`] frames its face
//!   is not described again (no landmarks, liveness check, alignment nor
//!   embedding) and the track's match stands for it. In a seated class of 40
//!   the models then run on new and unknown faces, and on each recognised face
//!   once every [`RECHECK_AFTER`] frames; the detector runs on every frame.
//! - Invariant: only a checked face marks a pupil. A standing match comes out
//!   as [`Verdict::Recognised`], which is no sighting for the roll call (see
//!   [`Verdict::sighting`]); it only tells that a face is still in the room.
//!   This costs no speed: the `confirm_frames` checked matches that make a
//!   track recognised are the sightings that mark its pupil. And it makes a
//!   wrong join of tracks (one pupil leaving as another steps into the same
//!   place) harmless to the roll: the match of the pupil who left stands for
//!   at most [`RECHECK_AFTER`] frames and marks nobody. A recheck that finds
//!   another pupil or nobody starts the track's count again.
//! - When a roll call opens, the daemon has the recogniser
//!   [`forget`](Recogniser::forget) what it recognised, so the new lesson's
//!   class is checked afresh and marked within `confirm_frames` frames.
//! - The gallery is replaced while the workers run, when the class's people
//!   change (an enrollment, an erasure, a roster change; see [`super::people`]).
//!   Each frame is judged by one gallery throughout; a frame judged by a
//!   gallery replaced meanwhile teaches its tracks nothing, and the tracks of
//!   pupils the new gallery lacks are forgotten, so no standing match of an
//!   erased pupil outlives the replacement.
//! - Unknown faces and refused photos are checked in every frame: a stranger
//!   turning to the camera may turn out to be a pupil.
//! - One frame is seen by a crew of pipelines, one per inference thread
//!   (see [`super::pipeline`]): the detector's tiles, then the faces to check,
//!   are shared among them, and the verdicts come back in the faces' order,
//!   the same as on one thread.
//! - The tracks sit behind a mutex held only to assign tracks and to record
//!   results, never over inference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use image::RgbImage;

use super::config::AttendanceConfig;
use super::matcher::{Gallery, Match};
use super::pipeline::{self, InferenceError, Pipeline};
use super::rollcall::Sighting;
use super::track::Tracker;

/// Frames a recognised track's match stands for before its face is checked again.
pub const RECHECK_AFTER: u32 = 10;

/// What a worker made of one face.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The face was checked and matched this pupil.
    Pupil(Match),
    /// The face was not checked again: its track was recognised as this pupil
    /// in earlier frames.
    Recognised(Match),
    /// The face was checked and matched nobody enrolled.
    Unknown,
    /// The liveness check took it for a photo held up to the camera.
    Photo,
}

impl Verdict {
    /// What the roll call counts of this verdict on the face followed as
    /// `track`: nothing for a standing match, since only a checked face marks a pupil.
    pub fn sighting(&self, track: u64) -> Option<Sighting> {
        match self {
            Verdict::Pupil(m) => Some(Sighting::Pupil {
                personal_id: m.personal_id.to_string(),
                similarity: m.similarity,
            }),
            Verdict::Recognised(_) => None,
            Verdict::Unknown => Some(Sighting::Unknown { track }),
            Verdict::Photo => Some(Sighting::Photo { track }),
        }
    }
}

/// What a face must pass to count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checks {
    pub threshold: f32,
    /// Faces narrower than this many pixels are left out.
    pub min_face: f32,
    /// The liveness score a face needs, when the check is on.
    pub liveness_min_score: Option<f32>,
    /// Checked frames in a row, matching the same pupil, that make a track recognised.
    pub confirm_frames: u32,
}

impl Checks {
    /// The checks the room's `[attendance]` config asks for.
    pub fn of(config: &AttendanceConfig) -> Checks {
        Checks {
            threshold: config.threshold,
            min_face: config.min_face_pixels as f32,
            liveness_min_score: config.liveness.then_some(config.liveness_min_score),
            confirm_frames: config.confirm_frames,
        }
    }
}

/// What one frame showed: each face's track and verdict.
pub type Faces = Vec<(u64, Verdict)>;

/// A room's recognition across frames, shared by its workers.
pub struct Recogniser {
    checks: Checks,
    tracks: Mutex<Tracks>,
}

/// What the workers share, behind one lock.
struct Tracks {
    tracker: Tracker,
    identities: HashMap<u64, TrackIdentity>,
    /// The class's templates; replaced whole, never changed in place.
    gallery: Arc<Gallery>,
}

/// What the checked frames of one track have established.
#[derive(Debug, Default)]
struct TrackIdentity {
    /// The pupil the last checked frame matched.
    pupil: Option<Match>,
    /// Checked frames in a row that matched that pupil.
    streak: u32,
    /// Frames since the last check.
    unchecked: u32,
}

impl TrackIdentity {
    /// The match this frame of the track may take without a check, if it is recognised.
    fn standing_match(&mut self, confirm_frames: u32) -> Option<Match> {
        let recognised = self.streak >= confirm_frames && self.unchecked < RECHECK_AFTER;
        let standing = self.pupil.clone().filter(|_| recognised)?;
        self.unchecked += 1;
        Some(standing)
    }

    /// Takes in what a checked frame found: the pupil matched, or nobody.
    fn checked(&mut self, found: Option<&Match>) {
        self.unchecked = 0;
        match found {
            Some(found) => {
                let same = self
                    .pupil
                    .as_ref()
                    .is_some_and(|pupil| pupil.personal_id == found.personal_id);
                self.streak = if same { self.streak + 1 } else { 1 };
                self.pupil = Some(found.clone());
            }
            None => {
                self.streak = 0;
                self.pupil = None;
            }
        }
    }
}

impl Recogniser {
    pub fn new(gallery: Gallery, checks: Checks) -> Recogniser {
        let tracks = Tracks {
            tracker: Tracker::default(),
            identities: HashMap::new(),
            gallery: Arc::new(gallery),
        };
        Recogniser {
            checks,
            tracks: Mutex::new(tracks),
        }
    }

    /// Puts `gallery` in place of the class's templates, from the next frame
    /// on; tracks recognised as a pupil it lacks are forgotten.
    pub fn replace_gallery(&self, gallery: Gallery) {
        let mut tracks = self.tracks();
        tracks.identities.retain(|_, known| {
            known
                .pupil
                .as_ref()
                .is_none_or(|pupil| gallery.contains(&pupil.personal_id))
        });
        tracks.gallery = Arc::new(gallery);
    }

    /// Every face of `image` large enough to count, with its track and
    /// verdict, the work shared among `crew`'s pipelines.
    pub fn analyse(
        &self,
        crew: &mut [Pipeline],
        image: &RgbImage,
    ) -> Result<Faces, InferenceError> {
        let found = self.find_faces(crew, image)?;
        let (gallery, plan): (Arc<Gallery>, Vec<(u64, Option<Match>)>) = {
            let mut tracks = self.tracks();
            let boxes: Vec<[f32; 4]> = found.iter().map(|(bbox, _)| *bbox).collect();
            let ids = tracks.tracker.assign(&boxes);
            let Tracks {
                tracker,
                identities,
                gallery,
            } = &mut *tracks;
            identities.retain(|id, _| tracker.follows(*id));
            let plan = ids
                .into_iter()
                .map(|id| {
                    (
                        id,
                        identities
                            .get_mut(&id)
                            .and_then(|known| known.standing_match(self.checks.confirm_frames)),
                    )
                })
                .collect();
            (gallery.clone(), plan)
        };
        let to_check: Vec<([f32; 4], f32)> = found
            .iter()
            .zip(&plan)
            .filter(|(_, (_, standing))| standing.is_none())
            .map(|(face, _)| *face)
            .collect();
        let mut verdicts = pipeline::spread(crew, &to_check, |pipeline, &(bbox, score)| {
            self.check(pipeline, image, bbox, score, &gallery)
        })?
        .into_iter();
        let mut checked = Vec::new();
        let faces: Faces = plan
            .into_iter()
            .map(|(track, standing)| {
                let verdict = match standing {
                    Some(pupil) => Verdict::Recognised(pupil),
                    None => {
                        let verdict = verdicts.next().expect("a verdict for every face checked");
                        checked.push((track, verdict.clone()));
                        verdict
                    }
                };
                (track, verdict)
            })
            .collect();
        let mut tracks = self.tracks();
        if !Arc::ptr_eq(&gallery, &tracks.gallery) {
            return Ok(faces);
        }
        for (track, verdict) in &checked {
            if tracks.tracker.follows(*track) {
                let found = match verdict {
                    Verdict::Pupil(found) => Some(found),
                    _ => None,
                };
                tracks.identities.entry(*track).or_default().checked(found);
            }
        }
        Ok(faces)
    }

    /// How many faces large enough to count `image` shows: the detector
    /// alone, for a frame that only asks whether anybody is there. The tracks
    /// learn nothing from it.
    pub fn faces_in_view(
        &self,
        crew: &mut [Pipeline],
        image: &RgbImage,
    ) -> Result<usize, InferenceError> {
        Ok(self.find_faces(crew, image)?.len())
    }

    /// The box and score of every face of `image` large enough to count.
    fn find_faces(
        &self,
        crew: &mut [Pipeline],
        image: &RgbImage,
    ) -> Result<Vec<([f32; 4], f32)>, InferenceError> {
        let found = pipeline::find_faces_spread(crew, image)?;
        Ok(found
            .into_iter()
            .filter(|(bbox, _)| bbox[2] - bbox[0] >= self.checks.min_face)
            .collect())
    }

    /// Forgets which pupil each track was recognised as: from the next frame
    /// on, every face is checked again until its track is recognised anew.
    pub fn forget(&self) {
        self.tracks().identities.clear();
    }

    /// The verdict on the face in `bbox`, through every stage of the pipeline.
    fn check(
        &self,
        pipeline: &mut Pipeline,
        image: &RgbImage,
        bbox: [f32; 4],
        score: f32,
        gallery: &Gallery,
    ) -> Result<Verdict, InferenceError> {
        let face = pipeline.locate_landmarks(image, bbox, score)?;
        if let Some(min_score) = self.checks.liveness_min_score {
            let score = pipeline.liveness(image, &face)?;
            if score < min_score {
                tracing::debug!(
                    score,
                    "a face taken for a photo held up to the camera was refused"
                );
                return Ok(Verdict::Photo);
            }
        }
        let described = pipeline.describe(image, face)?;
        Ok(gallery
            .identify(&described.embedding, self.checks.threshold)
            .map_or(Verdict::Unknown, Verdict::Pupil))
    }

    fn tracks(&self) -> std::sync::MutexGuard<'_, Tracks> {
        self.tracks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pupil(id: &str, similarity: f32) -> Match {
        Match {
            personal_id: id.parse().unwrap(),
            similarity,
        }
    }

    #[test]
    fn a_track_is_recognised_after_confirm_frames_matches_of_one_pupil_and_rechecked_after_a_while()
    {
        let mut track = TrackIdentity::default();
        for _ in 0..2 {
            assert_eq!(
                track.standing_match(3),
                None,
                "not yet recognised: every frame is checked"
            );
            track.checked(Some(&pupil("001206000001", 0.6)));
        }
        assert_eq!(track.standing_match(3), None);
        track.checked(Some(&pupil("001206000001", 0.7)));
        for _ in 0..RECHECK_AFTER {
            assert_eq!(track.standing_match(3), Some(pupil("001206000001", 0.7)));
        }
        assert_eq!(track.standing_match(3), None, "the recheck is due");
        track.checked(Some(&pupil("001206000001", 0.65)));
        assert!(
            track.standing_match(3).is_some(),
            "a recheck that agrees keeps the track recognised"
        );
    }

    #[test]
    fn a_recheck_that_finds_someone_else_or_nobody_starts_the_count_again() {
        let mut track = TrackIdentity::default();
        for _ in 0..3 {
            track.checked(Some(&pupil("001206000001", 0.6)));
        }
        assert!(track.standing_match(3).is_some());
        track.checked(Some(&pupil("001206000002", 0.6)));
        assert_eq!(
            track.standing_match(3),
            None,
            "another pupil in the track is checked afresh"
        );
        track.checked(Some(&pupil("001206000002", 0.6)));
        track.checked(None);
        track.checked(Some(&pupil("001206000002", 0.6)));
        track.checked(Some(&pupil("001206000002", 0.6)));
        assert_eq!(
            track.standing_match(3),
            None,
            "an unknown frame broke the run"
        );
        track.checked(None);
        assert_eq!(
            track.standing_match(1),
            None,
            "a face that matched nobody is never recognised"
        );
    }

    #[test]
    fn replacing_the_gallery_forgets_the_tracks_of_pupils_it_lacks_and_keeps_the_others() {
        let unit = |axis: usize| {
            let mut v = vec![0.0; crate::attendance::embed::DIMENSIONS];
            v[axis] = 1.0;
            crate::attendance::embed::Embedding(v)
        };
        let (hoa, pao) = ("001206000001", "001206000002");
        let checks = Checks {
            threshold: 0.5,
            min_face: 0.0,
            liveness_min_score: None,
            confirm_frames: 2,
        };
        let recogniser = Recogniser::new(
            Gallery::new([
                (hoa.parse().unwrap(), unit(0)),
                (pao.parse().unwrap(), unit(1)),
            ]),
            checks,
        );
        {
            let mut tracks = recogniser.tracks();
            for (track, id) in [(1, hoa), (2, pao)] {
                let mut identity = TrackIdentity::default();
                identity.checked(Some(&pupil(id, 0.9)));
                identity.checked(Some(&pupil(id, 0.9)));
                tracks.identities.insert(track, identity);
            }
            tracks.identities.insert(3, TrackIdentity::default());
        }
        let before = recogniser.tracks().gallery.clone();
        recogniser.replace_gallery(Gallery::new([(hoa.parse().unwrap(), unit(0))]));
        let mut tracks = recogniser.tracks();
        let mut kept: Vec<u64> = tracks.identities.keys().copied().collect();
        kept.sort();
        assert_eq!(
            kept,
            [1, 3],
            "the erased pupil's track is forgotten; the others stay"
        );
        assert_eq!(
            tracks.identities.get_mut(&1).unwrap().standing_match(2),
            Some(pupil(hoa, 0.9))
        );
        assert!(
            !Arc::ptr_eq(&before, &tracks.gallery),
            "frames judged by the old gallery are told apart"
        );
    }

    #[test]
    fn only_a_checked_face_is_a_sighting_for_the_roll_call() {
        let found = pupil("001206000001", 0.6);
        assert_eq!(
            Verdict::Pupil(found.clone()).sighting(7),
            Some(Sighting::Pupil {
                personal_id: "001206000001".to_owned(),
                similarity: 0.6
            })
        );
        assert_eq!(
            Verdict::Recognised(found).sighting(7),
            None,
            "a standing match marks nobody"
        );
        assert_eq!(
            Verdict::Unknown.sighting(7),
            Some(Sighting::Unknown { track: 7 })
        );
        assert_eq!(
            Verdict::Photo.sighting(7),
            Some(Sighting::Photo { track: 7 })
        );
    }
}
