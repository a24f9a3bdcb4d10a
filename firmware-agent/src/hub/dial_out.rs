//! The room dials the hub (`hub.connect`): for rooms behind a carrier's NAT or
//! a school's firewall, which the hub cannot reach, the room opens the link
//! and serves the hub over it.
//!
//! # Design
//! - **A reversed transport.** The room is the TCP and TLS client: it connects
//!   to `hub.connect`, presents its certificate (`hub.tls_cert`) and checks the
//!   hub's against `hub.connect_ca` and `hub.connect_name`. Then the roles of
//!   HTTP/2 turn round: the room is the HTTP/2 *server* on that one connection,
//!   serving the very `SyncService` the listener serves (tonic's
//!   `serve_with_incoming_shutdown`, fed a stream of this one connection), and
//!   the hub runs its ordinary gRPC client over the socket it accepted. Pull,
//!   Ack, GetStatus, PutRoster and PutContent, the cursor, the wire and the
//!   store are those of the listener, so the exactly-once contract is the
//!   Pull contract, word for word (`proto/classroom/hub/v1/sync.proto`).
//! - **One link at a time.** The link is served until it ends (the hub hangs up,
//!   the network drops it, HTTP/2 keepalive finds it dead), then the room
//!   dials again. When to dial is [`super::redial`]'s decision, a state machine
//!   without I/O timed on the agent's clock; this module is the thin loop
//!   around it that does the I/O.
//! - **Bounded waits.** Resolving, connecting and the TLS handshake share one
//!   [`CONNECT_TIMEOUT`] (on the runtime's own timer: a bounded wait on a peer
//!   over the network). TCP keepalive and HTTP/2 pings find a link a 4G
//!   carrier dropped silently.
//! - **Linked means the hub spoke.** With TLS 1.3 a hub that refuses the
//!   room's certificate says so only after the handshake, in an alert on the
//!   first read. So a dial succeeds only once the hub's first bytes (its
//!   HTTP/2 preface) arrived; they are handed to the server before the rest.
//!   After that the connection the server reads keeps its first I/O error,
//!   which is what health shows when the link ends.
//! - **It shows.** `/healthz` has the subsystem `hub_link`: dialling, linked
//!   since when, or failing since when and why (`unreachable`, `tls_refused`,
//!   `certificate`, `link_lost`) with the next attempt; `/metrics` has
//!   `hub_link_connects_total`, `hub_link_failures_total{cause}` and
//!   `hub_link_up`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_stream::StreamExt;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::server::Connected;

use super::config::{DialTarget, HubConfig};
use super::redial::{Cause, Failure, LinkState, Redial, Step};
use super::tls::TlsError;
use crate::agent::Agent;
use crate::health::State;

/// The subsystem `/healthz` shows the link as.
pub const SUBSYSTEM: &str = "hub_link";
/// The most that resolving the hub's name, connecting and the TLS handshake
/// may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive: the first probe after this long without traffic…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// …then one probe this often…
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// …and the connection is dead after this many unanswered.
const KEEPALIVE_PROBES: u32 = 3;

/// The hub to dial and how, checked at start.
pub struct Dialler {
    target: DialTarget,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Dialler {
    /// How the link is secured, for health and the log.
    fn mode(&self) -> &'static str {
        if self.tls.is_some() {
            "mutual TLS"
        } else {
            "plaintext"
        }
    }
}

/// The dialler `hub.connect` asks for, its TLS files read and checked now, so a
/// bad file stops the agent before it says it is ready; `None` without `hub.connect`.
pub fn prepare(config: &HubConfig) -> Result<Option<Dialler>, TlsError> {
    let Some(target) = config.dial_target() else {
        return Ok(None);
    };
    let tls = match &target.tls {
        None => None,
        Some(files) => {
            let client = super::tls::client_config(files)?;
            let name = ServerName::try_from(files.server_name.clone()).map_err(|err| TlsError {
                key: "hub.connect_name",
                path: files.hub_ca.clone(),
                reason: format!("`{}` cannot be verified: {err}", files.server_name),
                hint: "give the DNS name or IP address on the hub's certificate",
            })?;
            Some((TlsConnector::from(client), name))
        }
    };
    Ok(Some(Dialler { target, tls }))
}

