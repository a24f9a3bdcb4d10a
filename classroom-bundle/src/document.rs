//! The signed document every file on the stick is, inside its encryption.
//!
//! ```text
//! "classroom-bundle/1 KIND\n"                 KIND: records, ack or office
//! u32 BE length, header (JSON)
//! items, each: 0x01, u64 BE number, u32 BE length, bytes
//!                (number: the event's seq in a records bundle, else its position)
//! 0x00, u32 BE length, summary (JSON)         what only the end knows (seq range, count)
//! 64 bytes: Ed25519ph signature over SHA-512 of every byte above,
//!           context "classroom-bundle/1 KIND"
//! end of file
//! ```
//!
//! # Design
//! Items are streamed: the writer hashes as it writes, so a week's records
//! are never held whole, and the summary follows them because the range is
//! known only at the end. The reader hashes as it reads and hands each item to
//! its caller, who must keep what it read aside until [`read`] returned Ok:
//! the signature, last, is what makes the items trustworthy. Lengths are
//! bounded before anything is allocated.

use std::io::{self, Read, Write};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

/// The first bytes of every document, before its kind.
pub const MAGIC: &str = "classroom-bundle/1";
/// The largest header or summary accepted.
const MAX_META_BYTES: u32 = 64 * 1024;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Records,
    Ack,
    Office,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Records => "records",
            Kind::Ack => "ack",
            Kind::Office => "office",
        }
    }

    fn prelude(self) -> String {
        format!("{MAGIC} {}\n", self.name())
    }
}

/// Writes one document to `out`, hashing every byte for the signature.
pub struct Writer<W: Write> {
    out: W,
    digest: Sha512,
    kind: Kind,
}

impl<W: Write> Writer<W> {
    /// Writes the prelude and the header.
    pub fn start(out: W, kind: Kind, header: &[u8]) -> io::Result<Self> {
        let mut writer = Writer {
            out,
            digest: Sha512::new(),
            kind,
        };
        writer.put(kind.prelude().as_bytes())?;
        writer.put(&meta_len(header)?.to_be_bytes())?;
        writer.put(header)?;
        Ok(writer)
    }

    /// Writes one item.
    pub fn item(&mut self, number: u64, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an item over 4 GiB"))?;
        self.put(&[1])?;
        self.put(&number.to_be_bytes())?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }

    /// Writes one item of `len` bytes read from `source`, without holding it whole.
    pub fn item_from(&mut self, number: u64, len: u32, source: &mut dyn Read) -> io::Result<()> {
        self.put(&[1])?;
        self.put(&number.to_be_bytes())?;
        self.put(&len.to_be_bytes())?;
        let mut left = u64::from(len);
        let mut buffer = vec![0; 64 * 1024];
        while left > 0 {
            let want = buffer.len().min(left as usize);
            let got = source.read(&mut buffer[..want])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source ended before its announced size",
                ));
            }
            self.put(&buffer[..got])?;
            left -= got as u64;
        }
        Ok(())
    }

    /// Writes the summary and the signature; returns the output.
    pub fn finish(mut self, summary: &[u8], key: &SigningKey) -> io::Result<W> {
        self.put(&[0])?;
        self.put(&meta_len(summary)?.to_be_bytes())?;
        self.put(summary)?;
        let signature = key
            .sign_prehashed(self.digest, Some(self.kind.prelude().as_bytes()))
            .map_err(io::Error::other)?;
        self.out.write_all(&signature.to_bytes())?;
        Ok(self.out)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.digest.update(bytes);
        self.out.write_all(bytes)
    }
}

fn meta_len(bytes: &[u8]) -> io::Result<u32> {
    u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= MAX_META_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a header over 64 KiB"))
}

/// Why a document could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Reading failed (for an encrypted document: decryption failed, as it
    /// does on a truncated or altered file).
    Io(io::Error),
    /// The bytes are not a document of this kind.
    Format(String),
    /// The document is whole but its signature does not verify.
    Signature,
    /// The caller refused an item.
    Item(String),
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        ReadError::Io(err)
    }
}

/// A document read whole: its header and summary, the signature checked.
#[derive(Debug)]
pub struct Document {
    pub header: Vec<u8>,
    pub summary: Vec<u8>,
}

/// One item as the reader offers it: its number, length and bytes to read (all of them, or none).
pub struct Item<'a> {
    pub number: u64,
    pub len: u32,
    pub bytes: &'a mut dyn Read,
}

