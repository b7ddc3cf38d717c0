//! The object ops: `missing` (which ids a repository lacks), `put` (a stream of objects,
//! each opened and re-hashed, stored as one pack blob and made durable before the
//! answer) and `get` (objects in the order asked, neighbours read together).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use dits_core::envelope;
use dits_core::ChunkId;
use dits_wire::wire::{
    ids_from_hex, ids_to_hex, read_object, write_frame, write_object, GetResult, MissingResult,
    PutResult, Response,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::blobs::BlobWriter;
use crate::error::HubError;
use crate::meta::Location;
use crate::server::state::HubState;

/// Objects closer than this in one pack are read together (the gap is read and dropped).
const COALESCE_GAP: u64 = 256 << 10;
/// At most this much in one read.
const COALESCE_MAX: u64 = 32 << 20;

/// Object ids from the wire; a malformed one is a bad request.
pub fn parse_ids(ids: &[String]) -> Result<Vec<ChunkId>, HubError> {
    ids_from_hex(ids).map_err(|e| HubError::BadRequest(e.to_string()))
}

pub async fn missing(
    state: &HubState,
    repo: i64,
    ids: &[String],
) -> Result<MissingResult, HubError> {
    let ids = parse_ids(ids)?;
    // What the client is told it need not send must survive until its push ends.
    state.meta.touch(repo, &ids).await?;
    let missing = state.meta.missing(repo, &ids).await?;
    let stats = &state.stats;
    stats
        .object_hits
        .fetch_add((ids.len() - missing.len()) as u64, Ordering::Relaxed);
    stats
        .object_misses
        .fetch_add(missing.len() as u64, Ordering::Relaxed);
    Ok(MissingResult {
        missing: ids_to_hex(&missing),
    })
}

/// At most this many ids in one `wanted` answer (the rest follow on later pushes).
const MAX_WANTED: u32 = 8192;

pub async fn wanted(
    state: &HubState,
    repo: i64,
) -> Result<dits_wire::wire::WantedResult, HubError> {
    let lost = state.meta.jobs().lost(repo, MAX_WANTED).await?;
    Ok(dits_wire::wire::WantedResult {
        wanted: ids_to_hex(&lost),
    })
}

/// Objects read before their locations are looked up together: one metadata round trip
/// per this many objects rather than per object, while memory stays bounded (objects are
/// at most a few hundred KiB).
const PUT_LOOKUP_BATCH: usize = 64;

/// Reads objects until the client finishes its side; stores the ones this repository
/// lacks as one pack. `stored` in the answer counts those. An upload cut short (the
/// connection died) still stores the objects that arrived whole before it answers with
/// the error.
pub async fn put<R: AsyncRead + Unpin>(
    state: &HubState,
    repo: i64,
    reader: &mut R,
) -> Result<PutResult, HubError> {
    let mut writer: Option<BlobWriter> = None;
    // Names the pack: the ids and stored lengths fix every object's place in it, and each
    // object was verified against its id, so two packs with one name hold the same
    // objects at the same offsets. Hashing this list, not the pack's bytes, spares the
    // hub a second pass over every byte uploaded.
    let mut pack_name = blake3::Hasher::new();
    let mut stored: Vec<(ChunkId, Location)> = Vec::new();
    let mut ids = Vec::new();
    let mut in_batch = HashSet::new();
    let mut pending = Vec::with_capacity(PUT_LOOKUP_BATCH);
    let mut bytes_in = 0u64;
    let encrypted = crate::server::keys::encrypted(state, repo).await?;
    // Why the upload stopped before the client finished it (a dropped connection).
    let mut interrupted = None;
    loop {
        let object = match read_object(reader).await {
            Ok(o) => o,
            // What arrived whole is kept (each object was verified against its id), so
            // a client that reconnects sends only the rest; earlier batches stay too.
            Err(e) => {
                interrupted = Some(e);
                None
            }
        };
        let done = object.is_none();
        if let Some(object) = object {
            bytes_in += object.sealed.len() as u64;
            ids.push(object.id);
            if encrypted {
                // The hub cannot open a sealed object: it checks its shape, and the
                // client checks its contents when it opens it.
                if object.plain_len != 0 || !dits_core::crypt::looks_sealed(&object.sealed) {
                    return Err(HubError::Rejected(format!(
                        "object {}: this repository is encrypted and the object is not sealed; the upload was refused and nothing from it was stored (run `git dits key status`, and upgrade git-dits if it does not know the command)",
                        object.id.short()
                    )));
                }
            } else if let Err(e) = object.verify() {
                return Err(HubError::Rejected(format!(
                    "{e}; the upload was refused and nothing from it was stored"
                )));
            }
            if in_batch.insert(object.id) {
                pending.push(object);
            }
        }
        if pending.len() >= PUT_LOOKUP_BATCH || (done && !pending.is_empty()) {
            // Objects this repository lacks are written whether or not another one holds
            // them: answer and timing must not tell a member what other repositories
            // store. A second copy's bytes go unreferenced (the first location is kept)
            // until storage is collected.
            let pending_ids: Vec<ChunkId> = pending.iter().map(|o| o.id).collect();
            let lacking: HashSet<ChunkId> = state
                .meta
                .missing(repo, &pending_ids)
                .await?
                .into_iter()
                .collect();
            for object in pending.drain(..) {
                if !lacking.contains(&object.id) {
                    continue;
                }
                let w = match &mut writer {
                    Some(w) => w,
                    None => writer.insert(state.blobs.writer()?),
                };
                let loc = Location {
                    offset: w.len(),
                    stored_len: object.sealed.len() as u32,
                    len: object.plain_len,
                };
                w.write(&object.sealed)?;
                pack_name.update(&object.id.0);
                pack_name.update(&loc.stored_len.to_be_bytes());
                if encrypted {
                    // Unverified bytes name the pack too: two uploads under one locator
                    // may differ, and must not share a pack name.
                    pack_name.update(blake3::hash(&object.sealed).as_bytes());
                }
                stored.push((object.id, loc));
            }
        }
        if done {
            break;
        }
    }
    let key = match writer {
        Some(w) => {
            // A suffix of its own: a blob key is never written twice, so a pack the
            // collector found dead cannot come back under it (see meta::gc).
            let key = format!(
                "chunks/{}.{}.pack",
                pack_name.finalize().to_hex(),
                crate::meta::random_hex(6)?
            );
            state.blobs.commit(w, &key).await?;
            Some(key)
        }
        None => None,
    };
    state
        .meta
        .record_objects(repo, key.as_deref(), &stored, &ids)
        .await?;
    state
        .stats
        .object_bytes_in
        .fetch_add(bytes_in, Ordering::Relaxed);
    state
        .stats
        .objects_in
        .fetch_add(ids.len() as u64, Ordering::Relaxed);
    if let Some(e) = interrupted {
        return Err(HubError::BadRequest(format!(
            "upload interrupted: {e}; the {} objects that arrived whole were kept",
            ids.len()
        )));
    }
    Ok(PutResult {
        stored: stored.len() as u64,
        received: ids.len() as u64,
        bytes: bytes_in,
    })
}

/// Most ids one `get` may name. Clients ask for 128 at a time; the cap keeps one request's
/// metadata lookup and answer bounded.
pub const MAX_GET_IDS: usize = 1024;
/// Objects are read from storage and sent in groups of at most this many stored bytes (or
/// one object, when a single one is larger): a request holds about this much in memory at
/// once, however many objects it names and however large they are (boxes and recipes may
/// be 64 MiB, chunks 256 KiB).
const GET_GROUP_BYTES: u64 = 8 << 20;

/// Answers with a header, then each object of `ids` in order. Objects are read and sent a
/// group at a time, so memory stays bounded by [`GET_GROUP_BYTES`] per request.
pub async fn get<W: AsyncWrite + Unpin>(
    state: &HubState,
    repo: i64,
    ids: &[String],
    writer: &mut W,
) -> Result<(), HubError> {
    let (ids, located) = locate_for_read(state, repo, ids).await?;
    let mut groups = groups_by_size(&located, GET_GROUP_BYTES).into_iter();
    // The first group is read before the header (neighbouring objects of one pack in one
    // ranged read: one GET on S3), so a storage error can still be a proper refusal.
    let mut objects = match groups.next() {
        Some(first) => read_coalesced(state, &located[first])
            .await
            .map_err(|e| HubError::from(e.context("serving objects")))?,
        None => Vec::new(),
    };
    let header = GetResult {
        count: ids.len() as u64,
    };
    write_frame(writer, &Response::ok_with(&header)?).await?;
    let mut sent = 0;
    loop {
        for (plain_len, sealed) in objects {
            if write_object(writer, &ids[sent], plain_len, &sealed)
                .await
                .is_err()
            {
                // The client went away; nothing to tell it.
                return Ok(());
            }
            sent += 1;
            state.stats.objects_out.fetch_add(1, Ordering::Relaxed);
            state
                .stats
                .object_bytes_out
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        }
        let Some(group) = groups.next() else {
            return Ok(());
        };
        objects = match read_coalesced(state, &located[group]).await {
            Ok(objects) => objects,
            Err(e) => {
                // The answer has begun: the client sees the stream end short and says so.
                tracing::warn!(repo, error = %e, "serving objects");
                return Ok(());
            }
        };
    }
}

/// The ids a read (`get`, `get-urls`) names and where each is stored, in order, once
/// checked: at most [`MAX_GET_IDS`], none twice, every one held by `repo`. The read is
/// noted for the cold tier.
pub(crate) async fn locate_for_read(
    state: &HubState,
    repo: i64,
    ids: &[String],
) -> Result<(Vec<ChunkId>, Vec<(String, Location)>), HubError> {
    if ids.len() > MAX_GET_IDS {
        return Err(HubError::BadRequest(format!(
            "get names {} objects; at most {MAX_GET_IDS} may be asked for at once",
            ids.len()
        )));
    }
    let ids = parse_ids(ids)?;
    let mut seen = HashSet::with_capacity(ids.len());
    if let Some(twice) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(HubError::BadRequest(format!(
            "get names object {twice} more than once"
        )));
    }
    if let Some(id) = state.meta.missing(repo, &ids).await?.first() {
        return Err(HubError::NotFound(format!("object {id} is not on the hub")));
    }
    let located = locate(state, &ids)
        .await
        .map_err(|e| HubError::from(e.context("serving objects")))?;
    if state.access.note(&ids) {
        if let Err(e) = crate::server::tier::flush_access(state).await {
            tracing::warn!("recording reads: {e:#}");
        }
    }
    Ok((ids, located))
}

