//! The wire protocol on a QUIC connection (ALPN `dits/1`). Each request is one
//! bidirectional stream: a JSON header frame, then an op-specific binary body, then the
//! client finishes its side; the hub answers with a JSON header frame and a body.
//! A frame is a big-endian u32 length and that many bytes. An object on the wire is
//! `id [32] | plain_len u32 | sealed_len u32 | sealed bytes` (the storage envelope, so
//! compressible objects such as recipes travel compressed); the receiver opens and
//! re-hashes every one.
//! Spec: docs/formats/wire.md.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use dits_core::ChunkId;

pub const ALPN: &[u8] = b"dits/1";
/// Headers are small JSON; a frame claiming more is refused before allocating.
pub const MAX_FRAME: u32 = 64 << 20;
/// Objects are chunks (≤ 256 KiB), boxes and recipes (≤ 64 MiB).
pub const MAX_OBJECT: u32 = 64 << 20;
/// Most bytes an object takes on the wire: its envelope (a few bytes over the plaintext
/// when stored raw) or, in an encrypted repository, that envelope padded (Padmé adds at
/// most 1/8 at this size) and sealed.
pub const MAX_SEALED_OBJECT: u32 = MAX_OBJECT + MAX_OBJECT / 8 + 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub token: String,
    /// `owner/name`.
    pub repo: String,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// → `{"refs": {name: oid}}`
    Refs,
    /// → `{"missing": [id]}`: which of `ids` this repository does not have.
    Missing { ids: Vec<String> },
    /// Body: objects until the stream ends. → `{"stored": n, "bytes": n}`
    Put,
    /// → `{"wanted": [id]}`: objects this repository held that the hub lost (a scrub
    /// found them corrupt) and no push has stored again; a client holding one sends it
    /// with its next push.
    Wanted,
    /// → header, then each object in `ids` in order.
    Get { ids: Vec<String> },
    /// → [`GetUrlsResult`]: where to read `ids` straight from the hub's object store
    /// (short-lived signed URLs with byte ranges), or `direct: false` when this hub does
    /// not offer direct transfers (the client then uses `get`).
    GetUrls { ids: Vec<String> },
    /// → [`PutUrlResult`]: a short-lived signed URL for one pack of `bytes` bytes,
    /// uploaded by the client straight to the object store, or `direct: false`.
    PutUrl { bytes: u64 },
    /// Says what the pack uploaded to `upload` holds (objects back to back from offset
    /// 0, in order). The hub queues a verify job; the objects count for the repository
    /// only once it has read them back and checked every id. → `{}`
    PutDone {
        upload: String,
        objects: Vec<DirectObject>,
    },
    /// → [`PutStatusResult`]: how far the hub is in verifying each of `uploads`.
    PutStatus { uploads: Vec<String> },
    /// Body: a Git pack. → `{"id": blake3}`
    PutGitPack,
    /// → `{"packs": [id]}`: the repository's Git packs not in `have`, oldest first.
    GitPacks { have: Vec<String> },
    /// → header, then the pack's bytes.
    GetGitPack { id: String },
    /// → [`GetDerivedResult`], then its bytes: what the hub's workers made of an asset
    /// the repository holds (`kind`: `poster`, `strip` or `proxy`), by recipe id.
    GetDerived { recipe: String, kind: String },
    /// → `{"results": [{"name", "ok", "error"}]}`
    UpdateRefs {
        updates: Vec<RefUpdate>,
        /// Git packs (from `put-git-pack`) that hold the new commits.
        packs: Vec<String>,
        /// Recipes the new commits' pointers name; each, and every object it lists,
        /// must be stored before a ref moves.
        recipes: Vec<String>,
        atomic: bool,
    },
    /// → [`KeysResult`]: whether the repository is encrypted, its key generation, the
    /// caller's wrapped keys and who holds which generation.
    Keys,
    /// Records the caller's public key (`dits-x25519:…`). → `{}`
    KeyRegister { public_key: String },
    /// Admin only: grants wrapped keys, or makes a new generation (rotation, revoking
    /// one member's). → `{}`
    KeyChange { change: KeyChangeRequest },
    /// → `{"lock": Lock}`; a path someone holds is `rejected`, with `{"lock": holder}`.
    LockCreate {
        path: String,
        /// Only pushes to this branch are checked against the lock; none: every branch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
    },
    /// → `{"locks": [Lock], "next_cursor": id?}`, filtered, oldest first.
    LockList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// → `{"ours": [Lock], "theirs": [Lock], "next_cursor": id?}`; `paths` narrows it.
    LockVerify {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paths: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// → `{"lock": Lock, "forced_by": name?}`. Someone else's lock needs `force` and the
    /// admin role.
    LockUnlock {
        id: String,
        #[serde(default)]
        force: bool,
    },
}

