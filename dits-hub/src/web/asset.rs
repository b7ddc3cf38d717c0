//! One asset: what its pointer and recipe say (container, tracks, duration, objects,
//! keyframes, the share of its previous version), its poster, strip and proxy, and a
//! download of the original rebuilt from the stored objects as it is sent.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use dits_core::ChunkId;
use minijinja::{context, Value};

use super::browse::change_of;
use super::{failure, human_bytes, member, render, Session};
use crate::error::HubError;
use crate::meta::{AssetVersion, Role};
use crate::server::auth::Caller;
use crate::server::dedup::{facts, read_recipe, shared_bytes};
use crate::server::derived::{answer_range, unsatisfiable};
use crate::server::state::HubState;

/// The signed-in reader of `owner/name` and the asset `recipe` names there, or the page
/// to answer instead.
async fn reader_and_asset(
    state: &HubState,
    headers: &HeaderMap,
    (owner, name, recipe): (&str, &str, &str),
) -> Result<(Session, Caller, ChunkId, AssetVersion), Response> {
    let (session, caller) = member(state, headers, owner, name, Role::Read).await?;
    let (id, version) = find(state, &session, &caller, recipe).await?;
    Ok((session, caller, id, version))
}

/// The asset `recipe` names in the caller's repository, or the page to answer instead.
async fn find(
    state: &HubState,
    session: &Session,
    caller: &Caller,
    recipe: &str,
) -> Result<(ChunkId, AssetVersion), Response> {
    let not_here = || {
        failure(
            Some(session),
            &HubError::NotFound(format!("no asset {recipe} in {}", caller.repo_name)),
        )
    };
    let Ok(id) = recipe.parse::<ChunkId>() else {
        return Err(not_here());
    };
    match state.meta.asset_version(caller.repo, &id).await {
        Ok(Some(version)) => Ok((id, version)),
        Ok(None) => Err(not_here()),
        Err(e) => Err(failure(Some(session), &HubError::from(e))),
    }
}

/// A pointer's media line in a few words, for listings: `mp4 · 10.00s · video avc1
/// 320x240, audio mp4a`.
pub(super) fn media_words(media: &str) -> String {
    let (container, duration, tracks) = summary(media);
    let tracks: Vec<String> = tracks
        .iter()
        .map(|t| {
            let field = |k: &str| t.get_attr(k).map(|v| v.to_string()).unwrap_or_default();
            [field("kind"), field("codec"), field("size")]
                .into_iter()
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut words = vec![container];
    words.extend(duration);
    if !tracks.is_empty() {
        words.push(tracks.join(", "));
    }
    words.join(" · ")
}

/// A pointer's media line (`mp4 duration=10.00s tracks=vide:avc1:320x240,soun:mp4a`)
/// as the page lists it: container, duration, and each track's kind, codec and size.
fn summary(media: &str) -> (String, Option<String>, Vec<Value>) {
    let mut words = media.split_whitespace();
    let container = words.next().unwrap_or("binary").to_string();
    let (mut duration, mut tracks) = (None, Vec::new());
    for word in words {
        if let Some(d) = word.strip_prefix("duration=") {
            duration = Some(d.to_string());
        } else if let Some(list) = word.strip_prefix("tracks=") {
            for track in list.split(',').filter(|t| *t != "none") {
                let mut parts = track.split(':');
                let kind = match parts.next().unwrap_or_default() {
                    "vide" => "video",
                    "soun" => "audio",
                    "text" | "sbtl" | "subt" => "text",
                    "tmcd" => "timecode",
                    other => other,
                };
                let codec = parts.next().unwrap_or_default();
                let size = parts.next().unwrap_or_default();
                tracks.push(context! { kind, codec, size });
            }
        }
    }
    (container, duration, tracks)
}

pub(super) async fn asset(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, recipe)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (session, caller, id, version) =
        match reader_and_asset(&state, &headers, (&owner, &name, &recipe)).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
    let mut made = std::collections::BTreeMap::new();
    for kind in ["poster", "strip", "proxy"] {
        match state.meta.derived().derived(&id, kind).await {
            Ok(found) => {
                made.insert(kind, found.is_some());
            }
            Err(e) => return failure(Some(&session), &HubError::from(e)),
        }
    }
    let why = if made["proxy"] {
        String::new()
    } else {
        crate::server::derived::not_made(&state, &id, "proxy")
            .await
            .unwrap_or_default()
    };
    let encrypted = match state.meta.encrypted(caller.repo).await {
        Ok(encrypted) => encrypted,
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    };
    // The recipe's counts, and the share of the previous version when the index has no
    // figure yet; an encrypted repository's recipes are sealed from the hub.
    let (mut objects, mut keyframes, mut shared) = (None, None, version.shared);
    let mut unreadable = None;
    if encrypted {
        unreadable = Some("encrypted: the hub cannot read this asset's recipe".to_string());
    } else {
        match read_recipe(&state, &id).await {
            Ok(current) => {
                let f = facts(&current);
                (objects, keyframes) = (Some(f.objects), Some(f.keyframes));
                if let (None, Some(previous)) = (shared, version.previous) {
                    if let Ok(old) = read_recipe(&state, &previous).await {
                        shared = Some(shared_bytes(&current, &old));
                    }
                }
            }
            Err(e) => unreadable = Some(format!("{e:#}")),
        }
    }
    let (container, duration, tracks) = summary(&version.pointer.media);
    let pointer = &version.pointer;
    render(
        StatusCode::OK,
        "asset.html",
        context! {
            user => session.user.name, csrf => session.csrf,
            repo => caller.repo_name, path => version.path.clone(), commit => version.commit,
            recipe => id.to_hex(), media => pointer.media.clone(), container, duration, tracks,
            size => human_bytes(pointer.size), oid => pointer.oid.to_hex(),
            objects, keyframes, unreadable, encrypted,
            change => change_of(pointer.size, version.previous.is_some(), shared),
            previous => version.previous.map(|p| p.to_hex()),
            file_name => version.path.rsplit('/').next().unwrap_or_default(),
            poster => made["poster"], strip => made["strip"], proxy => made["proxy"], why,
        },
    )
}

/// Bytes a download sends per piece.
const PIECE: usize = 1 << 20;

/// A writer handing what it is given to a response body in pieces; a client that went
/// away makes the next write fail, which stops the rebuild.
struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    piece: Vec<u8>,
}

