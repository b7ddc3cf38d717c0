//! Intake: Git's content stream in; a file holding exactly the streamed bytes, their
//! BLAKE3 and their length out. When the stream comes from a working-tree file, that file
//! *is* the result once every streamed byte has been compared with it, and nothing is
//! copied; otherwise (no file, or the stream differs from it) the stream is spooled to an
//! unnamed temp file in the store. The whole-stream hash always comes from Git's bytes,
//! never from the file, and nothing here ever hands back a file whose bytes were not
//! checked against the stream.
//!
//! A speculative chunker may be reading the working file on another thread meanwhile
//! (through its own handle, with `pread` only), so the intake never touches the store and
//! raises a flag the moment the working file stops being its result.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{CleanError, ContentSource};
use crate::chunk_id::ChunkId;
use crate::chunker::read_up_to;
use crate::store::FileIdentity;

/// Bytes read from the input before each comparison or spool write and hash update.
const INTAKE_BUF: usize = 256 << 10;
/// Buffers queued for the hashing thread: bounds memory to a few `INTAKE_BUF`s.
const INTAKE_BUFS_IN_FLIGHT: usize = 8;

/// A working-tree file opened to stand in for the spool, with what `fstat` said of it
/// before the comparison began.
pub(super) struct WorkingFile {
    pub file: File,
    pub stamp: FileStamp,
}

/// The parts of `fstat` that change when a file's bytes do: a write moves mtime and
/// ctime, a truncate or append moves the size, and a `touch` back to an old mtime still
/// moves ctime. Device and inode name the file, for the stat cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    pub len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl FileStamp {
    pub(super) fn of(file: &File) -> io::Result<FileStamp> {
        let m = file.metadata()?;
        Ok(FileStamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// This stamp as a key of the store's stat cache, for the file at `path`.
    pub(super) fn identity(&self, path: &Path) -> FileIdentity {
        use std::os::unix::ffi::OsStrExt;
        // Relative paths (the single-shot filter's) are made absolute so two work trees
        // sharing a store never share a row; no file system access, so never fails badly.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let ns = |(s, n): (i64, i64)| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileIdentity {
            path: path.as_os_str().as_bytes().to_vec(),
            dev: self.dev,
            ino: self.ino,
            size: self.len,
            mtime_ns: ns(self.mtime),
            ctime_ns: ns(self.ctime),
        }
    }
}

impl WorkingFile {
    /// Opens `path` if it is a regular file. Symlinks are not followed (Git streams a
    /// link's target name, not the file it names), and FIFOs, devices and directories are
    /// refused without blocking on them: for all of these the stream is spooled instead.
    pub(super) fn open(path: &Path) -> Option<WorkingFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        let stamp = FileStamp::of(&file).ok()?;
        Some(WorkingFile { file, stamp })
    }
}

/// The intake's result.
pub(super) struct Intake {
    /// Exactly the streamed bytes, positioned at 0: the working file itself or a spool.
    pub file: File,
    pub oid: ChunkId,
    pub size: u64,
    pub source: ContentSource,
    /// Set when `file` is the working file: chunks and a pointer may only be taken from
    /// it while its `fstat` still says this.
    pub stamp: Option<FileStamp>,
}

/// Where the intake may spool, and whom it tells when the working file is no longer its
/// result.
pub(super) struct Spooling<'a> {
    /// A directory on the store's file system (the store's `tmp`).
    pub tmp_dir: &'a Path,
    /// Raised when the stream stops matching the working file (or never started to), so
    /// a speculative reader of that file can give up at once instead of finishing work
    /// that will be thrown away.
    pub left_working_file: &'a AtomicBool,
}

/// Reads `input` to its end, hashing it, and returns a file with the same bytes.
pub(super) fn take_in<R: Read>(
    mut input: R,
    working: Option<WorkingFile>,
    spooling: &Spooling<'_>,
) -> Result<Intake, CleanError> {
    let mut sink = match working {
        Some(working) => Sink::Compare {
            working,
            scratch: Vec::with_capacity(INTAKE_BUF),
        },
        None => {
            spooling.left_working_file.store(true, Ordering::Relaxed);
            Sink::Spool {
                spool: tempfile_in(spooling.tmp_dir).map_err(CleanError::Spool)?,
                diverged_at: None,
            }
        }
    };
    let result = hash_stream(&mut input, |buf, pos| sink.accept(buf, pos, spooling))
        .and_then(|(size, oid)| sink.finish(size, oid, spooling));
    if !matches!(
        result,
        Ok(Intake {
            source: ContentSource::WorkingFile,
            ..
        })
    ) {
        spooling.left_working_file.store(true, Ordering::Relaxed);
    }
    result
}

