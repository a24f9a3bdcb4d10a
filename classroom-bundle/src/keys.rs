//! The keys bundles are signed and encrypted with, and their text forms.
//!
//! # Design
//! - Public keys travel as text people can paste into a config file: an age
//!   recipient as age writes it (`age1…`), an Ed25519 verifying key as
//!   `ed25519:` and the key's 32 bytes in base64.
//! - Secret keys live in files of mode 0600, made with `O_EXCL` so two
//!   processes making the room's keys at once end up with one pair: the loser
//!   reads the winner's file.
//! - The room's file holds both its secrets, one a line: its age identity
//!   (`AGE-SECRET-KEY-1…`) and its signing key (`ed25519-secret:` and base64).
//!   The province keeps its age identity and its signing key in two files, so
//!   the office machine that signs acknowledgements need not read records.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::BundleError;

const VERIFYING_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

/// An Ed25519 verifying key as text: `ed25519:BASE64`.
pub fn verifying_key_text(key: &VerifyingKey) -> String {
    format!("{VERIFYING_PREFIX}{}", STANDARD.encode(key.to_bytes()))
}

/// Why a key pasted as text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("`{text}` is not an Ed25519 verifying key: it starts with `{VERIFYING_PREFIX}`")]
    NotVerifyingKey { text: String },
    #[error("`{text}`: after `{VERIFYING_PREFIX}` come 32 bytes in base64 (44 characters)")]
    VerifyingKeyLength { text: String },
    #[error("`{text}` is not a point of Ed25519")]
    NotOnCurve { text: String },
    #[error(
        "`{text}` is not an age X25519 recipient ({reason}): it looks like age1 and 58 letters and digits"
    )]
    NotRecipient { text: String, reason: String },
}

/// Reads `ed25519:BASE64`.
pub fn parse_verifying_key(text: &str) -> Result<VerifyingKey, KeyTextError> {
    let owned = || text.to_owned();
    let encoded = text
        .trim()
        .strip_prefix(VERIFYING_PREFIX)
        .ok_or_else(|| KeyTextError::NotVerifyingKey { text: owned() })?;
    let bytes: [u8; 32] = STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| KeyTextError::VerifyingKeyLength { text: owned() })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyTextError::NotOnCurve { text: owned() })
}

/// Reads an age X25519 recipient (`age1…`).
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, KeyTextError> {
    age::x25519::Recipient::from_str(text.trim()).map_err(|err| KeyTextError::NotRecipient {
        text: text.to_owned(),
        reason: err.to_string(),
    })
}

fn secret_key_text(key: &SigningKey) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key.to_bytes()))
}

fn parse_secret_key(text: &str) -> Option<SigningKey> {
    let bytes: [u8; 32] = STANDARD
        .decode(text.trim().strip_prefix(SECRET_PREFIX)?)
        .ok()?
        .try_into()
        .ok()?;
    Some(SigningKey::from_bytes(&bytes))
}

fn random_signing_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// The lines of a key file that are not comments or blank.
fn key_lines(path: &Path) -> Result<Vec<String>, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|source| BundleError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Writes a new secret file (mode 0600); fails if it exists.
fn create_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A room's two secrets: it signs its records bundles with one and reads the
/// office's bundles with the other.
pub struct RoomKeys {
    pub signing: SigningKey,
    pub identity: age::x25519::Identity,
}

