//! `git dits fsck`: every pointer reachable from any ref (and staged in the index) has its
//! recipe and every object present and hash-correct. Exits 1 with the list when not.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use dits_core::{verify, LocalStore, Pointer};
use serde_json::json;

use crate::output::print_json;
use git_remote_dits::git;

/// A pointer blob and the paths it was found at.
struct Found {
    pointer: Pointer,
    paths: Vec<String>,
}

/// A path and what is wrong there.
type Problem = (String, String);

/// Pointer blobs reachable from all refs plus the index, keyed by blob id, and the
/// blobs that claim to be pointers but do not parse.
fn reachable_pointers() -> Result<(BTreeMap<String, Found>, Vec<Problem>)> {
    let mut candidates: Vec<(String, String)> = Vec::new();
    let objects = git::try_run(&["rev-list", "--objects", "--all"]).unwrap_or_default();
    for line in objects.lines() {
        if let Some((id, path)) = line.split_once(' ') {
            candidates.push((id.to_string(), path.to_string()));
        }
    }
    candidates.extend(git::staged_blobs()?);
    let specs: Vec<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
    let blobs = git::cat_file_small(&specs, dits_core::pointer::MAX_POINTER_LEN as u64)?;
    let keyring = git_remote_dits::keys::load_keyring()?;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut malformed = Vec::new();
    for ((id, path), blob) in candidates.into_iter().zip(blobs) {
        let Some(blob) = blob else { continue };
        if blob.kind != "blob" || !Pointer::looks_like_pointer(&blob.content) {
            continue;
        }
        match keyring.parse_pointer(&blob.content) {
            Ok(pointer) => {
                let entry = found.entry(id).or_insert(Found {
                    pointer,
                    paths: Vec::new(),
                });
                if !entry.paths.contains(&path) {
                    entry.paths.push(path);
                }
            }
            Err(e) => malformed.push((path, format!("blob {id}: {e}"))),
        }
    }
    Ok((found, malformed))
}

pub fn fsck(json_out: bool) -> Result<i32> {
    let (pointers, mut problems) = reachable_pointers()?;
    let dir = git::store_dir()?;
    let mut store = LocalStore::open(&dir)
        .with_context(|| format!("opening the Dits store at {}", dir.display()))?;
    let mut checked = 0usize;
    for found in pointers.values() {
        checked += 1;
        for problem in verify(&mut store, &found.pointer) {
            problems.push((found.paths.join(", "), problem.to_string()));
        }
    }
    if json_out {
        let list: Vec<_> = problems
            .iter()
            .map(|(path, error)| json!({"path": path, "error": error}))
            .collect();
        print_json(
            &json!({"pointers_checked": checked, "ok": problems.is_empty(), "problems": list}),
        );
    } else if problems.is_empty() {
        println!("fsck: {checked} pointer(s) checked, all recipes and objects present and intact");
    } else {
        for (path, error) in &problems {
            println!("{path}: {error}");
        }
        println!(
            "fsck: {} problem(s) in {checked} pointer(s)",
            problems.len()
        );
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}
