//! `git dits migrate info|import|export`, after `git lfs migrate`: what history holds by
//! extension, and rewriting it so chosen paths become Dits pointers (from plain blobs or
//! Git LFS pointers) or go back to plain blobs or LFS pointers.
//!
//! The rewrite is `git fast-export` → [`rewrite::rewrite`] → `git fast-import`. Each blob
//! converted is recorded in `.git/dits/migrate/<direction>.map` as it is made, so a run
//! that stops (killed, an LFS object missing) and is started again converts only what it
//! had not, and writes the same commits. Before the first rewrite of a ref its old value
//! is kept as `refs/dits/migrate-backup/<ref>`.

pub mod rewrite;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dits_core::pointer::{AnyPointer, MAX_POINTER_LEN};
use dits_filter::Filter;
use git_remote_dits::git;
use sha2::{Digest, Sha256};

use rewrite::Converter;

/// `--include` patterns, as `.gitattributes` patterns: without a `/` a pattern matches a
/// file's name in any directory, with one the whole path.
pub struct Patterns(Vec<String>);

impl Patterns {
    pub fn parse(include: &str) -> Result<Patterns> {
        let list: Vec<String> = include
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if list.is_empty() {
            bail!("give the paths to migrate, e.g. --include='*.mp4,*.mov'");
        }
        Ok(Patterns(list))
    }

    pub fn matches(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.0.iter().any(|p| {
            if p.contains('/') {
                glob(p.trim_start_matches('/').as_bytes(), path.as_bytes())
            } else {
                glob(p.as_bytes(), name.as_bytes())
            }
        })
    }
}

/// Shell-style matching: `*` any run of characters other than `/`, `?` one character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text)
                || (!text.is_empty() && text[0] != b'/' && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(&c)) if c != b'/' => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// A Git LFS pointer's object id (SHA-256, hex) and size.
fn lfs_pointer(bytes: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.starts_with("version https://git-lfs.github.com/spec/") {
        return None;
    }
    let oid = text
        .lines()
        .find_map(|l| l.strip_prefix("oid sha256:"))?
        .trim();
    let size = text
        .lines()
        .find_map(|l| l.strip_prefix("size "))?
        .trim()
        .parse()
        .ok()?;
    (oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (oid.to_ascii_lowercase(), size))
}

fn lfs_object(common: &Path, oid: &str) -> PathBuf {
    common
        .join("lfs/objects")
        .join(&oid[..2])
        .join(&oid[2..4])
        .join(oid)
}

/// The refs a migration covers: every branch and tag with `--everything`, those named,
/// or the current branch.
fn refs_to_migrate(everything: bool, refs: &[String]) -> Result<Vec<String>> {
    if everything {
        let listed = git::run(&[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/tags",
        ])?;
        return Ok(listed.lines().map(str::to_string).collect());
    }
    let named: Vec<String> = if refs.is_empty() {
        vec!["HEAD".to_string()]
    } else {
        refs.to_vec()
    };
    named
        .iter()
        .map(|r| {
            let full = git::run(&["rev-parse", "--symbolic-full-name", r])?;
            let full = full.trim();
            if !full.starts_with("refs/") {
                bail!("{r} is not a branch or tag: name refs to migrate, or use --everything");
            }
            Ok(full.to_string())
        })
        .collect()
}

/// The blob's size, and its bytes when at most `max`.
fn small_blob(oid: &str, max: u64) -> Result<(u64, Option<Vec<u8>>)> {
    let blob = git::cat_file_small(&[oid.to_string()], max)?
        .pop()
        .flatten()
        .with_context(|| format!("git cat-file: no object {oid}"))?;
    let kept = (blob.kind == "blob" && blob.size <= max).then_some(blob.content);
    Ok((blob.size, kept))
}

