//! File locks: the store behind them (one async trait, so the SQLite, PostgreSQL and
//! Redis backends honour the same atomic acquire/release) and, in [`service`], the
//! operations both the QUIC wire protocol and the HTTP API serve.
//!
//! One lock per path per repository. A lock may be scoped to a branch: it then only
//! stops pushes to that branch; unscoped (the default, like Git LFS) it stops every push
//! that changes the path. Either way nobody else can take the path's lock meanwhile.

pub mod pg;
pub mod redis;
pub mod service;
pub mod sqlite;

use dits_wire::wire::{Lock, LockOwner};

use crate::meta::User;

/// A stored lock, with the owner's user id for ownership checks.
#[derive(Debug, Clone)]
pub struct StoredLock {
    pub id: i64,
    pub path: String,
    pub owner_id: i64,
    pub owner: String,
    pub branch: Option<String>,
    pub locked_at: i64,
}

impl StoredLock {
    pub fn to_wire(&self) -> Lock {
        Lock {
            id: self.id.to_string(),
            path: self.path.clone(),
            locked_at: rfc3339(self.locked_at),
            owner: LockOwner {
                name: self.owner.clone(),
            },
            branch: self.branch.clone(),
        }
    }

    /// Whether a push to `ref_name` is subject to this lock.
    pub fn covers_ref(&self, ref_name: &str) -> bool {
        match &self.branch {
            None => true,
            Some(b) => ref_name.strip_prefix("refs/heads/") == Some(b.as_str()),
        }
    }
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Default, Clone)]
pub struct LockQuery {
    pub path: Option<String>,
    pub id: Option<i64>,
    pub owner: Option<String>,
    /// Locks with an id greater than this (the previous page's last id).
    pub after: Option<i64>,
    pub limit: u32,
}

/// Where locks live. Acquire and release are atomic: of any number of concurrent
/// acquires of one path exactly one succeeds, and the rest learn who holds it.
#[async_trait::async_trait]
pub trait LockStore: Send + Sync {
    /// `Ok(Ok(lock))` if taken now, `Ok(Err(holder))` if someone (maybe the same user)
    /// holds the path.
    async fn acquire(
        &self,
        repo: i64,
        path: &str,
        owner: &User,
        branch: Option<&str>,
    ) -> anyhow::Result<Result<StoredLock, StoredLock>>;
    /// Removes lock `id` and records who did it; `None` if there is no such lock.
    async fn release(
        &self,
        repo: i64,
        id: i64,
        by: &User,
        forced: bool,
    ) -> anyhow::Result<Option<StoredLock>>;
    async fn get(&self, repo: i64, id: i64) -> anyhow::Result<Option<StoredLock>>;
    async fn list(&self, repo: i64, query: &LockQuery) -> anyhow::Result<Vec<StoredLock>>;
    /// Every lock on `paths` (for checking a push), however many.
    async fn on_paths(&self, repo: i64, paths: &[String]) -> anyhow::Result<Vec<StoredLock>>;
    async fn any(&self, repo: i64) -> anyhow::Result<bool>;
}

/// A lock store that is the durable record (SQLite or PostgreSQL): the Redis backend
/// takes and releases locks in one first and reconciles from it.
#[async_trait::async_trait]
pub trait DurableLocks: LockStore {
    /// Every lock of every repository, with its repository id.
    async fn all(&self) -> anyhow::Result<Vec<(i64, StoredLock)>>;
    async fn events(&self, repo: i64) -> anyhow::Result<Vec<LockEvent>>;
}

/// One entry of the lock audit trail: `action` is lock, unlock or force-unlock.
#[derive(Debug, Clone)]
pub struct LockEvent {
    pub lock: i64,
    pub path: String,
    pub owner: String,
    pub actor: String,
    pub action: String,
    pub at: i64,
}
