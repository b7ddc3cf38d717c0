//! The cold tier: packs whose objects nobody has read for a repository policy's age move
//! to that policy's storage class (`dits-hub reaper`, or `serve --reaper-every`). Reads
//! are noted in memory ([`AccessLog`]) and written to the index in batches, at most once
//! an hour per object. Archive classes (GLACIER, DEEP_ARCHIVE) cannot be read at once: a
//! read starts a restore and is answered "restoring" (see `blobs::s3`).

use std::collections::HashSet;
use std::sync::Mutex;

use dits_core::ChunkId;

use crate::meta::tier::ColdPolicy;
use crate::meta::unix_now;
use crate::server::state::HubState;

/// Storage classes a policy may name (S3's names; the local backend keeps every one of
/// them in its `cold/` directory).
pub const CLASSES: &[&str] = &[
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
];

/// Checks a policy's class.
pub fn check_class(class: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        CLASSES.contains(&class),
        "{class:?} is not a storage class the hub knows; use one of {}",
        CLASSES.join(", ")
    );
    Ok(())
}

/// A repository policy from the command line.
pub fn policy(after: i64, class: &str) -> anyhow::Result<ColdPolicy> {
    check_class(class)?;
    anyhow::ensure!(after >= 0, "the age must not be negative");
    Ok(ColdPolicy {
        after,
        class: class.to_string(),
    })
}

/// Objects read since the last flush. Bounded: past [`ACCESS_LOG_MAX`] ids, the next read
/// flushes.
#[derive(Default)]
pub struct AccessLog {
    ids: Mutex<HashSet<ChunkId>>,
}

/// Ids the access log holds before it asks to be flushed.
pub const ACCESS_LOG_MAX: usize = 100_000;

impl AccessLog {
    /// Notes that `ids` were read; true when the log should be flushed now.
    pub fn note(&self, ids: &[ChunkId]) -> bool {
        let mut held = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        held.extend(ids.iter().copied());
        held.len() >= ACCESS_LOG_MAX
    }

    fn take(&self) -> Vec<ChunkId> {
        let mut held = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        held.drain().collect()
    }
}

/// Writes the reads noted so far to the index.
pub async fn flush_access(state: &HubState) -> anyhow::Result<()> {
    let ids = state.access.take();
    if ids.is_empty() {
        return Ok(());
    }
    state.meta.tier().record_access(&ids, unix_now()).await
}

/// What a reaper run moved (or, dry, would move).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReapReport {
    pub dry_run: bool,
    pub packs: u64,
    pub bytes: u64,
    /// Stored bytes per class afterwards.
    pub bytes_per_class: std::collections::BTreeMap<String, u64>,
    pub seconds: f64,
}

/// Moves every pack whose objects the policies let go cold.
pub async fn reap(state: &HubState, dry_run: bool) -> anyhow::Result<ReapReport> {
    let started = std::time::Instant::now();
    flush_access(state).await?;
    let tier = state.meta.tier();
    let mut report = ReapReport {
        dry_run,
        ..ReapReport::default()
    };
    for pack in tier.cold_candidates(unix_now()).await? {
        check_class(&pack.class)?;
        if !dry_run {
            state.blobs.set_class(&pack.pack, &pack.class).await?;
            tier.set_pack_class(&pack.pack, &pack.class).await?;
        }
        report.packs += 1;
        report.bytes += pack.bytes;
    }
    report.bytes_per_class = tier.bytes_by_class(None).await?.into_iter().collect();
    *state
        .stats
        .bytes_per_class
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = report.bytes_per_class.clone();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
