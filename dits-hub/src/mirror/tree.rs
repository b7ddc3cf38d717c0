//! Browsing a commit's tree in the mirror, for the pages: what is at a path (a directory's
//! entries, or a file), with Dits pointers among the files read and parsed.

use anyhow::Result;
use dits_core::pointer::{Pointer, MAX_POINTER_LEN};

use super::GitMirror;

/// One entry of a directory.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub name: String,
    pub kind: EntryKind,
    /// The file's size in Git (a pointer's own size for media); 0 for others.
    pub size: u64,
    /// What the pointer says, when the file is a Dits pointer.
    pub pointer: Option<Pointer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    /// A submodule's commit or a symbolic link: shown, not followed.
    Other,
}

/// What a path names in a commit.
#[derive(Debug, Clone)]
pub enum Found {
    Directory(Vec<TreeEntry>),
    File(TreeEntry),
}

impl GitMirror {
    /// What `path` ("" for the root) names in `commit` of the repository's mirror, or
    /// None when the commit has nothing there.
    pub async fn lookup(&self, repo: i64, commit: &str, path: &str) -> Result<Option<Found>> {
        let spec = format!("{commit}:{path}");
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        self.blocking(move |m| m.lookup_blocking(repo, &spec, name))
            .await
    }

    fn lookup_blocking(&self, repo: i64, spec: &str, name: String) -> Result<Option<Found>> {
        let dir = self.repo_dir(repo)?;
        // A missing path is an answer ("missing"), not an error.
        let out = self.cat_file(&dir, "--batch-check", format!("{spec}\n"))?;
        let line = String::from_utf8_lossy(&out);
        let mut fields = line.split_whitespace();
        let (Some(oid), Some(kind), Some(size)) = (fields.next(), fields.next(), fields.next())
        else {
            return Ok(None);
        };
        match kind {
            "tree" => {
                let listing = self.run(&dir, &["ls-tree", "-z", "-l", oid])?;
                let mut entries = Vec::new();
                let mut small = Vec::new();
                for record in listing.split(|&b| b == 0).filter(|r| !r.is_empty()) {
                    let record = String::from_utf8_lossy(record);
                    let Some((meta, name)) = record.split_once('\t') else {
                        continue;
                    };
                    let mut meta = meta.split_whitespace();
                    let (mode, kind, oid, size) =
                        (meta.next(), meta.next(), meta.next(), meta.next());
                    let size = size.and_then(|s| s.parse().ok()).unwrap_or(0);
                    let kind = match (kind, mode) {
                        (Some("tree"), _) => EntryKind::Directory,
                        (Some("blob"), Some(mode)) if mode != "120000" => EntryKind::File,
                        _ => EntryKind::Other,
                    };
                    if kind == EntryKind::File && size <= MAX_POINTER_LEN as u64 {
                        small.push((entries.len(), oid.unwrap_or_default().to_string()));
                    }
                    entries.push(TreeEntry {
                        name: name.to_string(),
                        kind,
                        size,
                        pointer: None,
                    });
                }
                let pointers = self.pointers_in(&dir, small.iter().map(|s| s.1.as_str()))?;
                for (at, oid) in small {
                    entries[at].pointer = pointers.get(&oid).cloned();
                }
                // Directories first, then files, each by name, as people expect.
                entries.sort_by(|a, b| {
                    (a.kind != EntryKind::Directory, &a.name)
                        .cmp(&(b.kind != EntryKind::Directory, &b.name))
                });
                Ok(Some(Found::Directory(entries)))
            }
            "blob" => {
                let size: u64 = size.parse().unwrap_or(0);
                let pointer = if size <= MAX_POINTER_LEN as u64 {
                    self.pointers_in(&dir, std::iter::once(oid))?.remove(oid)
                } else {
                    None
                };
                Ok(Some(Found::File(TreeEntry {
                    name,
                    kind: EntryKind::File,
                    size,
                    pointer,
                })))
            }
            _ => Ok(None),
        }
    }
}
