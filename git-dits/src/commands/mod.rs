//! One module per `git dits` subcommand.

pub mod deps;
pub mod filter;
pub mod fsck;
pub mod install;
pub mod key;
pub mod locks;
pub mod ls_files;
pub mod migrate;
pub mod pre_push;
pub mod proxy;
pub mod prune;
pub mod pull_media;
pub mod relink;
pub mod show;
pub mod track;
