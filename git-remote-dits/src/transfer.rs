//! Moving objects between the local store and a hub. Uploads stream in batches of about
//! 48 MiB (one hub pack each, durable on the hub before it answers): objects go on the
//! wire as they are read, and up to four batches are open at once, so the next batch sends
//! while the hub makes the last one durable. Downloads ask for up to four batches at once
//! on parallel QUIC streams and store objects as they land, within fixed memory budgets
//! (see [`download`]). Both are tunable (see [`Tuning`]). A batch that arrived stays;
//! an interrupted transfer re-run sends only what the hub (or the local store) still lacks.

use crate::client::{Hub, HubError};
use anyhow::Result;
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

/// Objects read ahead of the wire per upload stream: bounds the memory an upload holds
/// (objects are at most a few hundred KiB) whatever the batch size.
const UPLOAD_READ_AHEAD: usize = 32;
/// Sealed bytes read ahead of the wire across all upload streams: the local store may
/// hold objects of up to 64 MiB (structure boxes, or what a hub sent), and 32 of those
/// per stream would be 2 GiB.
const UPLOAD_READ_AHEAD_BYTES: usize = 64 << 20;

/// An object read for upload with its share of [`UPLOAD_READ_AHEAD_BYTES`], given back
/// once it is on the wire.
struct ReadAhead {
    id: ChunkId,
    plain_len: u32,
    sealed: Vec<u8>,
    _room: tokio::sync::OwnedSemaphorePermit,
}

impl crate::client::OutgoingObject for ReadAhead {
    fn parts(&self) -> (ChunkId, u32, &[u8]) {
        (self.id, self.plain_len, &self.sealed)
    }
}

/// Uploads `ids` (which the hub lacks) from the local store; returns bytes sent. Objects
/// stream to the hub as they are read: a batch is one stream (one hub pack), and while it
/// waits for the hub to make its pack durable the next batch is already sending.
///
/// When the connection dies the upload waits for a new one and goes on with what the hub
/// still lacks: the hub keeps every object that arrived whole, even from a batch cut
/// short, so only what was on the wire at that moment is sent again.
pub async fn upload(
    session: &Session,
    store: &mut LocalStore,
    ids: &[ChunkId],
    show: bool,
) -> Result<u64> {
    let mut progress = Progress::new("Uploading media", ids.len() as u64, 0, show);
    let tuning = Tuning::from_config();
    // Straight to the object store when the hub offers it; the rest through the hub.
    let (mut left, mut sent) = crate::direct::upload(
        &session.hub,
        store,
        ids,
        tuning.batch_bytes,
        tuning.parallel,
        &mut progress,
    )
    .await?;
    let hubs = session.connections().await;
    loop {
        let generations: Vec<u64> = hubs.iter().map(Hub::generation).collect();
        match upload_once(hubs, store, &left, &mut progress, &mut sent).await {
            Ok(()) => break,
            Err(Stopped::Hub(e @ HubError::Transport(_))) => {
                // Whichever connections died come back; if none did, the error stands.
                let lost: Vec<(&Hub, u64)> = hubs
                    .iter()
                    .zip(generations)
                    .filter(|(hub, generation)| hub.lost(*generation))
                    .collect();
                if lost.is_empty() {
                    return Err(session.explain(e));
                }
                for (hub, generation) in lost {
                    hub.recover(generation, e.clone())
                        .await
                        .map_err(|e| session.explain(e))?;
                }
                left = session
                    .hub
                    .missing(&left)
                    .await
                    .map_err(|e| session.explain(e))?;
                progress.set_done((ids.len() - left.len()) as u64);
            }
            Err(Stopped::Hub(e)) => return Err(session.explain(e)),
            Err(Stopped::Local(e)) => return Err(e),
        }
    }
    progress.finish();
    Ok(sent)
}

