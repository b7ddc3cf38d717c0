//! The local chunk store (`.git/dits/` in a repository): sealed objects appended to pack
//! files and located through a SQLite index. Durability order: pack bytes are fsync'd
//! before their index rows commit, so a crash leaves at most an unindexed pack tail,
//! which the next open truncates. Everything read back is re-hashed (see envelope).

pub mod index;
pub mod pack;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::chunk_id::ChunkId;
use crate::envelope::{self, CompressionHint, EnvelopeError};
pub use index::FileIdentity;
use index::Index;
use pack::{Location, PackWriter, PACK_HEADER_LEN};

/// Roll over to a new pack past this size, so no single file grows without bound.
const PACK_ROLLOVER: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("chunk store index {path}: {source}")]
    Index {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("object {id} is not in the local store")]
    Missing { id: ChunkId },
    #[error("object {id} is {len} bytes; objects are limited to 4 GiB")]
    TooLarge { id: ChunkId, len: usize },
    #[error("object {id} in {pack}: stored copy is unreadable: {source}")]
    Corrupt {
        id: ChunkId,
        pack: String,
        source: Box<EnvelopeError>,
    },
}

/// Something that holds sealed objects by id. The local store is the first; the hub
/// client and caching/encrypting decorators implement the same trait later.
pub trait ChunkStore {
    fn contains(&self, id: &ChunkId) -> Result<bool, StoreError>;
    /// Stores `plain` under `id` (its BLAKE3) unless present; returns whether it was new.
    fn put(
        &mut self,
        id: &ChunkId,
        plain: &[u8],
        hint: CompressionHint,
    ) -> Result<bool, StoreError>;
    /// Reads and verifies an object.
    fn get(&mut self, id: &ChunkId) -> Result<Vec<u8>, StoreError>;
}

/// What a repair on open found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub truncated_packs: Vec<String>,
    pub removed_packs: Vec<String>,
}

pub struct LocalStore {
    root: PathBuf,
    index: Index,
    writer: Option<PackWriter>,
    /// Appended but not yet durable+indexed objects of our own pack.
    pending: HashMap<ChunkId, Location>,
    pending_order: Vec<ChunkId>,
    readers: HashMap<String, File>,
    /// When each pack was last read by this process (for least-recently-used eviction).
    used: HashMap<String, std::time::Instant>,
    rollover: u64,
    pub repair: RepairReport,
}

/// One pack of the store, for cache eviction.
#[derive(Debug, Clone)]
pub struct PackInfo {
    pub name: String,
    pub bytes: u64,
    /// Last read by this process, if it was.
    pub used: Option<std::time::Instant>,
    pub modified: std::time::SystemTime,
}

