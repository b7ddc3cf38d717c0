//! The lock operations (create, list, verify, unlock) for a caller already authorised on
//! a repository, answering with the wire's typed results. The QUIC dispatch and the HTTP
//! lock API both call these, so the rules live in one place.

use dits_wire::wire::{Lock, LockListResult, LockResult, LockVerifyResult, UnlockResult};

use crate::error::HubError;
use crate::locks::{rfc3339, LockQuery, LockStore, StoredLock};
use crate::meta::{Role, User};
use crate::names::{check_path, valid_ref_name};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Paths one `verify` may ask about.
const MAX_VERIFY_PATHS: usize = 100_000;

/// A lock store failure, named as such in the log.
fn store_error(e: anyhow::Error) -> HubError {
    e.context("lock store").into()
}

fn parse_id(s: &str) -> Result<i64, HubError> {
    s.parse::<i64>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| HubError::BadRequest(format!("{s:?} is not a lock id")))
}

fn page(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

/// The last id of a full page: where the next page starts.
fn next_cursor(locks: &[StoredLock], limit: u32) -> Option<String> {
    if locks.len() as u32 == limit {
        locks.last().map(|l| l.id.to_string())
    } else {
        None
    }
}

/// The operations, for a user already authorised on `repo` with `role`.
pub struct LockService<'a> {
    pub store: &'a dyn LockStore,
    pub repo: i64,
    pub repo_name: &'a str,
    pub user: &'a User,
    pub role: Role,
}

impl LockService<'_> {
    fn need_write(&self) -> Result<(), HubError> {
        if self.role < Role::Write {
            return Err(HubError::Forbidden(format!(
                "user {} may read {} but not lock or unlock files in it",
                self.user.name, self.repo_name
            )));
        }
        Ok(())
    }

    pub async fn create(&self, path: &str, branch: Option<&str>) -> Result<LockResult, HubError> {
        self.need_write()?;
        check_path(path)?;
        if let Some(b) = branch {
            if b.is_empty() || !valid_ref_name(&format!("refs/heads/{b}")) {
                return Err(HubError::BadRequest(format!("{b:?} is not a branch name")));
            }
        }
        let acquired = self
            .store
            .acquire(self.repo, path, self.user, branch)
            .await
            .map_err(store_error)?;
        match acquired {
            Ok(lock) => {
                tracing::info!(repo = self.repo_name, path, user = %self.user.name, id = lock.id, "locked");
                Ok(LockResult {
                    lock: lock.to_wire(),
                })
            }
            Err(holder) => {
                let whom = if holder.owner_id == self.user.id {
                    format!("{} (you)", holder.owner)
                } else {
                    holder.owner.clone()
                };
                Err(HubError::LockHeld {
                    message: format!(
                        "{path} is already locked by {whom} since {} (lock {})",
                        rfc3339(holder.locked_at),
                        holder.id
                    ),
                    holder: Box::new(holder.to_wire()),
                })
            }
        }
    }

    pub async fn list(
        &self,
        path: Option<String>,
        id: Option<String>,
        owner: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<LockListResult, HubError> {
        let limit = page(limit);
        let query = LockQuery {
            path,
            id: id.as_deref().map(parse_id).transpose()?,
            owner,
            after: cursor.as_deref().map(parse_id).transpose()?,
            limit,
        };
        let locks = self
            .store
            .list(self.repo, &query)
            .await
            .map_err(store_error)?;
        Ok(LockListResult {
            locks: locks.iter().map(StoredLock::to_wire).collect(),
            next_cursor: next_cursor(&locks, limit),
        })
    }

    pub async fn verify(
        &self,
        paths: Option<Vec<String>>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<LockVerifyResult, HubError> {
        let (locks, next_cursor) = match paths {
            Some(paths) => {
                if paths.len() > MAX_VERIFY_PATHS {
                    return Err(HubError::BadRequest(format!(
                        "at most {MAX_VERIFY_PATHS} paths per verify"
                    )));
                }
                let locks = self
                    .store
                    .on_paths(self.repo, &paths)
                    .await
                    .map_err(store_error)?;
                (locks, None)
            }
            None => {
                let limit = page(limit);
                let query = LockQuery {
                    after: cursor.as_deref().map(parse_id).transpose()?,
                    limit,
                    ..LockQuery::default()
                };
                let locks = self
                    .store
                    .list(self.repo, &query)
                    .await
                    .map_err(store_error)?;
                let next = next_cursor(&locks, limit);
                (locks, next)
            }
        };
        let (ours, theirs): (Vec<_>, Vec<_>) =
            locks.iter().partition(|l| l.owner_id == self.user.id);
        let wire = |v: Vec<&StoredLock>| {
            v.into_iter()
                .map(StoredLock::to_wire)
                .collect::<Vec<Lock>>()
        };
        Ok(LockVerifyResult {
            ours: wire(ours),
            theirs: wire(theirs),
            next_cursor,
        })
    }

    pub async fn unlock(&self, id: &str, force: bool) -> Result<UnlockResult, HubError> {
        self.need_write()?;
        let id = parse_id(id)?;
        let not_found =
            || HubError::NotFound(format!("there is no lock {id} in {}", self.repo_name));
        let lock = self
            .store
            .get(self.repo, id)
            .await
            .map_err(store_error)?
            .ok_or_else(not_found)?;
        let theirs = lock.owner_id != self.user.id;
        if theirs && !force {
            return Err(HubError::Forbidden(format!(
                "{} is locked by {}, not you; an admin of {} can release it with --force",
                lock.path, lock.owner, self.repo_name
            )));
        }
        if theirs && self.role < Role::Admin {
            return Err(HubError::Forbidden(format!(
                "only an admin of {} may force-unlock {}'s lock on {}",
                self.repo_name, lock.owner, lock.path
            )));
        }
        let released = self
            .store
            .release(self.repo, id, self.user, theirs)
            .await
            .map_err(store_error)?
            .ok_or_else(not_found)?;
        if theirs {
            tracing::warn!(repo = self.repo_name, path = %released.path, owner = %released.owner, by = %self.user.name, id, "lock force-unlocked");
        } else {
            tracing::info!(repo = self.repo_name, path = %released.path, user = %self.user.name, id, "unlocked");
        }
        Ok(UnlockResult {
            lock: released.to_wire(),
            forced_by: theirs.then(|| self.user.name.clone()),
        })
    }
}
