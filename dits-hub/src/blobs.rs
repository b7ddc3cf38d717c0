//! The hub's object store, local-directory backend: immutable blobs (chunk packs, Git
//! packs) under a root, each written to a temporary file, fsync'd, renamed into place and
//! the directory fsync'd, so a blob that has a key is whole. (The `object_store` crate's
//! local backend does not fsync; S3 comes with the scale-out work behind the same calls.)

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct LocalBlobs {
    root: PathBuf,
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
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub fn writer(&self) -> io::Result<BlobWriter> {
        let mut raw = [0u8; 12];
        getrandom::getrandom(&mut raw).map_err(io::Error::other)?;
        let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.root.join("tmp").join(name);
        let file = fs::OpenOptions::new()
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
        writer.file.sync_data()?;
        let dest = self.path(key);
        let dir = dest.parent().expect("keys have a directory");
        fs::create_dir_all(dir)?;
        fs::rename(&writer.path, &dest)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    pub fn read_range(&self, key: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
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
        fs::read(self.path(key))
    }
}
