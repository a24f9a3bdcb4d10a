//! Mutual TLS for the hub link, served or dialled: the files the config names,
//! read and checked with messages that say which key and file is wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::config::TlsFiles;

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {}: {reason}\n  hint: {hint}", path.display())]
pub struct TlsError {
    pub key: &'static str,
    pub path: PathBuf,
    pub reason: String,
    pub hint: &'static str,
}

impl TlsError {
    /// The files read, but rustls cannot use them together.
    pub fn unusable(files: &TlsFiles, err: impl std::fmt::Display) -> TlsError {
        TlsError {
            key: "hub.tls_cert",
            path: files.cert.clone(),
            reason: format!("with hub.tls_key = {}: {err}", files.key.display()),
            hint: "the key must be the certificate's own private key, in PEM (PKCS#8, PKCS#1 or SEC1)",
        }
    }
}

/// Reads a PEM file and checks it holds at least one block labelled `label`.
pub fn read_pem(key: &'static str, path: &Path, label: &str) -> Result<Vec<u8>, TlsError> {
    let error = |reason: String, hint| TlsError {
        key,
        path: path.to_owned(),
        reason,
        hint,
    };
    let bytes = std::fs::read(path).map_err(|err| {
        error(
            format!("cannot read: {err}"),
            "check the path and that the agent's user may read it",
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
    if !found {
        return Err(error(
            format!("no PEM block containing `{label}` found"),
            "give a PEM file (text starting with -----BEGIN ...)",
        ));
    }
    Ok(bytes)
}

/// Chooses rustls's cryptography (ring) for the process. Several crates in the
/// build enable rustls back-ends, so rustls cannot pick one by itself.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is what is wanted.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// The server side: the agent's identity, and the CA its clients must chain to.
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, TlsError> {
    install_crypto_provider();
    let cert = read_pem("hub.tls_cert", &files.cert, "CERTIFICATE")?;
    let key = read_pem("hub.tls_key", &files.key, "PRIVATE KEY")?;
    let client_ca = read_pem("hub.client_ca", &files.client_ca, "CERTIFICATE")?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(client_ca)))
}

/// The client side, for dialling the hub: the room's identity, the CA the
/// hub's certificate must chain to, and HTTP/2 offered by ALPN.
pub fn client_config(
    files: &super::config::DialTls,
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, TlsError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    install_crypto_provider();
    let unparsable = |key: &'static str, path: &Path, err: &dyn std::fmt::Display| TlsError {
        key,
        path: path.to_owned(),
        reason: format!("cannot be parsed: {err}"),
        hint: "give a PEM file as `firmware-agent tls` or the province's CA wrote it",
    };
    let hub_ca = read_pem("hub.connect_ca", &files.hub_ca, "CERTIFICATE")?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&hub_ca) {
        let certificate =
            certificate.map_err(|err| unparsable("hub.connect_ca", &files.hub_ca, &err))?;
        roots
            .add(certificate)
            .map_err(|err| unparsable("hub.connect_ca", &files.hub_ca, &err))?;
    }
    let cert = read_pem("hub.tls_cert", &files.cert, "CERTIFICATE")?;
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| unparsable("hub.tls_cert", &files.cert, &err))?;
    let key = read_pem("hub.tls_key", &files.key, "PRIVATE KEY")?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|err| unparsable("hub.tls_key", &files.key, &err))?;
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|err| TlsError {
            key: "hub.tls_key",
            path: files.key.clone(),
            reason: format!("with hub.tls_cert = {}: {err}", files.cert.display()),
            hint: "the key must be the certificate's own private key, in PEM (PKCS#8, PKCS#1 or SEC1)",
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