/// Dials the hub and serves it over each link until the agent shuts down.
pub async fn run(dialler: Dialler, agent: Arc<Agent>) {
    let mut redial = Redial::new();
    let mut link = None;
    let address = dialler.target.to_string();
    tracing::info!(hub = %address, mode = dialler.mode(), "dialling the hub");
    loop {
        show(&agent, &redial, &dialler);
        match redial.step() {
            Step::Dial => {
                let dialled = tokio::select! {
                    _ = agent.shutdown.cancelled() => return,
                    dialled = dial(&dialler) => dialled,
                };
                let now = agent.clock.monotonic();
                match dialled {
                    Ok(dialled) => {
                        tracing::info!(hub = %address, "hub link up");
                        metrics::counter!("hub_link_connects_total").increment(1);
                        metrics::gauge!("hub_link_up").set(1.0);
                        redial.linked(now);
                        link = Some(dialled);
                    }
                    Err(failure) => {
                        let retry_at = redial.failed(now, failure.clone(), rand::random());
                        failed(&agent, &address, &failure, retry_at);
                    }
                }
            }
            Step::Serve => {
                let served = link
                    .take()
                    .expect("the machine is linked only once a link was made");
                let ended = serve(served, &agent).await;
                metrics::gauge!("hub_link_up").set(0.0);
                if agent.shutdown.is_cancelled() {
                    return;
                }
                let retry_at =
                    redial.link_ended(agent.clock.monotonic(), ended.clone(), rand::random());
                failed(&agent, &address, &ended, retry_at);
            }
            Step::WaitUntil(deadline) => tokio::select! {
                _ = agent.shutdown.cancelled() => return,
                () = agent.clock.sleep_until(deadline) => redial.handle_timeout(agent.clock.monotonic()),
            },
        }
    }
}

/// Logs and counts a failed dial or a link that ended.
fn failed(agent: &Agent, address: &str, failure: &Failure, retry_at: crate::clock::Monotonic) {
    let retry_in = retry_at.saturating_since(agent.clock.monotonic());
    tracing::warn!(
        hub = %address,
        cause = failure.cause.name(),
        detail = %failure.detail,
        retry_in_ms = retry_in.as_millis() as u64,
        "hub link failed"
    );
    metrics::counter!("hub_link_failures_total", "cause" => failure.cause.name()).increment(1);
}

/// Shows the link's state in health.
fn show(agent: &Agent, redial: &Redial, dialler: &Dialler) {
    let now = agent.clock.monotonic();
    let wall = |at: crate::clock::Monotonic| {
        let ago = jiff::SignedDuration::try_from(now.saturating_since(at)).unwrap_or_default();
        (agent.clock.now() - ago)
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| agent.clock.now())
    };
    let address = &dialler.target;
    let (state, detail) = match redial.state() {
        LinkState::Dialling => (State::Starting, format!("dialling the hub at {address}")),
        LinkState::Linked { since } => (
            State::Ok,
            format!(
                "linked to the hub at {address} ({}) since {}",
                dialler.mode(),
                wall(since)
            ),
        ),
        LinkState::Failing {
            since,
            failures,
            last,
            retry_at,
        } => {
            let next = match retry_at {
                Some(at) => format!(
                    "next attempt in {:.1} s",
                    at.saturating_since(now).as_secs_f64()
                ),
                None => "dialling again".to_owned(),
            };
            (
                State::Degraded,
                format!(
                    "cannot link to the hub at {address} since {} ({failures} failure(s) in a row): {last}; {next}",
                    wall(since)
                ),
            )
        }
    };
    agent.health.set(SUBSYSTEM, state, detail);
}

/// Connects, sets keepalive and does the TLS handshake, all within [`CONNECT_TIMEOUT`].
async fn dial(dialler: &Dialler) -> Result<Link, Failure> {
    let attempt = async {
        let tcp = connect(&dialler.target).await?;
        let hub = tcp.peer_addr().ok();
        set_keepalive(&tcp);
        let mut io: Box<dyn LinkIo> = match &dialler.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|err| tls_failure(&err))?,
            ),
        };
        // The link is up once the hub has spoken (its HTTP/2 preface): with
        // TLS 1.3 a hub refusing the room's certificate says so only now.
        let mut first = vec![0; 64];
        let read = io
            .read(&mut first)
            .await
            .map_err(|err| match rustls_error(&err) {
                Some(_) => tls_failure(&err),
                None => Failure::new(
                    Cause::LinkLost,
                    format!("the link failed before the hub spoke: {err}"),
                ),
            })?;
        if read == 0 {
            return Err(Failure::new(
                Cause::LinkLost,
                "the hub closed the link before it spoke",
            ));
        }
        first.truncate(read);
        Ok(Link::new(io, hub, first))
    };
    // A bounded wait on a peer over the network: on the runtime's own timer.
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                Cause::Unreachable,
                format!(
                    "no connection, TLS handshake and first word from {} within {} s",
                    dialler.target,
                    CONNECT_TIMEOUT.as_secs()
                ),
            ))
        })
}

/// The first of the hub's addresses that accepts a TCP connection.
async fn connect(target: &DialTarget) -> Result<TcpStream, Failure> {
    let unreachable = |detail: String| Failure::new(Cause::Unreachable, detail);
    let addresses = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|err| unreachable(format!("cannot resolve `{}`: {err}", target.host)))?;
    let mut last = format!("`{}` has no address", target.host);
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(tcp) => return Ok(tcp),
            Err(err) => last = format!("cannot connect to {address}: {err}"),
        }
    }
    Err(unreachable(last))
}

