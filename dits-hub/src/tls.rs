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

/// Loads `data/tls/{cert,key}.der`, creating them if absent.
pub fn load_or_create(data: &Path) -> anyhow::Result<Identity> {
    let dir = data.join("tls");
    let (cert_path, key_path) = (dir.join("cert.der"), dir.join("key.der"));
    if !cert_path.exists() {
        std::fs::create_dir_all(&dir)?;
        let generated = rcgen::generate_simple_self_signed(vec![
            "dits-hub".to_string(),
            "localhost".to_string(),
        ])?;
        let tmp = dir.join("key.der.tmp");
        std::fs::write(&tmp, generated.key_pair.serialize_der())?;
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
        fingerprint: dits_remote::tls::fingerprint(&cert),
        chain: vec![CertificateDer::from(cert)],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    })
}

pub fn server_config(id: &Identity, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(dits_remote::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(config))
}
