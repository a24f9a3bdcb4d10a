//! Turning an aligned face into a 512-d vector: `fr_feature.onnx` on the
//! 112x112 face, RGB planes scaled (x - 127) / 128, the result L2-normalised so
//! that a dot product of two embeddings is their cosine similarity.

use std::time::Duration;

use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use super::align::ALIGNED_SIZE;

/// The length of an embedding.
pub const DIMENSIONS: usize = 512;

/// A unit-length face embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Cosine similarity: both vectors have unit length.
    pub fn similarity(&self, other: &Embedding) -> f32 {
        dot(&self.0, &other.0)
    }

    /// Little-endian bytes, as templates are stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Reads stored bytes; `None` unless they are one embedding.
    pub fn from_bytes(bytes: &[u8]) -> Option<Embedding> {
        (bytes.len() == DIMENSIONS * 4).then(|| {
            Embedding(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        })
    }
}

/// The embedding of an aligned 112x112 RGB face.
pub fn embed(
    session: &mut Session,
    aligned: &[u8],
    onnx: &mut Duration,
) -> Result<Embedding, ort::Error> {
    let input = rgb_planes(aligned, ALIGNED_SIZE, |v| (v - 127.0) / 128.0);
    let started = std::time::Instant::now();
    let outputs = session.run(ort::inputs!["input" => TensorRef::from_array_view(&input)?])?;
    *onnx += started.elapsed();
    let (_, vector) = outputs["output"].try_extract_tensor::<f32>()?;
    Ok(normalised(vector))
}

/// A square RGB image (row-major, 3 bytes a pixel, `side` pixels a side) as a
/// models' input: one batch of three colour planes, each value passed through `scale`.
pub fn rgb_planes(pixels: &[u8], side: u32, scale: impl Fn(f32) -> f32) -> Array4<f32> {
    let area = (side * side) as usize;
    let mut planes = vec![0.0f32; 3 * area];
    for (i, pixel) in pixels.chunks_exact(3).enumerate() {
        for (c, value) in pixel.iter().enumerate() {
            planes[c * area + i] = scale(f32::from(*value));
        }
    }
    Array4::from_shape_vec((1, 3, side as usize, side as usize), planes)
        .expect("three planes of the given side")
}

fn normalised(vector: &[f32]) -> Embedding {
    let norm = dot(vector, vector).sqrt().max(f32::EPSILON);
    Embedding(vector.iter().map(|v| v / norm).collect())
}

/// The dot product, in eight independent lanes so the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            lanes[i] += ca[i] * cb[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_vectors_have_unit_length_and_round_trip_through_bytes() {
        let e = normalised(
            &(0..DIMENSIONS)
                .map(|i| i as f32 - 100.0)
                .collect::<Vec<_>>(),
        );
        assert!((e.similarity(&e) - 1.0).abs() < 1e-5);
        assert_eq!(Embedding::from_bytes(&e.to_bytes()), Some(e));
        assert_eq!(Embedding::from_bytes(&[0; 12]), None);
    }
}
