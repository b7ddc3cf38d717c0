//! Clean: file bytes in, pointer out. The input is spooled once to a temporary file in the
//! store (hashing it on the way) because an MP4's `moov` may come after its `mdat`, and
//! keyframe cut points must be known before the payload is chunked; memory stays bounded
//! by a few chunk sizes whatever the file's size. Content already cleaned once is
//! answered from the pointer cache without re-chunking.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::chunk_id::ChunkId;
use crate::chunker::chunk_range;
use crate::envelope::CompressionHint;
use crate::media::{analyze, Layout, Region};
use crate::pointer::Pointer;
use crate::recipe::{Entry, EntryKind, Recipe};
use crate::store::{ChunkStore, LocalStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("reading the file's content: {0}")]
    Input(io::Error),
    #[error("temporary spool file: {0}")]
    Spool(io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a clean did, for callers that report or measure.
#[derive(Debug, Clone)]
pub struct CleanOutcome {
    pub pointer: Pointer,
    pub layout_summary: String,
    /// Why structure-aware splitting fell back to plain chunking, if it did.
    pub fallback_reason: Option<String>,
    pub objects: usize,
    pub new_objects: usize,
    pub new_bytes: u64,
    /// The pointer came from the cache: no chunking happened.
    pub cached: bool,
}

/// Cleans everything `input` yields into `store` and returns the pointer. Objects are
/// durable in the store before this returns.
pub fn clean<R: Read>(input: R, store: &mut LocalStore) -> Result<CleanOutcome, CleanError> {
    let (mut spool, oid, size) = spool(input, store)?;
    if let Some(text) = store.cached_pointer(&oid, size)? {
        if let Ok(pointer) = Pointer::parse(text.as_bytes()) {
            if store.contains(&pointer.recipe)? {
                return Ok(CleanOutcome {
                    layout_summary: pointer.media.clone(),
                    pointer,
                    fallback_reason: None,
                    objects: 0,
                    new_objects: 0,
                    new_bytes: 0,
                    cached: true,
                });
            }
        }
    }
    let layout = analyze(&mut spool, size);
    let mut outcome = store_layout(&mut spool, &layout, store)?;
    outcome.recipe.file_size = size;
    let recipe_bytes = outcome.recipe.encode();
    let recipe_id = ChunkId::of(&recipe_bytes);
    store.put(&recipe_id, &recipe_bytes, CompressionHint::Try)?;
    store.flush()?;
    let summary = layout.summary_line();
    let pointer = Pointer {
        media: summary.clone(),
        oid,
        recipe: recipe_id,
        size,
    };
    store.remember_pointer(&oid, size, &pointer.encode())?;
    Ok(CleanOutcome {
        pointer,
        layout_summary: summary,
        fallback_reason: layout.fallback_reason.clone(),
        objects: outcome.recipe.entries.len(),
        new_objects: outcome.new_objects,
        new_bytes: outcome.new_bytes,
        cached: false,
    })
}

struct Stored {
    recipe: Recipe,
    new_objects: usize,
    new_bytes: u64,
}

fn spool<R: Read>(mut input: R, store: &LocalStore) -> Result<(File, ChunkId, u64), CleanError> {
    // An unnamed temp file vanishes with the process, so a killed add leaves no litter.
    let mut spool = tempfile_in(store).map_err(CleanError::Spool)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CleanError::Input(e)),
        };
        hasher.update(&buf[..n]);
        spool.write_all(&buf[..n]).map_err(CleanError::Spool)?;
        size += n as u64;
    }
    spool.seek(SeekFrom::Start(0)).map_err(CleanError::Spool)?;
    Ok((spool, hasher.finalize().into(), size))
}

fn tempfile_in(store: &LocalStore) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = store.tmp_dir();
    // O_TMPFILE where the file system has it; otherwise create-and-unlink.
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_tmpfile())
        .open(&dir)
    {
        Ok(f) => Ok(f),
        Err(_) => {
            let path = dir.join(format!(
                "spool-{}-{:x}",
                std::process::id(),
                crate::store::pack::unique_suffix()
            ));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
    }
}

const fn libc_o_tmpfile() -> i32 {
    // O_TMPFILE = __O_TMPFILE | O_DIRECTORY on Linux (x86_64 and aarch64 share it).
    0o20000000 | 0o200000
}

fn store_layout(
    file: &mut File,
    layout: &Layout,
    store: &mut LocalStore,
) -> Result<Stored, CleanError> {
    let mut out = Stored {
        recipe: Recipe::default(),
        new_objects: 0,
        new_bytes: 0,
    };
    for region in &layout.regions {
        match region {
            Region::Object {
                offset,
                len,
                fourcc,
            } => {
                let mut bytes = vec![0u8; *len as usize];
                file.seek(SeekFrom::Start(*offset))
                    .map_err(CleanError::Spool)?;
                file.read_exact(&mut bytes).map_err(CleanError::Spool)?;
                let id = ChunkId::of(&bytes);
                record(
                    &mut out,
                    store,
                    id,
                    *offset,
                    &bytes,
                    EntryKind::Box { fourcc: *fourcc },
                    false,
                    CompressionHint::Try,
                )?;
            }
            Region::Payload { offset, len, cuts } => {
                let hint = if layout.container == crate::media::Container::Other {
                    CompressionHint::Try
                } else {
                    CompressionHint::Probe
                };
                let mut failure: Option<CleanError> = None;
                chunk_range(file, *offset, *len, cuts, |c| {
                    record(
                        &mut out,
                        store,
                        c.id,
                        c.offset,
                        &c.data,
                        EntryKind::Chunk,
                        c.keyframe,
                        hint,
                    )
                    .map_err(|e| {
                        failure = Some(e);
                        io::Error::other("store failed")
                    })
                })
                .map_err(|e| failure.take().unwrap_or(CleanError::Spool(e)))?;
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn record(
    out: &mut Stored,
    store: &mut LocalStore,
    id: ChunkId,
    offset: u64,
    bytes: &[u8],
    kind: EntryKind,
    keyframe: bool,
    hint: CompressionHint,
) -> Result<(), CleanError> {
    let len = u32::try_from(bytes.len()).map_err(|_| StoreError::TooLarge {
        id,
        len: bytes.len(),
    })?;
    if len == 0 {
        return Ok(());
    }
    // One index lookup for the common case (the object is already stored).
    let stored_len = match store.stored_len(&id)? {
        Some(stored) => stored,
        None => {
            store.put(&id, bytes, hint)?;
            out.new_objects += 1;
            out.new_bytes += u64::from(len);
            store.stored_len(&id)?.unwrap_or(len)
        }
    };
    out.recipe.entries.push(Entry {
        id,
        offset,
        len,
        stored_len,
        kind,
        keyframe,
    });
    Ok(())
}