/// Writes a blob into the repository, returning its id.
fn hash_object(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("git")
        .args(["hash-object", "-w", "--no-filters", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running git hash-object")?;
    child
        .stdin
        .take()
        .context("hash-object stdin")?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("git hash-object failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes the file at `path` into the repository as a blob, returning its id.
fn hash_file(path: &Path) -> Result<String> {
    let oid = git::run(&[
        "hash-object",
        "-w",
        "--no-filters",
        "--",
        &path.to_string_lossy(),
    ])?;
    Ok(oid.trim().to_string())
}

/// Blob conversions made so far in one direction: loaded at the start, appended to as
/// each is made.
struct ConversionMap {
    done: HashMap<String, String>,
    file: fs::File,
}

impl ConversionMap {
    fn open(path: &Path) -> Result<ConversionMap> {
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let done = fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (a, b) = l.split_once(' ')?;
                Some((a.to_string(), b.to_string()))
            })
            .collect();
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(ConversionMap { done, file })
    }

    fn record(&mut self, from: &str, to: &str) -> Result<()> {
        writeln!(self.file, "{from} {to}")?;
        self.file.flush()?;
        self.done.insert(from.to_string(), to.to_string());
        Ok(())
    }
}

/// What a rewrite converted, for the summary line.
#[derive(Default)]
struct Tally {
    blobs: u64,
    bytes: u64,
}

/// Blobs and LFS pointers to Dits pointers.
struct ToDits {
    patterns: Patterns,
    filter: dits_filter::DitsFilter,
    map: ConversionMap,
    common: PathBuf,
    lfs_fetched: bool,
    tally: Tally,
}

/// A reader that hashes what passes through it (an LFS object checked against its id).
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl ToDits {
    fn clean_lfs(&mut self, path: &str, oid: &str, size: u64) -> Result<Vec<u8>> {
        let mut object = lfs_object(&self.common, oid);
        if !object.exists() && !self.lfs_fetched {
            self.lfs_fetched = true;
            eprintln!("Fetching missing Git LFS objects (git lfs fetch --all)");
            let _ = Command::new("git")
                .args(["lfs", "fetch", "--all"])
                .stdin(Stdio::null())
                .status();
            object = lfs_object(&self.common, oid);
        }
        let file = fs::File::open(&object).with_context(|| {
            format!(
                "{path}: Git LFS object {oid} is not in .git/lfs/objects and could not be fetched; fetch it (git lfs fetch --all), then run the import again: it goes on where it stopped"
            )
        })?;
        let mut reader = Hashing {
            inner: BufReader::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            len: 0,
        };
        let pointer = self
            .filter
            .clean(path, &mut reader)
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        let got = format!("{:x}", reader.hash.finalize());
        if got != oid || reader.len != size {
            bail!("{path}: Git LFS object {oid} holds other bytes ({} bytes, sha256 {got}); refusing to migrate it", reader.len);
        }
        self.tally.bytes += size;
        Ok(pointer)
    }
}

impl Converter for ToDits {
    fn wants(&self, path: &str) -> bool {
        self.patterns.matches(path)
    }

    fn convert(&mut self, oid: &str, path: &str) -> Result<String> {
        if let Some(done) = self.map.done.get(oid) {
            return Ok(done.clone());
        }
        let (size, small) = small_blob(oid, 1024)?;
        if let Some(bytes) = &small {
            if AnyPointer::parse(bytes).is_ok() && bytes.len() <= MAX_POINTER_LEN {
                return Ok(oid.to_string());
            }
        }
        let pointer = match small.as_deref().and_then(lfs_pointer) {
            Some((lfs, lfs_size)) => self.clean_lfs(path, &lfs, lfs_size)?,
            None => {
                let mut child = Command::new("git")
                    .args(["cat-file", "blob", oid])
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("running git cat-file")?;
                let stdout = child.stdout.take().context("cat-file stdout")?;
                let mut reader = BufReader::with_capacity(1 << 20, stdout);
                let cleaned = self
                    .filter
                    .clean(path, &mut reader)
                    .map_err(|e| anyhow::anyhow!("{path}: {e}"));
                let status = child.wait()?;
                if !status.success() {
                    bail!("git cat-file blob {oid} ({path}) failed");
                }
                self.tally.bytes += size;
                cleaned?
            }
        };
        let new = hash_object(&pointer)?;
        self.map.record(oid, &new)?;
        self.tally.blobs += 1;
        Ok(new)
    }

    fn attributes(&mut self, before: &[u8]) -> Vec<u8> {
        attributes_with(before, &self.patterns, super::track::ATTRIBUTES)
    }
}

/// `.gitattributes` with each pattern's line replaced by `PATTERN ATTRS` (other lines
/// kept as they were), or, with `attrs` empty, removed.
fn attributes_with(before: &[u8], patterns: &Patterns, attrs: &str) -> Vec<u8> {
    let ours: Vec<String> = patterns.0.iter().map(|p| super::track::escape(p)).collect();
    let text = String::from_utf8_lossy(before);
    let mut out = String::new();
    for line in text.lines() {
        let pattern = line.split_whitespace().next().unwrap_or_default();
        if !ours.iter().any(|o| o == pattern) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !attrs.is_empty() {
        for p in &ours {
            out.push_str(&format!("{p} {attrs}\n"));
        }
    }
    out.into_bytes()
}

/// Where export takes Dits pointers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExportTo {
    Plain,
    Lfs,
}

/// Dits pointers back to plain blobs or LFS pointers.
struct FromDits {
    patterns: Patterns,
    filter: dits_filter::DitsFilter,
    map: ConversionMap,
    common: PathBuf,
    to: ExportTo,
    scratch: tempfile::TempDir,
    tally: Tally,
}

impl Converter for FromDits {
    fn wants(&self, path: &str) -> bool {
        self.patterns.matches(path)
    }

    fn convert(&mut self, oid: &str, path: &str) -> Result<String> {
        if let Some(done) = self.map.done.get(oid) {
            return Ok(done.clone());
        }
        let (_, small) = small_blob(oid, MAX_POINTER_LEN as u64)?;
        let Some(pointer) = small.filter(|b| AnyPointer::parse(b).is_ok()) else {
            return Ok(oid.to_string());
        };
        let file = self.scratch.path().join("content");
        let mut hash = Sha256::new();
        let mut len = 0u64;
        {
            struct Both<'a> {
                file: BufWriter<fs::File>,
                hash: &'a mut Sha256,
                len: &'a mut u64,
            }
            impl Write for Both<'_> {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    let n = self.file.write(buf)?;
                    self.hash.update(&buf[..n]);
                    *self.len += n as u64;
                    Ok(n)
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    self.file.flush()
                }
            }
            let mut out = Both {
                file: BufWriter::with_capacity(1 << 20, fs::File::create(&file)?),
                hash: &mut hash,
                len: &mut len,
            };
            self.filter
                .smudge(path, &mut pointer.as_slice(), &mut out)
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            out.flush()?;
        }
        let new = match self.to {
            ExportTo::Plain => hash_file(&file)?,
            ExportTo::Lfs => {
                let oid = format!("{:x}", hash.finalize());
                let object = lfs_object(&self.common, &oid);
                fs::create_dir_all(object.parent().unwrap_or(Path::new(".")))?;
                if !object.exists() {
                    fs::rename(&file, &object)
                        .with_context(|| format!("writing {}", object.display()))?;
                }
                hash_object(
                    format!(
                        "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len}\n"
                    )
                    .as_bytes(),
                )?
            }
        };
        self.map.record(oid, &new)?;
        self.tally.blobs += 1;
        self.tally.bytes += len;
        Ok(new)
    }

    fn attributes(&mut self, before: &[u8]) -> Vec<u8> {
        let attrs = match self.to {
            ExportTo::Plain => "",
            ExportTo::Lfs => "filter=lfs diff=lfs merge=lfs -text",
        };
        attributes_with(before, &self.patterns, attrs)
    }
}

