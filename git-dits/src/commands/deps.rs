//! `git dits deps PROJECT`: the media a project file references, each with its role, the
//! repository path it resolves to, its status (tracked, untracked, missing, outside,
//! external, ambiguous) and, when tracked, its asset id (the pointer's BLAKE3, or the
//! Git blob id of a file Git stores itself). `--rev R` reads the project and the tree of
//! a commit, so it works at any revision without the media present. `--check` exits 1
//! naming every reference a commit would leave dangling; the pre-commit hook runs it on
//! staged projects when `dits.checkDeps` is set. `pull-media --for PROJECT` uses the
//! same resolution to fetch exactly a project's media.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde_json::json;

use dits_core::pointer::{AnyPointer, MAX_POINTER_LEN};
use dits_core::project::resolve::{resolve, How, Resolution, Rules, Tree};
use dits_core::project::{self, Format, Reference, MAX_PROJECT_BYTES};
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

/// One reference, resolved.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub reference: Reference,
    /// The repository path it resolves to (for sequences, the pattern), if any.
    pub resolved: Option<String>,
    pub how: Option<How>,
    pub status: Status,
    /// The tracked file's id, or the number of files a tracked sequence holds.
    pub asset: Option<String>,
    /// Repository paths of the files behind it (one, or a sequence's members).
    pub files: Vec<String>,
    pub candidates: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Tracked,
    Untracked,
    Missing,
    Outside,
    /// Outside, under a prefix declared deliberate (`external` in `.ditsrelink`,
    /// `dits.deps.external`).
    External,
    Ambiguous,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Tracked => "tracked",
            Status::Untracked => "untracked",
            Status::Missing => "missing",
            Status::Outside => "outside",
            Status::External => "external",
            Status::Ambiguous => "ambiguous",
        }
    }

    /// Whether a commit with this reference would break the project on another machine.
    pub fn is_problem(self) -> bool {
        !matches!(self, Status::Tracked | Status::External)
    }
}

/// A tree entry: blob id and path.
struct Entries {
    ids: HashMap<String, String>,
}

fn tree_entries(source: &Source) -> Result<Entries> {
    let listing = match source {
        Source::Rev(rev) => git::run(&["ls-tree", "-r", "-z", "--full-tree", rev])
            .with_context(|| format!("listing the tree of {rev}"))?,
        _ => git::run(&["ls-files", "-s", "-z"])?,
    };
    let mut ids = HashMap::new();
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let fields: Vec<&str> = meta.split_whitespace().collect();
        // ls-tree: mode type id; ls-files -s: mode id stage.
        let id = match source {
            Source::Rev(_) if fields.get(1) == Some(&"blob") => fields.get(2),
            Source::Rev(_) => None,
            _ => fields.get(1),
        };
        if let Some(id) = id {
            ids.insert(path.to_string(), id.to_string());
        }
    }
    Ok(Entries { ids })
}

/// The bytes of `path` (repository path) as `source` has it.
fn read(source: &Source, path: &str, top: &std::path::Path) -> Result<Option<Vec<u8>>> {
    let spec = match source {
        Source::Worktree => {
            return match std::fs::metadata(top.join(path)) {
                Ok(m) if m.len() > MAX_PROJECT_BYTES => {
                    bail!("{path} is larger than {MAX_PROJECT_BYTES} bytes")
                }
                Ok(_) => Ok(Some(
                    std::fs::read(top.join(path)).with_context(|| format!("reading {path}"))?,
                )),
                Err(_) => Ok(None),
            }
        }
        Source::Index => format!(":{path}"),
        Source::Rev(rev) => format!("{rev}:{path}"),
    };
    let blobs = git::cat_file_small(&[spec], MAX_PROJECT_BYTES)?;
    Ok(blobs
        .into_iter()
        .next()
        .flatten()
        .filter(|b| b.kind == "blob")
        .map(|b| b.content))
}

/// The repository path of `path` as given on the command line (relative to the current
/// directory).
pub fn repo_path(path: &str) -> Result<String> {
    let prefix = git::run(&["rev-parse", "--show-prefix"])?;
    let joined = format!("{}{}", prefix.trim(), path.trim_end_matches('/'));
    dits_core::project::resolve::normalize(&joined)
        .with_context(|| format!("{path} is not inside this repository"))
}

/// The relink rules in force: the committed `.ditsrelink` (as `source` has it) and the
/// personal `dits.relink.<name>.from` / `.to` pairs and `dits.deps.external` prefixes.
fn rules(source: &Source, top: &std::path::Path) -> Result<Rules> {
    let mut rules = match read(source, ".ditsrelink", top)? {
        Some(bytes) => Rules::parse(&String::from_utf8_lossy(&bytes)),
        None => Rules::default(),
    };
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
    let external = git::try_run(&["config", "--get-all", "dits.deps.external"]).unwrap_or_default();
    let extra = Rules {
        prefixes: Vec::new(),
        external: external
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().replace('\\', "/"))
            .collect(),
    };
    rules.extend(extra);
    Ok(rules)
}

