//! A bare Git repository per hub repository, holding every pushed pack indexed, so the
//! hub can see which paths a ref update changes (lock enforcement) without trusting the
//! client's word. It is a cache: everything in it is rebuilt from the stored packs when
//! it lacks a commit. Uses the `git` binary, which the hub therefore needs on PATH.
//!
//! Running `git` means waiting on a child process: the public methods are async and run
//! that work on the blocking pool.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub mod deps;
pub mod tree;

/// The file in a mirror listing the hub pack ids indexed into it, one a line.
const INDEXED_LIST: &str = "dits-indexed-packs";

#[derive(Clone)]
pub struct GitMirror {
    root: PathBuf,
}

impl GitMirror {
    pub fn new(root: PathBuf) -> GitMirror {
        GitMirror { root }
    }

    /// Runs `f` (which spawns `git` and waits for it) on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GitMirror) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mirror = self.clone();
        tokio::task::spawn_blocking(move || f(&mirror)).await?
    }

    /// The hub pack ids already indexed into the mirror.
    pub async fn indexed_packs(&self, repo: i64) -> Result<std::collections::HashSet<String>> {
        self.blocking(move |m| m.indexed_packs_blocking(repo)).await
    }

    /// Starts `git index-pack --strict` on a pack to be streamed in ([`PackIndexer`]):
    /// into the repository's mirror, or, with `quarantine`, into a scratch object
    /// directory that is thrown away (to check an upload without the mirror taking
    /// objects no ref may ever name). Either way a thin pack's bases come from the mirror.
    pub async fn index_pack(&self, repo: i64, quarantine: bool) -> Result<PackIndexer> {
        let dir = self.blocking(move |m| m.repo_dir(repo)).await?;
        let mut command = tokio::process::Command::new("git");
        command
            .arg("--git-dir")
            .arg(&dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["index-pack", "--stdin", "--strict", "--fix-thin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let scratch = if quarantine {
            let scratch = tempfile::Builder::new()
                .prefix("quarantine-")
                .tempdir_in(&self.root)
                .context("making a quarantine directory")?;
            std::fs::create_dir_all(scratch.path().join("pack"))?;
            command
                .env("GIT_OBJECT_DIRECTORY", scratch.path())
                .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", dir.join("objects"));
            Some(scratch)
        } else {
            None
        };
        let mut child = command.spawn().context("running git index-pack")?;
        let stdin = child.stdin.take().context("index-pack stdin")?;
        Ok(PackIndexer {
            child,
            stdin: Some(stdin),
            list: (!quarantine).then(|| dir.join(INDEXED_LIST)),
            _scratch: scratch,
        })
    }

    /// The dependencies of the project at `path` in `commit` (see `mirror::deps`).
    pub async fn project_deps(
        &self,
        repo: i64,
        commit: &str,
        path: &str,
    ) -> Result<
        Result<Vec<dits_core::project::deps::Dependency>, dits_core::project::deps::DepsError>,
    > {
        let (commit, path) = (commit.to_string(), path.to_string());
        self.blocking(move |m| {
            let mut snap = deps::MirrorSnapshot {
                mirror: m.clone(),
                dir: m.repo_dir(repo)?,
                commit,
            };
            Ok(dits_core::project::deps::dependencies(
                &mut snap,
                &path,
                "",
                &Default::default(),
            ))
        })
        .await
    }

    /// Whether the mirror holds commit `oid`.
    pub async fn has_commit(&self, repo: i64, oid: &str) -> Result<bool> {
        let oid = oid.to_string();
        self.blocking(move |m| m.has_commit_blocking(repo, &oid))
            .await
    }

    /// The paths the commits from `exclude` to `new` change ([`dits_wire::changes`]).
    pub async fn changed_paths(
        &self,
        repo: i64,
        new: &str,
        exclude: &[String],
    ) -> Result<Vec<String>> {
        let (new, exclude) = (new.to_string(), exclude.to_vec());
        self.blocking(move |m| m.changed_paths_blocking(repo, &new, &exclude))
            .await
    }

    /// The commits reachable from `new` but not from `exclude`, newest first, with the
    /// pointers each introduces. The mirror must hold `new` ([`Self::has_commit`]).
    pub async fn commits(
        &self,
        repo: i64,
        new: &str,
        exclude: &[String],
    ) -> Result<Vec<IndexedCommit>> {
        let (new, exclude) = (new.to_string(), exclude.to_vec());
        self.blocking(move |m| m.commits_blocking(repo, &new, &exclude))
            .await
    }

    /// The contents of every blob of at most `max_len` bytes reachable from `tips`, each
    /// once (the Dits pointers are among them), sent as `git cat-file` reads them: memory
    /// holds a few at a time, however long the history.
    pub fn small_blobs(
        &self,
        repo: i64,
        tips: Vec<String>,
        max_len: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<u8>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mirror = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = mirror.small_blobs_blocking(repo, &tips, max_len, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    fn small_blobs_blocking(
        &self,
        repo: i64,
        tips: &[String],
        max_len: usize,
        tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>>>,
    ) -> Result<()> {
        use std::io::{BufRead, Read};
        if tips.is_empty() {
            return Ok(());
        }
        let dir = self.repo_dir(repo)?;
        // Commits are always listed; of the rest only small blobs.
        let mut list = self
            .git(&dir)
            .args(["rev-list", "--objects", "--no-object-names"])
            .arg("--filter=object:type=blob")
            .arg(format!("--filter=blob:limit={max_len}"))
            .args(tips)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running git rev-list")?;
        let listed = list.stdout.take().context("rev-list stdout")?;
        let mut cat = self
            .git(&dir)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::from(listed))
            .stdout(Stdio::piped())
            .spawn()
            .context("running git cat-file")?;
        let mut out = std::io::BufReader::new(cat.stdout.take().context("cat-file stdout")?);
        let mut header = String::new();
        loop {
            header.clear();
            if out.read_line(&mut header)? == 0 {
                break;
            }
            let mut parts = header.split_whitespace();
            let (Some(oid), Some(kind), Some(size)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("git cat-file: unexpected line {header:?}");
            };
            let size: usize = size
                .parse()
                .with_context(|| format!("git cat-file: object {oid} size {size:?}"))?;
            let mut body = vec![0u8; size + 1];
            out.read_exact(&mut body)?;
            body.pop();
            if kind == "blob" && tx.blocking_send(Ok(body)).is_err() {
                // The receiver stopped listening.
                break;
            }
        }
        // Closed first, so a cat-file cut short is not left writing to nobody.
        drop(out);
        let catted = cat.wait()?;
        let listed = list.wait_with_output()?;
        if !listed.status.success() {
            bail!(
                "git rev-list in mirror {repo}: {}",
                String::from_utf8_lossy(&listed.stderr).trim()
            );
        }
        if !catted.success() {
            bail!("git cat-file in mirror {repo} failed");
        }
        Ok(())
    }

    /// Writes to `writer` one whole (not thin) Git pack of everything reachable from
    /// `tips`, and records it as indexed (the mirror has its objects already). Returns
    /// the writer and the pack's id (BLAKE3 of its bytes, as uploads are named).
    pub async fn pack_reachable(
        &self,
        repo: i64,
        tips: Vec<String>,
        mut writer: crate::blobs::BlobWriter,
    ) -> Result<(crate::blobs::BlobWriter, String)> {
        self.blocking(move |m| {
            use std::io::Read;
            let dir = m.repo_dir(repo)?;
            let mut child = m
                .git(&dir)
                .args(["pack-objects", "--revs", "--stdout", "-q"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("running git pack-objects")?;
            let mut stdin = child.stdin.take().context("pack-objects stdin")?;
            let list: String = tips.iter().map(|t| format!("{t}\n")).collect();
            let feeder = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
            let mut out = child.stdout.take().context("pack-objects stdout")?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = out.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                writer.write(&buf[..n])?;
                hasher.update(&buf[..n]);
            }
            let _ = feeder.join();
            let done = child.wait_with_output()?;
            if !done.status.success() {
                bail!(
                    "git pack-objects in mirror {repo}: {}",
                    String::from_utf8_lossy(&done.stderr).trim()
                );
            }
            let id = hasher.finalize().to_hex().to_string();
            let mut list = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(INDEXED_LIST))?;
            writeln!(list, "{id}")?;
            Ok((writer, id))
        })
        .await
    }

    /// Removes the mirror of a deleted repository.
    pub async fn remove(&self, repo: i64) -> Result<()> {
        let dir = self.root.join(format!("{repo}.git"));
        self.blocking(move |_| match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        })
        .await
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
        Ok(self.repo_dir(repo)?.join(INDEXED_LIST))
    }

    fn indexed_packs_blocking(&self, repo: i64) -> Result<std::collections::HashSet<String>> {
        match std::fs::read_to_string(self.indexed_list(repo)?) {
            Ok(t) => Ok(t.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn has_commit_blocking(&self, repo: i64, oid: &str) -> Result<bool> {
        let dir = self.repo_dir(repo)?;
        Ok(self
            .git(&dir)
            .args(["cat-file", "-e", &format!("{oid}^{{commit}}")])
            .stderr(Stdio::null())
            .status()?
            .success())
    }

    fn changed_paths_blocking(
        &self,
        repo: i64,
        new: &str,
        exclude: &[String],
    ) -> Result<Vec<String>> {
        let dir = self.repo_dir(repo)?;
        let out = self
            .git(&dir)
            .args(dits_wire::changes::log_args(new, exclude))
            .output()
            .context("running git log")?;
        if !out.status.success() {
            bail!(
                "git log {new}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(dits_wire::changes::parse(&out.stdout))
    }
}

/// A running `git index-pack --strict`: feed it the pack with [`Self::write`], then
/// [`Self::finish`]. Dropped unfinished, the process is killed and nothing is recorded.
pub struct PackIndexer {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    /// The mirror's list of indexed packs; none in quarantine.
    list: Option<PathBuf>,
    _scratch: Option<tempfile::TempDir>,
}

impl PackIndexer {
    /// The next bytes of the pack. An error means Git stopped reading (the pack is bad):
    /// [`Self::finish`] then says why.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(bytes).await,
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Ends the pack and waits for Git's verdict: Ok once the pack is valid (and, outside
    /// quarantine, indexed and recorded as hub pack `id`); otherwise what Git objected to.
    pub async fn finish(self, id: &str) -> Result<()> {
        let PackIndexer {
            child,
            stdin,
            list,
            _scratch,
        } = self;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        if let Some(list) = list {
            // Recorded only after Git has the pack: a crash in between means indexing it
            // again.
            let mut list = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(list)?;
            writeln!(list, "{id}")?;
        }
        Ok(())
    }
}

/// A pushed commit as the hub indexes it, with the Dits pointers it adds or changes.
#[derive(Debug, Clone)]
pub struct IndexedCommit {
    pub oid: String,
    pub parents: Vec<String>,
    /// "Name <email>".
    pub author: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
    pub message: String,
    /// (path, pointer) for each Dits pointer this commit adds or modifies.
    pub pointers: Vec<(String, dits_core::pointer::Pointer)>,
    /// The dependencies of each project file this commit adds or modifies.
    pub projects: Vec<deps::RecordedDeps>,
    /// For a pointer that replaces one in the first parent: path → the recipe it replaces.
    pub previous: std::collections::HashMap<String, dits_core::ChunkId>,
    /// Path → bytes of this version its previous version already held (see
    /// `server::dedup`), once worked out.
    pub shared: std::collections::HashMap<String, u64>,
}

impl GitMirror {
    fn run(&self, dir: &Path, args: &[&str]) -> Result<Vec<u8>> {
        let out = self
            .git(dir)
            .args(args)
            .output()
            .with_context(|| format!("running git {}", args[0]))?;
        if !out.status.success() {
            bail!(
                "git {}: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }

    fn commits_blocking(
        &self,
        repo: i64,
        new: &str,
        exclude: &[String],
    ) -> Result<Vec<IndexedCommit>> {
        let dir = self.repo_dir(repo)?;
        let mut range: Vec<String> = vec![new.to_string(), "--not".to_string()];
        range.extend(exclude.iter().cloned());
        range.push("--".to_string());
        let with = |head: &[&str]| -> Vec<String> {
            head.iter()
                .map(|s| s.to_string())
                .chain(range.iter().cloned())
                .collect()
        };
        let args = with(&[
            "log",
            "-z",
            "--ignore-missing",
            "--format=%H%n%P%n%an <%ae>%n%at%n%B",
        ]);
        let log = self.run(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut commits = Vec::new();
        for record in log.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            let text = String::from_utf8_lossy(record);
            let mut lines = text.splitn(5, '\n');
            let mut next = || lines.next().unwrap_or_default().to_string();
            let (oid, parents, author, time, message) = (next(), next(), next(), next(), next());
            commits.push(IndexedCommit {
                oid: oid.trim().to_string(),
                parents: parents.split_whitespace().map(str::to_string).collect(),
                author,
                time: time.trim().parse().unwrap_or(0),
                message: message.trim_end().to_string(),
                pointers: Vec::new(),
                projects: Vec::new(),
                previous: Default::default(),
                shared: Default::default(),
            });
        }
        // Blobs each commit adds or modifies ("\x1eHASH\0\n:modes shas status\0path\0…").
        let args = with(&[
            "log",
            "-z",
            "--ignore-missing",
            "--no-renames",
            "--raw",
            "--no-abbrev",
            "--diff-filter=AM",
            "--format=%x1e%H",
        ]);
        let raw = self.run(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        // (commit, path, blob) for each path added or modified, and (commit, path, blob
        // it replaces in the first parent) for each modified one.
        let mut changed: Vec<(String, String, String)> = Vec::new();
        let mut replaced: Vec<(String, String, String)> = Vec::new();
        for record in raw.split(|&b| b == 0x1e).filter(|r| !r.is_empty()) {
            let mut fields = record.split(|&b| b == 0);
            let commit = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
            let mut blobs = None;
            for field in fields {
                let field = String::from_utf8_lossy(field);
                let field = field.trim_start_matches('\n');
                if let Some(meta) = field.strip_prefix(':') {
                    let mut parts = meta.split(' ');
                    let old = parts.nth(2).map(str::to_string);
                    blobs = parts.next().map(|new| (old, new.to_string()));
                } else if let Some((old, new)) = blobs.take() {
                    if let Some(old) = old.filter(|o| o.bytes().any(|b| b != b'0')) {
                        replaced.push((commit.clone(), field.to_string(), old));
                    }
                    changed.push((commit.clone(), field.to_string(), new));
                }
            }
        }
        let pointers =
            self.pointers_in(&dir, changed.iter().chain(&replaced).map(|c| c.2.as_str()))?;
        for (commit, recorded) in deps::record_changed_projects(self, &dir, &changed) {
            if let Some(c) = commits.iter_mut().find(|c| c.oid == commit) {
                c.projects.push(recorded);
            }
        }
        for (commit, path, blob) in changed {
            if let Some(p) = pointers.get(&blob) {
                if let Some(c) = commits.iter_mut().find(|c| c.oid == commit) {
                    c.pointers.push((path, p.clone()));
                }
            }
        }
        for (commit, path, blob) in replaced {
            if let Some(p) = pointers.get(&blob) {
                if let Some(c) = commits.iter_mut().find(|c| c.oid == commit) {
                    if c.pointers.iter().any(|(at, _)| *at == path) {
                        c.previous.insert(path, p.recipe);
                    }
                }
            }
        }
        Ok(commits)
    }

    /// Which of `blobs` are Dits pointers, parsed (two `cat-file` batches: sizes, then the
    /// small ones' bytes).
    fn pointers_in<'a>(
        &self,
        dir: &Path,
        blobs: impl Iterator<Item = &'a str>,
    ) -> Result<std::collections::HashMap<String, dits_core::pointer::Pointer>> {
        use dits_core::pointer::{Pointer, MAX_POINTER_LEN};
        let mut found = std::collections::HashMap::new();
        for (oid, body) in self.small_blobs_by_id(dir, blobs, MAX_POINTER_LEN)? {
            let body = &body[..];
            match dits_core::pointer::AnyPointer::parse(body) {
                Ok(dits_core::pointer::AnyPointer::Plain(p)) => {
                    found.insert(oid, p);
                }
                // An encrypted repository's pointer: the hub cannot read its recipe, so
                // the index keeps what it shows (size, media summary) under its keyed
                // file hash.
                Ok(dits_core::pointer::AnyPointer::Sealed(s)) => {
                    found.insert(
                        oid,
                        Pointer {
                            media: s.media,
                            oid: s.tag,
                            recipe: s.tag,
                            size: s.size,
                        },
                    );
                }
                Err(_) => {}
            }
        }
        Ok(found)
    }

    /// The bytes of each of the objects `ids` of at most `max` bytes, by id (two
    /// `cat-file` batches: sizes, then the small ones' bytes).
    /// What `git cat-file FORMAT` (`--batch`, `--batch-check…`) answers to `input`, one
    /// object name a line. Names come on stdin, so none can be taken for an option.
    pub(crate) fn cat_file(&self, dir: &Path, format: &str, input: String) -> Result<Vec<u8>> {
        let mut child = self
            .git(dir)
            .args(["cat-file", format])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("running git cat-file")?;
        let mut stdin = child.stdin.take().context("cat-file stdin")?;
        // Written from a thread: cat-file answers while it reads.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output()?;
        let _ = writer.join();
        Ok(out.stdout)
    }

    pub(crate) fn small_blobs_by_id<'a>(
        &self,
        dir: &Path,
        ids: impl Iterator<Item = &'a str>,
        max: usize,
    ) -> Result<std::collections::HashMap<String, Vec<u8>>> {
        let ids: std::collections::BTreeSet<&str> = ids.collect();
        let batch = |format: &str, input: String| self.cat_file(dir, format, input);
        let mut found = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(found);
        }
        let input: String = ids.iter().map(|b| format!("{b}\n")).collect();
        let sizes = batch("--batch-check=%(objectname) %(objectsize)", input)?;
        let small: String = String::from_utf8_lossy(&sizes)
            .lines()
            .filter_map(|l| {
                let (oid, size) = l.split_once(' ')?;
                (size.parse::<usize>().ok()? <= max).then(|| format!("{oid}\n"))
            })
            .collect();
        if small.is_empty() {
            return Ok(found);
        }
        let bytes = batch("--batch", small)?;
        let mut rest = &bytes[..];
        // Each answer: "OID TYPE SIZE\n" then SIZE bytes and "\n".
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let mut parts = header.split(' ');
            let (oid, size) = (
                parts.next().unwrap_or_default().to_string(),
                parts.nth(1).and_then(|s| s.parse::<usize>().ok()),
            );
            let Some(size) = size else { break };
            let body = rest.get(nl + 1..nl + 1 + size).unwrap_or_default();
            found.insert(oid, body.to_vec());
            rest = rest.get(nl + 2 + size..).unwrap_or_default();
        }
        Ok(found)
    }
}
