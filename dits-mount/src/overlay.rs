//! The copy-on-write overlay of a mount: files written through the mount live under
//! `.git/dits/staging/COMMIT/upper/PATH`, paths deleted from the base revision are listed
//! in `.git/dits/staging/COMMIT/whiteouts`. The base (Git's objects and the chunk store)
//! is never written. Keyed by the mounted commit, so mounting it again resumes the edits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Overlay {
    root: PathBuf,
}

impl Overlay {
    pub fn open(store_dir: &Path, commit: &str) -> Result<Overlay> {
        let root = store_dir.join("staging").join(commit);
        std::fs::create_dir_all(root.join("upper"))
            .with_context(|| format!("creating {}", root.display()))?;
        Ok(Overlay { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn upper(&self, rel: &str) -> PathBuf {
        self.root.join("upper").join(rel)
    }

    fn whiteout_file(&self) -> PathBuf {
        self.root.join("whiteouts")
    }

    pub fn whiteouts(&self) -> Result<BTreeSet<String>> {
        match std::fs::read(self.whiteout_file()) {
            Ok(b) => Ok(b
                .split(|c| *c == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn save_whiteouts(&self, set: &BTreeSet<String>) -> Result<()> {
        let mut bytes = Vec::new();
        for p in set {
            bytes.extend_from_slice(p.as_bytes());
            bytes.push(0);
        }
        let tmp = self.root.join("whiteouts.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, self.whiteout_file())?;
        Ok(())
    }

    pub fn add_whiteout(&self, rel: &str) -> Result<()> {
        let mut set = self.whiteouts()?;
        if set.insert(rel.to_string()) {
            self.save_whiteouts(&set)?;
        }
        Ok(())
    }

    pub fn remove_whiteout(&self, rel: &str) -> Result<()> {
        let mut set = self.whiteouts()?;
        if set.remove(rel) {
            self.save_whiteouts(&set)?;
        }
        Ok(())
    }

    /// Repository-relative paths of every file in the overlay.
    pub fn files(&self) -> Result<Vec<String>> {
        let base = self.root.join("upper");
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&base).expect("under upper");
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.files()?.is_empty() && self.whiteouts()?.is_empty())
    }

    pub fn clear(self) -> Result<()> {
        std::fs::remove_dir_all(&self.root)
            .with_context(|| format!("removing {}", self.root.display()))
    }
}