impl LocalStore {
    /// Opens (creating if needed) the store rooted at `root` and repairs what a crash
    /// may have left.
    pub fn open(root: &Path) -> Result<LocalStore, StoreError> {
        for dir in [root.to_path_buf(), root.join("packs"), root.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let index_path = root.join("index.sqlite");
        let index = Index::open(&index_path).map_err(|source| StoreError::Index {
            path: index_path.clone(),
            source,
        })?;
        let mut store = LocalStore {
            root: root.to_path_buf(),
            index,
            writer: None,
            pending: HashMap::new(),
            pending_order: Vec::new(),
            readers: HashMap::new(),
            used: HashMap::new(),
            rollover: PACK_ROLLOVER,
            repair: RepairReport::default(),
        };
        store.repair = store.repair_packs()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a new pack once the current one reaches `bytes` (default 1 GiB): a cache
    /// that evicts whole packs wants them small.
    pub fn set_pack_rollover(&mut self, bytes: u64) {
        self.rollover = bytes.max(1 << 20);
    }

    /// Every closed pack (not the one being written), with its size and use.
    pub fn packs(&self) -> Result<Vec<PackInfo>, StoreError> {
        let current = self.writer.as_ref().map(|w| w.name.clone());
        let mut out = Vec::new();
        for (name, _) in self.index.pack_ends().map_err(|e| self.index_err(e))? {
            if Some(&name) == current.as_ref() {
                continue;
            }
            let path = self.packs_dir().join(&name);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            out.push(PackInfo {
                used: self.used.get(&name).copied(),
                modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                bytes: meta.len(),
                name,
            });
        }
        Ok(out)
    }

    pub fn pack_object_ids(&self, name: &str) -> Result<Vec<ChunkId>, StoreError> {
        self.index.pack_objects(name).map_err(|e| self.index_err(e))
    }

    /// Drops a closed pack and its objects from the store; returns the bytes freed. The
    /// caller must know they can be had again (they are on the hub).
    pub fn evict_pack(&mut self, name: &str) -> Result<u64, StoreError> {
        if self.writer.as_ref().is_some_and(|w| w.name == name) {
            return Ok(0);
        }
        let path = self.packs_dir().join(name);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // Index first: a crash between the two leaves an orphan file, which the next
        // open removes, never an index row pointing at nothing.
        self.index
            .remove_pack(name)
            .map_err(|e| self.index_err(e))?;
        self.readers.remove(name);
        self.used.remove(name);
        std::fs::remove_file(&path).map_err(|e| Self::io_err(&path, e))?;
        Ok(bytes)
    }

    /// Keeps only the objects of closed pack `name` that `keep` selects: none kept, the
    /// pack is dropped; some, they are copied into a new pack (made durable first) and the
    /// index moves to it in one transaction before the old file goes. A crash anywhere
    /// leaves one of the two indexed and the other for the next open to remove. Returns
    /// the bytes freed. The caller must know what it drops can be had again.
    pub fn rewrite_pack(
        &mut self,
        name: &str,
        keep: &dyn Fn(&ChunkId) -> bool,
    ) -> Result<u64, StoreError> {
        if self.writer.as_ref().is_some_and(|w| w.name == name) {
            return Ok(0);
        }
        let ids = self.pack_object_ids(name)?;
        let kept: Vec<ChunkId> = ids.iter().filter(|id| keep(id)).copied().collect();
        if kept.is_empty() {
            return self.evict_pack(name);
        }
        if kept.len() == ids.len() {
            return Ok(0);
        }
        let dir = self.packs_dir();
        let mut writer = PackWriter::create(&dir).map_err(|e| Self::io_err(&dir, e))?;
        let new_path = writer.path().to_path_buf();
        let mut moved = Vec::with_capacity(kept.len());
        for id in &kept {
            let (plain_len, sealed) = self.get_sealed(id)?;
            let loc = writer
                .append(id, plain_len, &sealed)
                .map_err(|e| Self::io_err(&new_path, e))?;
            moved.push((*id, loc));
        }
        writer.sync().map_err(|e| Self::io_err(&new_path, e))?;
        let new_len = writer.len();
        self.index
            .move_pack(name, &writer.name, &moved)
            .map_err(|e| self.index_err(e))?;
        drop(writer);
        let path = dir.join(name);
        let old_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.readers.remove(name);
        self.used.remove(name);
        std::fs::remove_file(&path).map_err(|e| Self::io_err(&path, e))?;
        Ok(old_len.saturating_sub(new_len))
    }

    /// Where callers may put temporary files on the same file system as the store.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }

    fn index_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Index {
            path: self.root.join("index.sqlite"),
            source,
        }
    }

    fn io_err(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn repair_packs(&mut self) -> Result<RepairReport, StoreError> {
        let mut report = RepairReport::default();
        let dir = self.packs_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| Self::io_err(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Self::io_err(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".pack") {
                continue;
            }
            let path = entry.path();
            let Some(file) = pack::lock_idle(&path).map_err(|e| Self::io_err(&path, e))? else {
                continue;
            };
            // Read the index only now: the writer that held the pack until a moment ago
            // may have indexed more of it, and what it indexed must stay.
            let indexed_end = self.index.pack_end(&name).map_err(|e| self.index_err(e))?;
            match indexed_end {
                Some(end) => {
                    if pack::truncate_to(&file, end.max(PACK_HEADER_LEN))
                        .map_err(|e| Self::io_err(&path, e))?
                    {
                        tracing::warn!(pack = %name, "cut off the unindexed tail an interrupted write left");
                        report.truncated_packs.push(name);
                    }
                }
                None => {
                    std::fs::remove_file(&path).map_err(|e| Self::io_err(&path, e))?;
                    tracing::warn!(pack = %name, "removed a pack an interrupted write left unindexed");
                    report.removed_packs.push(name);
                }
            }
        }
        Ok(report)
    }

    /// Makes every object put so far durable: fsync the pack, then index it.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        writer.sync().map_err(|e| StoreError::Io {
            path: writer.path().to_path_buf(),
            source: e,
        })?;
        let rows: Vec<(ChunkId, Location)> = self
            .pending_order
            .iter()
            .filter_map(|id| self.pending.get(id).map(|l| (*id, *l)))
            .collect();
        let name = writer.name.clone();
        let index_path = self.root.join("index.sqlite");
        self.index
            .commit(&name, &rows)
            .map_err(|source| StoreError::Index {
                path: index_path,
                source,
            })?;
        self.pending.clear();
        self.pending_order.clear();
        if writer.len() >= self.rollover {
            self.writer = None;
        }
        Ok(())
    }

    /// Runs `work` with one index read transaction shared by all its lookups (see
    /// [`Index::hold_snapshot`]): for a clean, which looks up every chunk it cuts.
    /// `work` must not flush; the snapshot ends before this returns, whatever `work` did.
    pub fn with_index_snapshot<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.index.hold_snapshot().map_err(|e| self.index_err(e))?;
        let out = work(self);
        self.index
            .release_snapshot()
            .map_err(|e| self.index_err(e))?;
        out
    }

    pub fn object_count(&self) -> Result<u64, StoreError> {
        self.index.object_count().map_err(|e| self.index_err(e))
    }

    /// Stored size of an object, if present.
    pub fn stored_len(&self, id: &ChunkId) -> Result<Option<u32>, StoreError> {
        if let Some(loc) = self.pending.get(id) {
            return Ok(Some(loc.stored_len));
        }
        Ok(self
            .index
            .lookup(id)
            .map_err(|e| self.index_err(e))?
            .map(|o| o.location.stored_len))
    }

    pub fn cached_pointer(&self, oid: &ChunkId, size: u64) -> Result<Option<String>, StoreError> {
        self.index
            .cached_pointer(oid, size)
            .map_err(|e| self.index_err(e))
    }

    pub fn remember_pointer(
        &self,
        oid: &ChunkId,
        size: u64,
        pointer: &str,
    ) -> Result<(), StoreError> {
        self.index
            .remember_pointer(oid, size, pointer)
            .map_err(|e| self.index_err(e))
    }

    /// An encrypted repository's pointer for `(oid, size)` as last committed or checked
    /// out here: clean gives it back for unchanged content, so a file keeps the key it
    /// was sealed with (after a rotation, or for a member who no longer holds the current
    /// key) and `git status` stays clean.
    pub fn sealed_pointer(&self, oid: &ChunkId, size: u64) -> Result<Option<String>, StoreError> {
        self.index
            .sealed_pointer(oid, size)
            .map_err(|e| self.index_err(e))
    }

    pub fn remember_sealed_pointer(
        &self,
        oid: &ChunkId,
        size: u64,
        pointer: &str,
    ) -> Result<(), StoreError> {
        self.index
            .remember_sealed_pointer(oid, size, pointer)
            .map_err(|e| self.index_err(e))
    }

    /// The stat and whole-file hash last recorded for the working file at `path`: a hint
    /// for clean, never a substitute for hashing what Git sends.
    pub fn recorded_stat(
        &self,
        path: &[u8],
    ) -> Result<Option<(FileIdentity, ChunkId)>, StoreError> {
        self.index
            .recorded_stat(path)
            .map_err(|e| self.index_err(e))
    }

    pub fn remember_stat(&self, file: &FileIdentity, oid: &ChunkId) -> Result<(), StoreError> {
        self.index
            .remember_stat(file, oid)
            .map_err(|e| self.index_err(e))
    }

    /// The stored envelope of `id` exactly as it sits in its pack, with its plaintext
    /// length, *unverified*: for handing on to a peer that opens (and so verifies) it
    /// itself, such as the hub on upload. Saves a decompress, a hash and a re-seal.
    pub fn get_sealed(&mut self, id: &ChunkId) -> Result<(u32, Vec<u8>), StoreError> {
        let (pack, loc) = self.locate(id)?;
        Ok((loc.plain_len, self.read_sealed(&pack, loc)?))
    }

    /// Stores an envelope exactly as it came from a peer (the hub on download), once the
    /// caller has checked it with [`envelope::verify`]: no copy of the plaintext is made
    /// or kept, so what a download holds is its sealed bytes (a few KiB for an object
    /// that compresses to nothing) rather than up to 64 MiB of plaintext. Every read
    /// ([`ChunkStore::get`]) opens and re-hashes it again. Returns whether it was new.
    pub fn put_verified_sealed(
        &mut self,
        id: &ChunkId,
        plain_len: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        if self.contains(id)? {
            return Ok(false);
        }
        if self.writer.is_none() {
            let dir = self.packs_dir();
            self.writer = Some(PackWriter::create(&dir).map_err(|e| Self::io_err(&dir, e))?);
        }
        let writer = self.writer.as_mut().expect("writer was just created");
        let loc = writer
            .append(id, plain_len, sealed)
            .map_err(|e| StoreError::Io {
                path: writer.path().to_path_buf(),
                source: e,
            })?;
        self.pending.insert(*id, loc);
        self.pending_order.push(*id);
        Ok(true)
    }

    /// Which pack holds `id` and where; pending objects are flushed to the OS first so a
    /// reader sees them.
    fn locate(&mut self, id: &ChunkId) -> Result<(String, Location), StoreError> {
        if let Some(loc) = self.pending.get(id).copied() {
            let writer = self
                .writer
                .as_mut()
                .expect("pending objects live in the open writer");
            writer.flush().map_err(|e| StoreError::Io {
                path: writer.path().to_path_buf(),
                source: e,
            })?;
            return Ok((writer.name.clone(), loc));
        }
        let found = self.index.lookup(id).map_err(|e| self.index_err(e))?;
        let found = found.ok_or(StoreError::Missing { id: *id })?;
        self.used
            .insert(found.pack.clone(), std::time::Instant::now());
        Ok((found.pack, found.location))
    }

    fn reader(&mut self, pack: &str) -> Result<&File, StoreError> {
        if !self.readers.contains_key(pack) {
            let path = self.packs_dir().join(pack);
            let f = File::open(&path).map_err(|e| Self::io_err(&path, e))?;
            self.readers.insert(pack.to_string(), f);
        }
        Ok(&self.readers[pack])
    }

    fn read_sealed(&mut self, pack: &str, loc: Location) -> Result<Vec<u8>, StoreError> {
        let path = self.packs_dir().join(pack);
        let file = self.reader(pack)?;
        let mut buf = vec![0u8; loc.stored_len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| Self::io_err(&path, e))?;
        Ok(buf)
    }
}