/// Where the streamed bytes are going: compared with the working file while they match
/// it, written to a spool from the first byte that does not.
enum Sink {
    Compare {
        working: WorkingFile,
        /// The file's bytes for the buffer being compared (reused).
        scratch: Vec<u8>,
    },
    Spool {
        spool: File,
        /// Where the stream stopped matching the working file, if there was one.
        diverged_at: Option<u64>,
    },
}

impl Sink {
    /// Takes `buf`, the stream's bytes at `pos`.
    fn accept(&mut self, buf: &[u8], pos: u64, spooling: &Spooling) -> Result<(), CleanError> {
        match self {
            Sink::Spool { spool, .. } => spool.write_all(buf).map_err(CleanError::Spool),
            Sink::Compare { working, scratch } => {
                let same = matching_prefix(&working.file, pos, buf, scratch);
                if same == buf.len() {
                    return Ok(());
                }
                self.diverge(pos + same as u64, &buf[same..], spooling)
            }
        }
    }

    /// The stream stopped matching the working file at `offset`; `rest` is the stream's
    /// bytes from there to the end of the current buffer. The file's first `offset` bytes
    /// matched when compared, so they start the spool (re-checked by hash at the end).
    fn diverge(&mut self, offset: u64, rest: &[u8], spooling: &Spooling) -> Result<(), CleanError> {
        let Sink::Compare { working, .. } = self else {
            return Ok(());
        };
        spooling.left_working_file.store(true, Ordering::Relaxed);
        tracing::debug!(
            offset,
            "stream differs from the working-tree file; spooling it"
        );
        let mut spool = tempfile_in(spooling.tmp_dir).map_err(CleanError::Spool)?;
        // This handle's file offset may be shared with a speculative reader's clone; that
        // reader only uses `pread`, so moving the offset here cannot disturb it.
        let mut file = &working.file;
        file.seek(SeekFrom::Start(0))
            .map_err(CleanError::WorkingFile)?;
        // `io::copy` between files lets the kernel copy (copy_file_range / sendfile).
        let copied = io::copy(&mut file.take(offset), &mut spool).map_err(CleanError::Spool)?;
        if copied != offset {
            // The file shrank below bytes it had a moment ago.
            return Err(CleanError::Changed);
        }
        spool.write_all(rest).map_err(CleanError::Spool)?;
        *self = Sink::Spool {
            spool,
            diverged_at: Some(offset),
        };
        Ok(())
    }

    /// The stream ended after `size` bytes hashing to `oid`.
    fn finish(
        mut self,
        size: u64,
        oid: ChunkId,
        spooling: &Spooling,
    ) -> Result<Intake, CleanError> {
        // A longer file (or one whose size moved since it was opened) is not the stream.
        let longer = match &self {
            Sink::Compare { working, .. } => {
                working.stamp.len != size || has_byte_at(&working.file, size)
            }
            Sink::Spool { .. } => false,
        };
        if longer {
            self.diverge(size, &[], spooling)?;
        }
        match self {
            Sink::Compare { working, .. } => {
                let mut file = working.file;
                file.seek(SeekFrom::Start(0))
                    .map_err(CleanError::WorkingFile)?;
                Ok(Intake {
                    file,
                    oid,
                    size,
                    source: ContentSource::WorkingFile,
                    stamp: Some(working.stamp),
                })
            }
            Sink::Spool { spool, diverged_at } => {
                if diverged_at.is_some() && hash_file(&spool).map_err(CleanError::Spool)? != oid {
                    // The copied prefix is not what Git sent: the file changed after it
                    // was compared.
                    return Err(CleanError::Changed);
                }
                let mut spool = spool;
                spool.seek(SeekFrom::Start(0)).map_err(CleanError::Spool)?;
                Ok(Intake {
                    file: spool,
                    oid,
                    size,
                    source: match diverged_at {
                        Some(offset) => ContentSource::Diverged { offset },
                        None => ContentSource::Spool,
                    },
                    stamp: None,
                })
            }
        }
    }
}

/// How many leading bytes of `buf` equal `file`'s bytes at `pos` (a short file or a
/// failed read ends the match). `scratch` is reused across calls.
fn matching_prefix(file: &File, pos: u64, buf: &[u8], scratch: &mut Vec<u8>) -> usize {
    scratch.resize(buf.len(), 0);
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut scratch[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, pos, "reading the working-tree file");
                break;
            }
        }
    }
    if got == buf.len() && scratch[..] == buf[..] {
        return got;
    }
    buf.iter()
        .zip(&scratch[..got])
        .position(|(a, b)| a != b)
        .unwrap_or(got)
}