/// A repository secret wrapped for one member (`wrapped` in hex; only that member's
/// private key opens it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrappedKeyInfo {
    pub generation: u32,
    pub key_id: String,
    pub user: String,
    pub wrapped: String,
}

/// What `key-change` asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeyChangeRequest {
    /// More members get existing generations.
    Grant { wraps: Vec<WrappedKeyInfo> },
    /// Generation `generation` (the current one + 1), wrapped for each remaining
    /// member; `revoke` loses every wrapped key first. The first `rotate` of a repository
    /// that is not encrypted makes it encrypted.
    Rotate {
        generation: u32,
        wraps: Vec<WrappedKeyInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revoke: Option<String>,
    },
}

/// Who holds which generation of a key group (without the wrapped bytes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyHolder {
    pub user: String,
    pub generation: u32,
    pub key_id: String,
}

/// A member's registered public key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberKey {
    pub user: String,
    pub public_key: String,
}

/// `keys` → the repository's encryption as the caller may know it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeysResult {
    pub encrypted: bool,
    pub group: Option<String>,
    /// The generation new content is sealed under (0: encrypted, no key made yet).
    pub generation: u32,
    /// The caller's hub user name.
    pub user: String,
    /// The caller's wrapped keys.
    pub mine: Vec<WrappedKeyInfo>,
    pub holders: Vec<KeyHolder>,
    pub public_keys: Vec<MemberKey>,
}

/// `key-register`, `key-change` → nothing more than success.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Done {}

/// A lock as the hub reports it (the shape of Git LFS's locking API).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lock {
    pub id: String,
    pub path: String,
    /// RFC 3339, UTC.
    pub locked_at: String,
    pub owner: LockOwner,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockOwner {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefUpdate {
    pub name: String,
    /// The value the client saw (zero id: the ref must not exist).
    pub old: String,
    /// The new value (zero id: delete the ref).
    pub new: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefResult {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub const ZERO_OID: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// No token, or a token the hub doesn't know.
    Unauthenticated,
    /// No such repository, or the user may not read it (indistinguishable on purpose).
    NotFound,
    /// The user may read but not write.
    Forbidden,
    BadRequest,
    /// Bytes that don't hash to their id, a ref update whose data is missing.
    Rejected,
    Internal,
    /// A backend the hub needs (database, lock store, object storage) did not answer:
    /// retry later.
    Unavailable,
    /// The data is in archive storage; the hub has started a restore: retry once it is
    /// done (the message says about when), not at once.
    Restoring,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub result: serde_json::Value,
}

impl Response {
    pub fn ok(result: serde_json::Value) -> Self {
        Response {
            ok: true,
            code: None,
            message: None,
            result,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response {
            ok: false,
            code: Some(code),
            message: Some(message.into()),
            result: serde_json::Value::Null,
        }
    }
}

impl Response {
    /// A success carrying one of the typed results below.
    pub fn ok_with<T: OpResult>(result: &T) -> Result<Self, WireError> {
        let result =
            serde_json::to_value(result).map_err(|e| WireError::Protocol(e.to_string()))?;
        Ok(Response::ok(result))
    }

    /// The result as the typed answer of its op; a field missing from it is an error,
    /// never a default.
    pub fn result_as<T: OpResult>(self) -> Result<T, WireError> {
        serde_json::from_value(self.result)
            .map_err(|e| WireError::Protocol(format!("unexpected answer: {e}")))
    }
}

// The answer of each op, one struct per op, used by both hub and client. The field names
// are the wire format (docs/formats/wire.md): renaming one is a protocol change.

/// `refs` → the repository's refs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefsResult {
    pub refs: std::collections::BTreeMap<String, String>,
}

/// `missing` → which of the asked ids this repository does not hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MissingResult {
    pub missing: Vec<String>,
}

/// `wanted` → objects the hub asks to be sent again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WantedResult {
    pub wanted: Vec<String>,
}

