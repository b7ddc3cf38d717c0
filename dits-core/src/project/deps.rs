//! A project's dependencies in one snapshot of a repository (a commit, the index, a
//! working tree): each reference resolved, with its status and the asset id of the file
//! it lands on. The snapshot is reached through [`Snapshot`], so the client (`git dits
//! deps`, through `git`) and the hub (through its mirror) answer the same way.

use std::collections::HashMap;

use super::path::is_sequence;
use super::resolve::{resolve, How, Resolution, Rules, Tree};
use super::{references, Format, ProjectError, Reference, MAX_PROJECT_BYTES};
use crate::pointer::{AnyPointer, MAX_POINTER_LEN};

/// The files of one snapshot and their bytes.
pub trait Snapshot {
    /// Every file: repository path → blob id.
    fn files(&mut self) -> Result<HashMap<String, String>, String>;
    /// The bytes of the file at a repository path, if it is there and at most `max` long.
    fn read_path(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String>;
    /// The bytes of each blob of at most `max` bytes (`None` for bigger or missing ones).
    fn read_blobs(&mut self, ids: &[String], max: u64) -> Result<Vec<Option<Vec<u8>>>, String>;
    /// Whether a repository path the snapshot lacks is a file on disk (a working tree's
    /// untracked file); always false for a commit.
    fn on_disk(&self, path: &str) -> bool;
}

/// Why a project's dependencies could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("{0}: not a project file Dits reads (.kdenlive, .mlt, .otio, .otioz, .fcpxml, .fcpxmld, .prproj, .edl)")]
    NotAProject(String),
    #[error("{0} is not there")]
    Absent(String),
    #[error("{0} is stored by Dits and its content is not here: run `git dits pull-media {0}`")]
    StoredByDits(String),
    #[error("reading {document} as {format}: {error}")]
    Project {
        document: String,
        format: &'static str,
        error: ProjectError,
    },
    #[error("{0}")]
    Source(String),
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

    /// Whether a commit with this reference breaks the project on another machine.
    pub fn is_problem(self) -> bool {
        !matches!(self, Status::Tracked | Status::External)
    }
}

/// One reference, resolved.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub reference: Reference,
    /// The repository path it resolves to (for sequences, the pattern), if any.
    pub resolved: Option<String>,
    pub how: Option<How>,
    pub status: Status,
    /// The tracked file's id (`blake3:` of a Dits file, `keyed:` of a sealed one, `git:`
    /// blob id of a file Git stores itself), or the count of a sequence's files.
    pub asset: Option<String>,
    /// Repository paths of the files behind it (one, or a sequence's members).
    pub files: Vec<String>,
    pub candidates: Vec<String>,
}

impl Dependency {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "raw": self.reference.raw,
            "path": self.reference.path,
            "role": self.reference.role.as_str(),
            "resolved": self.resolved,
            "how": self.how.map(How::as_str),
            "status": self.status.as_str(),
            "asset": self.asset,
            "files": self.files,
            "candidates": self.candidates,
        })
    }
}

/// The format of `project` and the document holding its references (an `.fcpxmld`
/// bundle's `Info.fcpxml`).
pub fn document_of(project: &str) -> Result<(Format, String), DepsError> {
    if project.to_ascii_lowercase().ends_with(".fcpxmld") {
        return Ok((Format::Fcpxml, format!("{project}/Info.fcpxml")));
    }
    let format = Format::of_path(project).ok_or_else(|| DepsError::NotAProject(project.into()))?;
    Ok((format, project.to_string()))
}

/// Resolves every reference of the project at repository path `project` in `snap`.
/// `checkout` is the working tree's absolute root (`""` on the hub); `extra` adds
/// personal rules to the snapshot's `.ditsrelink`.
pub fn dependencies(
    snap: &mut dyn Snapshot,
    project: &str,
    checkout: &str,
    extra: &Rules,
) -> Result<Vec<Dependency>, DepsError> {
    let (format, document) = document_of(project)?;
    let bytes = snap
        .read_path(&document, MAX_PROJECT_BYTES)
        .map_err(DepsError::Source)?
        .ok_or_else(|| DepsError::Absent(document.clone()))?;
    if AnyPointer::parse(&bytes).is_ok() {
        return Err(DepsError::StoredByDits(document));
    }
    let refs = references(format, &bytes).map_err(|error| DepsError::Project {
        document: document.clone(),
        format: format.as_str(),
        error,
    })?;
    let files = snap.files().map_err(DepsError::Source)?;
    let tree = Tree::new(files.keys().cloned());
    let mut rules = match snap
        .read_path(".ditsrelink", 1 << 20)
        .map_err(DepsError::Source)?
    {
        Some(bytes) => Rules::parse(&String::from_utf8_lossy(&bytes)),
        None => Rules::default(),
    };
    rules.extend(extra.clone());
    // A tracked file's size, for narrowing a match by name: its pointer's size.
    let sizes: HashMap<String, u64> = {
        let wanted: Vec<(&String, &String)> = refs
            .iter()
            .filter(|r| r.size.is_some())
            .flat_map(|r| {
                let name = super::path::file_name(&r.path).to_string();
                files
                    .iter()
                    .filter(move |(p, _)| super::path::file_name(p) == name)
            })
            .collect();
        let ids: Vec<String> = wanted.iter().map(|(_, id)| (*id).clone()).collect();
        let blobs = snap
            .read_blobs(&ids, MAX_POINTER_LEN as u64)
            .map_err(DepsError::Source)?;
        wanted
            .into_iter()
            .zip(blobs)
            .filter_map(|((path, _), blob)| Some((path.clone(), pointer_size(&blob?)?)))
            .collect()
    };
    let size_of = |p: &str| sizes.get(p).copied();
    let mut deps = Vec::with_capacity(refs.len());
    for r in refs {
        let resolution = resolve(&r, project, checkout, &tree, &rules, &size_of);
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
                d.files = if is_sequence(&path) {
                    tree.sequence_members(&path)
                } else {
                    vec![path.clone()]
                };
                d.resolved = Some(path);
            }
            Resolution::NotInTree(path) => {
                d.status = if snap.on_disk(&path) {
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
    fill_assets(snap, &mut deps, &files)?;
    Ok(deps)
}

fn pointer_size(bytes: &[u8]) -> Option<u64> {
    match AnyPointer::parse(bytes).ok()? {
        AnyPointer::Plain(p) => Some(p.size),
        AnyPointer::Sealed(s) => Some(s.size),
    }
}

fn fill_assets(
    snap: &mut dyn Snapshot,
    deps: &mut [Dependency],
    files: &HashMap<String, String>,
) -> Result<(), DepsError> {
    let single: Vec<(usize, String)> = deps
        .iter()
        .enumerate()
        .filter(|(_, d)| d.status == Status::Tracked && d.files.len() == 1)
        .filter_map(|(i, d)| Some((i, files.get(&d.files[0])?.clone())))
        .collect();
    let ids: Vec<String> = single.iter().map(|(_, id)| id.clone()).collect();
    let blobs = snap
        .read_blobs(&ids, MAX_POINTER_LEN as u64)
        .map_err(DepsError::Source)?;
    for ((i, id), blob) in single.into_iter().zip(blobs) {
        let pointer = blob.and_then(|b| AnyPointer::parse(&b).ok());
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
