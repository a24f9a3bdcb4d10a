//! Records bundles: a room's unacknowledged events, room to province.
//!
//! The header names the room, its outbox identity, when the bundle was made
//! and the room's two public keys; each item is one event (the agent's
//! protobuf `Event`, as opaque bytes) numbered by its seq, in increasing
//! order; the summary gives the seq range and the count. The file is named
//! `SCHOOL.ROOM.OUTBOX.FIRST-LAST.bundle`.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::atomic::{self, Staged};
use crate::document::{self, Kind, ReadError};
use crate::keys::{self, RoomKeys};
use crate::{BundleError, Room, envelope};

/// The file name's ending.
pub const EXTENSION: &str = "bundle";
/// The largest event accepted (the agent's events are under 64 KiB).
const MAX_EVENT_BYTES: u32 = 1024 * 1024;

/// What the header of a records bundle says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    #[serde(flatten)]
    pub room: Room,
    pub outbox_identity: Uuid,
    /// RFC 3339, the room's clock.
    pub created_at: String,
    /// The room's Ed25519 verifying key (`ed25519:…`) that signed the bundle.
    pub room_signing_key: String,
    /// The room's age recipient (`age1…`), for office bundles sent back.
    pub room_recipient: String,
}

/// What the end of a records bundle says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub first_seq: i64,
    pub last_seq: i64,
    pub events: u64,
}

/// A records bundle being written into a directory (a stick's).
pub struct Writer {
    document: document::Writer<age::stream::StreamWriter<StagedWrite>>,
    dir: PathBuf,
    temporary: PathBuf,
    prefix: String,
    outbox_identity: Uuid,
    signing: ed25519_dalek::SigningKey,
    summary: Option<Summary>,
    bytes: u64,
}

/// The staged file as the encryption layer's output, counting what it takes.
struct StagedWrite {
    staged: Staged,
    written: u64,
}

impl Write for StagedWrite {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let written = self.staged.writer().write(buffer)?;
        self.written += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.staged.writer().flush()
    }
}

/// A bundle written: where, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub summary: Summary,
    /// The file's size.
    pub bytes: u64,
}

impl Writer {
    /// Starts a bundle for `room`'s outbox `outbox_identity` in `dir`,
    /// signed with `keys` and encrypted to `province`. Partial files a pulled
    /// stick left for this room are removed first.
    pub fn create(
        dir: &Path,
        room: &Room,
        outbox_identity: Uuid,
        created_at: jiff::Timestamp,
        keys: &RoomKeys,
        province: &age::x25519::Recipient,
    ) -> Result<Writer, BundleError> {
        let prefix = room.file_prefix();
        atomic::remove_partials(dir, &format!("{prefix}."))
            .map_err(|source| atomic::write_error(dir, dir, source))?;
        let staged = atomic::stage(dir, &format!("{prefix}.{outbox_identity}.{EXTENSION}"))?;
        let temporary = staged.temporary().to_owned();
        let fail = |source| atomic::write_error(dir, &temporary, source);
        let header = Header {
            room: room.clone(),
            outbox_identity,
            created_at: created_at.to_string(),
            room_signing_key: keys.verifying_key_text(),
            room_recipient: keys.recipient_text(),
        };
        let header = serde_json::to_vec(&header).expect("a header serialises");
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(province as &dyn age::Recipient))
                .map_err(|err| BundleError::Invalid(format!("cannot encrypt: {err}")))?;
        let encrypted = encryptor
            .wrap_output(StagedWrite { staged, written: 0 })
            .map_err(fail)?;
        let document = document::Writer::start(encrypted, Kind::Records, &header).map_err(fail)?;
        Ok(Writer {
            document,
            dir: dir.to_owned(),
            temporary,
            prefix,
            outbox_identity,
            signing: keys.signing.clone(),
            summary: None,
            bytes: 0,
        })
    }

    /// Adds one event; seqs must increase.
    pub fn event(&mut self, seq: i64, event: &[u8]) -> Result<(), BundleError> {
        let summary = match self.summary {
            Some(summary) if seq <= summary.last_seq => {
                return Err(BundleError::Invalid(format!(
                    "seq {seq} after {}: a bundle's events go in increasing seq",
                    summary.last_seq
                )));
            }
            Some(summary) => Summary {
                last_seq: seq,
                events: summary.events + 1,
                ..summary
            },
            None => Summary {
                first_seq: seq,
                last_seq: seq,
                events: 1,
            },
        };
        let number = u64::try_from(seq)
            .map_err(|_| BundleError::Invalid(format!("seq {seq} is negative")))?;
        self.document
            .item(number, event)
            .map_err(|source| atomic::write_error(&self.dir, &self.temporary, source))?;
        self.summary = Some(summary);
        self.bytes += event.len() as u64;
        Ok(())
    }

    /// Events added so far, and their bytes.
    pub fn added(&self) -> (u64, u64) {
        (self.summary.map_or(0, |s| s.events), self.bytes)
    }

    /// Signs, seals and commits the bundle under its name; nothing is left on
    /// the stick if any step fails.
    pub fn finish(self) -> Result<Written, BundleError> {
        let fail = |source| atomic::write_error(&self.dir, &self.temporary, source);
        let summary = self
            .summary
            .ok_or_else(|| BundleError::Invalid("a bundle with no event is not written".into()))?;
        let encoded = serde_json::to_vec(&summary).expect("a summary serialises");
        let encrypted = self
            .document
            .finish(&encoded, &self.signing)
            .map_err(fail)?;
        let output = encrypted.finish().map_err(fail)?;
        let name = file_name(&self.prefix, self.outbox_identity, &summary);
        let bytes = output.written;
        let path = output.staged.commit(&name)?;
        Ok(Written {
            path,
            summary,
            bytes,
        })
    }
}

