//! Hub metadata: users and tokens, repositories and members, refs (moved only by
//! compare-and-swap inside a transaction), where each object lives (pack key, offset),
//! which repositories hold which objects, and each repository's Git packs. Objects are
//! stored once across repositories, but a repository only sees (and a client only learns
//! of) objects uploaded to it.
//!
//! One trait, two backends: SQLite in the data directory (the embedded default,
//! [`sqlite`]) and PostgreSQL shared by any number of hub processes ([`pg`]). The trait
//! is async: PostgreSQL is async by nature, and SQLite's blocking calls run on the
//! blocking pool (`spawn_blocking`), never on the runtime's workers.

pub mod derived;
pub mod gc;
pub mod jobs;
pub mod pg;
pub mod sqlite;
pub mod tier;

use std::collections::BTreeMap;
use std::path::Path;

use dits_core::ChunkId;
use dits_wire::wire::{RefResult, RefUpdate, ZERO_OID};

pub use crate::mirror::IndexedCommit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read = 1,
    Write = 2,
    Admin = 3,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub offset: u64,
    pub stored_len: u32,
    pub len: u32,
}

impl Role {
    pub fn from_i64(n: i64) -> Role {
        match n {
            3 => Role::Admin,
            2 => Role::Write,
            _ => Role::Read,
        }
    }
}

