//! Where a project's reference lands in a repository. Tried in order: the exact path
//! (an absolute path inside this checkout, or a relative one from the project's folder
//! or its MLT `root`), relink rules (a foreign prefix mapped to a repository folder), the
//! path relative to the project (Premiere's `RelativePath`, or an absolute path under the
//! project's recorded `root`, which on another machine is this project's folder), then
//! the file name, narrowed by the size the project recorded. Two candidates left is
//! ambiguity, refused rather than guessed.

use std::collections::{BTreeSet, HashMap};

use super::path::{file_name, is_absolute, is_sequence, printf_number, with_slashes};
use super::Reference;

/// The files of one revision (or of the index), by repository path (`/`-separated).
#[derive(Debug, Default)]
pub struct Tree {
    paths: BTreeSet<String>,
    by_name: HashMap<String, Vec<String>>,
}

impl Tree {
    pub fn new(paths: impl IntoIterator<Item = String>) -> Self {
        let mut t = Tree::default();
        for p in paths {
            t.by_name
                .entry(file_name(&p).to_string())
                .or_default()
                .push(p.clone());
            t.paths.insert(p);
        }
        t
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    /// The files a sequence pattern stands for (`%05d`, or MLT's `.all.EXT`).
    pub fn sequence_members(&self, pattern: &str) -> Vec<String> {
        let (dir, name) = match pattern.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), pattern),
        };
        let in_dir = self
            .paths
            .range(dir.clone()..)
            .take_while(|p| p.starts_with(&dir))
            .filter(|p| !p[dir.len()..].contains('/'));
        if let Some(ext) = name.strip_prefix(".all.") {
            let suffix = format!(".{ext}");
            return in_dir.filter(|p| p.ends_with(&suffix)).cloned().collect();
        }
        let Some((start, end, width)) = printf_number(name) else {
            return Vec::new();
        };
        let (prefix, suffix) = (&name[..start], &name[end..]);
        in_dir
            .filter(|p| {
                let n = &p[dir.len()..];
                n.len() >= prefix.len() + suffix.len()
                    && n.starts_with(prefix)
                    && n.ends_with(suffix)
                    && {
                        let digits = &n[prefix.len()..n.len() - suffix.len()];
                        !digits.is_empty()
                            && digits.len() >= width
                            && digits.bytes().all(|b| b.is_ascii_digit())
                    }
            })
            .cloned()
            .collect()
    }
}

/// Relink rules: foreign path prefixes and the repository folder each stands for, and
/// prefixes deliberately outside the repository (system lumas, shared LUT libraries).
#[derive(Debug, Default, Clone)]
pub struct Rules {
    pub prefixes: Vec<(String, String)>,
    pub external: Vec<String>,
}

impl Rules {
    /// Reads a `.ditsrelink` file: `FOREIGN PREFIX = repository/folder` per line, or
    /// `external PREFIX` for references that are meant to stay outside; `#` comments.
    pub fn parse(text: &str) -> Rules {
        let mut rules = Rules::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(prefix) = line.strip_prefix("external ") {
                rules.external.push(with_slashes(prefix.trim()));
            } else if let Some((from, to)) = line.split_once(" = ") {
                rules.add(from, to);
            }
        }
        rules
    }

    pub fn add(&mut self, from: &str, to: &str) {
        let from = with_slashes(from.trim()).trim_end_matches('/').to_string();
        let to = with_slashes(to.trim()).trim_matches('/').to_string();
        if !from.is_empty() {
            self.prefixes.push((from, to));
        }
    }

    pub fn extend(&mut self, other: Rules) {
        self.prefixes.extend(other.prefixes);
        self.external.extend(other.external);
    }

    /// Whether `path` is under a prefix declared external.
    pub fn is_external(&self, path: &str) -> bool {
        let p = with_slashes(path);
        self.external
            .iter()
            .any(|e| p == *e || p.starts_with(&format!("{}/", e.trim_end_matches('/'))))
    }

    /// The repository path a rule maps `path` to (the longest matching prefix wins).
    fn map(&self, path: &str) -> Option<String> {
        let p = with_slashes(path);
        self.prefixes
            .iter()
            .filter(|(from, _)| {
                // Windows paths compare without case, as Windows does.
                let under = format!("{from}/");
                if from.as_bytes().get(1) == Some(&b':') {
                    p.to_ascii_lowercase()
                        .starts_with(&under.to_ascii_lowercase())
                } else {
                    p.starts_with(&under)
                }
            })
            .max_by_key(|(from, _)| from.len())
            .and_then(|(from, to)| normalize(&join(to, &p[from.len() + 1..])))
    }
}

