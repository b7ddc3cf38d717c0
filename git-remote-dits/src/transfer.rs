//! Moving objects between the local store and a hub. Uploads stream in batches of about
//! 48 MiB (one hub pack each, durable on the hub before it answers): objects go on the
//! wire as they are read, and up to four batches are open at once, so the next batch sends
//! while the hub makes the last one durable. Downloads ask for up to four batches at once
//! on parallel QUIC streams. Both are tunable (see [`Tuning`]). A batch that arrived stays;
//! an interrupted transfer re-run sends only what the hub (or the local store) still lacks.

use crate::client::HubError;
use anyhow::Result;
use dits_core::envelope::CompressionHint;
use dits_core::{ChunkId, ChunkStore, LocalStore};
use dits_wire::wire::PutResult;
use tokio::task::JoinSet;

use crate::progress::Progress;
use crate::session::Session;

/// Objects per download request: chunks are ≤ 256 KiB, so a batch stays near 32 MiB.
const BATCH_IDS: usize = 128;

/// Transfer sizing from `git config`: `dits.transferBatchSize` (bytes per upload batch,
/// hence per hub pack; default 48m, so about 21 packs, and S3 PUTs, per GB) and
/// `dits.concurrentTransfers` (batches in flight, default 4, like
/// `lfs.concurrenttransfers`).
struct Tuning {
    batch_bytes: usize,
    parallel: usize,
}

impl Tuning {
    fn from_config() -> Tuning {
        Tuning {
            batch_bytes: crate::git::config_usize("dits.transferBatchSize", 48 << 20),
            parallel: crate::git::config_usize("dits.concurrentTransfers", 4),
        }
    }
}

type Objects = Vec<(ChunkId, Vec<u8>)>;

/// Objects read ahead of the wire per upload stream: bounds the memory an upload holds
/// (objects are at most a few hundred KiB) whatever the batch size.
const UPLOAD_READ_AHEAD: usize = 32;

/// Uploads `ids` (which the hub lacks) from the local store; returns bytes sent. Objects
/// stream to the hub as they are read: a batch is one stream (one hub pack), and while it
/// waits for the hub to make its pack durable the next batch is already sending.
pub async fn upload(
    session: &Session,
    store: &mut LocalStore,
    ids: &[ChunkId],
    show: bool,
) -> Result<u64> {
    let tuning = Tuning::from_config();
    let mut progress = Progress::new("Uploading media", ids.len() as u64, 0, show);
    let mut tasks: JoinSet<Result<PutResult, HubError>> = JoinSet::new();
    let mut batch: Option<tokio::sync::mpsc::Sender<(ChunkId, u32, Vec<u8>)>> = None;
    let mut batch_bytes = 0usize;
    let mut sent = 0u64;
    let reap = |r: Result<Result<PutResult, HubError>, tokio::task::JoinError>,
                progress: &mut Progress|
     -> Result<u64> {
        let answer = r
            .map_err(|e| anyhow::anyhow!("upload task: {e}"))?
            .map_err(|e| session.explain(e))?;
        progress.add(answer.received, answer.bytes);
        Ok(answer.bytes)
    };
    for (i, id) in ids.iter().enumerate() {
        if batch.is_none() {
            while tasks.len() >= tuning.parallel {
                let r = tasks.join_next().await.expect("tasks pending");
                sent += reap(r, &mut progress)?;
            }
            let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_READ_AHEAD);
            let hub = session.hub.clone();
            tasks.spawn(async move { hub.put_object_stream(rx).await });
            batch = Some(tx);
            batch_bytes = 0;
        }
        // Objects travel in the envelope they are stored in (recipes and boxes compressed,
        // media as probed at add time); the hub opens and hashes each one, so a corrupt
        // local copy is refused there rather than trusted.
        let (plain_len, sealed) = store.get_sealed(id)?;
        batch_bytes += sealed.len();
        let tx = batch.as_ref().expect("a batch is open");
        if tx.send((*id, plain_len, sealed)).await.is_err() {
            // The stream ended early: its task holds the reason.
            drop(batch.take());
            while let Some(r) = tasks.join_next().await {
                reap(r, &mut progress)?;
            }
            anyhow::bail!("upload stream closed before all objects were sent");
        }
        if batch_bytes >= tuning.batch_bytes || i + 1 == ids.len() {
            batch = None;
        }
    }
    drop(batch);
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
    let tuning = Tuning::from_config();
    let mut progress = Progress::new("Downloading media", ids.len() as u64, 0, show);
    let mut tasks: JoinSet<Result<Objects, HubError>> = JoinSet::new();
    let mut received = 0u64;
    let mut batches = ids.chunks(BATCH_IDS);
    loop {
        while tasks.len() < tuning.parallel {
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
    // Each once: the hub refuses a request that names an object twice.
    let mut asked = std::collections::HashSet::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        if asked.insert(*id) && !store.contains(id)? {
            missing.push(*id);
        }
    }
    if missing.is_empty() {
        return Ok(0);
    }
    download(session, store, &missing, show).await
}

/// Brings everything `pointers` need into the local store: their missing recipes in one
/// transfer, then every missing object they list in another. Returns bytes received.
pub async fn fetch_media(
    session: &Session,
    store: &mut LocalStore,
    pointers: &[dits_core::Pointer],
    show: bool,
) -> Result<u64> {
    let recipes: Vec<ChunkId> = pointers.iter().map(|p| p.recipe).collect();
    let mut bytes = fetch_missing(session, store, &recipes, show).await?;
    let (ids, _) = crate::media::objects_for(store, pointers)?;
    bytes += fetch_missing(session, store, &ids, show).await?;
    Ok(bytes)
}
