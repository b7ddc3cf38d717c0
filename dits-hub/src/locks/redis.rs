//! The Redis lock backend (`dits-hub serve --locks redis://…`), behind the same
//! [`LockStore`] trait as SQLite: a copy of the hub database's locks that answers the
//! reads every push and `lock verify` make.
//!
//! The database (SQLite or PostgreSQL) is the authority. It takes a lock (allocating its
//! id, refusing a path someone holds, in one transaction with the audit entry) before
//! Redis is told, and releases it before Redis forgets it. Redis may restart empty, or
//! restore an old snapshot (persistence): neither can hand a held path to someone else,
//! because the database refuses it and the holder is written back to Redis. After every
//! reconnect, and whenever the marker key is missing, Redis is reconciled from the
//! database: every database lock is written in, and a Redis lock the database does not
//! hold is removed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fred::prelude::*;

use crate::locks::{DurableLocks, LockQuery, LockStore, StoredLock};
use crate::meta::User;

/// Writes one lock (replacing whatever Redis had for its path) and notes its repository.
const STORE: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then redis.call('HDEL', KEYS[2], tostring(cjson.decode(old).id)) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"#;

/// Removes lock ARGV[1], if Redis has it.
const REMOVE: &str = r#"
local path = redis.call('HGET', KEYS[2], ARGV[1])
if not path then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local cur = redis.call('HGET', KEYS[1], path)
if cur and tostring(cjson.decode(cur).id) == ARGV[1] then redis.call('HDEL', KEYS[1], path) end
return 1
"#;

/// The repositories Redis has held locks for.
const REPOS: &str = "return redis.call('SMEMBERS', KEYS[1])";

