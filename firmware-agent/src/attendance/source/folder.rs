//! A folder of still images played in name order, for demos and tests.

use std::path::{Path, PathBuf};

use super::{Frame, FrameSource, Pace, SourceError};

/// Image files of a folder, in name order.
pub struct FolderSource {
    folder: PathBuf,
    files: Vec<PathBuf>,
    position: usize,
    repeat: bool,
    pace: Pace,
}

impl FolderSource {
    pub(super) fn open(
        folder: &Path,
        repeat: bool,
        pace: Pace,
    ) -> Result<FolderSource, SourceError> {
        let fail = |reason: String| SourceError {
            source_name: folder.display().to_string(),
            reason,
        };
        let entries = std::fs::read_dir(folder)
            .map_err(|err| fail(format!("cannot read the folder: {err}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["jpg", "jpeg", "png", "bmp", "webp"].contains(&e.to_ascii_lowercase().as_str())
                })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(fail(
                "no JPEG, PNG, BMP or WebP images in the folder".to_owned(),
            ));
        }
        Ok(FolderSource {
            folder: folder.to_owned(),
            files,
            position: 0,
            repeat,
            pace,
        })
    }
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.position == self.files.len() {
            if !self.repeat {
                return Ok(None);
            }
            self.position = 0;
        }
        self.pace.wait();
        let path = &self.files[self.position];
        self.position += 1;
        let bytes = std::fs::read(path).map_err(|err| SourceError {
            source_name: self.folder.display().to_string(),
            reason: format!("{}: cannot read: {err}", path.display()),
        })?;
        Ok(Some(Frame::Encoded(bytes)))
    }
}
