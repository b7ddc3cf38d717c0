//! Reading a Dits file at an offset without hydrating it: offset → recipe entries (binary
//! search over the encoded recipe) → objects from a bounded RAM cache, else the local
//! store, else the hub (fetched into the local store, so each is fetched once). A read
//! that continues the previous one fetches the next objects along with it (read-ahead).

use std::collections::HashMap;
use std::sync::Arc;

use dits_core::recipe::{Entry, RecipeView};
use dits_core::{ChunkId, ChunkStore, LocalStore, Pointer};
use dits_filter::ObjectSource;

/// Bytes fetched ahead of a sequential reader, on top of what the read itself needs.
const READ_AHEAD: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("recipe {recipe} of this file cannot be read: {message}")]
    Recipe { recipe: String, message: String },
    #[error("object {id} is in neither the local store nor on the hub: {message}")]
    Object { id: String, message: String },
}

pub struct MediaReader {
    store: LocalStore,
    source: Box<dyn ObjectSource>,
    recipes: HashMap<ChunkId, Arc<Vec<u8>>>,
    cache: moka::sync::Cache<ChunkId, Arc<Vec<u8>>>,
    /// Where the previous read of each recipe ended, to spot sequential readers.
    last_end: HashMap<ChunkId, u64>,
}

impl MediaReader {
    pub fn new(store: LocalStore, source: Box<dyn ObjectSource>, cache_bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .weigher(|_: &ChunkId, v: &Arc<Vec<u8>>| v.len().try_into().unwrap_or(u32::MAX))
            .max_capacity(cache_bytes)
            .build();
        MediaReader {
            store,
            source,
            recipes: HashMap::new(),
            cache,
            last_end: HashMap::new(),
        }
    }

    fn fetch(&mut self, ids: &[ChunkId]) -> Result<(), String> {
        let mut missing = Vec::new();
        for id in ids {
            if !self.store.contains(id).map_err(|e| e.to_string())? && !missing.contains(id) {
                missing.push(*id);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        self.source.fetch(&mut self.store, &missing)
    }

    fn recipe(&mut self, pointer: &Pointer) -> Result<Arc<Vec<u8>>, ReadError> {
        if let Some(r) = self.recipes.get(&pointer.recipe) {
            return Ok(r.clone());
        }
        let fail = |message: String| ReadError::Recipe {
            recipe: pointer.recipe.to_hex(),
            message,
        };
        self.fetch(&[pointer.recipe]).map_err(fail)?;
        let bytes = self
            .store
            .get(&pointer.recipe)
            .map_err(|e| fail(e.to_string()))?;
        RecipeView::new(&bytes).map_err(|e| fail(e.to_string()))?;
        let bytes = Arc::new(bytes);
        self.recipes.insert(pointer.recipe, bytes.clone());
        Ok(bytes)
    }

    fn object(&mut self, id: &ChunkId) -> Result<Arc<Vec<u8>>, ReadError> {
        if let Some(o) = self.cache.get(id) {
            return Ok(o);
        }
        let fail = |message: String| ReadError::Object {
            id: id.to_hex(),
            message,
        };
        if !self.store.contains(id).map_err(|e| fail(e.to_string()))? {
            self.fetch(&[*id]).map_err(fail)?;
        }
        let bytes = Arc::new(self.store.get(id).map_err(|e| fail(e.to_string()))?);
        self.cache.insert(*id, bytes.clone());
        Ok(bytes)
    }

    /// Up to `size` bytes of the file at `offset` (fewer only at the end of the file).
    pub fn read(
        &mut self,
        pointer: &Pointer,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, ReadError> {
        let end = (offset + u64::from(size)).min(pointer.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let recipe = self.recipe(pointer)?;
        let view = RecipeView::new(&recipe).map_err(|e| ReadError::Recipe {
            recipe: pointer.recipe.to_hex(),
            message: e.to_string(),
        })?;
        let recipe_err = |e: dits_core::recipe::RecipeError| ReadError::Recipe {
            recipe: pointer.recipe.to_hex(),
            message: e.to_string(),
        };
        let entries = view.entries_in(offset, end).map_err(recipe_err)?;
        // One fetch for everything this read needs plus, for a sequential reader, what
        // comes next: the transfer runs those in parallel.
        let sequential = self.last_end.get(&pointer.recipe) == Some(&offset);
        let ahead_end = if sequential {
            (end + READ_AHEAD).min(pointer.size)
        } else {
            end
        };
        let wanted: Vec<Entry> = if ahead_end > end {
            view.entries_in(offset, ahead_end).map_err(recipe_err)?
        } else {
            entries.clone()
        };
        let ids: Vec<ChunkId> = wanted
            .iter()
            .map(|e| e.id)
            .filter(|id| !self.cache.contains_key(id))
            .collect();
        if let Err(message) = self.fetch(&ids) {
            // Not fatal yet: the objects this read itself needs are retried one by one
            // below, and the one that fails is named.
            tracing::debug!("batched fetch failed: {message}");
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for e in &entries {
            let object = self.object(&e.id)?;
            let from = offset.max(e.offset);
            let to = end.min(e.end());
            let start = u64::from(e.chunk_offset) + (from - e.offset);
            let stop = start + (to - from);
            let slice =
                object
                    .get(start as usize..stop as usize)
                    .ok_or_else(|| ReadError::Object {
                        id: e.id.to_hex(),
                        message: format!(
                            "object is {} bytes, the recipe wants bytes {start}..{stop}",
                            object.len()
                        ),
                    })?;
            out.extend_from_slice(slice);
        }
        self.last_end.insert(pointer.recipe, end);
        Ok(out)
    }

    pub fn store(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}
