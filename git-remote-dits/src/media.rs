//! Which media a set of commits needs: the pointers among their blobs, and the objects
//! (recipe plus everything it lists) behind each.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use dits_core::keyring::Keyring;
use dits_core::pointer::{AnyPointer, MAX_POINTER_LEN};
use dits_core::{ChunkId, ChunkStore, LocalStore, Pointer};

use crate::git;

/// Pointers in the blobs `git rev-list --objects ARGS` lists (those `keyring` opens, in an
/// encrypted repository), and how many of them are plain pointers.
pub fn pointers_in(rev_args: &[String], keyring: &Keyring) -> Result<(Vec<Pointer>, usize)> {
    let mut args = vec!["rev-list".to_string(), "--objects".to_string()];
    args.extend(rev_args.iter().cloned());
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let listed = git::run(&args_ref)?;
    let oids: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    small_blobs(&oids, keyring)
}

/// Parses the blobs among `oids` small enough to be pointers.
fn small_blobs(oids: &[String], keyring: &Keyring) -> Result<(Vec<Pointer>, usize)> {
    if oids.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let mut child = Command::new("git")
        .args([
            "cat-file",
            "--batch-check=%(objectname) %(objecttype) %(objectsize)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting git cat-file --batch-check")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let list: String = oids.iter().map(|s| format!("{s}\n")).collect();
    let feeder = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
    let mut candidates = Vec::new();
    for line in BufReader::new(child.stdout.take().context("stdout")?).lines() {
        let line = line?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3
            && f[1] == "blob"
            && f[2].parse::<usize>().is_ok_and(|n| n <= MAX_POINTER_LEN)
        {
            candidates.push(f[0].to_string());
        }
    }
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("feeder panicked"))??;
    child.wait()?;
    let blobs = git::cat_file_small(&candidates, MAX_POINTER_LEN as u64)?;
    let mut seen = BTreeSet::new();
    let mut plain = 0;
    let mut pointers = Vec::new();
    for blob in blobs.into_iter().flatten() {
        if !Pointer::looks_like_pointer(&blob.content) {
            continue;
        }
        let Ok(any) = AnyPointer::parse(&blob.content) else {
            continue;
        };
        if let AnyPointer::Plain(_) = any {
            plain += 1;
        }
        if let Ok(p) = keyring.open(&any) {
            if seen.insert(p.recipe) {
                pointers.push(p);
            }
        }
    }
    Ok((pointers, plain))
}

/// Every object the pointers need (each recipe first, then what it lists), read from the
/// local store's recipes. Recipes the store lacks are returned separately: their
/// objects can't be listed here.
pub fn objects_for(
    store: &mut LocalStore,
    pointers: &[Pointer],
) -> Result<(Vec<ChunkId>, Vec<ChunkId>)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut absent = Vec::new();
    for p in pointers {
        if !store.contains(&p.recipe)? {
            absent.push(p.recipe);
            continue;
        }
        // Checked against the pointer's size from its header, before any object it names
        // is listed for download.
        let recipe = dits_core::smudge::decode_recipe(p, &store.get(&p.recipe)?)
            .with_context(|| format!("recipe {}", p.recipe.short()))?;
        if seen.insert(p.recipe) {
            out.push(p.recipe);
        }
        for e in recipe.unique_objects() {
            if seen.insert(e.id) {
                out.push(e.id);
            }
        }
    }
    Ok((out, absent))
}
