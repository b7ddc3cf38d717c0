//! `git dits proxy PATH…`: fetch what the hub's workers made of tracked video — a small
//! H.264 proxy for editing on a laptop (or a poster frame, or a thumbnail strip) — into
//! a folder beside the checkout, under the files' own paths. The originals are not
//! fetched; a proxy of a clip nobody changed is fetched once per clip, whatever its path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde_json::json;

use crate::output::{human_size, print_json};
use git_remote_dits::derived::{self, Wanted};
use git_remote_dits::git;

/// What `--kind` may ask for, as the hub names it.
pub const KINDS: [&str; 3] = ["proxy", "poster", "strip"];

/// Where proxies go unless `--into` or `dits.proxyDir` says otherwise: beside the object
/// store, out of the working tree (so nothing shows as untracked).
fn default_dir() -> Result<PathBuf> {
    if let Some(dir) = git::try_run(&["config", "--get", "dits.proxyDir"]) {
        let dir = dir.trim();
        if !dir.is_empty() {
            return Ok(git::top_level()?.join(dir));
        }
    }
    Ok(git::common_dir()?.join("dits-proxies"))
}

/// The file a derived object of `path` is written to: a proxy keeps the clip's path (an
/// editor relinks by name), a poster or strip adds `.poster.jpg` / `.strip.jpg`.
fn target(into: &Path, path: &str, kind: &str) -> PathBuf {
    match kind {
        "proxy" => into.join(path),
        other => into.join(format!("{path}.{other}.jpg")),
    }
}

/// Exit code: 0 when every file was fetched, 1 when any was not (each named, with why).
pub fn proxy(paths: &[String], kind: &str, into: Option<&str>, json_out: bool) -> Result<i32> {
    if !KINDS.contains(&kind) {
        bail!("--kind {kind:?}: one of proxy, poster, strip");
    }
    let into = match into {
        Some(dir) => std::env::current_dir()?.join(dir),
        None => default_dir()?,
    };
    let entries = super::ls_files::dits_entries_under(paths)?;
    if entries.is_empty() {
        bail!("no Dits-tracked file matches {paths:?} (see `git dits ls-files`)");
    }
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    let blobs = git::cat_file_small(&ids, dits_core::pointer::MAX_POINTER_LEN as u64)?;
    let mut wanted = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for ((_, path), blob) in entries.into_iter().zip(blobs) {
        let parsed = blob.map(|b| dits_core::pointer::AnyPointer::parse(&b.content));
        match parsed {
            Some(Ok(dits_core::pointer::AnyPointer::Plain(p))) => wanted.push((path, p)),
            Some(Ok(dits_core::pointer::AnyPointer::Sealed(_))) => failed.push((
                path,
                "the repository is encrypted: the hub cannot read its media to make proxies".into(),
            )),
            // Staged but not yet committed as a pointer (or not a pointer at all).
            _ => failed.push((path, "not a Dits pointer in the index".into())),
        }
    }
    let requests: Vec<Wanted> = wanted
        .iter()
        .map(|(path, pointer)| Wanted {
            recipe: pointer.recipe,
            to: target(&into, path, kind),
        })
        .collect();
    let mut fetched = Vec::new();
    for ((path, _), (request, result)) in wanted
        .iter()
        .zip(requests.iter().zip(derived::fetch(&requests, kind)?))
    {
        match result {
            Ok(size) => fetched.push((path.clone(), request.to.clone(), size)),
            Err(why) => failed.push((path.clone(), why)),
        }
    }
    if json_out {
        print_json(&json!({
            "kind": kind,
            "fetched": fetched.iter().map(|(path, to, size)| json!({
                "path": path, "file": to.display().to_string(), "size": size,
            })).collect::<Vec<_>>(),
            "failed": failed.iter().map(|(path, why)| json!({"path": path, "error": why}))
                .collect::<Vec<_>>(),
        }));
    } else {
        for (path, to, size) in &fetched {
            println!("{kind} {path} -> {} ({})", to.display(), human_size(*size));
        }
        for (path, why) in &failed {
            eprintln!("git-dits: no {kind} for {path}: {why}");
        }
    }
    Ok(i32::from(!failed.is_empty()))
}
