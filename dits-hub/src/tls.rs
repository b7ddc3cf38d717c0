//! The hub's certificate: the one configured, or a self-signed one made on first start
//! and kept in the data directory, so its fingerprint (what clients pin) stays the same.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub fingerprint: String,
}

/// A configured certificate chain and key, both PEM (as a CA issues them).
pub fn load_pem(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading certificate {}: {e}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("reading private key {}: {e}", key.display()))?;
    Ok(Identity {
        fingerprint: dits_wire::tls::fingerprint(&chain[0]),
        chain,
        key,
    })
}

/// The configured certificate if both files are given, else the self-signed one.
pub fn identity(data: &Path, cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Identity> {
    match (cert, key) {
        (Some(c), Some(k)) => load_pem(c, k),
        (None, None) => load_or_create(data),
        _ => anyhow::bail!(
            "give both --tls-cert and --tls-key, or neither (for a self-signed certificate)"
        ),
    }
}

/// Loads `data/tls/{cert,key}.der`, creating them if absent.
pub fn load_or_create(data: &Path) -> anyhow::Result<Identity> {
    let dir = data.join("tls");
    let (cert_path, key_path) = (dir.join("cert.der"), dir.join("key.der"));
    if !cert_path.exists() {
        crate::private::create_dir(&dir)?;
        let generated = rcgen::generate_simple_self_signed(vec![
            "dits-hub".to_string(),
            "localhost".to_string(),
        ])?;
        let tmp = dir.join("key.der.tmp");
        // A leftover of a start killed mid-write; written anew below.
        let _ = std::fs::remove_file(&tmp);
        crate::private::write_new(&tmp, &generated.key_pair.serialize_der())?;
        std::fs::rename(&tmp, &key_path)?;
        let tmp = dir.join("cert.der.tmp");
        std::fs::write(&tmp, generated.cert.der())?;
        std::fs::rename(&tmp, &cert_path)?;
    }
    let cert =
        std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key =
        std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    Ok(Identity {
        fingerprint: dits_wire::tls::fingerprint(&cert),
        chain: vec![CertificateDer::from(cert)],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    })
}

pub fn server_config(id: &Identity, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(dits_wire::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(config))
}
