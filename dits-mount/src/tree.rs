//! The tree of one revision as inodes: directories, plain blobs, symlinks and Dits files
//! (whose size is the pointer's, not the blob's). Built from one `git ls-tree` and one
//! batch read of the small blobs that may be pointers; nothing is downloaded.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context, Result};
use dits_core::pointer::MAX_POINTER_LEN;
use dits_core::Pointer;

use git_remote_dits::git;

pub const ROOT: u64 = 1;

#[derive(Debug)]
pub enum Kind {
    Dir {
        children: BTreeMap<OsString, u64>,
    },
    /// A blob served from Git's objects.
    Blob {
        oid: String,
        size: u64,
        executable: bool,
    },
    Symlink {
        oid: String,
        size: u64,
    },
    /// A Dits file, read through its recipe.
    Media {
        pointer: Pointer,
        executable: bool,
    },
    /// A file written through the mount: its content is this file in the overlay.
    Upper {
        file: std::path::PathBuf,
    },
}

#[derive(Debug)]
pub struct Node {
    pub parent: u64,
    pub name: OsString,
    pub kind: Kind,
}

impl Node {
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::Dir { .. } => 0,
            Kind::Blob { size, .. } | Kind::Symlink { size, .. } => *size,
            Kind::Media { pointer, .. } => pointer.size,
            Kind::Upper { file } => std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        }
    }
}

pub struct Tree {
    /// Index = inode - 1.
    nodes: Vec<Node>,
    /// The commit's time, shown as every file's mtime.
    pub time: std::time::SystemTime,
}

struct Listed {
    mode: String,
    kind: String,
    oid: String,
    size: u64,
    path: Vec<u8>,
}