/// How a reference was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Exact,
    Rule,
    ProjectRelative,
    ByName,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Exact => "exact",
            How::Rule => "rule",
            How::ProjectRelative => "project-relative",
            How::ByName => "name",
        }
    }
}

/// Where a reference landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A repository path holding the file in the tree (`How` says which rule found it).
    Tracked(String, How),
    /// A repository path the reference names, not in the tree: the caller tells an
    /// untracked file on disk from a missing one.
    NotInTree(String),
    /// An absolute path outside this checkout that no rule maps.
    Outside(String),
    /// More than one file would do; the candidates.
    Ambiguous(Vec<String>),
    /// Nothing names it (a bare name no file has).
    Missing,
}

/// Where the project at repository path `project` finds `r`. `checkout` is this
/// checkout's absolute root (`/`-separated), `size_of` a tracked file's size when known.
pub fn resolve(
    r: &Reference,
    project: &str,
    checkout: &str,
    tree: &Tree,
    rules: &Rules,
    size_of: &dyn Fn(&str) -> Option<u64>,
) -> Resolution {
    let project_dir = project.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let raw_path = with_slashes(&r.path);
    let present = |p: &str| {
        if is_sequence(p) {
            !tree.sequence_members(p).is_empty()
        } else {
            tree.contains(p)
        }
    };
    // 1. The path as written.
    let exact = if r.by_name {
        None
    } else if is_absolute(&raw_path) {
        inside(&raw_path, checkout)
    } else {
        let base = match r.base.as_deref().map(with_slashes) {
            Some(b) if is_absolute(&b) => inside(&b, checkout),
            Some(b) => normalize(&join(project_dir, &b)),
            None => Some(project_dir.to_string()),
        };
        base.and_then(|b| normalize(&join(&b, &raw_path)))
    };
    if let Some(p) = exact.as_deref().filter(|p| present(p)) {
        return Resolution::Tracked(p.to_string(), How::Exact);
    }
    // 2. Relink rules.
    if let Some(p) = rules.map(&raw_path).filter(|p| present(p)) {
        return Resolution::Tracked(p, How::Rule);
    }
    // 3. Relative to the project: Premiere's RelativePath; an absolute path under the
    // project's recorded root (MLT), which is this project's folder on another machine.
    let mut relative = Vec::new();
    if let Some(rel) = r.relative.as_deref() {
        relative.push(join(project_dir, &with_slashes(rel)));
    }
    if let Some(root) = r
        .base
        .as_deref()
        .map(with_slashes)
        .filter(|b| is_absolute(b))
    {
        let root = root.trim_end_matches('/');
        if let Some(rest) = raw_path.strip_prefix(&format!("{root}/")) {
            relative.push(join(project_dir, rest));
        }
    }
    for candidate in relative.iter().filter_map(|c| normalize(c)) {
        if present(&candidate) {
            return Resolution::Tracked(candidate, How::ProjectRelative);
        }
    }
    // 4. The file name, and the recorded size where there is one.
    if !is_sequence(&raw_path) {
        let name = file_name(&raw_path);
        let mut candidates: Vec<String> = tree.by_name.get(name).cloned().unwrap_or_default();
        if candidates.len() > 1 {
            if let Some(size) = r.size {
                candidates.retain(|c| size_of(c) == Some(size));
            }
        }
        match candidates.len() {
            0 => {}
            1 => return Resolution::Tracked(candidates.remove(0), How::ByName),
            _ => return Resolution::Ambiguous(candidates),
        }
    }
    // Not found: where the path as written, or else a rule, puts it in the repository
    // (a rule that maps it says it belongs here, so it is missing, not outside).
    match exact.or_else(|| rules.map(&raw_path)) {
        Some(p) => Resolution::NotInTree(p),
        None if is_absolute(&raw_path) => Resolution::Outside(r.path.clone()),
        None => Resolution::Missing,
    }
}

/// The repository path of absolute `path` if it lies in `checkout` (`""` for the
/// checkout's root itself).
fn inside(path: &str, checkout: &str) -> Option<String> {
    let root = checkout.trim_end_matches('/');
    let path = path.trim_end_matches('/');
    if root.is_empty() {
        return None;
    }
    if path == root {
        return Some(String::new());
    }
    path.strip_prefix(&format!("{root}/")).and_then(normalize)
}

fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_string()
    } else {
        format!("{}/{rest}", dir.trim_end_matches('/'))
    }
}

