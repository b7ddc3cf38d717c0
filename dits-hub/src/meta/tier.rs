//! What the cold-tier reaper asks of the metadata store ([`TierStore`]): per-repository
//! policies (move objects not read for so long to that storage class), when objects were
//! last read (recorded in batches), and each pack's storage class (none recorded: the
//! standard, hot class). Classes are per pack: a pack moves when every object in it may.

use dits_core::ChunkId;

/// A repository's cold-tier policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdPolicy {
    /// Objects not read (nor uploaded) for this many seconds may move.
    pub after: i64,
    /// The storage class they move to (an S3 class name, e.g. `STANDARD_IA`).
    pub class: String,
}

/// A pack every object of which may move to `class`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdPack {
    pub pack: String,
    pub bytes: u64,
    pub class: String,
}

/// The class a pack with no recorded class is in.
pub const STANDARD: &str = "standard";

#[async_trait::async_trait]
pub trait TierStore: Send + Sync {
    /// Sets (or, `None`, removes) the repository's policy.
    async fn set_policy(&self, repo: i64, policy: Option<&ColdPolicy>) -> anyhow::Result<()>;
    async fn policy(&self, repo: i64) -> anyhow::Result<Option<ColdPolicy>>;
    /// `ids` were read at `at` (Unix seconds); rows read within the last hour are left
    /// alone, so a busy object is written at most hourly.
    async fn record_access(&self, ids: &[ChunkId], at: i64) -> anyhow::Result<()>;
    /// Standard-class packs whose every object is held only by repositories with a
    /// policy, and was neither read nor uploaded within the longest of their ages (at
    /// `now`); the class is theirs, and packs whose repositories disagree are left out.
    async fn cold_candidates(&self, now: i64) -> anyhow::Result<Vec<ColdPack>>;
    async fn set_pack_class(&self, pack: &str, class: &str) -> anyhow::Result<()>;
    /// Stored bytes per class: of the whole hub, or of one repository's objects.
    async fn bytes_by_class(&self, repo: Option<i64>) -> anyhow::Result<Vec<(String, u64)>>;
}
