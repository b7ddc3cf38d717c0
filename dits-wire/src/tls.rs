//! TLS for QUIC: certificate fingerprints and the client's verifier. A hub with no
//! configured certificate makes a self-signed one; clients trust it by its SHA-256
//! fingerprint (`dits.<hub>.fingerprint`), optionally learnt on first use. A hub with a
//! CA-signed certificate is trusted like an HTTPS server: the system's roots plus an
//! optional CA file (`dits.caInfo`, else `http.sslCAInfo`), checked against the URL's host.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// `SHA256:` and the certificate's SHA-256 as lowercase hex.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("SHA256:{hex}")
}

/// Two spellings of one fingerprint compare equal (case, optional `SHA256:`, colons).
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_start_matches("SHA256:")
            .trim_start_matches("sha256:")
            .replace(':', "")
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A verifier of CA-signed hub certificates: the system's roots plus those in `ca_file`
/// (PEM). `None` when there are no roots at all.
pub fn ca_verifier(
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Arc<dyn ServerCertVerifier>>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("reading CA file {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("reading CA file {}: {e}", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "CA file {} holds no certificates",
            path.display()
        );
        for cert in certs {
            roots.add(cert)?;
        }
    }
    if roots.is_empty() {
        return Ok(None);
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()?;
    Ok(Some(verifier))
}

/// Why a hub's certificate was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedBy {
    /// It is the pinned one.
    Pin,
    /// A trusted CA signed it for the URL's host: nothing to pin, and pinning it would
    /// break the client as soon as the hub's certificate is reissued.
    Ca,
    /// Nothing vouched for it; trust on first use accepted it, and the caller should
    /// pin it.
    FirstUse,
}

/// Accepts the pinned certificate if one is pinned; otherwise one a trusted CA signed for
/// the URL's host; otherwise (trust on first use) whatever is presented. It records what
/// was seen so the caller can report or pin it. Handshake signatures are always verified
/// against the presented certificate's key.
#[derive(Debug)]
pub struct PinnedVerifier {
    expected: Option<String>,
    trust_on_first_use: bool,
    ca: Option<Arc<dyn ServerCertVerifier>>,
    seen: Mutex<Option<String>>,
    trusted_by: Mutex<Option<TrustedBy>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    pub fn new(
        expected: Option<String>,
        trust_on_first_use: bool,
        ca: Option<Arc<dyn ServerCertVerifier>>,
    ) -> Arc<Self> {
        Arc::new(PinnedVerifier {
            expected,
            trust_on_first_use,
            ca,
            seen: Mutex::new(None),
            trusted_by: Mutex::new(None),
            provider: provider(),
        })
    }

    /// The fingerprint the server presented, once a handshake got that far.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().ok()?.clone()
    }

    /// Why the last certificate presented was accepted, if it was.
    pub fn trusted_by(&self) -> Option<TrustedBy> {
        *self.trusted_by.lock().ok()?
    }

    fn accept(&self, by: TrustedBy) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut slot) = self.trusted_by.lock() {
            *slot = Some(by);
        }
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(got.clone());
        }
        if let Ok(mut slot) = self.trusted_by.lock() {
            *slot = None;
        }
        if let Some(want) = &self.expected {
            return if same_fingerprint(want, &got) {
                self.accept(TrustedBy::Pin)
            } else {
                Err(rustls::Error::General(format!(
                    "hub certificate {got} is not the pinned one"
                )))
            };
        }
        let by_ca = match &self.ca {
            Some(ca) => ca.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Err(rustls::Error::General("no trusted CA certificates".into())),
        };
        match by_ca {
            Ok(_) => self.accept(TrustedBy::Ca),
            Err(_) if self.trust_on_first_use => self.accept(TrustedBy::FirstUse),
            Err(e) => Err(rustls::Error::General(format!(
                "hub certificate {got} is neither pinned nor signed by a trusted CA ({e})"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A QUIC client configuration that trusts through `verifier`, paces with `congestion`
/// and declares a connection dead after `idle` without a packet from the hub (QUIC uses
/// the lower of the two peers' idle timeouts, and the hub's is 60 s).
pub fn quic_client_config(
    verifier: Arc<PinnedVerifier>,
    idle: std::time::Duration,
    congestion: Congestion,
) -> anyhow::Result<quinn::ClientConfig> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![crate::wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = bulk_transport(congestion);
    let idle = idle.clamp(std::time::Duration::from_secs(1), IDLE_TIMEOUT);
    transport.max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle)?));
    // Several keep-alives per idle period, so a quiet but healthy connection (a mount
    // between reads) is never taken for a dead one.
    transport.keep_alive_interval(Some((idle / 4).min(std::time::Duration::from_secs(10))));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Socket buffer size asked for on QUIC endpoints. Linux's 208 KiB default drops
/// datagrams under a bulk transfer (seen on loopback), and every drop halves the
/// congestion window; the kernel caps the request at net.core.{r,w}mem_max.
const UDP_BUFFER: usize = 8 << 20;

/// A QUIC endpoint on `addr` with large socket buffers: a server when `server` is given,
/// otherwise a client-only endpoint.
pub fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack like std's bind would not be; keep "[::]" meaning IPv6 only.
        socket.set_only_v6(true)?;
    }
    // Best effort: a smaller buffer still works, only slower.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    socket.bind(&addr.into())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        runtime,
    )
}

