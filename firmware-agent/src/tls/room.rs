//! The room's certificate as the school configures it: loaded from
//! `http.tls_cert` and `http.tls_key`, checked by check-config; and the
//! served certificate's expiry, watched whatever its source.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::served::{Served, ServedCertificate, Source, Unservable};
use crate::clock::Clock;
use crate::config::diagnostics::Unlocated;
use crate::config::{HttpConfig, resolve};
use crate::health::{Health, State};

/// From how long before it expires the certificate shows as degraded.
const RENEW_WITHIN: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How often the expiry is looked at again.
const EXPIRY_CHECK: Duration = Duration::from_secs(24 * 3600);

/// Why the configured certificate or key cannot be served; names the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{key} = {}: {problem}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("http.tls_key = {}: not the key of http.tls_cert = {} ({source})", key.display(), certificate.display())]
    Mismatch {
        certificate: PathBuf,
        key: PathBuf,
        source: Unservable,
    },
}

impl LoadError {
    /// The config key at fault, for check-config's location.
    pub fn key(&self) -> &'static str {
        match self {
            LoadError::File { key, .. } => key,
            LoadError::Mismatch { .. } => "http.tls_key",
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            LoadError::File { .. } => {
                "make the room's certificate with `firmware-agent tls issue` and name the files it wrote"
            }
            LoadError::Mismatch { .. } => {
                "name the room-key.pem that `tls issue` wrote beside this room.pem"
            }
        }
    }
}

/// check-config's rules for `[http]`'s TLS keys: both or neither, files
/// that load and match, a port of their own. `base` anchors relative paths.
pub fn config_problems(http: &HttpConfig, base: &Path) -> Vec<Unlocated> {
    let problem = |key: &str, message: String, hint: &str| Unlocated {
        key: key.to_owned(),
        message,
        hint: hint.to_owned(),
    };
    let mut problems = Vec::new();
    if let Some(ca) = &http.province_lan_ca
        && let Err(err) = super::pushed::read_province_ca(&resolve(base, ca))
    {
        problems.push(problem(
            "http.province_lan_ca",
            err,
            "name the province's LAN CA certificate (ca.pem from `province-hub lan-ca init`)",
        ));
    }
    let (certificate, key) = match (&http.tls_cert, &http.tls_key) {
        (None, None) => return problems,
        (Some(certificate), Some(key)) => (certificate, key),
        (Some(_), None) => {
            problems.push(problem(
                "http.tls_cert",
                "http.tls_cert is set without http.tls_key".to_owned(),
                "add tls_key = \"room-key.pem\" (written by `tls issue` beside room.pem)",
            ));
            return problems;
        }
        (None, Some(_)) => {
            problems.push(problem(
                "http.tls_key",
                "http.tls_key is set without http.tls_cert".to_owned(),
                "add tls_cert = \"room.pem\" (written by `tls issue` beside room-key.pem)",
            ));
            return problems;
        }
    };
    if http.tls_listen == http.listen {
        problems.push(problem(
            "http.tls_listen",
            format!("{} is also http.listen", http.listen),
            "give HTTPS its own port, such as 8443; http.listen then only redirects to it",
        ));
    }
    if let Err(err) = load(&resolve(base, certificate), &resolve(base, key)) {
        problems.push(problem(err.key(), err.to_string(), err.hint()));
    }
    problems
}

/// Reads and checks the certificate (PEM, the room's first, then any
/// intermediate CAs) and its private key (PEM).
pub fn load(certificate_path: &Path, key_path: &Path) -> Result<Served, LoadError> {
    let unreadable = |key, path: &Path, problem: String| LoadError::File {
        key,
        path: path.to_owned(),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate_path)
        .and_then(|certificates| certificates.collect())
        .map_err(|err| unreadable("http.tls_cert", certificate_path, pem_problem(err)))?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|err| unreadable("http.tls_key", key_path, pem_problem(err)))?;
    Served::new(chain, key, Source::SchoolFile).map_err(|err| match err {
        Unservable::NoCertificate | Unservable::NotACertificate(_) => {
            unreadable("http.tls_cert", certificate_path, err.to_string())
        }
        source => LoadError::Mismatch {
            certificate: certificate_path.to_owned(),
            key: key_path.to_owned(),
            source,
        },
    })
}

fn pem_problem(err: rustls::pki_types::pem::Error) -> String {
    match err {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        rustls::pki_types::pem::Error::NoItemsFound => {
            "holds nothing in PEM of that kind".to_owned()
        }
        other => format!("not valid PEM: {other:?}"),
    }
}

/// The certificate's health at `now`: degraded when it expires within 30
/// days (or has expired), in words for IT staff, Vietnamese first.
pub fn expiry_health(expires: Timestamp, source: Source, now: Timestamp) -> (State, String) {
    let day = expires.strftime("%Y-%m-%d");
    let renew = match source {
        Source::SchoolFile => "run `firmware-agent tls issue` and restart",
        Source::ProvincePush => {
            "the province's hub renews it when it next reaches the room; check that it does"
        }
    };
    if expires <= now {
        (
            State::Degraded,
            format!(
                "Chứng chỉ TLS đã hết hạn ngày {day}: trình duyệt sẽ từ chối / the TLS certificate expired on {day}: {renew}"
            ),
        )
    } else if expires.duration_since(now) <= RENEW_WITHIN {
        (
            State::Degraded,
            format!(
                "Chứng chỉ TLS sắp hết hạn ngày {day} / the TLS certificate expires on {day}: {renew}"
            ),
        )
    } else {
        (
            State::Ok,
            format!(
                "Chứng chỉ TLS hợp lệ đến ngày {day} / the TLS certificate is valid until {day}"
            ),
        )
    }
}

/// Shows the expiry of the certificate `served` holds as the health
/// subsystem `tls`, now, daily on `clock` and whenever it is replaced, until
/// `shutdown`.
pub async fn watch_expiry(
    served: Arc<ServedCertificate>,
    health: Health,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut replaced = served.subscribe();
    loop {
        let current = replaced.borrow_and_update().clone();
        let (state, detail) = expiry_health(current.expires, current.source, clock.now());
        health.set("tls", state, detail);
        tokio::select! {
            () = clock.sleep(EXPIRY_CHECK) => {}
            changed = replaced.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_degraded_from_thirty_days_before_it_expires() {
        let expires: Timestamp = "2027-06-30T00:00:00Z".parse().unwrap();
        let at = |s: &str| expiry_health(expires, Source::SchoolFile, s.parse().unwrap()).0;
        assert_eq!(at("2027-05-30T00:00:00Z"), State::Ok);
        assert_eq!(at("2027-05-31T00:00:00Z"), State::Degraded);
        assert_eq!(at("2027-07-01T00:00:00Z"), State::Degraded);
    }
}
