//! Append-only pack files. A pack is `"DITSPACK" | version u32`, then records
//! `id [32] | plain_len u32 | sealed_len u32 | sealed bytes`. Each writer process owns its
//! pack exclusively (an OS file lock held for the writer's life), so concurrent `git add`s
//! never interleave bytes, and repair only ever truncates packs nobody is writing.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::chunk_id::ChunkId;

pub const PACK_MAGIC: &[u8; 8] = b"DITSPACK";
pub const PACK_VERSION: u32 = 1;
pub const PACK_HEADER_LEN: u64 = 12;
pub const RECORD_HEADER_LEN: u64 = 40;
/// Records with a sealed payload this long or longer skip the write buffer: copying a
/// 64 KiB chunk into it costs more than the extra write call saves.
const DIRECT_WRITE: usize = 16 << 10;

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
        let (name, path, file) = loop {
            let nanos = unique_suffix();
            let name = format!("pack-{nanos:x}-{:x}.pack", std::process::id());
            let path = dir.join(&name);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.lock()?;
            // Another process opening the store may have taken the new, still unlocked,
            // empty file for an orphan and unlinked it before our lock: writing on would
            // put objects in a file no one can find. Start again under a new name.
            if still_linked_at(&file, &path)? {
                break (name, path, file);
            }
        };
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
        self.append_parts(id, plain_len, &[sealed])
    }

    /// Appends one record whose sealed bytes are `parts` joined (an envelope's header
    /// and payload, say), without joining them in memory first.
    pub fn append_parts(
        &mut self,
        id: &ChunkId,
        plain_len: u32,
        parts: &[&[u8]],
    ) -> io::Result<Location> {
        let sealed_len: usize = parts.iter().map(|p| p.len()).sum();
        let stored_len =
            u32::try_from(sealed_len).map_err(|_| io::Error::other("object larger than 4 GiB"))?;
        let mut header = [0u8; RECORD_HEADER_LEN as usize];
        header[..32].copy_from_slice(&id.0);
        header[32..36].copy_from_slice(&plain_len.to_be_bytes());
        header[36..].copy_from_slice(&stored_len.to_be_bytes());
        if sealed_len >= DIRECT_WRITE {
            // Buffered records first, so the file keeps the order of appends.
            self.out.flush()?;
            let mut slices = Vec::with_capacity(parts.len() + 1);
            slices.push(IoSlice::new(&header));
            slices.extend(parts.iter().map(|p| IoSlice::new(p)));
            write_all_vectored(self.out.get_mut(), &mut slices)?;
        } else {
            self.out.write_all(&header)?;
            for part in parts {
                self.out.write_all(part)?;
            }
        }
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

/// `write_all` for a vectored write (std's is not stable yet).
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Nanoseconds since the epoch: with the pid, a file name no other writer picks.
pub(crate) fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Opens `path` for repair and locks it, if no writer holds it and it still exists.
/// The lock lasts as long as the returned file; decide what to repair only once it is
/// held, since until then a writer may still be adding to (and indexing) the pack.
pub fn lock_idle(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.try_lock().is_err() || !still_linked_at(&file, path)? {
        return Ok(None);
    }
    Ok(Some(file))
}

/// Cuts a pack [`lock_idle`] locked back to `keep` bytes. Returns whether it was longer.
pub fn truncate_to(mut file: &File, keep: u64) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len <= keep {
        return Ok(false);
    }
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(true)
}

/// Whether `path` still names the file `file` has open.
fn still_linked_at(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    Ok(match std::fs::metadata(path) {
        Ok(named) => named.ino() == open.ino() && named.dev() == open.dev(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}
