//! Locks in PostgreSQL: the lock store of hubs sharing a `--metadata postgres://…`
//! database, and the durable record the Redis backend writes through to. The insert on
//! `UNIQUE (repo_id, path)` is the atomic test-and-set, as in SQLite.

use deadpool_postgres::Pool;

use crate::locks::{DurableLocks, LockEvent, LockQuery, LockStore, StoredLock};
use crate::meta::{unix_now, User};
use crate::pg::PgResult;

pub struct PgLocks {
    pool: Pool,
}

impl PgLocks {
    pub fn new(pool: Pool) -> PgLocks {
        PgLocks { pool }
    }
}

const SELECT: &str = "SELECT l.id, l.path, l.owner_id, u.name, l.branch, l.locked_at, l.repo_id FROM locks l JOIN users u ON u.id = l.owner_id";

fn row(r: &tokio_postgres::Row) -> StoredLock {
    StoredLock {
        id: r.get(0),
        path: r.get(1),
        owner_id: r.get(2),
        owner: r.get(3),
        branch: r.get(4),
        locked_at: r.get(5),
    }
}

async fn record_event(
    tx: &deadpool_postgres::Transaction<'_>,
    repo: i64,
    lock: &StoredLock,
    actor: i64,
    action: &str,
    at: i64,
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO lock_events (repo_id, lock_id, path, owner_id, actor_id, action, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&repo, &lock.id, &lock.path, &lock.owner_id, &actor, &action, &at],
    )
    .await
    .pg()?;
    Ok(())
}

#[async_trait::async_trait]
impl LockStore for PgLocks {
    async fn acquire(
        &self,
        repo: i64,
        path: &str,
        owner: &User,
        branch: Option<&str>,
    ) -> anyhow::Result<Result<StoredLock, StoredLock>> {
        let mut c = self.pool.get().await.pg()?;
        let tx = c.transaction().await.pg()?;
        let at = unix_now();
        // A concurrent insert of the same path makes this one wait for it, then do
        // nothing: exactly one wins.
        let inserted = tx
            .execute(
                "INSERT INTO locks (repo_id, path, owner_id, branch, locked_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (repo_id, path) DO NOTHING",
                &[&repo, &path, &owner.id, &branch, &at],
            )
            .await
            .pg()?;
        let lock = row(&tx
            .query_one(
                &format!("{SELECT} WHERE l.repo_id = $1 AND l.path = $2"),
                &[&repo, &path],
            )
            .await
            .pg()?);
        if inserted == 1 {
            record_event(&tx, repo, &lock, owner.id, "lock", at).await?;
        }
        tx.commit().await.pg()?;
        Ok(if inserted == 1 { Ok(lock) } else { Err(lock) })
    }

    async fn release(
        &self,
        repo: i64,
        id: i64,
        by: &User,
        forced: bool,
    ) -> anyhow::Result<Option<StoredLock>> {
        let mut c = self.pool.get().await.pg()?;
        let tx = c.transaction().await.pg()?;
        let Some(found) = tx
            .query_opt(
                &format!("{SELECT} WHERE l.repo_id = $1 AND l.id = $2 FOR UPDATE OF l"),
                &[&repo, &id],
            )
            .await
            .pg()?
        else {
            return Ok(None);
        };
        let lock = row(&found);
        tx.execute("DELETE FROM locks WHERE id = $1", &[&id])
            .await
            .pg()?;
        let action = if forced { "force-unlock" } else { "unlock" };
        record_event(&tx, repo, &lock, by.id, action, unix_now()).await?;
        tx.commit().await.pg()?;
        Ok(Some(lock))
    }

    async fn get(&self, repo: i64, id: i64) -> anyhow::Result<Option<StoredLock>> {
        let c = self.pool.get().await.pg()?;
        Ok(c.query_opt(
            &format!("{SELECT} WHERE l.repo_id = $1 AND l.id = $2"),
            &[&repo, &id],
        )
        .await
        .pg()?
        .map(|r| row(&r)))
    }

    async fn list(&self, repo: i64, q: &LockQuery) -> anyhow::Result<Vec<StoredLock>> {
        let c = self.pool.get().await.pg()?;
        let rows = c
            .query(
                &format!(
                    "{SELECT} WHERE l.repo_id = $1 AND ($2::text IS NULL OR l.path = $2) AND ($3::int8 IS NULL OR l.id = $3)
                     AND ($4::text IS NULL OR u.name = $4) AND l.id > $5 ORDER BY l.id LIMIT $6"
                ),
                &[&repo, &q.path, &q.id, &q.owner, &q.after.unwrap_or(0), &(q.limit as i64)],
            )
            .await
            .pg()?;
        Ok(rows.iter().map(row).collect())
    }

    async fn on_paths(&self, repo: i64, paths: &[String]) -> anyhow::Result<Vec<StoredLock>> {
        let c = self.pool.get().await.pg()?;
        let rows = c
            .query(
                &format!("{SELECT} WHERE l.repo_id = $1 AND l.path = ANY($2)"),
                &[&repo, &paths],
            )
            .await
            .pg()?;
        Ok(rows.iter().map(row).collect())
    }

    async fn any(&self, repo: i64) -> anyhow::Result<bool> {
        let c = self.pool.get().await.pg()?;
        Ok(c.query_one(
            "SELECT EXISTS (SELECT 1 FROM locks WHERE repo_id = $1)",
            &[&repo],
        )
        .await
        .pg()?
        .get(0))
    }
}

#[async_trait::async_trait]
impl DurableLocks for PgLocks {
    async fn all(&self) -> anyhow::Result<Vec<(i64, StoredLock)>> {
        let c = self.pool.get().await.pg()?;
        let rows = c
            .query(&format!("{SELECT} ORDER BY l.id"), &[])
            .await
            .pg()?;
        Ok(rows.iter().map(|r| (r.get(6), row(r))).collect())
    }

    async fn events(&self, repo: i64) -> anyhow::Result<Vec<LockEvent>> {
        let c = self.pool.get().await.pg()?;
        let rows = c
            .query(
                "SELECT e.lock_id, e.path, o.name, a.name, e.action, e.at FROM lock_events e
                 JOIN users o ON o.id = e.owner_id JOIN users a ON a.id = e.actor_id
                 WHERE e.repo_id = $1 ORDER BY e.seq",
                &[&repo],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| LockEvent {
                lock: r.get(0),
                path: r.get(1),
                owner: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                at: r.get(5),
            })
            .collect())
    }
}
