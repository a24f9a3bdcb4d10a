//! A certificate from the province's LAN CA, pushed by the hub
//! (`PutCertificate`): what it must name, the checks it must pass before it is
//! served, and the file it is kept in.
//!
//! # Design
//! - **Checked whole before anything changes**: the key is the
//!   certificate's, the certificate names the room's mDNS name and its LAN
//!   addresses ([`Wanted`]), it has not expired on the agent's clock, and it
//!   chains to `http.province_lan_ca` when the room is configured with one. A
//!   refusal names the field and what is wrong; the file and the served
//!   certificate stay as they were.
//! - **One file** (`<data_dir>/tls/province-room.pem`, 0600 in a 0700
//!   directory) holds the chain and the key, written to a temporary file,
//!   synced and renamed over the old one, so a power cut leaves either the
//!   old pair or the new one, never a certificate beside another's key.
//! - **Precedence**: a kept push is served in place of `http.tls_cert` from
//!   the next start too; a school that leaves the province's CA deletes the
//!   file.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, RootCertStore};
use x509_parser::extensions::GeneralName;

use super::served::{Served, Source, Unservable};
use crate::config::Config;

/// The file a pushed certificate and its key are kept in, under `<data_dir>/tls/`.
const KEPT_FILE: &str = "province-room.pem";

/// Where a pushed certificate is kept.
pub fn kept_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join(KEPT_FILE)
}

/// The names a certificate for this room must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `SCHOOL-ROOM.local`, the name mDNS announces.
    pub mdns: String,
    /// The addresses browsers reach the HTTPS listener at.
    pub addresses: Vec<IpAddr>,
}

impl Wanted {
    /// The room's mDNS name, and the address `http.tls_listen` is bound to,
    /// or the machine's LAN address when it listens on every interface.
    pub fn of(config: &Config) -> Wanted {
        let listen = config.http.tls_listen.ip();
        let addresses = if listen.is_unspecified() {
            crate::tablets::discovery::lan_address()
                .into_iter()
                .collect()
        } else {
            vec![listen]
        };
        Wanted {
            mdns: format!("{}-{}.local", config.room.school_code, config.room.room_id),
            addresses,
        }
    }

    /// As `AgentStatus.lan_certificate_names` carries them: the mDNS name first.
    pub fn as_text(&self) -> Vec<String> {
        std::iter::once(self.mdns.clone())
            .chain(self.addresses.iter().map(IpAddr::to_string))
            .collect()
    }
}

/// Why a pushed certificate is refused; each names the request's field.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("chain_pem: {0}")]
    Chain(String),
    #[error("key_pem: {0}")]
    Key(String),
    #[error(
        "key_pem: not the private key of the certificate in chain_pem; send the key issued with it"
    )]
    Mismatch,
    #[error(
        "chain_pem: the certificate does not name {missing} (it names {named}); issue it for {wanted}"
    )]
    MissingName {
        missing: String,
        named: String,
        wanted: String,
    },
    #[error(
        "chain_pem: the certificate expired at {expired} (the room's clock reads {now}); issue a new one"
    )]
    Expired { expired: Timestamp, now: Timestamp },
    #[error(
        "chain_pem: the certificate does not chain to the province's LAN CA (http.province_lan_ca): {0}"
    )]
    OtherCa(String),
}

