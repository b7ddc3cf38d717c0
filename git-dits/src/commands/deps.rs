//! `git dits deps PROJECT`: the media a project file references, each with its role, the
//! repository path it resolves to, its status (tracked, untracked, missing, outside,
//! external, ambiguous) and, when tracked, its asset id (the pointer's BLAKE3, or the
//! Git blob id of a file Git stores itself). `--rev R` reads the project and the tree of
//! a commit, so it works at any revision without the media present. `--check` exits 1
//! naming every reference a commit would leave dangling; the pre-commit hook runs it on
//! staged projects when `dits.checkDeps` is set. `pull-media --for PROJECT` uses the
//! same resolution to fetch exactly a project's media.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use dits_core::project::deps::{document_of, Snapshot};
pub use dits_core::project::deps::{Dependency, Status};
use dits_core::project::resolve::Rules;
use git_remote_dits::git;

use crate::output::print_json;

/// Where the project and the tree it is resolved against come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The working tree's project against the index (files on disk count as untracked).
    Worktree,
    /// The staged project against the index (the pre-commit check).
    Index,
    /// A commit's project against that commit's tree.
    Rev(String),
}

/// A snapshot read through `git`.
struct GitSnapshot {
    source: Source,
    top: PathBuf,
}

impl Snapshot for GitSnapshot {
    fn files(&mut self) -> Result<HashMap<String, String>, String> {
        let listing = match &self.source {
            Source::Rev(rev) => git::run(&["ls-tree", "-r", "-z", "--full-tree", rev]),
            _ => git::run(&["ls-files", "-s", "-z"]),
        }
        .map_err(|e| format!("{e:#}"))?;
        let mut ids = HashMap::new();
        for entry in listing.split('\0').filter(|e| !e.is_empty()) {
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let fields: Vec<&str> = meta.split_whitespace().collect();
            // ls-tree: mode type id; ls-files -s: mode id stage.
            let id = match self.source {
                Source::Rev(_) if fields.get(1) == Some(&"blob") => fields.get(2),
                Source::Rev(_) => None,
                _ => fields.get(1),
            };
            if let Some(id) = id {
                ids.insert(path.to_string(), id.to_string());
            }
        }
        Ok(ids)
    }

    fn read_path(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let spec = match &self.source {
            Source::Worktree => {
                let file = self.top.join(path);
                return match std::fs::metadata(&file) {
                    Ok(m) if m.len() > max => Err(format!("{path} is larger than {max} bytes")),
                    Ok(m) if m.is_file() => std::fs::read(&file)
                        .map(Some)
                        .map_err(|e| format!("reading {path}: {e}")),
                    _ => Ok(None),
                };
            }
            Source::Index => format!(":{path}"),
            Source::Rev(rev) => format!("{rev}:{path}"),
        };
        let blobs = git::cat_file_small(&[spec], max).map_err(|e| format!("{e:#}"))?;
        Ok(blobs
            .into_iter()
            .next()
            .flatten()
            .filter(|b| b.kind == "blob")
            .map(|b| b.content))
    }

    fn read_blobs(&mut self, ids: &[String], max: u64) -> Result<Vec<Option<Vec<u8>>>, String> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let blobs = git::cat_file_small(ids, max).map_err(|e| format!("{e:#}"))?;
        Ok(blobs
            .into_iter()
            .map(|b| b.filter(|b| !b.content.is_empty()).map(|b| b.content))
            .collect())
    }

    fn on_disk(&self, path: &str) -> bool {
        !matches!(self.source, Source::Rev(_)) && self.top.join(path).exists()
    }
}

/// The repository path of `path` as given on the command line (relative to the current
/// directory).
pub fn repo_path(path: &str) -> Result<String> {
    let prefix = git::run(&["rev-parse", "--show-prefix"])?;
    let joined = format!("{}{}", prefix.trim(), path.trim_end_matches('/'));
    dits_core::project::resolve::normalize(&joined)
        .with_context(|| format!("{path} is not inside this repository"))
}

/// Personal rules: `dits.relink.<name>.from` / `.to` pairs and `dits.deps.external`
/// prefixes (the committed `.ditsrelink` is read from the snapshot).
fn personal_rules() -> Rules {
    let mut rules = Rules::default();
    let config = git::try_run(&["config", "--get-regexp", r"^dits\.relink\..*\.(from|to)$"])
        .unwrap_or_default();
    let mut pairs: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    for line in config.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let Some((name, end)) = key
            .strip_prefix("dits.relink.")
            .and_then(|k| k.rsplit_once('.'))
        else {
            continue;
        };
        let pair = pairs.entry(name.to_string()).or_default();
        match end {
            "from" => pair.0 = Some(value.to_string()),
            _ => pair.1 = Some(value.to_string()),
        }
    }
    for (from, to) in pairs.into_values() {
        if let (Some(from), Some(to)) = (from, to) {
            rules.add(&from, &to);
        }
    }
    rules.external = git::try_run(&["config", "--get-all", "dits.deps.external"])
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().replace('\\', "/"))
        .collect();
    rules
}

