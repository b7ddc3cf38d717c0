//! The FUSE file system: one revision's tree, with media read through [`MediaReader`] and
//! other blobs from Git's objects (read whole on first open, kept in a bounded cache).
//! Writes go to the copy-on-write [`Overlay`]: a base file is copied up whole on first
//! write; deletes of base paths are recorded as whiteouts. The base is never written.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};

use crate::media::MediaReader;
use crate::overlay::Overlay;
use crate::tree::{Kind, Node, Tree};

/// Why a plain (non-media) blob of the base revision could not be read from Git.
#[derive(Debug, thiserror::Error)]
enum BlobError {
    #[error("running `git cat-file blob {oid}`: {source}")]
    Spawn { oid: String, source: std::io::Error },
    #[error("`git cat-file blob {oid}` failed: {stderr}")]
    Git { oid: String, stderr: String },
}

/// Attributes of the base never change; the overlay's do, so they are not cached long.
const TTL: Duration = Duration::from_secs(1);
const COPY_UP_STEP: u32 = 8 << 20;

pub struct DitsFs {
    tree: Tree,
    media: MediaReader,
    overlay: Overlay,
    /// Repository-relative paths present in the base revision (for whiteouts).
    base_paths: std::collections::HashSet<String>,
    blobs: moka::sync::Cache<String, Arc<Vec<u8>>>,
    handles: HashMap<u64, File>,
    next_fh: u64,
    /// Lockable paths whose lock the user does not hold: shown 0444, writes refused.
    read_only: std::collections::HashSet<String>,
    uid: u32,
    gid: u32,
}

