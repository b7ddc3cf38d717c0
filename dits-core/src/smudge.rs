//! Smudge and verification: pointer → recipe → objects → bytes, each object re-hashed as
//! it is read and the whole file checked against the pointer's hash.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use crate::chunk_id::ChunkId;
use crate::pointer::Pointer;
use crate::recipe::{Entry, Recipe, RecipeError};
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
    #[error("recipe {recipe}: object {id} is {actual} bytes, the recipe says {expected}")]
    ObjectLength {
        recipe: ChunkId,
        id: ChunkId,
        expected: u32,
        actual: usize,
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
    for e in recipe.unique_objects() {
        if !store.contains(&e.id)? {
            missing.push(e.id);
        }
    }
    Ok(missing)
}

/// Hands out the bytes of recipe entries. Track-level recipes interleave slices of one
/// chunk per stream with other streams' chunks, so the last object of each stream is
/// kept (a handful of chunks at most) rather than read again for every slice.
pub struct EntryReader {
    recipe: ChunkId,
    current: HashMap<u16, (ChunkId, Vec<u8>)>,
}

impl EntryReader {
    pub fn new(recipe: ChunkId) -> Self {
        EntryReader {
            recipe,
            current: HashMap::new(),
        }
    }

    /// The file bytes `e` stands for, read (and verified) from `store`.
    pub fn read<'a, S: ChunkStore>(
        &'a mut self,
        store: &mut S,
        e: &Entry,
    ) -> Result<&'a [u8], SmudgeError> {
        let fresh = !matches!(self.current.get(&e.stream), Some((id, _)) if *id == e.id);
        if fresh {
            let bytes = store
                .get(&e.id)
                .map_err(|err| store_err(err, self.recipe))?;
            if bytes.len() != e.chunk_len as usize {
                return Err(SmudgeError::ObjectLength {
                    recipe: self.recipe,
                    id: e.id,
                    expected: e.chunk_len,
                    actual: bytes.len(),
                });
            }
            self.current.insert(e.stream, (e.id, bytes));
        }
        let (_, bytes) = &self.current[&e.stream];
        let from = e.chunk_offset as usize;
        // Recipe::decode guarantees the slice lies inside chunk_len, checked above.
        Ok(&bytes[from..from + e.len as usize])
    }
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
    let mut reader = EntryReader::new(pointer.recipe);
    for e in &recipe.entries {
        let bytes = reader.read(store, e)?;
        hasher.update(bytes);
        out.write_all(bytes).map_err(SmudgeError::Output)?;
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
    let mut broken: HashSet<ChunkId> = HashSet::new();
    let mut hasher = blake3::Hasher::new();
    let mut reader = EntryReader::new(pointer.recipe);
    for e in &recipe.entries {
        if broken.contains(&e.id) {
            continue;
        }
        match reader.read(store, e) {
            Ok(bytes) => {
                hasher.update(bytes);
            }
            Err(err) => {
                broken.insert(e.id);
                problems.push(err);
            }
        }
    }
    if broken.is_empty() {
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