/// Where hub metadata lives. Every method is one transaction.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync {
    /// A trivial query: is the database answering?
    async fn ping(&self) -> anyhow::Result<()>;
    /// What to call this installation in shared services (Redis keys): the same for every
    /// hub process on one metadata store.
    async fn namespace(&self) -> anyhow::Result<String>;
    /// Creates a user and returns a new token for them (shown once; only its hash is kept).
    async fn add_user(&self, name: &str) -> anyhow::Result<String>;
    async fn user_for_token(&self, token: &str) -> anyhow::Result<Option<User>>;
    /// Creates `owner/name`; a user called `owner` becomes its admin.
    async fn create_repo(&self, owner: &str, name: &str) -> anyhow::Result<()>;
    async fn set_member(
        &self,
        owner: &str,
        name: &str,
        user: &str,
        role: Role,
    ) -> anyhow::Result<()>;
    /// The id of OWNER/NAME, if it exists.
    async fn find_repo(&self, owner: &str, name: &str) -> anyhow::Result<Option<i64>>;
    /// The repository's id and the user's role in it; `None` when either the repository
    /// doesn't exist or the user isn't a member.
    async fn access(&self, repo: &str, user: &User) -> anyhow::Result<Option<(i64, Role)>>;
    /// Every repository `user` is a member of (`owner/name`, role), by name.
    async fn repos_for(&self, user: &User) -> anyhow::Result<Vec<(String, Role)>>;
    async fn refs(&self, repo: i64) -> anyhow::Result<BTreeMap<String, String>>;
    /// Which of `ids` the repository does not hold, in their order.
    async fn missing(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<Vec<ChunkId>>;
    /// Where each of `ids` is stored (in their order; `None` if it is not), whichever
    /// repository uploaded it. One round trip per call, not per id: a 1 GB transfer asks
    /// about thousands of objects.
    async fn locations(&self, ids: &[ChunkId]) -> anyhow::Result<Vec<Option<(String, Location)>>>;
    /// Records a durable pack's objects and links `ids` (those plus ones already stored)
    /// to the repository, in one transaction.
    async fn record_objects(
        &self,
        repo: i64,
        pack: Option<&str>,
        stored: &[(ChunkId, Location)],
        ids: &[ChunkId],
    ) -> anyhow::Result<()>;
    async fn add_git_pack(&self, repo: i64, id: &str, key: &str, size: u64) -> anyhow::Result<()>;
    /// Committed Git packs (those a ref update made visible), oldest first.
    async fn git_packs(&self, repo: i64) -> anyhow::Result<Vec<String>>;
    /// A Git pack's blob key, size and whether a ref update has made it visible.
    async fn git_pack(&self, repo: i64, id: &str) -> anyhow::Result<Option<(String, u64, bool)>>;
    /// Moves refs by compare-and-swap and makes `packs` visible, in one transaction.
    /// Without `atomic`, each ref succeeds or fails on its own. Every pack of `packs`
    /// must still be stored ([`replaced_pack_refusal`]), and every object of
    /// `required` must still be linked to the repository (each is then seen now), or no
    /// ref moves ([`collected_refusal`]).
    async fn update_refs(
        &self,
        repo: i64,
        updates: &[RefUpdate],
        packs: &[String],
        required: &[ChunkId],
        atomic: bool,
    ) -> anyhow::Result<Vec<RefResult>>;
    /// Marks `ids`, where the repository holds them, as seen now: `missing` told a client
    /// it need not upload them, so a collection must not drop them before its push ends.
    async fn touch(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<()>;
    /// The collector's side of the store.
    fn gc(&self) -> &dyn gc::GcStore;
    /// The cold-tier reaper's side of the store.
    fn tier(&self) -> &dyn tier::TierStore;
    /// The job queue and scrub findings.
    fn jobs(&self) -> &dyn jobs::JobStore;
    /// Posters, strips and proxies the transcode workers made.
    fn derived(&self) -> &dyn derived::DerivedStore;
    /// Adds pushed commits (and the assets their pointers name) to the commit index;
    /// commits already indexed are left as they are.
    async fn record_commits(&self, repo: i64, commits: &[IndexedCommit]) -> anyhow::Result<()>;
    /// The indexed commits of a repository, most recently pushed first (within a push,
    /// newest first): at most `limit`, after the `skip` newest.
    async fn commit_log(
        &self,
        repo: i64,
        skip: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<IndexedCommit>>;
    /// The most recently pushed commit that introduced asset `recipe` in the repository,
    /// with the path, what the pointer says, and its previous version there.
    async fn asset_version(
        &self,
        repo: i64,
        recipe: &ChunkId,
    ) -> anyhow::Result<Option<AssetVersion>>;
    /// Records that `shared` bytes of the version of `path` in `commit` were already
    /// held by its previous version (the deduplication the history shows).
    async fn record_shared(
        &self,
        repo: i64,
        commit: &str,
        path: &str,
        shared: u64,
    ) -> anyhow::Result<()>;
    /// Makes an account change and records it in the audit log, in one transaction;
    /// returns the new token when the change issues one.
    async fn change_account(
        &self,
        change: &AccountChange,
        actor: &str,
    ) -> anyhow::Result<Option<String>>;
    /// Records an operator's action that is not an [`AccountChange`] (user add, repository
    /// create, member set) in the audit log.
    async fn audit(&self, event: &AuditEntry) -> anyhow::Result<()>;
    /// The audit log, newest first, at most `limit` entries.
    async fn audit_log(&self, limit: u32) -> anyhow::Result<Vec<AuditEntry>>;
    /// What the repository holds: its media versions and their logical size (from the
    /// commit index), and the objects it references and their stored size.
    async fn repo_stats(&self, repo: i64) -> anyhow::Result<RepoStats>;
    /// Whether the repository is encrypted (belongs to a key group): one small read, for
    /// every upload and ref update.
    async fn encrypted(&self, repo: i64) -> anyhow::Result<bool>;
    /// The repository's encryption keys: its key group, current generation, every wrapped
    /// key of the group and the public keys the members concerned registered.
    async fn key_state(&self, repo: i64) -> anyhow::Result<KeyState>;
    /// Records (or replaces) the public key `user` unwraps repository secrets with.
    async fn set_public_key(&self, user: &User, key: &str) -> anyhow::Result<()>;
    /// Makes the repository encrypted, its secrets those of key group `group` (created,
    /// at generation 0, when new). Refused when the repository already belongs to
    /// another group; a no-op when it belongs to this one.
    async fn set_key_group(&self, repo: i64, group: &str) -> anyhow::Result<()>;
    /// Changes the wrapped keys of the repository's key group, in one transaction (see
    /// [`KeyChange`]). Refused when the repository is not encrypted.
    async fn change_keys(&self, repo: i64, change: &KeyChange) -> anyhow::Result<()>;
}

/// [`MetaStore::repo_stats`]' answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepoStats {
    /// Distinct media versions the commit index knows (one per recipe).
    pub versions: u64,
    /// Their file sizes added up: what storing every version whole would take.
    pub logical_bytes: u64,
    /// Objects (chunks, boxes, recipes) the repository holds.
    pub objects: u64,
    /// Their stored (compressed, and in an encrypted repository sealed) sizes added up.
    pub stored_bytes: u64,
}

/// A repository (or key group) secret wrapped for one member's public key: only that
/// member's private key opens it. The hub stores and hands these out; it cannot open one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Which secret of the group: 1 for the first, one more at each rotation.
    pub generation: u32,
    /// The secret's public fingerprint (what pointers name it by).
    pub key_id: String,
    pub user: String,
    pub wrapped: Vec<u8>,
}

