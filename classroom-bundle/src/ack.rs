//! Acknowledgements: the province tells a room, on the stick carried back,
//! up to which seq of which outbox it stored every event.
//!
//! An acknowledgement holds no personal data (room, outbox identity, a
//! number), so it is signed but not encrypted. The file is named
//! `SCHOOL.ROOM.OUTBOX.ack-SEQ.ack`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::document::{self, Kind};
use crate::{BundleError, Room, atomic, envelope, keys};

/// The file name's ending.
pub const EXTENSION: &str = "ack";

/// What an acknowledgement says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(flatten)]
    pub room: Room,
    pub outbox_identity: Uuid,
    /// Every event of the outbox up to this seq is stored by the province.
    pub acked_seq: i64,
    /// RFC 3339, the province's clock.
    pub created_at: String,
}

/// `SCHOOL.ROOM.OUTBOX.ack-SEQ.ack`.
pub fn file_name(ack: &Ack) -> String {
    format!(
        "{}.{}.ack-{}.{EXTENSION}",
        ack.room.file_prefix(),
        ack.outbox_identity,
        ack.acked_seq
    )
}

/// Writes `ack` into `dir`, signed with the province's `key`, atomically.
pub fn write(dir: &Path, ack: &Ack, key: &SigningKey) -> Result<PathBuf, BundleError> {
    let header = serde_json::to_vec(ack).expect("an ack serialises");
    let bytes = document::Writer::start(Vec::new(), Kind::Ack, &header)
        .and_then(|writer| writer.finish(b"{}", key))
        .expect("writing to memory cannot fail");
    atomic::write_file(dir, &file_name(ack), &bytes)
}

/// Reads the acknowledgement at `path`, checking it is whole and signed by `province`.
pub fn open(path: &Path, province: &VerifyingKey) -> Result<Ack, BundleError> {
    let mut file = std::fs::File::open(path).map_err(|source| BundleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let document = document::read(&mut file, Kind::Ack, 0, &mut |_| Ok(*province), &mut |_| {
        Err(document::ReadError::Format(
            "an acknowledgement holds no items".into(),
        ))
    })
    .map_err(|err| envelope::read_error(path, &keys::verifying_key_text(province), err))?;
    serde_json::from_slice(&document.header).map_err(|err| BundleError::NotABundle {
        path: path.to_owned(),
        detail: format!("its header: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack() -> Ack {
        Ack {
            room: Room {
                school_code: "LC-0101".into(),
                room_id: "6A1".into(),
            },
            outbox_identity: Uuid::from_u128(3),
            acked_seq: 4_200,
            created_at: "2026-12-01T08:00:00Z".into(),
        }
    }

    #[test]
    fn an_ack_reads_back_only_with_the_provinces_key_and_only_whole() {
        let dir = tempfile::tempdir().unwrap();
        let province = SigningKey::from_bytes(&[1; 32]);
        let path = write(dir.path(), &ack(), &province).unwrap();
        assert!(path.ends_with(format!("LC-0101.6A1.{}.ack-4200.ack", Uuid::from_u128(3))));
        assert_eq!(open(&path, &province.verifying_key()).unwrap(), ack());

        let stranger = SigningKey::from_bytes(&[2; 32]).verifying_key();
        let err = open(&path, &stranger).unwrap_err();
        assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");

        let bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == b"4200").unwrap();
        let mut forged = bytes.clone();
        forged[at..at + 4].copy_from_slice(b"9999");
        std::fs::write(&path, &forged).unwrap();
        let err = open(&path, &province.verifying_key()).unwrap_err();
        assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");

        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = open(&path, &province.verifying_key()).unwrap_err();
        assert!(matches!(err, BundleError::Damaged { .. }), "{err}");
    }
}
