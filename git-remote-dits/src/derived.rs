//! Fetching what the hub's workers made of assets (proxies, posters, strips) into local
//! files: `git dits proxy` and `git dits mount --proxies` share it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dits_core::ChunkId;

use crate::session::{connect, default_remote_url};

/// One derived object to fetch: of the asset with recipe `recipe`, written to `to`.
pub struct Wanted {
    pub recipe: ChunkId,
    pub to: PathBuf,
}

/// Fetches `kind` of each of `wanted` from the default remote over one connection,
/// writing each file whole or not at all. Per item: its size, or why there is none (not
/// made yet, not video, a transcode that failed). Connecting is the only failure that
/// fails the whole call.
pub fn fetch(wanted: &[Wanted], kind: &str) -> Result<Vec<Result<u64, String>>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let url = default_remote_url()?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let session = connect(&url).await?;
        let mut out = Vec::with_capacity(wanted.len());
        for w in wanted {
            let result = match session.hub.get_derived(&w.recipe, kind).await {
                Ok(bytes) => write_atomically(&w.to, &bytes)
                    .map(|()| bytes.len() as u64)
                    .map_err(|e| format!("{e:#}")),
                Err(e) => Err(format!("{:#}", session.explain(e))),
            };
            out.push(result);
        }
        session.close().await;
        Ok(out)
    })
}

/// Writes `bytes` next to `to` and renames it into place, so a reader never sees half a
/// file.
fn write_atomically(to: &Path, bytes: &[u8]) -> Result<()> {
    let dir = to.parent().context("a derived file's path has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("writing {}", to.display()))?;
    tmp.persist(to)
        .with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}
