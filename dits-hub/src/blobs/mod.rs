//! The hub's object store: immutable blobs (chunk packs, Git packs) under keys. One
//! async trait, [`BlobStore`], two implementations, one chosen at start-up from the
//! settings: a local directory ([`local::LocalBlobs`]) and S3-compatible storage
//! ([`s3::S3Blobs`]).
//!
//! Every blob is first written to a temporary file in a staging directory under the data
//! directory ([`BlobWriter`]), then made durable under its key by
//! [`BlobStore::commit`]: so a blob that has a key is whole. Reads are ranged.

pub mod local;
pub mod s3;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where blobs live.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// `local directory PATH` or the S3 URL, for the start-up line.
    fn describe(&self) -> String;
    /// Whether the backend answers: the directory exists, or S3 lists the prefix.
    async fn check(&self) -> io::Result<()>;
    /// A new blob, written to the staging directory until committed.
    fn writer(&self) -> io::Result<BlobWriter>;
    /// Makes the blob durable under `key`.
    async fn commit(&self, writer: BlobWriter, key: &str) -> io::Result<()>;
    /// `len` bytes of blob `key` from `offset`.
    async fn read_range(&self, key: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The whole of blob `key`.
    async fn read(&self, key: &str) -> io::Result<Vec<u8>>;
    /// Every blob whose key starts with `prefix` (a directory: `chunks/`, `git/`).
    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobInfo>>;
    /// Deletes blob `key`; one already gone is no error.
    async fn delete(&self, key: &str) -> io::Result<()>;
    /// Moves blob `key` to storage class `class` (an S3 class name), keeping its key:
    /// on S3 it is written again with that class; locally it moves to the `cold/`
    /// directory, where reads still find it.
    async fn set_class(&self, key: &str, class: &str) -> io::Result<()>;
    /// Write requests sent to remote storage (S3 PUTs and multipart parts); 0 locally.
    fn write_requests(&self) -> u64 {
        0
    }
    /// A URL anyone holding it may use for `ttl` to read (`write` false: GET, ranged
    /// reads included) or write (PUT) blob `key` straight from the store, bypassing the
    /// hub; `None` when this store cannot sign (a local directory).
    async fn signed_url(
        &self,
        _key: &str,
        _write: bool,
        _ttl: std::time::Duration,
    ) -> io::Result<Option<String>> {
        Ok(None)
    }
    /// Copies blob `from` to `to` inside the store (S3: a server-side copy, no bytes
    /// through this process).
    async fn copy(&self, from: &str, to: &str) -> io::Result<()> {
        let bytes = self.read(from).await?;
        let mut writer = self.writer()?;
        writer.write(&bytes)?;
        self.commit(writer, to).await
    }
    /// The size of blob `key`, or `None` if there is no such blob.
    async fn size(&self, key: &str) -> io::Result<Option<u64>> {
        Ok(self
            .list(key)
            .await?
            .into_iter()
            .find(|b| b.key == key)
            .map(|b| b.size))
    }
}

/// A stored blob, as [`BlobStore::list`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    /// When it was written, Unix seconds.
    pub modified: i64,
}

/// How many first bytes of a blob its writer keeps, so a caller can check a format's
/// magic without reading the file back.
const HEAD_LEN: usize = 16;

/// A blob being written; dropped without `commit`, its temporary file is removed.
///
/// Writes go straight to the file (into the page cache; well under a millisecond for a
/// chunk, so they run inline on the task). What blocks — the fsync — happens in
/// [`BlobStore::commit`], on the blocking pool.
pub struct BlobWriter {
    path: PathBuf,
    file: File,
    len: u64,
    head: Vec<u8>,
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bytes written (up to 16).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// How long a staged file must have gone unwritten before a starting process takes it
/// for a crash's leftover.
const STAGING_LEFTOVER: std::time::Duration = std::time::Duration::from_secs(3600);

/// The staging directory where blobs are written before they are committed.
#[derive(Clone)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Creates `dir` and removes leftovers: writes a crash interrupted were never
    /// committed. Only files untouched for [`STAGING_LEFTOVER`] go: another process on
    /// the same data directory (a `dits-hub worker` beside `serve`) may be writing the
    /// fresh ones.
    pub fn open(dir: &Path) -> io::Result<Staging> {
        fs::create_dir_all(dir)?;
        let now = std::time::SystemTime::now();
        for entry in fs::read_dir(dir)?.flatten() {
            let idle = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok());
            if idle.is_some_and(|idle| idle >= STAGING_LEFTOVER) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Staging {
            dir: dir.to_path_buf(),
        })
    }

    pub fn writer(&self) -> io::Result<BlobWriter> {
        let mut raw = [0u8; 12];
        getrandom::getrandom(&mut raw).map_err(io::Error::other)?;
        let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(name);
        // Readable too: an S3 commit uploads from this file.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(BlobWriter {
            path,
            file,
            len: 0,
            head: Vec::with_capacity(HEAD_LEN),
        })
    }
}

/// Bytes of a blob read from storage at a time when it is streamed to a client.
const STREAM_STEP: u64 = 4 << 20;

/// Streams bytes `[0, size)` of blob `key` to `writer`, a few MiB at a time. `Ok(false)`:
/// the writer went away (a client that hung up; there is nothing to tell it).
pub async fn stream_to<W: tokio::io::AsyncWrite + Unpin>(
    blobs: &dyn BlobStore,
    key: &str,
    size: u64,
    writer: &mut W,
) -> io::Result<bool> {
    use tokio::io::AsyncWriteExt;
    let mut offset = 0;
    while offset < size {
        let n = STREAM_STEP.min(size - offset);
        let bytes = blobs.read_range(key, offset, n as usize).await?;
        if writer.write_all(&bytes).await.is_err() {
            return Ok(false);
        }
        offset += n;
    }
    Ok(true)
}
