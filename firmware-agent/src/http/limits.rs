//! Bounds on the HTTP server's connections, so that one device on the Wi-Fi
//! cannot hold every file descriptor the agent has and make it unreachable.
//!
//! # Design
//! One [`Connections`] ledger counts every listener's connections: the plain
//! one ([`Capped`] wraps it) and the TLS ones (the browsers' HTTPS and the
//! tablets' TLS, [`crate::tablets::tls::TlsListener`]), so that a peer's
//! connections count against one cap whichever port they reach. Each accepted
//! connection is counted overall
//! and per peer address; one over `http.max_connections` or
//! `http.max_connections_per_address` is closed at once, before a byte is
//! read. The panel itself (loopback) is not counted against those caps but
//! against a reserve of its own, [`LOOPBACK_RESERVE`], so that a flood from
//! the LAN never locks the panel out; a tablet shares the LAN's caps, and a
//! flood from one address stops at that address's cap.
//!
//! Every admitted connection is a [`Bounded`] stream, which closes it when
//! - its first request's headers have not all arrived within
//!   `http.header_read_timeout_ms` of the accept (a client that opens sockets
//!   and sends nothing, or a header a byte at a time); on a TLS port the
//!   handshake runs inside that same deadline, counted from the TCP accept,
//!   so a stalled ClientHello is closed as soon as a silent socket is, or
//! - after that, nothing has been read or written for [`IDLE_TIMEOUT`] (an
//!   idle keep-alive connection; live tablets send a heartbeat far more often).
//!
//! These bound a socket's I/O, not the room's policy, so they run on tokio's
//! timer rather than the agent's clock: a simulated clock nobody moves must
//! not keep a flood's sockets open.
//!
//! Refusals and timeouts are counted in `/metrics`
//! (`http_connections_refused_total{reason}`,
//! `http_connections_timed_out_total{phase}`) and logged at most once per
//! [`LOG_EVERY`] with the count since the last line, so that a flood cannot
//! fill the disk with the log.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::config::HttpConfig;

/// Connections from the agent's own machine (the panel) beyond the LAN's caps.
pub const LOOPBACK_RESERVE: usize = 64;

/// A connection that has nothing read or written this long, once its first
/// request's headers are in, is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// At most one log line per this long about refused or timed-out connections.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The caps and the header deadline, from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub header_read_timeout: Duration,
}

impl Caps {
    pub fn from_config(http: &HttpConfig) -> Self {
        Self {
            max_connections: http.max_connections,
            max_per_address: http.max_connections_per_address,
            header_read_timeout: Duration::from_millis(u64::from(http.header_read_timeout_ms)),
        }
    }
}

/// Why a connection was closed unserved, as `/metrics` and the log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerAddress,
    Total,
    Loopback,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::PerAddress => "per_address",
            Refusal::Total => "total",
            Refusal::Loopback => "loopback_reserve",
        }
    }
}

