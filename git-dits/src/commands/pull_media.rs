//! `git dits pull-media [PATHS]`: hydrate working-tree files that are still pointers (a
//! clone made with `GIT_DITS_SKIP_SMUDGE=1`, or a checkout that could not reach the hub),
//! like `git lfs pull`. Files you have changed are left alone.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use dits_core::keyring::Keyring;
use dits_core::pointer::MAX_POINTER_LEN;
use dits_core::pointer::{AnyPointer, PointerError};
use dits_core::{LocalStore, Pointer};

use git_remote_dits::git;
use git_remote_dits::session::{connect, default_remote_url};
use git_remote_dits::transfer::fetch_media;

/// Index entries under `paths` (all when empty) whose working-tree file is exactly their
/// pointer's text: `(path, pointer)` for those `keyring` opens, and the paths of those
/// sealed under a key this user does not hold.
///
/// A sealed pointer that opens is remembered in `store` for its content, so that once the
/// file is hydrated clean gives back that same pointer.
fn pointer_files(paths: &[String], keyring: &Keyring, store: &LocalStore) -> Result<PointerFiles> {
    let entries = super::ls_files::dits_entries_under(paths)?;
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    let blobs = git::cat_file_small(&ids, MAX_POINTER_LEN as u64)?;
    let top = git::top_level()?;
    let mut out = PointerFiles::default();
    for ((_, path), blob) in entries.into_iter().zip(blobs) {
        let Some(blob) = blob else { continue };
        let Ok(any) = AnyPointer::parse(&blob.content) else {
            continue;
        };
        let pointer = match keyring.open(&any) {
            Ok(p) => Some(p),
            Err(PointerError::Encrypted { .. }) => None,
            Err(_) => continue,
        };
        let mut head = Vec::new();
        let Ok(file) = std::fs::File::open(top.join(&path)) else {
            continue;
        };
        file.take(MAX_POINTER_LEN as u64 + 1)
            .read_to_end(&mut head)
            .with_context(|| format!("reading {path}"))?;
        if head == blob.content {
            match pointer {
                Some(pointer) => {
                    if let AnyPointer::Sealed(_) = any {
                        let text = String::from_utf8_lossy(&blob.content);
                        store.remember_sealed_pointer(&pointer.oid, pointer.size, &text)?;
                    }
                    out.readable.push((path, pointer))
                }
                None => out.keyless.push(path),
            }
        }
    }
    Ok(out)
}

#[derive(Default)]
struct PointerFiles {
    readable: Vec<(String, Pointer)>,
    keyless: Vec<String>,
}

/// Writes the file next to itself and renames it over the pointer, keeping its mode, so
/// a failure leaves the pointer in place.
fn hydrate(
    store: &mut LocalStore,
    top: &std::path::Path,
    path: &str,
    pointer: &Pointer,
) -> Result<()> {
    let dest = top.join(path);
    let dir = dest
        .parent()
        .context("a tracked file has a parent directory")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".dits-pull-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        dits_core::smudge::smudge(store, pointer, &mut w).with_context(|| path.to_string())?;
        w.flush()?;
    }
    let mode = std::fs::metadata(&dest)?.permissions();
    std::fs::set_permissions(tmp.path(), mode)?;
    tmp.persist(&dest)
        .with_context(|| format!("replacing {path}"))?;
    Ok(())
}

/// `pull-media --for PROJECT`: the tracked files the project references, and nothing
/// else.
pub fn pull_media_for(project: &str, quiet: bool) -> Result<()> {
    let files = super::deps::media_of(project)?;
    if files.is_empty() {
        if !quiet {
            eprintln!("{project} references no tracked media.");
        }
        return Ok(());
    }
    let specs: Vec<String> = files.iter().map(|f| format!(":(top,literal){f}")).collect();
    pull_media(&specs, quiet)
}

pub fn pull_media(paths: &[String], quiet: bool) -> Result<()> {
    let mut store = LocalStore::open(&git::store_dir()?)?;
    let found = pointer_files(paths, &git_remote_dits::keys::load_keyring()?, &store)?;
    if found.readable.is_empty() && found.keyless.is_empty() {
        if !quiet {
            eprintln!("Nothing to pull: every Dits file here already has its content.");
        }
        return Ok(());
    }
    let url = default_remote_url()?;
    let runtime = git_remote_dits::runtime()?;
    let started = std::time::Instant::now();
    let (received, found) = runtime.block_on(async {
        let session = connect(&url).await?;
        // Connecting brought this user's keys as the hub has them now (a grant since the
        // clone): files that were sealed to them may open now.
        let found = if found.keyless.is_empty() {
            found
        } else {
            pointer_files(paths, &session.hub.keyring(), &store)?
        };
        let pointers: Vec<Pointer> = found.readable.iter().map(|(_, p)| p.clone()).collect();
        let bytes = fetch_media(&session, &mut store, &pointers, !quiet).await;
        session.close().await;
        anyhow::Ok((bytes?, found))
    })?;
    let (files, keyless) = (found.readable, found.keyless);
    // The transfer alone (connect, fetch, close), for comparing with reads through
    // `git dits mount` (bench/mount.sh); writing the files and refreshing the index follow.
    tracing::debug!(
        bytes = received,
        transfer_ms = started.elapsed().as_secs_f64() * 1000.0,
        "fetched media from the hub"
    );
    let top = git::top_level()?;
    let mut failed = 0;
    for (path, pointer) in &files {
        if let Err(e) = hydrate(&mut store, &top, path, pointer) {
            eprintln!("error: {e:#}");
            failed += 1;
        }
    }
    // The files now differ in stat data from what the index recorded; refreshing re-runs
    // clean, which gives back the same pointers, so `git status` stays clean.
    let mut args = vec!["update-index", "-q", "--refresh", "--"];
    args.extend(files.iter().map(|(p, _)| p.as_str()));
    let _ = git::try_run(&args);
    if !quiet {
        eprintln!(
            "Pulled {} of {} files ({} bytes fetched from {url}).",
            files.len() - failed,
            files.len(),
            received
        );
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} files could not be hydrated (see above)"
    );
    if let Some(first) = keyless.first() {
        anyhow::bail!(
            "{} files ({first}{}) are encrypted with a key you do not hold: run `git dits key status` to see your access; an admin gives it with `git dits key grant <your hub user>`, then run `git dits pull-media` again",
            keyless.len(),
            if keyless.len() > 1 { ", …" } else { "" }
        );
    }
    Ok(())
}
