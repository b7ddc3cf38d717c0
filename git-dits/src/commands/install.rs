//! `git dits install` / `uninstall`: the filter and diff drivers in git config (global by
//! default, `--local` for one repository) and the hooks of the current repository.
//! Hooks a user already has are kept and chained, never overwritten.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use git_remote_dits::git;

/// Hooks Dits wires, by name, with their scripts. They call `git dits hook NAME`
/// (read-only lockable files after checkout, merge and commit; pre-commit checks staged
/// projects' dependencies when `dits.checkDeps` is set; pre-push stores the media on the
/// configured hub when the Git remote is another host). The scripts are real shell files in the repository's
/// `hooks/` folder (checked with `sh -n` by the tests), compiled in so an installed binary
/// needs no data files.
pub const HOOKS: [(&str, &str); 5] = [
    (
        "post-checkout",
        include_str!("../../../hooks/post-checkout"),
    ),
    ("post-merge", include_str!("../../../hooks/post-merge")),
    ("post-commit", include_str!("../../../hooks/post-commit")),
    ("pre-commit", include_str!("../../../hooks/pre-commit")),
    ("pre-push", include_str!("../../../hooks/pre-push")),
];
const MARKER: &str = "# dits-hook v1";
const CHAINED_SUFFIX: &str = ".pre-dits";

const CONFIG: [(&str, &str); 5] = [
    ("filter.dits.process", "git-dits filter-process"),
    ("filter.dits.clean", "git-dits clean -- %f"),
    ("filter.dits.smudge", "git-dits smudge -- %f"),
    ("filter.dits.required", "true"),
    ("diff.dits.textconv", "git-dits textconv"),
];

pub fn install(local: bool, skip_hooks: bool) -> Result<()> {
    let scope = if local { "--local" } else { "--global" };
    for (key, value) in CONFIG {
        git::run(&["config", scope, "--replace-all", key, value])
            .with_context(|| format!("setting {key}"))?;
    }
    eprintln!(
        "Dits filter configured ({}).",
        if local { "this repository" } else { "global" }
    );
    if !skip_hooks && git::inside_work_tree() {
        let dir = git::hooks_dir()?;
        for (name, script) in HOOKS {
            install_hook(&dir, name, script)?;
        }
        eprintln!("Hooks installed in {}.", dir.display());
        // A clone checked out before the hooks existed gets its lockable modes now.
        git_remote_dits::locks::hook_refresh();
    }
    Ok(())
}

/// `install --check-deps`: the pre-commit hook checks staged projects' media.
pub fn enable_deps_check(local: bool, enable: bool) -> Result<()> {
    if enable {
        let scope = if local { "--local" } else { "--global" };
        git::run(&["config", scope, "dits.checkDeps", "true"])?;
        eprintln!("Project dependencies are checked before each commit (dits.checkDeps).");
    }
    Ok(())
}

pub fn uninstall(local: bool) -> Result<()> {
    let scope = if local { "--local" } else { "--global" };
    for (key, _) in CONFIG {
        // Exit code 5 means "not set": already uninstalled is fine.
        let _ = git::try_run(&["config", scope, "--unset-all", key]);
    }
    for section in ["filter.dits", "diff.dits"] {
        let _ = git::try_run(&["config", scope, "--remove-section", section]);
    }
    if git::inside_work_tree() {
        let dir = git::hooks_dir()?;
        for (name, _) in HOOKS {
            uninstall_hook(&dir, name)?;
        }
    }
    eprintln!("Dits filter and hooks removed.");
    Ok(())
}

/// Installs the hooks this repository lacks, touching no hook that exists (the user's or
/// ours), and says nothing: the filter calls it, so a repository cloned under a global
/// `git dits install` ends up with its hooks, and Git runs the new post-checkout at the
/// end of the clone, which gives lockable files their read-only mode (as Git LFS does).
/// Failures are only logged: a missing hook must never fail a checkout.
pub fn ensure_hooks() {
    let run = || -> Result<()> {
        let dir = git::hooks_dir()?;
        for (name, script) in HOOKS {
            let path = dir.join(name);
            if fs::symlink_metadata(&path).is_err() {
                fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                write_executable(&path, script)?;
            }
        }
        Ok(())
    };
    if let Err(e) = run() {
        tracing::debug!("hooks not installed: {e:#}");
    }
}

fn install_hook(dir: &Path, name: &str, script: &str) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    if let Ok(existing) = fs::read_to_string(&path) {
        if existing.contains(MARKER) {
            // Already ours: rewrite in place so upgrades take effect, idempotently.
            return write_executable(&path, script);
        }
        let kept = dir.join(format!("{name}{CHAINED_SUFFIX}"));
        if kept.exists() {
            anyhow::bail!(
                "{} exists and so does {}: move one of them aside, then run `git dits install` again",
                path.display(),
                kept.display()
            );
        }
        fs::rename(&path, &kept)
            .with_context(|| format!("keeping your existing hook as {}", kept.display()))?;
        eprintln!(
            "Kept your existing {name} hook as {}; it still runs first.",
            kept.display()
        );
    } else if path.exists() {
        anyhow::bail!(
            "{} exists but is not readable text; move it aside and run `git dits install` again",
            path.display()
        );
    }
    write_executable(&path, script)
}

fn uninstall_hook(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    let ours = fs::read_to_string(&path)
        .map(|s| s.contains(MARKER))
        .unwrap_or(false);
    if !ours {
        return Ok(());
    }
    let kept = dir.join(format!("{name}{CHAINED_SUFFIX}"));
    if kept.exists() {
        fs::rename(&kept, &path).with_context(|| format!("restoring {}", path.display()))?;
    } else {
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("dits-tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))?;
    Ok(())
}

/// `git dits hook NAME ARGS…`: the entry point the installed hooks call. After checkout,
/// merge and commit, lockable files get their modes from the hub's locks. Before a push
/// to a Git host that is not a Dits hub, the media goes to the configured hub first
/// ([`super::pre_push`]); a `dits://` remote's hub enforces locks when it moves a ref.
pub fn hook(name: &str, args: &[String]) -> Result<i32> {
    let code = match name {
        "pre-push" => super::pre_push::pre_push(args)?,
        "pre-commit" => super::deps::pre_commit_check()?,
        "post-checkout" | "post-merge" | "post-commit" => {
            git_remote_dits::locks::hook_refresh();
            0
        }
        _ => 0,
    };
    tracing::debug!(hook = name, code, "hook ran");
    Ok(code)
}
