//! File locks: the store behind them (one trait, so the Redis backend of the scale-out
//! work can honour the same atomic acquire/release), the rules for a lockable path, and
//! the operations both the QUIC wire protocol and the HTTP API serve.
//!
//! One lock per path per repository. A lock may be scoped to a branch: it then only
//! stops pushes to that branch; unscoped (the default, like Git LFS) it stops every push
//! that changes the path. Either way nobody else can take the path's lock meanwhile.

use std::path::Path;
use std::sync::Mutex;

use dits_wire::wire::{ErrorCode, Lock, LockOwner, Response};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use crate::meta::{unix_now, Role, User};

/// Paths longer than this are refused (Git itself handles longer, file systems rarely).
pub const MAX_PATH_LEN: usize = 4096;
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// A stored lock, with the owner's user id for ownership checks.
#[derive(Debug, Clone)]
pub struct StoredLock {
    pub id: i64,
    pub path: String,
    pub owner_id: i64,
    pub owner: String,
    pub branch: Option<String>,
    pub locked_at: i64,
}

impl StoredLock {
    pub fn to_wire(&self) -> Lock {
        Lock {
            id: self.id.to_string(),
            path: self.path.clone(),
            locked_at: rfc3339(self.locked_at),
            owner: LockOwner {
                name: self.owner.clone(),
            },
            branch: self.branch.clone(),
        }
    }

    /// Whether a push to `ref_name` is subject to this lock.
    pub fn covers_ref(&self, ref_name: &str) -> bool {
        match &self.branch {
            None => true,
            Some(b) => ref_name.strip_prefix("refs/heads/") == Some(b.as_str()),
        }
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Default, Clone)]
pub struct LockQuery {
    pub path: Option<String>,
    pub id: Option<i64>,
    pub owner: Option<String>,
    /// Locks with an id greater than this (the previous page's last id).
    pub after: Option<i64>,
    pub limit: u32,
}

/// Where locks live. Acquire and release are atomic: of any number of concurrent
/// acquires of one path exactly one succeeds, and the rest learn who holds it.
pub trait LockStore: Send + Sync {
    /// `Ok(Ok(lock))` if taken now, `Ok(Err(holder))` if someone (maybe the same user)
    /// holds the path.
    fn acquire(
        &self,
        repo: i64,
        path: &str,
        owner: &User,
        branch: Option<&str>,
    ) -> anyhow::Result<Result<StoredLock, StoredLock>>;
    /// Removes lock `id` and records who did it; `None` if there is no such lock.
    fn release(
        &self,
        repo: i64,
        id: i64,
        by: &User,
        forced: bool,
    ) -> anyhow::Result<Option<StoredLock>>;
    fn get(&self, repo: i64, id: i64) -> anyhow::Result<Option<StoredLock>>;
    fn list(&self, repo: i64, query: &LockQuery) -> anyhow::Result<Vec<StoredLock>>;
    /// Every lock on `paths` (for checking a push), however many.
    fn on_paths(&self, repo: i64, paths: &[String]) -> anyhow::Result<Vec<StoredLock>>;
    fn any(&self, repo: i64) -> anyhow::Result<bool>;
}

/// A lock store that is the durable record (SQLite or PostgreSQL): the Redis backend
/// writes through to one and reloads from it.
pub trait DurableLocks: LockStore {
    /// Every lock of every repository, with its repository id.
    fn all(&self) -> anyhow::Result<Vec<(i64, StoredLock)>>;
    fn insert_exact(&self, repo: i64, lock: &StoredLock) -> anyhow::Result<()>;
    fn events(&self, repo: i64) -> anyhow::Result<Vec<LockEvent>>;
}

/// One entry of the lock audit trail: `action` is lock, unlock or force-unlock.
#[derive(Debug, Clone)]
pub struct LockEvent {
    pub lock: i64,
    pub path: String,
    pub owner: String,
    pub actor: String,
    pub action: String,
    pub at: i64,
}

/// The embedded backend: two tables in the hub's SQLite database.
pub struct SqliteLocks {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS locks (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id INTEGER NOT NULL, path TEXT NOT NULL, owner_id INTEGER NOT NULL, branch TEXT, locked_at INTEGER NOT NULL, UNIQUE(repo_id, path));
CREATE TABLE IF NOT EXISTS lock_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, repo_id INTEGER NOT NULL, lock_id INTEGER NOT NULL, path TEXT NOT NULL, owner_id INTEGER NOT NULL, actor_id INTEGER NOT NULL, action TEXT NOT NULL, at INTEGER NOT NULL);
";

