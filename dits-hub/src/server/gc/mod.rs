//! Garbage collection: what no ref of any repository reaches leaves the index and the
//! object store (`dits-hub gc`, or `serve --gc-every`).
//!
//! One run, under the collector lock (one collector across every hub on the metadata
//! store):
//!
//! 1. **Mark** ([`mark`]): for each plain repository, the pointers its refs reach (read
//!    from the hub's Git mirror), their recipes and every object those list go into the
//!    live set, kept in the database rather than in memory.
//! 2. **Sweep**: links no ref reaches and not seen since the cutoff (start − grace) go,
//!    then objects no repository links (see `meta::gc` for why this is safe beside
//!    pushes).
//! 3. **Rewrite** ([`rewrite`]): packs mostly garbage have their live objects copied into
//!    a new pack; the index moves to it in one transaction and the old pack is dead.
//! 4. **Git packs** ([`git_packs`]): a repository's Git packs, when mostly unreachable
//!    commits, are replaced by one pack of what its refs reach.
//! 5. **Delete**: blobs dead for the grace period go from storage, and so do blobs no
//!    row names that are older than the grace and [`LEAK_AGE`] (left by a killed process).
//!
//! Encrypted repositories are not marked: the hub cannot read their pointers or recipes,
//! so it keeps every object they hold (until `repo delete`).

pub mod git_packs;
pub mod mark;
pub mod rewrite;

use std::sync::atomic::Ordering;

use crate::meta::gc::{RepoEntry, Sweep};
use crate::meta::unix_now;
use crate::server::state::HubState;

/// Blobs no index row names are deleted only when at least this old (and older than the
/// grace): a push writes its pack's blob a moment before it records the pack's objects.
pub const LEAK_AGE: i64 = 15 * 60;

/// A pack is rewritten when its live objects fill less than this share of it: at most
/// 5% of stored bytes are garbage left in packs (the target is 1.05x what live refs need).
pub const REWRITE_BELOW: f64 = 0.95;

/// How a collection runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Links not seen for this long, and blobs dead this long, may go (seconds).
    pub grace: i64,
    /// Count, change nothing.
    pub dry_run: bool,
    /// Only this repository's unreachable links (OWNER/NAME); none: every repository.
    pub repo: Option<String>,
}

/// What a collection did (or, dry, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// False when another collector held the lock, so this one did nothing.
    pub ran: bool,
    pub repos_collected: u64,
    /// Encrypted repositories, whose objects are all kept.
    pub repos_kept_encrypted: u64,
    /// Repositories whose recipes are in archive storage, kept whole this time.
    pub repos_kept_archived: u64,
    pub live_recipes: u64,
    pub live_objects: u64,
    pub links_dropped: u64,
    pub objects_deleted: u64,
    /// Stored bytes of the deleted objects.
    pub object_bytes_deleted: u64,
    /// Posters, strips and proxies of collected assets, forgotten (their blobs deleted
    /// after the grace).
    pub derived_dropped: u64,
    pub packs_rewritten: u64,
    pub bytes_copied: u64,
    /// Git packs replaced by one pack of what the refs reach, and the bytes that saved.
    pub git_packs_replaced: u64,
    pub git_bytes_freed: u64,
    pub blobs_deleted: u64,
    /// Bytes that left the object store.
    pub blob_bytes_deleted: u64,
    /// Bytes in the object store (chunk and Git packs) before and after.
    pub stored_bytes_before: u64,
    pub stored_bytes_after: u64,
    /// Object store requests the run made (lists, reads, writes, deletes).
    pub storage_requests: u64,
    pub seconds: f64,
}

