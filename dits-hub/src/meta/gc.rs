//! What garbage collection and `repo delete` ask of the metadata store ([`GcStore`]),
//! and the rules every backend follows so collection is safe beside pushes:
//!
//! - A link (repository, object) carries `seen`: when it was last uploaded, reported
//!   present by `missing`, or required by a ref update. A collection drops only links of
//!   the repositories it collects that no ref reaches (not in its live set) and that were
//!   not seen since its cutoff (start − grace). A ref update that commits after the live
//!   set was read has just re-seen every object it needs, so its links outlive the cutoff.
//! - Dropping links and deleting objects run under the sweep lock, exclusively; linking
//!   objects and moving refs run under it shared (PostgreSQL: an advisory lock; SQLite:
//!   its single writer). A ref update re-checks, inside its transaction, that every object
//!   it needs is still linked, so no ref can name a collected object.
//! - Blobs are deleted only after they have been dead (no index row names them) for the
//!   grace period, and a blob key is never written twice, so a dead blob cannot come back.

use dits_core::ChunkId;

use crate::meta::Location;

/// A repository as the collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoEntry {
    pub id: i64,
    /// OWNER/NAME.
    pub name: String,
    pub encrypted: bool,
    /// When a ref of it last moved (Unix seconds).
    pub refs_changed: i64,
}

/// What a sweep dropped (or, dry, would drop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Links between a repository and an object no ref of it reaches.
    pub links: u64,
    /// Objects no repository links any more, and their stored bytes.
    pub objects: u64,
    pub bytes: u64,
}

/// How much of a chunk pack the index still names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUsage {
    pub pack: String,
    pub objects: u64,
    pub live_bytes: u64,
}

/// A blob no index row names, since `since` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadBlob {
    pub key: String,
    pub since: i64,
}

/// Held while a collection runs: one collector at a time across every hub process on the
/// metadata store. Dropping it lets the next one in.
pub struct CollectorGuard(#[allow(dead_code)] pub Box<dyn Send + Sync>);

/// The collector's side of the metadata store. Every method is one transaction.
#[async_trait::async_trait]
pub trait GcStore: Send + Sync {
    /// The collector lock; `None` when another collector holds it.
    async fn collector_lock(&self) -> anyhow::Result<Option<CollectorGuard>>;
    /// Every repository.
    async fn repo_list(&self) -> anyhow::Result<Vec<RepoEntry>>;
    /// Deletes the repository: its refs, members, links, commit index, locks and Git
    /// packs (their blobs become dead). Returns the Git pack blob keys.
    async fn delete_repo(&self, repo: i64) -> anyhow::Result<Vec<String>>;
    /// Starts a collection: forgets the previous one's live sets.
    async fn reset_marks(&self) -> anyhow::Result<()>;
    /// This collection drops unreachable links of `repo` (others keep all of theirs).
    async fn collect_repo(&self, repo: i64) -> anyhow::Result<()>;
    /// `ids` are reachable from a ref of `repo`.
    async fn mark_live(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<()>;
    /// Drops the unreachable links (of collected repositories, not seen since `cutoff`)
    /// and the objects then linked by none; dry (`apply` false), only counts them.
    async fn sweep(&self, cutoff: i64, apply: bool) -> anyhow::Result<Sweep>;
    /// Each chunk pack the index names, with its objects and their stored bytes.
    async fn pack_usage(&self) -> anyhow::Result<Vec<PackUsage>>;
    /// The objects stored in `pack`, by offset.
    async fn pack_objects(&self, pack: &str) -> anyhow::Result<Vec<(ChunkId, Location)>>;
    /// Points each of `moved` (still in `from`) at its copy in `to`; `to` stops being
    /// dead, and `from`, once nothing is left in it, becomes dead. Returns the objects
    /// left in `from`.
    async fn move_objects(
        &self,
        from: &str,
        to: &str,
        moved: &[(ChunkId, Location)],
    ) -> anyhow::Result<u64>;
    /// Records `keys` as dead from now (an earlier record is kept).
    async fn add_dead(&self, keys: &[String]) -> anyhow::Result<()>;
    async fn dead_blobs(&self) -> anyhow::Result<Vec<DeadBlob>>;
    /// Whether an index row (object or Git pack) names blob `key`.
    async fn referenced(&self, key: &str) -> anyhow::Result<bool>;
    /// Every blob key an index row names.
    async fn referenced_keys(&self) -> anyhow::Result<Vec<String>>;
    /// Replaces the repository's visible Git packs `old` with `new` (id, blob key, size;
    /// none when no ref is left), which takes the place of the oldest, so a client
    /// fetching packs in order gets it before any later (thin) pack. The old packs' blobs
    /// become dead. Nothing changes, and this answers false, when one of `old` is no
    /// longer visible or a ref moved at or after `quiet_since` (Unix seconds, taken
    /// before `old` and the refs were read): a push may have named one of them again
    /// (an identical pack is stored once) for a commit `new` lacks.
    async fn replace_git_packs(
        &self,
        repo: i64,
        old: &[String],
        new: Option<(&str, &str, u64)>,
        quiet_since: i64,
    ) -> anyhow::Result<bool>;
    /// Forgets dead blob `key` (deleted).
    async fn forget_dead(&self, key: &str) -> anyhow::Result<()>;
}
