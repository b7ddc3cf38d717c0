//! `git dits ls-files`: the Dits-tracked files in the index, with sizes and whether the
//! working tree holds the real content (`*`) or only a pointer (`-`), like `git lfs ls-files`.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use dits_core::Pointer;
use serde_json::json;

use crate::git;
use crate::output::{human_size, print_json};

/// Paths (from `git ls-files -s`) whose `filter` attribute is `dits`, with their blob ids.
pub(crate) fn dits_entries() -> Result<Vec<(String, String)>> {
    let entries = git::staged_blobs()?;
    let mut child = Command::new("git")
        .args(["check-attr", "--stdin", "-z", "filter"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running git check-attr")?;
    let list: Vec<u8> = entries
        .iter()
        .flat_map(|(_, p)| p.bytes().chain(std::iter::once(0)))
        .collect();
    let mut stdin = child.stdin.take().context("check-attr stdin")?;
    let feeder = std::thread::spawn(move || stdin.write_all(&list));
    let out = child.wait_with_output()?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("check-attr feeder panicked"))??;
    let fields: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    let dits_paths: std::collections::HashSet<String> = fields
        .chunks_exact(3)
        .filter(|f| f[2] == b"dits")
        .map(|f| String::from_utf8_lossy(f[0]).into_owned())
        .collect();
    Ok(entries
        .into_iter()
        .filter(|(_, p)| dits_paths.contains(p))
        .collect())
}

pub fn ls_files(json_out: bool) -> Result<()> {
    let entries = dits_entries()?;
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    let blobs = git::cat_file_small(&ids, dits_core::pointer::MAX_POINTER_LEN as u64)?;
    let top = git::top_level()?;
    let mut rows = Vec::new();
    for ((_, path), blob) in entries.iter().zip(blobs) {
        let Some(pointer) = blob.and_then(|b| Pointer::parse(&b.content).ok()) else {
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
