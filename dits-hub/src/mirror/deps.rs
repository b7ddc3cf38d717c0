//! A project's dependencies at a pushed commit, read from the hub's Git mirror: the same
//! resolution `git dits deps --rev` runs on a client (`dits_core::project::deps`), over the
//! commit's tree and its committed `.ditsrelink` (personal rules are a client's own).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use dits_core::project::deps::Snapshot;

/// One commit of one mirror.
pub struct MirrorSnapshot {
    pub mirror: super::GitMirror,
    pub dir: PathBuf,
    pub commit: String,
}

impl MirrorSnapshot {
    fn git(&self) -> Command {
        let mut c = Command::new("git");
        c.arg("--git-dir")
            .arg(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1");
        c
    }

    fn output(&self, args: &[&str]) -> Result<Option<Vec<u8>>, String> {
        let out = self
            .git()
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("running git: {e}"))?;
        Ok(out.status.success().then_some(out.stdout))
    }

    /// The blob named by `spec` if it is at most `max` bytes.
    fn blob(&self, spec: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(size) = self.output(&["cat-file", "-s", spec])? else {
            return Ok(None);
        };
        let size: u64 = String::from_utf8_lossy(&size)
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        if size > max {
            return Ok(None);
        }
        self.output(&["cat-file", "blob", spec])
    }
}

impl Snapshot for MirrorSnapshot {
    fn files(&mut self) -> Result<HashMap<String, String>, String> {
        let listing = self
            .output(&["ls-tree", "-r", "-z", "--full-tree", &self.commit])?
            .ok_or_else(|| format!("commit {} is not in the mirror", self.commit))?;
        let mut files = HashMap::new();
        for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let fields: Vec<&str> = meta.split_whitespace().collect();
            if fields.get(1) == Some(&"blob") {
                if let Some(id) = fields.get(2) {
                    files.insert(path.to_string(), id.to_string());
                }
            }
        }
        Ok(files)
    }

    fn read_path(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        self.blob(&format!("{}:{path}", self.commit), max)
    }

    fn read_blobs(&mut self, ids: &[String], max: u64) -> Result<Vec<Option<Vec<u8>>>, String> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let found = self
            .mirror
            .small_blobs_by_id(&self.dir, ids.iter().map(String::as_str), max)
            .map_err(|e| format!("{e:#}"))?;
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn on_disk(&self, _path: &str) -> bool {
        false
    }
}