/// `put` → objects newly stored for the repository, objects received, bytes received;
/// durable when sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PutResult {
    pub stored: u64,
    pub received: u64,
    pub bytes: u64,
}

/// `get` → how many objects follow the header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GetResult {
    pub count: u64,
}

/// One object of a directly transferred range or pack: its id (hex), where it starts
/// (from the range's or pack's first byte), its stored (envelope) length and plaintext
/// length.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectObject {
    pub id: String,
    pub at: u64,
    pub stored_len: u32,
    pub plain_len: u32,
}

/// Bytes `[offset, offset + len)` of the blob `url` names, holding `objects`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectRange {
    pub url: String,
    pub offset: u64,
    pub len: u64,
    pub objects: Vec<DirectObject>,
}

/// `get-urls` → ranges covering every asked id once, or `direct: false`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GetUrlsResult {
    pub direct: bool,
    #[serde(default)]
    pub ranges: Vec<DirectRange>,
}

/// `put-url` → the upload's name and where to PUT it, or `direct: false`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PutUrlResult {
    pub direct: bool,
    #[serde(default)]
    pub upload: String,
    #[serde(default)]
    pub url: String,
}

/// One upload's verification: `pending` (queued or running), `stored` (every object
/// checked and recorded; `stored` counts them) or `refused` (`error` says why; nothing
/// from it was recorded).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadState {
    pub upload: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `put-status` → one state per asked upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PutStatusResult {
    pub uploads: Vec<UploadState>,
}

/// `put-git-pack` → the pack's id (BLAKE3, hex) and size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PutGitPackResult {
    pub id: String,
    pub size: u64,
}

/// `git-packs` → visible packs not in `have`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitPacksResult {
    pub packs: Vec<String>,
}

/// `get-git-pack` → the size of the pack that follows the header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GetGitPackResult {
    pub size: u64,
}

/// `get-derived` → the size and BLAKE3 (hex) of the derived object that follows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GetDerivedResult {
    pub size: u64,
    pub hash: String,
}

/// `update-refs` → one result per update.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpdateRefsResult {
    pub results: Vec<RefResult>,
}

/// `lock-create` → the new lock; also the `result` of its `rejected` answer, naming the
/// holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockResult {
    pub lock: Lock,
}

/// `lock-list` → one page of locks; `next_cursor` is `null` on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockListResult {
    pub locks: Vec<Lock>,
    pub next_cursor: Option<String>,
}

/// `lock-verify` → the caller's locks and everyone else's; `next_cursor` as for
/// `lock-list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockVerifyResult {
    pub ours: Vec<Lock>,
    pub theirs: Vec<Lock>,
    pub next_cursor: Option<String>,
}

/// `lock-unlock` → the released lock, and who forced it when it was someone else's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnlockResult {
    pub lock: Lock,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_by: Option<String>,
}

/// The typed answer of an op: what `Response::result` holds when `ok`.
pub trait OpResult: Serialize + serde::de::DeserializeOwned {}

impl OpResult for RefsResult {}
impl OpResult for MissingResult {}
impl OpResult for WantedResult {}
impl OpResult for PutResult {}
impl OpResult for GetResult {}
impl OpResult for GetUrlsResult {}
impl OpResult for PutUrlResult {}
impl OpResult for PutStatusResult {}
impl OpResult for PutGitPackResult {}
impl OpResult for GitPacksResult {}
impl OpResult for GetDerivedResult {}
impl OpResult for GetGitPackResult {}
impl OpResult for UpdateRefsResult {}
impl OpResult for LockResult {}
impl OpResult for LockListResult {}
impl OpResult for LockVerifyResult {}
impl OpResult for UnlockResult {}
impl OpResult for KeysResult {}
impl OpResult for Done {}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), WireError> {
    let bytes = serde_json::to_vec(value).map_err(|e| WireError::Protocol(e.to_string()))?;
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    Ok(())
}

pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<T, WireError> {
    let len = read_frame_len(r, MAX_FRAME).await?;
    read_frame_body(r, len).await
}

/// A frame's length prefix, refused when it claims more than `max` bytes (before anything
/// is allocated for it).
pub async fn read_frame_len<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<u32, WireError> {
    let len = r.read_u32().await?;
    if len > max {
        return Err(WireError::Protocol(format!(
            "frame of {len} bytes is too large (at most {max})"
        )));
    }
    Ok(len)
}

/// The `len` bytes of a frame whose length prefix was read, parsed.
pub async fn read_frame_body<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    len: u32,
) -> Result<T, WireError> {
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(|e| WireError::Protocol(format!("bad frame: {e}")))
}

pub async fn write_object<W: AsyncWrite + Unpin>(
    w: &mut W,
    id: &ChunkId,
    plain_len: u32,
    sealed: &[u8],
) -> Result<(), WireError> {
    let mut head = [0u8; 40];
    head[..32].copy_from_slice(&id.0);
    head[32..36].copy_from_slice(&plain_len.to_be_bytes());
    head[36..].copy_from_slice(&(sealed.len() as u32).to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(sealed).await?;
    Ok(())
}

/// An object as sent: its id, plain length and sealed bytes, not yet verified.
pub struct WireObject {
    pub id: ChunkId,
    pub plain_len: u32,
    pub sealed: Vec<u8>,
}

impl WireObject {
    /// Opens the envelope and checks the bytes are the id's.
    pub fn open(&self) -> Result<Vec<u8>, dits_core::envelope::EnvelopeError> {
        dits_core::envelope::open(&self.id, &self.sealed, u64::from(self.plain_len))
    }

    /// Checks the envelope is the id's, keeping nothing: for storing it as it came.
    pub fn verify(&self) -> Result<(), dits_core::envelope::EnvelopeError> {
        dits_core::envelope::verify(&self.id, &self.sealed, u64::from(self.plain_len))
    }
}

/// The next object, or `None` when the sender finished cleanly between objects.
pub async fn read_object<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<WireObject>, WireError> {
    let mut id = [0u8; 32];
    let first = r.read(&mut id[..1]).await?;
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut id[1..]).await?;
    let plain_len = r.read_u32().await?;
    let sealed_len = r.read_u32().await?;
    if plain_len > MAX_OBJECT || sealed_len > MAX_SEALED_OBJECT {
        return Err(WireError::Protocol(format!(
            "object of {plain_len} bytes is too large"
        )));
    }
    let mut sealed = vec![0u8; sealed_len as usize];
    r.read_exact(&mut sealed).await?;
    Ok(Some(WireObject {
        id: ChunkId(id),
        plain_len,
        sealed,
    }))
}

pub fn ids_to_hex(ids: &[ChunkId]) -> Vec<String> {
    ids.iter().map(|i| i.to_hex()).collect()
}

/// An id in a request or answer that is not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an object id")]
pub struct BadObjectId(pub String);

pub fn ids_from_hex(ids: &[String]) -> Result<Vec<ChunkId>, BadObjectId> {
    ids.iter()
        .map(|s| s.parse::<ChunkId>().map_err(|_| BadObjectId(s.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_object_sealed_and_padded_fits_on_the_wire() {
        let envelope = MAX_OBJECT as usize + dits_core::envelope::HEADER_LEN;
        for len in [envelope, envelope - 1, (MAX_OBJECT / 2) as usize + 3] {
            assert!(dits_core::crypt::sealed_len(len) <= MAX_SEALED_OBJECT as usize);
        }
    }

    #[test]
    fn a_result_missing_a_field_is_an_error_not_a_default() {
        let response = Response::ok(serde_json::json!({ "stored": 1, "received": 2 }));
        assert!(response.result_as::<PutResult>().is_err());
    }

    #[test]
    fn typed_results_keep_the_wire_field_names() {
        let page = LockListResult {
            locks: Vec::new(),
            next_cursor: None,
        };
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "locks": [], "next_cursor": null })
        );
        let put = PutResult {
            stored: 1,
            received: 2,
            bytes: 3,
        };
        let back = Response::ok_with(&put).unwrap().result_as::<PutResult>();
        assert_eq!(back.unwrap(), put);
    }
}
