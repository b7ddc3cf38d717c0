//! Clean: file bytes in, pointer out. The input is spooled once to a temporary file in the
//! store (hashing it on the way) because an MP4's `moov` may come after its `mdat`, and
//! keyframe cut points must be known before the payload is chunked; memory stays bounded
//! by a few chunk sizes whatever the file's size. Content already cleaned once is
//! answered from the pointer cache without re-chunking.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::chunk_id::ChunkId;
use crate::chunker::{chunk_range, ChunkSizes};
use crate::envelope::CompressionHint;
use crate::media::streams::{SampleStream, StreamReader};
use crate::media::{analyze, Layout, LayoutOptions, Region};
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
    /// Why a parsed MP4/MOV was chunked by bytes rather than by track, if it was.
    pub track_split_fallback: Option<String>,
    pub objects: usize,
    pub new_objects: usize,
    pub new_bytes: u64,
    /// The pointer came from the cache: no chunking happened.
    pub cached: bool,
}

/// Cleans everything `input` yields into `store` and returns the pointer. Objects are
/// durable in the store before this returns.
pub fn clean<R: Read>(
    input: R,
    store: &mut LocalStore,
    options: LayoutOptions,
) -> Result<CleanOutcome, CleanError> {
    let (mut spool, oid, size) = spool(input, store)?;
    if let Some(text) = store.cached_pointer(&oid, size)? {
        if let Ok(pointer) = Pointer::parse(text.as_bytes()) {
            if store.contains(&pointer.recipe)? {
                return Ok(CleanOutcome {
                    layout_summary: pointer.media.clone(),
                    pointer,
                    fallback_reason: None,
                    track_split_fallback: None,
                    objects: 0,
                    new_objects: 0,
                    new_bytes: 0,
                    cached: true,
                });
            }
        }
    }
    let mut layout = analyze(&mut spool, size, options);
    let mut outcome = store.with_index_snapshot(|s| store_layout(&mut spool, &layout, s))?;
    outcome.recipe.file_size = size;
    if !layout.streams.is_empty() && !tiles(&outcome.recipe) {
        // Can't happen if build_streams is right; if it isn't, the bytes still go in.
        tracing::warn!("track-level recipe does not tile the file; storing it by bytes");
        layout = analyze(
            &mut spool,
            size,
            LayoutOptions {
                split_tracks: false,
            },
        );
        layout.track_split_fallback = Some("track-level recipe did not tile the file".into());
        outcome = store.with_index_snapshot(|s| store_layout(&mut spool, &layout, s))?;
        outcome.recipe.file_size = size;
    }
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
        track_split_fallback: layout.track_split_fallback.clone(),
        objects: outcome.recipe.unique_objects().count(),
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

/// Bytes read from the input before each spool write and hash update.
const SPOOL_BUF: usize = 256 << 10;
/// Buffers queued for the hashing thread: bounds memory to a few `SPOOL_BUF`s.
const SPOOL_BUFS_IN_FLIGHT: usize = 8;

/// Copies `input` into an unnamed temp file and hashes it on the way. The whole-file
/// BLAKE3 runs on a second thread, fed the buffers the spool was written from, so it
/// overlaps reading Git's pipe and writing the spool instead of adding to them.
fn spool<R: Read>(mut input: R, store: &LocalStore) -> Result<(File, ChunkId, u64), CleanError> {
    // An unnamed temp file vanishes with the process, so a killed add leaves no litter.
    let mut spool = tempfile_in(store).map_err(CleanError::Spool)?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(SPOOL_BUFS_IN_FLIGHT);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let size = std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            let mut hasher = blake3::Hasher::new();
            for buf in full_rx {
                hasher.update(&buf);
                // The spooling side may have finished and gone; the buffer is then freed.
                let _ = free_tx.send(buf);
            }
            hasher.finalize()
        });
        let mut size = 0u64;
        loop {
            let mut buf = free_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(SPOOL_BUF));
            buf.resize(SPOOL_BUF, 0);
            let n = read_up_to(&mut input, &mut buf).map_err(CleanError::Input)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            spool.write_all(&buf).map_err(CleanError::Spool)?;
            size += n as u64;
            if full_tx.send(buf).is_err() {
                break;
            }
        }
        drop(full_tx);
        let hash = hashing
            .join()
            .map_err(|_| CleanError::Spool(io::Error::other("hashing thread panicked")))?;
        Ok::<_, CleanError>((size, hash))
    });
    let (size, hash) = size?;
    spool.seek(SeekFrom::Start(0)).map_err(CleanError::Spool)?;
    Ok((spool, hash.into(), size))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
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