/// "a/b/c" → ("a/b", "c"); "c" → ("", "c").
fn split_parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl DitsFs {
    pub fn new(tree: Tree, media: MediaReader, overlay: Overlay) -> DitsFs {
        let base_paths = (1..=tree.len() as u64)
            .map(|ino| tree.path_of(ino))
            .filter(|p| !p.is_empty())
            .collect();
        let mut fs = DitsFs {
            tree,
            media,
            overlay,
            base_paths,
            blobs: moka::sync::Cache::builder()
                .weigher(|_: &String, v: &Arc<Vec<u8>>| v.len().try_into().unwrap_or(u32::MAX))
                .max_capacity(64 << 20)
                .build(),
            handles: HashMap::new(),
            next_fh: 1,
            read_only: Default::default(),
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        };
        fs.apply_overlay();
        fs
    }

    pub fn with_read_only(mut self, paths: std::collections::HashSet<String>) -> DitsFs {
        self.read_only = paths;
        self
    }

    fn locked_out(&self, ino: u64) -> bool {
        !self.read_only.is_empty() && self.read_only.contains(&self.tree.path_of(ino))
    }

    /// Edits from an earlier mount of the same commit show again.
    fn apply_overlay(&mut self) {
        for path in self.overlay.whiteouts().unwrap_or_default() {
            let (dir, name) = split_parent(&path);
            if let Some(parent) = self.tree.resolve(dir, false) {
                self.tree.remove_child(parent, OsStr::new(name));
            }
        }
        for path in self.overlay.files().unwrap_or_default() {
            let (dir, name) = split_parent(&path);
            if let Some(parent) = self.tree.resolve(dir, true) {
                let file = self.overlay.upper(&path);
                self.tree
                    .add_child(parent, OsStr::new(name), Kind::Upper { file });
            }
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.tree.get(ino)?;
        let (kind, perm) = match &node.kind {
            Kind::Dir { .. } => (FileType::Directory, 0o755),
            Kind::Symlink { .. } => (FileType::Symlink, 0o777),
            Kind::Blob { executable, .. } | Kind::Media { executable, .. } => (
                FileType::RegularFile,
                if *executable { 0o755 } else { 0o644 },
            ),
            Kind::Upper { file } => {
                let mode = std::fs::metadata(file).ok()?.permissions().mode();
                (FileType::RegularFile, (mode & 0o7777) as u16)
            }
        };
        let perm = if self.locked_out(ino) {
            perm & !0o222
        } else {
            perm
        };
        let size = node.size();
        let mtime = match &node.kind {
            Kind::Upper { file } => std::fs::metadata(file)
                .and_then(|m| m.modified())
                .unwrap_or(self.tree.time),
            _ => self.tree.time,
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 128 << 10,
            flags: 0,
        })
    }

    fn blob(&self, oid: &str) -> Result<Arc<Vec<u8>>, BlobError> {
        if let Some(b) = self.blobs.get(oid) {
            return Ok(b);
        }
        let out = std::process::Command::new("git")
            .args(["cat-file", "blob", oid])
            .output()
            .map_err(|source| BlobError::Spawn {
                oid: oid.to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(BlobError::Git {
                oid: oid.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let bytes = Arc::new(out.stdout);
        self.blobs.insert(oid.to_string(), bytes.clone());
        Ok(bytes)
    }

    fn child_path(&self, parent: u64, name: &OsStr) -> String {
        let dir = self.tree.path_of(parent);
        let name = name.to_string_lossy();
        if dir.is_empty() {
            name.into_owned()
        } else {
            format!("{dir}/{name}")
        }
    }

    /// Writes `ino`'s current content into the overlay at `rel` (copy-up); returns the
    /// overlay file.
    fn materialize(&mut self, ino: u64, rel: &str) -> Result<std::path::PathBuf, i32> {
        let dest = self.overlay.upper(rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| errno(&e))?;
        }
        let kind = match self.tree.get(ino).map(|n| &n.kind) {
            Some(Kind::Upper { file }) => {
                if *file != dest {
                    std::fs::rename(file, &dest).map_err(|e| errno(&e))?;
                }
                return Ok(dest);
            }
            Some(Kind::Blob {
                oid, executable, ..
            }) => (Some(oid.clone()), None, *executable),
            Some(Kind::Media {
                pointer,
                executable,
            }) => (None, Some(pointer.clone()), *executable),
            Some(Kind::Dir { .. }) => return Err(libc::EISDIR),
            _ => return Err(libc::EINVAL),
        };
        let tmp = dest.with_extension("dits-copy-up");
        let out = File::create(&tmp).map_err(|e| errno(&e))?;
        match kind {
            (Some(oid), _, _) => {
                let bytes = self.blob(&oid).map_err(|_| libc::EIO)?;
                out.write_all_at(&bytes, 0).map_err(|e| errno(&e))?;
            }
            (_, Some(pointer), _) => {
                let mut at = 0u64;
                while at < pointer.size {
                    let bytes = self.media.read(&pointer, at, COPY_UP_STEP).map_err(|e| {
                        tracing::error!(path = rel, "copy-up failed: {e}");
                        libc::EIO
                    })?;
                    if bytes.is_empty() {
                        break;
                    }
                    out.write_all_at(&bytes, at).map_err(|e| errno(&e))?;
                    at += bytes.len() as u64;
                }
            }
            _ => {}
        }
        let mode = if kind.2 { 0o755 } else { 0o644 };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| errno(&e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| errno(&e))?;
        Ok(dest)
    }

    /// Makes `ino` an overlay file (copying it up if it is a base file).
    fn copy_up(&mut self, ino: u64) -> Result<std::path::PathBuf, i32> {
        if let Some(Kind::Upper { file }) = self.tree.get(ino).map(|n| &n.kind) {
            return Ok(file.clone());
        }
        let rel = self.tree.path_of(ino);
        let file = self.materialize(ino, &rel)?;
        self.tree.set_kind(ino, Kind::Upper { file: file.clone() });
        Ok(file)
    }

    fn new_handle(&mut self, file: File) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, file);
        fh
    }

    /// Removes `name` from `parent`: its overlay file if any, and a whiteout if the base
    /// had it.
    fn remove(&mut self, parent: u64, name: &OsStr) -> Result<(), i32> {
        let rel = self.child_path(parent, name);
        let ino = self.tree.lookup(parent, name).ok_or(libc::ENOENT)?;
        match self.tree.get(ino).map(|n| &n.kind) {
            Some(Kind::Upper { file }) => {
                let _ = std::fs::remove_file(file);
            }
            Some(Kind::Dir { .. }) => {
                let _ = std::fs::remove_dir(self.overlay.upper(&rel));
            }
            _ => {}
        }
        if self.base_paths.contains(&rel) {
            self.overlay.add_whiteout(&rel).map_err(|_| libc::EIO)?;
        }
        self.tree.remove_child(parent, name);
        Ok(())
    }
}

impl Filesystem for DitsFs {
    fn init(
        &mut self,
        _req: &Request<'_>,
        config: &mut fuser::KernelConfig,
    ) -> Result<(), libc::c_int> {
        // Bigger kernel read-ahead means fewer, larger reads for a streaming reader.
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self
            .tree
            .lookup(parent, name)
            .and_then(|ino| self.attr(ino))
        {
            Some(attr) => reply.entry(&TTL, &attr, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if size.is_some() && self.locked_out(ino) {
            return reply.error(libc::EACCES);
        }
        if size.is_some() || mode.is_some() {
            let file = match self.copy_up(ino) {
                Ok(f) => f,
                Err(e) => return reply.error(e),
            };
            if let Some(size) = size {
                let r = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .and_then(|f| f.set_len(size));
                if let Err(e) = r {
                    return reply.error(errno(&e));
                }
            }
            if let Some(mode) = mode {
                let perm = std::fs::Permissions::from_mode(mode & 0o7777);
                if let Err(e) = std::fs::set_permissions(&file, perm) {
                    return reply.error(errno(&e));
                }
            }
        }
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.tree.get(ino).map(|n| &n.kind) {
            Some(Kind::Symlink { oid, .. }) => match self.blob(&oid.clone()) {
                Ok(b) => reply.data(&b),
                Err(e) => {
                    tracing::error!(path = %self.tree.path_of(ino), "reading symlink: {e}");
                    reply.error(libc::EIO)
                }
            },
            _ => reply.error(libc::EINVAL),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writing && self.locked_out(ino) {
            tracing::warn!(path = %self.tree.path_of(ino), "lockable and not locked by you: `git dits lock` it first");
            return reply.error(libc::EACCES);
        }
        match self.tree.get(ino).map(|n| &n.kind) {
            Some(Kind::Dir { .. }) => return reply.error(libc::EISDIR),
            None => return reply.error(libc::ENOENT),
            _ => {}
        }
        if !writing
            && !matches!(
                self.tree.get(ino).map(|n| &n.kind),
                Some(Kind::Upper { .. })
            )
        {
            return reply.opened(0, fuser::consts::FOPEN_KEEP_CACHE);
        }
        let truncating = writing && flags & libc::O_TRUNC != 0;
        let is_base = !matches!(
            self.tree.get(ino).map(|n| &n.kind),
            Some(Kind::Upper { .. })
        );
        let file = if truncating && is_base {
            // Replaced whole: no point copying the old content up first.
            let rel = self.tree.path_of(ino);
            let file = self.overlay.upper(&rel);
            let made = file
                .parent()
                .map(std::fs::create_dir_all)
                .unwrap_or(Ok(()))
                .and_then(|_| File::create(&file));
            if let Err(e) = made {
                return reply.error(errno(&e));
            }
            self.tree.set_kind(ino, Kind::Upper { file: file.clone() });
            file
        } else {
            match self.copy_up(ino) {
                Ok(f) => f,
                Err(e) => return reply.error(e),
            }
        };
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(writing)
            .truncate(writing && flags & libc::O_TRUNC != 0)
            .open(&file);
        match opened {
            Ok(f) => {
                let fh = self.new_handle(f);
                reply.opened(fh, 0)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let rel = self.child_path(parent, name);
        let path = self.overlay.upper(&rel);
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return reply.error(errno(&e));
            }
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => return reply.error(errno(&e)),
        };
        let _ = file.set_permissions(std::fs::Permissions::from_mode(mode & !umask & 0o7777));
        let _ = self.overlay.remove_whiteout(&rel);
        let Some(ino) = self
            .tree
            .add_child(parent, name, Kind::Upper { file: path })
        else {
            return reply.error(libc::ENOTDIR);
        };
        let fh = self.new_handle(file);
        match self.attr(ino) {
            Some(attr) => reply.created(&TTL, &attr, 0, fh, 0),
            None => reply.error(libc::EIO),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        if self.tree.lookup(parent, name).is_some() {
            return reply.error(libc::EEXIST);
        }
        let rel = self.child_path(parent, name);
        if let Err(e) = std::fs::create_dir_all(self.overlay.upper(&rel)) {
            return reply.error(errno(&e));
        }
        let _ = self.overlay.remove_whiteout(&rel);
        let kind = Kind::Dir {
            children: Default::default(),
        };
        match self
            .tree
            .add_child(parent, name, kind)
            .and_then(|i| self.attr(i))
        {
            Some(attr) => reply.entry(&TTL, &attr, 0),
            None => reply.error(libc::ENOTDIR),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self
            .tree
            .lookup(parent, name)
            .and_then(|i| self.tree.get(i))
        {
            Some(n) if matches!(n.kind, Kind::Dir { .. }) => return reply.error(libc::EISDIR),
            None => return reply.error(libc::ENOENT),
            _ => {}
        }
        match self.remove(parent, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self
            .tree
            .lookup(parent, name)
            .and_then(|i| self.tree.get(i))
        {
            Some(Node {
                kind: Kind::Dir { children },
                ..
            }) if !children.is_empty() => return reply.error(libc::ENOTEMPTY),
            Some(Node {
                kind: Kind::Dir { .. },
                ..
            }) => {}
            Some(_) => return reply.error(libc::ENOTDIR),
            None => return reply.error(libc::ENOENT),
        }
        match self.remove(parent, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let Some(ino) = self.tree.lookup(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        if matches!(self.tree.get(ino).map(|n| &n.kind), Some(Kind::Dir { .. })) {
            // Tools fall back to copy + delete on EXDEV, which the overlay handles.
            return reply.error(libc::EXDEV);
        }
        if let Some(target) = self.tree.lookup(newparent, newname) {
            if matches!(
                self.tree.get(target).map(|n| &n.kind),
                Some(Kind::Dir { .. })
            ) {
                return reply.error(libc::EISDIR);
            }
            if let Err(e) = self.remove(newparent, newname) {
                return reply.error(e);
            }
        }
        let from = self.child_path(parent, name);
        let to = self.child_path(newparent, newname);
        let file = match self.materialize(ino, &to) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        if self.base_paths.contains(&from) {
            if let Err(_e) = self.overlay.add_whiteout(&from) {
                return reply.error(libc::EIO);
            }
        }
        let _ = self.overlay.remove_whiteout(&to);
        self.tree.remove_child(parent, name);
        self.tree.set_kind(ino, Kind::Upper { file });
        self.tree.attach(newparent, newname, ino);
        reply.ok()
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        if let Some(f) = self.handles.get(&fh) {
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                match f.read_at(&mut buf[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return reply.error(errno(&e)),
                }
            }
            return reply.data(&buf[..got]);
        }
        let kind = self.tree.get(ino).map(|n| &n.kind);
        match kind {
            Some(Kind::Media { pointer, .. }) => {
                let pointer = pointer.clone();
                match self.media.read(&pointer, offset, size) {
                    Ok(bytes) => reply.data(&bytes),
                    Err(e) => {
                        tracing::error!(path = %self.tree.path_of(ino), offset, "read failed: {e}");
                        reply.error(libc::EIO)
                    }
                }
            }
            Some(Kind::Blob { oid, .. }) => match self.blob(&oid.clone()) {
                Ok(b) => {
                    let start = (offset as usize).min(b.len());
                    let end = (start + size as usize).min(b.len());
                    reply.data(&b[start..end])
                }
                Err(e) => {
                    tracing::error!(path = %self.tree.path_of(ino), "reading blob: {e}");
                    reply.error(libc::EIO)
                }
            },
            Some(Kind::Upper { file }) => match std::fs::File::open(file) {
                Ok(f) => {
                    let mut buf = vec![0u8; size as usize];
                    match f.read_at(&mut buf, offset) {
                        Ok(n) => reply.data(&buf[..n]),
                        Err(e) => reply.error(errno(&e)),
                    }
                }
                Err(e) => reply.error(errno(&e)),
            },
            Some(_) => reply.error(libc::EISDIR),
            None => reply.error(libc::ENOENT),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Some(f) = self.handles.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        match f.write_all_at(data, offset.max(0) as u64) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.handles.get(&fh).map(|f| f.sync_all()) {
            Some(Err(e)) => reply.error(errno(&e)),
            _ => reply.ok(),
        }
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(&fh);
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(node) = self.tree.get(ino) else {
            return reply.error(libc::ENOENT);
        };
        let Kind::Dir { children } = &node.kind else {
            return reply.error(libc::ENOTDIR);
        };
        let mut entries: Vec<(u64, FileType, &OsStr)> = vec![
            (ino, FileType::Directory, OsStr::new(".")),
            (node.parent, FileType::Directory, OsStr::new("..")),
        ];
        for (name, child) in children {
            let kind = match self.tree.get(*child).map(|n| &n.kind) {
                Some(Kind::Dir { .. }) => FileType::Directory,
                Some(Kind::Symlink { .. }) => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            entries.push((*child, kind, name.as_os_str()));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset.max(0) as usize)
        {
            if reply.add(child, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