/// What [`MetaStore::key_state`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyState {
    /// The key group; `None`: the repository is not encrypted.
    pub group: Option<String>,
    /// The generation new content is sealed under; 0 before the first key is made.
    pub generation: u32,
    /// Every wrapped key of the group, by generation then user.
    pub wraps: Vec<WrappedKey>,
    /// `(user, public key)` for each member of the repository, and each holder of a
    /// wrapped key of the group, who registered a public key; by user.
    pub public_keys: Vec<(String, String)>,
}

/// A change to a key group's wrapped keys.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// More members get existing generations (each wrap's generation is between 1 and
    /// the current one, and its key id that generation's).
    Grant { wraps: Vec<WrappedKey> },
    /// A new secret, generation current + 1, wrapped for each of `wraps` (all of that
    /// generation and key id). `revoke` first loses every wrapped key of the group.
    Rotate {
        generation: u32,
        wraps: Vec<WrappedKey>,
        revoke: Option<String>,
    },
}

/// Checks one wrap of a [`KeyChange::Grant`] to key group `group` (at generation
/// `current`): an existing generation, under that generation's key id (`stored`: the key
/// id the group's wrapped keys of it have; `None` when it has none, so nothing can vouch
/// for the key id). Shared by both backends and the
/// `key-change` op, which checks a request before it reaches either.
pub fn check_grant(
    group: &str,
    current: u32,
    wrap: &WrappedKey,
    stored: Option<&str>,
) -> anyhow::Result<()> {
    let generation = wrap.generation;
    anyhow::ensure!(
        (1..=current).contains(&generation),
        "key group {group} has no key generation {generation} (current is {current}); run `git dits key status` and try again"
    );
    match stored {
        None => anyhow::bail!(
            "key group {group} holds no wrapped key of generation {generation}, so it cannot be granted"
        ),
        Some(id) if id != wrap.key_id => anyhow::bail!(
            "key id {} is not the one of generation {generation} in key group {group} ({id}); run `git dits key status` and try again",
            wrap.key_id
        ),
        Some(_) => Ok(()),
    }
}

/// Checks a [`KeyChange::Rotate`] of key group `group` (at generation `current`): the
/// next generation, one key id, wrapped at least once, once per member, and not for the
/// member it revokes. Shared by both backends and the
/// `key-change` op, which checks a request before it reaches either.
pub fn check_rotation(
    group: &str,
    current: u32,
    generation: u32,
    wraps: &[WrappedKey],
    revoke: Option<&str>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        current.checked_add(1) == Some(generation),
        "key generation {generation} is not the next one of key group {group} (current is {current}); run `git dits key status` and try again"
    );
    let Some(first) = wraps.first() else {
        anyhow::bail!("a new key must be wrapped for at least one member");
    };
    let mut users = std::collections::BTreeSet::new();
    for w in wraps {
        anyhow::ensure!(
            w.generation == generation,
            "a rotation to generation {generation} cannot wrap a key of generation {}",
            w.generation
        );
        anyhow::ensure!(
            w.key_id == first.key_id,
            "a rotation makes one key, but its wraps name two: {} and {}",
            first.key_id,
            w.key_id
        );
        anyhow::ensure!(
            revoke != Some(w.user.as_str()),
            "the new key cannot be wrapped for {}, whom the rotation revokes",
            w.user
        );
        anyhow::ensure!(
            users.insert(w.user.as_str()),
            "the new key is wrapped twice for {}",
            w.user
        );
    }
    Ok(())
}

/// What an operator can change about accounts after creating them.
#[derive(Debug, Clone)]
pub enum AccountChange {
    /// A further token for `user` (another machine); earlier ones stay valid.
    IssueToken {
        user: String,
    },
    /// Revokes every token of `user` and issues one new one.
    RotateTokens {
        user: String,
    },
    /// A token for a signed-in browser, which stops working at `expires` (Unix seconds)
    /// whatever the cookie holding it says.
    IssueSession {
        user: String,
        expires: i64,
    },
    /// Revokes one token, given by value (a leaked one).
    RevokeToken {
        token: String,
    },
    /// Revokes every token of `user`.
    RevokeTokens {
        user: String,
    },
    /// `user` can no longer authenticate; tokens and memberships stay for `Enable`.
    Disable {
        user: String,
    },
    Enable {
        user: String,
    },
    /// Revokes `user`'s tokens, removes their memberships and disables them. The name
    /// stays, so lock and audit history still says who did what.
    RemoveUser {
        user: String,
    },
    /// Takes `user`'s role in `owner/name` away.
    RemoveMember {
        owner: String,
        name: String,
        user: String,
    },
}

