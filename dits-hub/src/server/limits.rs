//! What any peer, signed in or not, can make the hub hold and for how long. The token is
//! inside a request's header frame, so everything up to the end of that frame is spent on
//! a stranger: it is kept small and short-lived. Spec: docs/threat-model.md.
//!
//! - QUIC connections: at most [`MAX_CONNECTIONS`] in all and
//!   [`MAX_CONNECTIONS_PER_ADDRESS`] from one IP address; one with no request open for
//!   [`CONNECTION_IDLE`] is closed; a handshake must finish within [`HANDSHAKE_DEADLINE`],
//!   and while more than [`RETRY_ABOVE_HANDSHAKES`] are under way a new peer first gets a
//!   QUIC Retry, so a source address that cannot receive (a spoofed one) holds nothing;
//! - HTTPS connections: at most [`MAX_HTTP_CONNECTIONS`] and
//!   [`MAX_HTTP_CONNECTIONS_PER_ADDRESS`]; the TLS handshake and each request's headers must
//!   arrive within [`HTTP_HEADER_DEADLINE`], so an idle connection lasts no longer than that;
//! - streams: at most [`MAX_STREAMS_PER_CONNECTION`] requests open on a connection at once,
//!   with QUIC receive windows of [`STREAM_RECEIVE_WINDOW`] / [`RECEIVE_WINDOW`], the
//!   latter raised to [`MEMBER_RECEIVE_WINDOW`] once a request on the connection is served;
//! - request headers: at most [`MAX_REQUEST_FRAME`] bytes, whole within
//!   [`HEADER_DEADLINE`]; headers over [`SMALL_FRAME`] share one hub-wide budget of
//!   [`HEADER_BUDGET`] bytes, and one that does not fit is refused at once (its client
//!   retries), not queued;
//! - bodies and answers: a request whose peer neither sends nor takes a byte for
//!   [`STALL_DEADLINE`] is ended.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use dits_wire::wire::{read_frame_body, read_frame_len};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::error::HubError;

/// The largest request header the hub reads. Headers are JSON: the biggest honest ones are
/// `missing` (8,192 ids, ~550 KB) and `update-refs` naming every recipe of a push
/// (~67 bytes each: 16 MiB is ~250,000 files).
pub const MAX_REQUEST_FRAME: u32 = 16 << 20;
/// Headers up to this size are read without asking the budget: every `refs`, `get`,
/// `git-packs`, lock call and small `update-refs` is one.
pub const SMALL_FRAME: u32 = 128 << 10;
/// Bytes of larger headers being read at once, across the hub.
pub const HEADER_BUDGET: usize = 64 << 20;
/// From a stream's opening to its header's last byte.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(20);
/// Longest wait for the peer to send or take a byte once the header is in.
pub const STALL_DEADLINE: Duration = Duration::from_secs(60);
pub const MAX_STREAMS_PER_CONNECTION: u32 = 32;
/// Generous for a studio behind one NAT address (each `git` process opens its own
/// connection: a hundred artists locking at once is a hundred); a bound for one attacker.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
pub const MAX_CONNECTIONS: usize = 4096;
pub const MAX_HTTP_CONNECTIONS: usize = 4096;
pub const MAX_HTTP_CONNECTIONS_PER_ADDRESS: usize = 256;
/// For the TLS handshake, and for each request's headers (including the wait for the next
/// request on a kept-alive connection).
pub const HTTP_HEADER_DEADLINE: Duration = Duration::from_secs(10);
/// A connection with no request open for this long is closed. Long enough for a client's
/// local work between requests (indexing a large Git pack during a clone).
pub const CONNECTION_IDLE: Duration = Duration::from_secs(300);
/// What a peer may send on one stream ahead of the hub reading it. Under loss a window
/// also holds everything sent past a lost datagram until it is resent (about two round
/// trips' worth): at 1 Gbit/s and 100 ms that is ~25 MB. The sum over a connection's
/// streams is bounded by the connection's window below.
pub const STREAM_RECEIVE_WINDOW: u32 = 32 << 20;
/// What a peer may send on a whole connection ahead of the hub reading it, until one of
/// its requests has been served (so it holds a valid token): all a stranger can make the
/// hub buffer per connection.
pub const RECEIVE_WINDOW: u32 = 32 << 20;
/// The same once a request on the connection has been served: a member's push gets
/// windows sized for a lossy long-haul link.
pub const MEMBER_RECEIVE_WINDOW: u32 = 128 << 20;

