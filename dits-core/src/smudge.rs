//! Smudge and verification: pointer → recipe → objects → bytes, each object re-hashed as
//! it is read and the whole file checked against the pointer's hash.

use std::collections::{HashMap, HashSet, VecDeque};
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
    #[error("recipe {recipe} describes a file of {actual} bytes but the pointer says {expected}: the recipe is corrupt or hostile, so nothing it names was fetched; ask whoever added the file to add and push it again")]
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
    decode_recipe(pointer, &bytes)
}

/// Decodes the recipe `pointer` names from its bytes. One that describes a file of another
/// size than the pointer's is refused from its header, before its entries are decoded
/// (see [`Recipe::decode_for_size`]), so a smudge never writes more than the pointer says.
pub fn decode_recipe(pointer: &Pointer, bytes: &[u8]) -> Result<Recipe, SmudgeError> {
    Recipe::decode_for_size(bytes, pointer.size).map_err(|source| match source {
        RecipeError::WrongSize { recipe_says, .. } => SmudgeError::SizeMismatch {
            recipe: pointer.recipe,
            expected: pointer.size,
            actual: recipe_says,
        },
        source => SmudgeError::BadRecipe {
            recipe: pointer.recipe,
            source,
        },
    })
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

/// Bytes of objects an [`EntryReader`] keeps for reuse, whatever the number of streams.
/// Legitimate chunks are at most 256 KiB, so this holds the current chunk of 256 streams;
/// a recipe with more streams (or with objects of up to 64 MiB) costs re-reads, never
/// memory.
pub const READER_CACHE_BYTES: usize = 64 << 20;

/// Hands out the bytes of recipe entries. Track-level recipes interleave slices of one
/// chunk per stream with other streams' chunks, so each stream's last object is kept
/// rather than read again for every slice, up to [`READER_CACHE_BYTES`] in all (the
/// longest kept is dropped first).
pub struct EntryReader {
    recipe: ChunkId,
    /// Each stream's last object and when it was loaded.
    current: HashMap<u16, (ChunkId, Vec<u8>, u64)>,
    /// Streams in load order with the load they refer to; stale pairs are skipped.
    order: VecDeque<(u16, u64)>,
    loads: u64,
    cached_bytes: usize,
}

impl EntryReader {
    pub fn new(recipe: ChunkId) -> Self {
        EntryReader {
            recipe,
            current: HashMap::new(),
            order: VecDeque::new(),
            loads: 0,
            cached_bytes: 0,
        }
    }

    /// The file bytes `e` stands for, read (and verified) from `store`.
    pub fn read<'a, S: ChunkStore>(
        &'a mut self,
        store: &mut S,
        e: &Entry,
    ) -> Result<&'a [u8], SmudgeError> {
        let fresh = !matches!(self.current.get(&e.stream), Some((id, _, _)) if *id == e.id);
        if fresh {
            self.load(store, e)?;
        }
        let recipe = self.recipe;
        let bytes = self
            .current
            .get(&e.stream)
            .map(|(_, bytes, _)| bytes.as_slice())
            .unwrap_or_default();
        let from = e.chunk_offset as usize;
        // Recipe::decode guarantees the slice lies inside chunk_len, checked in `load`.
        bytes
            .get(from..from + e.len as usize)
            .ok_or(SmudgeError::ObjectLength {
                recipe,
                id: e.id,
                expected: e.chunk_len,
                actual: bytes.len(),
            })
    }

    /// Reads `e`'s object in place of its stream's last one, making room first.
    fn load<S: ChunkStore>(&mut self, store: &mut S, e: &Entry) -> Result<(), SmudgeError> {
        if let Some((_, old, _)) = self.current.remove(&e.stream) {
            self.cached_bytes -= old.len();
        }
        let incoming = e.chunk_len as usize;
        while self.cached_bytes + incoming > READER_CACHE_BYTES {
            let Some((stream, load)) = self.order.pop_front() else {
                break;
            };
            if matches!(self.current.get(&stream), Some((_, _, l)) if *l == load) {
                if let Some((_, old, _)) = self.current.remove(&stream) {
                    self.cached_bytes -= old.len();
                }
            }
        }
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
        self.loads += 1;
        self.cached_bytes += bytes.len();
        self.current.insert(e.stream, (e.id, bytes, self.loads));
        self.order.push_back((e.stream, self.loads));
        if self.order.len() > 2 * self.current.len() + 16 {
            let current = &self.current;
            self.order
                .retain(|(s, load)| matches!(current.get(s), Some((_, _, l)) if l == load));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::CompressionHint;
    use crate::recipe::EntryKind;

    /// A store that counts reads, over a map.
    #[derive(Default)]
    struct CountingStore {
        objects: HashMap<ChunkId, Vec<u8>>,
        reads: usize,
    }

    impl ChunkStore for CountingStore {
        fn contains(&self, id: &ChunkId) -> Result<bool, StoreError> {
            Ok(self.objects.contains_key(id))
        }
        fn put(
            &mut self,
            id: &ChunkId,
            plain: &[u8],
            _: CompressionHint,
        ) -> Result<bool, StoreError> {
            Ok(self.objects.insert(*id, plain.to_vec()).is_none())
        }
        fn get(&mut self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
            self.reads += 1;
            self.objects
                .get(id)
                .cloned()
                .ok_or(StoreError::Missing { id: *id })
        }
    }

    fn slice(
        id: ChunkId,
        offset: u64,
        chunk_offset: u32,
        len: u32,
        chunk_len: u32,
        stream: u16,
    ) -> Entry {
        Entry {
            chunk_offset,
            chunk_len,
            stream,
            ..Entry::whole(id, offset, len, chunk_len, EntryKind::Chunk)
        }
    }

    #[test]
    fn interleaved_streams_read_each_object_once_while_they_fit() {
        let mut store = CountingStore::default();
        let a = vec![1u8; 1000];
        let b = vec![2u8; 1000];
        let (ia, ib) = (ChunkId::of(&a), ChunkId::of(&b));
        store.put(&ia, &a, CompressionHint::Try).unwrap();
        store.put(&ib, &b, CompressionHint::Try).unwrap();
        let mut reader = EntryReader::new(ChunkId::of(b"r"));
        for i in 0..10u32 {
            let e = slice(ia, 0, i * 100, 100, 1000, 2);
            assert_eq!(reader.read(&mut store, &e).unwrap(), &a[..100]);
            let e = slice(ib, 0, i * 100, 100, 1000, 3);
            assert_eq!(reader.read(&mut store, &e).unwrap(), &b[..100]);
        }
        assert_eq!(store.reads, 2);
    }

    #[test]
    fn many_streams_of_big_objects_stay_within_the_cache_bound() {
        let mut store = CountingStore::default();
        let len = 16 << 20;
        let mut ids = Vec::new();
        for i in 0..8u8 {
            let object = vec![i; len];
            let id = ChunkId::of(&object);
            store.put(&id, &object, CompressionHint::Try).unwrap();
            ids.push(id);
        }
        let mut reader = EntryReader::new(ChunkId::of(b"r"));
        for round in 0..2u32 {
            for (i, id) in ids.iter().enumerate() {
                let e = slice(*id, 0, round, 1, len as u32, 2 + i as u16);
                assert_eq!(reader.read(&mut store, &e).unwrap(), &[i as u8]);
                assert!(reader.cached_bytes <= READER_CACHE_BYTES);
                let held: usize = reader.current.values().map(|(_, b, _)| b.len()).sum();
                assert_eq!(held, reader.cached_bytes);
            }
        }
        // Eight streams of 16 MiB don't fit in 64 MiB: the second round reads again.
        assert_eq!(store.reads, 16);
        assert!(reader.order.len() <= 2 * reader.current.len() + 16);
    }
}
