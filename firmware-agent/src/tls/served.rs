//! The certificate the HTTPS listener serves, in a slot that a push from the
//! province's hub replaces while the listener runs.
//!
//! # Design
//! The listener's rustls config asks [`ServedCertificate`] for a certificate
//! at every handshake instead of holding one, so a replaced certificate is
//! served to the next connection while connections already open keep the one
//! they began with. The slot is a `tokio::sync::watch` channel: the
//! handshake reads it without waiting on a writer for long, and the expiry
//! watch in [`super::room`] wakes when it changes.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// Where the served certificate came from, as `GetStatus` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `http.tls_cert`, made with the school's own CA.
    SchoolFile,
    /// Pushed by the province's hub, kept in `<data_dir>/tls/`.
    ProvincePush,
}

/// A certificate ready to serve, and what the room reports of it.
#[derive(Debug)]
pub struct Served {
    pub key: Arc<CertifiedKey>,
    pub expires: Timestamp,
    /// The leaf's serial number, lowercase hex.
    pub serial: String,
    pub source: Source,
}

/// Why a certificate and key cannot be served together.
#[derive(Debug, thiserror::Error)]
pub enum Unservable {
    #[error("holds no certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("not a certificate: {0}")]
    NotACertificate(String),
    #[error("the key cannot sign: {0}")]
    Key(rustls::Error),
    #[error("the key is not the certificate's")]
    Mismatch,
}

impl Served {
    /// Pairs `chain` (the room's certificate first) with `key`, checking
    /// that the key is the certificate's.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        source: Source,
    ) -> Result<Served, Unservable> {
        let leaf = chain.first().ok_or(Unservable::NoCertificate)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|err| Unservable::NotACertificate(err.to_string()))?;
        let expires = Timestamp::from_second(parsed.validity().not_after.timestamp())
            .unwrap_or(Timestamp::MAX);
        let serial = hex::encode(parsed.raw_serial());
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(Unservable::Key)?;
        let certified = CertifiedKey::new(chain, signing);
        // A key whose public half rustls cannot derive is checked at the first handshake instead.
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            certified.keys_match()
        {
            return Err(Unservable::Mismatch);
        }
        Ok(Served {
            key: Arc::new(certified),
            expires,
            serial,
            source,
        })
    }
}

/// The slot the HTTPS listener reads at every handshake.
#[derive(Debug)]
pub struct ServedCertificate {
    slot: watch::Sender<Arc<Served>>,
}

impl ServedCertificate {
    pub fn new(served: Served) -> Arc<ServedCertificate> {
        Arc::new(ServedCertificate {
            slot: watch::channel(Arc::new(served)).0,
        })
    }

    /// What is served now.
    pub fn current(&self) -> Arc<Served> {
        self.slot.borrow().clone()
    }

    /// Serves `served` to every connection from now on.
    pub fn replace(&self, served: Served) {
        self.slot.send_replace(Arc::new(served));
    }

    /// Wakes whoever holds it each time the certificate is replaced.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Served>> {
        self.slot.subscribe()
    }

    /// A rustls server config that serves whatever the slot holds.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.slot.borrow().key.clone())
    }
}
