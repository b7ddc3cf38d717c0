//! Chunking: a file known to hold the content in, its objects stored and the recipe
//! that rebuilds it out. The file is analyzed for media structure first (`moov` may follow
//! `mdat`, so this needs all of it), then each region is stored whole or cut into chunks.
//! Everything is read with `pread`, never through the handle's file offset: clean may run
//! this on a clone of the working file's handle while the intake reads the original.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::CleanError;
use crate::chunk_id::ChunkId;
use crate::chunker::{chunk_range, ChunkSizes};
use crate::envelope::CompressionHint;
use crate::media::streams::{SampleStream, StreamReader};
use crate::media::{analyze, Layout, LayoutOptions, Region};
use crate::recipe::{Entry, EntryKind, Recipe};
use crate::store::{ChunkStore, LocalStore, StoreError};

/// Asked before each object is stored: `false` gives the chunking up (with an error), for
/// speculative work that has become useless.
pub(super) trait KeepGoing: Sync {
    fn keep_going(&self, store: &LocalStore) -> bool;
}

/// Chunking that is never given up.
pub(super) struct ToTheEnd;

impl KeepGoing for ToTheEnd {
    fn keep_going(&self, _: &LocalStore) -> bool {
        true
    }
}

/// Analyzes `file` (`size` bytes) and stores its objects; returns the layout used and the
/// stored recipe (not yet stored itself).
pub(super) fn chunk_file<'k>(
    file: &File,
    size: u64,
    options: LayoutOptions,
    store: &mut LocalStore,
    keep_going: &'k dyn KeepGoing,
) -> Result<(Layout, Stored<'k>), CleanError> {
    let file = &mut PositionalFile { file, pos: 0 };
    let mut layout = analyze(file, size, options);
    let mut outcome = store.with_index_snapshot(|s| store_layout(file, &layout, s, keep_going))?;
    outcome.recipe.file_size = size;
    if !layout.streams.is_empty() && !tiles(&outcome.recipe) {
        // Can't happen if build_streams is right; if it isn't, the bytes still go in.
        tracing::warn!("track-level recipe does not tile the file; storing it by bytes");
        layout = analyze(
            file,
            size,
            LayoutOptions {
                split_tracks: false,
            },
        );
        layout.track_split_fallback = Some("track-level recipe did not tile the file".into());
        outcome = store.with_index_snapshot(|s| store_layout(file, &layout, s, keep_going))?;
        outcome.recipe.file_size = size;
    }
    Ok((layout, outcome))
}

/// A file read with `pread` from a position of its own. A `try_clone`d handle shares the
/// kernel's file offset with the original, so `Read`/`Seek` on `File` itself would race
/// with anyone using the other handle.
struct PositionalFile<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PositionalFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PositionalFile<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::other("seek before the start of the file"))?;
        Ok(self.pos)
    }
}

pub(super) struct Stored<'k> {
    pub recipe: Recipe,
    pub new_objects: usize,
    pub new_bytes: u64,
    keep_going: &'k dyn KeepGoing,
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

fn store_layout<'k>(
    file: &mut PositionalFile,
    layout: &Layout,
    store: &mut LocalStore,
    keep_going: &'k dyn KeepGoing,
) -> Result<Stored<'k>, CleanError> {
    let mut out = Stored {
        recipe: Recipe::default(),
        new_objects: 0,
        new_bytes: 0,
        keep_going,
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
        store_stream(file.file, stream, store, media_hint, &mut out)?;
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

impl Stored<'_> {
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
        if !self.keep_going.keep_going(store) {
            // Only speculative chunking is ever given up, and its errors are discarded.
            return Err(CleanError::Spool(io::Error::other("chunking given up")));
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