/// The format of `path`, and the document inside a bundle (`.fcpxmld/Info.fcpxml`).
fn document_of(path: &str) -> Result<(Format, String)> {
    if path.to_ascii_lowercase().ends_with(".fcpxmld") {
        return Ok((Format::Fcpxml, format!("{path}/Info.fcpxml")));
    }
    let format = Format::of_path(path).with_context(|| {
        format!("{path}: not a project file Dits reads (.kdenlive, .mlt, .otio, .otioz, .fcpxml, .fcpxmld, .prproj, .edl)")
    })?;
    Ok((format, path.to_string()))
}

/// Resolves every reference of the project at repository path `project`.
pub fn dependencies(project: &str, source: &Source) -> Result<Vec<Dependency>> {
    let top = git::top_level()?;
    let (format, document) = document_of(project)?;
    let bytes = read(source, &document, &top)?.with_context(|| match source {
        Source::Rev(rev) => format!("{document} is not in {rev}"),
        _ => format!("{document} does not exist"),
    })?;
    if AnyPointer::parse(&bytes).is_ok() {
        bail!("{document} is stored by Dits and its content is not here: run `git dits pull-media {document}`, or read it with --rev from a checkout that has it");
    }
    let references = project::references(format, &bytes)
        .with_context(|| format!("reading {document} as {}", format.as_str()))?;
    let entries = tree_entries(source)?;
    let tree = Tree::new(entries.ids.keys().cloned());
    let rules = rules(source, &top)?;
    // Sizes of tracked files, for narrowing a match by name: the pointer's size.
    let size_of = |path: &str| -> Option<u64> {
        let id = entries.ids.get(path)?;
        let blob = git::cat_file_small(std::slice::from_ref(id), MAX_POINTER_LEN as u64)
            .ok()?
            .into_iter()
            .next()
            .flatten()?;
        AnyPointer::parse(&blob.content).ok().map(|p| match p {
            AnyPointer::Plain(p) => p.size,
            AnyPointer::Sealed(s) => s.size,
        })
    };
    let checkout = top.to_string_lossy().replace('\\', "/");
    let mut deps = Vec::with_capacity(references.len());
    for r in references {
        let resolution = resolve(&r, project, &checkout, &tree, &rules, &size_of);
        let mut d = Dependency {
            reference: r,
            resolved: None,
            how: None,
            status: Status::Missing,
            asset: None,
            files: Vec::new(),
            candidates: Vec::new(),
        };
        match resolution {
            Resolution::Tracked(path, how) => {
                d.status = Status::Tracked;
                d.how = Some(how);
                d.files = if dits_core::project::path::is_sequence(&path) {
                    tree.sequence_members(&path)
                } else {
                    vec![path.clone()]
                };
                d.resolved = Some(path);
            }
            Resolution::NotInTree(path) => {
                let on_disk = !matches!(source, Source::Rev(_)) && top.join(&path).exists();
                d.status = if on_disk {
                    Status::Untracked
                } else {
                    Status::Missing
                };
                d.resolved = Some(path);
            }
            Resolution::Outside(path) => {
                d.status = if rules.is_external(&path) {
                    Status::External
                } else {
                    Status::Outside
                };
            }
            Resolution::Ambiguous(candidates) => {
                d.status = Status::Ambiguous;
                d.candidates = candidates;
            }
            Resolution::Missing => {}
        }
        deps.push(d);
    }
    fill_assets(&mut deps, &entries)?;
    Ok(deps)
}

/// Asset ids of tracked dependencies: the pointer's BLAKE3 (`keyed:` for a sealed
/// pointer), else `git:` and the blob id.
fn fill_assets(deps: &mut [Dependency], entries: &Entries) -> Result<()> {
    let single: Vec<(usize, String)> = deps
        .iter()
        .enumerate()
        .filter(|(_, d)| d.status == Status::Tracked && d.files.len() == 1)
        .filter_map(|(i, d)| Some((i, entries.ids.get(&d.files[0])?.clone())))
        .collect();
    let ids: Vec<String> = single.iter().map(|(_, id)| id.clone()).collect();
    let blobs = git::cat_file_small(&ids, MAX_POINTER_LEN as u64)?;
    for ((i, id), blob) in single.into_iter().zip(blobs) {
        let pointer = blob.and_then(|b| AnyPointer::parse(&b.content).ok());
        deps[i].asset = Some(match pointer {
            Some(AnyPointer::Plain(p)) => format!("blake3:{}", p.oid.to_hex()),
            Some(AnyPointer::Sealed(s)) => format!("keyed:{}", s.tag),
            None => format!("git:{id}"),
        });
    }
    for d in deps
        .iter_mut()
        .filter(|d| d.status == Status::Tracked && d.files.len() != 1)
    {
        d.asset = Some(format!("{} files", d.files.len()));
    }
    Ok(())
}

fn to_json(project: &str, source: &Source, deps: &[Dependency]) -> serde_json::Value {
    let rev = match source {
        Source::Rev(r) => Some(r.as_str()),
        _ => None,
    };
    json!({
        "project": project,
        "rev": rev,
        "references": deps.iter().map(|d| json!({
            "raw": d.reference.raw,
            "path": d.reference.path,
            "role": d.reference.role.as_str(),
            "resolved": d.resolved,
            "how": d.how.map(How::as_str),
            "status": d.status.as_str(),
            "asset": d.asset,
            "files": d.files,
            "candidates": d.candidates,
        })).collect::<Vec<_>>(),
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