fn ls_tree(rev: &str) -> Result<Vec<Listed>> {
    let out = std::process::Command::new("git")
        .args(["ls-tree", "-r", "-l", "-z", "--full-tree", rev])
        .output()
        .context("running git ls-tree")?;
    if !out.status.success() {
        bail!(
            "{rev} is not a revision here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut listed = Vec::new();
    for record in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let tab = record
            .iter()
            .position(|b| *b == b'\t')
            .context("git ls-tree: a record without a tab")?;
        let meta = String::from_utf8_lossy(&record[..tab]);
        let mut fields = meta.split_whitespace();
        let (Some(mode), Some(kind), Some(oid), Some(size)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("git ls-tree: unexpected record {meta:?}");
        };
        listed.push(Listed {
            mode: mode.to_string(),
            kind: kind.to_string(),
            oid: oid.to_string(),
            size: size.parse().unwrap_or(0),
            path: record[tab + 1..].to_vec(),
        });
    }
    Ok(listed)
}

impl Tree {
    pub fn load(rev: &str) -> Result<Tree> {
        Tree::load_only(rev, None)
    }

    /// [`Tree::load`] keeping only the files `only` lists (and the directories that hold
    /// them), when given: a project's mount shows the project and its media.
    pub fn load_only(rev: &str, only: Option<&std::collections::BTreeSet<String>>) -> Result<Tree> {
        let mut listed = ls_tree(rev)?;
        if let Some(only) = only {
            listed.retain(|l| only.contains(String::from_utf8_lossy(&l.path).as_ref()));
        }
        // Small blobs may be pointers: read them all in one batch.
        let small: Vec<String> = listed
            .iter()
            .filter(|l| l.kind == "blob" && l.size <= MAX_POINTER_LEN as u64)
            .map(|l| l.oid.clone())
            .collect();
        let contents = git::cat_file_small(&small, MAX_POINTER_LEN as u64)?;
        // An encrypted repository's pointers open with the keys the last fetch brought;
        // one this user holds no key for shows as its pointer text.
        let keyring = git_remote_dits::keys::load_keyring()?;
        let pointers: std::collections::HashMap<String, Pointer> = small
            .into_iter()
            .zip(contents)
            .filter_map(|(oid, blob)| {
                let blob = blob?;
                Pointer::looks_like_pointer(&blob.content)
                    .then(|| keyring.parse_pointer(&blob.content).ok())
                    .flatten()
                    .map(|p| (oid, p))
            })
            .collect();
        let secs = git::run(&["log", "-1", "--format=%ct", rev])
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut tree = Tree {
            nodes: vec![Node {
                parent: ROOT,
                name: OsString::new(),
                kind: Kind::Dir {
                    children: BTreeMap::new(),
                },
            }],
            time: std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        };
        for l in listed {
            let kind = match (l.kind.as_str(), l.mode.as_str()) {
                ("blob", "120000") => Kind::Symlink {
                    oid: l.oid,
                    size: l.size,
                },
                ("blob", mode) => {
                    let executable = mode == "100755";
                    match pointers.get(&l.oid) {
                        Some(p) => Kind::Media {
                            pointer: p.clone(),
                            executable,
                        },
                        None => Kind::Blob {
                            oid: l.oid,
                            size: l.size,
                            executable,
                        },
                    }
                }
                // Submodules (commits) are shown as empty directories.
                _ => Kind::Dir {
                    children: BTreeMap::new(),
                },
            };
            tree.insert(&l.path, kind);
        }
        Ok(tree)
    }

    fn insert(&mut self, path: &[u8], kind: Kind) {
        let mut dir = ROOT;
        let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        for (i, part) in parts.iter().enumerate() {
            let name = OsStr::from_bytes(part).to_os_string();
            let existing = match &self.nodes[(dir - 1) as usize].kind {
                Kind::Dir { children } => children.get(&name).copied(),
                _ => return,
            };
            let last = i + 1 == parts.len();
            let ino = match existing {
                Some(ino) if !last => ino,
                _ => {
                    let ino = self.nodes.len() as u64 + 1;
                    // A placeholder until the last component gets its real kind below.
                    let node_kind = Kind::Dir {
                        children: BTreeMap::new(),
                    };
                    self.nodes.push(Node {
                        parent: dir,
                        name: name.clone(),
                        kind: node_kind,
                    });
                    if let Kind::Dir { children } = &mut self.nodes[(dir - 1) as usize].kind {
                        children.insert(name, ino);
                    }
                    ino
                }
            };
            dir = ino;
        }
        self.nodes[(dir - 1) as usize].kind = kind;
    }

    /// Adds (or replaces) `name` in directory `parent`; returns its inode.
    pub fn add_child(&mut self, parent: u64, name: &OsStr, kind: Kind) -> Option<u64> {
        if let Some(existing) = self.lookup(parent, name) {
            self.nodes[(existing - 1) as usize].kind = kind;
            return Some(existing);
        }
        let ino = self.nodes.len() as u64 + 1;
        match &mut self.nodes.get_mut((parent - 1) as usize)?.kind {
            Kind::Dir { children } => {
                children.insert(name.to_os_string(), ino);
            }
            _ => return None,
        }
        self.nodes.push(Node {
            parent,
            name: name.to_os_string(),
            kind,
        });
        Some(ino)
    }

    /// Detaches `name` from `parent` (its inode stays valid for open handles).
    pub fn remove_child(&mut self, parent: u64, name: &OsStr) -> Option<u64> {
        match &mut self.nodes.get_mut((parent - 1) as usize)?.kind {
            Kind::Dir { children } => children.remove(name),
            _ => None,
        }
    }

    /// Puts existing inode `ino` into `parent` as `name` (after a rename).
    pub fn attach(&mut self, parent: u64, name: &OsStr, ino: u64) {
        if let Some(Node {
            kind: Kind::Dir { children },
            ..
        }) = parent
            .checked_sub(1)
            .and_then(|i| self.nodes.get_mut(i as usize))
        {
            children.insert(name.to_os_string(), ino);
        }
        if let Some(n) = ino
            .checked_sub(1)
            .and_then(|i| self.nodes.get_mut(i as usize))
        {
            n.parent = parent;
            n.name = name.to_os_string();
        }
    }

    pub fn set_kind(&mut self, ino: u64, kind: Kind) {
        if let Some(n) = ino
            .checked_sub(1)
            .and_then(|i| self.nodes.get_mut(i as usize))
        {
            n.kind = kind;
        }
    }

    /// The repository-relative path of `ino` (empty for the root).
    pub fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let Some(node) = self.get(at) else { break };
            parts.push(node.name.to_string_lossy().into_owned());
            at = node.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// The inode at repository-relative `path`, creating directories on the way when
    /// `create_dirs`.
    pub fn resolve(&mut self, path: &str, create_dirs: bool) -> Option<u64> {
        let mut at = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = match self.lookup(at, OsStr::new(part)) {
                Some(i) => i,
                None if create_dirs => self.add_child(
                    at,
                    OsStr::new(part),
                    Kind::Dir {
                        children: BTreeMap::new(),
                    },
                )?,
                None => return None,
            };
        }
        Some(at)
    }

    /// Repository-relative paths of every non-directory.
    pub fn file_paths(&self) -> Vec<String> {
        (1..=self.nodes.len() as u64)
            .filter(|&ino| !matches!(self.get(ino).map(|n| &n.kind), Some(Kind::Dir { .. })))
            .map(|ino| self.path_of(ino))
            .collect()
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Option<u64> {
        match &self.get(parent)?.kind {
            Kind::Dir { children } => children.get(name).copied(),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
