//! dits-wire: what a Dits client and hub share, and nothing else: the wire protocol over
//! QUIC (typed requests and answers, framing), remote URLs, ref and name rules, certificate
//! fingerprints and the QUIC/TLS settings both ends use, and the Git log format both read
//! changed paths from. Both the hub and `git-remote-dits` depend on it; it depends on
//! neither, and it pulls in no server crates.

pub mod changes;
pub mod refs;
pub mod tls;
pub mod url;
pub mod wire;

pub use url::{RemoteUrl, UrlError};