/// Resolves every reference of the project at repository path `project`.
pub fn dependencies(project: &str, source: &Source) -> Result<Vec<Dependency>> {
    let top = git::top_level()?;
    let checkout = top.to_string_lossy().replace('\\', "/");
    let mut snap = GitSnapshot {
        source: source.clone(),
        top,
    };
    let deps =
        dits_core::project::deps::dependencies(&mut snap, project, &checkout, &personal_rules());
    match (deps, source) {
        (Err(dits_core::project::deps::DepsError::Absent(doc)), Source::Rev(rev)) => {
            bail!("{doc} is not in {rev}")
        }
        (deps, _) => Ok(deps?),
    }
}

fn to_json(project: &str, source: &Source, deps: &[Dependency]) -> serde_json::Value {
    let rev = match source {
        Source::Rev(r) => Some(r.as_str()),
        _ => None,
    };
    json!({
        "project": project,
        "rev": rev,
        "references": deps.iter().map(Dependency::to_json).collect::<Vec<_>>(),
    })
}

/// What to do about a problem reference, for `--check`.
fn advice(d: &Dependency) -> String {
    let target = d.resolved.as_deref().unwrap_or(&d.reference.path);
    match d.status {
        Status::Untracked => format!("untracked {target}: `git add` it"),
        Status::Missing => format!("missing {target}: add the file, or fix the path in the project"),
        Status::Outside => format!(
            "outside the repository {}: copy it in and relink, add a rule to .ditsrelink, or mark it deliberate (`external PREFIX` in .ditsrelink)",
            d.reference.path
        ),
        Status::Ambiguous => format!(
            "ambiguous {}: {} all match; add a rule to .ditsrelink",
            d.reference.path,
            d.candidates.join(", ")
        ),
        Status::Tracked | Status::External => String::new(),
    }
}

/// Prints the problems of `project`'s dependencies to stderr; true if there were any.
pub fn report_problems(project: &str, deps: &[Dependency]) -> bool {
    let problems: Vec<&Dependency> = deps.iter().filter(|d| d.status.is_problem()).collect();
    for d in &problems {
        eprintln!("{project}: {} ({})", advice(d), d.reference.role);
    }
    !problems.is_empty()
}

pub fn deps(path: &str, rev: Option<&str>, json_out: bool, check: bool) -> Result<i32> {
    let project = repo_path(path)?;
    let source = match rev {
        Some(r) => Source::Rev(r.to_string()),
        None => Source::Worktree,
    };
    let deps = dependencies(&project, &source)?;
    if json_out {
        print_json(&to_json(&project, &source, &deps));
    } else if !check {
        for d in &deps {
            println!(
                "{:<10} {:<11} {}{}{}",
                d.status.as_str(),
                d.reference.role.as_str(),
                d.resolved.as_deref().unwrap_or(&d.reference.path),
                if d.resolved.as_deref() == Some(d.reference.raw.as_str()) {
                    String::new()
                } else {
                    format!("  <- {}", d.reference.raw)
                },
                d.asset
                    .as_deref()
                    .map(|a| format!("  {a}"))
                    .unwrap_or_default(),
            );
        }
    }
    if check && report_problems(&project, &deps) {
        return Ok(1);
    }
    Ok(0)
}

/// The pre-commit check: every staged project file whose dependencies would dangle stops
/// the commit (exit 1). Only when `dits.checkDeps` is set; `git commit --no-verify` is the
/// escape hatch for one commit, `external` prefixes in `.ditsrelink` for good.
pub fn pre_commit_check() -> Result<i32> {
    if !git::config_bool("dits.checkDeps", false) {
        return Ok(0);
    }
    let staged = git::run(&[
        "diff",
        "--cached",
        "--name-only",
        "-z",
        "--diff-filter=ACMR",
    ])?;
    let mut failed = false;
    let mut seen = std::collections::HashSet::new();
    for path in staged.split('\0').filter(|p| !p.is_empty()) {
        // A bundle's document stands for the bundle.
        let project = match path.rsplit_once(".fcpxmld/") {
            Some((bundle, _)) => format!("{bundle}.fcpxmld"),
            None => path.to_string(),
        };
        if document_of(&project).is_err() || !seen.insert(project.clone()) {
            continue;
        }
        let deps = dependencies(&project, &Source::Index)?;
        failed |= report_problems(&project, &deps);
    }
    if failed {
        eprintln!("git-dits: commit stopped: the projects above reference media this commit does not hold (dits.checkDeps); `git commit --no-verify` commits anyway");
        return Ok(1);
    }
    Ok(0)
}

/// The repository paths of the tracked media `project` needs (sequence members
/// included), for `pull-media --for`.
pub fn media_of(path: &str) -> Result<Vec<String>> {
    let project = repo_path(path)?;
    let deps = dependencies(&project, &Source::Worktree)?;
    let mut files: Vec<String> = deps
        .into_iter()
        .filter(|d| d.status == Status::Tracked)
        .flat_map(|d| d.files)
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// The files a mount of `project` at `rev` shows: the project's document(s) and every
/// tracked file it references (`git dits mount --project`).
pub fn project_files(path: &str, rev: &str) -> Result<std::collections::BTreeSet<String>> {
    let project = repo_path(path)?;
    let deps = dependencies(&project, &Source::Rev(rev.to_string()))?;
    let (_, document) = document_of(&project)?;
    let mut files: std::collections::BTreeSet<String> = deps
        .into_iter()
        .filter(|d| d.status == Status::Tracked)
        .flat_map(|d| d.files)
        .collect();
    files.insert(document);
    // The rules that resolved it, where the repository has them.
    files.insert(".ditsrelink".to_string());
    Ok(files)
}