impl ChunkStore for LocalStore {
    fn contains(&self, id: &ChunkId) -> Result<bool, StoreError> {
        Ok(self.pending.contains_key(id)
            || self
                .index
                .lookup(id)
                .map_err(|e| self.index_err(e))?
                .is_some())
    }

    fn put(
        &mut self,
        id: &ChunkId,
        plain: &[u8],
        hint: CompressionHint,
    ) -> Result<bool, StoreError> {
        if self.contains(id)? {
            return Ok(false);
        }
        let plain_len = u32::try_from(plain.len()).map_err(|_| StoreError::TooLarge {
            id: *id,
            len: plain.len(),
        })?;
        if self.writer.is_none() {
            let dir = self.packs_dir();
            self.writer = Some(PackWriter::create(&dir).map_err(|e| Self::io_err(&dir, e))?);
        }
        let sealed = envelope::seal_parts(plain, hint);
        let writer = self.writer.as_mut().expect("writer was just created");
        let loc = writer
            .append_parts(id, plain_len, &[&sealed.header, &sealed.payload])
            .map_err(|e| StoreError::Io {
                path: writer.path().to_path_buf(),
                source: e,
            })?;
        self.pending.insert(*id, loc);
        self.pending_order.push(*id);
        Ok(true)
    }

    fn get(&mut self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        let (pack, loc) = self.locate(id)?;
        let sealed = self.read_sealed(&pack, loc)?;
        envelope::open(id, &sealed, u64::from(loc.plain_len)).map_err(|source| {
            StoreError::Corrupt {
                id: *id,
                pack,
                source: Box::new(source),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_survive_reopen_and_duplicates_are_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"hello chunk".repeat(100);
        let id = ChunkId::of(&data);
        {
            let mut s = LocalStore::open(dir.path()).unwrap();
            assert!(s.put(&id, &data, CompressionHint::Try).unwrap());
            assert!(!s.put(&id, &data, CompressionHint::Try).unwrap());
            assert_eq!(s.get(&id).unwrap(), data);
            s.flush().unwrap();
        }
        let mut s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.get(&id).unwrap(), data);
        assert_eq!(s.object_count().unwrap(), 1);
    }

    #[test]
    fn a_rewritten_pack_keeps_what_was_kept_across_a_reopen_and_frees_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let objects: Vec<Vec<u8>> = (0..6u8)
            .map(|i| crate::test_bytes::test_bytes(50_000, u64::from(i)))
            .collect();
        let ids: Vec<ChunkId> = objects.iter().map(|o| ChunkId::of(o)).collect();
        {
            let mut s = LocalStore::open(dir.path()).unwrap();
            for (id, o) in ids.iter().zip(&objects) {
                s.put(id, o, CompressionHint::Try).unwrap();
            }
            s.flush().unwrap();
        }
        let mut s = LocalStore::open(dir.path()).unwrap();
        let pack = s.packs().unwrap()[0].name.clone();
        let keep: std::collections::HashSet<ChunkId> = ids.iter().step_by(2).copied().collect();
        let freed = s.rewrite_pack(&pack, &|id| keep.contains(id)).unwrap();
        assert!(freed >= 3 * 50_000, "freed {freed}");
        drop(s);
        let mut s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.packs().unwrap().len(), 1);
        assert_ne!(s.packs().unwrap()[0].name, pack);
        for (id, o) in ids.iter().zip(&objects) {
            match keep.contains(id) {
                true => assert_eq!(&s.get(id).unwrap(), o),
                false => assert!(matches!(s.get(id), Err(StoreError::Missing { .. }))),
            }
        }
        // Nothing kept: the pack goes whole.
        let pack = s.packs().unwrap()[0].name.clone();
        s.rewrite_pack(&pack, &|_| false).unwrap();
        assert_eq!(s.object_count().unwrap(), 0);
        assert!(s.packs().unwrap().is_empty());
    }

