//! The verify job: makes a pack a client uploaded straight to the object store
//! (`server::direct`) trustworthy before any of it counts.
//!
//! The client's signed URL may still be valid, so it could write the incoming key again
//! after it was read: the pack is first copied inside the store to a key only the hub
//! writes, and everything after reads that copy. Its size must be what was declared and
//! every declared object must open and hash to its id; then the objects are recorded for
//! the uploading repository alone, as a `put` records them. Anything else refuses the
//! whole upload (dead at once: a forged pack does not improve on retry) and deletes it.
//!
//! Idempotent: a retry after a crash finds the copy (and, once recorded, the index gone)
//! and goes on from there.

use std::sync::atomic::Ordering;

use anyhow::Context;
use dits_core::{envelope, ChunkId};
use dits_wire::wire::DirectObject;

use crate::meta::jobs::Hopeless;
use crate::meta::Location;
use crate::server::direct::{check_layout, Upload};
use crate::server::objects::{groups_by_size, read_coalesced};
use crate::server::state::HubState;

/// Stored bytes read back at a time (one ranged read: `get` coalesces up to 32 MiB).
const READ_SPAN: u64 = 32 << 20;

pub async fn verify_upload(state: &HubState, subject: &str) -> anyhow::Result<()> {
    let upload = Upload::from_subject(subject)
        .ok_or_else(|| Hopeless(format!("{subject:?} does not name a direct upload")))?;
    let (pack, index_key) = (upload.pack(), upload.index());
    let index = match state.blobs.read(&index_key).await {
        Ok(index) => index,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Recorded by an earlier attempt (the index goes last), or never declared.
            if state.meta.gc().referenced(&pack).await? {
                return Ok(());
            }
            return Err(Hopeless(format!(
                "upload {}: its declared contents are gone (collected, or never sent)",
                upload.name
            ))
            .into());
        }
        Err(e) => return Err(anyhow::Error::from(e).context("reading the upload's index")),
    };
    match check(state, &upload, &index).await {
        Ok((stored, ids)) => {
            state
                .meta
                .record_objects(upload.repo, Some(&pack), &stored, &ids)
                .await?;
            state.blobs.delete(&upload.incoming()).await?;
            state.blobs.delete(&index_key).await?;
            tracing::info!(
                repo = upload.repo,
                upload = %upload.name,
                objects = ids.len(),
                "direct upload verified"
            );
            Ok(())
        }
        Err(e) if e.is::<Hopeless>() => {
            // Nothing of it is trusted: the copy, the client's bytes and the declaration
            // go (the job keeps the reason for `put-status`).
            for key in [&pack, &upload.incoming(), &index_key] {
                state.blobs.delete(key).await?;
            }
            tracing::warn!(repo = upload.repo, upload = %upload.name, "direct upload refused: {e}");
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// The objects of `upload` as a `put` would record them, once its copy is checked;
/// [`Hopeless`] when the upload is not what it declared.
async fn check(
    state: &HubState,
    upload: &Upload,
    index: &[u8],
) -> anyhow::Result<(Vec<(ChunkId, Location)>, Vec<ChunkId>)> {
    let refuse = |why: String| {
        anyhow::Error::from(Hopeless(format!(
            "upload {}: {why}; nothing from it was stored",
            upload.name
        )))
    };
    let objects: Vec<DirectObject> =
        serde_json::from_slice(index).map_err(|e| refuse(format!("its index: {e}")))?;
    let declared = check_layout(&objects).map_err(refuse)?;
    if crate::server::keys::encrypted(state, upload.repo)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        return Err(refuse(
            "the repository is encrypted, and the hub cannot check sealed objects".into(),
        ));
    }
    let pack = upload.pack();
    if state.blobs.size(&pack).await?.is_none() {
        match state.blobs.copy(&upload.incoming(), &pack).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse("the client never uploaded the pack".into()))
            }
            Err(e) => return Err(anyhow::Error::from(e).context("copying the upload")),
        }
    }
    let size = state
        .blobs
        .size(&pack)
        .await?
        .context("the copied pack vanished")?;
    if size != declared {
        return Err(refuse(format!(
            "the pack is {size} bytes where its objects add up to {declared}"
        )));
    }
    let mut stored = Vec::with_capacity(objects.len());
    for object in &objects {
        let id: ChunkId = object.id.parse().map_err(|_| refuse("a bad id".into()))?;
        let location = Location {
            offset: object.at,
            stored_len: object.stored_len,
            len: object.plain_len,
        };
        stored.push((id, location));
    }
    // Read back as gc's rewrite reads a pack: neighbours together, a few MiB at a time.
    let located: Vec<(String, Location)> = stored.iter().map(|(_, l)| (pack.clone(), *l)).collect();
    for group in groups_by_size(&located, READ_SPAN) {
        let read = read_coalesced(state, &located[group.clone()])
            .await
            .context("reading the copied pack")?;
        for ((id, location), (plain_len, sealed)) in stored[group].iter().zip(read) {
            state
                .stats
                .verified_bytes
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
            if envelope::verify(id, &sealed, u64::from(plain_len)).is_err() {
                return Err(refuse(format!(
                    "object {} at offset {} does not match its id (its bytes do not open, or hash to another id)",
                    id.short(),
                    location.offset
                )));
            }
        }
    }
    let ids = stored.iter().map(|(id, _)| *id).collect();
    Ok((stored, ids))
}
