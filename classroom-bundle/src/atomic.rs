//! Writing a file so that it either appears whole under its name or not at all,
//! even when the stick is pulled or fills up half-way.
//!
//! # Design
//! The file is written as `.NAME.partial` in the target directory (the same
//! file system, so the rename is atomic), fsynced, renamed to the name it
//! earns at the end (a records bundle's name holds its seq range, known only
//! once written), and the directory fsynced so the rename itself is on the
//! stick before the command says done. A [`Staged`] file dropped before its
//! commit removes itself: the error path leaves nothing behind. A partial file
//! left by a pulled stick carries a dot and `.partial` and is never read as a
//! bundle; [`remove_partials`] clears them before the next write.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::BundleError;

/// A file being written in its directory under a temporary name.
pub struct Staged {
    dir: PathBuf,
    temporary: PathBuf,
    file: Option<BufWriter<File>>,
}

/// Starts `dir/.NAME.partial` (mode 0600), replacing one left there before.
pub fn stage(dir: &Path, name: &str) -> Result<Staged, BundleError> {
    let temporary = dir.join(format!(".{name}.partial"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|source| write_error(dir, &temporary, source))?;
    Ok(Staged {
        dir: dir.to_owned(),
        temporary,
        file: Some(BufWriter::with_capacity(256 * 1024, file)),
    })
}

impl Staged {
    /// Where the bytes go.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.file
            .as_mut()
            .expect("a staged file is open until committed")
    }

    /// The error a failed write to this file means.
    pub fn error(&self, source: io::Error) -> BundleError {
        write_error(&self.dir, &self.temporary, source)
    }

    /// Where the bytes go until the commit.
    pub fn temporary(&self) -> &Path {
        &self.temporary
    }

    /// Flushes and fsyncs the file, renames it to `name`, fsyncs the directory.
    pub fn commit(mut self, name: &str) -> Result<PathBuf, BundleError> {
        let writer = self.file.take().expect("committed once");
        let file = writer
            .into_inner()
            .map_err(|err| write_error(&self.dir, &self.temporary, err.into_error()))?;
        file.sync_all()
            .map_err(|source| write_error(&self.dir, &self.temporary, source))?;
        drop(file);
        let target = self.dir.join(name);
        std::fs::rename(&self.temporary, &target)
            .map_err(|source| write_error(&self.dir, &target, source))?;
        sync_dir(&self.dir).map_err(|source| write_error(&self.dir, &self.dir, source))?;
        Ok(target)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.temporary.exists() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Writes `bytes` as `dir/name` atomically.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, BundleError> {
    let mut staged = stage(dir, name)?;
    staged
        .writer()
        .write_all(bytes)
        .map_err(|source| staged.error(source))?;
    staged.commit(name)
}

/// Removes `.PREFIX*.partial` files in `dir`: bundles whose writing was cut off.
pub fn remove_partials(dir: &Path, prefix: &str) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!(".{prefix}")) && name.ends_with(".partial") {
            std::fs::remove_file(dir.join(name.as_ref()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A full file system (or a file too large for it, as FAT's 4 GiB) is the
/// stick's fault and says so; anything else names the file.
pub(crate) fn write_error(dir: &Path, path: &Path, source: io::Error) -> BundleError {
    match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            BundleError::StickFull {
                dir: dir.to_owned(),
                source,
            }
        }
        _ => BundleError::Write {
            path: path.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_only_when_committed_and_an_abandoned_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut staged = stage(dir.path(), "a.bundle").unwrap();
        staged.writer().write_all(b"half").unwrap();
        staged.writer().flush().unwrap();
        assert!(dir.path().join(".a.bundle.partial").exists());
        assert!(!dir.path().join("a.bundle").exists());
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let path = write_file(dir.path(), "b.bundle", b"whole").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftover_partials_of_a_room_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".S.R.x.1-9.bundle.partial",
            ".S.Q.x.partial",
            "S.R.x.1-9.bundle",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(remove_partials(dir.path(), "S.R.").unwrap(), 1);
        assert!(dir.path().join(".S.Q.x.partial").exists());
        assert!(dir.path().join("S.R.x.1-9.bundle").exists());
    }
}