fn has_byte_at(file: &File, pos: u64) -> bool {
    let mut byte = [0u8];
    loop {
        match file.read_at(&mut byte, pos) {
            Ok(n) => return n > 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Unreadable past the end is not "the same length": spool to be sure.
            Err(_) => return true,
        }
    }
}

/// Reads `input` to its end in `INTAKE_BUF` pieces, handing each to `each` with its
/// offset, and returns the length and BLAKE3 of everything read. The hash runs on a second
/// thread, fed the same buffers, so it overlaps reading Git's pipe and `each` instead of
/// adding to them.
fn hash_stream<R: Read>(
    input: &mut R,
    mut each: impl FnMut(&[u8], u64) -> Result<(), CleanError>,
) -> Result<(u64, ChunkId), CleanError> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(INTAKE_BUFS_IN_FLIGHT);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            let mut hasher = blake3::Hasher::new();
            for buf in full_rx {
                hasher.update(&buf);
                // The reading side may have finished and gone; the buffer is then freed.
                let _ = free_tx.send(buf);
            }
            hasher.finalize()
        });
        let mut size = 0u64;
        loop {
            let mut buf = free_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(INTAKE_BUF));
            buf.resize(INTAKE_BUF, 0);
            let n = read_up_to(input, &mut buf).map_err(CleanError::Input)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            each(&buf, size)?;
            size += n as u64;
            if full_tx.send(buf).is_err() {
                break;
            }
        }
        drop(full_tx);
        let hash = hashing
            .join()
            .map_err(|_| CleanError::Spool(io::Error::other("hashing thread panicked")))?;
        Ok((size, hash.into()))
    })
}

