//! TLS for native tablet clients: the agent's own certificate, made on first
//! start, and a listener that serves the same routes as the plain HTTP one.
//!
//! # Design
//! - No certificate authority can vouch for a mini-PC in a classroom, so the
//!   agent makes a self-signed certificate (ECDSA P-256, by `rcgen`) the
//!   first time TLS is enabled and keeps it in `<data_dir>/tls/` (mode 0700,
//!   the key file 0600). It stays the same across restarts: tablets pin its
//!   SHA-256 fingerprint, which they read from the QR code at pairing, and
//!   refuse any other certificate. Deleting the files makes a new
//!   certificate, after which every tablet must scan a new QR code.
//! - The listener completes TLS handshakes in their own tasks, so a slow or
//!   hostile client cannot hold up anyone else. Each connection is first
//!   admitted by the agent's one connection ledger
//!   ([`crate::http::limits::Connections`]): it counts against the same caps
//!   per address and overall as on the plain port, and its handshake must end
//!   within the header-read deadline counted from the TCP accept. A failed
//!   accept (out of file descriptors, say) is tried again after a pause on the
//!   agent's clock.
//! - Off unless `tablets.tls_listen` is set.
//! - The running listener's port and fingerprint are set once at start in a
//!   process-wide slot ([`advertised`]), which the pairing QR code and mDNS
//!   read: there is one agent per process and one certificate per agent.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use crate::clock::Clock;
use crate::http::limits::{Bounded, Connections};

/// How long the listener pauses after a failed accept before it accepts again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The agent's certificate as tablets pin it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub certificate: CertificateDer<'static>,
    /// The private key, PKCS#8 DER.
    key: Vec<u8>,
    dir: PathBuf,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read or write the agent's certificate: {source}\n  hint: give the agent's user write access to the data directory", path.display())]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the agent's certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: the stored certificate or key is unusable ({source})\n  hint: move this directory aside to make a new certificate; tablets must then pair again", dir.display())]
    Unusable { source: rustls::Error, dir: PathBuf },
    #[error(
        "cannot listen on {address} (tablets.tls_listen): {source}\n  hint: use a free port, such as 8443"
    )]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Loads the certificate from `dir`, making it on first use.
pub fn load_or_create(dir: &Path, names: Vec<String>) -> Result<Identity, TlsError> {
    let certificate_path = dir.join("agent-cert.der");
    let key_path = dir.join("agent-key.der");
    let files = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Files { path, source }
    };
    crate::store::ensure_private_dir(dir).map_err(files(dir))?;
    if !certificate_path.exists() || !key_path.exists() {
        let made = rcgen::generate_simple_self_signed(names)?;
        crate::tls::ca::write_private(&key_path, &made.signing_key.serialize_der())
            .map_err(files(&key_path))?;
        fs::write(&certificate_path, made.cert.der()).map_err(files(&certificate_path))?;
        tracing::info!(path = %certificate_path.display(), "made the agent's TLS certificate");
    }
    let certificate =
        CertificateDer::from(fs::read(&certificate_path).map_err(files(&certificate_path))?);
    let key = fs::read(&key_path).map_err(files(&key_path))?;
    let fingerprint = hex::encode(Sha256::digest(&certificate));
    Ok(Identity {
        certificate,
        key,
        dir: dir.to_owned(),
        fingerprint,
    })
}

/// A listener whose connections are TLS streams, for `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(Bounded<TlsStream<tokio::net::TcpStream>>, SocketAddr)>,
}

impl TlsListener {
    /// Binds `address` and starts accepting with `identity` what
    /// `connections` admits, pausing on `clock` after a failed accept.
    pub async fn bind(
        address: SocketAddr,
        identity: &Identity,
        connections: Arc<Connections>,
        clock: Arc<dyn Clock>,
    ) -> Result<TlsListener, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key.clone()));
                builder
                    .with_no_client_auth()
                    .with_single_cert(vec![identity.certificate.clone()], key)
            })
            .map_err(|source| TlsError::Unusable {
                source,
                dir: identity.dir.clone(),
            })?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| TlsError::Bind { address, source })?;
        TlsListener::accepting(listener, Arc::new(config), connections, clock)
            .map_err(|source| TlsError::Bind { address, source })
    }

    /// Starts TLS handshakes with `config` on what `listener` accepts and
    /// `connections` admits, pausing on `clock` after a failed accept.
    pub fn accepting(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        connections: Arc<Connections>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<TlsListener> {
        let acceptor = TlsAcceptor::from(config);
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(connection) => connection,
                    Err(err) => {
                        tracing::warn!(%err, "cannot accept a TLS connection");
                        clock.sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                };
                // A refused stream is dropped here, which closes it before the handshake.
                let Some(admitted) = connections.accept(peer) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, handshaken) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    // A bounded wait on the socket, on the runtime's real time: how long a peer may take is I/O, not policy.
                    let deadline = admitted.deadline();
                    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = handshaken.send((admitted.bound(tls), peer)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                        Err(_) => admitted.handshake_timed_out(),
                    }
                });
                if sender.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { local, accepted })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Bounded<TlsStream<tokio::net::TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// What a tablet needs to reach the TLS listener and pin its certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Advertised {
    pub port: u16,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
}

static ADVERTISED: OnceLock<Advertised> = OnceLock::new();

/// The TLS listener of this agent, once it listens.
pub fn advertised() -> Option<&'static Advertised> {
    ADVERTISED.get()
}

/// Makes the certificate (kept under `data_dir`, named for the room) and binds
/// `tablets.tls_listen`, when it is set.
pub async fn prepare(
    tablets: &super::TabletsConfig,
    data_dir: &Path,
    school_code: &str,
    room_id: &str,
    connections: Arc<Connections>,
    clock: Arc<dyn Clock>,
) -> Result<Option<TlsListener>, TlsError> {
    let Some(address) = tablets.tls_listen else {
        return Ok(None);
    };
    let dir = data_dir.join("tls");
    let names = vec![
        format!("{school_code}-{room_id}.local"),
        "localhost".to_owned(),
    ];
    let identity = tokio::task::spawn_blocking(move || load_or_create(&dir, names))
        .await
        .expect("certificate task")?;
    let listener = TlsListener::bind(address, &identity, connections, clock).await?;
    let advertised = Advertised {
        port: listener.local.port(),
        fingerprint: identity.fingerprint.clone(),
    };
    tracing::info!(address = %listener.local, fingerprint = %advertised.fingerprint, "tablets' TLS listening");
    let _ = ADVERTISED.set(advertised);
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), vec!["room.local".into()]).unwrap();
        let again = load_or_create(dir.path(), vec!["room.local".into()]).unwrap();
        assert_eq!(first, again, "a restart keeps the pinned certificate");
        assert_eq!(first.fingerprint.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("agent-key.der"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_certificate_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let data = tempfile::tempdir().unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let tls = data.path().join("tls");
        // SAFETY: umask only changes this process's mask; restored below.
        let old = unsafe { libc::umask(0o022) };
        let made = load_or_create(&tls, vec!["room.local".into()]);
        unsafe { libc::umask(old) };
        made.unwrap();
        assert_eq!(mode(&tls), 0o700);
        fs::set_permissions(&tls, fs::Permissions::from_mode(0o755)).unwrap();
        load_or_create(&tls, vec!["room.local".into()]).unwrap();
        assert_eq!(
            mode(&tls),
            0o700,
            "an existing directory is tightened at the next start"
        );
    }
}
