//! Where the tablets' content store may be (`tablets.content_dir`): a check
//! across sections, since it judges that directory against `storage.data_dir`
//! and the config file's own directory.
//!
//! # Design
//! Paired tablets may read every file in the content store, so a content
//! directory that holds the database, the TLS key or the config would hand
//! them to any pupil with a tablet. The check runs in `check-config` and at
//! every load; serving then only follows what the config allowed.

use std::fs;
use std::path::Path;

/// Directories of the system that a content directory may be neither nor hold.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
];

/// Why `content` (absolute and clean) cannot be the content store: paired
/// tablets may read every file in it, so it must hold neither the agent's
/// data (`data_dir`: the database, the TLS key) nor its config (in
/// `config_dir`), nor be or hold a system directory. The paths are judged as
/// written and again with symbolic links resolved where they exist.
pub fn dir_problem(content: &Path, data_dir: &Path, config_dir: &Path) -> Option<String> {
    let real = |path: &Path| fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    lexical_dir_problem(content, data_dir, config_dir)
        .or_else(|| lexical_dir_problem(&real(content), &real(data_dir), &real(config_dir)))
}

fn lexical_dir_problem(content: &Path, data_dir: &Path, config_dir: &Path) -> Option<String> {
    if data_dir.starts_with(content) {
        return Some(format!(
            "{} holds the data directory {}: tablets could read the database",
            content.display(),
            data_dir.display()
        ));
    }
    if config_dir.starts_with(content) {
        return Some(format!(
            "{} holds the config file's directory {}",
            content.display(),
            config_dir.display()
        ));
    }
    SYSTEM_DIRS
        .iter()
        .map(Path::new)
        .find(|system| system.starts_with(content))
        .map(|system| {
            format!(
                "{} is or holds the system directory {}",
                content.display(),
                system.display()
            )
        })
}