/// A QUIC handshake not finished this long after the peer's first packet is dropped, and
/// its connection slot freed. Honest handshakes take a few round trips.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// While more handshakes than this are under way, a peer whose address is not yet proven
/// gets a QUIC Retry (one more round trip) before any state is kept for it: a flood of
/// Initial packets from spoofed addresses then costs the hub no slots. Below it, clients
/// connect without the extra round trip.
pub const RETRY_ABOVE_HANDSHAKES: usize = 64;

/// The hub-wide counters behind the limits.
pub struct Limits {
    header_budget: Arc<Semaphore>,
    /// QUIC handshakes admitted and not yet finished (or failed).
    handshakes: Arc<AtomicUsize>,
    pub quic_connections: ConnectionCounter,
    pub http_connections: ConnectionCounter,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_budget: Arc::new(Semaphore::new(HEADER_BUDGET)),
            handshakes: Arc::default(),
            quic_connections: ConnectionCounter::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS),
            http_connections: ConnectionCounter::new(
                MAX_HTTP_CONNECTIONS,
                MAX_HTTP_CONNECTIONS_PER_ADDRESS,
            ),
        }
    }
}

/// Open connections, in all and by address, against their caps.
#[derive(Clone)]
pub struct ConnectionCounter {
    cap: usize,
    cap_per_address: usize,
    counts: Arc<Mutex<ConnectionCounts>>,
}

#[derive(Default)]
struct ConnectionCounts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place in the counts, given back when it is dropped.
pub struct ConnectionSlot {
    address: IpAddr,
    counts: Arc<Mutex<ConnectionCounts>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

impl ConnectionCounter {
    pub fn new(cap: usize, cap_per_address: usize) -> Self {
        ConnectionCounter {
            cap,
            cap_per_address,
            counts: Default::default(),
        }
    }

    /// A slot for a new connection from `address`, or `None` when the hub or that address
    /// has as many as it may.
    pub fn admit(&self, address: IpAddr) -> Option<ConnectionSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
        if counts.total >= self.cap || from_address >= self.cap_per_address {
            return None;
        }
        counts.total += 1;
        counts.by_address.insert(address, from_address + 1);
        Some(ConnectionSlot {
            address,
            counts: self.counts.clone(),
        })
    }
}

