//! Locks in the embedded hub's SQLite database: two tables beside the metadata. The
//! insert on `UNIQUE(repo_id, path)` is the atomic test-and-set. Every call runs on the
//! blocking pool ([`SqliteDb::run`]).

use std::path::Path;

use rusqlite::{params, OptionalExtension};

use crate::locks::{DurableLocks, LockEvent, LockQuery, LockStore, StoredLock};
use crate::meta::{unix_now, User};
use crate::sqlite::SqliteDb;

/// The embedded backend: two tables in the hub's SQLite database.
pub struct SqliteLocks {
    db: SqliteDb,
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
        Ok(SqliteLocks {
            db: SqliteDb::open(path, SCHEMA)?,
        })
    }
}

#[async_trait::async_trait]
impl DurableLocks for SqliteLocks {
    async fn all(&self) -> anyhow::Result<Vec<(i64, StoredLock)>> {
        self.db
            .run(|db| {
                let mut stmt = db.prepare(&format!("{SELECT} ORDER BY l.id"))?;
                let locks = stmt
                    .query_map([], |r| Ok((r.get(6)?, row(r)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(locks)
            })
            .await
    }

    /// The audit trail of one repository, oldest first.
    async fn events(&self, repo: i64) -> anyhow::Result<Vec<LockEvent>> {
        self.db
            .run(move |db| {
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
            })
            .await
    }
}

#[async_trait::async_trait]
impl LockStore for SqliteLocks {
    async fn acquire(
        &self,
        repo: i64,
        path: &str,
        owner: &User,
        branch: Option<&str>,
    ) -> anyhow::Result<Result<StoredLock, StoredLock>> {
        let (path, owner, branch) = (path.to_string(), owner.id, branch.map(str::to_string));
        self.db
            .run(move |db| {
                // IMMEDIATE: take the write lock up front (waiting on the busy timeout)
                // rather than upgrade a read, which SQLite refuses at once if another
                // connection wrote since.
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let at = unix_now();
                // UNIQUE(repo_id, path) makes the insert the atomic test-and-set.
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO locks (repo_id, path, owner_id, branch, locked_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![repo, path, owner, branch, at],
                )?;
                let lock = tx.query_row(
                    &format!("{SELECT} WHERE l.repo_id = ?1 AND l.path = ?2"),
                    params![repo, path],
                    row,
                )?;
                if inserted == 1 {
                    record_event(&tx, repo, &lock, owner, "lock", at)?;
                }
                tx.commit()?;
                Ok(if inserted == 1 { Ok(lock) } else { Err(lock) })
            })
            .await
    }

    async fn release(
        &self,
        repo: i64,
        id: i64,
        by: &User,
        forced: bool,
    ) -> anyhow::Result<Option<StoredLock>> {
        let by = by.id;
        self.db
            .run(move |db| {
                // IMMEDIATE: see acquire.
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
                record_event(&tx, repo, &lock, by, action, unix_now())?;
                tx.commit()?;
                Ok(Some(lock))
            })
            .await
    }

    async fn get(&self, repo: i64, id: i64) -> anyhow::Result<Option<StoredLock>> {
        self.db
            .run(move |db| {
                Ok(db
                    .query_row(
                        &format!("{SELECT} WHERE l.repo_id = ?1 AND l.id = ?2"),
                        params![repo, id],
                        row,
                    )
                    .optional()?)
            })
            .await
    }

    async fn list(&self, repo: i64, q: &LockQuery) -> anyhow::Result<Vec<StoredLock>> {
        let q = q.clone();
        self.db
            .run(move |db| {
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
            })
            .await
    }

    async fn on_paths(&self, repo: i64, paths: &[String]) -> anyhow::Result<Vec<StoredLock>> {
        let paths = paths.to_vec();
        self.db
            .run(move |db| {
                let mut stmt =
                    db.prepare(&format!("{SELECT} WHERE l.repo_id = ?1 AND l.path = ?2"))?;
                let mut out = Vec::new();
                for p in &paths {
                    if let Some(l) = stmt.query_row(params![repo, p], row).optional()? {
                        out.push(l);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn any(&self, repo: i64) -> anyhow::Result<bool> {
        self.db
            .run(move |db| {
                Ok(db.query_row(
                    "SELECT EXISTS (SELECT 1 FROM locks WHERE repo_id = ?1)",
                    params![repo],
                    |r| r.get(0),
                )?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_acquires_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.sqlite");
        let meta = crate::meta::sqlite::SqliteMeta::open(&db).unwrap();
        meta.add_user("alice").await.unwrap();
        let store = std::sync::Arc::new(SqliteLocks::open(&db).unwrap());
        let alice = User {
            id: 1,
            name: "alice".into(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (store, alice) = (store.clone(), alice.clone());
            tasks.spawn(async move {
                store
                    .acquire(1, "clip.mp4", &alice, None)
                    .await
                    .unwrap()
                    .is_ok()
            });
        }
        let wins = tasks
            .join_all()
            .await
            .into_iter()
            .filter(|&won| won)
            .count();
        assert_eq!(wins, 1);
        let query = LockQuery {
            limit: 10,
            ..Default::default()
        };
        let lock = store.list(1, &query).await.unwrap();
        assert_eq!(lock.len(), 1);
        let released = store.release(1, lock[0].id, &alice, false).await.unwrap();
        assert!(released.is_some());
        let again = store.release(1, lock[0].id, &alice, false).await.unwrap();
        assert!(again.is_none());
        assert_eq!(store.events(1).await.unwrap().len(), 2);
    }
}
