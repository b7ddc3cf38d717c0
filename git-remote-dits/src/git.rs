//! Talking to the real `git`: locating the repository and its store, reading config,
//! and reading many blobs through one `git cat-file --batch` process.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs git and returns stdout; a failure carries git's own stderr.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`] but `None` when git exits non-zero (a missing object, an unset key).
pub fn try_run(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A boolean `git config` value (Git's own spellings: true/yes/on/1), `default` when unset.
pub fn config_bool(key: &str, default: bool) -> bool {
    match try_run(&["config", "--type=bool", "--get", key]) {
        Some(v) => v.trim() == "true",
        None => default,
    }
}

/// A positive integer `git config` value (Git's k/m/g suffixes work), `default` when unset
/// or not a positive integer.
pub fn config_usize(key: &str, default: usize) -> usize {
    try_run(&["config", "--type=int", "--get", key])
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// The value of attribute `attr` for each of `paths` (Git's words: "set", "unset",
/// "unspecified" or the value), from one `git check-attr --stdin` run.
pub fn check_attr(
    attr: &str,
    paths: &[String],
) -> Result<std::collections::HashMap<String, String>> {
    check_attr_in(None, attr, paths)
}

/// [`check_attr`] with the `.gitattributes` of commit `source` (else the working tree's).
pub fn check_attr_in(
    source: Option<&str>,
    attr: &str,
    paths: &[String],
) -> Result<std::collections::HashMap<String, String>> {
    use std::io::Write;
    let mut args = vec!["check-attr".to_string()];
    if let Some(s) = source {
        args.push(format!("--source={s}"));
    }
    args.extend(["--stdin", "-z", attr].map(str::to_string));
    let mut child = Command::new("git")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running git check-attr")?;
    let list: Vec<u8> = paths
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0)))
        .collect();
    let mut stdin = child.stdin.take().context("check-attr stdin")?;
    let feeder = std::thread::spawn(move || stdin.write_all(&list));
    let out = child.wait_with_output()?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("check-attr feeder panicked"))??;
    let fields: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    Ok(fields
        .chunks_exact(3)
        .map(|f| {
            (
                String::from_utf8_lossy(f[0]).into_owned(),
                String::from_utf8_lossy(f[2]).into_owned(),
            )
        })
        .collect())
}

/// The store directory shared by all worktrees: `<git-common-dir>/dits`.
pub fn store_dir() -> Result<PathBuf> {
    Ok(common_dir()?.join("dits"))
}

/// The Git directory every worktree of this repository shares (absolute).
pub fn common_dir() -> Result<PathBuf> {
    let common = run(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .context("not inside a Git repository (run this from a repository's working tree)")?;
    Ok(PathBuf::from(common.trim()))
}

pub fn top_level() -> Result<PathBuf> {
    let top = run(&["rev-parse", "--show-toplevel"]).context("not inside a Git working tree")?;
    Ok(PathBuf::from(top.trim()))
}

pub fn hooks_dir() -> Result<PathBuf> {
    let dir = run(&["rev-parse", "--path-format=absolute", "--git-path", "hooks"])?;
    Ok(PathBuf::from(dir.trim()))
}

pub fn inside_work_tree() -> bool {
    try_run(&["rev-parse", "--is-inside-work-tree"]).is_some_and(|s| s.trim() == "true")
}

/// `(blob id, path)` of every entry staged in the index.
pub fn staged_blobs() -> Result<Vec<(String, String)>> {
    let staged = run(&["ls-files", "-s"])?;
    Ok(staged
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            Some((
                meta.split_whitespace().nth(1)?.to_string(),
                path.to_string(),
            ))
        })
        .collect())
}

/// One object read through `cat-file --batch`.
pub struct Blob {
    pub kind: String,
    /// The object's size, whether or not its content was kept.
    pub size: u64,
    pub content: Vec<u8>,
}

/// Reads each of `specs` (object names like `HEAD:a.mp4` or ids) whose size is at most
/// `max_size`; larger or missing objects come back with empty content and their kind.
pub fn cat_file_small(specs: &[String], max_size: u64) -> Result<Vec<Option<Blob>>> {
    let mut child = Command::new("git")
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting git cat-file --batch")?;
    let mut stdin = child.stdin.take().context("cat-file stdin")?;
    let list: String = specs.iter().map(|s| format!("{s}\n")).collect();
    // Feed from a thread: git answers while we are still writing.
    let feeder = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
    let mut reader = BufReader::new(child.stdout.take().context("cat-file stdout")?);
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let fields: Vec<&str> = header.split_whitespace().collect();
        if fields.len() < 3 || fields.get(1) == Some(&"missing") {
            out.push(None);
            continue;
        }
        let size: u64 = fields[2]
            .parse()
            .with_context(|| format!("cat-file header for {spec}: {header}"))?;
        let mut content = Vec::new();
        if size <= max_size {
            (&mut reader).take(size).read_to_end(&mut content)?;
        } else {
            std::io::copy(&mut (&mut reader).take(size), &mut std::io::sink())?;
        }
        let mut lf = [0u8; 1];
        reader.read_exact(&mut lf)?;
        out.push(Some(Blob {
            kind: fields[1].to_string(),
            size,
            content,
        }));
    }
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("cat-file feeder panicked"))??;
    child.wait()?;
    Ok(out)
}
