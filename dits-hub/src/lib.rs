//! dits-hub: holds refs, recipes, chunks and Git packs for Dits repositories and serves
//! them over QUIC (the wire protocol) and HTTPS. The embedded default keeps metadata in
//! SQLite and objects in a local directory, both under one data directory.
//!
//! Layers, each importing only from those below it: [`error`] and [`names`]; the storage
//! traits and their backends ([`meta`], [`locks`], [`blobs`], with [`sqlite`] and [`pg`], [`pg_tls`]);
//! the Git mirror ([`mirror`]) and counters ([`metrics`]); [`backends`], which opens what
//! the settings name; [`server`], which serves requests; [`cli`] on top.

pub mod backends;
pub mod blobs;
pub mod cli;
pub mod error;
pub mod locks;
pub mod meta;
pub mod metrics;
pub mod mirror;
pub mod names;
pub mod pg;
pub mod pg_tls;
pub mod private;
pub mod server;
pub mod sqlite;
pub mod tls;
pub mod web;
pub mod worker;
