//! `git dits lock / unlock / locks`, and keeping `lockable` files read-only in the working
//! tree unless you hold their lock (run after lock/unlock and from the checkout, merge and
//! commit hooks), like Git LFS. The hub, not this code, is what enforces a lock.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use dits_remote::wire::Lock;
use serde_json::json;

use crate::git;
use crate::output::print_json;
use crate::remote::session::{connect, default_remote_url, Session};

/// Where the last known set of our own locks is kept, for when the hub can't be reached.
fn mine_cache() -> Result<std::path::PathBuf> {
    Ok(git::store_dir()?.join("locks-mine"))
}

/// Tracked paths whose `lockable` attribute is set.
fn lockable_paths() -> Result<Vec<String>> {
    let listed = git::run(&["ls-files", "-z", "--full-name"])?;
    let paths: Vec<String> = listed
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let attrs = git::check_attr("lockable", &paths)?;
    Ok(paths
        .into_iter()
        .filter(|p| attrs.get(p).is_some_and(|v| v == "set" || v == "true"))
        .collect())
}

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

/// Makes lockable files read-only unless `ours` holds them (then owner-writable).
fn apply_modes(lockable: &[String], ours: &HashSet<String>) -> Result<()> {
    let top = git::top_level()?;
    for path in lockable {
        let file = top.join(path);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let want = if ours.contains(path) {
            mode | 0o200
        } else {
            mode & !0o222
        };
        if want != mode {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(want))
                .with_context(|| format!("setting the mode of {path}"))?;
        }
    }
    Ok(())
}

fn save_mine(ours: &HashSet<String>) -> Result<()> {
    let mut list: Vec<&String> = ours.iter().collect();
    list.sort();
    let text: String = list.iter().map(|p| format!("{p}\n")).collect();
    let path = mine_cache()?;
    let dir = path.parent().expect("cache has a parent");
    std::fs::create_dir_all(dir)?;
    // A temporary file of its own: several `git dits` processes may refresh at once.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

fn load_mine() -> HashSet<String> {
    mine_cache()
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Brings the modes of lockable files in line with the hub's locks. If the hub can't be
/// reached, the last known set of our locks is used and the reason is returned.
pub fn refresh_modes(
    session: Option<&Session>,
    runtime: &tokio::runtime::Runtime,
) -> Result<Option<String>> {
    let lockable = lockable_paths()?;
    if lockable.is_empty() {
        return Ok(None);
    }
    let ours = match session {
        Some(s) => runtime
            .block_on(s.hub.verify_locks(Some(lockable.clone())))
            .map_err(|e| format!("{e}")),
        // No hub to ask (no dits:// remote): the last known locks, without a warning.
        None => {
            apply_modes(&lockable, &load_mine())?;
            return Ok(None);
        }
    };
    match ours {
        Ok((ours, _)) => {
            let ours: HashSet<String> = ours.into_iter().map(|l| l.path).collect();
            save_mine(&ours)?;
            apply_modes(&lockable, &ours)?;
            Ok(None)
        }
        Err(why) => {
            apply_modes(&lockable, &load_mine())?;
            Ok(Some(why))
        }
    }
}

/// Of `lockable` paths, those the current user holds the lock on: asked of the hub, or
/// (when it can't be reached) the last known set.
pub fn held_by_me(lockable: &[String]) -> HashSet<String> {
    if lockable.is_empty() {
        return HashSet::new();
    }
    let ask = || -> Result<HashSet<String>> {
        let runtime = crate::remote::runtime()?;
        let session = runtime.block_on(connect(&default_remote_url()?))?;
        let (ours, _) = runtime
            .block_on(session.hub.verify_locks(Some(lockable.to_vec())))
            .map_err(|e| session.explain(e))?;
        runtime.block_on(session.hub.close());
        Ok(ours.into_iter().map(|l| l.path).collect())
    };
    ask().unwrap_or_else(|_| load_mine())
}

/// For the hooks: never fails the Git command, only warns.
pub fn hook_refresh() {
    let run = || -> Result<()> {
        if lockable_paths()?.is_empty() {
            return Ok(());
        }
        let runtime = crate::remote::runtime()?;
        let session = match default_remote_url() {
            Ok(url) => runtime.block_on(connect(&url)).ok(),
            Err(_) => None,
        };
        if let Some(why) = refresh_modes(session.as_ref(), &runtime)? {
            eprintln!("warning: dits: could not check locks ({why}); lockable files use the last known locks");
        }
        if let Some(s) = session {
            runtime.block_on(s.hub.close());
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("warning: dits: lockable file modes not updated: {e:#}");
    }
}

/// Updates lockable files' modes after a lock change; the lock change already happened on
/// the hub, so a failure here is reported, not fatal.
fn warn_refresh(session: &Session, runtime: &tokio::runtime::Runtime) {
    match refresh_modes(Some(session), runtime) {
        Ok(None) => {}
        Ok(Some(why)) => eprintln!("warning: {why}"),
        Err(e) => eprintln!("warning: lockable file modes not updated: {e:#}"),
    }
}

fn with_session<T>(f: impl FnOnce(&Session, &tokio::runtime::Runtime) -> Result<T>) -> Result<T> {
    let runtime = crate::remote::runtime()?;
    let url = default_remote_url()?;
    let session = runtime.block_on(connect(&url))?;
    let out = f(&session, &runtime);
    runtime.block_on(session.hub.close());
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

/// After a successful push (`dits.unlockAfterPush`): release our locks on `paths`.
pub async fn release_after_push(session: &Session, paths: Vec<String>) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let (ours, _) = session
        .hub
        .verify_locks(Some(paths))
        .await
        .map_err(|e| session.explain(e))?;
    let mut released = Vec::new();
    for l in ours {
        session
            .hub
            .unlock(&l.id, false)
            .await
            .map_err(|e| session.explain(e))?;
        released.push(l.path);
    }
    Ok(released)
}
