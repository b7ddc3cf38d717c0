//! The `update-refs` op: validate names and ids, check the data the new commits need is
//! durable on the hub, refuse updates that change a path someone else has locked, then
//! compare-and-swap the refs (all or none with `atomic`). Accepted commits are indexed
//! in the background.

use std::sync::Arc;

use dits_core::recipe::Recipe;
use dits_core::ChunkId;
use dits_wire::wire::{RefResult, RefUpdate, UpdateRefsResult, ZERO_OID};

use crate::error::HubError;
use crate::meta::jobs::JobKind;
use crate::meta::unix_now;
use crate::names::{valid_oid, valid_ref_name};
use crate::server::auth::Caller;
use crate::server::objects::{parse_ids, read_plain};
use crate::server::state::HubState;

/// One `update-refs` request.
pub struct RefUpdates {
    pub updates: Vec<RefUpdate>,
    /// Git packs (from `put-git-pack`) holding the new commits.
    pub packs: Vec<String>,
    /// Recipes the new commits' pointers name.
    pub recipes: Vec<String>,
    pub atomic: bool,
}

pub async fn update(
    state: &Arc<HubState>,
    caller: &Caller,
    request: RefUpdates,
) -> Result<UpdateRefsResult, HubError> {
    let RefUpdates {
        updates,
        mut packs,
        recipes,
        atomic,
    } = request;
    let repo = caller.repo;
    for u in &updates {
        if !valid_ref_name(&u.name) || !valid_oid(&u.old) || !valid_oid(&u.new) {
            return Err(HubError::BadRequest(format!(
                "invalid ref update for {:?}",
                u.name
            )));
        }
    }
    for p in &packs {
        if state.meta.git_pack(repo, p).await?.is_none() {
            return Err(HubError::Rejected(format!(
                "Git pack {p} was never uploaded to this repository"
            )));
        }
    }
    let required = check_durable(state, repo, &parse_ids(&recipes)?).await?;
    // Every new value must be a commit the hub holds in this repository's packs (visible,
    // or uploaded for this push), or clients would be sent a ref they cannot fetch.
    if updates.iter().any(|u| u.new != ZERO_OID) {
        let stranded = mirror_packs(state, repo, &packs).await?;
        for u in updates.iter().filter(|u| u.new != ZERO_OID) {
            require_mirrored_commit(state, repo, &u.new).await?;
        }
        // The mirror also answers for the commits of packs indexed for an update that
        // then failed (a stale old value): a ref naming one makes its pack visible too.
        packs.extend(stranded);
    }
    let refused = locked_paths_refusals(state, caller, &updates, &packs).await?;
    let allowed: Vec<RefUpdate> = updates
        .iter()
        .filter(|u| !refused.iter().any(|(n, _)| n == &u.name))
        .cloned()
        .collect();
    let mut results = if atomic && !refused.is_empty() {
        allowed
            .iter()
            .map(|u| RefResult {
                name: u.name.clone(),
                ok: false,
                error: Some("atomic push failed".into()),
            })
            .collect()
    } else {
        state
            .meta
            .update_refs(repo, &allowed, &packs, &required, atomic)
            .await?
    };
    let moved: Vec<RefUpdate> = allowed
        .into_iter()
        .filter(|u| results.iter().any(|r| r.ok && r.name == u.name))
        .collect();
    index_pushed_commits(state.clone(), repo, moved, packs);
    for (name, why) in refused {
        tracing::info!(repo = %caller.repo_name, user = %caller.user.name, ref_name = %name, "{why}");
        results.push(RefResult {
            name,
            ok: false,
            error: Some(why),
        });
    }
    Ok(UpdateRefsResult { results })
}