/// Entries cover `[0, file_size)` exactly, in order, each inside its object.
fn tiles(recipe: &Recipe) -> bool {
    let mut pos = 0u64;
    for e in &recipe.entries {
        if e.offset != pos
            || e.len == 0
            || u64::from(e.chunk_offset) + u64::from(e.len) > u64::from(e.chunk_len)
        {
            return false;
        }
        pos = e.end();
    }
    pos == recipe.file_size
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
    let media_hint = if layout.container == crate::media::Container::Other {
        CompressionHint::Try
    } else {
        CompressionHint::Probe
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
                let kind = EntryKind::Box { fourcc: *fourcc };
                if let Some(e) =
                    out.store(store, id, *offset, &bytes, kind, CompressionHint::Try)?
                {
                    out.recipe.entries.push(e);
                }
            }
            Region::Payload { offset, len, cuts } => {
                let chunks = chunk_and_store(
                    file,
                    (*offset, *len),
                    cuts,
                    ChunkSizes::DEFAULT,
                    media_hint,
                    store,
                    &mut out,
                )?;
                out.recipe.entries.extend(chunks);
            }
            // Laid down below, stream by stream.
            Region::Streamed { .. } => {}
        }
    }
    for stream in &layout.streams {
        store_stream(file, stream, store, media_hint, &mut out)?;
    }
    if !layout.streams.is_empty() {
        out.recipe.entries.sort_unstable_by_key(|e| e.offset);
    }
    Ok(out)
}

/// Chunks one sample stream and adds an entry for each piece of each chunk that lands
/// in one run of the file.
fn store_stream(
    file: &File,
    stream: &SampleStream,
    store: &mut LocalStore,
    hint: CompressionHint,
    out: &mut Stored,
) -> Result<(), CleanError> {
    let mut reader = StreamReader::new(file, stream);
    let sizes = if stream.video {
        ChunkSizes::DEFAULT
    } else {
        ChunkSizes::LOW_RATE
    };
    // Whole-object entries whose `offset` is the chunk's offset in the stream.
    let mut chunks = chunk_and_store(
        &mut reader,
        (0, stream.len),
        &stream.cuts,
        sizes,
        hint,
        store,
        out,
    )?;
    for c in &mut chunks {
        c.stream = stream.id;
    }

    for run in &stream.runs {
        let run_end = run.stream_offset + run.len;
        let mut i = chunks.partition_point(|e| e.end() <= run.stream_offset);
        while let Some(&chunk) = chunks.get(i) {
            let chunk_start = chunk.offset;
            if chunk_start >= run_end {
                break;
            }
            let from = chunk_start.max(run.stream_offset);
            let to = (chunk_start + u64::from(chunk.len)).min(run_end);
            out.recipe.entries.push(Entry {
                offset: run.file_offset + (from - run.stream_offset),
                len: (to - from) as u32,
                chunk_offset: (from - chunk_start) as u32,
                keyframe: chunk.keyframe && from == chunk_start,
                ..chunk
            });
            i += 1;
        }
    }
    Ok(())
}

/// Chunks `[range.0, range.0 + range.1)` of `source`, stores each chunk and returns its
/// whole-object entry (offset in `source`, keyframe flag set), in order.
fn chunk_and_store<R: Read + Seek + Send>(
    source: &mut R,
    range: (u64, u64),
    cuts: &[u64],
    sizes: ChunkSizes,
    hint: CompressionHint,
    store: &mut LocalStore,
    out: &mut Stored,
) -> Result<Vec<Entry>, CleanError> {
    let mut entries = Vec::new();
    let mut failure: Option<CleanError> = None;
    chunk_range(source, range.0, range.1, cuts, sizes, |c| {
        match out.store(store, c.id, c.offset, c.data, EntryKind::Chunk, hint) {
            Ok(Some(mut e)) => {
                e.keyframe = c.keyframe;
                entries.push(e);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                failure = Some(e);
                Err(io::Error::other("store failed"))
            }
        }
    })
    .map_err(|e| failure.take().unwrap_or(CleanError::Spool(e)))?;
    Ok(entries)
}

impl Stored {
    /// Stores an object unless present and returns its whole-object entry (None for
    /// empty input).
    fn store(
        &mut self,
        store: &mut LocalStore,
        id: ChunkId,
        offset: u64,
        bytes: &[u8],
        kind: EntryKind,
        hint: CompressionHint,
    ) -> Result<Option<Entry>, CleanError> {
        let len = u32::try_from(bytes.len()).map_err(|_| StoreError::TooLarge {
            id,
            len: bytes.len(),
        })?;
        if len == 0 {
            return Ok(None);
        }
        // One index lookup for the common case (the object is already stored).
        let stored_len = match store.stored_len(&id)? {
            Some(stored) => stored,
            None => {
                store.put(&id, bytes, hint)?;
                self.new_objects += 1;
                self.new_bytes += u64::from(len);
                store.stored_len(&id)?.unwrap_or(len)
            }
        };
        Ok(Some(Entry::whole(id, offset, len, stored_len, kind)))
    }
}
