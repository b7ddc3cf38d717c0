//! The live set of one repository: its refs → the commits and trees they reach (the
//! hub's Git mirror) → the Dits pointers among the blobs → their recipes → every object a
//! recipe lists. Ids go to the database in batches ([`GcStore::mark_live`]); memory holds
//! the recipe ids (one per media version), not the objects.
//!
//! [`GcStore::mark_live`]: crate::meta::gc::GcStore::mark_live

use std::collections::HashSet;

use anyhow::Context;
use dits_core::pointer::{Pointer, MAX_POINTER_LEN};
use dits_core::recipe::Recipe;
use dits_core::ChunkId;

use crate::meta::gc::RepoEntry;
use crate::server::objects::read_plain;
use crate::server::refs::mirror_packs;
use crate::server::state::HubState;

/// Ids sent to the database at once.
const MARK_BATCH: usize = 10_000;

/// What one repository's refs reach.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marked {
    pub recipes: u64,
    /// Objects listed by those recipes (counted once per recipe).
    pub objects: u64,
}

/// Records `repo`'s live set and then the repository as collected. Fails (and the collection with it)
/// when a ref reaches a recipe the hub cannot read: a live set with holes would delete
/// what a ref needs.
pub async fn mark_repo(state: &HubState, repo: &RepoEntry) -> anyhow::Result<Marked> {
    let gc = state.meta.gc();
    let context = || format!("marking what the refs of {} reach", repo.name);
    mirror_packs(state, repo.id, &[])
        .await
        .with_context(context)?;
    let tips: Vec<String> = state.meta.refs(repo.id).await?.into_values().collect();
    let mut recipes: HashSet<ChunkId> = HashSet::new();
    let mut blobs = state.mirror.small_blobs(repo.id, tips, MAX_POINTER_LEN);
    while let Some(blob) = blobs.recv().await {
        // Small blobs that are not pointers (text files) are not media.
        if let Ok(pointer) = Pointer::parse(&blob.with_context(context)?) {
            recipes.insert(pointer.recipe);
        }
    }
    let mut marked = Marked::default();
    let mut batch: Vec<ChunkId> = Vec::with_capacity(MARK_BATCH);
    for recipe_id in &recipes {
        let bytes = match read_plain(state, recipe_id).await {
            Ok(bytes) => bytes,
            // A pointer whose recipe never reached this repository (committed by hand,
            // or from another remote) keeps nothing alive here.
            Err(_) if !state.meta.missing(repo.id, &[*recipe_id]).await?.is_empty() => {
                tracing::warn!(repo = %repo.name, recipe = %recipe_id.short(), "a ref reaches a pointer whose recipe is not on the hub");
                continue;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "{}: reading recipe {}",
                    repo.name,
                    recipe_id.short()
                )))
            }
        };
        let recipe = Recipe::decode(&bytes)
            .with_context(|| format!("{}: recipe {}", repo.name, recipe_id.short()))?;
        batch.push(*recipe_id);
        marked.recipes += 1;
        for entry in recipe.unique_objects() {
            batch.push(entry.id);
            marked.objects += 1;
            if batch.len() >= MARK_BATCH {
                gc.mark_live(repo.id, &batch).await?;
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        gc.mark_live(repo.id, &batch).await?;
    }
    // Only a whole live set lets the sweep drop this repository's links: a marking cut
    // short (a recipe in archive storage, say) leaves them all.
    gc.collect_repo(repo.id).await?;
    Ok(marked)
}
