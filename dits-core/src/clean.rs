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
//!
//! The intake and the chunking ([`chunking`]) each take about half of a first add, and the
//! chunking waited only because the file is known to hold the stream's bytes once the
//! last one is compared. But the working file is complete on disk from the start, so for
//! big files the chunking runs *speculatively* on a second thread while the intake runs,
//! reading the file through its own handle. Its result is kept only if the intake ends up
//! reading the working file (every byte matched, the same length) and the file's `fstat`
//! never moved; otherwise it is dropped and the chunking done as before, from the intake's
//! file. Speculation decides speed, never content. For content cleaned before it is wasted
//! work that competes with the intake, so a stat cache (path, device, inode, size, mtime,
//! ctime → hash) names files cleaned before; one whose hash the pointer cache knows is not
//! chunked ahead, and the intake's hash still decides what the answer is.

mod chunking;
mod intake;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::chunk_id::ChunkId;
use crate::envelope::CompressionHint;
use crate::media::{Layout, LayoutOptions};
use crate::pointer::Pointer;
use crate::store::{ChunkStore, FileIdentity, LocalStore, StoreError};

use chunking::{chunk_file, KeepGoing, Stored, ToTheEnd};
use intake::{FileStamp, Intake, Spooling, WorkingFile};

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
    /// The file's sample tables claimed more samples, or bytes, than a file may hold.
    pub sample_limit: Option<crate::media::sample_table::SampleLimit>,
    pub objects: usize,
    pub new_objects: usize,
    pub new_bytes: u64,
    /// The pointer came from the cache: no chunking happened.
    pub cached: bool,
    /// Where the bytes that were (or would have been) chunked were read from.
    pub source: ContentSource,
    /// Whether the working file was chunked ahead of the stream, and whether that counted.
    pub speculated: Speculated,
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
    clean_with(
        input,
        working_file,
        store,
        options,
        SpeculationPolicy::default(),
    )
}

