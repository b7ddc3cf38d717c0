//! Issue 21, migration: history built with the real `git-lfs` (branches, a merge,
//! several versions of clips, and a clip Git stored as a plain blob) is imported into
//! Dits; every revision checks out byte-identical, `git dits fsck` is clean, the Dits
//! store is smaller than `.git/lfs/objects`, two people importing the same history get
//! the same commits, an interrupted import goes on where it stopped, and exporting back
//! to Git LFS gives the original commits exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dits_tests::{media, TestEnv};

/// Every file of the working tree but `.git` and `.gitattributes` (which the migration
/// rewrites), by path, as its BLAKE3.
fn tree_hashes(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".git" || rel == ".gitattributes" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_size(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A repository whose history Git LFS wrote: `*.mp4` in LFS, one `.mov` as a plain blob.
fn lfs_history(env: &TestEnv) -> PathBuf {
    env.git(env.dir.path(), &["init", "-q", "-b", "main", "lfs"]);
    let repo = env.dir.path().join("lfs");
    env.git(&repo, &["lfs", "install", "--local"]);
    env.git(&repo, &["lfs", "track", "*.mp4"]);
    let put = |src: &str, to: &str| {
        let at = repo.join(to);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::copy(media().path(src), at).unwrap();
    };
    put("base.mp4", "shots/take 1.mp4");
    put("rewrap.mov", "shots/wrap.mov");
    std::fs::write(repo.join("notes.txt"), "first\n").unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "c1 first takes"]);
    env.git(&repo, &["checkout", "-q", "-b", "grade"]);
    put("metadata.mp4", "shots/take 1.mp4");
    env.git(&repo, &["commit", "-qam", "c2 retitled"]);
    put("audio-swap.mp4", "shots/take 1.mp4");
    env.git(&repo, &["commit", "-qam", "c3 new sound"]);
    env.git(&repo, &["checkout", "-q", "main"]);
    put("trim.mp4", "shots/take 2.mp4");
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "c4 second take"]);
    env.git(
        &repo,
        &["merge", "-q", "--no-edit", "-m", "c5 merge grade", "grade"],
    );
    env.git(&repo, &["tag", "-a", "v1", "-m", "c6 delivered"]);
    repo
}

/// Each commit's subject → its checked-out files (with whatever filter the repository has).
fn revisions(env: &TestEnv, repo: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let log = env.git(repo, &["log", "--all", "--format=%H %s"]);
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let (oid, subject) = line.split_once(' ').unwrap();
        env.git(repo, &["checkout", "-q", "-f", oid]);
        out.insert(subject.to_string(), tree_hashes(repo));
    }
    env.git(repo, &["checkout", "-q", "-f", "main"]);
    out
}

/// `git dits migrate import --include=*.mp4,*.mov --everything` in `repo`.
fn import(env: &TestEnv, repo: &Path) -> std::process::Output {
    env.git_output(
        repo,
        &[
            "dits",
            "migrate",
            "import",
            "--include=*.mp4,*.mov",
            "--everything",
        ],
    )
}

fn refs(env: &TestEnv, repo: &Path) -> String {
    env.git(
        repo,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )
}

#[test]
fn lfs_history_imports_byte_identical_smaller_deterministic_resumable_and_exports_back() {
    let env = TestEnv::new();
    let repo = lfs_history(&env);
    let original = revisions(&env, &repo);
    assert_eq!(original.len(), 5, "{original:?}");
    let original_refs = refs(&env, &repo);
    let copy = env.dir.path().join("copy");
    let cp = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&repo)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());

    let info = env.git(&repo, &["dits", "migrate", "info", "--everything"]);
    assert!(info.contains("*.mp4") && info.contains("*.mov"), "{info}");
    let mp4 = info.lines().find(|l| l.starts_with("*.mp4")).unwrap();
    assert!(
        mp4.contains(" 4 (4)"),
        "four LFS versions, all local: {info}"
    );

    let imported = import(&env, &repo);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    println!("{}", String::from_utf8_lossy(&imported.stderr).trim());
    let imported_refs = refs(&env, &repo);
    assert_ne!(imported_refs, original_refs);
    let first = env.git(&repo, &["rev-list", "--max-parents=0", "main"]);
    let attributes = env.git(
        &repo,
        &["show", &format!("{}:.gitattributes", first.trim())],
    );
    assert!(
        attributes.contains("*.mp4 filter=dits") && !attributes.contains("filter=lfs"),
        "{attributes}"
    );
    let pointer = env.git(&repo, &["show", "main:shots/wrap.mov"]);
    assert!(
        pointer.starts_with("dits-pointer"),
        "the plain .mov blob is a pointer now: {pointer}"
    );
    // Every revision checks out as it did, and the merge and tag are still there.
    assert_eq!(revisions(&env, &repo), original);
    let parents = env.git(&repo, &["log", "-1", "--format=%P", "main"]);
    assert_eq!(
        parents.split_whitespace().count(),
        2,
        "the merge keeps both parents"
    );
    assert!(env.git(&repo, &["cat-file", "-t", "v1"]).trim() == "tag");
    let fsck = env.git(&repo, &["dits", "fsck"]);
    assert!(fsck.contains("intact"), "{fsck}");
    let (lfs, dits) = (
        dir_size(&repo.join(".git/lfs/objects")),
        dir_size(&repo.join(".git/dits")),
    );
    println!(
        "Git LFS objects: {lfs} bytes; Dits store: {dits} bytes ({:.0}%)",
        dits as f64 * 100.0 / lfs as f64
    );
    assert!(dits < lfs, "Git LFS {lfs} bytes, Dits {dits} bytes");

    // Someone else importing the same history gets the same commits, even when their
    // first run stops on an LFS object they lack.
    let lfs_objects = copy.join(".git/lfs/objects");
    let moved = env.dir.path().join("held-back");
    // A version no checkout holds (Git LFS would store a checked-out file again when
    // `git status` cleans it).
    let retitled = walk_files(&lfs_objects)
        .into_iter()
        .find(|p| std::fs::read(p).unwrap() == std::fs::read(media().path("metadata.mp4")).unwrap())
        .expect("the retitled take's LFS object");
    std::fs::rename(&retitled, &moved).unwrap();
    let stopped = import(&env, &copy);
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(!stopped.status.success());
    assert!(
        stderr.contains("shots/take 1.mp4") && stderr.contains("is not in .git/lfs/objects"),
        "{stderr}"
    );
    assert_eq!(
        refs(&env, &copy),
        original_refs,
        "a stopped import changes no ref"
    );
    std::fs::rename(&moved, &retitled).unwrap();
    let resumed = import(&env, &copy);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        refs(&env, &copy),
        imported_refs,
        "the same history imports to the same commits"
    );

    // Exporting back to Git LFS gives the original commits, byte for byte.
    let export = env.git_output(
        &repo,
        &[
            "dits",
            "migrate",
            "export",
            "--include=*.mp4",
            "--to",
            "lfs",
            "--everything",
        ],
    );
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let back = env.git_output(
        &repo,
        &[
            "dits",
            "migrate",
            "export",
            "--include=*.mov",
            "--to",
            "plain",
            "--everything",
        ],
    );
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_eq!(refs(&env, &repo), original_refs);
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        if e.path().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
