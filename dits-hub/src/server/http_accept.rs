//! Admission of HTTPS connections: each TCP connection takes a slot within the caps of
//! [`crate::server::limits`] before its TLS handshake starts, or is closed at once; an
//! admitted one is ended once no byte has moved either way for the stall deadline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::server::limits::{ConnectionCounter, ConnectionSlot, Deadlined, STALL_DEADLINE};

/// The inner acceptor under TLS: admits or refuses each TCP connection.
#[derive(Clone)]
pub struct CappedAcceptor {
    counter: ConnectionCounter,
}

impl CappedAcceptor {
    pub fn new(counter: ConnectionCounter) -> Self {
        CappedAcceptor { counter }
    }
}

impl<S> Accept<TcpStream, S> for CappedAcceptor {
    type Stream = Admitted;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Admitted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let admitted = stream.peer_addr().and_then(|peer| {
            let slot = self.counter.admit(peer.ip()).ok_or_else(|| {
                tracing::warn!(%peer, "HTTPS connection refused: too many connections");
                io::Error::other("too many connections")
            })?;
            stream.set_nodelay(true)?;
            Ok(Admitted {
                io: Deadlined::new(stream, STALL_DEADLINE),
                _slot: slot,
            })
        });
        std::future::ready(admitted.map(|a| (a, service)))
    }
}

/// An admitted connection: holds its slot until it is dropped.
pub struct Admitted {
    io: Deadlined<TcpStream>,
    _slot: ConnectionSlot,
}

impl AsyncRead for Admitted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