const SELECT: &str = "SELECT l.id, l.path, l.owner_id, u.name, l.branch, l.locked_at, l.repo_id FROM locks l JOIN users u ON u.id = l.owner_id";

/// Appends one entry to the audit trail: `action` is lock, unlock or force-unlock.
fn record_event(
    tx: &rusqlite::Transaction<'_>,
    repo: i64,
    lock: &StoredLock,
    actor: i64,
    action: &str,
    at: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO lock_events (repo_id, lock_id, path, owner_id, actor_id, action, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![repo, lock.id, lock.path, lock.owner_id, actor, action, at],
    )?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredLock> {
    Ok(StoredLock {
        id: r.get(0)?,
        path: r.get(1)?,
        owner_id: r.get(2)?,
        owner: r.get(3)?,
        branch: r.get(4)?,
        locked_at: r.get(5)?,
    })
}

impl SqliteLocks {
    pub fn open(path: &Path) -> anyhow::Result<SqliteLocks> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteLocks {
            conn: Mutex::new(conn),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DurableLocks for SqliteLocks {
    fn all(&self) -> anyhow::Result<Vec<(i64, StoredLock)>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!("{SELECT} ORDER BY l.id"))?;
        let locks = stmt
            .query_map([], |r| Ok((r.get(6)?, row(r)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(locks)
    }

    /// Records a lock another store granted (write-through), with its id.
    fn insert_exact(&self, repo: i64, lock: &StoredLock) -> anyhow::Result<()> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR REPLACE INTO locks (id, repo_id, path, owner_id, branch, locked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![lock.id, repo, lock.path, lock.owner_id, lock.branch, lock.locked_at],
        )?;
        record_event(&tx, repo, lock, lock.owner_id, "lock", lock.locked_at)?;
        tx.commit()?;
        Ok(())
    }

    /// The audit trail of one repository, oldest first.
    fn events(&self, repo: i64) -> anyhow::Result<Vec<LockEvent>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT e.lock_id, e.path, o.name, a.name, e.action, e.at FROM lock_events e
             JOIN users o ON o.id = e.owner_id JOIN users a ON a.id = e.actor_id
             WHERE e.repo_id = ?1 ORDER BY e.seq",
        )?;
        let rows = stmt
            .query_map(params![repo], |r| {
                Ok(LockEvent {
                    lock: r.get(0)?,
                    path: r.get(1)?,
                    owner: r.get(2)?,
                    actor: r.get(3)?,
                    action: r.get(4)?,
                    at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

impl LockStore for SqliteLocks {
    fn acquire(
        &self,
        repo: i64,
        path: &str,
        owner: &User,
        branch: Option<&str>,
    ) -> anyhow::Result<Result<StoredLock, StoredLock>> {
        let mut db = self.db();
        // IMMEDIATE: take the write lock up front (waiting on the busy timeout) rather than
        // upgrade a read, which SQLite refuses at once if another connection wrote since.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = unix_now();
        // UNIQUE(repo_id, path) makes the insert the atomic test-and-set.
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO locks (repo_id, path, owner_id, branch, locked_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![repo, path, owner.id, branch, at],
        )?;
        let lock = tx.query_row(
            &format!("{SELECT} WHERE l.repo_id = ?1 AND l.path = ?2"),
            params![repo, path],
            row,
        )?;
        if inserted == 1 {
            record_event(&tx, repo, &lock, owner.id, "lock", at)?;
        }
        tx.commit()?;
        Ok(if inserted == 1 { Ok(lock) } else { Err(lock) })
    }

    fn release(
        &self,
        repo: i64,
        id: i64,
        by: &User,
        forced: bool,
    ) -> anyhow::Result<Option<StoredLock>> {
        let mut db = self.db();
        // IMMEDIATE: take the write lock up front (waiting on the busy timeout) rather than
        // upgrade a read, which SQLite refuses at once if another connection wrote since.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(lock) = tx
            .query_row(
                &format!("{SELECT} WHERE l.repo_id = ?1 AND l.id = ?2"),
                params![repo, id],
                row,
            )
            .optional()?
        else {
            return Ok(None);
        };
        tx.execute("DELETE FROM locks WHERE id = ?1", params![id])?;
        let action = if forced { "force-unlock" } else { "unlock" };
        record_event(&tx, repo, &lock, by.id, action, unix_now())?;
        tx.commit()?;
        Ok(Some(lock))
    }

    fn get(&self, repo: i64, id: i64) -> anyhow::Result<Option<StoredLock>> {
        Ok(self
            .db()
            .query_row(
                &format!("{SELECT} WHERE l.repo_id = ?1 AND l.id = ?2"),
                params![repo, id],
                row,
            )
            .optional()?)
    }

    fn list(&self, repo: i64, q: &LockQuery) -> anyhow::Result<Vec<StoredLock>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "{SELECT} WHERE l.repo_id = ?1 AND (?2 IS NULL OR l.path = ?2) AND (?3 IS NULL OR l.id = ?3)
             AND (?4 IS NULL OR u.name = ?4) AND l.id > ?5 ORDER BY l.id LIMIT ?6"
        ))?;
        let rows = stmt
            .query_map(
                params![repo, q.path, q.id, q.owner, q.after.unwrap_or(0), q.limit],
                row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn on_paths(&self, repo: i64, paths: &[String]) -> anyhow::Result<Vec<StoredLock>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!("{SELECT} WHERE l.repo_id = ?1 AND l.path = ?2"))?;
        let mut out = Vec::new();
        for p in paths {
            if let Some(l) = stmt.query_row(params![repo, p], row).optional()? {
                out.push(l);
            }
        }
        Ok(out)
    }

    fn any(&self, repo: i64) -> anyhow::Result<bool> {
        Ok(self.db().query_row(
            "SELECT EXISTS (SELECT 1 FROM locks WHERE repo_id = ?1)",
            params![repo],
            |r| r.get(0),
        )?)
    }
}

/// A lockable path is a repository-relative path as Git writes it: `/`-separated, no
/// empty, `.` or `..` components, no leading `/`, no NUL or other control characters,
/// not inside `.git`, at most [`MAX_PATH_LEN`] bytes.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "the path is {} bytes long; at most {MAX_PATH_LEN} are allowed",
            path.len()
        ));
    }
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute; give a path relative to the repository root"
        ));
    }
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(format!("{path:?} contains a NUL or control character"));
    }
    if path.contains('\\') {
        return Err(format!("{path:?} contains a backslash; paths use '/'"));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(format!("{path:?} has an empty component")),
            "." | ".." => return Err(format!("{path:?} has a '{part}' component")),
            p if p.eq_ignore_ascii_case(".git") => return Err(format!("{path:?} is inside .git")),
            _ => {}
        }
    }
    Ok(())
}

