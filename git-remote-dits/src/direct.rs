//! Direct transfers: when the hub offers them (an S3 store, `--direct-transfers`), object
//! bytes move between this client and the hub's object store over HTTPS through
//! short-lived signed URLs, and the hub only answers questions about them.
//!
//! Downloads: `get-urls` gives ranged reads of the hub's packs; every object read is
//! verified against its id here, as on the QUIC path. Uploads: each batch becomes one
//! pack, PUT to a signed URL and declared with `put-done`; the hub's workers read it back
//! and verify every id before any of it counts, and the push waits for that before it
//! moves a ref (the hub refuses a ref onto objects it has not verified anyway).
//!
//! Anything the direct path cannot do (a hub or store that does not offer it, an
//! encrypted repository, a failed HTTP request) falls back to the QUIC path for the
//! objects concerned. `dits.directTransfers=false` turns it off. Signed URLs are
//! credentials: they are never logged or shown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use dits_core::{ChunkId, LocalStore};
use dits_wire::wire::{DirectObject, DirectRange, WireObject};

use crate::client::Hub;
use crate::progress::Progress;
use crate::transfer::{Handed, Landing};

/// Set once the hub said it does not offer direct transfers: later batches of this
/// process go straight to the QUIC path without asking again.
static NOT_OFFERED: AtomicBool = AtomicBool::new(false);

/// Whether to ask the hub for direct transfers at all. `dits.directTransfers` is read
/// once per process (it is asked for every download batch, and each read runs `git`).
fn wanted(hub: &Hub) -> bool {
    static CONFIGURED: OnceLock<bool> = OnceLock::new();
    !hub.encrypted()
        && !NOT_OFFERED.load(Ordering::Relaxed)
        && *CONFIGURED.get_or_init(|| crate::git::config_bool("dits.directTransfers", true))
}

