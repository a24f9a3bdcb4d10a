//! The hub's side of a room's dial-out link: a listener that accepts the
//! connections rooms open, checks each room's certificate against the room CA,
//! and turns each admitted connection into an ordinary gRPC channel to that
//! room's `SyncService`, as if the hub had dialled the room itself.
//!
//! # Design
//! - The room is the TLS client and the HTTP/2 server; the hub is the TLS
//!   server and the HTTP/2 client (`proto/classroom/hub/v1/sync.proto`, "Rooms
//!   the hub cannot reach"). So after the handshake the accepted socket is
//!   handed to tonic as the one connection of a `Channel`: a connector that
//!   gives out that socket once, and refuses afterwards, so a lost link shows
//!   as an unavailable channel rather than as a connection to somewhere else.
//!   The room dials again; the hub gets a new [`RoomLink`].
//! - Accepting and admitting are two steps ([`DialIn::accept`], then
//!   [`Incoming::admit`]) so that a caller can run each handshake in a task of
//!   its own: a room that stalls its handshake holds up nobody else.
//! - What identifies the room is its certificate (kept in [`RoomLink`]) and its
//!   `GetStatus`; the acceptor only admits certificates from the room CA, and
//!   [`RoomLink::confirms`] takes the room `GetStatus` names only when the
//!   certificate names the same room ([`super::certified_room`]).
//! - Every wait is bounded: the TLS handshake by [`HANDSHAKE_TIMEOUT`], a dead
//!   link by HTTP/2 keepalive pings ([`KEEPALIVE_INTERVAL`], [`KEEPALIVE_TIMEOUT`]).
//! - The link is a `Channel`, not a generated client, so any build of the
//!   contract's client (the hub's, or a test's) can call the room over it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tonic::transport::{Channel, Endpoint, Uri};

use super::certified_room::{self, HINT, IdentityError};
use crate::config::RoomKey;

/// The longest a room's TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the hub pings a room's link that carries nothing.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the link counts as dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The hub's certificate and key, and the CA the rooms' certificates chain to (PEM files).
pub struct DialInTls<'a> {
    pub certificate: &'a Path,
    pub key: &'a Path,
    pub room_ca: &'a Path,
}

/// Why a room's connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("accepting a connection failed: {0}")]
    Accept(std::io::Error),
    #[error("the TLS handshake with {peer} failed: {source}")]
    Handshake {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("{peer} did not finish its TLS handshake in time")]
    HandshakeTimeout { peer: SocketAddr },
    #[error("no gRPC channel over the link from {peer}: {source}")]
    Channel {
        peer: SocketAddr,
        source: tonic::transport::Error,
    },
}

/// Why the hub's TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct TlsFileError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

/// A room that dialled in: a channel to its `SyncService`, and who it is.
pub struct RoomLink {
    pub channel: Channel,
    /// The room's certificate (DER) as it presented it; `None` over plaintext.
    pub certificate: Option<CertificateDer<'static>>,
    pub peer: SocketAddr,
}

impl RoomLink {
    /// Whether this link is `claimed`'s, the room its `GetStatus` names. A link
    /// that is not is logged with both names and a hint, and counted in
    /// `/metrics` as `province_hub_dial_in_refused_total`; the caller ends it
    /// before reading a cursor or landing anything.
    pub fn confirms(&self, claimed: &RoomKey) -> bool {
        let Err(error) = certified_room::confirm(self.certificate.as_ref(), claimed) else {
            return true;
        };
        let certified = error
            .certified()
            .map_or_else(|| "none".to_owned(), RoomKey::to_string);
        metrics::counter!(
            "province_hub_dial_in_refused_total",
            "school" => claimed.school_code.clone(),
            "room" => claimed.room_id.clone(),
            "certified" => certified.clone(),
        )
        .increment(1);
        let hint = match &error {
            IdentityError::Mismatch { .. } => format!(
                "the room's [room] section and its hub.tls_cert must be the same room's: {HINT}"
            ),
            _ => HINT.to_owned(),
        };
        tracing::warn!(
            peer = %self.peer,
            claimed = %claimed,
            certified = %certified,
            hint = %hint,
            "a room's link is refused before landing anything: {error}"
        );
        false
    }
}

/// The hub's dial-in listener.
pub struct DialIn {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
}

/// A connection accepted but not admitted yet.
pub struct Incoming {
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
}

impl DialIn {
    /// Listens on `address`: over mutual TLS with `tls`, in plaintext without.
    /// An unusable TLS file is an `InvalidInput` error naming the file.
    pub async fn bind(address: SocketAddr, tls: Option<DialInTls<'_>>) -> std::io::Result<DialIn> {
        let acceptor = match tls {
            None => None,
            Some(tls) => Some(TlsAcceptor::from(server_config(&tls).map_err(|err| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, err)
            })?)),
        };
        Ok(DialIn {
            listener: TcpListener::bind(address).await?,
            acceptor,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The next connection a room opens, before its handshake.
    pub async fn accept(&self) -> Result<Incoming, AcceptError> {
        let (tcp, peer) = self.listener.accept().await.map_err(AcceptError::Accept)?;
        let _ = tcp.set_nodelay(true);
        Ok(Incoming {
            tcp,
            peer,
            acceptor: self.acceptor.clone(),
        })
    }
}

impl Incoming {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Runs the TLS handshake (within [`HANDSHAKE_TIMEOUT`]) and opens the
    /// channel over the link.
    pub async fn admit(self) -> Result<RoomLink, AcceptError> {
        let Incoming {
            tcp,
            peer,
            acceptor,
        } = self;
        let Some(acceptor) = acceptor else {
            let channel = channel_over(tcp)
                .await
                .map_err(|source| AcceptError::Channel { peer, source })?;
            return Ok(RoomLink {
                channel,
                certificate: None,
                peer,
            });
        };
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| AcceptError::HandshakeTimeout { peer })?
            .map_err(|source| AcceptError::Handshake { peer, source })?;
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|certificate| certificate.clone().into_owned());
        let channel = channel_over(tls)
            .await
            .map_err(|source| AcceptError::Channel { peer, source })?;
        Ok(RoomLink {
            channel,
            certificate,
            peer,
        })
    }
}

fn server_config(tls: &DialInTls<'_>) -> Result<Arc<ServerConfig>, TlsFileError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fail = |path: &Path, reason: String| TlsFileError {
        path: path.to_owned(),
        reason,
    };
    let certificates = |path: &Path| {
        CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|err| fail(path, err.to_string()))
    };
    let mut roots = RootCertStore::empty();
    for certificate in certificates(tls.room_ca)? {
        roots
            .add(certificate)
            .map_err(|err| fail(tls.room_ca, err.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|err| fail(tls.room_ca, err.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_file(tls.key).map_err(|err| fail(tls.key, err.to_string()))?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(tls.certificate)?, key)
        .map_err(|err| fail(tls.key, err.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A channel whose only connection is `io`, the link the room opened.
async fn channel_over<IO>(io: IO) -> Result<Channel, tonic::transport::Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let link = Arc::new(Mutex::new(Some(io)));
    let connector = tower::service_fn(move |_: Uri| {
        let io = link.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move {
            io.map(TokioIo::new).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the room's link has ended; the room dials again",
                )
            })
        }
    });
    Endpoint::from_static("http://room.dialled-in")
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .connect_with_connector(connector)
        .await
}
