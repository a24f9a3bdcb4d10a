//! The school-local certificate authority: making it (`tls init-ca`) and
//! issuing a room's certificate with it (`tls issue`).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use jiff::{Span, Timestamp, civil::Date, tz::TimeZone};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType, SerialNumber,
};

/// The CA's certificate, the file IT staff install on every device.
pub const CA_CERTIFICATE: &str = "ca.pem";
/// The CA's private key; it never leaves the machine it was made on.
pub const CA_KEY: &str = "ca-key.pem";
/// The room's certificate, for `http.tls_cert`.
pub const ROOM_CERTIFICATE: &str = "room.pem";
/// The room's private key, for `http.tls_key`.
pub const ROOM_KEY: &str = "room-key.pem";

/// How long the CA is valid, in years: longer than the devices that trust it last.
const CA_YEARS: i64 = 20;
/// How long a room's certificate is valid, in days: the most browsers accept from any CA.
const ROOM_DAYS: i64 = 398;

/// Why a CA or a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: cannot read or write: {source}\n  hint: check the path and that this user may write there", path.display())]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: a CA is already there\n  hint: every device that trusts it would have to trust a new one; to issue with it, run `tls issue --ca {}`", dir.display(), dir.display())]
    CaExists { dir: PathBuf },
    #[error("{}: no CA there (missing {})\n  hint: make one with `firmware-agent tls init-ca --dir DIR`, or name the directory it was made in", dir.display(), missing.display())]
    NoCa { dir: PathBuf, missing: PathBuf },
    #[error("{}: the CA's certificate or key is unusable ({source})\n  hint: use the files `tls init-ca` wrote, unchanged", dir.display())]
    UnusableCa { dir: PathBuf, source: rcgen::Error },
    #[error(
        "--name {name}: not a name the room's CA may vouch for\n  hint: use the room's mDNS name, SCHOOL-ROOM.local (letters, digits and `-`, ending in `.local`)"
    )]
    Name { name: String },
    #[error(
        "--ip {address}: not a room-network address the room's CA may vouch for\n  hint: use the agent's address on the school's LAN (10.x, 172.16-31.x, 192.168.x, fd00::/8) or loopback"
    )]
    Address { address: IpAddr },
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl CaError {
    /// Whether what was typed is at fault (exit 2), not the machine (exit 1).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            CaError::CaExists { .. }
                | CaError::NoCa { .. }
                | CaError::UnusableCa { .. }
                | CaError::Name { .. }
                | CaError::Address { .. }
        )
    }
}

/// A certificate written to disk, and the day it expires (UTC).
#[derive(Debug)]
pub struct Written {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub expires: Date,
}

/// The networks a room's address may be in: private, loopback and link-local.
fn room_networks() -> Vec<CidrSubnet> {
    vec![
        CidrSubnet::from_v4_prefix([10, 0, 0, 0], 8),
        CidrSubnet::from_v4_prefix([172, 16, 0, 0], 12),
        CidrSubnet::from_v4_prefix([192, 168, 0, 0], 16),
        CidrSubnet::from_v4_prefix([127, 0, 0, 0], 8),
        CidrSubnet::from_v4_prefix([169, 254, 0, 0], 16),
        CidrSubnet::from_addr_prefix(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 128),
        CidrSubnet::from_addr_prefix(IpAddr::from([0xfc00u16, 0, 0, 0, 0, 0, 0, 0]), 7),
        CidrSubnet::from_addr_prefix(IpAddr::from([0xfe80u16, 0, 0, 0, 0, 0, 0, 0]), 10),
    ]
}

/// Whether `address` is in one of [`room_networks`].
fn on_room_network(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// Whether the CA's name constraints permit `name`.
fn is_room_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .to_ascii_lowercase()
            .strip_suffix(".local")
            .is_some_and(|host| host.split('.').all(label_ok))
}

/// A random serial number, as RFC 5280 asks (positive, at most 20 bytes).
fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// Sets `params` valid from yesterday (a device whose clock is a few hours
/// behind still accepts a new certificate) until `span` from today; returns
/// the day it expires.
fn set_validity(params: &mut CertificateParams, now: Timestamp, span: Span) -> Date {
    let today = now.to_zoned(TimeZone::UTC).date();
    let start = today.yesterday().unwrap_or(today);
    let end = today.saturating_add(span);
    let asn1 =
        |date: Date| rcgen::date_time_ymd(date.year().into(), date.month() as u8, date.day() as u8);
    params.not_before = asn1(start);
    params.not_after = asn1(end);
    end
}

/// Writes `bytes` to `path`, readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn files(path: &Path) -> impl FnOnce(std::io::Error) -> CaError {
    let path = path.to_owned();
    move |source| CaError::Files { path, source }
}