/// [`clean`], with `policy` deciding when the working file is chunked ahead of the stream.
pub fn clean_with<R: Read>(
    input: R,
    working_file: Option<&Path>,
    store: &mut LocalStore,
    options: LayoutOptions,
    policy: SpeculationPolicy,
) -> Result<CleanOutcome, CleanError> {
    let started = std::time::Instant::now();
    let working = working_file.and_then(WorkingFile::open);
    let Plan {
        identity,
        recorded,
        ahead_file,
    } = plan(working.as_ref().zip(working_file), store, policy);
    let speculating = ahead_file.is_some();
    let not_used = if speculating {
        Speculated::Wasted
    } else {
        Speculated::No
    };
    let tmp_dir = store.tmp_dir();
    let watch = Watch::default();
    let (intake, ahead) = match (working, &ahead_file) {
        (Some(working), Some(ahead_file)) => {
            take_in_chunking_ahead(input, working, ahead_file, &tmp_dir, store, options, &watch)
        }
        (working, _) => {
            let spooling = Spooling {
                tmp_dir: &tmp_dir,
                left_working_file: &watch.left_working_file,
            };
            (intake::take_in(input, working, &spooling), None)
        }
    };
    let Intake {
        file,
        oid,
        size,
        source,
        stamp,
    } = intake?;
    tracing::debug!(
        size,
        ?source,
        speculating,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "content taken in and hashed"
    );
    let from_working_file = source == ContentSource::WorkingFile;
    // A working file that changes while it is chunked may fail the chunking (it shrank) or
    // yield chunks of other bytes: either way, what to report is that it changed.
    let changed =
        |file: &File| stamp.is_some_and(|s| FileStamp::of(file).map_or(true, |now| now != s));
    // Record only what changed (a `touch`, other content): a write per clean of a
    // file Git merely re-checks would cost more than the lookup saves.
    let stat_to_record = identity
        .as_ref()
        .filter(|id| from_working_file && recorded.as_ref() != Some(&((*id).clone(), oid)));
    if let Some(pointer) = usable_cached_pointer(store, &oid, size)? {
        if let Some(id) = stat_to_record {
            if !changed(&file) {
                remember_stat(store, id, &oid);
            }
        }
        return Ok(CleanOutcome {
            layout_summary: pointer.media.clone(),
            pointer,
            fallback_reason: None,
            track_split_fallback: None,
            sample_limit: None,
            objects: 0,
            new_objects: 0,
            new_bytes: 0,
            cached: true,
            source,
            speculated: not_used,
        });
    }
    // The speculative chunks are of the file as it was while the stream was compared with
    // it; they are the stream's only if every byte matched and the fstat never moved
    // (checked again below, after the recipe is stored, as for the path without
    // speculation).
    let ahead = ahead.filter(|(_, _, chunked)| from_working_file && *chunked == size);
    let (layout, outcome, speculated) = match ahead {
        // Without speculation the same moved stamp would end in `Changed` after a whole
        // chunking pass; say so now.
        Some(_) if changed(&file) => return Err(CleanError::Changed),
        Some((layout, outcome, _)) => (layout, outcome, Speculated::Used),
        None => match chunk_file(&file, size, options, store, &ToTheEnd) {
            Err(_) if changed(&file) => return Err(CleanError::Changed),
            result => {
                let (layout, outcome) = result?;
                (layout, outcome, not_used)
            }
        },
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
    if let Some(id) = stat_to_record {
        remember_stat(store, id, &oid);
    }
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        ?speculated,
        "content chunked and stored"
    );
    Ok(CleanOutcome {
        pointer,
        layout_summary: summary,
        fallback_reason: layout.fallback_reason.clone(),
        track_split_fallback: layout.track_split_fallback.clone(),
        sample_limit: layout.sample_limit.clone(),
        objects: outcome.recipe.unique_objects().count(),
        new_objects: outcome.new_objects,
        new_bytes: outcome.new_bytes,
        cached: false,
        source,
        speculated,
    })
}

/// When [`clean_with`] chunks the working file on a second thread while Git's stream is
/// still being taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeculationPolicy {
    /// Files smaller than this are not chunked ahead: the thread, the analysis and the
    /// index snapshot cost more than the overlap saves on them.
    pub min_size: u64,
}

impl SpeculationPolicy {
    pub const NEVER: SpeculationPolicy = SpeculationPolicy { min_size: u64::MAX };
}

impl Default for SpeculationPolicy {
    fn default() -> Self {
        SpeculationPolicy { min_size: 8 << 20 }
    }
}

/// Whether clean chunked the working file ahead of the stream, and what came of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speculated {
    /// Not tried: no regular working file, a small one, or the stat cache knew the file.
    No,
    /// Chunked alongside the intake; that result is the one stored.
    Used,
    /// Chunked alongside the intake and thrown away: the stream differed from the file,
    /// the pointer cache answered, or the chunking failed. What it stored is unreferenced
    /// or shared with the result that was kept.
    Wasted,
}

/// What the intake tells the speculative chunking while both run.
#[derive(Default)]
struct Watch {
    /// The working file is not (or no longer) the intake's result, or the intake failed.
    left_working_file: AtomicBool,
    /// The stream's hash and length, once the intake has them and every byte matched.
    taken_in: OnceLock<(ChunkId, u64)>,
    /// The pointer cache has been asked about `taken_in`.
    cache_asked: AtomicBool,
}

impl KeepGoing for Watch {
    fn keep_going(&self, store: &LocalStore) -> bool {
        if self.left_working_file.load(Ordering::Relaxed) {
            return false;
        }
        let Some((oid, size)) = self.taken_in.get() else {
            return true;
        };
        if self.cache_asked.swap(true, Ordering::Relaxed) {
            return true;
        }
        // Known content: clean will answer from the pointer cache and drop this work, so
        // stop taking the second core from the rest of the add.
        !is_cached(store, oid, *size)
    }
}

