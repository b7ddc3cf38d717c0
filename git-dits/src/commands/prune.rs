//! `git dits prune [--dry-run] [--verify-remote]`: frees the local store of media no
//! longer needed here, like `git lfs prune`. Kept: what the checked-out commit of every
//! worktree, the index, the stash, every commit of the last `dits.pruneRecentDays` days
//! (default 7) and every commit not on a remote-tracking ref (unpushed work) need. The
//! rest is on the hub (it was pushed), and `--verify-remote` asks the hub to be sure,
//! keeping whatever it lacks. Packs left partly dead are rewritten (crash-safely; see
//! `LocalStore::rewrite_pack`).

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use dits_core::pointer::{PointerError, MAX_POINTER_LEN};
use dits_core::recipe::Recipe;
use dits_core::store::ChunkStore;
use dits_core::{ChunkId, LocalStore};
use serde_json::json;

use crate::output::print_json;
use git_remote_dits::git;
use git_remote_dits::session::{connect, default_remote_url};

/// A pack record's header (id, lengths), freed with its sealed bytes.
const RECORD_HEADER: u64 = dits_core::store::pack::RECORD_HEADER_LEN;

pub fn prune(dry_run: bool, verify_remote: bool, json_out: bool) -> Result<i32> {
    let mut store = LocalStore::open(&git::store_dir()?)?;
    let keep = needed_objects(&mut store)?;
    let mut dead: HashSet<ChunkId> = HashSet::new();
    let mut packs = Vec::new();
    for pack in store.packs()? {
        let ids = store.pack_object_ids(&pack.name)?;
        let before = dead.len();
        dead.extend(ids.into_iter().filter(|id| !keep.contains(id)));
        if dead.len() > before {
            packs.push(pack.name);
        }
    }
    let mut not_on_hub = 0;
    if verify_remote && !dead.is_empty() {
        let lacking = lacking_on_hub(&dead)?;
        not_on_hub = lacking.len();
        dead.retain(|id| !lacking.contains(id));
    }
    let mut bytes = 0u64;
    for id in &dead {
        bytes += store.stored_len(id)?.map_or(0, u64::from) + RECORD_HEADER;
    }
    let objects = dead.len();
    if !dry_run {
        bytes = 0;
        for pack in &packs {
            bytes += store.rewrite_pack(pack, &|id| !dead.contains(id))?;
        }
    }
    if json_out {
        print_json(&json!({
            "dry_run": dry_run,
            "objects": objects,
            "bytes": bytes,
            "packs": packs.len(),
            "kept_not_on_hub": not_on_hub,
        }));
    } else {
        let verb = if dry_run { "would free" } else { "freed" };
        println!(
            "{verb} {bytes} bytes: {objects} objects in {} packs",
            packs.len()
        );
        if not_on_hub > 0 {
            println!(
                "kept {not_on_hub} objects the hub does not have (push the commits that need them, or they stay)"
            );
        }
    }
    Ok(0)
}

/// Every object (recipes and what they list) the kept commits, the index and the stash
/// need, as far as the store holds their recipes.
fn needed_objects(store: &mut LocalStore) -> Result<HashSet<ChunkId>> {
    let keyring = git_remote_dits::keys::load_keyring()?;
    let mut blobs = pointer_candidates(&kept_commits()?)?;
    blobs.extend(git::staged_blobs()?.into_iter().map(|(id, _)| id));
    blobs.sort();
    blobs.dedup();
    let mut recipes = HashSet::new();
    for (id, blob) in blobs
        .iter()
        .zip(git::cat_file_small(&blobs, MAX_POINTER_LEN as u64)?)
    {
        let Some(blob) = blob else { continue };
        if blob.kind != "blob" || !dits_core::Pointer::looks_like_pointer(&blob.content) {
            continue;
        }
        match keyring.parse_pointer(&blob.content) {
            Ok(pointer) => {
                recipes.insert(pointer.recipe);
            }
            Err(PointerError::Encrypted { key_id }) => bail!(
                "blob {id} is sealed under key {key_id}, which you do not hold, so what it needs cannot be told; nothing was pruned (run `git dits key status`)"
            ),
            // A malformed pointer names nothing.
            Err(_) => {}
        }
    }
    let mut keep = HashSet::new();
    for recipe_id in recipes {
        keep.insert(recipe_id);
        if !store.contains(&recipe_id)? {
            continue;
        }
        let bytes = store.get(&recipe_id)?;
        let recipe = Recipe::decode(&bytes).with_context(|| {
            format!(
                "recipe {} in the local store; nothing was pruned",
                recipe_id.short()
            )
        })?;
        keep.extend(recipe.entries.iter().map(|e| e.id));
    }
    Ok(keep)
}

/// The commits whose files stay: each worktree's HEAD, the stash (with its index and
/// untracked parents), recent commits of every ref and commits on no remote-tracking ref.
fn kept_commits() -> Result<Vec<String>> {
    let mut commits: Vec<String> = Vec::new();
    let worktrees = git::run(&["worktree", "list", "--porcelain"])?;
    commits.extend(
        worktrees
            .lines()
            .filter_map(|l| l.strip_prefix("HEAD "))
            .map(str::to_string),
    );
    let days = git::config_usize("dits.pruneRecentDays", 7);
    let lists = [
        git::try_run(&["rev-list", "--all", &format!("--since={days}.days.ago")]),
        git::try_run(&["rev-list", "--branches", "--tags", "--not", "--remotes"]),
        git::try_run(&["log", "-g", "--format=%H %P", "refs/stash"]),
    ];
    for list in lists.into_iter().flatten() {
        commits.extend(list.split_whitespace().map(str::to_string));
    }
    commits.retain(|c| c.len() >= 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    commits.sort();
    commits.dedup();
    Ok(commits)
}

/// The small blobs (pointer-sized) in the trees of `commits`.
fn pointer_candidates(commits: &[String]) -> Result<Vec<String>> {
    if commits.is_empty() {
        return Ok(Vec::new());
    }
    let mut child = Command::new("git")
        .args(["rev-list", "--objects", "--no-object-names", "--no-walk"])
        .arg("--filter=object:type=blob")
        .arg(format!("--filter=blob:limit={MAX_POINTER_LEN}"))
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting git rev-list")?;
    let mut stdin = child.stdin.take().context("rev-list stdin")?;
    let list: String = commits.iter().map(|c| format!("{c}\n")).collect();
    let feeder = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
    let out = child.wait_with_output().context("running git rev-list")?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("feeding git rev-list"))?
        .context("feeding git rev-list")?;
    if !out.status.success() {
        bail!("git rev-list --objects over the kept commits failed");
    }
    // Commits are listed too; cat-file tells them apart later.
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Which of `ids` the hub (the default remote) does not hold.
fn lacking_on_hub(ids: &HashSet<ChunkId>) -> Result<HashSet<ChunkId>> {
    let url = default_remote_url()?;
    let ids: Vec<ChunkId> = ids.iter().copied().collect();
    let runtime = git_remote_dits::runtime()?;
    runtime.block_on(async {
        let session = connect(&url).await?;
        let lacking = session.hub.missing(&ids).await;
        session.close().await;
        let lacking = lacking.map_err(|e| session.explain(e))?;
        Ok(lacking.into_iter().collect())
    })
}