fn bad(message: String) -> Response {
    Response::error(ErrorCode::BadRequest, message)
}

fn internal(e: anyhow::Error) -> Response {
    crate::server::internal(e.context("lock store"))
}

fn parse_id(s: &str) -> Result<i64, Response> {
    s.parse::<i64>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| bad(format!("{s:?} is not a lock id")))
}

fn page(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

fn next_cursor(locks: &[StoredLock], limit: u32) -> serde_json::Value {
    if locks.len() as u32 == limit {
        json!(locks.last().map(|l| l.id.to_string()))
    } else {
        serde_json::Value::Null
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
    fn need_write(&self) -> Result<(), Response> {
        if self.role < Role::Write {
            return Err(Response::error(
                ErrorCode::Forbidden,
                format!(
                    "user {} may read {} but not lock or unlock files in it",
                    self.user.name, self.repo_name
                ),
            ));
        }
        Ok(())
    }

    pub fn create(&self, path: &str, branch: Option<&str>) -> Result<serde_json::Value, Response> {
        self.need_write()?;
        check_path(path).map_err(bad)?;
        if let Some(b) = branch {
            if b.is_empty() || !crate::server::valid_ref_name(&format!("refs/heads/{b}")) {
                return Err(bad(format!("{b:?} is not a branch name")));
            }
        }
        match self
            .store
            .acquire(self.repo, path, self.user, branch)
            .map_err(internal)?
        {
            Ok(lock) => {
                tracing::info!(repo = self.repo_name, path, user = %self.user.name, id = lock.id, "locked");
                Ok(json!({ "lock": lock.to_wire() }))
            }
            Err(holder) => {
                let whom = if holder.owner_id == self.user.id {
                    format!("{} (you)", holder.owner)
                } else {
                    holder.owner.clone()
                };
                let mut r = Response::error(
                    ErrorCode::Rejected,
                    format!(
                        "{path} is already locked by {whom} since {} (lock {})",
                        rfc3339(holder.locked_at),
                        holder.id
                    ),
                );
                r.result = json!({ "lock": holder.to_wire() });
                Err(r)
            }
        }
    }

    pub fn list(
        &self,
        path: Option<String>,
        id: Option<String>,
        owner: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<serde_json::Value, Response> {
        let limit = page(limit);
        let query = LockQuery {
            path,
            id: id.as_deref().map(parse_id).transpose()?,
            owner,
            after: cursor.as_deref().map(parse_id).transpose()?,
            limit,
        };
        let locks = self.store.list(self.repo, &query).map_err(internal)?;
        let wire: Vec<Lock> = locks.iter().map(StoredLock::to_wire).collect();
        Ok(json!({ "locks": wire, "next_cursor": next_cursor(&locks, limit) }))
    }

    pub fn verify(
        &self,
        paths: Option<Vec<String>>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<serde_json::Value, Response> {
        let (locks, next) = match paths {
            Some(paths) => {
                if paths.len() > 100_000 {
                    return Err(bad("at most 100000 paths per verify".into()));
                }
                (
                    self.store.on_paths(self.repo, &paths).map_err(internal)?,
                    serde_json::Value::Null,
                )
            }
            None => {
                let limit = page(limit);
                let query = LockQuery {
                    after: cursor.as_deref().map(parse_id).transpose()?,
                    limit,
                    ..LockQuery::default()
                };
                let locks = self.store.list(self.repo, &query).map_err(internal)?;
                let next = next_cursor(&locks, limit);
                (locks, next)
            }
        };
        let (ours, theirs): (Vec<_>, Vec<_>) =
            locks.iter().partition(|l| l.owner_id == self.user.id);
        let wire = |v: Vec<&StoredLock>| v.into_iter().map(StoredLock::to_wire).collect::<Vec<_>>();
        Ok(json!({ "ours": wire(ours), "theirs": wire(theirs), "next_cursor": next }))
    }

    pub fn unlock(&self, id: &str, force: bool) -> Result<serde_json::Value, Response> {
        self.need_write()?;
        let id = parse_id(id)?;
        let not_found = || {
            Response::error(
                ErrorCode::NotFound,
                format!("there is no lock {id} in {}", self.repo_name),
            )
        };
        let lock = self
            .store
            .get(self.repo, id)
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let theirs = lock.owner_id != self.user.id;
        if theirs && !force {
            return Err(Response::error(
                ErrorCode::Forbidden,
                format!(
                    "{} is locked by {}, not you; an admin of {} can release it with --force",
                    lock.path, lock.owner, self.repo_name
                ),
            ));
        }
        if theirs && self.role < Role::Admin {
            return Err(Response::error(
                ErrorCode::Forbidden,
                format!(
                    "only an admin of {} may force-unlock {}'s lock on {}",
                    self.repo_name, lock.owner, lock.path
                ),
            ));
        }
        let released = self
            .store
            .release(self.repo, id, self.user, theirs)
            .map_err(internal)?
            .ok_or_else(not_found)?;
        if theirs {
            tracing::warn!(repo = self.repo_name, path = %released.path, owner = %released.owner, by = %self.user.name, id, "lock force-unlocked");
        } else {
            tracing::info!(repo = self.repo_name, path = %released.path, user = %self.user.name, id, "unlocked");
        }
        let mut out = json!({ "lock": released.to_wire() });
        if theirs {
            out["forced_by"] = json!(self.user.name);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaStore;

    #[test]
    fn paths_are_checked() {
        for ok in ["clip.mp4", "a/b/c.mov", "with space/ü.mp4", ".hidden/x"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "../x",
            "./x",
            "a//b",
            "a/",
            "a\0b",
            "a\nb",
            ".git/config",
            "x/.GIT/y",
            "a\\b",
            long.as_str(),
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn concurrent_acquires_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.sqlite");
        let meta = crate::meta_sqlite::SqliteMeta::open(&db).unwrap();
        meta.add_user("alice").unwrap();
        let store = std::sync::Arc::new(SqliteLocks::open(&db).unwrap());
        let alice = User {
            id: 1,
            name: "alice".into(),
        };
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let store = store.clone();
                    let alice = alice.clone();
                    s.spawn(move || store.acquire(1, "clip.mp4", &alice, None).unwrap().is_ok())
                })
                .collect();
            handles
                .into_iter()
                .filter(|_| true)
                .map(|h| h.join().unwrap() as usize)
                .sum()
        });
        assert_eq!(wins, 1);
        let lock = store
            .list(
                1,
                &LockQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(lock.len(), 1);
        assert!(store
            .release(1, lock[0].id, &alice, false)
            .unwrap()
            .is_some());
        assert!(store
            .release(1, lock[0].id, &alice, false)
            .unwrap()
            .is_none());
        assert_eq!(store.events(1).unwrap().len(), 2);
    }
}
