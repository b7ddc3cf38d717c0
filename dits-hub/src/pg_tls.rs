//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` in the `postgres://` URL:
//!
//! | sslmode | TLS | certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default, as in libpq) | if the server offers it | not checked |
//! | `require` | always | not checked |
//! | `verify-full` | always | signed by a system CA or one in `sslrootcert`, for the URL's host |
//!
//! `verify-ca` (chain without host name) is refused with a pointer to `verify-full`.
//! The connector is ours, on `tokio-rustls` (already in the build for HTTPS): the
//! `tokio-postgres-rustls` crate is unmaintained and would pull a second crypto provider.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The TLS settings of a metadata URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query; returns the URL for
/// tokio-postgres (which knows only disable, prefer and require) and the settings.
pub fn split_url(url: &str) -> anyhow::Result<(String, PgTls)> {
    let mut tls = PgTls {
        mode: SslMode::Prefer,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), tls));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                tls.mode = match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-full" => SslMode::VerifyFull,
                    "verify-ca" => anyhow::bail!(
                        "sslmode=verify-ca is not supported: use verify-full (checks the CA and the host name) or require"
                    ),
                    other => anyhow::bail!(
                        "sslmode={other}: expected disable, prefer, require or verify-full"
                    ),
                }
            }
            "sslrootcert" => tls.root_cert = Some(PathBuf::from(value)),
            _ => kept.push(pair),
        }
    }
    kept.push(match tls.mode {
        SslMode::Disable => "sslmode=disable",
        SslMode::Prefer => "sslmode=prefer",
        SslMode::Require | SslMode::VerifyFull => "sslmode=require",
    });
    Ok((format!("{base}?{}", kept.join("&")), tls))
}

impl PgTls {
    /// The connector for these settings.
    pub fn connector(&self) -> anyhow::Result<RustlsConnect> {
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match self.mode {
            SslMode::VerifyFull => dits_wire::tls::ca_verifier(self.root_cert.as_deref())?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "sslmode=verify-full: no CA certificates (install the system's, or name one with sslrootcert=FILE)"
                    )
                })?,
            // As libpq: encrypted, certificate unchecked. The hub's trust-on-first-use
            // verifier with nothing pinned accepts any certificate while still checking
            // the handshake's signatures against it.
            _ => dits_wire::tls::PinnedVerifier::new(None, true, None),
        };
        let config = rustls::ClientConfig::builder_with_provider(dits_wire::tls::provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(RustlsConnect {
            config: Arc::new(config),
        })
    }
}

/// Makes a TLS connection per database connection.
#[derive(Clone)]
pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = RustlsConnectTo;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectTo, Self::Error> {
        Ok(RustlsConnectTo {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

/// One connection's handshake, to `name`.
pub struct RustlsConnectTo {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnectTo
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            Ok(PgTlsStream(connector.connect(self.name, stream).await?))
        })
    }
}

pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    /// None: SCRAM's channel binding is optional, and password-less trust setups are the
    /// common case here.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (url, tls) = split_url("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(tls.mode, SslMode::Prefer);
        let (url, tls) = split_url(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h/db?connect_timeout=3&sslmode=require");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca.pem")));
        let (url, tls) = split_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(
            (url.as_str(), tls.mode),
            ("postgres://u@h/db?sslmode=disable", SslMode::Disable)
        );
        let refused = split_url("postgres://u@h/db?sslmode=verify-ca").unwrap_err();
        assert!(refused.to_string().contains("verify-full"), "{refused}");
        assert!(split_url("postgres://u@h/db?sslmode=maybe").is_err());
    }
}