impl BodyWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.piece,
            Vec::with_capacity(PIECE),
        ));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.piece.extend_from_slice(bytes);
        if self.piece.len() >= PIECE {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `Content-Disposition` for a file called `name`: an ASCII fallback and the exact name
/// percent-encoded (RFC 6266).
fn disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}

/// The original file, rebuilt from its recipe as it is sent (one byte range when asked,
/// so a browser can resume). Every object is verified as it is read; one that fails
/// ends the response early, so the client sees a short, failed download rather than
/// wrong bytes.
pub(super) async fn download(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, recipe)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (session, caller, id, version) =
        match reader_and_asset(&state, &headers, (&owner, &name, &recipe)).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
    match state.meta.encrypted(caller.repo).await {
        Ok(false) => {}
        Ok(true) => {
            return failure(
                Some(&session),
                &HubError::BadRequest(format!(
                    "{} is encrypted: the hub cannot open it. Fetch it with git (git dits pull-media {}) on a machine holding the key",
                    version.path, version.path
                )),
            )
        }
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    }
    let recipe = match read_recipe(&state, &id).await {
        Ok(recipe) if recipe.file_size == version.pointer.size => recipe,
        Ok(recipe) => {
            return failure(
                Some(&session),
                &HubError::Internal(anyhow::anyhow!(
                    "recipe {} describes {} bytes but the pointer says {}",
                    id.short(),
                    recipe.file_size,
                    version.pointer.size
                )),
            )
        }
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    };
    let size = recipe.file_size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let Ok((status, start, end)) = answer_range(range, size) else {
        return unsatisfiable(size);
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let path = version.path.clone();
    let handle = tokio::runtime::Handle::current();
    let rebuilding = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = BodyWriter {
            tx: tx.clone(),
            piece: Vec::with_capacity(PIECE),
        };
        let written = crate::server::rebuild::write_range(
            &rebuilding,
            &handle,
            &id,
            &recipe,
            start,
            end,
            &mut out,
        )
        .and_then(|()| Ok(std::io::Write::flush(&mut out)?));
        if let Err(e) = written {
            let gone = e
                .chain()
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
            if !gone {
                tracing::error!(%path, "rebuilding {path} for a download: {e:#}");
                let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let mut response = Response::new(axum::body::Body::from_stream(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let name = version.path.rsplit('/').next().unwrap_or("download");
    for (key, value) in [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, (end - start).to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CONTENT_DISPOSITION, disposition(name)),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (header::CACHE_CONTROL, "private, no-store".to_string()),
        (header::ETAG, format!("\"{}\"", id.to_hex())),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(key, value);
        }
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(value) = format!("bytes {start}-{}/{size}", end - 1).parse() {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_lines_read_as_words() {
        assert_eq!(
            media_words("mp4 duration=8.00s tracks=vide:avc1:640x360,soun:mp4a"),
            "mp4 · 8.00s · video avc1 640x360, audio mp4a"
        );
        assert_eq!(media_words("binary"), "binary");
        assert_eq!(media_words("mxf duration=1.00s tracks=none"), "mxf · 1.00s");
    }

    #[test]
    fn download_names_survive_any_characters() {
        assert_eq!(
            disposition("take \"1\"é.mp4"),
            "attachment; filename=\"take _1__.mp4\"; filename*=UTF-8''take%20%221%22%C3%A9%2Emp4"
        );
    }
}
