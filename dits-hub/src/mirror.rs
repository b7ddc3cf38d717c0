//! A bare Git repository per hub repository, holding every pushed pack indexed, so the
//! hub can see which paths a ref update changes (lock enforcement) without trusting the
//! client's word. It is a cache: everything in it is rebuilt from the stored packs when
//! it lacks a commit. Uses the `git` binary, which the hub therefore needs on PATH.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct GitMirror {
    root: PathBuf,
}

impl GitMirror {
    pub fn new(root: PathBuf) -> GitMirror {
        GitMirror { root }
    }

    fn repo_dir(&self, repo: i64) -> Result<PathBuf> {
        let dir = self.root.join(format!("{repo}.git"));
        if !dir.join("objects").exists() {
            std::fs::create_dir_all(&self.root)?;
            let out = Command::new("git")
                .args(["init", "-q", "--bare"])
                .arg(&dir)
                .output()
                .context("running git init (the hub needs git on PATH to enforce locks)")?;
            if !out.status.success() {
                bail!(
                    "git init {}: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(dir)
    }

    fn git(&self, dir: &Path) -> Command {
        let mut c = Command::new("git");
        c.arg("--git-dir").arg(dir).env("GIT_CONFIG_NOSYSTEM", "1");
        c
    }

    fn indexed_list(&self, repo: i64) -> Result<PathBuf> {
        Ok(self.repo_dir(repo)?.join("dits-indexed-packs"))
    }

    /// The hub pack ids already indexed into the mirror.
    pub fn indexed_packs(&self, repo: i64) -> Result<std::collections::HashSet<String>> {
        match std::fs::read_to_string(self.indexed_list(repo)?) {
            Ok(t) => Ok(t.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Indexes one pack's bytes into the repository's mirror and records its hub id.
    pub fn add_pack(&self, repo: i64, id: &str, pack: &[u8]) -> Result<()> {
        let dir = self.repo_dir(repo)?;
        let mut child = self
            .git(&dir)
            .args(["index-pack", "--stdin", "--fix-thin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running git index-pack")?;
        let mut stdin = child.stdin.take().context("index-pack stdin")?;
        let write = stdin.write_all(pack);
        drop(stdin);
        let out = child.wait_with_output()?;
        write.context("feeding git index-pack")?;
        if !out.status.success() {
            bail!(
                "git index-pack: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // Recorded only after Git has the pack: a crash in between means indexing it again.
        let mut list = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.indexed_list(repo)?)?;
        writeln!(list, "{id}")?;
        Ok(())
    }

    pub fn has_commit(&self, repo: i64, oid: &str) -> Result<bool> {
        let dir = self.repo_dir(repo)?;
        Ok(self
            .git(&dir)
            .args(["cat-file", "-e", &format!("{oid}^{{commit}}")])
            .stderr(Stdio::null())
            .status()?
            .success())
    }

    /// The paths the commits from `exclude` to `new` change ([`dits_remote::changes`]).
    pub fn changed_paths(&self, repo: i64, new: &str, exclude: &[String]) -> Result<Vec<String>> {
        let dir = self.repo_dir(repo)?;
        let out = self
            .git(&dir)
            .args(dits_remote::changes::log_args(new, exclude))
            .output()
            .context("running git log")?;
        if !out.status.success() {
            bail!(
                "git log {new}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(dits_remote::changes::parse(&out.stdout))
    }
}
