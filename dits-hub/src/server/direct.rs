//! Direct transfers: with an S3 store and `--direct-transfers`, clients move object
//! bytes straight to and from the store through short-lived signed URLs, and the hub
//! answers only with metadata.
//!
//! Reads (`get-urls`): the hub checks the repository holds every asked object, groups
//! them into ranged reads of their packs as `get` would, and signs one GET URL per range;
//! the client re-hashes every object it reads.
//!
//! Writes (`put-url`, `put-done`, `put-status`): the client PUTs a pack (objects back to
//! back) to `incoming/REPO/NAME.pack`, then says which objects it holds. Nothing it
//! claims is trusted: a verify job (`worker::verify`) copies the pack inside the store
//! to a key no client can write, reads it back and checks every id, and only then records
//! the objects for that one repository. Until then they are missing to everyone, so
//! another repository cannot be handed a forged object through deduplication, and no
//! ref moves onto them (`update-refs` requires every object to be stored).
//!
//! URLs are credentials: they are never logged, and errors name keys, not URLs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use dits_wire::wire::{
    DirectObject, DirectRange, GetUrlsResult, PutStatusResult, PutUrlResult, UploadState,
    MAX_SEALED_OBJECT,
};

use crate::error::HubError;
use crate::meta::jobs::JobKind;
use crate::meta::unix_now;
use crate::server::objects::{locate_for_read, spans};
use crate::server::state::HubState;

/// Largest pack one direct upload may declare (S3 takes up to 5 GiB in one PUT; clients
/// send ~48 MiB batches).
pub const MAX_DIRECT_PACK: u64 = 4 << 30;
/// Most objects one direct upload may declare.
pub const MAX_DIRECT_OBJECTS: usize = 1 << 20;

/// Where a repository's direct upload `name` is written by the client, where its
/// declared contents are kept until verified, and the verify job's subject.
pub struct Upload {
    pub repo: i64,
    pub name: String,
}

impl Upload {
    /// From a verify job's subject, `REPO/NAME`.
    pub fn from_subject(subject: &str) -> Option<Upload> {
        let (repo, name) = subject.split_once('/')?;
        let upload = Upload {
            repo: repo.parse().ok()?,
            name: name.to_string(),
        };
        valid_name(&upload.name).then_some(upload)
    }

    pub fn subject(&self) -> String {
        format!("{}/{}", self.repo, self.name)
    }

    /// What the client PUTs.
    pub fn incoming(&self) -> String {
        format!("incoming/{}/{}.pack", self.repo, self.name)
    }

    /// The declared objects, as JSON.
    pub fn index(&self) -> String {
        format!("incoming/{}/{}.idx", self.repo, self.name)
    }

    /// The pack once copied out of the client's reach and verified.
    pub fn pack(&self) -> String {
        format!("chunks/{}.direct.pack", self.name)
    }
}

/// Upload names are the hub's own random hex.
fn valid_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How long signed URLs last, when this hub offers direct transfers to `repo`: not for
/// encrypted repositories (their objects are sealed by locator; they use the QUIC path).
async fn offered(state: &HubState, repo: i64) -> Result<Option<Duration>, HubError> {
    let Some(ttl) = state.direct_ttl else {
        return Ok(None);
    };
    if crate::server::keys::encrypted(state, repo).await? {
        return Ok(None);
    }
    Ok(Some(ttl))
}

/// A URL signed for reading (or, with `write`, writing) blob `key`; `None` when the
/// store cannot sign (now), and the client falls back to the QUIC path. The URL itself
/// is never logged.
async fn sign(
    state: &HubState,
    repo: i64,
    key: &str,
    write: bool,
    ttl: Duration,
) -> Option<String> {
    match state.blobs.signed_url(key, write, ttl).await {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(repo, write, "signing a URL: {e}");
            None
        }
    }
}

pub async fn get_urls(
    state: &HubState,
    repo: i64,
    ids: &[String],
) -> Result<GetUrlsResult, HubError> {
    let not_offered = GetUrlsResult {
        direct: false,
        ranges: Vec::new(),
    };
    let Some(ttl) = offered(state, repo).await? else {
        return Ok(not_offered);
    };
    let (ids, located) = locate_for_read(state, repo, ids).await?;
    let mut ranges = Vec::new();
    let mut bytes = 0;
    for span in spans(&located) {
        let Some(url) = sign(state, repo, &span.pack, false, ttl).await else {
            return Ok(not_offered);
        };
        let objects = span
            .members
            .iter()
            .map(|&k| {
                let location = &located[k].1;
                DirectObject {
                    id: ids[k].to_hex(),
                    at: location.offset - span.start,
                    stored_len: location.stored_len,
                    plain_len: location.len,
                }
            })
            .collect();
        bytes += span.end - span.start;
        ranges.push(DirectRange {
            url,
            offset: span.start,
            len: span.end - span.start,
            objects,
        });
    }
    state
        .stats
        .direct_bytes_out
        .fetch_add(bytes, Ordering::Relaxed);
    Ok(GetUrlsResult {
        direct: true,
        ranges,
    })
}

