//! Smudge and verification: pointer → recipe → objects → bytes, each object re-hashed as
//! it is read and the whole file checked against the pointer's hash.

use std::io::{self, Write};

use crate::chunk_id::ChunkId;
use crate::pointer::Pointer;
use crate::recipe::{Recipe, RecipeError};
use crate::store::{ChunkStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SmudgeError {
    #[error("object {id} is missing from the local store (needed by recipe {recipe}); fetch it from the remote or re-add the file")]
    Missing { id: ChunkId, recipe: ChunkId },
    #[error("recipe {recipe}: {source}")]
    BadRecipe {
        recipe: ChunkId,
        source: RecipeError,
    },
    #[error("recipe {recipe} describes {actual} bytes but the pointer says {expected}")]
    SizeMismatch {
        recipe: ChunkId,
        expected: u64,
        actual: u64,
    },
    #[error("rebuilt content hashes to {actual}, the pointer says {expected}")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
    #[error(transparent)]
    Store(StoreError),
    #[error("writing the file: {0}")]
    Output(io::Error),
}

fn store_err(e: StoreError, recipe: ChunkId) -> SmudgeError {
    match e {
        StoreError::Missing { id } => SmudgeError::Missing { id, recipe },
        other => SmudgeError::Store(other),
    }
}

/// Loads and checks the recipe a pointer names.
pub fn load_recipe<S: ChunkStore>(store: &mut S, pointer: &Pointer) -> Result<Recipe, SmudgeError> {
    let bytes = store
        .get(&pointer.recipe)
        .map_err(|e| store_err(e, pointer.recipe))?;
    let recipe = Recipe::decode(&bytes).map_err(|source| SmudgeError::BadRecipe {
        recipe: pointer.recipe,
        source,
    })?;
    if recipe.file_size != pointer.size {
        return Err(SmudgeError::SizeMismatch {
            recipe: pointer.recipe,
            expected: pointer.size,
            actual: recipe.file_size,
        });
    }
    Ok(recipe)
}

/// Ids the recipe needs that the store lacks.
pub fn missing_objects<S: ChunkStore>(
    store: &S,
    recipe: &Recipe,
) -> Result<Vec<ChunkId>, StoreError> {
    let mut missing = Vec::new();
    for e in &recipe.entries {
        if !store.contains(&e.id)? && !missing.contains(&e.id) {
            missing.push(e.id);
        }
    }
    Ok(missing)
}

/// Writes the file a pointer describes to `out`. Fails before writing anything when an
/// object is missing; a corrupt object fails the smudge at that object.
pub fn smudge<S: ChunkStore, W: Write + ?Sized>(
    store: &mut S,
    pointer: &Pointer,
    out: &mut W,
) -> Result<(), SmudgeError> {
    let recipe = load_recipe(store, pointer)?;
    if let Some(id) = missing_objects(store, &recipe)
        .map_err(SmudgeError::Store)?
        .first()
    {
        return Err(SmudgeError::Missing {
            id: *id,
            recipe: pointer.recipe,
        });
    }
    let mut hasher = blake3::Hasher::new();
    for e in &recipe.entries {
        let bytes = store
            .get(&e.id)
            .map_err(|err| store_err(err, pointer.recipe))?;
        hasher.update(&bytes);
        out.write_all(&bytes).map_err(SmudgeError::Output)?;
    }
    let actual: ChunkId = hasher.finalize().into();
    if actual != pointer.oid {
        return Err(SmudgeError::HashMismatch {
            expected: pointer.oid,
            actual,
        });
    }
    Ok(())
}

/// Every problem with one pointer's data, without stopping at the first.
pub fn verify<S: ChunkStore>(store: &mut S, pointer: &Pointer) -> Vec<SmudgeError> {
    let recipe = match load_recipe(store, pointer) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut whole_file_checkable = true;
    for e in &recipe.entries {
        match store.get(&e.id) {
            Ok(bytes) => {
                hasher.update(&bytes);
            }
            Err(err) => {
                whole_file_checkable = false;
                problems.push(store_err(err, pointer.recipe));
            }
        }
    }
    if whole_file_checkable {
        let actual: ChunkId = hasher.finalize().into();
        if actual != pointer.oid {
            problems.push(SmudgeError::HashMismatch {
                expected: pointer.oid,
                actual,
            });
        }
    }
    problems
}
