//! dits-hub: holds refs, recipes, chunks and Git packs for Dits repositories and serves
//! them over QUIC (the wire protocol) and HTTPS. The embedded default keeps metadata in
//! SQLite and objects in a local directory, both under one data directory.

pub mod backends;
pub mod blobs;
pub mod blocking;
pub mod cli;
pub mod locks;
pub mod locks_pg;
pub mod locks_redis;
pub mod meta;
pub mod meta_pg;
pub mod meta_sqlite;
pub mod metrics;
pub mod mirror;
pub mod pg;
pub mod server;
pub mod tls;