/// Where each of `ids` is stored (pack, location), in order.
async fn locate(state: &HubState, ids: &[ChunkId]) -> anyhow::Result<Vec<(String, Location)>> {
    state
        .meta
        .locations(ids)
        .await?
        .into_iter()
        .zip(ids)
        .map(|(found, id)| {
            found.ok_or_else(|| anyhow::anyhow!("object {} has no location", id.short()))
        })
        .collect()
}

/// Splits `located` into consecutive ranges of at most `budget` stored bytes each; an
/// object larger than `budget` is a range of its own.
pub(crate) fn groups_by_size(
    located: &[(String, Location)],
    budget: u64,
) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, location)) in located.iter().enumerate() {
        let len = u64::from(location.stored_len);
        if i > start && bytes + len > budget {
            groups.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < located.len() {
        groups.push(start..located.len());
    }
    groups
}

/// One ranged read of a pack: bytes `[start, end)` of `pack`, holding the located
/// objects whose indexes `members` lists (in pack order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub pack: String,
    pub start: u64,
    pub end: u64,
    pub members: Vec<usize>,
}

/// The fewest ranged reads that cover every located object: neighbours in one pack less
/// than [`COALESCE_GAP`] apart share a read of at most [`COALESCE_MAX`] bytes.
pub(crate) fn spans(located: &[(String, Location)]) -> Vec<Span> {
    let mut order: Vec<usize> = (0..located.len()).collect();
    order.sort_by(|&a, &b| {
        (&located[a].0, located[a].1.offset).cmp(&(&located[b].0, located[b].1.offset))
    });
    let mut out = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let (pack, first) = &located[order[i]];
        let start = first.offset;
        let mut end = start + u64::from(first.stored_len);
        let mut j = i + 1;
        while j < order.len() {
            let (p, l) = &located[order[j]];
            let l_end = l.offset + u64::from(l.stored_len);
            if p != pack || l.offset > end + COALESCE_GAP || l_end - start > COALESCE_MAX {
                break;
            }
            end = end.max(l_end);
            j += 1;
        }
        out.push(Span {
            pack: pack.clone(),
            start,
            end,
            members: order[i..j].to_vec(),
        });
        i = j;
    }
    out
}