/// The chunking of the working file done ahead: its layout, what was stored, and the
/// file size it assumed.
type ChunkedAhead<'w> = (Layout, Stored<'w>, u64);

/// Takes Git's stream in on this thread while a second one analyzes and chunks the
/// working file (through `ahead`, a clone of its handle) into `store`. Either may finish
/// first. The chunking's result comes back only if it ran to the end without error; any
/// error of its own is dropped, since the path without speculation redoes the work and
/// reports what really went wrong.
fn take_in_chunking_ahead<'w, R: Read>(
    input: R,
    working: WorkingFile,
    ahead: &File,
    tmp_dir: &Path,
    store: &mut LocalStore,
    options: LayoutOptions,
    watch: &'w Watch,
) -> (Result<Intake, CleanError>, Option<ChunkedAhead<'w>>) {
    let size = working.stamp.len;
    std::thread::scope(|scope| {
        // The store is `&mut` and single-threaded: this thread owns it until joined, and
        // the intake needs nothing of it but the spool directory.
        let chunking = scope.spawn(move || {
            let started = std::time::Instant::now();
            let result = chunk_file(ahead, size, options, store, watch);
            tracing::debug!(
                ms = started.elapsed().as_secs_f64() * 1e3,
                error = result.as_ref().err().map(tracing::field::display),
                "speculative chunking ended"
            );
            result
        });
        let spooling = Spooling {
            tmp_dir,
            left_working_file: &watch.left_working_file,
        };
        let started = std::time::Instant::now();
        let intake = intake::take_in(input, Some(working), &spooling);
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "intake ended beside the speculative chunking"
        );
        if let Ok(Intake {
            source: ContentSource::WorkingFile,
            oid,
            size,
            ..
        }) = &intake
        {
            let _ = watch.taken_in.set((*oid, *size));
        }
        let ahead = match chunking.join() {
            Ok(result) => result.ok().map(|(layout, stored)| (layout, stored, size)),
            // A panic is a bug, not a changed file: let it be seen as one.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (intake, ahead)
    })
}

/// The pointer cached for `(oid, size)`, if its recipe is still in the store.
fn usable_cached_pointer(
    store: &LocalStore,
    oid: &ChunkId,
    size: u64,
) -> Result<Option<Pointer>, StoreError> {
    let Some(text) = store.cached_pointer(oid, size)? else {
        return Ok(None);
    };
    let Ok(pointer) = Pointer::parse(text.as_bytes()) else {
        return Ok(None);
    };
    Ok(store.contains(&pointer.recipe)?.then_some(pointer))
}

/// Whether to chunk ahead, and what the stat cache knows.
struct Plan {
    /// The working file as a stat cache key, if it is big enough to chunk ahead (only
    /// those are worth a row: a write per small file would cost more than it saves).
    identity: Option<FileIdentity>,
    /// The stat cache's row for its path.
    recorded: Option<(FileIdentity, ChunkId)>,
    /// A second handle on the working file, if it is to be chunked ahead.
    ahead_file: Option<File>,
}

fn plan(
    working: Option<(&WorkingFile, &Path)>,
    store: &LocalStore,
    policy: SpeculationPolicy,
) -> Plan {
    let identity = working
        .filter(|(w, _)| w.stamp.len >= policy.min_size)
        .map(|(w, path)| w.stamp.identity(path));
    let recorded = identity.as_ref().and_then(|id| recorded_stat(store, id));
    let known = identity
        .as_ref()
        .zip(recorded.as_ref())
        .is_some_and(|(id, (then, oid))| {
            likely_unchanged(id, then) && is_cached(store, oid, id.size)
        });
    let ahead_file = working
        .filter(|_| identity.is_some() && !known)
        .and_then(|(w, _)| w.file.try_clone().ok());
    Plan {
        identity,
        recorded,
        ahead_file,
    }
}

