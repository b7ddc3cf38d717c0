//! dits-remote: what a Dits client and hub share (the wire protocol over QUIC, remote
//! URLs, certificate fingerprints) and the client side of talking to a hub.

pub mod changes;
pub mod client;
pub mod tls;
pub mod url;
pub mod wire;

pub use client::{Hub, HubError, TrustSettings};
pub use url::RemoteUrl;
