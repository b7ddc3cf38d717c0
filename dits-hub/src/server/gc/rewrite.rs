//! Getting the bytes out of storage: packs mostly garbage are rewritten (live objects
//! copied into a new pack, the index moved to it in one transaction, the old pack dead),
//! and blobs dead for the grace period are deleted.
//!
//! Crash-safe in every order: a new pack is recorded dead before it is written, and
//! stops being dead in the transaction that moves objects into it, so a collector killed
//! before that leaves a dead blob the next run deletes; killed after, the old pack is the
//! dead one. A pack is never deleted while a row names it.

use std::collections::{HashMap, HashSet};

use dits_core::ChunkId;

use crate::meta::{random_hex, unix_now, Location};
use crate::server::gc::{Requests, LEAK_AGE, REWRITE_BELOW};
use crate::server::objects::{groups_by_size, read_coalesced};
use crate::server::state::HubState;

/// The blob prefixes the collector looks after.
const PREFIXES: [&str; 3] = ["chunks/", "git/", "incoming/"];
/// Stored bytes of the old pack read at a time.
const READ_SPAN: u64 = 8 << 20;

/// What [`rewrite_packs`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rewritten {
    pub packs: u64,
    pub bytes_copied: u64,
}

/// What [`delete_dead`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deleted {
    pub blobs: u64,
    pub bytes: u64,
    /// Bytes left under the collector's prefixes afterwards.
    pub bytes_left: u64,
}

/// Every blob under the collector's prefixes, by key.
pub type Listing = HashMap<String, crate::blobs::BlobInfo>;

/// Lists every blob under the collector's prefixes.
pub async fn listing(state: &HubState, requests: &mut Requests) -> anyhow::Result<Listing> {
    let mut all = HashMap::new();
    for prefix in PREFIXES {
        let found = state.blobs.list(prefix).await?;
        requests.add(1 + found.len() as u64 / 1000);
        all.extend(found.into_iter().map(|b| (b.key.clone(), b)));
    }
    Ok(all)
}

/// Bytes a listing's blobs hold.
pub fn stored_bytes(blobs: &Listing) -> u64 {
    blobs.values().map(|b| b.size).sum()
}

/// Rewrites each chunk pack whose live objects fill less than [`REWRITE_BELOW`] of it;
/// `blobs` lists the chunk packs as they are (nothing but a rewrite changes them).
pub async fn rewrite_packs(
    state: &HubState,
    blobs: &Listing,
    requests: &mut Requests,
) -> anyhow::Result<Rewritten> {
    let gc = state.meta.gc();
    let mut done = Rewritten::default();
    for usage in gc.pack_usage().await? {
        let Some(blob) = blobs.get(&usage.pack) else {
            tracing::warn!(pack = %usage.pack, "the index names a pack the object store lacks");
            continue;
        };
        if (usage.live_bytes as f64) >= REWRITE_BELOW * blob.size as f64 {
            continue;
        }
        let copied = match rewrite_pack(state, &usage.pack, requests).await {
            Ok(copied) => copied,
            // In archive storage: rewritten by a later run, once restored.
            Err(e) if crate::error::restoring_in(&e) => {
                tracing::info!(pack = %usage.pack, "not rewritten: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
        };
        done.packs += 1;
        done.bytes_copied += copied;
    }
    Ok(done)
}

/// Copies `pack`'s objects into a new pack and moves the index to it; returns the bytes
/// copied.
async fn rewrite_pack(
    state: &HubState,
    pack: &str,
    requests: &mut Requests,
) -> anyhow::Result<u64> {
    let gc = state.meta.gc();
    let objects = gc.pack_objects(pack).await?;
    let mut writer = state.blobs.writer()?;
    let mut name = blake3::Hasher::new();
    let mut moved: Vec<(ChunkId, Location)> = Vec::with_capacity(objects.len());
    // A few MiB at a time, neighbours in one ranged read (as `get` reads them).
    let located: Vec<(String, Location)> = objects
        .iter()
        .map(|(_, l)| (pack.to_string(), *l))
        .collect();
    for group in groups_by_size(&located, READ_SPAN) {
        let read = read_coalesced(state, &located[group.clone()]).await?;
        requests.add(1);
        for ((id, loc), (_, sealed)) in objects[group].iter().zip(read) {
            let at = Location {
                offset: writer.len(),
                ..*loc
            };
            writer.write(&sealed)?;
            name.update(&id.0);
            name.update(&loc.stored_len.to_be_bytes());
            moved.push((*id, at));
        }
    }
    let copied = writer.len();
    let key = format!(
        "chunks/{}.{}.pack",
        name.finalize().to_hex(),
        random_hex(6)?
    );
    // Dead until the index moves into it: a collector killed before then leaves a blob
    // the next run deletes.
    gc.add_dead(std::slice::from_ref(&key)).await?;
    if moved.is_empty() {
        drop(writer);
    } else {
        state.blobs.commit(writer, &key).await?;
    }
    stall_for_tests("after-upload").await;
    let left = gc.move_objects(pack, &key, &moved).await?;
    stall_for_tests("after-move").await;
    if left > 0 {
        tracing::warn!(
            pack,
            left,
            "objects were added to a pack while it was rewritten"
        );
    }
    Ok(copied)
}

/// Deletes blobs dead for `grace` seconds, and blobs no row names that are older than
/// `grace` and [`LEAK_AGE`].
pub async fn delete_dead(
    state: &HubState,
    grace: i64,
    requests: &mut Requests,
) -> anyhow::Result<Deleted> {
    let gc = state.meta.gc();
    let now = unix_now();
    let blobs = listing(state, requests).await?;
    let mut deleted = Deleted::default();
    let dead = gc.dead_blobs().await?;
    let dead_keys: HashSet<&str> = dead.iter().map(|d| d.key.as_str()).collect();
    for d in dead.iter().filter(|d| d.since <= now - grace) {
        if gc.referenced(&d.key).await? {
            // Named again (a rewrite moved objects into it): not dead after all.
            gc.forget_dead(&d.key).await?;
            continue;
        }
        state.blobs.delete(&d.key).await?;
        requests.add(1);
        gc.forget_dead(&d.key).await?;
        if let Some(blob) = blobs.get(&d.key) {
            deleted.blobs += 1;
            deleted.bytes += blob.size;
        }
    }
    let referenced: HashSet<String> = gc.referenced_keys().await?.into_iter().collect();
    let old = now - grace.max(LEAK_AGE);
    for blob in blobs.values() {
        if referenced.contains(&blob.key)
            || dead_keys.contains(blob.key.as_str())
            || blob.modified > old
        {
            continue;
        }
        if gc.referenced(&blob.key).await? {
            continue;
        }
        tracing::info!(key = %blob.key, "deleting a blob no index row names");
        state.blobs.delete(&blob.key).await?;
        requests.add(1);
        deleted.blobs += 1;
        deleted.bytes += blob.size;
    }
    deleted.bytes_left = stored_bytes(&blobs) - deleted.bytes;
    Ok(deleted)
}

/// With `DITS_HUB_GC_STALL` set to `point`, says so on standard error and waits for
/// ever: the crash tests kill the collector there (`kill -9` between two steps).
async fn stall_for_tests(point: &str) {
    if std::env::var("DITS_HUB_GC_STALL").as_deref() == Ok(point) {
        eprintln!("dits-hub: gc stalled {point}");
        std::future::pending::<()>().await;
    }
}
