//! The client side of locks: which tracked files are `lockable`, which of them we hold
//! (asked of the hub, or the last known set when it can't be reached), keeping lockable
//! files read-only in the working tree unless we hold their lock (like Git LFS), and
//! releasing locks after a push. The hub, not this code, is what enforces a lock.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};

use crate::git;
use crate::session::{connect, default_remote_url, Session};

/// Where the last known set of our own locks is kept, for when the hub can't be reached.
fn mine_cache() -> Result<std::path::PathBuf> {
    Ok(git::store_dir()?.join("locks-mine"))
}

/// Tracked paths whose `lockable` attribute is set.
pub fn lockable_paths() -> Result<Vec<String>> {
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
        let runtime = crate::runtime()?;
        let session = runtime.block_on(connect(&default_remote_url()?))?;
        let (ours, _) = runtime
            .block_on(session.hub.verify_locks(Some(lockable.to_vec())))
            .map_err(|e| session.explain(e))?;
        runtime.block_on(session.close());
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
        let runtime = crate::runtime()?;
        let session = match default_remote_url() {
            Ok(url) => runtime.block_on(connect(&url)).ok(),
            Err(_) => None,
        };
        if let Some(why) = refresh_modes(session.as_ref(), &runtime)? {
            eprintln!("warning: dits: could not check locks ({why}); lockable files use the last known locks");
        }
        if let Some(s) = session {
            runtime.block_on(s.close());
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("warning: dits: lockable file modes not updated: {e:#}");
    }
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
