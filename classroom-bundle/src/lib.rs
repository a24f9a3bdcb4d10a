//! Bundles that carry a classroom's records to the province, and the
//! province's answers back, on a USB stick: for the rooms no network reaches.
//!
//! Three kinds of file travel on the stick, each a signed *document*
//! ([`document`]):
//! - a **records bundle** ([`records`]), room to province: the room (school
//!   code, room id), its outbox identity, the events of a seq range as the
//!   agent's protobuf `Event` messages (opaque bytes here, so this crate needs
//!   no proto), signed with the room's Ed25519 key and encrypted with `age` to
//!   the province's X25519 recipient;
//! - an **acknowledgement** ([`ack`]), province to room: room, outbox identity
//!   and the seq up to which the province stored every event, signed with the
//!   province's Ed25519 key. It holds nothing personal and is not encrypted;
//! - an **office bundle** ([`office`]), province to room: a roster push (with
//!   its timetable) or a content file, signed by the province and encrypted to
//!   the room's own `age` recipient, which the room's records bundles carry.
//!
//! # Design
//! - **Nothing readable to whoever finds the stick.** Records and office
//!   bundles are `age` files (X25519, ChaCha20-Poly1305 STREAM): only the
//!   holder of the recipient's identity reads them, and a bundle encrypted to
//!   another province's key is refused with [`BundleError::OtherRecipient`].
//! - **Whole or refused.** age's STREAM marks and authenticates its last chunk,
//!   so a cut ciphertext fails to decrypt; inside, an Ed25519 signature over
//!   everything before it (Ed25519ph, SHA-512, with a context naming the
//!   document's kind, so a signature on one kind never passes for another)
//!   ends the document, and nothing may follow it. A document missing its end,
//!   its signature or any byte is refused ([`BundleError::Damaged`]); a reader
//!   acts on nothing before the signature checked.
//! - **Written atomically.** A bundle is written to a temporary file in the
//!   target directory (`.NAME.partial`), fsynced, renamed to its name, and the
//!   directory fsynced ([`atomic`]). A stick pulled mid-write leaves at most a
//!   `.partial` file, never a file with a bundle's name; a full stick
//!   ([`BundleError::StickFull`]) removes the partial file and leaves the room's
//!   records where they were.
//! - **Keys.** The room makes its keys ([`keys::RoomKeys`]) on first need: an
//!   Ed25519 signing key and an age identity, in one file of mode 0600 in its
//!   data directory. Its records bundles carry both public halves; the province
//!   pins the signing key per room on first sight (or knows it ahead), so a
//!   bundle signed by another key for a known room is refused
//!   ([`BundleError::RoomKeyChanged`], [`pins::Pins`]). The province has an age
//!   identity (whose recipient each room's config names) and an Ed25519 signing
//!   key (whose verifying key each room's config names).
//! - **File names say what a file is** (school, room, outbox identity, seq
//!   range or acked seq), but the signed header is what counts: a renamed file
//!   is read for what it is.
//!
//! # What the hub must do on import
//! 1. Open the bundle with the province's identity ([`records::open`]) and
//!    compare the room's signing key it carries with the one pinned for that
//!    school and room, pinning it on first sight; refuse a mismatch.
//! 2. Store every event by its id (the `Event.id` inside the bytes), ignoring
//!    ids it already holds: the same events arrive again in the next bundle
//!    until the room has the acknowledgement, and by gRPC if the room is ever
//!    reached. Events, and the room's cursor, in one transaction.
//! 3. Write an acknowledgement ([`ack::write`]) naming the outbox identity and
//!    the highest seq up to which it holds every event of that outbox, and
//!    carry it back. The room moves its acknowledged cursor exactly as a gRPC
//!    Ack does; an acknowledgement beyond what the room handed out, for another
//!    room or for another outbox identity is refused there.

pub mod ack;
pub mod atomic;
pub mod document;
mod envelope;
pub mod keys;
pub mod office;
pub mod pins;
pub mod records;

use std::path::PathBuf;

/// Everything that can go wrong with a bundle, each naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot write: {source}\n  hint: nothing was lost: the room keeps every record until the province acknowledges it; check the stick and export again"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{dir}: the stick is full ({source}); the unfinished bundle was removed and nothing was lost: the room keeps every record until the province acknowledges it\n  hint: free space on the stick (or use a larger one) and export again"
    )]
    StickFull {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: this bundle is not for this key: it was encrypted to another recipient (another province's key, or another room's)\n  hint: check that the room's hub.province_recipient is this province's age recipient, or open it with the right identity"
    )]
    OtherRecipient { path: PathBuf },
    #[error("{path}: not a classroom bundle: {detail}")]
    NotABundle { path: PathBuf, detail: String },
    #[error(
        "{path}: truncated or damaged ({detail}); nothing in it was used\n  hint: a stick pulled out while writing leaves such a file: export again to write a whole one"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path}: the signature does not match: the file was changed after it was signed, or signed by another key than {expected}; nothing in it was used"
    )]
    BadSignature { path: PathBuf, expected: String },
    #[error(
        "{path}: signed by room key {found} but {school_code}/{room_id} is pinned to {pinned}; nothing in it was used\n  hint: if the room's machine was really replaced, remove its pin after checking with the school"
    )]
    RoomKeyChanged {
        path: PathBuf,
        school_code: String,
        room_id: String,
        found: String,
        pinned: String,
    },
    #[error("{path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("{0}")]
    Invalid(String),
}

impl BundleError {
    /// Whether the fault is in the file offered (refused input), not in reading or writing it.
    pub fn is_refused_input(&self) -> bool {
        matches!(
            self,
            BundleError::OtherRecipient { .. }
                | BundleError::NotABundle { .. }
                | BundleError::Damaged { .. }
                | BundleError::BadSignature { .. }
                | BundleError::RoomKeyChanged { .. }
                | BundleError::Invalid(_)
        )
    }
}

/// A room as the province names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Room {
    pub school_code: String,
    pub room_id: String,
}

impl Room {
    /// `SCHOOL.ROOM`, the start of every file name for this room (school codes
    /// and room ids hold no dot).
    pub fn file_prefix(&self) -> String {
        format!("{}.{}", self.school_code, self.room_id)
    }
}
