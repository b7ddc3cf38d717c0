//! The Git pack ops: `put-git-pack` (a pack streamed until the client finishes, checked
//! object by object by `git index-pack --strict`, stored under its BLAKE3 and invisible
//! until a ref update names it), `git-packs` (the visible
//! packs a client lacks) and `get-git-pack` (one pack, streamed).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use dits_wire::wire::{write_frame, GetGitPackResult, GitPacksResult, PutGitPackResult, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::error::HubError;
use crate::server::refs::mirror_packs;
use crate::server::state::HubState;

/// Git packs are capped so one upload can't fill the disk unnoticed.
const MAX_GIT_PACK: u64 = 16 << 30;

/// Stores an uploaded Git pack once `git index-pack --strict` (fed as the bytes arrive,
/// in quarantine, bases from the mirror) has accepted every object in it.
pub async fn put<R: AsyncRead + Unpin>(
    state: &HubState,
    repo: i64,
    reader: &mut R,
) -> Result<PutGitPackResult, HubError> {
    // A thin pack's bases are in the packs already pushed.
    mirror_packs(state, repo, &[]).await?;
    let mut checker = state.mirror.index_pack(repo, true).await?;
    let mut writer = state.blobs.writer()?;
    // The pack's name is its content's hash.
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| HubError::BadRequest(format!("upload interrupted: {e}")))?;
        if n == 0 {
            break;
        }
        if writer.len() + n as u64 > MAX_GIT_PACK {
            return Err(HubError::Rejected("Git pack is larger than 16 GiB".into()));
        }
        writer.write(&buf[..n])?;
        hasher.update(&buf[..n]);
        if checker.write(&buf[..n]).await.is_err() {
            // Git stopped reading: the pack is bad, and finish says how.
            break;
        }
    }
    let id = hasher.finalize().to_hex().to_string();
    if let Err(e) = checker.finish(&id).await {
        return Err(HubError::Rejected(format!(
            "the upload is not a valid Git pack: {e:#}"
        )));
    }
    let size = writer.len();
    // A suffix of its own: see the chunk packs (server::objects).
    let key = format!("git/{repo}/{id}.{}.pack", crate::meta::random_hex(6)?);
    state.blobs.commit(writer, &key).await?;
    state.meta.add_git_pack(repo, &id, &key, size).await?;
    state.stats.git_bytes_in.fetch_add(size, Ordering::Relaxed);
    Ok(PutGitPackResult { id, size })
}

/// The repository's visible packs not in `have`, oldest first.
pub async fn list(
    state: &HubState,
    repo: i64,
    have: Vec<String>,
) -> Result<GitPacksResult, HubError> {
    let have: HashSet<String> = have.into_iter().collect();
    let packs = state
        .meta
        .git_packs(repo)
        .await?
        .into_iter()
        .filter(|p| !have.contains(p))
        .collect();
    Ok(GitPacksResult { packs })
}

/// Answers with the pack's size, then its bytes.
pub async fn get<W: AsyncWrite + Unpin>(
    state: &HubState,
    repo: i64,
    id: &str,
    writer: &mut W,
) -> Result<(), HubError> {
    let Some((key, size, true)) = state.meta.git_pack(repo, id).await? else {
        return Err(HubError::NotFound(format!(
            "Git pack {id} is not in this repository"
        )));
    };
    write_frame(writer, &Response::ok_with(&GetGitPackResult { size })?).await?;
    if !crate::blobs::stream_to(state.blobs.as_ref(), &key, size, writer).await? {
        return Ok(());
    }
    state.stats.git_bytes_out.fetch_add(size, Ordering::Relaxed);
    Ok(())
}
