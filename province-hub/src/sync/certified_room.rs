//! The room a room's client certificate names, and the check that a room
//! which dialled in is the room its certificate was issued to.
//!
//! # Design
//! - **A URI name, not a host name**: the province names the room in its
//!   certificate with one subject alternative name
//!   `urn:classroom:room:<school_code>:<room_id>` ([`room_uri`]). A URI cannot
//!   be mistaken for the DNS names and addresses the same certificate carries
//!   for the room's own listener, and school codes and room ids (letters,
//!   digits, `-`, `_`) hold no `:`, so the name reads back one way only.
//! - **The certificate decides, `GetStatus` confirms**: the room CA vouches
//!   for the key, and only the certificate says which room the key belongs
//!   to; what a room says of itself in `GetStatus` is taken only when it is
//!   the same room. A certificate that names no room, or two, admits no room:
//!   otherwise one room's key could land its records as another's.
//! - A link without a certificate (plaintext, for loopback tests only) has
//!   nothing to check.

use tokio_rustls::rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::config::{RoomKey, valid_code};

/// What every room name in a certificate starts with.
pub const ROOM_URI_PREFIX: &str = "urn:classroom:room:";

/// Where to look when a certificate and a room disagree.
pub const HINT: &str = "issue the room's client certificate with the subject alternative name urn:classroom:room:<school_code>:<room_id> of its [room] section, from the room CA";

/// The name the province gives `room` in its certificate.
pub fn room_uri(room: &RoomKey) -> String {
    format!("{ROOM_URI_PREFIX}{}:{}", room.school_code, room.room_id)
}

/// Why a room's link is not taken as the room it says it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the room's certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("the room's certificate names no room (no {ROOM_URI_PREFIX} name)")]
    Unnamed,
    #[error("the room's certificate has a malformed room name {0:?}")]
    Malformed(String),
    #[error("the room's certificate names more than one room: {0:?}")]
    Ambiguous(Vec<String>),
    #[error("the room's certificate names {certified} but its GetStatus says {claimed}")]
    Mismatch {
        certified: RoomKey,
        claimed: RoomKey,
    },
}

impl IdentityError {
    /// The room the certificate names, when it names one.
    pub fn certified(&self) -> Option<&RoomKey> {
        match self {
            IdentityError::Mismatch { certified, .. } => Some(certified),
            _ => None,
        }
    }
}

/// The room `certificate` (DER) names in its `urn:classroom:room:` URI.
pub fn certified_room(certificate: &CertificateDer<'_>) -> Result<RoomKey, IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|err| IdentityError::Unreadable(err.to_string()))?;
    let names = parsed
        .subject_alternative_name()
        .map_err(|err| IdentityError::Unreadable(err.to_string()))?;
    let uris: Vec<&str> = names
        .iter()
        .flat_map(|names| names.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(ROOM_URI_PREFIX) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(IdentityError::Unnamed),
        [uri] => parse_room_uri(uri).ok_or_else(|| IdentityError::Malformed(uri.to_string())),
        many => Err(IdentityError::Ambiguous(
            many.iter().map(|uri| uri.to_string()).collect(),
        )),
    }
}

/// `urn:classroom:room:<school_code>:<room_id>` read back, or `None`.
fn parse_room_uri(uri: &str) -> Option<RoomKey> {
    let (school_code, room_id) = uri.strip_prefix(ROOM_URI_PREFIX)?.split_once(':')?;
    (valid_code(school_code) && valid_code(room_id)).then(|| RoomKey {
        school_code: school_code.to_owned(),
        room_id: room_id.to_owned(),
    })
}

/// Confirms that the room whose link presented `certificate` is `claimed`,
/// the room its `GetStatus` names. Without a certificate (plaintext) there is
/// nothing to check.
pub fn confirm(
    certificate: Option<&CertificateDer<'_>>,
    claimed: &RoomKey,
) -> Result<(), IdentityError> {
    let Some(certificate) = certificate else {
        return Ok(());
    };
    let certified = certified_room(certificate)?;
    if certified == *claimed {
        Ok(())
    } else {
        Err(IdentityError::Mismatch {
            certified,
            claimed: claimed.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn room(school_code: &str, room_id: &str) -> RoomKey {
        RoomKey {
            school_code: school_code.into(),
            room_id: room_id.into(),
        }
    }

    /// A self-signed certificate with `uris` and a DNS name and an address beside them.
    fn certificate(uris: &[&str]) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["p301.local".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("10.0.0.7".parse().unwrap()));
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.to_string().try_into().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_room_uri_names_the_room_among_other_names() {
        let other = "https://example.edu.vn/room";
        let der = certificate(&[other, "urn:classroom:room:LC-THCS-01:P301"]);
        assert_eq!(certified_room(&der), Ok(room("LC-THCS-01", "P301")));
        assert_eq!(
            room_uri(&room("LC-THCS-01", "P301")),
            "urn:classroom:room:LC-THCS-01:P301"
        );
    }

    #[test]
    fn a_certificate_without_a_room_uri_names_no_room() {
        let der = certificate(&["urn:classroom:school:LC-THCS-01"]);
        assert_eq!(certified_room(&der), Err(IdentityError::Unnamed));
    }

    #[test]
    fn a_room_uri_that_is_not_two_codes_is_malformed() {
        for uri in [
            "urn:classroom:room:LC-THCS-01",
            "urn:classroom:room:LC-THCS-01:P301:extra",
            "urn:classroom:room::P301",
            "urn:classroom:room:LC THCS:P301",
        ] {
            assert_eq!(
                certified_room(&certificate(&[uri])),
                Err(IdentityError::Malformed(uri.to_owned())),
                "{uri}"
            );
        }
    }

    #[test]
    fn a_certificate_naming_two_rooms_is_refused() {
        let uris = [
            "urn:classroom:room:LC-01:P301",
            "urn:classroom:room:LC-01:P302",
        ];
        assert_eq!(
            certified_room(&certificate(&uris)),
            Err(IdentityError::Ambiguous(
                uris.iter().map(|uri| uri.to_string()).collect()
            ))
        );
    }

    #[test]
    fn a_status_naming_another_room_is_a_mismatch_with_both_names() {
        let der = certificate(&["urn:classroom:room:LC-01:P301"]);
        assert_eq!(confirm(Some(&der), &room("LC-01", "P301")), Ok(()));
        let error = confirm(Some(&der), &room("LC-01", "P302")).unwrap_err();
        assert_eq!(error.certified(), Some(&room("LC-01", "P301")));
        let message = error.to_string();
        assert!(
            message.contains("LC-01/P301") && message.contains("LC-01/P302"),
            "{message}"
        );
        assert_eq!(confirm(None, &room("LC-01", "P302")), Ok(()));
    }
}