/// Every recipe, and every object each recipe lists, is stored for this repository.
/// Returns them all: the ref update checks again, in its transaction, that no collection
/// took one away since.
async fn check_durable(
    state: &HubState,
    repo: i64,
    recipes: &[ChunkId],
) -> Result<Vec<ChunkId>, HubError> {
    let refuse = |m: String| {
        HubError::Rejected(format!(
            "refusing to update refs: {m}; nothing was changed, push again"
        ))
    };
    if let Some(id) = state.meta.missing(repo, recipes).await?.first() {
        return Err(refuse(format!("recipe {} is not on the hub", id.short())));
    }
    if crate::server::keys::encrypted(state, repo).await? {
        // Sealed recipes cannot be read here: the client checked the objects they list
        // against the hub before it sent them (see docs/threat-model.md).
        return Ok(recipes.to_vec());
    }
    let mut required = recipes.to_vec();
    for id in recipes {
        let bytes = read_plain(state, id).await?;
        let recipe =
            Recipe::decode(&bytes).map_err(|e| refuse(format!("recipe {}: {e}", id.short())))?;
        let ids: Vec<ChunkId> = recipe.unique_objects().map(|e| e.id).collect();
        if let Some(missing) = state.meta.missing(repo, &ids).await?.first() {
            return Err(refuse(format!(
                "file data is incomplete on the hub (recipe {} needs object {})",
                id.short(),
                missing.short()
            )));
        }
        required.extend(ids);
    }
    Ok(required)
}

/// Ref updates that change a path someone else has locked (for that ref's branch), each
/// with the reason Git will print. The paths come from the pushed commits themselves, read
/// from the hub's mirror of the repository, never from the client.
async fn locked_paths_refusals(
    state: &HubState,
    caller: &Caller,
    updates: &[RefUpdate],
    packs: &[String],
) -> Result<Vec<(String, String)>, HubError> {
    let repo = caller.repo;
    if !state.locks.any(repo).await? {
        return Ok(Vec::new());
    }
    let current: Vec<String> = state.meta.refs(repo).await?.into_values().collect();
    let mut refused = Vec::new();
    for u in updates.iter().filter(|u| u.new != ZERO_OID) {
        ensure_mirrored(state, repo, &u.new, packs).await?;
        // What the ref already had is not this push's change; for a new ref, nothing the
        // hub already holds on any ref is.
        let exclude = if u.old == ZERO_OID {
            current.clone()
        } else {
            vec![u.old.clone()]
        };
        let paths = state.mirror.changed_paths(repo, &u.new, &exclude).await?;
        let held = state.locks.on_paths(repo, &paths).await?;
        if let Some(l) = held
            .iter()
            .find(|l| l.owner_id != caller.user.id && l.covers_ref(&u.name))
        {
            refused.push((
                u.name.clone(),
                format!(
                    "{} is locked by {} (lock {}); ask them to push and unlock it",
                    l.path, l.owner, l.id
                ),
            ));
        }
    }
    Ok(refused)
}

/// Makes sure the mirror holds every pack of the repository and of this push (a push's
/// pack leaves out what the hub already had, so history needs the older packs too), and
/// that `commit` is in one of them.
async fn ensure_mirrored(
    state: &HubState,
    repo: i64,
    commit: &str,
    packs: &[String],
) -> Result<(), HubError> {
    mirror_packs(state, repo, packs).await?;
    require_mirrored_commit(state, repo, commit).await
}

/// Refuses `commit` unless the mirror holds it.
async fn require_mirrored_commit(
    state: &HubState,
    repo: i64,
    commit: &str,
) -> Result<(), HubError> {
    if state.mirror.has_commit(repo, commit).await? {
        return Ok(());
    }
    Err(HubError::Rejected(format!(
        "commit {commit} is not in any Git pack pushed to this repository"
    )))
}