/// BLAKE3 of a whole file, read with `pread` (the file position is left alone).
fn hash_file(file: &File) -> io::Result<ChunkId> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; INTAKE_BUF];
    let mut pos = 0u64;
    loop {
        let n = match file.read_at(&mut buf, pos) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// An unnamed temp file in the store: it vanishes with the process, so a killed add
/// leaves no litter.
fn tempfile_in(dir: &Path) -> io::Result<File> {
    // O_TMPFILE where the file system has it; otherwise create-and-unlink.
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::{test_bytes, EditingReader};

    struct Fixture {
        dir: tempfile::TempDir,
        tmp: std::path::PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let tmp = dir.path().join("tmp");
            std::fs::create_dir(&tmp).unwrap();
            Fixture { dir, tmp }
        }

        fn file(&self, content: &[u8]) -> std::path::PathBuf {
            let path = self.dir.path().join("clip.mp4");
            std::fs::write(&path, content).unwrap();
            path
        }

        fn take_in(&self, stream: &[u8], file: Option<&[u8]>) -> Intake {
            let working = file.map(|f| WorkingFile::open(&self.file(f)).unwrap());
            let left = AtomicBool::new(false);
            let intake = take_in(stream, working, &self.spooling(&left)).unwrap();
            assert_eq!(
                left.load(Ordering::Relaxed),
                intake.source != ContentSource::WorkingFile,
                "the flag says whether the working file was left"
            );
            intake
        }

        fn spooling<'a>(&'a self, left: &'a AtomicBool) -> Spooling<'a> {
            Spooling {
                tmp_dir: &self.tmp,
                left_working_file: left,
            }
        }
    }

    fn content(intake: &mut Intake) -> Vec<u8> {
        let mut out = Vec::new();
        intake.file.read_to_end(&mut out).unwrap();
        out
    }

    fn assert_holds_stream(intake: &mut Intake, stream: &[u8]) {
        assert_eq!(intake.size, stream.len() as u64);
        assert_eq!(intake.oid, ChunkId::of(stream));
        assert!(content(intake) == stream, "intake holds other bytes");
    }

    #[test]
    fn stream_equal_to_the_file_is_read_from_the_file_itself() {
        let f = Fixture::new();
        // Several intake buffers and a partial last one.
        let stream = test_bytes(3 * INTAKE_BUF + 1234, 1);
        let mut intake = f.take_in(&stream, Some(&stream));
        assert_eq!(intake.source, ContentSource::WorkingFile);
        assert!(intake.stamp.is_some());
        assert_holds_stream(&mut intake, &stream);
        // No copy: the intake's file is the working file.
        let working = std::fs::metadata(f.dir.path().join("clip.mp4")).unwrap();
        assert_eq!(intake.file.metadata().unwrap().ino(), working.ino());
    }

    #[test]
    fn without_a_working_file_the_stream_is_spooled() {
        let f = Fixture::new();
        let stream = test_bytes(INTAKE_BUF + 7, 2);
        let mut intake = f.take_in(&stream, None);
        assert_eq!(intake.source, ContentSource::Spool);
        assert!(intake.stamp.is_none());
        assert_holds_stream(&mut intake, &stream);
    }

    #[test]
    fn stream_differing_mid_buffer_spools_the_file_prefix_and_the_rest_of_the_stream() {
        let f = Fixture::new();
        let stream = test_bytes(3 * INTAKE_BUF + 99, 3);
        for offset in [
            0,
            1,
            INTAKE_BUF - 1,
            INTAKE_BUF,
            INTAKE_BUF + 12_345,
            stream.len() - 1,
        ] {
            let mut file = stream.clone();
            file[offset] ^= 0x5a;
            // Everything after the first difference differs too: the spool must take the
            // stream's bytes there, not the file's.
            file[offset + 1..].copy_from_slice(&test_bytes(stream.len() - offset - 1, 4));
            let mut intake = f.take_in(&stream, Some(&file));
            assert_eq!(
                intake.source,
                ContentSource::Diverged {
                    offset: offset as u64
                }
            );
            assert!(intake.stamp.is_none());
            assert_holds_stream(&mut intake, &stream);
        }
    }

    #[test]
    fn file_longer_than_the_stream_diverges_at_the_stream_end() {
        let f = Fixture::new();
        let file = test_bytes(2 * INTAKE_BUF + 500, 5);
        for len in [0, 100, INTAKE_BUF, 2 * INTAKE_BUF + 499] {
            let stream = &file[..len];
            let mut intake = f.take_in(stream, Some(&file));
            assert_eq!(
                intake.source,
                ContentSource::Diverged { offset: len as u64 }
            );
            assert_holds_stream(&mut intake, stream);
        }
    }

    #[test]
    fn file_shorter_than_the_stream_diverges_at_the_file_end() {
        let f = Fixture::new();
        let stream = test_bytes(2 * INTAKE_BUF + 500, 6);
        for len in [0, 100, INTAKE_BUF, 2 * INTAKE_BUF + 499] {
            let mut intake = f.take_in(&stream, Some(&stream[..len]));
            assert_eq!(
                intake.source,
                ContentSource::Diverged { offset: len as u64 }
            );
            assert_holds_stream(&mut intake, &stream);
        }
    }

    #[test]
    fn file_edited_behind_the_comparison_fails_the_intake_rather_than_storing_its_bytes() {
        let f = Fixture::new();
        let stream = test_bytes(3 * INTAKE_BUF, 7);
        let path = f.file(&stream);
        let working = WorkingFile::open(&path).unwrap();
        // While the third buffer streams in, the file is rewritten at an offset already
        // compared and at one still to come: the spool would start with the new bytes.
        let edit = || {
            let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            w.write_all_at(b"edited", 10).unwrap();
            w.write_all_at(b"edited", (2 * INTAKE_BUF + 100) as u64)
                .unwrap();
        };
        let input = EditingReader::new(&stream, 2 * INTAKE_BUF + 10, edit);
        let left = AtomicBool::new(false);
        let err = take_in(input, Some(working), &f.spooling(&left))
            .err()
            .unwrap();
        assert!(left.load(Ordering::Relaxed));
        assert!(matches!(err, CleanError::Changed), "{err}");
        assert!(err.to_string().contains("run `git add` again"));
    }

    #[test]
    fn stamp_moves_when_the_file_is_rewritten_in_place() {
        let f = Fixture::new();
        let path = f.file(&test_bytes(1000, 8));
        let file = File::open(&path).unwrap();
        let before = FileStamp::of(&file).unwrap();
        // Past the kernel's coarse timestamp tick.
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(&path, test_bytes(1000, 9)).unwrap();
        assert_ne!(FileStamp::of(&file).unwrap(), before);
    }

    #[test]
    fn symlinks_fifos_and_missing_paths_are_not_working_files() {
        let f = Fixture::new();
        let target = f.file(b"0123456789");
        let link = f.dir.path().join("link.mp4");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(WorkingFile::open(&link).is_none());
        assert!(WorkingFile::open(&f.dir.path().join("missing.mp4")).is_none());
        assert!(WorkingFile::open(f.dir.path()).is_none());
        let fifo = f.dir.path().join("fifo.mp4");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Opening does not block waiting for a writer.
        assert!(WorkingFile::open(&fifo).is_none());
        assert!(WorkingFile::open(&target).is_some());
    }
}
