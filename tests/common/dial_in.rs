//! The hub's side of a room's dial-out link: a listener that accepts the
//! connections rooms open, checks each room's certificate against the room CA,
//! and turns each accepted connection into an ordinary gRPC client of that
//! room's `SyncService`, as if the hub had dialled the room itself.
//!
//! # Design
//! - The room is the TLS client and the HTTP/2 server; the hub is the TLS
//!   server and the HTTP/2 client (`proto/classroom/hub/v1/sync.proto`, "Rooms
//!   the hub cannot reach"). So after the handshake the accepted socket is
//!   handed to tonic as the one connection of a `Channel`: a connector that
//!   gives out that socket once, and refuses afterwards, so a lost link shows
//!   as an unavailable channel rather than as a connection to somewhere else.
//!   The room dials again; the hub gets a new [`RoomLink`] from [`DialIn::accept`].
//! - What identifies the room is its certificate (kept in [`RoomLink`]) and its
//!   `GetStatus`; the acceptor only admits certificates from the room CA.
//! - Every wait is bounded: the TLS handshake by [`HANDSHAKE_TIMEOUT`], a dead
//!   link by HTTP/2 keepalive pings.
//! - It depends on tokio, tokio-rustls, tonic, tower and hyper-util and the
//!   generated client only, so it can move into the hub's own crate as it is.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firmware_agent::proto::sync_service_client::SyncServiceClient;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tonic::transport::{Channel, Endpoint, Uri};

/// The longest a room's TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message accepted from a room (the agent's default limit).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

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
    path: std::path::PathBuf,
    reason: String,
}

/// A room that dialled in: a client of its `SyncService`, and who it is.
pub struct RoomLink {
    pub client: SyncServiceClient<Channel>,
    /// The room's certificate (DER) as it presented it; `None` over plaintext.
    pub certificate: Option<CertificateDer<'static>>,
    pub peer: SocketAddr,
}

/// The hub's dial-in listener.
pub struct DialIn {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
}

impl DialIn {
    /// Listens on `address`: over mutual TLS with `tls`, in plaintext without.
    pub async fn bind(address: SocketAddr, tls: Option<DialInTls<'_>>) -> std::io::Result<DialIn> {
        let acceptor = match tls {
            None => None,
            Some(tls) => Some(TlsAcceptor::from(
                server_config(&tls).map_err(std::io::Error::other)?,
            )),
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

    /// The next room that dials in and passes the handshake.
    pub async fn accept(&self) -> Result<RoomLink, AcceptError> {
        let (tcp, peer) = self.listener.accept().await.map_err(AcceptError::Accept)?;
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = &self.acceptor else {
            let client = client_over(tcp)
                .await
                .map_err(|source| AcceptError::Channel { peer, source })?;
            return Ok(RoomLink {
                client,
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
        let client = client_over(tls)
            .await
            .map_err(|source| AcceptError::Channel { peer, source })?;
        Ok(RoomLink {
            client,
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

/// A gRPC client whose only connection is `io`, the link the room opened.
async fn client_over<IO>(io: IO) -> Result<SyncServiceClient<Channel>, tonic::transport::Error>
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
    let channel = Endpoint::from_static("http://room.dialled-in")
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect_with_connector(connector)
        .await?;
    Ok(SyncServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
