//! The hub's side of mutual TLS with the rooms: its certificate and key, and
//! the CA the rooms' certificates chain to, read and checked at start with
//! messages that name the key and the file.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::TlsConfig;

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {path}: {reason}\n  hint: {hint}")]
pub struct TlsError {
    pub key: &'static str,
    pub path: String,
    pub reason: String,
    pub hint: &'static str,
}

/// The client TLS settings; `None` with `tls.plaintext = true`.
pub fn client_config(tls: &TlsConfig) -> Result<Option<ClientTlsConfig>, TlsError> {
    if *tls.plaintext.get_ref() {
        return Ok(None);
    }
    // Several crates of the build enable rustls back-ends: choose ring for the process.
    // An error only means one is chosen already.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let file = |key, path: Option<&toml::Spanned<std::path::PathBuf>>, label| {
        let path = path.map(|p| p.get_ref().as_path()).unwrap_or(Path::new(""));
        read_pem(key, path, label)
    };
    let cert = file("tls.cert", tls.cert.as_ref(), "CERTIFICATE")?;
    let key = file("tls.key", tls.key.as_ref(), "PRIVATE KEY")?;
    let ca = file("tls.room_ca", tls.room_ca.as_ref(), "CERTIFICATE")?;
    Ok(Some(
        ClientTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .ca_certificate(Certificate::from_pem(ca)),
    ))
}

/// Reads a PEM file and checks it holds a block labelled `label`.
fn read_pem(key: &'static str, path: &Path, label: &str) -> Result<Vec<u8>, TlsError> {
    let error = |reason: String, hint| TlsError {
        key,
        path: path.display().to_string(),
        reason,
        hint,
    };
    let bytes = std::fs::read(path).map_err(|err| {
        error(
            format!("cannot read: {err}"),
            "check the path and that the hub's user may read it",
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(label))
    {
        return Err(error(
            format!("no PEM block containing `{label}`"),
            "give a PEM file (text starting with -----BEGIN ...)",
        ));
    }
    Ok(bytes)
}
