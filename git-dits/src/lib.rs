//! git-dits: the `git dits` porcelain, one module per verb over the libraries
//! (dits-core, dits-filter, git-remote-dits, dits-mount). The binary parses arguments and
//! calls these; nothing here is used by the hub.

pub mod commands;
pub mod output;