    #[test]
    fn small_and_large_records_keep_their_order_in_the_pack() {
        // Large records bypass the pack's write buffer; small ones queue in it.
        let dir = tempfile::tempdir().unwrap();
        let objects: Vec<Vec<u8>> = [10usize, 100_000, 20, 30, 70_000, 5]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (j * 131 + i * 7 + j / 251) as u8).collect())
            .collect();
        {
            let mut s = LocalStore::open(dir.path()).unwrap();
            for o in &objects {
                s.put(&ChunkId::of(o), o, CompressionHint::Probe).unwrap();
            }
            for o in &objects {
                assert_eq!(&s.get(&ChunkId::of(o)).unwrap(), o);
            }
            s.flush().unwrap();
        }
        let mut s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.repair, RepairReport::default());
        for o in &objects {
            assert_eq!(&s.get(&ChunkId::of(o)).unwrap(), o);
        }
    }

    #[test]
    fn unflushed_objects_are_repaired_away_on_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let kept = b"kept".repeat(10);
        let lost = b"lost".repeat(10);
        {
            let mut s = LocalStore::open(dir.path()).unwrap();
            s.put(&ChunkId::of(&kept), &kept, CompressionHint::Try)
                .unwrap();
            s.flush().unwrap();
            s.put(&ChunkId::of(&lost), &lost, CompressionHint::Try)
                .unwrap();
            s.writer.as_mut().unwrap().flush().unwrap();
            // Simulate a crash: the process dies without flush, releasing its lock.
            s.pending.clear();
            s.pending_order.clear();
        }
        let mut s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.repair.truncated_packs.len(), 1);
        assert_eq!(s.get(&ChunkId::of(&kept)).unwrap(), kept);
        assert!(matches!(
            s.get(&ChunkId::of(&lost)),
            Err(StoreError::Missing { .. })
        ));
    }
}