/// One HTTP client per process (its connection pool is shared by every batch).
fn http() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .user_agent(concat!("git-remote-dits/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("starting the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// An HTTP failure without the URL (a signed URL is a credential, and reqwest's own
/// messages quote it).
fn describe(e: &reqwest::Error) -> String {
    if let Some(status) = e.status() {
        format!("the store answered {status}")
    } else if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        "could not connect to the store".into()
    } else if e.is_body() || e.is_decode() {
        "the transfer broke off".into()
    } else {
        "the request failed".into()
    }
}

/// Downloads what it can of `batch` straight from the object store into `landing`;
/// returns the ids it did not bring (all of them when the hub does not offer direct
/// transfers), for the QUIC path.
pub(crate) async fn fetch(hub: &Hub, batch: &[ChunkId], landing: &Landing) -> Vec<ChunkId> {
    if batch.is_empty() || !wanted(hub) {
        return batch.to_vec();
    }
    let answer = match hub.get_urls(batch).await {
        Ok(answer) => answer,
        // A refusal (an old hub, an object it lacks) or a lost connection: the QUIC
        // path says so, or reconnects.
        Err(e) => {
            tracing::debug!("get-urls: {e}; using the hub");
            return batch.to_vec();
        }
    };
    if !answer.direct {
        NOT_OFFERED.store(true, Ordering::Relaxed);
        return batch.to_vec();
    }
    let mut brought: HashSet<ChunkId> = HashSet::with_capacity(batch.len());
    for range in &answer.ranges {
        match fetch_range(range, landing, &mut brought).await {
            Ok(true) => {}
            Ok(false) => return Vec::new(),
            Err(why) => {
                tracing::warn!(
                    "reading {} bytes straight from the hub's store: {why}; fetching the rest through the hub",
                    range.len
                );
                break;
            }
        }
    }
    batch
        .iter()
        .filter(|id| !brought.contains(id))
        .copied()
        .collect()
}

/// Reads one range and lands its objects, adding each to `brought`. `Ok(false)`: the
/// writer stopped (it reports why).
async fn fetch_range(
    range: &DirectRange,
    landing: &Landing,
    brought: &mut HashSet<ChunkId>,
) -> Result<bool, String> {
    if range.len == 0 || range.len > MAX_RANGE {
        return Err(format!("the hub offered a range of {} bytes", range.len));
    }
    let bytes = get_range(&range.url, range.offset, range.len).await?;
    for object in &range.objects {
        let id: ChunkId = object
            .id
            .parse()
            .map_err(|_| format!("the hub named {:?}, not an object id", object.id))?;
        let sealed = usize::try_from(object.at)
            .ok()
            .and_then(|from| bytes.get(from..from.checked_add(object.stored_len as usize)?))
            .ok_or_else(|| format!("object {} lies outside its range", id.short()))?;
        let wire = WireObject {
            id,
            plain_len: object.plain_len,
            sealed: sealed.to_vec(),
        };
        match landing.land(wire).await {
            Handed::Queued => {
                brought.insert(id);
            }
            Handed::Corrupt => {
                return Err(format!(
                    "object {} arrived corrupt (its bytes do not hash to its id)",
                    id.short()
                ))
            }
            Handed::WriterGone => return Ok(false),
        }
    }
    Ok(true)
}

/// The hub coalesces reads into at most 32 MiB; a range beyond this is not from a hub.
const MAX_RANGE: u64 = 64 << 20;

/// Bytes `[offset, offset + len)` of the blob `url` signs, exactly.
async fn get_range(url: &str, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let http = http()?;
    let mut response = http
        .get(url)
        .header(
            reqwest::header::RANGE,
            format!("bytes={offset}-{}", offset + len - 1),
        )
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status();
    // 200 is a whole blob: only what was asked for if the range is all of it.
    let whole_is_range =
        status == reqwest::StatusCode::OK && offset == 0 && response.content_length() == Some(len);
    if status != reqwest::StatusCode::PARTIAL_CONTENT && !whole_is_range {
        return Err(format!("the store answered {status}"));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if bytes.len() + chunk.len() > len as usize {
            return Err(format!(
                "the store sent more than the {len} bytes asked for"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != len {
        return Err(format!(
            "the store sent {} of the {len} bytes asked for",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Packs in memory at once while uploading: each is one batch
/// (`dits.transferBatchSize`, 48 MiB by default).
const UPLOAD_MEMORY: usize = 192 << 20;
/// How long a push waits for the hub to verify what it uploaded (`dits.verifyTimeout`,
/// seconds).
const VERIFY_TIMEOUT: u64 = 600;

/// One pack sent to the object store and declared, waiting for the hub's verdict.
struct Sent {
    upload: String,
    ids: Vec<ChunkId>,
    bytes: u64,
}

/// Uploads what it can of `ids` straight to the object store, batch by batch, and waits
/// until the hub has verified all of it; returns the ids it did not send (all of them
/// when the hub does not offer direct transfers), for the QUIC path, and the bytes it
/// sent. A pack the hub refuses is an error naming the reason.
pub(crate) async fn upload(
    hub: &Hub,
    store: &mut LocalStore,
    ids: &[ChunkId],
    batch_bytes: usize,
    parallel: usize,
    progress: &mut Progress,
) -> Result<(Vec<ChunkId>, u64)> {
    if ids.is_empty() || !wanted(hub) {
        return Ok((ids.to_vec(), 0));
    }
    let in_flight = parallel.clamp(1, (UPLOAD_MEMORY / batch_bytes.max(1)).max(1));
    let mut tasks: tokio::task::JoinSet<Result<Option<Sent>, String>> = tokio::task::JoinSet::new();
    let mut sent: Vec<Sent> = Vec::new();
    // Set once a batch could not go direct: the rest goes through the hub.
    let mut fall_back = false;
    let mut next = 0;
    while next < ids.len() || !tasks.is_empty() {
        while next < ids.len() && tasks.len() < in_flight && !fall_back {
            let (pack, objects, taken) = read_batch(store, &ids[next..], batch_bytes)?;
            let batch = ids[next..next + taken].to_vec();
            next += taken;
            let hub = hub.clone();
            tasks.spawn(async move { send_pack(&hub, pack, objects, batch).await });
        }
        if fall_back {
            next = ids.len();
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        match done.map_err(|e| anyhow::anyhow!("upload task: {e}"))? {
            Ok(Some(pack)) => {
                progress.add(pack.ids.len() as u64, pack.bytes);
                sent.push(pack);
            }
            Ok(None) => {
                NOT_OFFERED.store(true, Ordering::Relaxed);
                fall_back = true;
            }
            Err(why) => {
                tracing::warn!("uploading straight to the hub's store: {why}; sending the rest through the hub");
                fall_back = true;
            }
        }
    }
    // What a failed batch held, or was never read, goes through the hub, in order.
    let sent_ids: HashSet<ChunkId> = sent.iter().flat_map(|s| s.ids.iter().copied()).collect();
    let left: Vec<ChunkId> = ids
        .iter()
        .filter(|id| !sent_ids.contains(id))
        .copied()
        .collect();
    wait_verified(hub, &sent).await?;
    Ok((left, sent.iter().map(|s| s.bytes).sum()))
}

/// The next batch of `ids` as one pack: its bytes, its declared objects, and how many
/// ids it took (at least one).
fn read_batch(
    store: &mut LocalStore,
    ids: &[ChunkId],
    batch_bytes: usize,
) -> Result<(Vec<u8>, Vec<DirectObject>, usize)> {
    let mut pack = Vec::new();
    let mut objects = Vec::new();
    let mut taken = 0;
    for id in ids {
        if taken > 0 && pack.len() >= batch_bytes {
            break;
        }
        let (plain_len, sealed) = store.get_sealed(id)?;
        objects.push(DirectObject {
            id: id.to_hex(),
            at: pack.len() as u64,
            stored_len: sealed.len() as u32,
            plain_len,
        });
        pack.extend_from_slice(&sealed);
        taken += 1;
    }
    Ok((pack, objects, taken))
}

/// PUTs one pack to a signed URL and declares it. `Ok(None)`: the hub does not offer
/// direct uploads.
async fn send_pack(
    hub: &Hub,
    pack: Vec<u8>,
    objects: Vec<DirectObject>,
    ids: Vec<ChunkId>,
) -> Result<Option<Sent>, String> {
    let bytes = pack.len() as u64;
    let answer = hub
        .put_url(bytes)
        .await
        .map_err(|e| format!("put-url: {e}"))?;
    if !answer.direct {
        return Ok(None);
    }
    let response = http()?
        .put(&answer.url)
        .header(reqwest::header::CONTENT_LENGTH, bytes)
        .body(pack)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    if !response.status().is_success() {
        return Err(format!(
            "the store answered {} to an upload",
            response.status()
        ));
    }
    hub.put_done(&answer.upload, objects)
        .await
        .map_err(|e| format!("put-done: {e}"))?;
    Ok(Some(Sent {
        upload: answer.upload,
        ids,
        bytes,
    }))
}

/// Waits until the hub has verified every pack in `sent`; one it refused is an error.
async fn wait_verified(hub: &Hub, sent: &[Sent]) -> Result<()> {
    if sent.is_empty() {
        return Ok(());
    }
    let timeout = Duration::from_secs(crate::git::config_usize(
        "dits.verifyTimeout",
        VERIFY_TIMEOUT as usize,
    ) as u64);
    let started = Instant::now();
    let mut pending: Vec<String> = sent.iter().map(|s| s.upload.clone()).collect();
    let mut pause = Duration::from_millis(100);
    loop {
        let answer = hub
            .put_status(&pending)
            .await
            .map_err(|e| anyhow::anyhow!("asking the hub whether it verified the upload: {e}"))?;
        let mut still = Vec::new();
        for upload in answer.uploads {
            match upload.state.as_str() {
                "stored" => {}
                "pending" => still.push(upload.upload),
                _ => anyhow::bail!(
                    "the hub refused uploaded pack {}: {}; nothing from it was stored (run the push again; if it repeats, check the local store with `git dits fsck`)",
                    upload.upload,
                    upload.error.as_deref().unwrap_or("no reason given")
                ),
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            anyhow::bail!(
                "the hub has not verified {} uploaded packs after {} s (its workers may be stopped: see `dits-hub jobs`); nothing was pushed, run the push again later (dits.verifyTimeout sets the wait)",
                still.len(),
                timeout.as_secs()
            );
        }
        pending = still;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(400));
    }
}
