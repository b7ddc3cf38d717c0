//! A repository's Git packs hold every commit ever pushed to it, also those no ref
//! reaches any more (a deleted branch, a forced-away commit). Once no ref has moved for
//! the grace period, and the packs are more than 5% bigger than one pack of what the
//! refs reach, they are replaced by that pack
//! (built from the hub's mirror), which takes the oldest one's place; the old packs'
//! blobs become dead. Clients then fetch the new pack once (its objects they have are
//! only indexed again).
//!
//! Packs uploaded and made visible after the refs were read stay: their commits are not
//! in the new pack, and any delta base they need is (it was reachable then).

use anyhow::Context;

use crate::meta::gc::RepoEntry;
use crate::meta::{random_hex, unix_now};
use crate::server::gc::REWRITE_BELOW;
use crate::server::refs::mirror_packs;
use crate::server::state::HubState;

/// What replacing a repository's Git packs did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Repacked {
    pub packs_replaced: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Replaces `repo`'s visible Git packs with one of what its refs reach, when that is
/// smaller than [`REWRITE_BELOW`] of them and no ref has moved since `cutoff` (so what a
/// ref dropped has been unreachable for the grace period, as for media).
pub async fn repack(state: &HubState, repo: &RepoEntry, cutoff: i64) -> anyhow::Result<Repacked> {
    if repo.refs_changed >= cutoff {
        return Ok(Repacked::default());
    }
    // Any ref update from now on calls the replacement off (see replace_git_packs).
    let quiet_since = unix_now();
    mirror_packs(state, repo.id, &[])
        .await
        .with_context(|| format!("{}: indexing Git packs", repo.name))?;
    let old = state.meta.git_packs(repo.id).await?;
    if old.is_empty() {
        return Ok(Repacked::default());
    }
    let mut before = 0;
    for id in &old {
        if let Some((_, size, _)) = state.meta.git_pack(repo.id, id).await? {
            before += size;
        }
    }
    let tips: Vec<String> = state.meta.refs(repo.id).await?.into_values().collect();
    let mut done = Repacked {
        bytes_before: before,
        bytes_after: before,
        ..Repacked::default()
    };
    if tips.is_empty() {
        // No ref left: nothing is reachable.
        if state
            .meta
            .gc()
            .replace_git_packs(repo.id, &old, None, quiet_since)
            .await?
        {
            done.packs_replaced = old.len() as u64;
            done.bytes_after = 0;
        }
        return Ok(done);
    }
    let writer = state.blobs.writer()?;
    let (writer, id) = state.mirror.pack_reachable(repo.id, tips, writer).await?;
    let size = writer.len();
    if size as f64 >= REWRITE_BELOW * before as f64 {
        return Ok(done);
    }
    let key = format!("git/{}/{id}.{}.pack", repo.id, random_hex(6)?);
    state.blobs.commit(writer, &key).await?;
    if state
        .meta
        .gc()
        .replace_git_packs(repo.id, &old, Some((&id, &key, size)), quiet_since)
        .await?
    {
        done.packs_replaced = old.len() as u64;
        done.bytes_after = size;
    } else {
        // A ref moved meanwhile, or a pack went away (the repository was deleted): ours
        // is dead, for the next run to delete.
        state.meta.gc().add_dead(&[key]).await?;
    }
    Ok(done)
}