/// Why one pass of an upload stopped.
enum Stopped {
    /// The hub refused, or the connection failed.
    Hub(HubError),
    /// Reading the local store, or a task.
    Local(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Stopped {
    fn from(e: E) -> Self {
        Stopped::Local(e.into())
    }
}

/// One pass of [`upload`] over `ids`, batch after batch over `hubs` in turn, adding the
/// bytes the hub confirmed to `sent`.
async fn upload_once(
    hubs: &[Hub],
    store: &mut LocalStore,
    ids: &[ChunkId],
    progress: &mut Progress,
    sent: &mut u64,
) -> Result<(), Stopped> {
    let tuning = Tuning::from_config();
    let mut tasks: JoinSet<Result<PutResult, HubError>> = JoinSet::new();
    let mut batch: Option<tokio::sync::mpsc::Sender<ReadAhead>> = None;
    let read_ahead =
        std::sync::Arc::new(tokio::sync::Semaphore::new(UPLOAD_READ_AHEAD_BYTES / 1024));
    let mut batch_bytes = 0usize;
    let reap = |r: Result<Result<PutResult, HubError>, tokio::task::JoinError>,
                progress: &mut Progress,
                sent: &mut u64|
     -> Result<(), Stopped> {
        let answer = r
            .map_err(|e| Stopped::Local(anyhow::anyhow!("upload task: {e}")))?
            .map_err(Stopped::Hub)?;
        progress.add(answer.received, answer.bytes);
        tracing::debug!(
            objects = answer.received,
            bytes = answer.bytes,
            "batch stored"
        );
        *sent += answer.bytes;
        Ok(())
    };
    let mut batches = 0;
    for (i, id) in ids.iter().enumerate() {
        if batch.is_none() {
            while tasks.len() >= tuning.parallel {
                let r = tasks.join_next().await.expect("tasks pending");
                reap(r, progress, sent)?;
            }
            let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_READ_AHEAD);
            let hub = hubs[batches % hubs.len()].clone();
            batches += 1;
            tasks.spawn(async move { hub.put_object_stream(rx).await });
            batch = Some(tx);
            batch_bytes = 0;
        }
        // Objects travel in the envelope they are stored in (recipes and boxes compressed,
        // media as probed at add time); the hub opens and hashes each one, so a corrupt
        // local copy is refused there rather than trusted.
        let stored = store.stored_len(id)?.unwrap_or(0) as usize;
        let room = read_ahead
            .clone()
            .acquire_many_owned(permits(stored, UPLOAD_READ_AHEAD_BYTES))
            .await?;
        let (plain_len, sealed) = store.get_sealed(id)?;
        batch_bytes += sealed.len();
        let tx = batch.as_ref().expect("a batch is open");
        let object = ReadAhead {
            id: *id,
            plain_len,
            sealed,
            _room: room,
        };
        if tx.send(object).await.is_err() {
            // The stream ended early: its task holds the reason.
            drop(batch.take());
            while let Some(r) = tasks.join_next().await {
                reap(r, progress, sent)?;
            }
            return Err(
                anyhow::anyhow!("upload stream closed before all objects were sent").into(),
            );
        }
        if batch_bytes >= tuning.batch_bytes || i + 1 == ids.len() {
            batch = None;
        }
    }
    drop(batch);
    // Every batch is waited for, even after one failed: each one the hub answers is
    // counted, so a resumed upload knows what it already sent.
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = reap(r, progress, sent) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Sealed bytes of downloaded objects waiting for the local store, across all streams.
const DOWNLOAD_QUEUE_BYTES: usize = 64 << 20;
/// Plaintext being verified at once, across all streams: an object that compresses to
/// nothing on the wire still expands to its full length (up to 64 MiB) while it is hashed.
const VERIFY_BYTES: usize = 128 << 20;
/// Downloaded bytes written between two flushes of the local store (each flush makes what
/// arrived durable, so an interrupted download resumes from there).
const FLUSH_BYTES: u64 = 48 << 20;
/// `dits.concurrentTransfers` above this is taken as this: each stream may be reading one
/// object of up to 64 MiB.
const MAX_PARALLEL: usize = 16;

/// Bytes as semaphore permits (KiB, rounded up, never more than the whole budget).
fn permits(bytes: usize, budget: usize) -> u32 {
    bytes.div_ceil(1024).clamp(1, budget / 1024) as u32
}

/// An object checked against its id, with the queue room it holds until it is stored.
struct Landed {
    id: ChunkId,
    plain_len: u32,
    sealed: Vec<u8>,
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// Downloads `ids` into the local store as they arrive, flushing every [`FLUSH_BYTES`];
/// returns bytes received.
///
/// Memory is bounded by constants, not by batch sizes or what the hub sends: each of at
/// most [`MAX_PARALLEL`] streams reads one object at a time (≤ 64 MiB sealed, as the wire
/// allows); verifying holds at most [`VERIFY_BYTES`] of plaintext in all; verified objects
/// wait for the store in their sealed form, at most [`DOWNLOAD_QUEUE_BYTES`] in all, and
/// are stored as they came (no plaintext copy, no re-compression).
pub async fn download(
    session: &Session,
    store: &mut LocalStore,
    ids: &[ChunkId],
    show: bool,
) -> Result<u64> {
    use std::sync::Arc;
    use tokio::sync::{mpsc, Semaphore};
    let tuning = Tuning::from_config();
    let parallel = tuning.parallel.clamp(1, MAX_PARALLEL);
    let mut progress = Progress::new("Downloading media", ids.len() as u64, 0, show);
    let queue = Arc::new(Semaphore::new(DOWNLOAD_QUEUE_BYTES / 1024));
    let verifying = Arc::new(Semaphore::new(VERIFY_BYTES / 1024));
    let (tx, mut rx) = mpsc::unbounded_channel::<Landed>();
    let landing = Landing {
        tx,
        queue,
        verifying,
    };
    let batches: Vec<Vec<ChunkId>> = ids.chunks(BATCH_IDS).map(<[ChunkId]>::to_vec).collect();
    let hubs = session.connections().await.to_vec();
    let driver = tokio::spawn(async move {
        let mut tasks: JoinSet<Result<(), HubError>> = JoinSet::new();
        let mut batches = batches.into_iter().enumerate();
        loop {
            while tasks.len() < parallel {
                let Some((n, batch)) = batches.next() else {
                    break;
                };
                let hub = hubs[n % hubs.len()].clone();
                let landing = landing.clone();
                tasks.spawn(async move {
                    // Straight from the object store when the hub offers it; whatever
                    // that did not bring comes through the hub.
                    let batch = crate::direct::fetch(&hub, &batch, &landing).await;
                    // Objects of `batch` already handed on; after a reconnection only
                    // the rest are asked for.
                    let mut done = 0;
                    loop {
                        let generation = hub.generation();
                        let fetched = fetch_batch(&hub, &batch, &mut done, &landing).await;
                        if hub.again(generation, fetched).await?.is_some() {
                            return Ok(());
                        }
                    }
                });
            }
            match tasks.join_next().await {
                None => return Ok(()),
                Some(r) => r.map_err(|e| HubError::Transport(format!("download task: {e}")))??,
            }
        }
    });
    let mut received = 0u64;
    let mut unflushed = 0u64;
    let written = async {
        while let Some(landed) = rx.recv().await {
            store.put_verified_sealed(&landed.id, landed.plain_len, &landed.sealed)?;
            let bytes = u64::from(landed.plain_len);
            received += bytes;
            unflushed += landed.sealed.len() as u64;
            progress.add(1, bytes);
            if unflushed >= FLUSH_BYTES {
                store.flush()?;
                unflushed = 0;
            }
        }
        store.flush()?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = written {
        driver.abort();
        return Err(e);
    }
    driver
        .await
        .map_err(|e| anyhow::anyhow!("download: {e}"))?
        .map_err(|e| session.explain(e))?;
    progress.finish();
    Ok(received)
}

/// Where downloaded objects go once verified: the writer's queue, and the budgets that
/// bound what verifying and queueing hold.
#[derive(Clone)]
pub(crate) struct Landing {
    tx: tokio::sync::mpsc::UnboundedSender<Landed>,
    queue: std::sync::Arc<tokio::sync::Semaphore>,
    verifying: std::sync::Arc<tokio::sync::Semaphore>,
}

/// What became of an object given to [`Landing::land`].
pub(crate) enum Handed {
    /// Verified and queued for the local store.
    Queued,
    /// Its bytes do not hash to its id.
    Corrupt,
    /// The writer stopped (it reports why).
    WriterGone,
}

impl Landing {
    /// Verifies `object` against its id and queues it for the local store.
    pub(crate) async fn land(&self, object: dits_wire::wire::WireObject) -> Handed {
        let plain = object.plain_len as usize;
        let Ok(checking) = self
            .verifying
            .clone()
            .acquire_many_owned(permits(plain, VERIFY_BYTES))
            .await
        else {
            return Handed::WriterGone;
        };
        if object.verify().is_err() {
            return Handed::Corrupt;
        }
        drop(checking);
        let Ok(room) = self
            .queue
            .clone()
            .acquire_many_owned(permits(object.sealed.len(), DOWNLOAD_QUEUE_BYTES))
            .await
        else {
            return Handed::WriterGone;
        };
        let landed = Landed {
            id: object.id,
            plain_len: object.plain_len,
            sealed: object.sealed,
            _room: room,
        };
        match self.tx.send(landed) {
            Ok(()) => Handed::Queued,
            Err(_) => Handed::WriterGone,
        }
    }
}

/// Reads `batch[*done..]` from the hub, verifies each object and hands it to the writer,
/// counting it in `done` once it is handed on.
async fn fetch_batch(
    hub: &Hub,
    batch: &[ChunkId],
    done: &mut usize,
    landing: &Landing,
) -> Result<(), HubError> {
    if *done == batch.len() {
        return Ok(());
    }
    if *done > 0 {
        tracing::debug!(had = *done, asked = batch.len() - *done, "batch resumed");
    }
    let mut objects = hub.get_object_stream(&batch[*done..]).await?;
    while let Some(object) = objects.next().await? {
        let id = object.id;
        match landing.land(object).await {
            Handed::Queued => *done += 1,
            Handed::Corrupt => return Err(objects.corrupt(&id)),
            Handed::WriterGone => return Ok(()),
        }
    }
    Ok(())
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
