//! `git dits mount --proxies`: every video in the mounted commit is shown under its own
//! name with the bytes of the small proxy the hub made of it (`git dits proxy`), so an
//! editor on a laptop cuts with proxies at the originals' paths. Proxies are cached by
//! asset (recipe) beside the object store and fetched once; a video without a proxy yet
//! shows its original and is named on standard error. The mount is read-only: a proxy
//! is not the file Git tracks.

use std::path::{Path, PathBuf};

use anyhow::Result;
use git_remote_dits::derived::{self, Wanted};

use crate::tree::{Kind, Tree};

/// What swapping in proxies did.
#[derive(Debug, Default)]
pub struct Swapped {
    pub proxied: usize,
    /// (path, why) of each video shown as its original.
    pub originals: Vec<(String, String)>,
}

/// The cache of proxies by recipe (`.git/dits-proxy-cache`).
pub fn cache_dir() -> Result<PathBuf> {
    Ok(git_remote_dits::git::common_dir()?.join("dits-proxy-cache"))
}

/// Points each video node of `tree` at its proxy in `cache`, fetching the proxies not
/// cached yet.
pub fn swap_in(tree: &mut Tree, cache: &Path) -> Result<Swapped> {
    let mut videos = Vec::new();
    for path in tree.file_paths() {
        let Some(ino) = tree.resolve(&path, false) else {
            continue;
        };
        if let Some(Kind::Media { pointer, .. }) = tree.get(ino).map(|n| &n.kind) {
            if dits_core::media::has_picture(&pointer.media) {
                let file = cache.join(format!("{}.mp4", pointer.recipe.to_hex()));
                videos.push((ino, path, pointer.recipe, file));
            }
        }
    }
    let missing: Vec<Wanted> = videos
        .iter()
        .filter(|(_, _, _, file)| !file.exists())
        .map(|(_, _, recipe, file)| Wanted {
            recipe: *recipe,
            to: file.clone(),
        })
        .collect();
    let fetched = derived::fetch(&missing, "proxy")?;
    let mut swapped = Swapped::default();
    let why_not: Vec<(PathBuf, String)> = missing
        .iter()
        .zip(fetched)
        .filter_map(|(w, r)| r.err().map(|e| (w.to.clone(), e)))
        .collect();
    for (ino, path, _, file) in videos {
        if let Some((_, why)) = why_not.iter().find(|(f, _)| *f == file) {
            swapped.originals.push((path, why.clone()));
            continue;
        }
        tree.set_kind(ino, Kind::Upper { file });
        swapped.proxied += 1;
    }
    Ok(swapped)
}