/// `SCHOOL.ROOM.OUTBOX.FIRST-LAST.bundle`.
pub fn file_name(prefix: &str, outbox_identity: Uuid, summary: &Summary) -> String {
    format!(
        "{prefix}.{outbox_identity}.{}-{}.{EXTENSION}",
        summary.first_seq, summary.last_seq
    )
}

/// A records bundle opened and checked.
#[derive(Debug, Clone)]
pub struct Records {
    pub header: Header,
    pub summary: Summary,
    /// The key that signed it (the one the header names).
    pub room_key: VerifyingKey,
    /// Each event's seq and bytes, in seq order.
    pub events: Vec<(i64, Vec<u8>)>,
}

/// Opens the bundle at `path` with the province's `identity` and checks it
/// whole: the signature by the room key it carries, and, when given, that this
/// key is `expected_room_key` (the one pinned for the room). Nothing is
/// returned from a bundle that fails any check.
pub fn open(
    path: &Path,
    identity: &age::x25519::Identity,
    expected_room_key: Option<&VerifyingKey>,
) -> Result<Records, BundleError> {
    let mut source = envelope::decrypt(path, identity)?;
    let mut header: Option<Header> = None;
    let mut room_key: Option<VerifyingKey> = None;
    let mut events = Vec::new();
    let mut last: Option<i64> = None;
    let read = document::read(
        &mut source,
        Kind::Records,
        MAX_EVENT_BYTES,
        &mut |bytes| {
            let parsed: Header = serde_json::from_slice(bytes)
                .map_err(|err| ReadError::Format(format!("its header: {err}")))?;
            let key = keys::parse_verifying_key(&parsed.room_signing_key).map_err(|err| {
                ReadError::Format(format!("its header's room_signing_key: {err}"))
            })?;
            header = Some(parsed);
            room_key = Some(key);
            Ok(key)
        },
        &mut |item| {
            let seq = i64::try_from(item.number)
                .map_err(|_| ReadError::Format(format!("seq {} is out of range", item.number)))?;
            if last.is_some_and(|last| seq <= last) {
                return Err(ReadError::Format(format!("seq {seq} out of order")));
            }
            last = Some(seq);
            let mut bytes = Vec::with_capacity(item.len as usize);
            item.bytes.read_to_end(&mut bytes)?;
            events.push((seq, bytes));
            Ok(())
        },
    );
    let (header, room_key) = (header, room_key);
    let signer = room_key
        .as_ref()
        .map_or_else(|| "the room's key".to_owned(), keys::verifying_key_text);
    let document = read.map_err(|err| envelope::read_error(path, &signer, err))?;
    let header = header.expect("the header was read before the signature");
    let room_key = room_key.expect("the key was read with the header");
    let summary: Summary =
        serde_json::from_slice(&document.summary).map_err(|err| BundleError::NotABundle {
            path: path.to_owned(),
            detail: format!("its summary: {err}"),
        })?;
    let first = events.first().map(|(seq, _)| *seq);
    if summary.events != events.len() as u64
        || Some(summary.first_seq) != first
        || Some(summary.last_seq) != last
    {
        return Err(BundleError::NotABundle {
            path: path.to_owned(),
            detail: format!(
                "its summary ({} events, seq {}-{}) does not match its events",
                summary.events, summary.first_seq, summary.last_seq
            ),
        });
    }
    let records = Records {
        header,
        summary,
        room_key,
        events,
    };
    if let Some(expected) = expected_room_key {
        records.check_room_key(path, expected)?;
    }
    Ok(records)
}

