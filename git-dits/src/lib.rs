//! git-dits: the `git dits` porcelain, the `git-remote-dits` remote helper and the
//! client side of talking to a hub. The binaries are thin; the work is here and in
//! dits-core, dits-filter and dits-remote.

pub mod commands;
pub mod git;
pub mod logging;
pub mod mount;
pub mod output;
pub mod remote;
