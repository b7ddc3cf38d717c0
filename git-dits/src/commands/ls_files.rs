//! `git dits ls-files`: the Dits-tracked files in the index, with sizes and whether the
//! working tree holds the real content (`*`) or only a pointer (`-`), like `git lfs ls-files`.

use anyhow::Result;
use serde_json::json;

use crate::output::{human_size, print_json};
use git_remote_dits::git;

/// Paths (from `git ls-files -s`) whose `filter` attribute is `dits`, with their blob ids.
pub(crate) fn dits_entries() -> Result<Vec<(String, String)>> {
    let entries = git::staged_blobs()?;
    let paths: Vec<String> = entries.iter().map(|(_, p)| p.clone()).collect();
    let filters = git::check_attr("filter", &paths)?;
    Ok(entries
        .into_iter()
        .filter(|(_, p)| filters.get(p).is_some_and(|v| v == "dits"))
        .collect())
}

/// [`dits_entries`] under `paths` (Git pathspecs; all when empty).
pub(crate) fn dits_entries_under(paths: &[String]) -> Result<Vec<(String, String)>> {
    let mut entries = dits_entries()?;
    if !paths.is_empty() {
        let mut args = vec!["ls-files", "-z", "--full-name", "--"];
        args.extend(paths.iter().map(String::as_str));
        let listed = git::run(&args)?;
        let wanted: std::collections::HashSet<&str> =
            listed.split('\0').filter(|p| !p.is_empty()).collect();
        entries.retain(|(_, p)| wanted.contains(p.as_str()));
    }
    Ok(entries)
}

pub fn ls_files(json_out: bool) -> Result<()> {
    let entries = dits_entries()?;
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    let blobs = git::cat_file_small(&ids, dits_core::pointer::MAX_POINTER_LEN as u64)?;
    let top = git::top_level()?;
    let keyring = git_remote_dits::keys::load_keyring()?;
    let mut rows = Vec::new();
    for ((_, path), blob) in entries.iter().zip(blobs) {
        let Some(pointer) = blob.and_then(|b| keyring.parse_pointer(&b.content).ok()) else {
            continue;
        };
        let on_disk = std::fs::metadata(top.join(path))
            .map(|m| m.len() == pointer.size)
            .unwrap_or(false);
        rows.push((path.clone(), pointer, on_disk));
    }
    if json_out {
        let list: Vec<_> = rows
            .iter()
            .map(|(path, p, hydrated)| json!({"path": path, "size": p.size, "oid": p.oid.to_hex(), "media": p.media, "hydrated": hydrated}))
            .collect();
        print_json(&json!({"files": list}));
    } else {
        for (path, p, hydrated) in &rows {
            println!(
                "{} {} {} ({})",
                p.oid.short(),
                if *hydrated { '*' } else { '-' },
                path,
                human_size(p.size)
            );
        }
    }
    Ok(())
}
