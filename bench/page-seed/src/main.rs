//! `dits-page-seed DATA OWNER/NAME COMMITS ASSETS_PER_COMMIT`: records COMMITS synthetic
//! commits, each changing ASSETS_PER_COMMIT media files, in the commit index of the hub
//! whose data directory is DATA (SQLite, or `DITS_HUB_METADATA`), so bench/pages.sh can
//! time the pages on a repository of that size without pushing terabytes. Prints the
//! recipe of the newest commit's first asset.

use std::collections::HashMap;

use anyhow::Context;
use dits_core::pointer::Pointer;
use dits_core::ChunkId;
use dits_hub::mirror::IndexedCommit;

/// Commits recorded per call (one transaction each).
const BATCH: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, repo, commits, per_commit] = args.as_slice() else {
        anyhow::bail!("usage: dits-page-seed DATA OWNER/NAME COMMITS ASSETS_PER_COMMIT");
    };
    let (commits, per_commit): (usize, usize) = (commits.parse()?, per_commit.parse()?);
    let (owner, name) = repo.split_once('/').context("OWNER/NAME")?;
    let metadata = std::env::var("DITS_HUB_METADATA").ok();
    let meta = dits_hub::backends::open_metadata(std::path::Path::new(data), metadata.as_deref())
        .await?
        .meta;
    let repo = meta
        .find_repo(owner, name)
        .await?
        .with_context(|| format!("no repository {owner}/{name}: create it first"))?;
    let id = |kind: &str, i: usize, j: usize| ChunkId::of(format!("{kind}/{i}/{j}").as_bytes());
    let mut parent: Option<String> = None;
    let mut newest = String::new();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..commits {
        let oid = id("commit", i, 0).to_hex()[..40].to_string();
        let pointers = (0..per_commit)
            .map(|j| {
                let pointer = Pointer {
                    media: "mov duration=12.00s tracks=vide:avc1:1920x1080,soun:mp4a".into(),
                    oid: id("file", i, j),
                    recipe: id("recipe", i, j),
                    size: 400_000_000 + (i * per_commit + j) as u64,
                };
                (format!("shots/sc{:04}/take{j:02}.mov", i / 10), pointer)
            })
            .collect::<Vec<_>>();
        if let Some((_, p)) = pointers.first() {
            newest = p.recipe.to_hex();
        }
        // Each scene's takes are re-cut ten times: later cuts replace the one before and
        // share most of its bytes, as the indexer records them.
        let (mut previous, mut shared) = (HashMap::new(), HashMap::new());
        if i % 10 != 0 {
            for (j, (path, p)) in pointers.iter().enumerate() {
                previous.insert(path.clone(), id("recipe", i - 1, j));
                shared.insert(path.clone(), p.size * 9 / 10);
            }
        }
        batch.push(IndexedCommit {
            oid: oid.clone(),
            parents: parent.iter().cloned().collect(),
            author: "Bench <bench@dits.invalid>".into(),
            time: 1_767_225_600 + i as i64 * 60,
            message: format!("Take {i}: conform and grade"),
            pointers,
            projects: Vec::new(),
            previous,
            shared,
        });
        parent = Some(oid);
        if batch.len() == BATCH || i + 1 == commits {
            meta.record_commits(repo, &batch).await?;
            batch.clear();
        }
    }
    println!("{newest}");
    Ok(())
}