impl AccountChange {
    /// The audit log's action name.
    pub fn action(&self) -> &'static str {
        match self {
            AccountChange::IssueToken { .. } => "token-issue",
            AccountChange::IssueSession { .. } => "session-issue",
            AccountChange::RotateTokens { .. } => "token-rotate",
            AccountChange::RevokeToken { .. } => "token-revoke",
            AccountChange::RevokeTokens { .. } => "tokens-revoke",
            AccountChange::Disable { .. } => "user-disable",
            AccountChange::Enable { .. } => "user-enable",
            AccountChange::RemoveUser { .. } => "user-remove",
            AccountChange::RemoveMember { .. } => "member-remove",
        }
    }
}

/// One entry of the operators' audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// Who ran the command (the operating-system user).
    pub actor: String,
    pub action: String,
    /// The user or repository acted on.
    pub subject: String,
    pub detail: String,
}

impl AuditEntry {
    pub fn now(actor: &str, action: &str, subject: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            at: unix_now(),
            actor: actor.to_string(),
            action: action.to_string(),
            subject: subject.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// Every update of `updates` failed because object `id`, which the new commits need,
/// was collected between the hub's check and the update.
pub fn collected_refusal(updates: &[RefUpdate], id: &ChunkId) -> Vec<RefResult> {
    refuse_all(
        updates,
        &format!(
            "object {} is no longer on the hub (collected as garbage while this push ran); push again",
            id.short()
        ),
    )
}

/// Every update of `updates` failed because Git pack `id`, which they name, was replaced
/// by garbage collection between the hub's check and the update.
pub fn replaced_pack_refusal(updates: &[RefUpdate], id: &str) -> Vec<RefResult> {
    refuse_all(
        updates,
        &format!(
            "Git pack {id} is no longer on the hub (replaced by garbage collection while this push ran); push again"
        ),
    )
}

/// Every update of `updates` failed with `message`.
fn refuse_all(updates: &[RefUpdate], message: &str) -> Vec<RefResult> {
    updates
        .iter()
        .map(|u| RefResult {
            name: u.name.clone(),
            ok: false,
            error: Some(message.to_string()),
        })
        .collect()
}

/// The compare-and-swap decision for `updates`, given each ref's current value (`None`:
/// the ref does not exist): stale updates fail, and with `atomic` one failure fails all.
pub fn decide_ref_updates(
    updates: &[RefUpdate],
    current: &[Option<String>],
    atomic: bool,
) -> Vec<RefResult> {
    let mut results: Vec<RefResult> = updates
        .iter()
        .zip(current)
        .map(|(u, cur)| {
            let ok = cur.as_deref().unwrap_or(ZERO_OID) == u.old;
            RefResult {
                name: u.name.clone(),
                ok,
                error: (!ok).then(|| "stale info".to_string()),
            }
        })
        .collect();
    if atomic && !results.iter().all(|r| r.ok) {
        for r in results.iter_mut().filter(|r| r.ok) {
            r.ok = false;
            r.error = Some("atomic push failed".to_string());
        }
    }
    results
}

/// Seconds since the Unix epoch: the hub's timestamps (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// A new random user token.
pub fn new_token() -> anyhow::Result<String> {
    Ok(format!("dits_{}", random_hex(24)?))
}

/// A random id made once and kept in `dir/hub-id` (the embedded hub's namespace).
pub fn hub_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("hub-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = random_hex(8)?;
    let tmp = dir.join("hub-id.tmp");
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// `bytes` random bytes, in hex.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut raw = vec![0u8; bytes];
    getrandom::getrandom(&mut raw).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// A pointer rebuilt from the commit index's columns (`None` if an id is not 32 bytes).
/// One version of an asset as the commit index knows it ([`MetaStore::asset_version`]).
#[derive(Debug, Clone)]
pub struct AssetVersion {
    pub commit: String,
    pub path: String,
    pub pointer: dits_core::pointer::Pointer,
    /// The recipe this version replaced at `path` in the commit's first parent.
    pub previous: Option<ChunkId>,
    /// Bytes of this version the previous one already held, once worked out.
    pub shared: Option<u64>,
}

pub fn stored_pointer(
    recipe: &[u8],
    oid: &[u8],
    size: i64,
    media: String,
) -> Option<dits_core::pointer::Pointer> {
    Some(dits_core::pointer::Pointer {
        media,
        oid: stored_id(oid)?,
        recipe: stored_id(recipe)?,
        size: size as u64,
    })
}

/// An object id as a metadata column holds it (32 bytes), or None for any other length.
pub fn stored_id(bytes: &[u8]) -> Option<ChunkId> {
    Some(ChunkId(bytes.try_into().ok()?))
}
