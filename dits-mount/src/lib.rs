//! `git dits mount`: a revision's tree through FUSE, media fetched only when read.

pub mod fetch;
pub mod fs;
pub mod media;
pub mod overlay;
pub mod proxies;
pub mod tree;

use std::path::Path;

use std::os::unix::fs::PermissionsExt;

use anyhow::{bail, Context, Result};
use dits_core::LocalStore;

use git_remote_dits::git;

/// Unmounts MOUNTPOINT (`fusermount3 -u`, lazily if busy).
pub fn unmount(mountpoint: &Path) -> Result<()> {
    for args in [&["-u"][..], &["-u", "-z"][..]] {
        let status = std::process::Command::new("fusermount3")
            .args(args)
            .arg(mountpoint)
            .stderr(std::process::Stdio::null())
            .status()
            .context("running fusermount3 (install fuse3)")?;
        if status.success() {
            return Ok(());
        }
    }
    bail!(
        "{} is not a Dits mount (or is already unmounted)",
        mountpoint.display()
    )
}

/// A mount left behind by a process that died answers ENOTCONN; clean it up.
fn clear_stale(mountpoint: &Path) -> Result<()> {
    if let Err(e) = std::fs::metadata(mountpoint) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            eprintln!(
                "{} is a stale mount from a process that ended; unmounting it",
                mountpoint.display()
            );
            unmount(mountpoint)?;
        }
    }
    Ok(())
}

/// Mounts `rev` of the current repository at `mountpoint` and serves it until unmounted
/// (`git dits unmount`, `fusermount3 -u`, SIGINT or SIGTERM).
pub fn mount(mountpoint: &Path, rev: &str) -> Result<()> {
    mount_with(mountpoint, rev, MountOptions::default())
}

/// What a mount shows.
#[derive(Debug, Default)]
pub struct MountOptions {
    /// Only these files (`git dits mount --project`): reads, writes and `--commit` work
    /// as in a whole mount; files not shown are untouched.
    pub only: Option<std::collections::BTreeSet<String>>,
    /// Videos as their proxies, read-only (`--proxies`, see [`proxies`]).
    pub proxies: bool,
}

/// [`mount`] with `options`.
pub fn mount_with(mountpoint: &Path, rev: &str, options: MountOptions) -> Result<()> {
    let MountOptions { only, proxies } = options;
    clear_stale(mountpoint)?;
    anyhow::ensure!(
        mountpoint.is_dir(),
        "{} is not a directory; create it first",
        mountpoint.display()
    );
    let commit = resolve_commit(rev)?;
    let mut tree = tree::Tree::load_only(&commit, only.as_ref())?;
    let store_dir = git::store_dir()?;
    if proxies {
        let swapped = proxies::swap_in(&mut tree, &proxies::cache_dir()?)?;
        for (path, why) in &swapped.originals {
            eprintln!("git-dits: {path} is shown as its original: {why}");
        }
        eprintln!("{} videos shown as their proxies", swapped.proxied);
    }
    let overlay = overlay::Overlay::open(&store_dir, &commit)?;
    let pid_file = overlay.root().join("mounted.pid");
    std::fs::write(&pid_file, std::process::id().to_string())?;
    let store = LocalStore::open(&store_dir)?;
    let cache = git::config_usize("dits.mountCacheSize", 256 << 20) as u64;
    // Starts connecting to the hub now, so the first read does not wait for it.
    let media =
        media::MediaReader::new(store, cache, git::config_usize("dits.cacheSize", 0) as u64)
            .context("starting the hub connection")?;
    // Lockable files are read-only in the mount too, unless you hold their lock.
    let files = tree.file_paths();
    let attrs = git::check_attr_in(Some(&commit), "lockable", &files)?;
    let lockable: Vec<String> = files
        .into_iter()
        .filter(|p| attrs.get(p).is_some_and(|v| v == "set" || v == "true"))
        .collect();
    let mine = git_remote_dits::locks::held_by_me(&lockable);
    let read_only = lockable.into_iter().filter(|p| !mine.contains(p)).collect();
    let filesystem = fs::DitsFs::new(tree, media, overlay).with_read_only(read_only);
    let mut options = vec![
        fuser::MountOption::FSName("dits".into()),
        fuser::MountOption::Subtype("dits".into()),
        fuser::MountOption::NoAtime,
    ];
    if proxies {
        options.push(fuser::MountOption::RO);
    }
    // SIGINT/SIGTERM unmount, which ends the session loop below cleanly.
    let target = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let _ = unmount(&target);
    });
    eprintln!(
        "Mounted {rev} at {} (Ctrl-C or `git dits unmount` to stop)",
        mountpoint.display()
    );
    let served = fuser::mount2(filesystem, mountpoint, &options)
        .with_context(|| format!("mounting at {}", mountpoint.display()));
    let _ = std::fs::remove_file(&pid_file);
    served
}