/// The QUIC congestion controller, the same on client and hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    Bbr,
    Cubic,
    NewReno,
}

impl Congestion {
    /// The controller used when nothing says otherwise.
    pub const DEFAULT: Congestion = Congestion::Bbr;

    /// `DITS_QUIC_CONGESTION` (`bbr`, `cubic`, `newreno`), for comparing them on a real
    /// link (`bench/lossy.sh`); anything else, or nothing, is [`Congestion::DEFAULT`].
    pub fn from_env() -> Congestion {
        Congestion::from_env_or(None)
    }

    /// `DITS_QUIC_CONGESTION` if set to a known name, else `configured` (a client's
    /// `dits.congestion`) if that is one, else [`Congestion::DEFAULT`].
    pub fn from_env_or(configured: Option<&str>) -> Congestion {
        std::env::var("DITS_QUIC_CONGESTION")
            .ok()
            .and_then(|name| Congestion::from_name(&name))
            .or_else(|| configured.and_then(Congestion::from_name))
            .unwrap_or(Congestion::DEFAULT)
    }

    pub fn from_name(name: &str) -> Option<Congestion> {
        match name.trim().to_ascii_lowercase().as_str() {
            "bbr" => Some(Congestion::Bbr),
            "cubic" => Some(Congestion::Cubic),
            "newreno" => Some(Congestion::NewReno),
            _ => None,
        }
    }

    pub fn apply(self, transport: &mut quinn::TransportConfig) {
        use quinn::congestion::{BbrConfig, ControllerFactory, CubicConfig, NewRenoConfig};
        let factory: Arc<dyn ControllerFactory + Send + Sync> = match self {
            Congestion::Bbr => Arc::new(BbrConfig::default()),
            Congestion::Cubic => Arc::new(CubicConfig::default()),
            Congestion::NewReno => Arc::new(NewRenoConfig::default()),
        };
        transport.congestion_controller_factory(factory);
    }
}

/// How long a connection may go without a packet from its peer before it is dead: the
/// hub's setting, and the most a client may ask for.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// QUIC transport settings for moving media, shared by client and hub. Quinn's defaults
/// size flow-control windows for ~100 ms at 100 Mb/s and cap datagrams at 1452 bytes;
/// media transfers want windows of tens of MB and, where the path allows (loopback, LAN
/// jumbo frames), larger datagrams, which MTU discovery finds and falls back from.
pub fn bulk_transport(congestion: Congestion) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    congestion.apply(&mut transport);
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("60 s fits"),
    ));
    transport.stream_receive_window(quinn::VarInt::from_u32(32 << 20));
    transport.receive_window(quinn::VarInt::from_u32(128 << 20));
    transport.send_window(128 << 20);
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(9000);
    transport.mtu_discovery_config(Some(mtu));
    transport
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for `localhost` signed by a fresh CA, the CA's verifier, and a
    /// self-signed one.
    fn certificates() -> (
        CertificateDer<'static>,
        Arc<dyn ServerCertVerifier>,
        CertificateDer<'static>,
    ) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let own_key = rcgen::KeyPair::generate().unwrap();
        let own = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&own_key)
            .unwrap();
        (leaf.der().clone(), verifier, own.der().clone())
    }

    fn check(v: &PinnedVerifier, cert: &CertificateDer<'_>) -> bool {
        let name = ServerName::try_from("localhost").unwrap();
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn the_verifier_says_whether_a_ca_a_pin_or_first_use_vouched() {
        let (ca_signed, ca, self_signed) = certificates();
        let v = PinnedVerifier::new(None, true, Some(ca.clone()));
        assert!(check(&v, &ca_signed));
        assert_eq!(v.trusted_by(), Some(TrustedBy::Ca));
        assert!(check(&v, &self_signed));
        assert_eq!(v.trusted_by(), Some(TrustedBy::FirstUse));

        let v = PinnedVerifier::new(Some(fingerprint(&self_signed)), false, Some(ca.clone()));
        assert!(check(&v, &self_signed));
        assert_eq!(v.trusted_by(), Some(TrustedBy::Pin));
        assert!(!check(&v, &ca_signed));
        assert_eq!(v.trusted_by(), None);

        let v = PinnedVerifier::new(None, false, Some(ca));
        assert!(!check(&v, &self_signed));
        assert_eq!(v.trusted_by(), None);
    }

    #[test]
    fn fingerprints_compare_across_spellings() {
        let f = fingerprint(b"cert");
        assert!(same_fingerprint(&f, &f.to_uppercase()));
        assert!(same_fingerprint(&f, f.trim_start_matches("SHA256:")));
        assert!(!same_fingerprint(&f, &fingerprint(b"other")));
    }
}