pub async fn put_url(state: &HubState, repo: i64, bytes: u64) -> Result<PutUrlResult, HubError> {
    let not_offered = PutUrlResult {
        direct: false,
        upload: String::new(),
        url: String::new(),
    };
    let Some(ttl) = offered(state, repo).await? else {
        return Ok(not_offered);
    };
    if bytes == 0 || bytes > MAX_DIRECT_PACK {
        return Err(HubError::BadRequest(format!(
            "put-url: a pack of {bytes} bytes; direct uploads are 1 to {MAX_DIRECT_PACK} bytes"
        )));
    }
    let upload = Upload {
        repo,
        name: crate::meta::random_hex(16)?,
    };
    let Some(url) = sign(state, repo, &upload.incoming(), true, ttl).await else {
        return Ok(not_offered);
    };
    state
        .stats
        .direct_bytes_in
        .fetch_add(bytes, Ordering::Relaxed);
    Ok(PutUrlResult {
        direct: true,
        upload: upload.name,
        url,
    })
}

pub async fn put_done(
    state: &HubState,
    repo: i64,
    name: &str,
    objects: &[DirectObject],
) -> Result<dits_wire::wire::Done, HubError> {
    if offered(state, repo).await?.is_none() {
        return Err(HubError::BadRequest(
            "put-done: this hub does not take direct uploads for this repository".into(),
        ));
    }
    if !valid_name(name) {
        return Err(HubError::BadRequest(format!(
            "put-done: {name:?} is not an upload this hub named"
        )));
    }
    check_layout(objects).map_err(|e| HubError::BadRequest(format!("put-done {name}: {e}")))?;
    let upload = Upload {
        repo,
        name: name.to_string(),
    };
    let index = serde_json::to_vec(objects).map_err(anyhow::Error::from)?;
    let mut writer = state.blobs.writer()?;
    writer.write(&index)?;
    state.blobs.commit(writer, &upload.index()).await?;
    state
        .meta
        .jobs()
        .enqueue(JobKind::Verify, &[upload.subject()], Some(repo), unix_now())
        .await?;
    // The client waits on it: an idle worker in this process starts at once.
    state.job_queued.notify_waiters();
    Ok(dits_wire::wire::Done {})
}

/// Declared objects must lie back to back from offset 0, each a valid id of a size the
/// wire allows; the total must fit one upload.
pub fn check_layout(objects: &[DirectObject]) -> Result<u64, String> {
    if objects.is_empty() || objects.len() > MAX_DIRECT_OBJECTS {
        return Err(format!(
            "{} objects declared; an upload holds 1 to {MAX_DIRECT_OBJECTS}",
            objects.len()
        ));
    }
    let mut at = 0u64;
    for (i, object) in objects.iter().enumerate() {
        object
            .id
            .parse::<dits_core::ChunkId>()
            .map_err(|_| format!("object {i}: {:?} is not an object id", object.id))?;
        if object.at != at {
            return Err(format!(
                "object {} is declared at offset {} where the previous one ends at {at}",
                object.id, object.at
            ));
        }
        if object.stored_len == 0 || object.stored_len > MAX_SEALED_OBJECT {
            return Err(format!(
                "object {} is declared {} bytes long",
                object.id, object.stored_len
            ));
        }
        at += u64::from(object.stored_len);
    }
    if at > MAX_DIRECT_PACK {
        return Err(format!("{at} bytes declared; at most {MAX_DIRECT_PACK}"));
    }
    Ok(at)
}

pub async fn put_status(
    state: &HubState,
    repo: i64,
    names: &[String],
) -> Result<PutStatusResult, HubError> {
    if names.len() > 1024 {
        return Err(HubError::BadRequest(format!(
            "put-status names {} uploads; at most 1024",
            names.len()
        )));
    }
    let mut uploads = Vec::with_capacity(names.len());
    for name in names {
        let subject = Upload {
            repo,
            name: name.clone(),
        }
        .subject();
        let job = if valid_name(name) {
            state.meta.jobs().job(JobKind::Verify, &subject).await?
        } else {
            None
        };
        let (state_name, error) = match job {
            None => (
                "refused",
                Some("no such upload: put-done was not sent".into()),
            ),
            Some(job) => match job.state.as_str() {
                "done" => ("stored", None),
                "dead" => ("refused", job.error),
                _ => ("pending", None),
            },
        };
        uploads.push(UploadState {
            upload: name.clone(),
            state: state_name.to_string(),
            error,
        });
    }
    Ok(PutStatusResult { uploads })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(at: u64, stored_len: u32) -> DirectObject {
        DirectObject {
            id: "11".repeat(32),
            at,
            stored_len,
            plain_len: stored_len,
        }
    }

    #[test]
    fn a_declared_layout_must_be_back_to_back_and_bounded() {
        assert_eq!(check_layout(&[object(0, 10), object(10, 5)]), Ok(15));
        assert!(check_layout(&[]).is_err());
        assert!(check_layout(&[object(0, 10), object(12, 5)]).is_err());
        assert!(check_layout(&[object(0, 10), object(8, 5)]).is_err());
        assert!(check_layout(&[object(4, 10)]).is_err());
        assert!(check_layout(&[object(0, 0)]).is_err());
        assert!(check_layout(&[object(0, MAX_SEALED_OBJECT + 1)]).is_err());
        let mut bad = object(0, 10);
        bad.id = "zz".into();
        assert!(check_layout(&[bad]).is_err());
    }

    #[test]
    fn upload_subjects_round_trip_and_refuse_foreign_names() {
        let upload = Upload {
            repo: 7,
            name: "ab".repeat(16),
        };
        let back = Upload::from_subject(&upload.subject()).unwrap();
        assert_eq!((back.repo, back.name.as_str()), (7, upload.name.as_str()));
        assert_eq!(
            upload.incoming(),
            format!("incoming/7/{}.pack", upload.name)
        );
        assert!(Upload::from_subject("7/../../chunks/x").is_none());
        assert!(Upload::from_subject("x/abab").is_none());
    }
}
