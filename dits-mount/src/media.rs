//! Reading a Dits file at an offset without hydrating it: offset → recipe entries (binary
//! search over the encoded recipe) → objects from a bounded RAM cache, else the local
//! store, else the hub (through [`Fetcher`], which also keeps them in the local store, so
//! each is fetched once). A reader that streams gets the objects ahead of it requested
//! while it reads (read-ahead); a reader that jumps around fetches only what it reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dits_core::recipe::RecipeView;
use dits_core::{ChunkId, ChunkStore, LocalStore, Pointer};

use crate::fetch::{Fetcher, ObjectCache, Urgency};

/// Read-ahead, as the kernel does it for files: once a reader has streamed this many bytes
/// without seeking, request ahead as far as it has streamed so far, up to
/// [`MAX_READ_AHEAD`] (and a quarter of the RAM cache, so what was fetched ahead is still
/// cached when the reader gets there); a seek starts over. A probe (ffprobe reading a
/// header and a few frames) so fetches little beyond what it reads; a player or copy soon
/// has a window's worth of requests in flight.
const READ_AHEAD_AFTER: u64 = 1 << 20;
const MAX_READ_AHEAD: u64 = 32 << 20;

/// Where a reader of one file is: the next offset a sequential read would ask for, bytes
/// read since the last seek, and how far objects are already requested.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Stream {
    next: u64,
    streamed: u64,
    requested_until: u64,
}

impl Stream {
    /// Records a read of `offset..end` of a file of `size` bytes; returns the range to
    /// request ahead of it, if any. The next request goes out when half the window is
    /// left, so requests are at least half a window long.
    fn advance(&mut self, offset: u64, end: u64, size: u64, max_window: u64) -> Option<(u64, u64)> {
        let sequential = self.next == offset && offset > 0;
        self.next = end;
        if !sequential {
            self.streamed = end - offset;
            self.requested_until = end;
            return None;
        }
        self.streamed += end - offset;
        if self.streamed < READ_AHEAD_AFTER {
            return None;
        }
        let window = self.streamed.min(max_window);
        if self.requested_until >= (end + window / 2).min(size) {
            return None;
        }
        let from = end.max(self.requested_until);
        let to = (end + window).min(size);
        self.requested_until = to;
        (to > from).then_some((from, to))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("recipe {recipe} of this file cannot be read: {message}")]
    Recipe { recipe: String, message: String },
    #[error("object {id} is in neither the local store nor on the hub: {message}")]
    Object { id: String, message: String },
}

pub struct MediaReader {
    store: Arc<Mutex<LocalStore>>,
    fetcher: Fetcher,
    recipes: HashMap<ChunkId, Arc<Vec<u8>>>,
    cache: ObjectCache,
    streams: HashMap<ChunkId, Stream>,
    max_read_ahead: u64,
}

