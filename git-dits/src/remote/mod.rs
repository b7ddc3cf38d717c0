//! Talking to a hub: connecting (pinned TLS, tokens from Git's credential helpers),
//! finding the media a set of commits needs, moving objects both ways, and Git's
//! remote-helper protocol on top.

pub mod helper;
pub mod media;
pub mod progress;
pub mod session;
pub mod transfer;