/// The plain length and sealed bytes of each located object, in order, read with as few
/// ranged reads as possible.
pub(crate) async fn read_coalesced(
    state: &HubState,
    located: &[(String, Location)],
) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    let mut out: Vec<Option<(u32, Vec<u8>)>> = vec![None; located.len()];
    for span in spans(located) {
        let pack = &span.pack;
        let bytes = state
            .blobs
            .read_range(pack, span.start, (span.end - span.start) as usize)
            .await?;
        state.stats.blob_reads.fetch_add(1, Ordering::Relaxed);
        for &k in &span.members {
            let l = &located[k].1;
            let from = (l.offset - span.start) as usize;
            let sealed = bytes
                .get(from..from + l.stored_len as usize)
                .ok_or_else(|| anyhow::anyhow!("pack {pack} is shorter than its index says"))?;
            out[k] = Some((l.len, sealed.to_vec()));
        }
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| anyhow::anyhow!("an object was not read")))
        .collect()
}

/// Reads and verifies one stored object.
pub async fn read_plain(state: &HubState, id: &ChunkId) -> anyhow::Result<Vec<u8>> {
    let (pack, loc) = state
        .meta
        .locations(std::slice::from_ref(id))
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| anyhow::anyhow!("object {} has no location", id.short()))?;
    let sealed = state
        .blobs
        .read_range(&pack, loc.offset, loc.stored_len as usize)
        .await?;
    envelope::open(id, &sealed, u64::from(loc.len))
        .map_err(|e| anyhow::anyhow!("object {} in {pack}: {e}", id.short()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(lens: &[u32]) -> Vec<(String, Location)> {
        lens.iter()
            .map(|&stored_len| {
                let location = Location {
                    offset: 0,
                    stored_len,
                    len: stored_len,
                };
                ("pack".to_string(), location)
            })
            .collect()
    }

    #[test]
    fn get_groups_hold_at_most_the_budget_or_one_large_object() {
        let groups = groups_by_size(&located(&[3, 3, 3, 10, 1, 1]), 6);
        assert_eq!(groups, vec![0..2, 2..3, 3..4, 4..6]);
        assert!(groups_by_size(&located(&[]), 6).is_empty());
        // 1,024 objects of 64 MiB are read one at a time, not 32 at a time (2 GiB).
        let big = located(&vec![64 << 20; 1024]);
        assert!(groups_by_size(&big, GET_GROUP_BYTES)
            .iter()
            .all(|g| g.len() == 1));
    }
}
