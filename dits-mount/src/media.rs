//! Reading a Dits file at an offset without hydrating it: offset → recipe entries (binary
//! search over the encoded recipe) → objects from a bounded RAM cache, else the local
//! store, else the hub (fetched into the local store, so each is fetched once). A read
//! that continues the previous one fetches the next objects along with it (read-ahead).

use std::collections::HashMap;
use std::sync::Arc;

use dits_core::recipe::RecipeView;
use dits_core::{ChunkId, ChunkStore, LocalStore, Pointer, StoreError};
use dits_filter::{ObjectSource, SourceError};

/// Read-ahead, as the kernel does it for files: once a reader has streamed this many bytes
/// without seeking, fetch ahead as far as it has streamed so far, up to
/// [`MAX_READ_AHEAD`]; a seek starts over. A probe (ffprobe reading a header and a few
/// frames) so fetches little beyond what it reads; a player or copy soon fetches in big
/// batches.
const READ_AHEAD_AFTER: u64 = 1 << 20;
const MAX_READ_AHEAD: u64 = 32 << 20;

/// Where a reader of one file is: the next offset a sequential read would ask for, bytes
/// read since the last seek, and how far objects are already fetched.
#[derive(Default, Clone, Copy)]
struct Stream {
    next: u64,
    streamed: u64,
    fetched_until: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("recipe {recipe} of this file cannot be read: {message}")]
    Recipe { recipe: String, message: String },
    #[error("object {id} is in neither the local store nor on the hub: {message}")]
    Object { id: String, message: String },
}

/// Why objects could not be brought into the local store; [`ReadError`] names the object
/// or recipe that needed them.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

pub struct MediaReader {
    store: LocalStore,
    source: Box<dyn ObjectSource>,
    recipes: HashMap<ChunkId, Arc<Vec<u8>>>,
    cache: moka::sync::Cache<ChunkId, Arc<Vec<u8>>>,
    streams: HashMap<ChunkId, Stream>,
    /// `dits.cacheSize`: bytes of local store packs to keep (0: no bound).
    store_limit: u64,
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
            streams: HashMap::new(),
            store_limit: 0,
        }
    }

    /// Bounds the local store to about `bytes`, evicting least-recently-used packs whose
    /// objects the hub holds. Fetched objects then go into packs of an eighth of that, so
    /// eviction has something to choose from.
    pub fn with_store_limit(mut self, bytes: u64) -> Self {
        self.store_limit = bytes;
        if bytes > 0 {
            self.store.set_pack_rollover((bytes / 8).max(4 << 20));
        }
        self
    }

    /// Evicts packs (least recently used first) until the store is within its limit.
    /// Packs holding anything the hub lacks (unpushed work) are never evicted.
    fn enforce_store_limit(&mut self) {
        if self.store_limit == 0 {
            return;
        }
        let Ok(mut packs) = self.store.packs() else {
            return;
        };
        let mut total: u64 = packs.iter().map(|p| p.bytes).sum();
        if total <= self.store_limit {
            return;
        }
        packs.sort_by_key(|p| (p.used, p.modified));
        for p in packs {
            if total <= self.store_limit * 9 / 10 {
                break;
            }
            let Ok(ids) = self.store.pack_object_ids(&p.name) else {
                continue;
            };
            if !matches!(self.source.holds(&ids), Ok(true)) {
                continue;
            }
            match self.store.evict_pack(&p.name) {
                Ok(freed) => {
                    tracing::debug!(pack = %p.name, freed, "evicted from the local store");
                    total = total.saturating_sub(freed);
                }
                Err(e) => tracing::warn!("evicting {}: {e}", p.name),
            }
        }
    }

    fn fetch(&mut self, ids: &[ChunkId]) -> Result<(), FetchError> {
        let mut missing = Vec::new();
        for id in ids {
            if !self.store.contains(id)? && !missing.contains(id) {
                missing.push(*id);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let fetched = self.source.fetch(&mut self.store, &missing);
        self.enforce_store_limit();
        Ok(fetched?)
    }

    fn recipe(&mut self, pointer: &Pointer) -> Result<Arc<Vec<u8>>, ReadError> {
        if let Some(r) = self.recipes.get(&pointer.recipe) {
            return Ok(r.clone());
        }
        let fail = |message: String| ReadError::Recipe {
            recipe: pointer.recipe.to_hex(),
            message,
        };
        self.fetch(&[pointer.recipe])
            .map_err(|e| fail(e.to_string()))?;
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
            self.fetch(&[*id]).map_err(|e| fail(e.to_string()))?;
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
        let recipe_err = |e: dits_core::recipe::RecipeError| ReadError::Recipe {
            recipe: pointer.recipe.to_hex(),
            message: e.to_string(),
        };
        let view = RecipeView::new(&recipe).map_err(recipe_err)?;
        let entries = view.entries_in(offset, end).map_err(recipe_err)?;
        // One fetch for everything this read needs plus, for a sequential reader, what
        // comes next: the transfer runs those in parallel. Ahead of a streaming reader the
        // next fetch starts when half the window is left.
        let mut st = self
            .streams
            .get(&pointer.recipe)
            .copied()
            .unwrap_or_default();
        let sequential = st.next == offset && offset > 0;
        st.streamed = if sequential {
            st.streamed + (end - offset)
        } else {
            end - offset
        };
        let window = if st.streamed >= READ_AHEAD_AFTER {
            st.streamed.min(MAX_READ_AHEAD)
        } else {
            0
        };
        let (from, to) = if sequential && st.fetched_until >= end + window / 2 {
            (end, end)
        } else if sequential {
            (
                offset.max(st.fetched_until),
                (end + window).min(pointer.size),
            )
        } else {
            (offset, end)
        };
        if to > from {
            let wanted = view.entries_in(from, to).map_err(recipe_err)?;
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
            st.fetched_until = to;
        }
        st.next = end;
        self.streams.insert(pointer.recipe, st);
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
        Ok(out)
    }

    pub fn store(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}
