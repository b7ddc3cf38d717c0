//! What an asset's recipe says about it, for the pages: how many objects it is cut into,
//! how many start at a keyframe, and how much of a version its previous version already
//! held. The share is worked out once, when a push is indexed ([`record_shared`]); the
//! asset page reads the recipes again for the rest (one small object each).

use std::collections::HashSet;

use anyhow::Context;
use dits_core::recipe::Recipe;
use dits_core::ChunkId;

use crate::mirror::IndexedCommit;
use crate::server::objects::read_plain;
use crate::server::state::HubState;

/// The recipe `id`, read from the store and verified.
pub async fn read_recipe(state: &HubState, id: &ChunkId) -> anyhow::Result<Recipe> {
    let bytes = read_plain(state, id)
        .await
        .with_context(|| format!("reading recipe {}", id.short()))?;
    Recipe::decode(&bytes).with_context(|| format!("recipe {}", id.short()))
}

/// Counts a page shows of one recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipeFacts {
    /// Distinct stored objects the file is built from.
    pub objects: usize,
    /// Entries that begin at a video keyframe (track-level recipes only).
    pub keyframes: usize,
}

pub fn facts(recipe: &Recipe) -> RecipeFacts {
    RecipeFacts {
        objects: recipe.unique_objects().count(),
        keyframes: recipe.entries.iter().filter(|e| e.keyframe).count(),
    }
}

/// Bytes of `new`'s file that come from objects `old` is built from too: what storing
/// `new` after `old` did not cost again.
pub fn shared_bytes(new: &Recipe, old: &Recipe) -> u64 {
    let before: HashSet<ChunkId> = old.entries.iter().map(|e| e.id).collect();
    new.entries
        .iter()
        .filter(|e| before.contains(&e.id))
        .map(|e| u64::from(e.len))
        .sum()
}

/// Works out and records, for every pointer of `commits` that replaced one, how many of
/// its bytes the replaced version held. Encrypted repositories' recipes are sealed from
/// the hub, so they get no figure. A recipe that cannot be read is skipped (logged): the
/// history then shows no figure for that version.
pub async fn record_shared(
    state: &HubState,
    repo: i64,
    commits: &[IndexedCommit],
) -> anyhow::Result<()> {
    if state.meta.encrypted(repo).await? {
        return Ok(());
    }
    for c in commits {
        for (path, pointer) in &c.pointers {
            let Some(previous) = c.previous.get(path) else {
                continue;
            };
            let shared = async {
                let new = read_recipe(state, &pointer.recipe).await?;
                let old = read_recipe(state, previous).await?;
                anyhow::Ok(shared_bytes(&new, &old))
            }
            .await;
            match shared {
                Ok(shared) => state.meta.record_shared(repo, &c.oid, path, shared).await?,
                Err(e) => tracing::warn!(repo, %path, "deduplication figure: {e:#}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dits_core::recipe::{Entry, EntryKind};

    fn recipe(parts: &[(u8, u32)]) -> Recipe {
        let mut offset = 0;
        let entries = parts
            .iter()
            .map(|&(id, len)| {
                let e = Entry::whole(ChunkId([id; 32]), offset, len, len, EntryKind::Chunk);
                offset += u64::from(len);
                e
            })
            .collect();
        Recipe {
            file_size: offset,
            entries,
            dependencies: Vec::new(),
        }
    }

    #[test]
    fn shared_bytes_count_the_new_file_bytes_the_old_objects_hold() {
        let old = recipe(&[(1, 100), (2, 50), (3, 10)]);
        let new = recipe(&[(1, 100), (4, 70), (3, 10), (3, 10)]);
        assert_eq!(shared_bytes(&new, &old), 120);
        assert_eq!(shared_bytes(&old, &old), 160);
        assert_eq!(shared_bytes(&recipe(&[(9, 5)]), &old), 0);
        let f = facts(&new);
        assert_eq!((f.objects, f.keyframes), (3, 0));
    }
}
