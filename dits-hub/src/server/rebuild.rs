//! Rebuilding a stored file from its recipe on the hub: for the transcodes (the whole
//! file, to a scratch file) and for downloads from the pages (any byte range, streamed).
//! Every object is verified against its id as it is read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use dits_core::envelope::CompressionHint;
use dits_core::recipe::Recipe;
use dits_core::smudge::EntryReader;
use dits_core::store::{ChunkStore, StoreError};
use dits_core::ChunkId;

use crate::server::objects::read_plain;
use crate::server::state::HubState;

/// The hub's stored objects as a read-only [`ChunkStore`], for a rebuild (which runs on
/// a blocking thread and waits on the hub's runtime for each read).
struct HubObjects<'a> {
    state: &'a HubState,
    handle: &'a tokio::runtime::Handle,
}

fn unreadable(e: anyhow::Error) -> StoreError {
    StoreError::Io {
        path: PathBuf::from("the hub's object store"),
        source: std::io::Error::other(format!("{e:#}")),
    }
}

impl ChunkStore for HubObjects<'_> {
    fn contains(&self, id: &ChunkId) -> Result<bool, StoreError> {
        let found = self
            .handle
            .block_on(self.state.meta.locations(std::slice::from_ref(id)))
            .map_err(unreadable)?;
        Ok(found.first().is_some_and(Option::is_some))
    }

    fn put(&mut self, _: &ChunkId, _: &[u8], _: CompressionHint) -> Result<bool, StoreError> {
        Err(unreadable(anyhow::anyhow!(
            "a rebuild does not store objects"
        )))
    }

    fn get(&mut self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        self.handle
            .block_on(read_plain(self.state, id))
            .map_err(unreadable)
    }
}

/// Writes bytes `[start, end)` of the file `recipe` (whose id is `id`) describes to
/// `out`, reading only the objects that range needs. Call it on a blocking thread.
pub fn write_range(
    state: &HubState,
    handle: &tokio::runtime::Handle,
    id: &ChunkId,
    recipe: &Recipe,
    start: u64,
    end: u64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut store = HubObjects { state, handle };
    let mut reader = EntryReader::new(*id);
    let first = recipe.entry_at(start).unwrap_or(recipe.entries.len());
    for e in recipe.entries[first..]
        .iter()
        .take_while(|e| e.offset < end)
    {
        let bytes = reader.read(&mut store, e)?;
        let from = start.saturating_sub(e.offset) as usize;
        let to = (end.min(e.end()) - e.offset) as usize;
        out.write_all(&bytes[from..to])
            .context("writing the rebuilt file")?;
    }
    Ok(())
}
