//! Clean: file bytes in, pointer out. An MP4's `moov` may come after its `mdat`, and
//! keyframe cut points must be known before the payload is chunked, so the content has to
//! be in a seekable file before it is analyzed and chunked; memory stays bounded by a few
//! chunk sizes whatever the file's size. Content already cleaned once is answered from the
//! pointer cache without re-chunking.
//!
//! That file used to be a spool: every byte Git piped in was copied to a temp file first.
//! Profiles of `git add` put more than half of its time in the kernel filling fresh pages
//! for that copy, and a re-add of cached content paid it too. But Git's stream almost
//! always *is* a working-tree file, which is already seekable and in the page cache. So
//! when Git names a path and a regular file is there, [`intake`] compares each buffer of
//! the stream with the same bytes of that file instead of writing it anywhere, and the
//! file itself is analyzed and chunked; the stream is still what is hashed. Where the two
//! differ (`git hash-object --stdin --path`, a renormalizing checkout, an edit during the
//! add) it falls back to the spool from that offset. Because every byte is compared, the
//! path only decides speed, never what is stored. A file that changes *after* being
//! compared is caught by its `fstat` (size, mtime, ctime) moving before the pointer is
//! handed out; the add then fails asking for it to be run again.

mod intake;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::chunk_id::ChunkId;
use crate::chunker::{chunk_range, ChunkSizes};
use crate::envelope::CompressionHint;
use crate::media::streams::{SampleStream, StreamReader};
use crate::media::{analyze, Layout, LayoutOptions, Region};
use crate::pointer::Pointer;
use crate::recipe::{Entry, EntryKind, Recipe};
use crate::store::{ChunkStore, LocalStore, StoreError};

use intake::{FileStamp, Intake, WorkingFile};

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("reading the file's content: {0}")]
    Input(io::Error),
    #[error("temporary spool file: {0}")]
    Spool(io::Error),
    #[error("reading the working-tree file: {0}")]
    WorkingFile(io::Error),
    /// The working-tree file changed while its content was being cleaned, so what was
    /// chunked may not be what Git sent. Callers prefix the path.
    #[error("changed while being added; run `git add` again")]
    Changed,
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
    /// Where the bytes that were (or would have been) chunked were read from.
    pub source: ContentSource,
}

/// Where clean read the content from, besides Git's stream (which is always hashed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentSource {
    /// The working-tree file: every byte of the stream matched it, nothing was copied.
    WorkingFile,
    /// A spool copy of the stream: there was no regular working-tree file to compare with.
    Spool,
    /// A spool copy: the stream differed from the working-tree file from `offset` on
    /// (`git hash-object --stdin --path`, a renormalizing checkout, a file being edited),
    /// so the file's first `offset` bytes and the rest of the stream were spooled.
    Diverged { offset: u64 },
}

/// Cleans everything `input` yields into `store` and returns the pointer. Objects are
/// durable in the store before this returns.
///
/// `working_file` is where the content came from, if it is a file (Git's `pathname`,
/// resolved against the top of the work tree): when a regular file is there and matches
/// the stream byte for byte, it is read in place of a spool copy. It is only ever a hint:
/// the pointer is that of the streamed bytes whatever the file holds.
pub fn clean<R: Read>(
    input: R,
    working_file: Option<&Path>,
    store: &mut LocalStore,
    options: LayoutOptions,
) -> Result<CleanOutcome, CleanError> {
    let started = std::time::Instant::now();
    let working = working_file.and_then(WorkingFile::open);
    let Intake {
        mut file,
        oid,
        size,
        source,
        stamp,
    } = intake::take_in(input, working, store)?;
    tracing::debug!(
        size,
        ?source,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "content taken in and hashed"
    );
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
                    source,
                });
            }
        }
    }
    // A working file that changes while it is chunked may fail the chunking (it shrank) or
    // yield chunks of other bytes: either way, what to report is that it changed.
    let changed =
        |file: &File| stamp.is_some_and(|s| FileStamp::of(file).map_or(true, |now| now != s));
    let (layout, outcome) = match chunk_file(&mut file, size, options, store) {
        Err(_) if changed(&file) => return Err(CleanError::Changed),
        result => result?,
    };
    let recipe_bytes = outcome.recipe.encode();
    let recipe_id = ChunkId::of(&recipe_bytes);
    store.put(&recipe_id, &recipe_bytes, CompressionHint::Try)?;
    store.flush()?;
    if changed(&file) {
        // The recipe may describe bytes Git never sent: it stays an unreferenced object.
        return Err(CleanError::Changed);
    }
    let summary = layout.summary_line();
    let pointer = Pointer {
        media: summary.clone(),
        oid,
        recipe: recipe_id,
        size,
    };
    store.remember_pointer(&oid, size, &pointer.encode())?;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "content chunked and stored"
    );
    Ok(CleanOutcome {
        pointer,
        layout_summary: summary,
        fallback_reason: layout.fallback_reason.clone(),
        track_split_fallback: layout.track_split_fallback.clone(),
        objects: outcome.recipe.unique_objects().count(),
        new_objects: outcome.new_objects,
        new_bytes: outcome.new_bytes,
        cached: false,
        source,
    })
}

