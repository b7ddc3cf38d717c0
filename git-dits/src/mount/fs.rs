//! The FUSE file system: a read-only view of one revision's tree. Media is read through
//! [`MediaReader`]; other blobs come from Git's objects (read whole on first open and kept
//! in a bounded cache). Writes are refused with EROFS.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen,
    Request,
};

use super::media::MediaReader;
use super::tree::{Kind, Tree};

/// The tree of a revision never changes while mounted.
const TTL: Duration = Duration::from_secs(3600);

pub struct DitsFs {
    tree: Tree,
    media: MediaReader,
    blobs: moka::sync::Cache<String, Arc<Vec<u8>>>,
    uid: u32,
    gid: u32,
}

impl DitsFs {
    pub fn new(tree: Tree, media: MediaReader) -> DitsFs {
        DitsFs {
            tree,
            media,
            blobs: moka::sync::Cache::builder()
                .weigher(|_: &String, v: &Arc<Vec<u8>>| v.len().try_into().unwrap_or(u32::MAX))
                .max_capacity(64 << 20)
                .build(),
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.tree.get(ino)?;
        let (kind, perm) = match &node.kind {
            Kind::Dir { .. } => (FileType::Directory, 0o555),
            Kind::Symlink { .. } => (FileType::Symlink, 0o777),
            Kind::Blob { executable, .. } | Kind::Media { executable, .. } => (
                FileType::RegularFile,
                if *executable { 0o555 } else { 0o444 },
            ),
        };
        let size = node.size();
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.tree.time,
            mtime: self.tree.time,
            ctime: self.tree.time,
            crtime: self.tree.time,
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

    fn blob(&self, oid: &str) -> Result<Arc<Vec<u8>>, String> {
        if let Some(b) = self.blobs.get(oid) {
            return Ok(b);
        }
        let out = std::process::Command::new("git")
            .args(["cat-file", "blob", oid])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let bytes = Arc::new(out.stdout);
        self.blobs.insert(oid.to_string(), bytes.clone());
        Ok(bytes)
    }

    fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != super::tree::ROOT {
            let Some(node) = self.tree.get(at) else { break };
            parts.push(node.name.to_string_lossy().into_owned());
            at = node.parent;
        }
        parts.reverse();
        parts.join("/")
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

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.tree.get(ino).map(|n| &n.kind) {
            Some(Kind::Symlink { oid, .. }) => match self.blob(&oid.clone()) {
                Ok(b) => reply.data(&b),
                Err(e) => {
                    tracing::error!(path = %self.path_of(ino), "reading symlink: {e}");
                    reply.error(libc::EIO)
                }
            },
            _ => reply.error(libc::EINVAL),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        match self.tree.get(ino).map(|n| &n.kind) {
            Some(Kind::Dir { .. }) => reply.error(libc::EISDIR),
            Some(_) => reply.opened(0, fuser::consts::FOPEN_KEEP_CACHE),
            None => reply.error(libc::ENOENT),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let kind = self.tree.get(ino).map(|n| &n.kind);
        match kind {
            Some(Kind::Media { pointer, .. }) => {
                let pointer = pointer.clone();
                match self.media.read(&pointer, offset, size) {
                    Ok(bytes) => reply.data(&bytes),
                    Err(e) => {
                        tracing::error!(path = %self.path_of(ino), offset, "read failed: {e}");
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
                    tracing::error!(path = %self.path_of(ino), "reading blob: {e}");
                    reply.error(libc::EIO)
                }
            },
            Some(_) => reply.error(libc::EISDIR),
            None => reply.error(libc::ENOENT),
        }
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _lock_owner: u64,
        reply: fuser::ReplyEmpty,
    ) {
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