/// Reads a document of `kind` from `source`, handing each item to `on_item`,
/// and checks the signature with `key`, or with the key `key_of(header)` names.
/// Items longer than `max_item` are refused before they are read.
pub fn read(
    source: &mut dyn Read,
    kind: Kind,
    max_item: u32,
    key_of: &mut dyn FnMut(&[u8]) -> Result<VerifyingKey, ReadError>,
    on_item: &mut dyn FnMut(Item<'_>) -> Result<(), ReadError>,
) -> Result<Document, ReadError> {
    let mut reader = Hashing {
        inner: source,
        digest: Sha512::new(),
    };
    let prelude = kind.prelude();
    let mut found = vec![0; prelude.len()];
    read_exact(&mut reader, &mut found, "the start")?;
    if found != prelude.as_bytes() {
        let text = String::from_utf8_lossy(&found);
        return Err(ReadError::Format(match text.strip_prefix(MAGIC) {
            Some(other) => format!(
                "a document of kind `{}`, not `{}`",
                other.split_whitespace().next().unwrap_or("?"),
                kind.name()
            ),
            None => format!("it does not start with `{}`", prelude.trim_end()),
        }));
    }
    let header = read_meta(&mut reader, "header")?;
    let key = key_of(&header)?;
    let mut index = 0u64;
    loop {
        let mut tag = [0u8];
        read_exact(&mut reader, &mut tag, "an item")?;
        match tag[0] {
            0 => break,
            1 => {}
            other => {
                return Err(ReadError::Format(format!(
                    "byte {other:#04x} where item {index} or the end was expected"
                )));
            }
        }
        let mut number = [0u8; 8];
        let mut len = [0u8; 4];
        read_exact(&mut reader, &mut number, "an item's number")?;
        read_exact(&mut reader, &mut len, "an item's length")?;
        let len = u32::from_be_bytes(len);
        if len > max_item {
            return Err(ReadError::Format(format!(
                "item {index} claims {len} bytes, more than the {max_item} allowed"
            )));
        }
        let mut bytes = (&mut reader).take(u64::from(len));
        on_item(Item {
            number: u64::from_be_bytes(number),
            len,
            bytes: &mut bytes,
        })?;
        // Whatever the caller left unread is still part of the signed bytes.
        io::copy(&mut bytes, &mut io::sink())?;
        if bytes.limit() > 0 {
            return Err(ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("item {index} is cut short"),
            )));
        }
        index += 1;
    }
    let summary = read_meta(&mut reader, "summary")?;
    let digest = reader.digest;
    let mut signature = [0u8; 64];
    read_exact(reader.inner, &mut signature, "the signature")?;
    let mut rest = [0u8; 1];
    if reader.inner.read(&mut rest)? != 0 {
        return Err(ReadError::Format(
            "bytes follow the signature: nothing may".to_owned(),
        ));
    }
    key.verify_prehashed_strict(
        digest,
        Some(prelude.as_bytes()),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| ReadError::Signature)?;
    Ok(Document { header, summary })
}

fn read_meta(reader: &mut Hashing<'_>, what: &str) -> Result<Vec<u8>, ReadError> {
    let mut len = [0u8; 4];
    read_exact(reader, &mut len, what)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_META_BYTES {
        return Err(ReadError::Format(format!(
            "the {what} claims {len} bytes, more than {MAX_META_BYTES}"
        )));
    }
    let mut bytes = vec![0; len as usize];
    read_exact(reader, &mut bytes, what)?;
    Ok(bytes)
}

fn read_exact(reader: &mut dyn Read, buffer: &mut [u8], what: &str) -> Result<(), ReadError> {
    reader.read_exact(buffer).map_err(|err| {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the document ends before {what}"),
            ))
        } else {
            ReadError::Io(err)
        }
    })
}

/// A reader that hashes what passes through it.
struct Hashing<'a> {
    inner: &'a mut dyn Read,
    digest: Sha512,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let got = self.inner.read(buffer)?;
        self.digest.update(&buffer[..got]);
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn document(kind: Kind, items: &[&[u8]]) -> Vec<u8> {
        let mut writer = Writer::start(Vec::new(), kind, b"{\"h\":1}").unwrap();
        for (number, item) in items.iter().enumerate() {
            writer.item(number as u64 + 10, item).unwrap();
        }
        writer.finish(b"{\"s\":2}", &key(7)).unwrap()
    }

    /// Each item's number and bytes.
    type Items = Vec<(u64, Vec<u8>)>;

    fn read_all(bytes: &[u8], kind: Kind, signer: u8) -> Result<(Document, Items), ReadError> {
        let mut items = Vec::new();
        let document = read(
            &mut &bytes[..],
            kind,
            1024,
            &mut |_| Ok(key(signer).verifying_key()),
            &mut |item| {
                let mut bytes = Vec::new();
                item.bytes.read_to_end(&mut bytes)?;
                items.push((item.number, bytes));
                Ok(())
            },
        )?;
        Ok((document, items))
    }

    #[test]
    fn a_document_reads_back_with_its_items_in_order() {
        let bytes = document(Kind::Records, &[b"one", b"", b"three"]);
        let (document, items) = read_all(&bytes, Kind::Records, 7).unwrap();
        assert_eq!(document.header, b"{\"h\":1}");
        assert_eq!(document.summary, b"{\"s\":2}");
        assert_eq!(
            items,
            vec![
                (10, b"one".to_vec()),
                (11, Vec::new()),
                (12, b"three".to_vec())
            ]
        );
    }

    #[test]
    fn every_cut_every_changed_byte_and_any_extra_byte_is_refused() {
        let bytes = document(Kind::Records, &[b"one", b"two"]);
        for cut in 0..bytes.len() {
            assert!(
                read_all(&bytes[..cut], Kind::Records, 7).is_err(),
                "cut at {cut} of {}",
                bytes.len()
            );
        }
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x20;
            assert!(read_all(&changed, Kind::Records, 7).is_err(), "byte {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            read_all(&longer, Kind::Records, 7),
            Err(ReadError::Format(_))
        ));
    }

    #[test]
    fn another_key_or_another_kind_is_refused() {
        let bytes = document(Kind::Ack, &[]);
        assert!(matches!(
            read_all(&bytes, Kind::Ack, 8),
            Err(ReadError::Signature)
        ));
        match read_all(&bytes, Kind::Office, 7) {
            Err(ReadError::Format(message)) => {
                assert!(message.contains("kind `ack`, not `office`"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_item_longer_than_allowed_is_refused_before_it_is_read() {
        let big = vec![0u8; 2048];
        let bytes = document(Kind::Records, &[&big]);
        match read_all(&bytes, Kind::Records, 7) {
            Err(ReadError::Format(message)) => assert!(message.contains("2048 bytes"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
