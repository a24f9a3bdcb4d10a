//! Which signing key the province trusts for each room: pinned on first
//! sight, or written in ahead by the office.
//!
//! A text file, one room a line: `SCHOOL ROOM ed25519:KEY`. The province's
//! hub keeps the same in its database; this file serves the office tool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::{BundleError, Room, atomic, keys};

/// The pinned keys, by (school, room).
pub struct Pins {
    path: PathBuf,
    keys: BTreeMap<(String, String), VerifyingKey>,
}

/// Whether a room's key was known or seen for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    Known,
    FirstSight,
}

impl Pins {
    /// Reads the pins at `path`; a missing file holds none.
    pub fn load(path: &Path) -> Result<Pins, BundleError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(BundleError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut keys = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let key = match fields[..] {
                [_, _, key] => keys::parse_verifying_key(key).map_err(|err| err.to_string()),
                _ => Err("write it as SCHOOL ROOM ed25519:KEY".to_owned()),
            }
            .map_err(|detail| BundleError::Key {
                path: path.to_owned(),
                detail: format!("line {}: {detail}", number + 1),
            })?;
            keys.insert((fields[0].to_owned(), fields[1].to_owned()), key);
        }
        Ok(Pins {
            path: path.to_owned(),
            keys,
        })
    }

    /// The key pinned for `room`, if any.
    pub fn get(&self, room: &Room) -> Option<&VerifyingKey> {
        self.keys
            .get(&(room.school_code.clone(), room.room_id.clone()))
    }

    /// Pins `key` for `room` when it has none, and saves the file.
    pub fn pin(&mut self, room: &Room, key: VerifyingKey) -> Result<Pinned, BundleError> {
        if self.get(room).is_some() {
            return Ok(Pinned::Known);
        }
        self.keys
            .insert((room.school_code.clone(), room.room_id.clone()), key);
        let mut text = String::from("# Rooms' signing keys for USB bundles: SCHOOL ROOM KEY\n");
        for ((school, room), key) in &self.keys {
            text.push_str(&format!(
                "{school} {room} {}\n",
                keys::verifying_key_text(key)
            ));
        }
        let dir = self
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pins".to_owned());
        atomic::write_file(dir, &name, text.as_bytes())?;
        Ok(Pinned::FirstSight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_room_is_pinned_on_first_sight_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins");
        let room = Room {
            school_code: "LC-0101".into(),
            room_id: "6A1".into(),
        };
        let first = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let mut pins = Pins::load(&path).unwrap();
        assert_eq!(pins.pin(&room, first).unwrap(), Pinned::FirstSight);
        let mut again = Pins::load(&path).unwrap();
        assert_eq!(again.get(&room), Some(&first));
        let second = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert_eq!(again.pin(&room, second).unwrap(), Pinned::Known);
        assert_eq!(Pins::load(&path).unwrap().get(&room), Some(&first));
        std::fs::write(&path, "LC-0101 6A1\n").unwrap();
        let err = Pins::load(&path).err().unwrap().to_string();
        assert!(err.contains("line 1: write it as SCHOOL ROOM"), "{err}");
    }
}