/// Who holds the open connections.
#[derive(Debug, Default)]
struct Open {
    lan: usize,
    loopback: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A line about refusals at most every [`LOG_EVERY`], with how many there were.
#[derive(Debug, Default)]
struct RateLimitedLog {
    last_line: Option<Instant>,
    unlogged: u64,
}

impl RateLimitedLog {
    /// Counts one event; the number to report if a line is due now.
    fn due(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self.last_line.is_some_and(|last| now < last + LOG_EVERY) {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The open connections of every listener, against the [`Caps`] (see [the design](self)).
#[derive(Debug)]
pub struct Connections {
    caps: Caps,
    open: Mutex<Open>,
    refusals: Mutex<RateLimitedLog>,
    timeouts: Mutex<RateLimitedLog>,
}

impl Connections {
    pub fn new(caps: Caps) -> Arc<Connections> {
        Arc::new(Connections {
            caps,
            open: Mutex::default(),
            refusals: Mutex::default(),
            timeouts: Mutex::default(),
        })
    }

    /// Admits a connection just accepted from `peer`, with its header deadline
    /// counted from now; `None` (counted and logged) when a cap is reached,
    /// after which dropping the stream closes it before anything is read.
    pub fn accept(self: &Arc<Self>, peer: SocketAddr) -> Option<Admitted> {
        match self.admit(peer.ip()) {
            Ok(admission) => Some(Admitted {
                admission,
                deadline: Instant::now() + self.caps.header_read_timeout,
            }),
            Err(refusal) => {
                self.refused(peer, refusal);
                None
            }
        }
    }

    /// Counts a connection from `peer` in, unless a cap is reached.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admission, Refusal> {
        let mut open = self.open.lock().expect("connection ledger poisoned");
        if peer.is_loopback() {
            if open.loopback >= LOOPBACK_RESERVE {
                return Err(Refusal::Loopback);
            }
            open.loopback += 1;
        } else {
            let from_peer = open.by_address.get(&peer).copied().unwrap_or(0);
            if from_peer >= self.caps.max_per_address {
                return Err(Refusal::PerAddress);
            }
            if open.lan >= self.caps.max_connections {
                return Err(Refusal::Total);
            }
            open.lan += 1;
            *open.by_address.entry(peer).or_default() += 1;
        }
        metrics::gauge!("http_connections_open").increment(1.0);
        Ok(Admission {
            ledger: self.clone(),
            peer,
        })
    }

    fn refused(&self, peer: SocketAddr, refusal: Refusal) {
        metrics::counter!("http_connections_refused_total", "reason" => refusal.name())
            .increment(1);
        let due = self
            .refusals
            .lock()
            .expect("refusal log poisoned")
            .due(Instant::now());
        if let Some(count) = due {
            tracing::warn!(
                peer = %peer.ip(),
                reason = refusal.name(),
                refused = count,
                max_connections = self.caps.max_connections,
                max_per_address = self.caps.max_per_address,
                "connections refused over the caps (counted since the last such line)"
            );
        }
    }

    fn timed_out(&self, peer: IpAddr, phase: &'static str) {
        metrics::counter!("http_connections_timed_out_total", "phase" => phase).increment(1);
        let due = self
            .timeouts
            .lock()
            .expect("timeout log poisoned")
            .due(Instant::now());
        if let Some(count) = due {
            tracing::info!(
                peer = %peer,
                phase,
                closed = count,
                "connections closed for sending too slowly or not at all (counted since the last such line)"
            );
        }
    }
}

/// A connection's place in the ledger, given back when the connection ends.
#[derive(Debug)]
struct Admission {
    ledger: Arc<Connections>,
    peer: IpAddr,
}

/// An admitted connection's place and its header deadline, before its
/// stream is wrapped (a TLS port first completes the handshake, by the deadline).
#[derive(Debug)]
pub struct Admitted {
    admission: Admission,
    deadline: Instant,
}

impl Admitted {
    /// When the first request's headers (and any TLS handshake before them) must be in.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Counts and logs a connection closed because its TLS handshake missed the deadline.
    pub fn handshake_timed_out(self) {
        let Admission { ledger, peer } = &self.admission;
        ledger.timed_out(*peer, "handshake");
    }

    /// The connection's stream, bounded from here on.
    pub fn bound<S>(self, stream: S) -> Bounded<S> {
        Bounded {
            stream,
            admission: self.admission,
            headers: HeaderScan::default(),
            deadline: Box::pin(tokio::time::sleep_until(self.deadline)),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.ledger.open.lock().expect("connection ledger poisoned");
        if self.peer.is_loopback() {
            open.loopback -= 1;
        } else {
            open.lan -= 1;
            if let Some(count) = open.by_address.get_mut(&self.peer) {
                *count -= 1;
                if *count == 0 {
                    open.by_address.remove(&self.peer);
                }
            }
        }
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

/// A plain listener that admits connections within the [`Caps`] (see [the design](self)).
pub struct Capped {
    listener: TcpListener,
    connections: Arc<Connections>,
}

impl Capped {
    pub fn new(listener: TcpListener, connections: Arc<Connections>) -> Self {
        Self {
            listener,
            connections,
        }
    }
}

impl axum::serve::Listener for Capped {
    type Io = Bounded<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded<TcpStream>, SocketAddr) {
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.listener).await;
            // A refused stream is dropped here, which closes it before anything is read.
            if let Some(admitted) = self.connections.accept(peer) {
                return (admitted.bound(stream), peer);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Finds the end of the first request's headers (`\r\n\r\n`) across reads.
#[derive(Debug, Default)]
struct HeaderScan {
    /// How much of `\r\n\r\n` the bytes so far end with; 4 once found.
    matched: usize,
}

impl HeaderScan {
    const END: &[u8; 4] = b"\r\n\r\n";

    fn complete(&self) -> bool {
        self.matched == Self::END.len()
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.complete() {
                return;
            }
            self.matched = if byte == Self::END[self.matched] {
                self.matched + 1
            } else if byte == b'\r' {
                1
            } else {
                0
            };
        }
    }
}

/// An admitted connection, closed when it is too slow (see [the design](self)).
pub struct Bounded<S> {
    stream: S,
    admission: Admission,
    headers: HeaderScan,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Bounded<S> {
    /// The wrapped stream (TCP, or TLS over TCP).
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Moves the deadline on after progress, once the headers are in.
    fn progressed(&mut self) {
        if self.headers.complete() {
            self.deadline.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
        }
    }

    /// An error once the deadline has passed; otherwise the timer wakes the task at it.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.deadline.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        let phase = if self.headers.complete() {
            "idle"
        } else {
            "headers"
        };
        self.admission.ledger.timed_out(self.admission.peer, phase);
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connection closed: {phase} timeout"),
        ))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    this.headers.feed(read);
                    this.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.check_deadline(cx) {
                Ok(()) => Poll::Pending,
                Err(err) => Poll::Ready(Err(err)),
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.progressed();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.check_deadline(cx) {
                Ok(()) => Poll::Pending,
                Err(err) => Poll::Ready(Err(err)),
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_headers_is_found_across_reads() {
        let mut scan = HeaderScan::default();
        scan.feed(b"GET / HTTP/1.1\r\nHost: a\r");
        assert!(!scan.complete());
        scan.feed(b"\n\r");
        assert!(!scan.complete());
        scan.feed(b"\nbody");
        assert!(scan.complete());
        let mut scan = HeaderScan::default();
        scan.feed(b"a\r\n\r\r\n\r");
        assert!(!scan.complete());
        scan.feed(b"\n");
        assert!(scan.complete());
    }

    #[test]
    fn the_log_says_at_most_one_line_per_period_with_the_count() {
        let mut log = RateLimitedLog::default();
        let start = Instant::now();
        assert_eq!(log.due(start), Some(1));
        for _ in 0..999 {
            assert_eq!(log.due(start + Duration::from_secs(1)), None);
        }
        assert_eq!(log.due(start + LOG_EVERY), Some(1000));
    }

    #[test]
    fn one_address_stops_at_its_cap_the_lan_at_the_total_and_loopback_has_its_reserve() {
        let ledger = Connections::new(Caps {
            max_connections: 5,
            max_per_address: 3,
            header_read_timeout: Duration::from_secs(1),
        });
        let attacker = IpAddr::from([192, 168, 1, 66]);
        let held: Vec<_> = (0..3).map(|_| ledger.admit(attacker).unwrap()).collect();
        assert_eq!(ledger.admit(attacker).unwrap_err(), Refusal::PerAddress);
        let tablet = ledger.admit(IpAddr::from([192, 168, 1, 2])).unwrap();
        let other = ledger.admit(IpAddr::from([192, 168, 1, 3])).unwrap();
        assert_eq!(
            ledger.admit(IpAddr::from([192, 168, 1, 4])).unwrap_err(),
            Refusal::Total
        );
        assert!(ledger.admit(IpAddr::from([127, 0, 0, 1])).is_ok());
        drop(held);
        drop((tablet, other));
        assert!(ledger.admit(attacker).is_ok(), "the caps are given back");
        assert_eq!(ledger.open.lock().unwrap().by_address.len(), 0);
    }
}