pub struct RedisLocks {
    client: Client,
    /// Write-through copy and audit trail (SQLite or PostgreSQL, with the metadata).
    db: Box<dyn DurableLocks>,
    /// Namespace of this hub's keys.
    ns: String,
    /// Set on every reconnect: Redis may have restarted, so it is reconciled before the
    /// next operation.
    stale: Arc<AtomicBool>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Encoded {
    id: i64,
    path: String,
    owner_id: i64,
    owner: String,
    #[serde(default)]
    branch: String,
    locked_at: i64,
}

fn decode(json: &str) -> anyhow::Result<StoredLock> {
    let e: Encoded = serde_json::from_str(json)?;
    Ok(StoredLock {
        id: e.id,
        path: e.path,
        owner_id: e.owner_id,
        owner: e.owner,
        branch: (!e.branch.is_empty()).then_some(e.branch),
        locked_at: e.locked_at,
    })
}

fn encode(l: &StoredLock) -> String {
    serde_json::to_string(&Encoded {
        id: l.id,
        path: l.path.clone(),
        owner_id: l.owner_id,
        owner: l.owner.clone(),
        branch: l.branch.clone().unwrap_or_default(),
        locked_at: l.locked_at,
    })
    .expect("plain struct")
}

impl RedisLocks {
    /// Connects (inside the hub's runtime) and loads the locks if this Redis lacks them.
    pub async fn connect(
        url: &str,
        db: Box<dyn DurableLocks>,
        ns: &str,
    ) -> anyhow::Result<RedisLocks> {
        let config = Config::from_url(url)
            .map_err(|e| anyhow::anyhow!("--locks {}: {e}", crate::backends::redact(url)))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = std::time::Duration::from_secs(5);
            })
            // While Redis is away commands wait for the reconnect; bounded, so a client
            // hears "unavailable, try again" rather than hanging.
            .with_performance_config(|c| {
                c.default_command_timeout = std::time::Duration::from_secs(5);
            })
            .set_policy(ReconnectPolicy::new_constant(0, 500))
            .build()?;
        client.init().await.map_err(|e| {
            anyhow::anyhow!(
                "--locks {}: cannot connect: {e}",
                crate::backends::redact(url)
            )
        })?;
        let stale = Arc::new(AtomicBool::new(true));
        let on_reconnect = stale.clone();
        client.on_reconnect(move |_| {
            on_reconnect.store(true, Ordering::SeqCst);
            async { Ok(()) }
        });
        let locks = RedisLocks {
            client,
            db,
            ns: format!("dits:{ns}"),
            stale,
        };
        Ok(locks)
    }

    fn keys(&self, repo: i64) -> Vec<String> {
        vec![
            format!("{}:{repo}:locks:path", self.ns),
            format!("{}:{repo}:locks:id", self.ns),
            self.repos_key(),
        ]
    }

    fn repos_key(&self) -> String {
        format!("{}:lock-repos", self.ns)
    }

    async fn store(&self, repo: i64, lock: &StoredLock) -> anyhow::Result<()> {
        let _: i64 = self
            .client
            .eval(
                STORE,
                self.keys(repo),
                vec![
                    lock.path.clone(),
                    lock.id.to_string(),
                    encode(lock),
                    repo.to_string(),
                ],
            )
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn remove(&self, repo: i64, id: i64) -> anyhow::Result<()> {
        let _: i64 = self
            .client
            .eval(REMOVE, self.keys(repo), vec![id.to_string()])
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    /// Reconciles Redis from the database when Redis may have diverged: after a
    /// reconnect, or when the marker key is missing (a Redis that restarted empty, or
    /// never had this hub's locks).
    async fn ensure_loaded(&self) -> anyhow::Result<()> {
        let marker = format!("{}:loaded", self.ns);
        let stale = self.stale.swap(false, Ordering::SeqCst);
        let present: i64 = self.client.exists(&marker).await.map_err(|e| {
            self.stale.store(stale, Ordering::SeqCst);
            redis_err(e)
        })?;
        if present == 1 && !stale {
            return Ok(());
        }
        if let Err(e) = self.reconcile().await {
            self.stale.store(true, Ordering::SeqCst);
            return Err(e);
        }
        let _: () = self
            .client
            .set(&marker, 1, None, None, false)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    /// Makes Redis hold the database's locks and no others. Redis is read before the
    /// database: a lock is in the database before it is in Redis, so one Redis holds that
    /// the later database read lacks is gone (released, or never granted) and is removed.
    async fn reconcile(&self) -> anyhow::Result<()> {
        let known: Vec<String> = self
            .client
            .eval(REPOS, vec![self.repos_key()], Vec::<String>::new())
            .await
            .map_err(redis_err)?;
        let mut in_redis: Vec<(i64, i64)> = Vec::new();
        for repo in known.iter().filter_map(|r| r.parse::<i64>().ok()) {
            let ids: Vec<String> = self
                .client
                .hkeys(&self.keys(repo)[1])
                .await
                .map_err(redis_err)?;
            in_redis.extend(ids.iter().filter_map(|i| Some((repo, i.parse().ok()?))));
        }
        let all = self.db.all().await?;
        let held: HashSet<i64> = all.iter().map(|(_, l)| l.id).collect();
        let mut removed = 0;
        for (repo, id) in in_redis.into_iter().filter(|(_, id)| !held.contains(id)) {
            self.remove(repo, id).await?;
            removed += 1;
        }
        for (repo, lock) in &all {
            self.store(*repo, lock).await?;
        }
        if removed > 0 || !all.is_empty() {
            tracing::info!(
                written = all.len(),
                removed,
                "lock store: reconciled Redis with the hub database"
            );
        }
        Ok(())
    }

    async fn by_path(&self, repo: i64, path: &str) -> anyhow::Result<Option<StoredLock>> {
        let json: Option<String> = self.client.hget(&self.keys(repo)[0], path).await?;
        json.as_deref().map(decode).transpose()
    }
}

fn redis_err(e: impl std::fmt::Display) -> anyhow::Error {
    crate::error::Unavailable::new("lock store (Redis)", e).into()
}

#[async_trait::async_trait]
impl LockStore for RedisLocks {
    async fn acquire(
        &self,
        repo: i64,
        path: &str,
        owner: &User,
        branch: Option<&str>,
    ) -> anyhow::Result<Result<StoredLock, StoredLock>> {
        self.ensure_loaded().await?;
        // The database decides, allocating the id; Redis then gets the winner, or the
        // holder it may have lost.
        let taken = self.db.acquire(repo, path, owner, branch).await?;
        let lock = match &taken {
            Ok(lock) | Err(lock) => lock,
        };
        if let Err(e) = self.store(repo, lock).await {
            if taken.is_ok() {
                // Pushes are checked against Redis: a lock it lacks must not be granted.
                if let Err(undo) = self.db.release(repo, lock.id, owner, false).await {
                    tracing::error!(
                        repo,
                        lock = lock.id,
                        "lock store: undoing a lock Redis did not take: {undo:#}"
                    );
                }
            }
            return Err(e);
        }
        Ok(taken)
    }

    async fn release(
        &self,
        repo: i64,
        id: i64,
        by: &User,
        forced: bool,
    ) -> anyhow::Result<Option<StoredLock>> {
        self.ensure_loaded().await?;
        let released = self.db.release(repo, id, by, forced).await?;
        // Also when the database had no such lock: a copy Redis kept is stale.
        self.remove(repo, id).await?;
        Ok(released)
    }

    async fn get(&self, repo: i64, id: i64) -> anyhow::Result<Option<StoredLock>> {
        self.ensure_loaded().await?;
        let path: Option<String> = self
            .client
            .hget(&self.keys(repo)[1], id.to_string())
            .await
            .map_err(redis_err)?;
        match path {
            Some(p) => self.by_path(repo, &p).await.map_err(redis_err),
            None => Ok(None),
        }
    }

    async fn list(&self, repo: i64, q: &LockQuery) -> anyhow::Result<Vec<StoredLock>> {
        self.ensure_loaded().await?;
        let values: Vec<String> = self
            .client
            .hvals(&self.keys(repo)[0])
            .await
            .map_err(redis_err)?;
        let mut locks: Vec<StoredLock> = values
            .iter()
            .filter_map(|v| decode(v).ok())
            .filter(|l| q.path.as_ref().is_none_or(|p| &l.path == p))
            .filter(|l| q.id.is_none_or(|i| l.id == i))
            .filter(|l| q.owner.as_ref().is_none_or(|o| &l.owner == o))
            .filter(|l| l.id > q.after.unwrap_or(0))
            .collect();
        locks.sort_by_key(|l| l.id);
        locks.truncate(q.limit as usize);
        Ok(locks)
    }

    async fn on_paths(&self, repo: i64, paths: &[String]) -> anyhow::Result<Vec<StoredLock>> {
        self.ensure_loaded().await?;
        let mut out = Vec::new();
        for batch in paths.chunks(1000) {
            let values: Vec<Option<String>> = self
                .client
                .hmget(&self.keys(repo)[0], batch.to_vec())
                .await
                .map_err(redis_err)?;
            out.extend(values.into_iter().flatten().filter_map(|v| decode(&v).ok()));
        }
        Ok(out)
    }

    async fn any(&self, repo: i64) -> anyhow::Result<bool> {
        self.ensure_loaded().await?;
        let n: i64 = self
            .client
            .hlen(&self.keys(repo)[0])
            .await
            .map_err(redis_err)?;
        Ok(n > 0)
    }
}