/// Makes a CA in `dir` (created 0700): its certificate and its key (0600).
/// Refuses to replace a CA already there.
pub fn init_ca(dir: &Path, now: Timestamp) -> Result<Written, CaError> {
    let certificate_path = dir.join(CA_CERTIFICATE);
    let key_path = dir.join(CA_KEY);
    if certificate_path.exists() || key_path.exists() {
        return Err(CaError::CaExists {
            dir: dir.to_owned(),
        });
    }
    crate::store::ensure_private_dir(dir).map_err(files(dir))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let id: [u8; 4] = rand::random();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Lớp học thông minh CA {}", hex::encode(id)),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: ["local", "localhost"]
            .into_iter()
            .map(|name| GeneralSubtree::DnsName(name.to_owned()))
            .chain(room_networks().into_iter().map(GeneralSubtree::IpAddress))
            .collect(),
        excluded_subtrees: Vec::new(),
    });
    params.serial_number = Some(serial());
    let expires = set_validity(&mut params, now, Span::new().years(CA_YEARS));
    let certificate = params.self_signed(&key)?;
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(files(&key_path))?;
    fs::write(&certificate_path, certificate.pem()).map_err(files(&certificate_path))?;
    Ok(Written {
        certificate: certificate_path,
        key: key_path,
        expires,
    })
}

/// Issues a certificate for `name` (the room's mDNS name), `addresses` and
/// `localhost` with the CA in `ca_dir`, written to `out` (created 0700) as
/// [`ROOM_CERTIFICATE`] and [`ROOM_KEY`] (0600), replacing any there.
pub fn issue(
    ca_dir: &Path,
    name: &str,
    addresses: &[IpAddr],
    out: &Path,
    now: Timestamp,
) -> Result<Written, CaError> {
    if !is_room_name(name) {
        return Err(CaError::Name {
            name: name.to_owned(),
        });
    }
    if let Some(&address) = addresses.iter().find(|a| !on_room_network(**a)) {
        return Err(CaError::Address { address });
    }
    let read = |file: &str| {
        let path = ca_dir.join(file);
        fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CaError::NoCa {
                dir: ca_dir.to_owned(),
                missing: path.clone(),
            },
            _ => CaError::Files { path, source },
        })
    };
    let (ca_certificate, ca_key) = (read(CA_CERTIFICATE)?, read(CA_KEY)?);
    let unusable = |source| CaError::UnusableCa {
        dir: ca_dir.to_owned(),
        source,
    };
    let ca_key = KeyPair::from_pem(&ca_key).map_err(unusable)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_certificate, ca_key).map_err(unusable)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![name.to_owned(), "localhost".to_owned()])?;
    params
        .subject_alt_names
        .extend(addresses.iter().map(|address| SanType::IpAddress(*address)));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    let expires = set_validity(&mut params, now, Span::new().days(ROOM_DAYS));
    let certificate = params.signed_by(&key, &issuer)?;

    crate::store::ensure_private_dir(out).map_err(files(out))?;
    let (certificate_path, key_path) = (out.join(ROOM_CERTIFICATE), out.join(ROOM_KEY));
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(files(&key_path))?;
    fs::write(&certificate_path, certificate.pem()).map_err(files(&certificate_path))?;
    Ok(Written {
        certificate: certificate_path,
        key: key_path,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_room_certificate_issued_by_a_new_ca_is_served_with_its_key_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-12-05T03:00:00Z".parse().unwrap();
        let (ca_dir, room_dir) = (dir.path().join("ca"), dir.path().join("room"));
        init_ca(&ca_dir, now).unwrap();
        let issued = issue(
            &ca_dir,
            "79001-A1.local",
            &["192.168.1.10".parse().unwrap()],
            &room_dir,
            now,
        )
        .unwrap();
        assert_eq!(issued.expires, "2028-01-07".parse().unwrap(), "398 days");
        for private in [ca_dir.join(CA_KEY), room_dir.join(ROOM_KEY)] {
            assert_eq!(mode(&private), 0o600, "{}", private.display());
        }
        assert_eq!((mode(&ca_dir), mode(&room_dir)), (0o700, 0o700));
        let served = crate::tls::room::load(&issued.certificate, &issued.key).unwrap();
        assert_eq!(served.expires, "2028-01-07T00:00:00Z".parse().unwrap());

        let other = dir.path().join("other");
        issue(&ca_dir, "79001-A2.local", &[], &other, now).unwrap();
        let mismatch =
            crate::tls::room::load(&issued.certificate, &other.join(ROOM_KEY)).unwrap_err();
        assert_eq!(mismatch.key(), "http.tls_key", "{mismatch}");
    }

    #[test]
    fn a_ca_is_never_replaced_and_vouches_only_for_the_room_network() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let ca_dir = dir.path().join("ca");
        init_ca(&ca_dir, now).unwrap();
        let before = fs::read(ca_dir.join(CA_KEY)).unwrap();
        assert!(matches!(
            init_ca(&ca_dir, now),
            Err(CaError::CaExists { .. })
        ));
        assert_eq!(fs::read(ca_dir.join(CA_KEY)).unwrap(), before);

        let out = dir.path().join("room");
        let refused = |name: &str, address: &str| {
            issue(&ca_dir, name, &[address.parse().unwrap()], &out, now).unwrap_err()
        };
        assert!(matches!(
            refused("bank.com", "10.0.0.5"),
            CaError::Name { .. }
        ));
        assert!(matches!(
            refused("a.local", "8.8.8.8"),
            CaError::Address { .. }
        ));
        assert!(matches!(
            refused("-a.local", "10.0.0.5"),
            CaError::Name { .. }
        ));
        let missing = issue(&dir.path().join("nowhere"), "a.local", &[], &out, now).unwrap_err();
        assert!(matches!(missing, CaError::NoCa { .. }) && missing.is_input());
        assert!(!out.exists(), "nothing is written for a refused request");
    }
}
