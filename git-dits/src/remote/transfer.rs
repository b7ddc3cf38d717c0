//! Moving objects between the local store and a hub: batches of up to 32 MiB (one hub
//! pack each, durable on the hub before it answers), four in flight at once on parallel
//! QUIC streams. A batch that arrived stays; an interrupted transfer re-run sends only
//! what the hub (or the local store) still lacks.

use anyhow::Result;
use dits_core::envelope::CompressionHint;
use dits_core::{ChunkId, ChunkStore, LocalStore};
use dits_remote::HubError;
use tokio::task::JoinSet;

use super::progress::Progress;
use super::session::Session;

const BATCH_BYTES: usize = 32 << 20;
/// Objects per download request: chunks are ≤ 256 KiB, so a batch stays near 32 MiB.
const BATCH_IDS: usize = 128;
const PARALLEL: usize = 4;

type Objects = Vec<(ChunkId, Vec<u8>)>;

/// Uploads `ids` (which the hub lacks) from the local store; returns bytes sent.
pub async fn upload(
    session: &Session,
    store: &mut LocalStore,
    ids: &[ChunkId],
    show: bool,
) -> Result<u64> {
    let mut progress = Progress::new("Uploading media", ids.len() as u64, 0, show);
    let mut tasks: JoinSet<Result<(u64, u64), HubError>> = JoinSet::new();
    let mut batch: Vec<(ChunkId, u32, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut sent = 0u64;
    let reap = |r: Result<Result<(u64, u64), HubError>, tokio::task::JoinError>,
                progress: &mut Progress|
     -> Result<u64> {
        let (n, bytes) = r
            .map_err(|e| anyhow::anyhow!("upload task: {e}"))?
            .map_err(|e| session.explain(e))?;
        progress.add(n, bytes);
        Ok(bytes)
    };
    for (i, id) in ids.iter().enumerate() {
        let bytes = store.get(id)?;
        // Recipes and boxes travel compressed; media chunks only if a probe says it pays.
        let sealed = dits_core::envelope::seal(&bytes, CompressionHint::Probe);
        batch_bytes += sealed.len();
        batch.push((*id, bytes.len() as u32, sealed));
        if batch_bytes >= BATCH_BYTES || i + 1 == ids.len() {
            let hub = session.hub.clone();
            let objects = std::mem::take(&mut batch);
            batch_bytes = 0;
            tasks.spawn(async move {
                let n = objects.len() as u64;
                let bytes = hub.put_objects(&objects).await?;
                Ok((n, bytes))
            });
            while tasks.len() >= PARALLEL {
                let r = tasks.join_next().await.expect("tasks pending");
                sent += reap(r, &mut progress)?;
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        sent += reap(r, &mut progress)?;
    }
    progress.finish();
    Ok(sent)
}

/// Downloads `ids` into the local store, making each batch durable as it lands; returns
/// bytes received.
pub async fn download(
    session: &Session,
    store: &mut LocalStore,
    ids: &[ChunkId],
    show: bool,
) -> Result<u64> {
    let mut progress = Progress::new("Downloading media", ids.len() as u64, 0, show);
    let mut tasks: JoinSet<Result<Objects, HubError>> = JoinSet::new();
    let mut received = 0u64;
    let mut batches = ids.chunks(BATCH_IDS);
    loop {
        while tasks.len() < PARALLEL {
            let Some(batch) = batches.next() else { break };
            let hub = session.hub.clone();
            let batch = batch.to_vec();
            tasks.spawn(async move {
                let mut out = Vec::with_capacity(batch.len());
                hub.get_objects(&batch, |id, bytes| {
                    out.push((id, bytes));
                    Ok(())
                })
                .await?;
                Ok(out)
            });
        }
        let Some(r) = tasks.join_next().await else {
            break;
        };
        let objects = r
            .map_err(|e| anyhow::anyhow!("download task: {e}"))?
            .map_err(|e| session.explain(e))?;
        let mut bytes = 0u64;
        for (id, data) in &objects {
            store.put(id, data, CompressionHint::Probe)?;
            bytes += data.len() as u64;
        }
        store.flush()?;
        received += bytes;
        progress.add(objects.len() as u64, bytes);
    }
    progress.finish();
    Ok(received)
}

/// Fetches whichever of `ids` the local store lacks.
pub async fn fetch_missing(
    session: &Session,
    store: &mut LocalStore,
    ids: &[ChunkId],
    show: bool,
) -> Result<u64> {
    let mut missing = Vec::new();
    for id in ids {
        if !store.contains(id)? {
            missing.push(*id);
        }
    }
    if missing.is_empty() {
        return Ok(0);
    }
    download(session, store, &missing, show).await
}
