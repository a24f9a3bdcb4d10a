//! The age layer around a document, and what its failures mean to a person.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::BundleError;
use crate::document::ReadError;

/// Opens `path` and decrypts it with `identity`, as a stream.
pub(crate) fn decrypt(
    path: &Path,
    identity: &age::x25519::Identity,
) -> Result<Box<dyn Read>, BundleError> {
    let file = File::open(path).map_err(|source| BundleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(256 * 1024, file))
        .map_err(|err| decrypt_error(path, err))?;
    let reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|err| decrypt_error(path, err))?;
    Ok(Box::new(reader))
}

fn decrypt_error(path: &Path, err: age::DecryptError) -> BundleError {
    match err {
        age::DecryptError::NoMatchingKeys => BundleError::OtherRecipient {
            path: path.to_owned(),
        },
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            BundleError::NotABundle {
                path: path.to_owned(),
                detail: format!("not an age file ({err})"),
            }
        }
        age::DecryptError::Io(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            BundleError::Read {
                path: path.to_owned(),
                source,
            }
        }
        err => BundleError::Damaged {
            path: path.to_owned(),
            detail: err.to_string(),
        },
    }
}

/// What a failure to read a document means, for the file at `path` that
/// should have been signed by `signer`.
pub(crate) fn read_error(path: &Path, signer: &str, err: ReadError) -> BundleError {
    match err {
        // Decryption failures surface as I/O errors of the decrypting reader.
        ReadError::Io(source) => BundleError::Damaged {
            path: path.to_owned(),
            detail: source.to_string(),
        },
        ReadError::Format(detail) => BundleError::NotABundle {
            path: path.to_owned(),
            detail,
        },
        ReadError::Signature => BundleError::BadSignature {
            path: path.to_owned(),
            expected: signer.to_owned(),
        },
        ReadError::Item(detail) => BundleError::Invalid(format!("{}: {detail}", path.display())),
    }
}
