//! Office bundles: what the province sends into a room on a stick, a roster
//! push (with its timetable) or a learning-content file.
//!
//! Signed by the province, encrypted to the room's age recipient (a roster
//! names children). The header names the room, what the payload is and its
//! size and SHA-256; the one item is the payload. The file is named
//! `SCHOOL.ROOM.KIND-NAME.office`.
//!
//! # Design
//! A content file may be larger than memory allows, so opening is two
//! passes: [`open`] reads the whole bundle, hashing, and checks the signature
//! and the payload's SHA-256 without keeping the payload; [`Office::payload`]
//! reads it again and hands it on in chunks, checking the same again at the
//! end (the file might have been swapped between the passes). A caller that
//! applies the payload must apply it only when `payload` returned Ok, as the
//! agent's content store does with the size and hash it is given.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::document::{self, Kind, ReadError};
use crate::{BundleError, Room, atomic, envelope, keys};

/// The file name's ending.
pub const EXTENSION: &str = "office";

/// What the payload is, and so which of the room's push paths applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// A roster push as the hub's `PutRoster` sends it (protobuf `PutRosterRequest`).
    Roster,
    /// A learning-content file for the tablets, stored under its name.
    Content,
}

/// What an office bundle's header says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    #[serde(flatten)]
    pub room: Room,
    pub payload: Payload,
    /// The content file's name; for a roster, `roster`.
    pub name: String,
    pub size: u64,
    /// SHA-256 of the payload, hex.
    pub sha256: String,
    /// RFC 3339, the province's clock.
    pub created_at: String,
}

impl Header {
    /// The payload's SHA-256 as bytes.
    pub fn sha256_bytes(&self) -> [u8; 32] {
        let mut bytes = [0; 32];
        hex::decode_to_slice(&self.sha256, &mut bytes).unwrap_or_default();
        bytes
    }
}