/// A QUIC handshake counted as under way until dropped.
pub struct Handshake(Arc<AtomicUsize>);

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limits {
    /// Whether a new QUIC peer must prove its address (a Retry) before it is admitted:
    /// only while many handshakes are under way, and never twice.
    pub fn wants_retry(&self, address_validated: bool) -> bool {
        !address_validated && self.handshakes_under_way() >= RETRY_ABOVE_HANDSHAKES
    }

    pub fn handshakes_under_way(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn handshake_started(&self) -> Handshake {
        self.handshakes.fetch_add(1, Ordering::SeqCst);
        Handshake(self.handshakes.clone())
    }

    /// Reads a request's header frame within [`HEADER_DEADLINE`], holding budget for it
    /// while it is read when it is over [`SMALL_FRAME`].
    pub async fn read_header<R, T>(&self, reader: &mut R) -> Result<T, HubError>
    where
        R: AsyncRead + Unpin,
        T: for<'de> Deserialize<'de>,
    {
        let bad = |e| HubError::BadRequest(format!("bad request: {e}"));
        let read = async {
            let len = read_frame_len(reader, MAX_REQUEST_FRAME)
                .await
                .map_err(bad)?;
            let _held = if len > SMALL_FRAME {
                let budget = self.header_budget.clone().try_acquire_many_owned(len);
                Some(budget.map_err(|_| HubError::Unavailable {
                    what: "room for a large request header (too many are being read)",
                    cause: anyhow::anyhow!("header budget of {HEADER_BUDGET} bytes in use"),
                })?)
            } else {
                None
            };
            read_frame_body(reader, len).await.map_err(bad)
        };
        match tokio::time::timeout(HEADER_DEADLINE, read).await {
            Ok(header) => header,
            Err(_) => Err(HubError::BadRequest(format!(
                "bad request: the header did not arrive within {} s",
                HEADER_DEADLINE.as_secs()
            ))),
        }
    }
}

/// A stream reader or writer that fails with `TimedOut` once it has waited `limit` for the
/// peer without a byte moving; any progress restarts the clock.
pub struct Deadlined<T> {
    inner: T,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<T> Deadlined<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        Deadlined {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            waiting: false,
        }
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Called when the inner side is pending: starts the clock if it was not running, and
    /// says whether it has run out.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + self.limit;
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// What the inner side's `poll` answered, with the deadline applied: progress restarts
    /// the clock, waiting past it is `TimedOut`.
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.waiting = false;
                Poll::Ready(result)
            }
            Poll::Pending if self.poll_expired(cx) => Poll::Ready(Err(self.expired())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn expired(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer moved no data for {} s", self.limit.as_secs()),
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlined<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.guard(cx, polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlined<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn connections_are_capped_per_address_and_given_back() {
        let counter = ConnectionCounter::new(5, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let from_a: Vec<_> = (0..3)
            .map(|_| counter.admit(a).expect("under the cap"))
            .collect();
        assert!(counter.admit(a).is_none(), "one over the cap from a");
        let from_b: Vec<_> = (0..2).map(|_| counter.admit(b).unwrap()).collect();
        assert!(counter.admit(c).is_none(), "the hub's cap is reached");
        drop(from_a);
        assert!(
            counter.admit(a).is_some(),
            "slots come back when connections end"
        );
        drop(from_b);
    }

    #[test]
    fn retry_is_asked_only_under_load_and_only_of_unproven_addresses() {
        let limits = Limits::default();
        assert!(!limits.wants_retry(false), "no handshakes under way");
        let under_way: Vec<_> = (0..RETRY_ABOVE_HANDSHAKES)
            .map(|_| limits.handshake_started())
            .collect();
        assert!(limits.wants_retry(false), "at the threshold");
        assert!(!limits.wants_retry(true), "an address already proven");
        drop(under_way);
        assert_eq!(limits.handshakes_under_way(), 0);
        assert!(!limits.wants_retry(false), "handshakes given back");
    }

    #[tokio::test]
    async fn a_header_claiming_more_than_the_cap_is_refused_before_it_is_read() {
        let limits = Limits::default();
        let (mut client, mut server) = tokio::io::duplex(1 << 10);
        client
            .write_all(&(64u32 << 20).to_be_bytes())
            .await
            .unwrap();
        let refused = limits
            .read_header::<_, serde_json::Value>(&mut server)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("too large"), "{refused}");
    }

    #[tokio::test]
    async fn large_headers_share_one_budget() {
        let limits = Limits::default();
        // Take most of the budget, as headers being read would.
        let held = limits
            .header_budget
            .clone()
            .try_acquire_many_owned((HEADER_BUDGET - 1000) as u32)
            .unwrap();
        let (mut client, mut server) = tokio::io::duplex(1 << 10);
        client.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
        let refused = limits
            .read_header::<_, serde_json::Value>(&mut server)
            .await
            .unwrap_err();
        assert!(matches!(refused, HubError::Unavailable { .. }), "{refused}");
        // A small header does not need the budget.
        let (mut client, mut server) = tokio::io::duplex(1 << 10);
        client.write_all(&2u32.to_be_bytes()).await.unwrap();
        client.write_all(b"{}").await.unwrap();
        let header: serde_json::Value = limits.read_header(&mut server).await.unwrap();
        assert_eq!(header, serde_json::json!({}));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_cut_off_and_a_slow_one_is_not() {
        let (mut client, server) = tokio::io::duplex(1 << 10);
        let peer = tokio::spawn(async move {
            // A byte every 50 s, then silence with the stream still open.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                client.write_all(b"x").await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(1000)).await;
            drop(client);
        });
        let mut reader = Deadlined::new(server, Duration::from_secs(60));
        let mut buf = [0u8; 1];
        for _ in 0..3 {
            reader.read_exact(&mut buf).await.unwrap();
        }
        let started = tokio::time::Instant::now();
        let stalled = reader.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(stalled.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        peer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_sent_too_slowly_is_refused() {
        let limits = Limits::default();
        let (mut client, mut server) = tokio::io::duplex(1 << 10);
        client.write_all(&100u32.to_be_bytes()).await.unwrap();
        client.write_all(b"{").await.unwrap();
        let refused = limits
            .read_header::<_, serde_json::Value>(&mut server)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("within 20 s"), "{refused}");
    }
}
