//! `git dits lock / unlock / locks`, and keeping `lockable` files read-only in the working
//! tree unless you hold their lock (run after lock/unlock and from the checkout, merge and
//! commit hooks), like Git LFS. The hub, not this code, is what enforces a lock.

use anyhow::{Context, Result};
use dits_wire::wire::Lock;
use serde_json::json;

use crate::output::print_json;
use git_remote_dits::git;
use git_remote_dits::session::{connect, default_remote_url, Session};

/// The repository-relative path Git knows `arg` (relative to the current directory) by.
fn tracked_path(arg: &str) -> Result<String> {
    match git::try_run(&["ls-files", "--full-name", "--error-unmatch", "--", arg]) {
        Some(out) => {
            let mut lines = out.lines().filter(|l| !l.is_empty());
            match (lines.next(), lines.next()) {
                (Some(one), None) => Ok(one.to_string()),
                _ => anyhow::bail!("{arg} names more than one file; lock files one by one"),
            }
        }
        None => anyhow::bail!(
            "{arg} did not match any file Git tracks here; only committed or staged files can be locked"
        ),
    }
}

/// Updates lockable files' modes after a lock change; the lock change already happened on
/// the hub, so a failure here is reported, not fatal.
fn warn_refresh(session: &Session, runtime: &tokio::runtime::Runtime) {
    match git_remote_dits::locks::refresh_modes(Some(session), runtime) {
        Ok(None) => {}
        Ok(Some(why)) => eprintln!("warning: {why}"),
        Err(e) => eprintln!("warning: lockable file modes not updated: {e:#}"),
    }
}

fn with_session<T>(f: impl FnOnce(&Session, &tokio::runtime::Runtime) -> Result<T>) -> Result<T> {
    let runtime = git_remote_dits::runtime()?;
    let url = default_remote_url()?;
    let session = runtime.block_on(connect(&url))?;
    let out = f(&session, &runtime);
    runtime.block_on(session.close());
    out
}

fn lock_json(l: &Lock) -> serde_json::Value {
    json!({ "id": l.id, "path": l.path, "owner": l.owner.name, "locked_at": l.locked_at, "branch": l.branch })
}

/// Returns the exit code: 0 when every path was locked, 2 otherwise.
pub fn lock(paths: &[String], branch: Option<&str>, json_out: bool) -> Result<i32> {
    let mut resolved = Vec::new();
    for p in paths {
        resolved.push(tracked_path(p)?);
    }
    with_session(|session, runtime| {
        let mut locked = Vec::new();
        let mut failed = 0;
        for path in &resolved {
            match runtime.block_on(session.hub.lock(path, branch)) {
                Ok(l) => {
                    if !json_out {
                        println!("Locked {} (id {})", l.path, l.id);
                    }
                    locked.push(l);
                }
                Err(e) => {
                    eprintln!("error: cannot lock {path}: {}", session.explain(e));
                    failed += 1;
                }
            }
        }
        warn_refresh(session, runtime);
        if json_out {
            print_json(
                &json!({ "locked": locked.iter().map(lock_json).collect::<Vec<_>>(), "failed": failed }),
            );
        }
        Ok(if failed == 0 { 0 } else { 2 })
    })
}

pub fn unlock(paths: &[String], ids: &[String], force: bool, json_out: bool) -> Result<i32> {
    // A path that is no longer tracked (deleted since) can still be unlocked by name.
    let resolved: Vec<String> = paths
        .iter()
        .map(|p| tracked_path(p).unwrap_or_else(|_| p.clone()))
        .collect();
    with_session(|session, runtime| {
        let mut targets: Vec<(String, String)> = ids
            .iter()
            .map(|i| (format!("lock {i}"), i.clone()))
            .collect();
        let mut failed = 0;
        for path in &resolved {
            let found = runtime
                .block_on(session.hub.locks(Some(path), None))
                .map_err(|e| session.explain(e))?;
            match found.first() {
                Some(l) => targets.push((path.clone(), l.id.clone())),
                None => {
                    eprintln!("error: {path} is not locked");
                    failed += 1;
                }
            }
        }
        let mut released = Vec::new();
        for (what, id) in &targets {
            match runtime.block_on(session.hub.unlock(id, force)) {
                Ok((l, forced_by)) => {
                    if !json_out {
                        match &forced_by {
                            Some(by) => println!(
                                "Unlocked {} (id {}, held by {}, forced by {by})",
                                l.path, l.id, l.owner.name
                            ),
                            None => println!("Unlocked {} (id {})", l.path, l.id),
                        }
                    }
                    released.push(l);
                }
                Err(e) => {
                    eprintln!("error: cannot unlock {what}: {}", session.explain(e));
                    failed += 1;
                }
            }
        }
        warn_refresh(session, runtime);
        if json_out {
            print_json(
                &json!({ "unlocked": released.iter().map(lock_json).collect::<Vec<_>>(), "failed": failed }),
            );
        }
        Ok(if failed == 0 { 0 } else { 2 })
    })
}

pub fn list(mine: bool, path: Option<&str>, json_out: bool) -> Result<i32> {
    with_session(|session, runtime| {
        let locks = if mine {
            let (ours, _) = runtime
                .block_on(session.hub.verify_locks(None))
                .map_err(|e| session.explain(e))?;
            ours.into_iter()
                .filter(|l| path.is_none_or(|p| l.path == p))
                .collect()
        } else {
            runtime
                .block_on(session.hub.locks(path, None))
                .map_err(|e| session.explain(e))?
        };
        if json_out {
            print_json(&json!({ "locks": locks.iter().map(lock_json).collect::<Vec<_>>() }));
        } else {
            for l in &locks {
                let scope = l
                    .branch
                    .as_deref()
                    .map(|b| format!("\tbranch {b}"))
                    .unwrap_or_default();
                println!(
                    "{}\t{}\tID:{}\t{}{scope}",
                    l.path, l.owner.name, l.id, l.locked_at
                );
            }
        }
        Ok(0)
    })
}

/// `git dits unlock --after-push`: release each of your locks whose file has nothing left
/// to push: the upstream branch has the same version as HEAD and the working tree and
/// index do not change it.
pub fn unlock_after_push(json_out: bool) -> Result<i32> {
    let upstream = git::try_run(&["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"])
        .map(|s| s.trim().to_string())
        .context("the current branch has no upstream: push it first (git push -u)")?;
    with_session(|session, runtime| {
        let (ours, _) = runtime
            .block_on(session.hub.verify_locks(None))
            .map_err(|e| session.explain(e))?;
        let mut released = Vec::new();
        let mut kept = Vec::new();
        for l in ours {
            let here = git::try_run(&["rev-parse", &format!("HEAD:{}", l.path)]);
            let there = git::try_run(&["rev-parse", &format!("{upstream}:{}", l.path)]);
            let clean = git::try_run(&["diff", "--quiet", "HEAD", "--", &l.path]).is_some();
            if here == there && clean {
                runtime
                    .block_on(session.hub.unlock(&l.id, false))
                    .map_err(|e| session.explain(e))?;
                if !json_out {
                    println!("Unlocked {} (pushed to {upstream})", l.path);
                }
                released.push(l);
            } else {
                if !json_out {
                    eprintln!(
                        "Kept the lock on {}: it has changes not on {upstream} yet",
                        l.path
                    );
                }
                kept.push(l);
            }
        }
        warn_refresh(session, runtime);
        if json_out {
            print_json(&json!({
                "unlocked": released.iter().map(lock_json).collect::<Vec<_>>(),
                "kept": kept.iter().map(lock_json).collect::<Vec<_>>(),
            }));
        }
        Ok(0)
    })
}
