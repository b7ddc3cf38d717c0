//! Append-only pack files. A pack is `"DITSPACK" | version u32`, then records
//! `id [32] | plain_len u32 | sealed_len u32 | sealed bytes`. Each writer process owns its
//! pack exclusively (an OS file lock held for the writer's life), so concurrent `git add`s
//! never interleave bytes, and repair only ever truncates packs nobody is writing.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::chunk_id::ChunkId;

pub const PACK_MAGIC: &[u8; 8] = b"DITSPACK";
pub const PACK_VERSION: u32 = 1;
pub const PACK_HEADER_LEN: u64 = 12;
pub const RECORD_HEADER_LEN: u64 = 40;

/// Where a sealed object sits inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub offset: u64,
    pub stored_len: u32,
    pub plain_len: u32,
}

/// An open pack being appended to by this process.
pub struct PackWriter {
    pub name: String,
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
}

impl PackWriter {
    /// Creates a fresh pack with a name no other process can pick and locks it.
    pub fn create(dir: &Path) -> io::Result<PackWriter> {
        let nanos = unique_suffix();
        let name = format!("pack-{nanos:x}-{:x}.pack", std::process::id());
        let path = dir.join(&name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.lock()?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(PACK_MAGIC)?;
        out.write_all(&PACK_VERSION.to_be_bytes())?;
        out.flush()?;
        // The new directory entry must survive a crash as surely as the data will.
        File::open(dir)?.sync_all()?;
        Ok(PackWriter {
            name,
            path,
            out,
            len: PACK_HEADER_LEN,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == PACK_HEADER_LEN
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, id: &ChunkId, plain_len: u32, sealed: &[u8]) -> io::Result<Location> {
        let stored_len = u32::try_from(sealed.len())
            .map_err(|_| io::Error::other("object larger than 4 GiB"))?;
        self.out.write_all(&id.0)?;
        self.out.write_all(&plain_len.to_be_bytes())?;
        self.out.write_all(&stored_len.to_be_bytes())?;
        self.out.write_all(sealed)?;
        let offset = self.len + RECORD_HEADER_LEN;
        self.len = offset + u64::from(stored_len);
        Ok(Location {
            offset,
            stored_len,
            plain_len,
        })
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    /// Flushes buffered bytes so positional reads of our own pack see them.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Nanoseconds since the epoch: with the pid, a file name no other writer picks.
pub(crate) fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Truncates `path` to `keep` bytes if no writer holds it. Returns whether it was
/// repaired (false when busy or already clean).
pub fn truncate_unindexed_tail(path: &Path, keep: u64) -> io::Result<bool> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    if file.try_lock().is_err() {
        return Ok(false);
    }
    let len = file.seek(SeekFrom::End(0))?;
    if len <= keep {
        return Ok(false);
    }
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(true)
}

/// Deletes a pack no index row refers to, if no writer holds it.
pub fn remove_if_orphaned(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    if file.try_lock().is_err() {
        return Ok(false);
    }
    std::fs::remove_file(path)?;
    Ok(true)
}
