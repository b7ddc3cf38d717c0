//! The hub's object store: immutable blobs (chunk packs, Git packs). Every blob is first
//! written to a temporary file under the data directory (hashing as it goes), then made
//! durable under its key: on the local-directory backend by fsync, rename into place and
//! a directory fsync; on S3 (`object_store`) by a multipart upload of the file, so a blob
//! that has a key is whole either way. (The `object_store` crate's local backend does not
//! fsync, hence our own.) Reads are ranged: `pread` locally, ranged GETs on S3.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::blocking::block_on;

pub struct LocalBlobs {
    root: PathBuf,
    /// Write requests made to S3 (PUTs, and a multipart upload's parts and completion).
    pub s3_writes: std::sync::atomic::AtomicU64,
    /// S3-compatible storage for committed blobs; `None`: the local directory.
    remote: Option<Remote>,
}

struct Remote {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: String,
    /// What `--objects` said, for messages.
    url: String,
}

/// Blobs up to this size are one PUT (a push's packs are ~32 MiB batches, so one request
/// each: ~32 PUTs per GB); larger ones go up in parts of [`PART`] bytes.
const SINGLE_PUT_MAX: u64 = 64 << 20;
/// Multipart part size (S3's minimum is 5 MiB).
const PART: usize = 16 << 20;

/// An S3 failure as an I/O error naming the store and the key; one that may pass (the
/// server did not answer or failed) is [`Unavailable`](crate::meta::Unavailable).
fn s3_err(url: &str, what: &str, e: object_store::Error) -> io::Error {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => {
            io::Error::other(format!("object store {url}: {what}: {e}"))
        }
        e => io::Error::other(crate::meta::Unavailable::new(
            "object store",
            format!("{url}: {what}: {e}"),
        )),
    }
}

/// A blob being written; dropped without `commit`, its temporary file is removed.
pub struct BlobWriter {
    path: PathBuf,
    file: File,
    pub len: u64,
    hasher: blake3::Hasher,
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// BLAKE3 of everything written so far.
    pub fn hash(&self) -> blake3::Hash {
        self.hasher.finalize()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl LocalBlobs {
    pub fn open(root: &Path) -> io::Result<LocalBlobs> {
        fs::create_dir_all(root.join("tmp"))?;
        // Leftovers of writes a crash interrupted were never committed.
        for entry in fs::read_dir(root.join("tmp"))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        Ok(LocalBlobs {
            root: root.to_path_buf(),
            s3_writes: Default::default(),
            remote: None,
        })
    }

    /// Committed blobs go to `url` (`s3://BUCKET[/PREFIX]`), configured from the usual AWS
    /// environment variables (AWS_ENDPOINT_URL or AWS_ENDPOINT, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP for a plain-HTTP endpoint).
    pub fn with_s3(mut self, url: &str) -> anyhow::Result<LocalBlobs> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow::anyhow!("--objects {url}: expected s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!bucket.is_empty(), "--objects {url}: no bucket");
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|e| anyhow::anyhow!("--objects {url}: {e}"))?;
        self.remote = Some(Remote {
            store: std::sync::Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            url: url.to_string(),
        });
        Ok(self)
    }

    /// Whether the backend answers: the directory exists, or S3 lists the prefix.
    pub fn check(&self) -> io::Result<()> {
        match &self.remote {
            Some(r) => {
                use object_store::ObjectStore;
                let prefix = object_store::path::Path::from(r.prefix.as_str());
                block_on(r.store.list_with_delimiter(Some(&prefix)))
                    .map(|_| ())
                    .map_err(|e| s3_err(&r.url, "listing", e))
            }
            None => fs::metadata(&self.root).map(|_| ()),
        }
    }

    /// `local` or the S3 URL, for the start-up line and `/readyz`.
    pub fn describe(&self) -> String {
        match &self.remote {
            Some(r) => r.url.clone(),
            None => format!("local directory {}", self.root.display()),
        }
    }

    fn remote_path(r: &Remote, key: &str) -> object_store::path::Path {
        if r.prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", r.prefix))
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub fn writer(&self) -> io::Result<BlobWriter> {
        let mut raw = [0u8; 12];
        getrandom::getrandom(&mut raw).map_err(io::Error::other)?;
        let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.root.join("tmp").join(name);
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
            hasher: blake3::Hasher::new(),
        })
    }

    /// Makes the blob durable under `key`.
    pub fn commit(&self, writer: BlobWriter, key: &str) -> io::Result<()> {
        if let Some(r) = &self.remote {
            let requests = Self::upload(r, writer, key)?;
            self.s3_writes
                .fetch_add(requests, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        writer.file.sync_data()?;
        let dest = self.path(key);
        let dir = dest.parent().expect("keys have a directory");
        fs::create_dir_all(dir)?;
        fs::rename(&writer.path, &dest)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// One PUT for a blob up to one part; a multipart upload (parts of [`PART`] bytes,
    /// four in flight) above that. Only a completed upload creates the key.
    fn upload(r: &Remote, writer: BlobWriter, key: &str) -> io::Result<u64> {
        use object_store::ObjectStore;
        let path = Self::remote_path(r, key);
        let file = &writer.file;
        block_on(async {
            if writer.len <= SINGLE_PUT_MAX {
                let mut buf = vec![0u8; writer.len as usize];
                file.read_exact_at(&mut buf, 0)?;
                r.store
                    .put(&path, buf.into())
                    .await
                    .map_err(|e| s3_err(&r.url, key, e))?;
                return Ok(1);
            }
            let upload = r
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| s3_err(&r.url, key, e))?;
            let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
            let mut at = 0u64;
            let mut parts = 0u64;
            let mut buf = vec![0u8; PART];
            while at < writer.len {
                let n = PART.min((writer.len - at) as usize);
                file.read_exact_at(&mut buf[..n], at)?;
                w.wait_for_capacity(4)
                    .await
                    .map_err(|e| s3_err(&r.url, key, e))?;
                w.write(&buf[..n]);
                at += n as u64;
                parts += 1;
            }
            w.finish().await.map_err(|e| s3_err(&r.url, key, e))?;
            // Create, the parts, complete.
            Ok(parts + 2)
        })
    }

    pub fn read_range(&self, key: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if let Some(r) = &self.remote {
            use object_store::ObjectStore;
            let path = Self::remote_path(r, key);
            let bytes = block_on(r.store.get_range(&path, offset..offset + len as u64))
                .map_err(|e| s3_err(&r.url, key, e))?;
            return Ok(bytes.to_vec());
        }
        let file = File::open(self.path(key))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// The first `len` bytes of a blob still being written.
    pub fn read_range_tmp(&self, writer: &BlobWriter, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len.min(writer.len as usize)];
        File::open(&writer.path)?.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    pub fn read(&self, key: &str) -> io::Result<Vec<u8>> {
        if let Some(r) = &self.remote {
            use object_store::ObjectStore;
            let path = Self::remote_path(r, key);
            return block_on(async {
                let got = r.store.get(&path).await?;
                got.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| s3_err(&r.url, key, e));
        }
        fs::read(self.path(key))
    }
}
