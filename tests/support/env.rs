//! The hermetic test environment: a temporary HOME with a global `git dits install`, the
//! real `git` with the freshly built binaries first on PATH, repositories inside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::bins;

/// A temporary HOME with a global `git dits install`, and repositories inside it.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    // Not `Default`: making one runs `git dits install` in a fresh temporary HOME.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TestEnv {
        let env = TestEnv {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(env.home()).unwrap();
        env.git(env.dir.path(), &["dits", "install"]);
        env
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        cwd: &Path,
        args: &[&str],
    ) -> Command {
        let bin_dir = bins::dir();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Dits Test")
            .env("GIT_AUTHOR_EMAIL", "test@dits.invalid")
            .env("GIT_COMMITTER_NAME", "Dits Test")
            .env("GIT_COMMITTER_EMAIL", "test@dits.invalid")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
        c
    }

    /// Runs git and returns its output, whatever the exit code.
    pub fn git_output(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command("git", cwd, args)
            .output()
            .expect("running git")
    }

    /// Runs git and asserts success; returns stdout.
    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git_output(cwd, args);
        assert!(
            out.status.success(),
            "git {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new repository with `*.mp4 *.mov *.bin` tracked and committed.
    pub fn repo(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        self.git(self.dir.path(), &["init", "-q", "-b", "main", name]);
        self.git(&path, &["dits", "track", "*.mp4", "*.mov", "*.bin"]);
        self.git(&path, &["add", ".gitattributes"]);
        self.git(&path, &["commit", "-q", "-m", "track media"]);
        path
    }

    /// The recipe id the pointer at `rev_path` (`HEAD:clip.mp4`) names.
    pub fn recipe_of(&self, repo: &Path, rev_path: &str) -> dits_core::ChunkId {
        let pointer = self.git(repo, &["cat-file", "blob", rev_path]);
        pointer
            .lines()
            .find_map(|l| l.strip_prefix("recipe blake3:"))
            .expect("the pointer names its recipe")
            .parse()
            .unwrap()
    }

    /// Copies `src` into the repo as `name`, adds and commits it.
    pub fn commit_file(&self, repo: &Path, src: &Path, name: &str) {
        std::fs::copy(src, repo.join(name)).unwrap();
        self.git(repo, &["add", name]);
        self.git(repo, &["commit", "-q", "-m", &format!("add {name}")]);
    }
}

/// Bytes of all pack files: what the local store physically holds.
pub fn store_bytes(repo: &Path) -> u64 {
    let packs = repo.join(".git/dits/packs");
    std::fs::read_dir(packs)
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}