impl RoomKeys {
    /// Reads the room's key file, making it (mode 0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<RoomKeys, BundleError> {
        if !path.exists() {
            let keys = RoomKeys {
                signing: random_signing_key(),
                identity: age::x25519::Identity::generate(),
            };
            let text = format!(
                "# This room's keys for USB bundles (firmware-agent hub export/import); keep it secret.\n{}\n{}\n",
                keys.identity.to_string().expose_secret(),
                secret_key_text(&keys.signing)
            );
            match create_secret_file(path, &text) {
                Ok(()) => return Ok(keys),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(BundleError::Write {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        }
        let lines = key_lines(path)?;
        let identity = lines
            .iter()
            .find_map(|line| age::x25519::Identity::from_str(line).ok());
        let signing = lines.iter().find_map(|line| parse_secret_key(line));
        match (identity, signing) {
            (Some(identity), Some(signing)) => Ok(RoomKeys { signing, identity }),
            _ => Err(BundleError::Key {
                path: path.to_owned(),
                detail: "not a room key file: it holds an AGE-SECRET-KEY-1… line and an ed25519-secret: line\n  hint: a damaged key file cannot be repaired; move it aside and a new pair is made (the province must then be told the new key)".to_owned(),
            }),
        }
    }

    /// The room's verifying key as text, for the province's pins.
    pub fn verifying_key_text(&self) -> String {
        verifying_key_text(&self.signing.verifying_key())
    }

    /// The room's age recipient, for the office's bundles.
    pub fn recipient_text(&self) -> String {
        self.identity.to_public().to_string()
    }
}

/// Reads the province's age identity (an `AGE-SECRET-KEY-1…` line) from `path`.
pub fn load_identity(path: &Path) -> Result<age::x25519::Identity, BundleError> {
    key_lines(path)?
        .iter()
        .find_map(|line| age::x25519::Identity::from_str(line).ok())
        .ok_or_else(|| BundleError::Key {
            path: path.to_owned(),
            detail: "holds no age identity (an AGE-SECRET-KEY-1… line)".to_owned(),
        })
}

/// Reads an Ed25519 signing key (an `ed25519-secret:` line) from `path`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    key_lines(path)?
        .iter()
        .find_map(|line| parse_secret_key(line))
        .ok_or_else(|| BundleError::Key {
            path: path.to_owned(),
            detail: "holds no Ed25519 signing key (an ed25519-secret: line)".to_owned(),
        })
}

/// The province's public halves, as a room's config names them.
pub struct ProvincePublic {
    pub recipient: String,
    pub verifying_key: String,
}

/// Makes the province's keys in `dir`: `province.age` (its age identity) and
/// `province-signing.key` (its Ed25519 signing key), both 0600; neither may exist.
pub fn generate_province(dir: &Path) -> Result<ProvincePublic, BundleError> {
    let identity = age::x25519::Identity::generate();
    let signing = random_signing_key();
    let public = ProvincePublic {
        recipient: identity.to_public().to_string(),
        verifying_key: verifying_key_text(&signing.verifying_key()),
    };
    for (name, text) in [
        (
            "province.age",
            format!(
                "# The province's age identity: opens the rooms' records bundles. Keep it secret.\n# recipient: {}\n{}\n",
                public.recipient,
                identity.to_string().expose_secret()
            ),
        ),
        (
            "province-signing.key",
            format!(
                "# The province's signing key: signs acknowledgements and office bundles. Keep it secret.\n# verifying key: {}\n{}\n",
                public.verifying_key,
                secret_key_text(&signing)
            ),
        ),
    ] {
        let path = dir.join(name);
        create_secret_file(&path, &text).map_err(|source| BundleError::Write { path, source })?;
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_room_makes_its_keys_once_private_and_reads_the_same_ones_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle-keys");
        let made = RoomKeys::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = RoomKeys::load_or_create(&path).unwrap();
        assert_eq!(made.verifying_key_text(), again.verifying_key_text());
        assert_eq!(made.recipient_text(), again.recipient_text());
        assert!(made.verifying_key_text().starts_with("ed25519:"));
        assert!(made.recipient_text().starts_with("age1"));
    }

    #[test]
    fn public_keys_round_trip_as_text_and_bad_text_says_why() {
        let key = random_signing_key().verifying_key();
        assert_eq!(parse_verifying_key(&verifying_key_text(&key)).unwrap(), key);
        assert!(
            parse_verifying_key("age1xyz")
                .unwrap_err()
                .to_string()
                .contains("starts with `ed25519:`")
        );
        assert!(
            parse_verifying_key("ed25519:abc")
                .unwrap_err()
                .to_string()
                .contains("32 bytes in base64")
        );
        assert!(
            parse_recipient("ed25519:abc")
                .unwrap_err()
                .to_string()
                .contains("not an age X25519 recipient")
        );
    }

    #[test]
    fn province_keys_are_made_once_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let public = generate_province(dir.path()).unwrap();
        let identity = load_identity(&dir.path().join("province.age")).unwrap();
        assert_eq!(identity.to_public().to_string(), public.recipient);
        let signing = load_signing_key(&dir.path().join("province-signing.key")).unwrap();
        assert_eq!(
            verifying_key_text(&signing.verifying_key()),
            public.verifying_key
        );
        assert!(generate_province(dir.path()).is_err(), "never overwritten");
    }
}