impl Records {
    /// Refuses the bundle (read from `path`) unless its room key is `expected`.
    pub fn check_room_key(&self, path: &Path, expected: &VerifyingKey) -> Result<(), BundleError> {
        if *expected == self.room_key {
            return Ok(());
        }
        Err(BundleError::RoomKeyChanged {
            path: path.to_owned(),
            school_code: self.header.room.school_code.clone(),
            room_id: self.header.room.room_id.clone(),
            found: keys::verifying_key_text(&self.room_key),
            pinned: keys::verifying_key_text(expected),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        dir: tempfile::TempDir,
        room: RoomKeys,
        province: age::x25519::Identity,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomKeys::load_or_create(&dir.path().join("room-keys")).unwrap();
        Setup {
            dir,
            room,
            province: age::x25519::Identity::generate(),
        }
    }

    fn room() -> Room {
        Room {
            school_code: "LC-0101".into(),
            room_id: "6A1".into(),
        }
    }

    fn write(setup: &Setup, seqs: std::ops::RangeInclusive<i64>) -> Written {
        let stick = setup.dir.path().join("stick");
        std::fs::create_dir_all(&stick).unwrap();
        let mut writer = Writer::create(
            &stick,
            &room(),
            Uuid::from_u128(7),
            jiff::Timestamp::UNIX_EPOCH,
            &setup.room,
            &setup.province.to_public(),
        )
        .unwrap();
        for seq in seqs {
            writer
                .event(seq, format!("event {seq}").as_bytes())
                .unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn a_bundle_opens_with_the_province_key_and_gives_back_every_event() {
        let setup = setup();
        let written = write(&setup, 5..=9);
        assert_eq!(
            written.path.file_name().unwrap().to_string_lossy(),
            format!("LC-0101.6A1.{}.5-9.bundle", Uuid::from_u128(7))
        );
        assert_eq!(
            std::fs::metadata(&written.path).unwrap().len(),
            written.bytes
        );
        let opened = open(&written.path, &setup.province, None).unwrap();
        assert_eq!(opened.header.room, room());
        assert_eq!(opened.header.outbox_identity, Uuid::from_u128(7));
        assert_eq!(
            (
                opened.summary.first_seq,
                opened.summary.last_seq,
                opened.summary.events
            ),
            (5, 9, 5)
        );
        assert_eq!(opened.events[2], (7, b"event 7".to_vec()));
        assert_eq!(opened.room_key, setup.room.signing.verifying_key());
        let leftovers: Vec<_> = std::fs::read_dir(written.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "only the bundle: {leftovers:?}");
    }

    #[test]
    fn nothing_in_the_file_is_readable_without_the_key() {
        let setup = setup();
        let written = write(&setup, 1..=50);
        let bytes = std::fs::read(&written.path).unwrap();
        for needle in [&b"event 1"[..], b"LC-0101", b"6A1", b"classroom-bundle"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{}",
                String::from_utf8_lossy(needle)
            );
        }
    }

    #[test]
    fn another_provinces_key_is_refused_by_name() {
        let setup = setup();
        let written = write(&setup, 1..=3);
        let other = age::x25519::Identity::generate();
        let err = open(&written.path, &other, None).unwrap_err();
        assert!(matches!(err, BundleError::OtherRecipient { .. }), "{err}");
        assert!(err.to_string().contains("another province's key"), "{err}");
    }

    #[test]
    fn a_truncated_bundle_is_refused_at_every_length() {
        let setup = setup();
        let written = write(&setup, 1..=2_000);
        let bytes = std::fs::read(&written.path).unwrap();
        let cut = setup.dir.path().join("cut.bundle");
        let step = (bytes.len() / 97).max(1);
        for len in (0..bytes.len())
            .step_by(step)
            .chain([bytes.len() - 1, bytes.len() - 16])
        {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let err = open(&cut, &setup.province, None).unwrap_err();
            assert!(err.is_refused_input(), "cut at {len}: {err}");
        }
    }

    #[test]
    fn a_room_key_other_than_the_pinned_one_is_refused() {
        let setup = setup();
        let written = write(&setup, 1..=3);
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        let err = open(&written.path, &setup.province, Some(&other)).unwrap_err();
        assert!(matches!(err, BundleError::RoomKeyChanged { .. }), "{err}");
        open(
            &written.path,
            &setup.province,
            Some(&setup.room.signing.verifying_key()),
        )
        .unwrap();
    }

    #[test]
    fn events_out_of_order_are_refused_while_writing() {
        let setup = setup();
        let stick = setup.dir.path();
        let mut writer = Writer::create(
            stick,
            &room(),
            Uuid::from_u128(7),
            jiff::Timestamp::UNIX_EPOCH,
            &setup.room,
            &setup.province.to_public(),
        )
        .unwrap();
        writer.event(4, b"a").unwrap();
        assert!(writer.event(4, b"b").is_err());
        drop(writer);
        let left: Vec<_> = std::fs::read_dir(stick)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".partial"))
            .collect();
        assert!(
            left.is_empty(),
            "an abandoned bundle leaves nothing: {left:?}"
        );
    }
}
