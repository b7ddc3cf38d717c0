//! A project's dependencies at a pushed commit, read from the hub's Git mirror: the same
//! resolution `git dits deps --rev` runs on a client (`dits_core::project::deps`), over the
//! commit's tree and its committed `.ditsrelink` (personal rules are a client's own).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use dits_core::project::cut_chars;
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

/// At most this many project files changed by one indexed batch of commits get their
/// dependencies recorded: each costs a tree listing, and a push that rewrites thousands of
/// projects must not hold the indexer for minutes. The rest are answered live by the
/// deps API.
pub const MAX_RECORDED_PROJECTS: usize = 256;

/// A project's dependencies as the commit index records them: what `repo log` and the
/// history pages show without parsing the project again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedDeps {
    /// The project's repository path.
    pub project: String,
    /// Its resolved references, or why they could not be listed (the project as pushed
    /// does not parse, say).
    pub listed: Result<Vec<RecordedDep>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedDep {
    /// The reference as the project spells it (cut to 1,024 characters).
    pub raw: String,
    pub role: String,
    pub resolved: Option<String>,
    pub status: String,
    pub asset: Option<String>,
}

impl RecordedDeps {
    pub fn of(
        project: &str,
        deps: Result<
            Vec<dits_core::project::deps::Dependency>,
            dits_core::project::deps::DepsError,
        >,
    ) -> RecordedDeps {
        let listed = deps
            .map(|deps| {
                deps.into_iter()
                    .map(|d| RecordedDep {
                        raw: cut_chars(&d.reference.raw, 1024),
                        role: d.reference.role.as_str().to_string(),
                        resolved: d.resolved,
                        status: d.status.as_str().to_string(),
                        asset: d.asset,
                    })
                    .collect()
            })
            .map_err(|e| cut_chars(&e.to_string(), 1024));
        RecordedDeps {
            project: project.to_string(),
            listed,
        }
    }

    /// How many references would break the project elsewhere (untracked, missing,
    /// outside, ambiguous).
    pub fn problems(&self) -> usize {
        self.listed.as_ref().map_or(0, |deps| {
            deps.iter()
                .filter(|d| !matches!(d.status.as_str(), "tracked" | "external"))
                .count()
        })
    }
}

/// Records the dependencies of each project file among `changed` (commit, path, blob),
/// at the commit that changed it.
pub(crate) fn record_changed_projects(
    mirror: &super::GitMirror,
    dir: &std::path::Path,
    changed: &[(String, String, String)],
) -> Vec<(String, RecordedDeps)> {
    use dits_core::project::Format;
    changed
        .iter()
        .filter(|(_, path, _)| Format::of_path(path).is_some())
        .take(MAX_RECORDED_PROJECTS)
        .map(|(commit, path, _)| {
            let mut snap = MirrorSnapshot {
                mirror: mirror.clone(),
                dir: dir.to_path_buf(),
                commit: commit.clone(),
            };
            let deps =
                dits_core::project::deps::dependencies(&mut snap, path, "", &Default::default());
            (commit.clone(), RecordedDeps::of(path, deps))
        })
        .collect()
}