/// Indexes into the mirror each of the repository's visible packs, and of `packs`, that it
/// lacks, streamed from storage. Returns the packs the mirror had indexed that are neither
/// visible nor in `packs`: stranded by an update that failed after indexing them.
pub async fn mirror_packs(
    state: &HubState,
    repo: i64,
    packs: &[String],
) -> Result<Vec<String>, HubError> {
    let mut all = state.meta.git_packs(repo).await?;
    all.extend(packs.iter().cloned());
    let done = state.mirror.indexed_packs(repo).await?;
    for id in all.iter().filter(|id| !done.contains(*id)) {
        if let Some((key, size, _)) = state.meta.git_pack(repo, id).await? {
            let mut indexer = state.mirror.index_pack(repo, false).await?;
            let mut offset = 0;
            while offset < size {
                let n = MIRROR_STEP.min(size - offset);
                let bytes = state.blobs.read_range(&key, offset, n as usize).await?;
                if indexer.write(&bytes).await.is_err() {
                    break;
                }
                offset += n;
            }
            indexer
                .finish(id)
                .await
                .map_err(|e| HubError::from(e.context(format!("indexing stored Git pack {id}"))))?;
        }
    }
    let mut stranded = Vec::new();
    for id in done.into_iter().filter(|p| !all.contains(p)) {
        // One garbage collection replaced is gone for good.
        if state.meta.git_pack(repo, &id).await?.is_some() {
            stranded.push(id);
        }
    }
    stranded.sort();
    Ok(stranded)
}

/// Bytes of a stored Git pack read at a time while indexing it.
const MIRROR_STEP: u64 = 4 << 20;

/// Adds the commits an accepted push brought to the commit index, in the background
/// after the push is answered: the index serves queries, not the push's correctness, so a
/// failure is logged (and those commits are indexed again with the branch's next push
/// from an older base, or never).
fn index_pushed_commits(
    state: Arc<HubState>,
    repo: i64,
    updates: Vec<RefUpdate>,
    packs: Vec<String>,
) {
    if updates.iter().all(|u| u.new == ZERO_OID) {
        return;
    }
    tokio::spawn(async move {
        for u in updates.iter().filter(|u| u.new != ZERO_OID) {
            if let Err(e) = index_commits(&state, repo, u, &packs).await {
                let detail = match &e {
                    HubError::Internal(cause) | HubError::Unavailable { cause, .. } => {
                        format!("{cause:#}")
                    }
                    other => other.to_string(),
                };
                tracing::warn!(repo, ref_name = %u.name, "indexing pushed commits: {detail}");
            }
        }
    });
}

async fn index_commits(
    state: &HubState,
    repo: i64,
    update: &RefUpdate,
    packs: &[String],
) -> Result<(), HubError> {
    ensure_mirrored(state, repo, &update.new, packs).await?;
    let exclude: Vec<String> = (update.old != ZERO_OID)
        .then(|| update.old.clone())
        .into_iter()
        .collect();
    let commits = state.mirror.commits(repo, &update.new, &exclude).await?;
    state.meta.record_commits(repo, &commits).await?;
    queue_transcodes(state, repo, &commits).await?;
    crate::server::dedup::record_shared(state, repo, &commits).await?;
    Ok(())
}

/// With transcoding on, queues a transcode of each video the commits add or change,
/// once per recipe (a done transcode is not queued again, so the same clip at another
/// path, or in another repository, is not transcoded twice). Encrypted repositories'
/// media are opaque to the hub and never queued.
async fn queue_transcodes(
    state: &HubState,
    repo: i64,
    commits: &[crate::mirror::IndexedCommit],
) -> Result<(), HubError> {
    if !state.transcode || state.meta.encrypted(repo).await? {
        return Ok(());
    }
    let mut recipes: Vec<String> = commits
        .iter()
        .flat_map(|c| &c.pointers)
        .filter(|(_, p)| dits_core::media::has_picture(&p.media))
        .map(|(_, p)| p.recipe.to_hex())
        .collect();
    recipes.sort();
    recipes.dedup();
    if !recipes.is_empty() {
        let jobs = state.meta.jobs();
        jobs.enqueue(JobKind::Transcode, &recipes, Some(repo), unix_now())
            .await?;
    }
    Ok(())
}
