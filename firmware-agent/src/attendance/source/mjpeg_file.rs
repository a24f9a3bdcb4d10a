//! A recorded MJPEG file (concatenated JPEG images) played at a set pace.

use std::path::Path;

use super::{Frame, FrameSource, MAX_FRAME_BYTES, Pace, SourceError};

/// A file of concatenated JPEG frames (what cameras record as `.mjpeg`).
pub struct MjpegFileSource {
    frames: Vec<Vec<u8>>,
    position: usize,
    repeat: bool,
    pace: Pace,
}

impl MjpegFileSource {
    pub(super) fn open(
        path: &Path,
        repeat: bool,
        pace: Pace,
    ) -> Result<MjpegFileSource, SourceError> {
        let fail = |reason: String| SourceError {
            source_name: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|err| fail(format!("cannot read: {err}")))?;
        let mut splitter = JpegSplitter::default();
        let frames = splitter.push(&bytes);
        if frames.is_empty() {
            return Err(fail(
                "no JPEG frame in the file; give an MJPEG file (concatenated JPEG images)"
                    .to_owned(),
            ));
        }
        Ok(MjpegFileSource {
            frames,
            position: 0,
            repeat,
            pace,
        })
    }
}

impl FrameSource for MjpegFileSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.position == self.frames.len() {
            if !self.repeat {
                return Ok(None);
            }
            self.position = 0;
        }
        self.pace.wait();
        self.position += 1;
        Ok(Some(Frame::Encoded(self.frames[self.position - 1].clone())))
    }
}

/// Cuts a recorded MJPEG file into JPEG images at their start (FF D8) and end (FF D9) markers.
#[derive(Default)]
pub struct JpegSplitter {
    buffer: Vec<u8>,
}

impl JpegSplitter {
    /// Adds bytes; returns the complete frames they finish.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            let Some(start) = find(&self.buffer, &[0xFF, 0xD8, 0xFF], 0) else {
                let keep = self.buffer.len().min(2);
                self.buffer.drain(..self.buffer.len() - keep);
                break;
            };
            let Some(end) = find(&self.buffer, &[0xFF, 0xD9], start + 2) else {
                self.buffer.drain(..start);
                if self.buffer.len() > MAX_FRAME_BYTES {
                    self.buffer.clear();
                }
                break;
            };
            frames.push(self.buffer[start..end + 2].to_vec());
            self.buffer.drain(..end + 2);
        }
        frames
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_splitter_finds_frames_across_chunk_boundaries() {
        let frame = |fill: u8| [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[fill; 10], &[0xFF, 0xD9]].concat();
        let stream = [
            b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n".as_slice(),
            &frame(1),
            b"\r\n--boundary\r\n",
            &frame(2),
        ]
        .concat();
        let mut splitter = JpegSplitter::default();
        let mut frames = Vec::new();
        for chunk in stream.chunks(5) {
            frames.extend(splitter.push(chunk));
        }
        assert_eq!(frames, vec![frame(1), frame(2)]);
    }
}