/// `a/./b/../c` as `a/c`; `None` if it climbs out of the repository.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Role;

    fn tree() -> Tree {
        Tree::new(
            [
                "edit/film.kdenlive",
                "footage/A001.mov",
                "footage/day2/B002.mov",
                "proxy/A001.mkv",
                "frames/img_00001.png",
                "frames/img_00002.png",
                "x/dup.mov",
                "y/dup.mov",
            ]
            .map(String::from),
        )
    }

    fn at(raw: &str) -> Reference {
        Reference::new(raw, Role::Original)
    }

    #[test]
    fn each_rule_in_order() {
        let t = tree();
        let mut rules = Rules::parse("# ours\n/Volumes/SSD_A/Job42 = footage\nC:\\Footage = footage\nexternal /usr/share/kdenlive\n");
        rules.add("/mnt/proxies", "proxy");
        let sizes = |_: &str| None;
        let go =
            |r: &Reference| resolve(r, "edit/film.kdenlive", "/home/me/repo", &t, &rules, &sizes);
        assert_eq!(
            go(&at("../footage/A001.mov")),
            Resolution::Tracked("footage/A001.mov".into(), How::Exact)
        );
        assert_eq!(
            go(&at("/home/me/repo/footage/A001.mov")),
            Resolution::Tracked("footage/A001.mov".into(), How::Exact)
        );
        assert_eq!(
            go(&at("/Volumes/SSD_A/Job42/day2/B002.mov")),
            Resolution::Tracked("footage/day2/B002.mov".into(), How::Rule)
        );
        assert_eq!(
            go(&at("c:\\footage\\A001.mov")),
            Resolution::Tracked("footage/A001.mov".into(), How::Rule)
        );
        assert_eq!(
            go(&at("/mnt/proxies/A001.mkv")),
            Resolution::Tracked("proxy/A001.mkv".into(), How::Rule)
        );
        let mut rooted = at("/old/machine/Job42/footage/A001.mov");
        rooted.base = Some("/old/machine/Job42/edit".into());
        assert_eq!(
            go(&rooted).clone(),
            Resolution::Tracked("footage/A001.mov".into(), How::ByName)
        );
        let mut relative = at("D:\\Elsewhere\\A001.mov");
        relative.relative = Some("..\\footage\\A001.mov".into());
        assert_eq!(
            go(&relative),
            Resolution::Tracked("footage/A001.mov".into(), How::ProjectRelative)
        );
        assert_eq!(
            go(&at("/somewhere/else/B002.mov")),
            Resolution::Tracked("footage/day2/B002.mov".into(), How::ByName)
        );
        assert!(matches!(go(&at("/somewhere/dup.mov")), Resolution::Ambiguous(c) if c.len() == 2));
        assert_eq!(
            go(&at("/usr/share/kdenlive/lumas/a.pgm")),
            Resolution::Outside("/usr/share/kdenlive/lumas/a.pgm".into())
        );
        assert!(rules.is_external("/usr/share/kdenlive/lumas/a.pgm"));
        assert_eq!(
            go(&at("../footage/new.mov")),
            Resolution::NotInTree("footage/new.mov".into())
        );
        assert_eq!(
            go(&at("../frames/img_%05d.png")),
            Resolution::Tracked("frames/img_%05d.png".into(), How::Exact)
        );
        assert_eq!(t.sequence_members("frames/img_%05d.png").len(), 2);
        assert_eq!(t.sequence_members("frames/.all.png").len(), 2);
        assert_eq!(go(&at("../../../etc/passwd")), Resolution::Missing);
    }

    #[test]
    fn a_root_at_the_checkout_resolves_exactly() {
        let mut r = at("footage/A001.mov");
        r.base = Some("/home/me/repo/".into());
        let sizes = |_: &str| None;
        assert_eq!(
            resolve(
                &r,
                "edit/film.kdenlive",
                "/home/me/repo",
                &tree(),
                &Rules::default(),
                &sizes
            ),
            Resolution::Tracked("footage/A001.mov".into(), How::Exact)
        );
    }

    #[test]
    fn size_breaks_a_tie_by_name() {
        let t = tree();
        let sizes = |p: &str| Some(if p == "y/dup.mov" { 7 } else { 9 });
        let mut r = at("/far/dup.mov");
        r.size = Some(7);
        assert_eq!(
            resolve(
                &r,
                "edit/film.kdenlive",
                "/repo",
                &t,
                &Rules::default(),
                &sizes
            ),
            Resolution::Tracked("y/dup.mov".into(), How::ByName)
        );
    }
}
