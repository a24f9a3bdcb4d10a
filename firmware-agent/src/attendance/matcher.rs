//! 1:N matching: which enrolled pupil of the class, if any, a face belongs to.
//!
//! # Design
//! The class's templates sit in one contiguous array (`templates × 512` floats),
//! so a match is one pass of dot products over memory read in order: 2 000
//! templates take well under a millisecond. A pupil may have several templates;
//! their best similarity counts. Below the threshold the face is unknown, never
//! the nearest pupil.

use super::embed::{DIMENSIONS, Embedding, dot};
use crate::roster::PersonalId;

/// A match: who, and how similar the best template was.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub personal_id: PersonalId,
    pub similarity: f32,
}

/// The enrolled templates of one class.
#[derive(Debug, Clone, Default)]
pub struct Gallery {
    owners: Vec<PersonalId>,
    vectors: Vec<f32>,
}

impl Gallery {
    pub fn new(templates: impl IntoIterator<Item = (PersonalId, Embedding)>) -> Gallery {
        let mut gallery = Gallery::default();
        for (owner, embedding) in templates {
            gallery.owners.push(owner);
            gallery.vectors.extend_from_slice(&embedding.0);
        }
        gallery
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Whether `pupil` has a template here.
    pub fn contains(&self, pupil: &PersonalId) -> bool {
        self.owners.contains(pupil)
    }

    /// The best-matching template's owner and similarity, whatever the threshold.
    pub fn nearest(&self, probe: &Embedding) -> Option<Match> {
        let mut best: Option<(usize, f32)> = None;
        for (index, template) in self.vectors.chunks_exact(DIMENSIONS).enumerate() {
            let similarity = dot(template, &probe.0);
            if best.is_none_or(|(_, b)| similarity > b) {
                best = Some((index, similarity));
            }
        }
        best.map(|(index, similarity)| Match {
            personal_id: self.owners[index].clone(),
            similarity,
        })
    }

    /// The pupil `probe` belongs to, if the best similarity reaches `threshold`.
    pub fn identify(&self, probe: &Embedding, threshold: f32) -> Option<Match> {
        self.nearest(probe).filter(|m| m.similarity >= threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(axis: usize) -> Embedding {
        let mut v = vec![0.0; DIMENSIONS];
        v[axis] = 1.0;
        Embedding(v)
    }

    #[test]
    fn best_template_wins_and_weak_matches_are_unknown() {
        let (a, b): (PersonalId, PersonalId) = (
            "001206001234".parse().unwrap(),
            "001206001235".parse().unwrap(),
        );
        let gallery = Gallery::new([
            (a.clone(), unit(0)),
            (b.clone(), unit(1)),
            (a.clone(), unit(2)),
        ]);
        let mut probe = vec![0.0; DIMENSIONS];
        (probe[1], probe[2]) = (0.6, 0.8);
        let probe = Embedding(probe);
        assert_eq!(
            gallery.identify(&probe, 0.35),
            Some(Match {
                personal_id: a,
                similarity: 0.8
            })
        );
        assert_eq!(gallery.identify(&unit(7), 0.35), None);
        assert_eq!(gallery.nearest(&unit(1)).unwrap().personal_id, b);
        assert!(gallery.contains(&b) && !gallery.contains(&"001206001236".parse().unwrap()));
    }
}
