//! The Redis lock backend (`dits-hub serve --locks redis://…`), behind the same
//! [`LockStore`] trait as SQLite. Acquire and release are Lua scripts, so each is one
//! atomic step in Redis: of concurrent acquires of a path exactly one wins, and a release
//! checks the owner in the same step.
//!
//! Durability: every lock is written through to the hub's database (SQLite or PostgreSQL:
//! its lock table and audit trail) after Redis accepts it, and removed from it on release. Redis may keep nothing
//! on disk; a marker key tells whether this Redis has the hub's locks loaded, and if it is
//! missing (Redis restarted or was flushed) the locks are reloaded from the database before the
//! next operation. So a Redis restart cannot silently drop a lock.

use fred::prelude::*;

use crate::locks::{DurableLocks, LockQuery, LockStore, StoredLock};
use crate::meta::User;

const ACQUIRE: &str = r#"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
local id = redis.call('INCR', KEYS[3])
local lock = cjson.encode({id = id, path = ARGV[1], owner_id = tonumber(ARGV[2]), owner = ARGV[3], branch = ARGV[4], locked_at = tonumber(ARGV[5])})
redis.call('HSET', KEYS[1], ARGV[1], lock)
redis.call('HSET', KEYS[2], tostring(id), ARGV[1])
return {1, lock}
"#;

const RELEASE: &str = r#"
local path = redis.call('HGET', KEYS[2], ARGV[1])
if not path then return {0, ''} end
local lock = redis.call('HGET', KEYS[1], path)
if ARGV[2] ~= '' and lock then
  local l = cjson.decode(lock)
  if tostring(l.owner_id) ~= ARGV[2] then return {2, lock} end
end
redis.call('HDEL', KEYS[1], path)
redis.call('HDEL', KEYS[2], ARGV[1])
return {1, lock or ''}
"#;

/// Loads one lock if absent and keeps the id counter above every known id.
const LOAD: &str = r#"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
if cur < tonumber(ARGV[2]) then redis.call('SET', KEYS[3], ARGV[2]) end
return 1
"#;

pub struct RedisLocks {
    client: Client,
    /// Write-through copy and audit trail (SQLite or PostgreSQL, with the metadata).
    db: Box<dyn DurableLocks>,
    /// Namespace of this hub's keys.
    ns: String,
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
        let locks = RedisLocks {
            client,
            db,
            ns: format!("dits:{ns}"),
        };
        Ok(locks)
    }

    fn keys(&self, repo: i64) -> Vec<String> {
        vec![
            format!("{}:{repo}:locks:path", self.ns),
            format!("{}:{repo}:locks:id", self.ns),
            format!("{}:lock-seq", self.ns),
        ]
    }

    /// Reloads every lock from the database when Redis has lost them (or never had them).
    async fn ensure_loaded(&self) -> anyhow::Result<()> {
        let marker = format!("{}:loaded", self.ns);
        let present: i64 = self.client.exists(&marker).await.map_err(redis_err)?;
        if present == 1 {
            return Ok(());
        }
        let all = self.db.all().await?;
        for (repo, lock) in &all {
            let _: i64 = self
                .client
                .eval(
                    LOAD,
                    self.keys(*repo),
                    vec![lock.path.clone(), lock.id.to_string(), encode(lock)],
                )
                .await
                .map_err(redis_err)?;
        }
        let _: () = self
            .client
            .set(&marker, 1, None, None, false)
            .await
            .map_err(redis_err)?;
        if !all.is_empty() {
            tracing::warn!(
                count = all.len(),
                "lock store: reloaded locks into Redis from the hub database"
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
        let now = crate::meta::unix_now();
        let (won, json): (i64, String) = self
            .client
            .eval(
                ACQUIRE,
                self.keys(repo),
                vec![
                    path.to_string(),
                    owner.id.to_string(),
                    owner.name.clone(),
                    branch.unwrap_or_default().to_string(),
                    now.to_string(),
                ],
            )
            .await
            .map_err(redis_err)?;
        let lock = decode(&json)?;
        if won == 0 {
            return Ok(Err(lock));
        }
        // Durable before the client hears "locked"; if that fails, undo in Redis.
        if let Err(e) = self.db.insert_exact(repo, &lock).await {
            let _: Result<(i64, String), _> = self
                .client
                .eval(
                    RELEASE,
                    self.keys(repo),
                    vec![lock.id.to_string(), String::new()],
                )
                .await;
            return Err(e);
        }
        Ok(Ok(lock))
    }

    async fn release(
        &self,
        repo: i64,
        id: i64,
        by: &User,
        forced: bool,
    ) -> anyhow::Result<Option<StoredLock>> {
        self.ensure_loaded().await?;
        let expect = if forced {
            String::new()
        } else {
            by.id.to_string()
        };
        let (status, json): (i64, String) = self
            .client
            .eval(RELEASE, self.keys(repo), vec![id.to_string(), expect])
            .await
            .map_err(redis_err)?;
        match status {
            0 => Ok(None),
            2 => anyhow::bail!("lock {id} belongs to someone else"),
            _ => {
                // The database row goes too, with the audit entry.
                self.db.release(repo, id, by, forced).await?;
                Ok(Some(decode(&json)?))
            }
        }
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