/// What the stat cache recorded for `file`'s path. It only ever decides whether to chunk
/// ahead, never what is stored, so a failed lookup is "nothing".
fn recorded_stat(store: &LocalStore, file: &FileIdentity) -> Option<(FileIdentity, ChunkId)> {
    store.recorded_stat(&file.path).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "stat cache lookup failed");
        None
    })
}

/// Whether the file `now` at a path likely still holds what it held when `then` was
/// recorded. Mtime and ctime are left out on purpose: a `touch` or a `cp` of the same
/// bytes over the file moves them, and Git then re-cleans the file, which is exactly when
/// chunking ahead would be wasted. A same-size rewrite of the same inode is misjudged as
/// unchanged, and that only costs it the speculation (the speed of a clean without it).
fn likely_unchanged(now: &FileIdentity, then: &FileIdentity) -> bool {
    (now.dev, now.ino, now.size) == (then.dev, then.ino, then.size)
}

/// Whether the pointer cache answers for `(oid, size)` (a failed lookup is "no").
fn is_cached(store: &LocalStore, oid: &ChunkId, size: u64) -> bool {
    matches!(usable_cached_pointer(store, oid, size), Ok(Some(_)))
}

/// Records `file` → `oid` in the stat cache. A hint cache that cannot be written must not
/// fail an add whose pointer is already stored.
fn remember_stat(store: &LocalStore, file: &FileIdentity, oid: &ChunkId) {
    if let Err(e) = store.remember_stat(file, oid) {
        tracing::debug!(error = %e, "stat cache not updated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::{test_bytes, EditingReader};
    use std::os::unix::fs::FileExt;

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

    fn store_in(dir: &Path) -> LocalStore {
        LocalStore::open(&dir.join("store")).unwrap()
    }

    const ALWAYS: SpeculationPolicy = SpeculationPolicy { min_size: 0 };

    /// Cleans `stream` into a fresh store with `policy`; returns the outcome and the bytes
    /// the stored pointer rebuilds.
    fn clean_and_rebuild(
        stream: &[u8],
        working_file: Option<&Path>,
        policy: SpeculationPolicy,
    ) -> (CleanOutcome, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_in(dir.path());
        let outcome = clean_with(
            stream,
            working_file,
            &mut store,
            LayoutOptions::default(),
            policy,
        )
        .unwrap();
        let mut rebuilt = Vec::new();
        crate::smudge(&mut store, &outcome.pointer, &mut rebuilt).unwrap();
        (outcome, rebuilt)
    }

    fn assert_same_result_with_and_without_speculation(path: &Path) {
        let stream = std::fs::read(path).unwrap();
        let (ahead, rebuilt) = clean_and_rebuild(&stream, Some(path), ALWAYS);
        let (after, _) = clean_and_rebuild(&stream, Some(path), SpeculationPolicy::NEVER);
        assert_eq!(ahead.speculated, Speculated::Used);
        assert_eq!(after.speculated, Speculated::No);
        assert_eq!(ahead.source, ContentSource::WorkingFile);
        // The pointer names the recipe by hash: the same pointer is the same recipe.
        assert_eq!(ahead.pointer, after.pointer);
        assert_eq!(ahead.layout_summary, after.layout_summary);
        assert_eq!(ahead.objects, after.objects);
        assert_eq!(ahead.new_bytes, after.new_bytes);
        assert!(rebuilt == stream, "speculative recipe rebuilds other bytes");
    }

    #[test]
    fn speculative_chunking_stores_what_chunking_after_the_intake_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        std::fs::write(&path, test_bytes(5_000_000, 10)).unwrap();
        assert_same_result_with_and_without_speculation(&path);
    }

    #[test]
    fn speculative_chunking_of_an_mp4_split_by_track_matches_chunking_after_the_intake() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        // moov after mdat (no faststart): the analysis needs the whole file.
        let out = std::process::Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x240:rate=25,noise=alls=20:allf=t")
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args([
                "-t",
                "4",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
            ])
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
            .arg(&path)
            .output()
            .expect("ffmpeg must be installed (see .ci/run)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_result_with_and_without_speculation(&path);
        let stream = std::fs::read(&path).unwrap();
        let (outcome, _) = clean_and_rebuild(&stream, Some(&path), ALWAYS);
        assert!(outcome.track_split_fallback.is_none() && outcome.fallback_reason.is_none());
    }

    #[test]
    fn stream_diverging_from_the_file_while_speculating_stores_the_streams_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let stream = test_bytes(4_000_000, 11);
        let mut other = stream.clone();
        other[2_500_000..].copy_from_slice(&test_bytes(1_500_000, 12));
        let path = dir.path().join("data.bin");
        std::fs::write(&path, &other).unwrap();
        let (diverged, rebuilt) = clean_and_rebuild(&stream, Some(&path), ALWAYS);
        assert_eq!(
            diverged.source,
            ContentSource::Diverged { offset: 2_500_000 }
        );
        assert_eq!(diverged.speculated, Speculated::Wasted);
        assert!(rebuilt == stream, "stored bytes are not the stream's");
        let (spooled, _) = clean_and_rebuild(&stream, None, ALWAYS);
        assert_eq!(spooled.speculated, Speculated::No);
        assert_eq!(diverged.pointer, spooled.pointer);
    }

    /// Cleans `stream` from the file at `path` (holding `stream`), running `edit` on the
    /// file when `at` bytes have been streamed.
    fn clean_while_editing(
        store: &mut LocalStore,
        path: &Path,
        stream: &[u8],
        at: usize,
        edit: impl FnOnce(),
    ) -> Result<CleanOutcome, CleanError> {
        let input = EditingReader::new(stream, at, edit);
        clean_with(input, Some(path), store, LayoutOptions::default(), ALWAYS)
    }

    #[test]
    fn file_rewritten_behind_the_comparison_while_speculating_fails_with_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_in(dir.path());
        let stream = test_bytes(6_000_000, 13);
        let path = dir.path().join("data.bin");
        std::fs::write(&path, &stream).unwrap();
        // Bytes already compared change: the intake cannot see it, the stamp does.
        let edit = || {
            let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            w.write_all_at(b"edited", 1000).unwrap();
        };
        let err = clean_while_editing(&mut store, &path, &stream, 5_000_000, edit)
            .err()
            .unwrap();
        assert!(matches!(err, CleanError::Changed), "{err}");
        assert!(store
            .cached_pointer(&ChunkId::of(&stream), stream.len() as u64)
            .unwrap()
            .is_none());
    }

    #[test]
    fn file_truncated_while_speculating_fails_with_changed_not_a_chunking_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_in(dir.path());
        let stream = test_bytes(6_000_000, 14);
        let path = dir.path().join("data.bin");
        std::fs::write(&path, &stream).unwrap();
        let edit = || {
            let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            w.set_len(1_000_000).unwrap();
        };
        let err = clean_while_editing(&mut store, &path, &stream, 3_000_000, edit)
            .err()
            .unwrap();
        assert!(matches!(err, CleanError::Changed), "{err}");
        // The store is usable after the speculative thread's failure.
        std::fs::write(&path, &stream).unwrap();
        let again = clean_with(
            &stream[..],
            Some(&path),
            &mut store,
            LayoutOptions::default(),
            ALWAYS,
        )
        .unwrap();
        assert_eq!(again.speculated, Speculated::Used);
        let mut rebuilt = Vec::new();
        crate::smudge(&mut store, &again.pointer, &mut rebuilt).unwrap();
        assert!(rebuilt == stream);
    }

    fn clean_file(store: &mut LocalStore, path: &Path) -> CleanOutcome {
        let stream = std::fs::read(path).unwrap();
        let options = LayoutOptions::default();
        clean_with(&stream[..], Some(path), store, options, ALWAYS).unwrap()
    }

    fn recorded_mtime(store: &LocalStore, path: &Path) -> i64 {
        use std::os::unix::ffi::OsStrExt;
        let (file, _) = store
            .recorded_stat(path.as_os_str().as_bytes())
            .unwrap()
            .unwrap();
        file.mtime_ns
    }

    fn set_mtime(path: &Path, secs_from_now: u64) -> i64 {
        let when = std::time::SystemTime::now() + std::time::Duration::from_secs(secs_from_now);
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(when).unwrap();
        let since = when.duration_since(std::time::UNIX_EPOCH).unwrap();
        since.as_nanos() as i64
    }

    #[test]
    fn stat_cache_skips_speculation_for_a_file_cleaned_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_in(dir.path());
        let path = dir.path().join("data.bin");
        std::fs::write(&path, test_bytes(3_000_000, 15)).unwrap();
        let first = clean_file(&mut store, &path);
        assert_eq!((first.cached, first.speculated), (false, Speculated::Used));
        let again = clean_file(&mut store, &path);
        assert_eq!((again.cached, again.speculated), (true, Speculated::No));
        assert_eq!(again.pointer, first.pointer);

        // A touch moves mtime and ctime, and Git re-cleans the file: known content, not
        // chunked ahead; the new stat is recorded.
        let touched_at = set_mtime(&path, 60);
        let touched = clean_file(&mut store, &path);
        assert_eq!((touched.cached, touched.speculated), (true, Speculated::No));
        assert_eq!(recorded_mtime(&store, &path), touched_at);

        // Another path with the same bytes is not known by its stat.
        let copy = dir.path().join("copy.bin");
        std::fs::copy(&path, &copy).unwrap();
        let copied = clean_file(&mut store, &copy);
        assert_eq!(
            (copied.cached, copied.speculated),
            (true, Speculated::Wasted)
        );
        assert_eq!(clean_file(&mut store, &copy).speculated, Speculated::No);
    }

    #[test]
    fn stat_cache_decides_only_speed_when_a_file_is_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_in(dir.path());
        let path = dir.path().join("data.bin");
        std::fs::write(&path, test_bytes(3_000_000, 17)).unwrap();
        clean_file(&mut store, &path);
        // Same inode, same size, other bytes: taken for a touch, so not chunked ahead,
        // but the pointer is the new bytes'.
        let other = test_bytes(3_000_000, 18);
        std::fs::write(&path, &other).unwrap();
        set_mtime(&path, 120);
        let rewritten = clean_file(&mut store, &path);
        assert_eq!(
            (rewritten.cached, rewritten.speculated),
            (false, Speculated::No)
        );
        assert_eq!(rewritten.pointer.oid, ChunkId::of(&other));
        // Another size: chunked ahead again.
        std::fs::write(&path, test_bytes(3_000_001, 19)).unwrap();
        let grown = clean_file(&mut store, &path);
        assert_eq!((grown.cached, grown.speculated), (false, Speculated::Used));
    }

    #[test]
    fn small_files_and_files_without_a_working_copy_are_not_chunked_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let stream = test_bytes(1_000_000, 16);
        let path = dir.path().join("data.bin");
        std::fs::write(&path, &stream).unwrap();
        let policy = SpeculationPolicy {
            min_size: stream.len() as u64 + 1,
        };
        let (small, _) = clean_and_rebuild(&stream, Some(&path), policy);
        assert_eq!(small.speculated, Speculated::No);
        let (no_file, _) = clean_and_rebuild(&stream, None, ALWAYS);
        assert_eq!(no_file.speculated, Speculated::No);
        let (big_enough, _) = clean_and_rebuild(&stream, Some(&path), ALWAYS);
        assert_eq!(big_enough.speculated, Speculated::Used);
    }
}
