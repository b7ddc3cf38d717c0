//! git-remote-dits: the client side of talking to a hub. Connecting (pinned TLS, tokens
//! from Git's credential helpers), finding the media a set of commits needs, moving
//! objects both ways, the lock client, the media source the filter and the mount read
//! through, and Git's remote-helper protocol on top. The `git-remote-dits` binary is a
//! thin shell over [`helper::main`]; the porcelain (`git-dits`) and the mount
//! (`dits-mount`) use the rest. Nothing here depends on the hub's crates.

pub mod client;
pub mod derived;
pub mod direct;
pub mod git;
pub mod helper;
pub mod keys;
pub mod locks;
pub mod logging;
pub mod media;
pub mod plan;
pub mod progress;
pub mod protocol;
pub mod session;
pub mod source;
pub mod transfer;

pub use client::{Hub, HubError, TrustSettings};

/// The small runtime the porcelain commands and the filter use to talk to a hub.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