/// Keepalive probes on the link, so that a connection a carrier's NAT forgot
/// ends within about a minute instead of hanging.
fn set_keepalive(tcp: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let socket = socket2::SockRef::from(tcp);
    if let Err(err) = socket
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| socket.set_tcp_nodelay(true))
    {
        tracing::warn!(%err, "cannot set TCP keepalive on the hub link; HTTP/2 pings still find a dead link");
    }
}

/// The TLS error inside an I/O error, if that is what it is.
fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// What an error of an established link says: the hub refused the room's
/// certificate after the handshake (TLS 1.3 says so in an alert on the first
/// read), or the link was lost.
fn link_failure(err: &std::io::Error) -> Failure {
    match rustls_error(err) {
        Some(rustls::Error::AlertReceived(_)) => tls_failure(err),
        _ => Failure::new(Cause::LinkLost, format!("the link failed: {err}")),
    }
}

/// What a TLS error says about who refused what.
fn tls_failure(err: &std::io::Error) -> Failure {
    match rustls_error(err) {
        Some(err @ rustls::Error::InvalidCertificate(_)) => Failure::new(
            Cause::Certificate,
            format!(
                "the hub's certificate is not trusted ({err}): hub.connect_ca must be the CA that signs it, and hub.connect_name a name on it"
            ),
        ),
        Some(rustls::Error::AlertReceived(alert)) => Failure::new(
            Cause::TlsRefused,
            format!(
                "the hub refused the TLS handshake ({alert:?}): does the hub trust the CA of hub.tls_cert, and does that certificate allow client authentication?"
            ),
        ),
        Some(other) => Failure::new(Cause::TlsRefused, format!("TLS failed: {other}")),
        None => Failure::new(
            Cause::TlsRefused,
            format!("the TLS handshake failed: {err} (does the hub speak TLS on this port?)"),
        ),
    }
}

/// Serves `SyncService` over the link until it ends or the agent stops;
/// returns why it ended.
async fn serve(link: Link, agent: &Arc<Agent>) -> Failure {
    let seen = link.seen.clone();
    let ended = link.ended.clone();
    let config = agent.config().hub.clone();
    let incoming = tokio_stream::once(Ok::<_, std::io::Error>(link)).chain(tokio_stream::pending());
    let shutdown = agent.shutdown.clone();
    let served = super::server_builder(&config)
        .add_service(super::sync_service(agent.clone(), &config))
        .serve_with_incoming_shutdown(incoming, async move {
            tokio::select! {
                _ = ended.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        })
        .await;
    let kept = seen.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (kept, served) {
        (Some(failure), _) => failure,
        (None, Err(err)) => {
            Failure::new(Cause::LinkLost, format!("the link's server failed: {err}"))
        }
        (None, Ok(())) => Failure::new(Cause::LinkLost, "the hub closed the link"),
    }
}

/// What the link's connection can be: TCP, or TLS over it.
trait LinkIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> LinkIo for T {}

/// The dialled connection as the gRPC server reads and writes it: it keeps
/// its first I/O error, and says when the server has dropped it.
struct Link {
    io: Box<dyn LinkIo>,
    /// What the hub sent while the link was checked, not yet read by the server.
    first: Vec<u8>,
    hub: Option<SocketAddr>,
    seen: Arc<Mutex<Option<Failure>>>,
    /// Cancelled once the server has let go of the connection.
    ended: CancellationToken,
    _ended_on_drop: DropGuard,
}

impl Link {
    fn new(io: Box<dyn LinkIo>, hub: Option<SocketAddr>, first: Vec<u8>) -> Link {
        let ended = CancellationToken::new();
        Link {
            io,
            first,
            hub,
            seen: Arc::default(),
            _ended_on_drop: ended.clone().drop_guard(),
            ended,
        }
    }

    /// Keeps the first error the connection gave.
    fn keep<T>(&self, result: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(err)) = &result {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.is_none() {
                *seen = Some(link_failure(err));
            }
        }
        result
    }
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.first.is_empty() {
            let taken = self.first.len().min(buf.remaining());
            buf.put_slice(&self.first[..taken]);
            self.first.drain(..taken);
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        self.keep(result)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.keep(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.keep(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_shutdown(cx);
        self.keep(result)
    }
}

/// What a request served over the link knows of its connection: the hub's address.
#[derive(Debug, Clone, Copy)]
pub struct HubAddress(pub Option<SocketAddr>);

impl Connected for Link {
    type ConnectInfo = HubAddress;

    fn connect_info(&self) -> HubAddress {
        HubAddress(self.hub)
    }
}