fn resolve_commit(rev: &str) -> Result<String> {
    git::run(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{rev}^{{commit}}"),
    ])
    .map(|s| s.trim().to_string())
    .with_context(|| format!("{rev} is not a commit here"))
}

/// `git dits mount --commit -m MSG [--rev REV]`: turns the overlay of REV's mount into a
/// commit on top of REV, through the clean filter like `git add`. If REV is the current
/// branch's tip, the branch moves and the index and changed working-tree files follow
/// (as pointers; `git dits pull-media` hydrates them). The overlay is then removed.
pub fn commit(rev: &str, message: &str) -> Result<String> {
    let base = resolve_commit(rev)?;
    let store_dir = git::store_dir()?;
    let overlay = overlay::Overlay::open(&store_dir, &base)?;
    if let Ok(pid) = std::fs::read_to_string(overlay.root().join("mounted.pid")) {
        if Path::new("/proc").join(pid.trim()).exists() {
            bail!(
                "a mount of {rev} is still running (pid {}); unmount it first",
                pid.trim()
            );
        }
    }
    if overlay.is_empty()? {
        bail!("nothing to commit: the mount of {rev} has no changes");
    }
    let top = git::top_level()?;
    let index = tempfile::NamedTempFile::new_in(&store_dir)?;
    let git_idx = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&top)
            .env("GIT_INDEX_FILE", index.path())
            .output()
            .with_context(|| format!("running git {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    git_idx(&["read-tree", &base])?;
    for path in overlay.whiteouts()? {
        git_idx(&[
            "rm",
            "-r",
            "-q",
            "--cached",
            "--ignore-unmatch",
            "--",
            &path,
        ])?;
    }
    for path in overlay.files()? {
        let file = overlay.upper(&path);
        // --path gives the file the attributes of its place in the tree, so tracked media
        // goes through the Dits clean filter (chunks into the local store, pointer to Git).
        let blob = git_idx(&[
            "hash-object",
            "-w",
            "--path",
            &path,
            &file.to_string_lossy(),
        ])?;
        let executable = std::fs::metadata(&file)?.permissions().mode() & 0o111 != 0;
        let mode = if executable { "100755" } else { "100644" };
        git_idx(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("{mode},{blob},{path}"),
        ])?;
    }
    let tree = git_idx(&["write-tree"])?;
    let new = git_idx(&["commit-tree", &tree, "-p", &base, "-m", message])?;
    let head =
        git::try_run(&["rev-parse", "--verify", "--quiet", "HEAD"]).map(|s| s.trim().to_string());
    let branch = git::try_run(&["symbolic-ref", "-q", "HEAD"]).map(|s| s.trim().to_string());
    match (head, branch) {
        (Some(h), Some(b)) if h == base => {
            // Move index and changed files first; only then the branch, so a refusal
            // (local changes in the way) leaves everything as it was.
            let out = std::process::Command::new("git")
                .args(["read-tree", "-m", "-u", &base, &new])
                .current_dir(&top)
                .env("GIT_DITS_SKIP_SMUDGE", "1")
                .output()?;
            if out.status.success() {
                git::run(&[
                    "update-ref",
                    "-m",
                    "git dits mount --commit",
                    &b,
                    &new,
                    &base,
                ])?;
                eprintln!(
                    "Committed the mount's changes as {} on {}",
                    &new[..12],
                    b.trim_start_matches("refs/heads/")
                );
            } else {
                eprintln!(
                    "Committed the mount's changes as {new}; {} was not moved: {}",
                    b.trim_start_matches("refs/heads/"),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        _ => eprintln!("Committed the mount's changes as {new} (on top of {rev}; no branch moved)"),
    }
    overlay.clear()?;
    Ok(new)
}
