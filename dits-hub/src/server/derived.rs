//! `get-derived`: a poster, thumbnail strip or proxy the workers made of an asset
//! (`worker::transcode`), streamed to a member of a repository that holds the asset's
//! recipe. Derived objects are keyed by recipe, so holding the recipe is what entitles a
//! repository to them; another repository's equal clip shares them without revealing
//! anything its members could not rebuild themselves.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use dits_core::ChunkId;
use dits_wire::wire::{write_frame, GetDerivedResult, Response};
use tokio::io::AsyncWrite;

use crate::error::HubError;
use crate::meta::derived::{Derived, DerivedKind};
use crate::meta::jobs::JobKind;
use crate::server::state::HubState;

/// The `kind` made of asset `recipe`, for a member of `repo` (which must hold the
/// recipe); not found says why it does not exist (yet).
pub async fn find(
    state: &HubState,
    repo: i64,
    recipe: &str,
    kind: &str,
) -> Result<(Derived, DerivedKind), HubError> {
    let id: ChunkId = recipe
        .parse()
        .map_err(|e| HubError::BadRequest(format!("{e}")))?;
    let Some(parsed) = DerivedKind::parse(kind) else {
        return Err(HubError::BadRequest(format!(
            "{kind:?} is not a derived kind (poster, strip, proxy)"
        )));
    };
    if !state.meta.missing(repo, &[id]).await?.is_empty() {
        return Err(HubError::NotFound(format!(
            "asset {} is not in this repository",
            id.short()
        )));
    }
    match state.meta.derived().derived(&id, kind).await? {
        Some(found) => Ok((found, parsed)),
        None => Err(HubError::NotFound(not_made(state, &id, kind).await?)),
    }
}

/// Answers with the derived object's size and hash, then its bytes.
pub async fn get<W: AsyncWrite + Unpin>(
    state: &HubState,
    repo: i64,
    recipe: &str,
    kind: &str,
    writer: &mut W,
) -> Result<(), HubError> {
    let (found, _) = find(state, repo, recipe, kind).await?;
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

/// Bytes read from storage at a time while a derived object streams over HTTP.
const HTTP_STEP: u64 = 4 << 20;

/// The HTTP answer for a derived object: the whole of it, or the one byte range
/// `range` (a `Range` header) asks for, so a browser's `<video>` can seek in a proxy.
pub fn http_answer(
    state: Arc<HubState>,
    found: Derived,
    kind: DerivedKind,
    range: Option<&str>,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    let size = found.size;
    let Ok((status, start, end)) = answer_range(range, size) else {
        return unsatisfiable(size);
    };
    state
        .stats
        .derived_bytes_out
        .fetch_add(end - start, Ordering::Relaxed);
    let key = found.key.clone();
    let body = futures::stream::try_unfold(start, move |at| {
        let (state, key) = (state.clone(), key.clone());
        async move {
            if at >= end {
                return Ok::<_, std::io::Error>(None);
            }
            let n = HTTP_STEP.min(end - at);
            let bytes = state.blobs.read_range(&key, at, n as usize).await?;
            Ok(Some((axum::body::Bytes::from(bytes), at + n)))
        }
    });
    let content_type = match kind {
        DerivedKind::Proxy => "video/mp4",
        DerivedKind::Poster | DerivedKind::Strip => "image/jpeg",
    };
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    };
    set(header::CONTENT_TYPE, content_type.into());
    set(header::CONTENT_LENGTH, (end - start).to_string());
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::ETAG, format!("\"{}\"", found.hash));
    // Only members may read it: no shared cache keeps a copy.
    set(header::CACHE_CONTROL, "private, max-age=86400".into());
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    response
}

/// How to answer a request with `Range` header `range` (if any) for an object of `size`
/// bytes: the status and `[start, end)` ([`unsatisfiable`] answers the error).
pub fn answer_range(
    range: Option<&str>,
    size: u64,
) -> Result<(axum::http::StatusCode, u64, u64), Unsatisfiable> {
    use axum::http::StatusCode;
    match range.map(|r| byte_range(r, size)) {
        None | Some(Ok(None)) => Ok((StatusCode::OK, 0, size)),
        Some(Ok(Some((start, end)))) => Ok((StatusCode::PARTIAL_CONTENT, start, end)),
        Some(Err(e)) => Err(e),
    }
}

/// The 416 answer for an object of `size` bytes.
pub fn unsatisfiable(size: u64) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        [(header::CONTENT_RANGE, format!("bytes */{size}"))],
    )
        .into_response()
}

/// A `Range` header none of whose bytes lie in the object (HTTP 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// The one range `header` (`bytes=A-B`, `bytes=A-`, `bytes=-N`) asks for in an object of
/// `size` bytes, as `[start, end)`; `None`: answer with the whole object (no range this
/// parser takes, such as several ranges); `Err`: nothing of it lies in the object (416).
pub fn byte_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| s.parse::<u64>().map_err(|_| Unsatisfiable);
    let (start, end) = if first.is_empty() {
        // The last N bytes.
        let n = number(last)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (size.saturating_sub(n), size)
    } else {
        let start = number(first)?;
        let end = if last.is_empty() {
            size
        } else {
            number(last)?.saturating_add(1).min(size)
        };
        (start, end)
    };
    if start >= size || start >= end {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

/// Why asset `id` has no `kind` yet, from its transcode job.
pub(crate) async fn not_made(state: &HubState, id: &ChunkId, kind: &str) -> anyhow::Result<String> {
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

#[cfg(test)]
mod tests {
    use super::{byte_range, Unsatisfiable};

    #[test]
    fn byte_ranges_are_read_as_browsers_send_them() {
        assert_eq!(byte_range("bytes=0-99", 1000), Ok(Some((0, 100))));
        assert_eq!(byte_range("bytes=900-", 1000), Ok(Some((900, 1000))));
        assert_eq!(byte_range("bytes=-100", 1000), Ok(Some((900, 1000))));
        assert_eq!(byte_range("bytes=-5000", 1000), Ok(Some((0, 1000))));
        // Past the end is cut to it; nothing inside the object is 416.
        assert_eq!(byte_range("bytes=990-2000", 1000), Ok(Some((990, 1000))));
        assert_eq!(byte_range("bytes=1000-", 1000), Err(Unsatisfiable));
        assert_eq!(byte_range("bytes=5-2", 1000), Err(Unsatisfiable));
        assert_eq!(byte_range("bytes=-0", 1000), Err(Unsatisfiable));
        assert_eq!(byte_range("bytes=x-1", 1000), Err(Unsatisfiable));
        // What this parser does not take is answered whole.
        assert_eq!(byte_range("bytes=0-1,5-9", 1000), Ok(None));
        assert_eq!(byte_range("items=0-1", 1000), Ok(None));
    }
}