/// Refuses to rewrite under uncommitted changes (they would be lost to the checkout that
/// follows), as `git lfs migrate` does.
fn require_clean_tree() -> Result<()> {
    let status = git::run(&["status", "--porcelain", "--untracked-files=no"])?;
    if !status.trim().is_empty() {
        bail!("the working tree has uncommitted changes: commit or stash them, then migrate");
    }
    Ok(())
}

/// Runs fast-export over `refs` through `conv` into fast-import, then checks the current
/// branch out again. Returns the seconds it took.
fn run_rewrite(refs: &[String], conv: &mut dyn Converter) -> Result<f64> {
    let started = Instant::now();
    for r in refs {
        let backup = format!("refs/dits/migrate-backup/{}", r.trim_start_matches("refs/"));
        if git::try_run(&["rev-parse", "--verify", "-q", &backup]).is_none() {
            git::run(&["update-ref", &backup, r])?;
        }
    }
    let mut export = Command::new("git")
        .args([
            "fast-export",
            "--no-data",
            "--signed-tags=strip",
            "--tag-of-filtered-object=rewrite",
            "--reencode=no",
        ])
        .args(refs)
        .stdout(Stdio::piped())
        .spawn()
        .context("running git fast-export")?;
    // `--done`: a stream that ends without `done` (this process stopped half way) is an
    // error to fast-import, which then moves no ref.
    let mut import = Command::new("git")
        .args(["fast-import", "--force", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running git fast-import")?;
    let mut input = BufReader::with_capacity(1 << 20, export.stdout.take().context("stdout")?);
    let mut output = BufWriter::with_capacity(1 << 20, import.stdin.take().context("stdin")?);
    let rewritten = rewrite::rewrite(&mut input, &mut output, conv)
        .and_then(|n| Ok(output.write_all(b"done\n").map(|()| n)?));
    if let Err(e) = rewritten {
        // What fast-import holds so far must not reach any ref.
        let _ = import.kill();
        let _ = import.wait();
        let _ = export.kill();
        let _ = export.wait();
        return Err(e.context("no ref was changed; run the same command again to go on"));
    }
    let flushed = output.flush();
    drop(output);
    let exported = export.wait()?;
    let imported = import.wait()?;
    flushed?;
    if !exported.success() || !imported.success() {
        bail!("git fast-export or fast-import failed; no ref was changed (run again to go on)");
    }
    // The checked-out branch was rewritten under the working tree: check it out again
    // (the content is the same; the index now holds the new blobs).
    if git::try_run(&["rev-parse", "--verify", "-q", "HEAD"]).is_some() {
        git::run(&["reset", "-q", "--hard", "HEAD"])?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn open_filter() -> Result<dits_filter::DitsFilter> {
    super::filter::open_filter(false)
}

pub fn import(include: &str, everything: bool, refs: &[String]) -> Result<i32> {
    let patterns = Patterns::parse(include)?;
    require_clean_tree()?;
    let refs = refs_to_migrate(everything, refs)?;
    let common = git::common_dir()?;
    let mut conv = ToDits {
        patterns,
        filter: open_filter()?,
        map: ConversionMap::open(&git::store_dir()?.join("migrate/import.map"))?,
        common,
        lfs_fetched: false,
        tally: Tally::default(),
    };
    let secs = run_rewrite(&refs, &mut conv)?;
    let mb = conv.tally.bytes as f64 / 1e6;
    eprintln!(
        "migrate import: {} ref(s) rewritten; {} file version(s), {mb:.1} MB, converted in {secs:.1} s ({:.1} MB/s)",
        refs.len(),
        conv.tally.blobs,
        mb / secs.max(1e-9)
    );
    Ok(0)
}

pub fn export(include: &str, to: ExportTo, everything: bool, refs: &[String]) -> Result<i32> {
    let patterns = Patterns::parse(include)?;
    require_clean_tree()?;
    let refs = refs_to_migrate(everything, refs)?;
    let direction = match to {
        ExportTo::Plain => "export-plain",
        ExportTo::Lfs => "export-lfs",
    };
    let mut conv = FromDits {
        patterns,
        filter: open_filter()?,
        map: ConversionMap::open(&git::store_dir()?.join(format!("migrate/{direction}.map")))?,
        common: git::common_dir()?,
        to,
        scratch: tempfile::tempdir()?,
        tally: Tally::default(),
    };
    let secs = run_rewrite(&refs, &mut conv)?;
    eprintln!(
        "migrate export: {} ref(s) rewritten; {} file version(s), {:.1} MB, in {secs:.1} s",
        refs.len(),
        conv.tally.blobs,
        conv.tally.bytes as f64 / 1e6
    );
    Ok(0)
}

/// One extension's line in `migrate info`.
#[derive(Default)]
struct Kind {
    files: usize,
    versions: u64,
    bytes: u64,
    lfs_versions: u64,
    lfs_local: u64,
    dits_versions: u64,
}

pub fn info(include: Option<&str>, everything: bool, refs: &[String], json: bool) -> Result<i32> {
    let patterns = include.map(Patterns::parse).transpose()?;
    let refs = refs_to_migrate(everything, refs)?;
    let mut args = vec!["rev-list", "--objects"];
    args.extend(refs.iter().map(String::as_str));
    let listed = git::run(&args)?;
    let common = git::common_dir()?;
    let listed: Vec<(&str, &str)> = listed
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, path)| patterns.as_ref().is_none_or(|p| p.matches(path)))
        .collect();
    let ids: Vec<String> = listed.iter().map(|(oid, _)| oid.to_string()).collect();
    let objects = git::cat_file_small(&ids, 1024)?;
    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let mut paths: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((_, path), object) in listed.iter().zip(objects) {
        // Trees are listed too: only blobs count.
        let Some(object) = object.filter(|o| o.kind == "blob") else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let ext = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("*.{}", ext.to_ascii_lowercase()),
            _ => "(no extension)".to_string(),
        };
        let k = kinds.entry(ext.clone()).or_default();
        k.versions += 1;
        paths.entry(ext).or_default().insert(path.to_string());
        let small = &object.content[..];
        if let Some((oid, lfs_size)) = lfs_pointer(small) {
            k.lfs_versions += 1;
            k.bytes += lfs_size;
            if lfs_object(&common, &oid).exists() {
                k.lfs_local += 1;
            }
        } else if !small.is_empty() && AnyPointer::parse(small).is_ok() {
            k.dits_versions += 1;
        } else {
            k.bytes += object.size;
        }
    }
    for (ext, set) in &paths {
        if let Some(k) = kinds.get_mut(ext) {
            k.files = set.len();
        }
    }
    let mut sorted: Vec<(String, Kind)> = kinds.into_iter().collect();
    sorted.sort_by_key(|(_, k)| std::cmp::Reverse(k.bytes));
    if json {
        let doc: Vec<_> = sorted
            .iter()
            .map(|(ext, k)| serde_json::json!({"pattern": ext, "files": k.files, "versions": k.versions, "bytes": k.bytes, "lfs_versions": k.lfs_versions, "lfs_local": k.lfs_local, "dits_versions": k.dits_versions}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    println!(
        "{:<20} {:>7} {:>9} {:>12}  Git LFS (local)",
        "pattern", "files", "versions", "MB"
    );
    for (ext, k) in &sorted {
        let lfs = if k.lfs_versions > 0 {
            format!("{} ({})", k.lfs_versions, k.lfs_local)
        } else {
            String::new()
        };
        println!(
            "{ext:<20} {:>7} {:>9} {:>12.1}  {lfs}",
            k.files,
            k.versions,
            k.bytes as f64 / 1e6
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_gitattributes_does() {
        let p = Patterns::parse("*.mp4, *.MOV,shots/*.wav").unwrap();
        assert!(p.matches("a/b/take 1.mp4"));
        assert!(p.matches("clip.MOV") && !p.matches("clip.mov"));
        assert!(p.matches("shots/x.wav") && !p.matches("other/shots/x.wav"));
        assert!(!p.matches("notes.mp4.txt"));
        assert!(Patterns::parse(" , ").is_err());
    }

    #[test]
    fn lfs_pointers_are_read_and_others_are_not() {
        let oid = "a".repeat(64);
        let text =
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12345\n");
        assert_eq!(lfs_pointer(text.as_bytes()), Some((oid, 12345)));
        assert_eq!(lfs_pointer(b"version 1\n"), None);
    }

    #[test]
    fn attributes_swap_only_the_migrated_patterns() {
        let p = Patterns::parse("*.mp4,*.mov").unwrap();
        let before = b"*.mp4 filter=lfs diff=lfs merge=lfs -text\n*.psd filter=lfs diff=lfs merge=lfs -text\n";
        let after = attributes_with(before, &p, "filter=dits");
        assert_eq!(
            String::from_utf8(after.clone()).unwrap(),
            "*.psd filter=lfs diff=lfs merge=lfs -text\n*.mp4 filter=dits\n*.mov filter=dits\n"
        );
        // Applying it again changes nothing: a re-run writes the same commits.
        assert_eq!(attributes_with(&after, &p, "filter=dits"), after);
        assert_eq!(
            String::from_utf8(attributes_with(&after, &p, "")).unwrap(),
            "*.psd filter=lfs diff=lfs merge=lfs -text\n"
        );
    }
}
