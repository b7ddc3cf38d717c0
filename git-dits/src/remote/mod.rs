//! Talking to a hub: connecting (pinned TLS, tokens from Git's credential helpers),
//! finding the media a set of commits needs, moving objects both ways, and Git's
//! remote-helper protocol on top.

pub mod helper;
pub mod media;
pub mod progress;
pub mod session;
pub mod source;
pub mod transfer;

/// The small runtime the porcelain commands and the filter use to talk to a hub.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
