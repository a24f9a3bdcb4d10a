//! The room's certificate as the agent serves it: loaded from
//! `http.tls_cert` and `http.tls_key`, checked by check-config, and watched
//! for its expiry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::diagnostics::Unlocated;
use crate::config::{HttpConfig, resolve};
use crate::health::{Health, State};

/// From how long before it expires the certificate shows as degraded.
const RENEW_WITHIN: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How often the expiry is looked at again.
const EXPIRY_CHECK: Duration = Duration::from_secs(24 * 3600);

/// The room's certificate and key, ready to serve.
#[derive(Debug, Clone)]
pub struct RoomCertificate {
    pub server: Arc<ServerConfig>,
    pub expires: Timestamp,
    pub certificate_path: PathBuf,
}

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
        source: rustls::Error,
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
    let (certificate, key) = match (&http.tls_cert, &http.tls_key) {
        (None, None) => return Vec::new(),
        (Some(certificate), Some(key)) => (certificate, key),
        (Some(_), None) => {
            return vec![problem(
                "http.tls_cert",
                "http.tls_cert is set without http.tls_key".to_owned(),
                "add tls_key = \"room-key.pem\" (written by `tls issue` beside room.pem)",
            )];
        }
        (None, Some(_)) => {
            return vec![problem(
                "http.tls_key",
                "http.tls_key is set without http.tls_cert".to_owned(),
                "add tls_cert = \"room.pem\" (written by `tls issue` beside room-key.pem)",
            )];
        }
    };
    let mut problems = Vec::new();
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
pub fn load(certificate_path: &Path, key_path: &Path) -> Result<RoomCertificate, LoadError> {
    let unreadable = |key, path: &Path, problem: String| LoadError::File {
        key,
        path: path.to_owned(),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate_path)
        .and_then(|certificates| certificates.collect())
        .map_err(|err| unreadable("http.tls_cert", certificate_path, pem_problem(err)))?;
    let Some(leaf) = chain.first() else {
        return Err(unreadable(
            "http.tls_cert",
            certificate_path,
            "holds no certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|err| {
        unreadable(
            "http.tls_cert",
            certificate_path,
            format!("not a certificate: {err}"),
        )
    })?;
    let expires =
        Timestamp::from_second(parsed.validity().not_after.timestamp()).unwrap_or(Timestamp::MAX);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|err| unreadable("http.tls_key", key_path, pem_problem(err)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| LoadError::Mismatch {
            certificate: certificate_path.to_owned(),
            key: key_path.to_owned(),
            source,
        })?;
    Ok(RoomCertificate {
        server: Arc::new(server),
        expires,
        certificate_path: certificate_path.to_owned(),
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
pub fn expiry_health(expires: Timestamp, now: Timestamp) -> (State, String) {
    let day = expires.strftime("%Y-%m-%d");
    if expires <= now {
        (
            State::Degraded,
            format!(
                "Chứng chỉ TLS đã hết hạn ngày {day}: trình duyệt sẽ từ chối / the TLS certificate expired on {day}: run `firmware-agent tls issue` and restart"
            ),
        )
    } else if expires.duration_since(now) <= RENEW_WITHIN {
        (
            State::Degraded,
            format!(
                "Chứng chỉ TLS sắp hết hạn ngày {day} / the TLS certificate expires on {day}: run `firmware-agent tls issue` and restart"
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

/// Shows the certificate's expiry as the health subsystem `tls`, now and
/// daily on `clock`, until `shutdown`.
pub async fn watch_expiry(
    expires: Timestamp,
    health: Health,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    loop {
        let (state, detail) = expiry_health(expires, clock.now());
        health.set("tls", state, detail);
        tokio::select! {
            () = clock.sleep(EXPIRY_CHECK) => {}
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
        let at = |s: &str| expiry_health(expires, s.parse().unwrap()).0;
        assert_eq!(at("2027-05-30T00:00:00Z"), State::Ok);
        assert_eq!(at("2027-05-31T00:00:00Z"), State::Degraded);
        assert_eq!(at("2027-07-01T00:00:00Z"), State::Degraded);
    }
}