/// Checks a pushed chain and key for the room that wants `wanted`, at `now`
/// on the agent's clock, against `province_ca` when one is configured.
pub fn check(
    chain_pem: &[u8],
    key_pem: &[u8],
    wanted: &Wanted,
    now: Timestamp,
    province_ca: Option<&RootCertStore>,
) -> Result<Served, Refused> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| Refused::Chain(format!("not valid PEM: {err:?}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|err| Refused::Key(format!("holds no private key in PEM ({err:?})")))?;
    let served =
        Served::new(chain.clone(), key, Source::ProvincePush).map_err(|err| match err {
            Unservable::Mismatch => Refused::Mismatch,
            Unservable::Key(err) => Refused::Key(err.to_string()),
            other => Refused::Chain(other.to_string()),
        })?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|err| Refused::Chain(format!("not a certificate: {err}")))?;
    let (dns, ips) = subject_alt_names(&leaf);
    let named = dns
        .iter()
        .cloned()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect::<Vec<_>>()
        .join(", ");
    let missing = std::iter::once(wanted.mdns.clone())
        .filter(|mdns| !dns.iter().any(|name| name.eq_ignore_ascii_case(mdns)))
        .chain(
            wanted
                .addresses
                .iter()
                .filter(|address| !ips.contains(address))
                .map(IpAddr::to_string),
        )
        .collect::<Vec<_>>();
    if !missing.is_empty() {
        return Err(Refused::MissingName {
            missing: missing.join(", "),
            named,
            wanted: wanted.as_text().join(", "),
        });
    }
    if served.expires <= now {
        return Err(Refused::Expired {
            expired: served.expires,
            now,
        });
    }
    if let Some(roots) = province_ca {
        chains_to(&chain, roots, &wanted.mdns, now).map_err(Refused::OtherCa)?;
    }
    Ok(served)
}

/// The DNS names and IP addresses of a certificate's subjectAltName.
fn subject_alt_names(
    leaf: &x509_parser::certificate::X509Certificate<'_>,
) -> (Vec<String>, Vec<IpAddr>) {
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(extension)) = leaf.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(name) => dns.push((*name).to_owned()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ips.push(IpAddr::from(
                        <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    16 => ips.push(IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    (dns, ips)
}

/// Whether `chain` is one a browser trusting `roots` accepts for `name` at `now`.
fn chains_to(
    chain: &[CertificateDer<'static>],
    roots: &RootCertStore,
    name: &str,
    now: Timestamp,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider)
        .build()
        .map_err(|err| err.to_string())?;
    let name = ServerName::try_from(name.to_owned()).map_err(|err| err.to_string())?;
    let seconds = u64::try_from(now.as_second()).unwrap_or(0);
    let at = UnixTime::since_unix_epoch(Duration::from_secs(seconds));
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// Reads the province's LAN CA certificate(s) from `path`.
pub fn read_province_ca(path: &Path) -> Result<RootCertStore, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect())
        .map_err(|err| format!("{}: not readable PEM ({err:?})", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|err| format!("{}: not a CA certificate ({err})", path.display()))?;
    }
    Ok(roots)
}

/// Keeps the pushed chain and key in one file, replacing the one kept before
/// only once the new one is wholly on disk.
pub fn keep(data_dir: &Path, chain_pem: &str, key_pem: &str) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("tls");
    crate::store::ensure_private_dir(&dir)?;
    let path = dir.join(KEPT_FILE);
    let temporary = dir.join(format!(".{KEPT_FILE}.new"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(chain_pem.trim_end().as_bytes())?;
    file.write_all(b"\n")?;
    file.write_all(key_pem.trim_end().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    fs::rename(&temporary, &path)?;
    fs::File::open(&dir)?.sync_all()?;
    Ok(path)
}

/// The certificate kept from an earlier push, if there is one that can be served.
pub fn load_kept(data_dir: &Path) -> Option<Served> {
    let path = kept_path(data_dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::error!(path = %path.display(), %err, "cannot read the certificate the province pushed; serving http.tls_cert instead");
            return None;
        }
    };
    let chain: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_slice_iter(&bytes).collect();
    let served = chain.map_err(|err| format!("{err:?}")).and_then(|chain| {
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| format!("{err:?}"))?;
        Served::new(chain, key, Source::ProvincePush).map_err(|err| err.to_string())
    });
    match served {
        Ok(served) => Some(served),
        Err(err) => {
            tracing::error!(path = %path.display(), %err, "the certificate the province pushed cannot be served; serving http.tls_cert instead until the hub pushes another");
            None
        }
    }
}