/// Packs `payload_file` for `room` into `dir`: signed with the province's
/// `key`, encrypted to the room's `room_recipient`, written atomically.
pub fn pack(
    dir: &Path,
    room: &Room,
    payload: Payload,
    name: &str,
    payload_file: &Path,
    room_recipient: &age::x25519::Recipient,
    key: &SigningKey,
) -> Result<PathBuf, BundleError> {
    let read_failed = |source| BundleError::Read {
        path: payload_file.to_owned(),
        source,
    };
    let size = std::fs::metadata(payload_file).map_err(read_failed)?.len();
    let len = u32::try_from(size).map_err(|_| {
        BundleError::Invalid(format!(
            "{}: {size} bytes; an office bundle carries at most 4 GiB",
            payload_file.display()
        ))
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(
        &mut std::fs::File::open(payload_file).map_err(read_failed)?,
        &mut hasher,
    )
    .map_err(read_failed)?;
    let header = Header {
        room: room.clone(),
        payload,
        name: name.to_owned(),
        size,
        sha256: hex::encode(hasher.finalize()),
        created_at: jiff::Timestamp::now().to_string(),
    };
    let file_name = format!(
        "{}.{}-{}.{EXTENSION}",
        room.file_prefix(),
        serde_json::to_value(payload)
            .expect("a kind serialises")
            .as_str()
            .unwrap_or("payload"),
        name
    );
    let mut staged = atomic::stage(dir, &file_name)?;
    let temporary = staged.temporary().to_owned();
    let fail = |source| atomic::write_error(dir, &temporary, source);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(room_recipient as &dyn age::Recipient))
            .map_err(|err| BundleError::Invalid(format!("cannot encrypt: {err}")))?;
    {
        let encrypted = encryptor.wrap_output(staged.writer()).map_err(fail)?;
        let mut writer = document::Writer::start(
            encrypted,
            Kind::Office,
            &serde_json::to_vec(&header).expect("a header serialises"),
        )
        .map_err(fail)?;
        let mut source = std::fs::File::open(payload_file).map_err(read_failed)?;
        writer.item_from(0, len, &mut source).map_err(fail)?;
        writer
            .finish(b"{}", key)
            .map_err(fail)?
            .finish()
            .map_err(fail)?;
    }
    staged.commit(&file_name)
}

/// An office bundle checked whole, its payload not yet read out.
#[derive(Clone)]
pub struct Office {
    pub header: Header,
    path: PathBuf,
    identity: age::x25519::Identity,
    province: VerifyingKey,
}

/// Opens the office bundle at `path` with the room's `identity` and checks
/// it whole: signed by `province`, its payload of the size and SHA-256 its
/// header says.
pub fn open(
    path: &Path,
    identity: &age::x25519::Identity,
    province: &VerifyingKey,
) -> Result<Office, BundleError> {
    let header = read_through(path, identity, province, &mut |_| Ok(()))?;
    Ok(Office {
        header,
        path: path.to_owned(),
        identity: identity.clone(),
        province: *province,
    })
}

impl std::fmt::Debug for Office {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Office")
            .field("header", &self.header)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Office {
    /// Reads the payload again, handing it on in chunks; Ok only when the
    /// bundle still checks whole and the payload matches the header.
    pub fn payload(
        &self,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), BundleError> {
        let header = read_through(&self.path, &self.identity, &self.province, sink)?;
        if header != self.header {
            return Err(BundleError::Invalid(format!(
                "{}: the file changed while it was being read; nothing was applied",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// The payload whole, for one that fits in memory (a roster).
    pub fn payload_bytes(&self, at_most: u64) -> Result<Vec<u8>, BundleError> {
        if self.header.size > at_most {
            return Err(BundleError::Invalid(format!(
                "{}: a {} payload of {} bytes; at most {at_most} are accepted",
                self.path.display(),
                self.header.name,
                self.header.size
            )));
        }
        let mut bytes = Vec::with_capacity(self.header.size as usize);
        self.payload(&mut |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(bytes)
    }
}

/// One pass over the bundle: each chunk of the payload to `sink`, then the
/// signature and the payload's size and hash checked.
fn read_through(
    path: &Path,
    identity: &age::x25519::Identity,
    province: &VerifyingKey,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Header, BundleError> {
    let mut source = envelope::decrypt(path, identity)?;
    let mut header: Option<Header> = None;
    let mut hasher = Sha256::new();
    let mut items = 0u32;
    let mut size = 0u64;
    let read = document::read(
        &mut source,
        Kind::Office,
        u32::MAX,
        &mut |bytes| {
            header = Some(
                serde_json::from_slice(bytes)
                    .map_err(|err| ReadError::Format(format!("its header: {err}")))?,
            );
            Ok(*province)
        },
        &mut |item| {
            items += 1;
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let got = item.bytes.read(&mut buffer)?;
                if got == 0 {
                    return Ok(());
                }
                hasher.update(&buffer[..got]);
                size += got as u64;
                sink(&buffer[..got]).map_err(|err| ReadError::Item(err.to_string()))?;
            }
        },
    );
    read.map_err(|err| envelope::read_error(path, &keys::verifying_key_text(province), err))?;
    let header = header.expect("a read document has a header");
    if items != 1 || size != header.size || hex::encode(hasher.finalize()) != header.sha256 {
        return Err(BundleError::NotABundle {
            path: path.to_owned(),
            detail: format!(
                "its payload ({items} item(s), {size} bytes) does not match its header ({} bytes, SHA-256 {})",
                header.size, header.sha256
            ),
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_office_bundle_reaches_only_its_room_signed_by_the_province_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("roster.pb");
        std::fs::write(&payload, vec![7u8; 200_000]).unwrap();
        let room_identity = age::x25519::Identity::generate();
        let province = SigningKey::from_bytes(&[5; 32]);
        let room = Room {
            school_code: "LC-0101".into(),
            room_id: "6A1".into(),
        };
        let path = pack(
            dir.path(),
            &room,
            Payload::Roster,
            "roster",
            &payload,
            &room_identity.to_public(),
            &province,
        )
        .unwrap();
        assert!(path.ends_with("LC-0101.6A1.roster-roster.office"));
        let office = open(&path, &room_identity, &province.verifying_key()).unwrap();
        assert_eq!(
            (office.header.payload, office.header.size),
            (Payload::Roster, 200_000)
        );
        assert_eq!(office.payload_bytes(1 << 20).unwrap(), vec![7u8; 200_000]);
        assert!(office.payload_bytes(1000).is_err(), "bounded");

        let stranger = SigningKey::from_bytes(&[6; 32]).verifying_key();
        let err = open(&path, &room_identity, &stranger).unwrap_err();
        assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
        let err = open(
            &path,
            &age::x25519::Identity::generate(),
            &province.verifying_key(),
        )
        .unwrap_err();
        assert!(matches!(err, BundleError::OtherRecipient { .. }), "{err}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = open(&path, &room_identity, &province.verifying_key()).unwrap_err();
        assert!(err.is_refused_input(), "{err}");
    }
}