/// Runs one collection on the hub's backends.
pub async fn collect(state: &HubState, options: &GcOptions) -> anyhow::Result<GcReport> {
    let started = std::time::Instant::now();
    let gc = state.meta.gc();
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    let Some(_guard) = gc.collector_lock().await? else {
        return Ok(report);
    };
    report.ran = true;
    let cutoff = unix_now() - options.grace;
    let mut requests = Requests::new(state);
    let before = rewrite::listing(state, &mut requests).await?;
    report.stored_bytes_before = rewrite::stored_bytes(&before);

    let repos = chosen_repos(state, options.repo.as_deref()).await?;
    gc.reset_marks().await?;
    for repo in &repos {
        if repo.encrypted {
            report.repos_kept_encrypted += 1;
            continue;
        }
        let marked = match mark::mark_repo(state, repo).await {
            Ok(marked) => marked,
            Err(e) if crate::error::restoring_in(&e) => {
                // Its recipes are in archive storage (a restore is now under way): keep
                // all it holds this time.
                tracing::info!(repo = %repo.name, "kept whole: {e:#}");
                report.repos_kept_archived += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        report.repos_collected += 1;
        report.live_recipes += marked.recipes;
        report.live_objects += marked.objects;
    }
    let Sweep {
        links,
        objects,
        bytes,
    } = gc.sweep(cutoff, !options.dry_run).await?;
    gc.reset_marks().await?;
    report.links_dropped = links;
    report.objects_deleted = objects;
    report.object_bytes_deleted = bytes;

    if !options.dry_run {
        report.derived_dropped = state.meta.derived().drop_orphans(unix_now()).await?;
        for repo in &repos {
            let repacked = git_packs::repack(state, repo, cutoff).await?;
            report.git_packs_replaced += repacked.packs_replaced;
            report.git_bytes_freed += repacked.bytes_before - repacked.bytes_after;
        }
        let rewritten = rewrite::rewrite_packs(state, &before, &mut requests).await?;
        report.packs_rewritten = rewritten.packs;
        report.bytes_copied = rewritten.bytes_copied;
        let deleted = rewrite::delete_dead(state, options.grace, &mut requests).await?;
        report.blobs_deleted = deleted.blobs;
        report.blob_bytes_deleted = deleted.bytes;
        report.stored_bytes_after = deleted.bytes_left;
        let stats = &state.stats;
        stats
            .gc_bytes_deleted
            .fetch_add(deleted.bytes, Ordering::Relaxed);
        stats
            .gc_packs_rewritten
            .fetch_add(rewritten.packs, Ordering::Relaxed);
    } else {
        report.stored_bytes_after = report.stored_bytes_before;
    }
    report.storage_requests = requests.total(state);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Every repository, or the one `--repo` names.
async fn chosen_repos(state: &HubState, only: Option<&str>) -> anyhow::Result<Vec<RepoEntry>> {
    let all = state.meta.gc().repo_list().await?;
    match only {
        None => Ok(all),
        Some(name) => {
            let found: Vec<RepoEntry> = all.into_iter().filter(|r| r.name == name).collect();
            anyhow::ensure!(!found.is_empty(), "repository {name} does not exist");
            Ok(found)
        }
    }
}

/// Counts the object store requests of a run: writes from the store's own counter,
/// lists, reads and deletes as the collector makes them.
pub struct Requests {
    writes_at_start: u64,
    counted: u64,
}

impl Requests {
    fn new(state: &HubState) -> Requests {
        Requests {
            writes_at_start: state.blobs.write_requests(),
            counted: 0,
        }
    }

    /// `n` more requests (lists: one per 1,000 keys, as S3 pages them).
    pub fn add(&mut self, n: u64) {
        self.counted += n;
    }

    fn total(&self, state: &HubState) -> u64 {
        self.counted + state.blobs.write_requests() - self.writes_at_start
    }
}

/// Deletes repository `id` and everything only it held: its metadata and mirror now,
/// its Git packs' blobs once dead for the grace period, its objects at the next
/// collection. Returns its Git packs' blob keys.
pub async fn delete_repo(
    meta: &dyn crate::meta::MetaStore,
    mirror: &crate::mirror::GitMirror,
    id: i64,
) -> anyhow::Result<Vec<String>> {
    let keys = meta.gc().delete_repo(id).await?;
    mirror.remove(id).await?;
    Ok(keys)
}
