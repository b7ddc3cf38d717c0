//! `get-derived`: a poster, thumbnail strip or proxy the workers made of an asset
//! (`worker::transcode`), streamed to a member of a repository that holds the asset's
//! recipe. Derived objects are keyed by recipe, so holding the recipe is what entitles a
//! repository to them; another repository's equal clip shares them without revealing
//! anything its members could not rebuild themselves.

use std::sync::atomic::Ordering;

use dits_core::ChunkId;
use dits_wire::wire::{write_frame, GetDerivedResult, Response};
use tokio::io::AsyncWrite;

use crate::error::HubError;
use crate::meta::derived::DerivedKind;
use crate::meta::jobs::JobKind;
use crate::server::state::HubState;

/// Answers with the derived object's size and hash, then its bytes.
pub async fn get<W: AsyncWrite + Unpin>(
    state: &HubState,
    repo: i64,
    recipe: &str,
    kind: &str,
    writer: &mut W,
) -> Result<(), HubError> {
    let id: ChunkId = recipe
        .parse()
        .map_err(|e| HubError::BadRequest(format!("{e}")))?;
    if DerivedKind::parse(kind).is_none() {
        return Err(HubError::BadRequest(format!(
            "{kind:?} is not a derived kind (poster, strip, proxy)"
        )));
    }
    if !state.meta.missing(repo, &[id]).await?.is_empty() {
        return Err(HubError::NotFound(format!(
            "asset {} is not in this repository",
            id.short()
        )));
    }
    let Some(found) = state.meta.derived().derived(&id, kind).await? else {
        return Err(HubError::NotFound(not_made(state, &id, kind).await?));
    };
    write_frame(
        writer,
        &Response::ok_with(&GetDerivedResult {
            size: found.size,
            hash: found.hash.clone(),
        })?,
    )
    .await?;
    if !crate::blobs::stream_to(state.blobs.as_ref(), &found.key, found.size, writer).await? {
        return Ok(());
    }
    state
        .stats
        .derived_bytes_out
        .fetch_add(found.size, Ordering::Relaxed);
    Ok(())
}

/// Why asset `id` has no `kind` yet, from its transcode job.
async fn not_made(state: &HubState, id: &ChunkId, kind: &str) -> anyhow::Result<String> {
    let job = state
        .meta
        .jobs()
        .job(JobKind::Transcode, &id.to_hex())
        .await?;
    let short = id.short();
    Ok(match job {
        None if state.transcode => format!(
            "asset {short} has no {kind}: it is not video, or was pushed before transcoding was on"
        ),
        None => format!(
            "asset {short} has no {kind}: this hub does not transcode (start it with --transcode)"
        ),
        Some(job) => match job.state.as_str() {
            "queued" | "running" => {
                format!(
                    "the {kind} of asset {short} is being made ({}); try again shortly",
                    job.state
                )
            }
            "dead" => format!(
                "making the {kind} of asset {short} failed {} times: {}",
                job.attempts,
                job.error.unwrap_or_default()
            ),
            _ => format!("asset {short} has no {kind}"),
        },
    })
}