impl MediaReader {
    /// A reader over `store` with a RAM cache of `cache_bytes`, starting to connect to
    /// the hub now. `store_limit` (`dits.cacheSize`, 0: no bound) bounds the local store
    /// to about that many bytes, evicting least-recently-used packs whose objects the hub
    /// holds; fetched objects then go into packs of an eighth of that, so eviction has
    /// something to choose from.
    pub fn new(mut store: LocalStore, cache_bytes: u64, store_limit: u64) -> std::io::Result<Self> {
        let cache = moka::sync::Cache::builder()
            .weigher(|_: &ChunkId, v: &Arc<Vec<u8>>| v.len().try_into().unwrap_or(u32::MAX))
            .max_capacity(cache_bytes)
            .build();
        if store_limit > 0 {
            store.set_pack_rollover((store_limit / 8).max(4 << 20));
        }
        let store = Arc::new(Mutex::new(store));
        let fetcher = Fetcher::start(store.clone(), cache.clone(), store_limit)?;
        Ok(MediaReader {
            store,
            fetcher,
            recipes: HashMap::new(),
            cache,
            streams: HashMap::new(),
            max_read_ahead: MAX_READ_AHEAD.min(cache_bytes / 4),
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, LocalStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests those of `ids` that are neither cached, nor requested, nor stored.
    fn request_missing(&self, ids: &[ChunkId], urgency: Urgency) {
        let wanted: Vec<ChunkId> = ids
            .iter()
            .filter(|id| !self.cache.contains_key(*id) && !self.fetcher.requested(id))
            .copied()
            .collect();
        if wanted.is_empty() {
            return;
        }
        let missing: Vec<ChunkId> = {
            let store = self.store();
            wanted
                .into_iter()
                // An unreadable index: ask the hub; reading it later names the problem.
                .filter(|id| !store.contains(id).unwrap_or(false))
                .collect()
        };
        if !missing.is_empty() {
            self.fetcher.request(&missing, urgency);
        }
    }

    /// Object `id` from the local store or the hub (requested now if nobody has yet);
    /// the message says why neither has it.
    fn fetch_one(&self, id: &ChunkId) -> Result<Arc<Vec<u8>>, String> {
        let mut asked = false;
        loop {
            match self.fetcher.wait(id) {
                Some(Ok(bytes)) => return Ok(bytes),
                Some(Err(e)) if asked => return Err(e.to_string()),
                // A read-ahead's failure: this read asks again itself.
                Some(Err(_)) => {}
                None => {
                    let mut store = self.store();
                    if store.contains(id).map_err(|e| e.to_string())? {
                        return store.get(id).map(Arc::new).map_err(|e| e.to_string());
                    }
                    drop(store);
                    if asked {
                        // Landed, but could not be kept in the local store.
                        return self
                            .cache
                            .get(id)
                            .ok_or_else(|| "fetched but not kept; read it again".to_string());
                    }
                }
            }
            self.fetcher.request(&[*id], Urgency::Read);
            asked = true;
        }
    }

    fn recipe(&mut self, pointer: &Pointer) -> Result<Arc<Vec<u8>>, ReadError> {
        if let Some(r) = self.recipes.get(&pointer.recipe) {
            return Ok(r.clone());
        }
        let fail = |message: String| ReadError::Recipe {
            recipe: pointer.recipe.to_hex(),
            message,
        };
        let bytes = self.fetch_one(&pointer.recipe).map_err(fail)?;
        RecipeView::new(&bytes).map_err(|e| fail(e.to_string()))?;
        self.recipes.insert(pointer.recipe, bytes.clone());
        Ok(bytes)
    }

    fn object(&self, id: &ChunkId) -> Result<Arc<Vec<u8>>, ReadError> {
        if let Some(o) = self.cache.get(id) {
            return Ok(o);
        }
        let bytes = self.fetch_one(id).map_err(|message| ReadError::Object {
            id: id.to_hex(),
            message,
        })?;
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
        // This read's own objects in one request, then (for a streaming reader) what comes
        // next; the read is served as soon as its own objects land.
        let own: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        self.request_missing(&own, Urgency::Read);
        let mut stream = self
            .streams
            .get(&pointer.recipe)
            .copied()
            .unwrap_or_default();
        let ahead = stream.advance(offset, end, pointer.size, self.max_read_ahead);
        self.streams.insert(pointer.recipe, stream);
        if let Some((from, to)) = ahead {
            let wanted = view.entries_in(from, to).map_err(recipe_err)?;
            let ids: Vec<ChunkId> = wanted.iter().map(|e| e.id).collect();
            tracing::debug!(from, to, objects = ids.len(), "reading ahead");
            self.request_missing(&ids, Urgency::ReadAhead);
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
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Feeds `reads` (offset, len) of a file of `size` bytes; returns the read-ahead
    /// ranges requested.
    fn ahead_of(reads: &[(u64, u64)], size: u64, max: u64) -> Vec<(u64, u64)> {
        let mut stream = Stream::default();
        reads
            .iter()
            .filter_map(|&(at, len)| stream.advance(at, (at + len).min(size), size, max))
            .collect()
    }

    fn sequential(count: u64, len: u64) -> Vec<(u64, u64)> {
        (0..count).map(|i| (i * len, len)).collect()
    }

    #[test]
    fn a_streaming_reader_gets_a_growing_window_requested_ahead_once() {
        let ranges = ahead_of(&sequential(64, MIB / 2), 1 << 40, 8 * MIB);
        // Nothing before a mebibyte has been streamed, then a window as long as that.
        assert_eq!(ranges.first(), Some(&(MIB, 2 * MIB)));
        // Contiguous, never requested twice, never more than the window ahead.
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "{ranges:?}");
        }
        for (i, &(_, to)) in ranges.iter().enumerate() {
            assert!(to - ranges[i].0 <= 8 * MIB, "{ranges:?}");
        }
        // At full window, requests are at least half a window long.
        let last = ranges.last().unwrap();
        assert!(last.1 - last.0 >= 4 * MIB, "{ranges:?}");
        assert!(last.1 > 36 * MIB && last.1 <= 40 * MIB, "{ranges:?}");
    }

    #[test]
    fn read_ahead_stops_at_the_end_of_the_file() {
        let size = 3 * MIB;
        let ranges = ahead_of(&sequential(6, MIB / 2), size, 32 * MIB);
        assert_eq!(ranges, vec![(MIB, 2 * MIB), (2 * MIB, size)]);
    }

    #[test]
    fn random_reads_and_a_seek_request_nothing_ahead() {
        // A probe: header, tail, a few frames in between.
        let probe = [
            (0, 65536),
            (90 * MIB, 4096),
            (10 * MIB, 131072),
            (40 * MIB, 131072),
        ];
        assert!(ahead_of(&probe, 100 * MIB, 32 * MIB).is_empty());
        // A seek after streaming starts over: no read-ahead until a mebibyte again.
        let mut reads = sequential(4, MIB);
        reads.push((50 * MIB, MIB / 2));
        reads.push((50 * MIB + MIB / 2, MIB / 4));
        let ranges = ahead_of(&reads, 100 * MIB, 32 * MIB);
        assert!(
            ranges.iter().all(|&(from, _)| from < 50 * MIB),
            "{ranges:?}"
        );
    }

    #[test]
    fn no_window_means_no_read_ahead() {
        assert!(ahead_of(&sequential(64, MIB), 1 << 40, 0).is_empty());
    }
}
