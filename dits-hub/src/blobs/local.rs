//! Blobs in a local directory (the embedded default). A blob is made durable by fsync of
//! its staging file, rename into place and fsync of the directory (the `object_store`
//! crate's local backend does not fsync, hence this one). Every file system call that
//! can wait on the disk runs on the blocking pool.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::blobs::{BlobInfo, BlobStore, BlobWriter, Staging};

pub struct LocalBlobs {
    root: PathBuf,
    staging: Staging,
}

impl LocalBlobs {
    /// Blobs under `root`; `staging` must be on the same file system (renames).
    pub fn new(root: &Path, staging: Staging) -> LocalBlobs {
        LocalBlobs {
            root: root.to_path_buf(),
            staging,
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Where a blob moved to a colder class lives.
    fn cold_path(&self, key: &str) -> PathBuf {
        self.root.join("cold").join(key)
    }

    /// The blob's file, in the hot directory or the cold one.
    fn existing_path(&self, key: &str) -> PathBuf {
        let hot = self.path(key);
        if hot.exists() {
            return hot;
        }
        let cold = self.cold_path(key);
        if cold.exists() {
            cold
        } else {
            hot
        }
    }
}

/// Runs a file system call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobs {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    async fn check(&self) -> io::Result<()> {
        let root = self.root.clone();
        blocking(move || fs::metadata(root).map(|_| ())).await
    }

    fn writer(&self) -> io::Result<BlobWriter> {
        self.staging.writer()
    }

    async fn commit(&self, writer: BlobWriter, key: &str) -> io::Result<()> {
        let dest = self.path(key);
        blocking(move || {
            writer.file().sync_data()?;
            let dir = dest
                .parent()
                .ok_or_else(|| io::Error::other("a blob key has a directory"))?;
            fs::create_dir_all(dir)?;
            fs::rename(&writer.path, &dest)?;
            File::open(dir)?.sync_all()?;
            Ok(())
        })
        .await
    }

    async fn read_range(&self, key: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let path = self.existing_path(key);
        blocking(move || {
            let file = File::open(path)?;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)?;
            Ok(buf)
        })
        .await
    }

    async fn read(&self, key: &str) -> io::Result<Vec<u8>> {
        let path = self.existing_path(key);
        blocking(move || fs::read(path)).await
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobInfo>> {
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        blocking(move || {
            let mut out = Vec::new();
            for base in [root.clone(), root.join("cold")] {
                list_under(&base, &prefix, &mut out)?;
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let paths = [self.path(key), self.cold_path(key)];
        blocking(move || {
            for path in paths {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
    }

    async fn set_class(&self, key: &str, _class: &str) -> io::Result<()> {
        let (hot, cold) = (self.path(key), self.cold_path(key));
        blocking(move || {
            let dir = cold
                .parent()
                .ok_or_else(|| io::Error::other("a blob key has a directory"))?;
            fs::create_dir_all(dir)?;
            fs::rename(&hot, &cold)?;
            File::open(dir)?.sync_all()?;
            Ok(())
        })
        .await
    }
}

/// Appends the blobs under `base/prefix` to `out`, keyed relative to `base`.
fn list_under(base: &Path, prefix: &str, out: &mut Vec<BlobInfo>) -> io::Result<()> {
    let mut dirs = vec![base.join(prefix)];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(base).map(Path::to_path_buf) else {
                continue;
            };
            let modified = meta
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            out.push(BlobInfo {
                key: rel.to_string_lossy().into_owned(),
                size: meta.len(),
                modified,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::{BlobStore, Staging};
    use std::fs;

    fn local(data: &std::path::Path) -> Box<dyn BlobStore> {
        let root = data.join("objects");
        let staging = Staging::open(&root.join("tmp")).unwrap();
        Box::new(LocalBlobs::new(&root, staging))
    }

    async fn round_trip(store: &dyn BlobStore) {
        let mut w = store.writer().unwrap();
        w.write(b"PACK").unwrap();
        w.write(&[7u8; 100]).unwrap();
        assert_eq!(
            w.head(),
            b"PACK\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07"
        );
        assert_eq!(w.len(), 104);
        store.commit(w, "chunks/a.pack").await.unwrap();
        assert_eq!(
            store.read_range("chunks/a.pack", 2, 4).await.unwrap(),
            b"CK\x07\x07"
        );
        assert_eq!(store.read("chunks/a.pack").await.unwrap().len(), 104);
        store.check().await.unwrap();
    }

    #[tokio::test]
    async fn a_committed_local_blob_reads_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        round_trip(store.as_ref()).await;
        let staged = fs::read_dir(dir.path().join("objects/tmp"))
            .unwrap()
            .count();
        assert_eq!(staged, 0, "the staging file was moved, not copied");
    }

    #[tokio::test]
    async fn an_uncommitted_blob_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let mut w = store.writer().unwrap();
        w.write(b"half").unwrap();
        drop(w);
        let staged = fs::read_dir(dir.path().join("objects/tmp"))
            .unwrap()
            .count();
        assert_eq!(staged, 0);
    }
}