/// Analyzes `file` (`size` bytes) and stores its objects; returns the layout used and the
/// stored recipe (not yet stored itself).
fn chunk_file(
    file: &mut File,
    size: u64,
    options: LayoutOptions,
    store: &mut LocalStore,
) -> Result<(Layout, Stored), CleanError> {
    let mut layout = analyze(file, size, options);
    let mut outcome = store.with_index_snapshot(|s| store_layout(file, &layout, s))?;
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
        outcome = store.with_index_snapshot(|s| store_layout(file, &layout, s))?;
        outcome.recipe.file_size = size;
    }
    Ok((layout, outcome))
}

struct Stored {
    recipe: Recipe,
    new_objects: usize,
    new_bytes: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::test_bytes;

    fn clean_in_new_store(stream: &[u8], working_file: Option<&Path>) -> CleanOutcome {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LocalStore::open(dir.path()).unwrap();
        clean(stream, working_file, &mut store, LayoutOptions::default()).unwrap()
    }

    #[test]
    fn working_file_and_spool_give_the_same_pointer_and_objects() {
        let dir = tempfile::tempdir().unwrap();
        let stream = test_bytes(3_000_000, 1);
        let path = dir.path().join("data.bin");
        std::fs::write(&path, &stream).unwrap();
        let from_file = clean_in_new_store(&stream, Some(&path));
        let from_spool = clean_in_new_store(&stream, None);
        assert_eq!(from_file.source, ContentSource::WorkingFile);
        assert_eq!(from_spool.source, ContentSource::Spool);
        assert_eq!(from_file.pointer, from_spool.pointer);
        assert_eq!(from_file.objects, from_spool.objects);
        assert_eq!(from_file.new_bytes, from_spool.new_bytes);
    }

    #[test]
    fn stream_differing_from_the_working_file_gets_the_streams_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let stream = test_bytes(3_000_000, 2);
        let mut other = stream.clone();
        other[1_500_000..].copy_from_slice(&test_bytes(1_500_000, 3));
        let path = dir.path().join("data.bin");
        std::fs::write(&path, &other).unwrap();
        let diverged = clean_in_new_store(&stream, Some(&path));
        assert_eq!(
            diverged.source,
            ContentSource::Diverged { offset: 1_500_000 }
        );
        assert_eq!(diverged.pointer, clean_in_new_store(&stream, None).pointer);
    }

    #[test]
    fn re_clean_of_known_content_is_cached_and_says_where_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LocalStore::open(&dir.path().join("store")).unwrap();
        let stream = test_bytes(1_000_000, 4);
        let path = dir.path().join("data.bin");
        std::fs::write(&path, &stream).unwrap();
        let first = clean(
            &stream[..],
            Some(&path),
            &mut store,
            LayoutOptions::default(),
        )
        .unwrap();
        let again = clean(
            &stream[..],
            Some(&path),
            &mut store,
            LayoutOptions::default(),
        )
        .unwrap();
        assert!(!first.cached && again.cached);
        assert_eq!(again.source, ContentSource::WorkingFile);
        assert_eq!(first.pointer, again.pointer);
    }
}
