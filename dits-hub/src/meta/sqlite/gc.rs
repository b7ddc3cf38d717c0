//! The collector's metadata in SQLite ([`GcStore`]). SQLite has one writer at a time, so
//! each write transaction here (IMMEDIATE) is already exclusive of pushes: that is the
//! sweep lock. The collector lock is an advisory lock on a file beside the database.

use dits_core::ChunkId;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::meta::gc::{CollectorGuard, DeadBlob, GcStore, PackUsage, RepoEntry, Sweep};
use crate::meta::sqlite::SqliteMeta;
use crate::meta::{unix_now, Location};

/// A link is kept when it is not one this collection may drop: its repository is not
/// collected, it was seen since the cutoff (?1), or a ref reaches it.
const KEPT_LINK: &str = "(r.repo_id NOT IN (SELECT repo_id FROM gc_repos) OR r.seen >= ?1
     OR EXISTS (SELECT 1 FROM gc_live l WHERE l.repo_id = r.repo_id AND l.id = r.id))";

fn chunk_id(bytes: Vec<u8>) -> rusqlite::Result<ChunkId> {
    let id: [u8; 32] = bytes.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "an object id is not 32 bytes".into(),
        )
    })?;
    Ok(ChunkId(id))
}

fn add_dead(db: &Connection, keys: &[String], now: i64) -> rusqlite::Result<()> {
    let mut put =
        db.prepare_cached("INSERT OR IGNORE INTO dead_blobs (key, since) VALUES (?1, ?2)")?;
    for key in keys {
        put.execute(params![key, now])?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl GcStore for SqliteMeta {
    async fn collector_lock(&self) -> anyhow::Result<Option<CollectorGuard>> {
        let path = self.dir.join("gc.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(CollectorGuard(Box::new(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(anyhow::anyhow!("locking {}: {e}", path.display()))
            }
        }
    }

    async fn repo_list(&self) -> anyhow::Result<Vec<RepoEntry>> {
        self.db
            .run(|db| {
                let mut stmt = db.prepare(
                    "SELECT id, owner || '/' || name, key_group IS NOT NULL, refs_changed FROM repos ORDER BY id",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(RepoEntry {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        encrypted: r.get(2)?,
                        refs_changed: r.get(3)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn delete_repo(&self, repo: i64) -> anyhow::Result<Vec<String>> {
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let keys: Vec<String> = tx
                    .prepare("SELECT key FROM git_packs WHERE repo_id = ?1")?
                    .query_map(params![repo], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for table in [
                    "refs",
                    "members",
                    "repo_objects",
                    "commit_deps",
                    "lost_links",
                    "commits",
                    "commit_pointers",
                    "repo_assets",
                    "git_packs",
                    "locks",
                    "gc_repos",
                    "gc_live",
                    "repo_policies",
                ] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE repo_id = ?1"),
                        params![repo],
                    )?;
                }
                tx.execute("DELETE FROM repos WHERE id = ?1", params![repo])?;
                add_dead(&tx, &keys, unix_now())?;
                tx.commit()?;
                Ok(keys)
            })
            .await
    }

    async fn reset_marks(&self) -> anyhow::Result<()> {
        self.db
            .run(|db| {
                db.execute_batch("DELETE FROM gc_repos; DELETE FROM gc_live;")?;
                Ok(())
            })
            .await
    }

    async fn collect_repo(&self, repo: i64) -> anyhow::Result<()> {
        self.db
            .run(move |db| {
                db.execute(
                    "INSERT OR IGNORE INTO gc_repos (repo_id) VALUES (?1)",
                    params![repo],
                )?;
                Ok(())
            })
            .await
    }

    async fn mark_live(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<()> {
        let ids = ids.to_vec();
        self.db
            .run(move |db| {
                let tx = db.transaction()?;
                {
                    let mut put = tx.prepare_cached(
                        "INSERT OR IGNORE INTO gc_live (repo_id, id) VALUES (?1, ?2)",
                    )?;
                    for id in &ids {
                        put.execute(params![repo, &id.0[..]])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn sweep(&self, cutoff: i64, apply: bool) -> anyhow::Result<Sweep> {
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let links: i64 = tx.query_row(
                    &format!("SELECT COUNT(*) FROM repo_objects r WHERE NOT {KEPT_LINK}"),
                    params![cutoff],
                    |r| r.get(0),
                )?;
                let (objects, bytes): (i64, i64) = tx.query_row(
                    &format!(
                        "SELECT COUNT(*), COALESCE(SUM(o.stored_len), 0) FROM objects o
                         WHERE NOT EXISTS (SELECT 1 FROM repo_objects r WHERE r.id = o.id AND {KEPT_LINK})"
                    ),
                    params![cutoff],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if apply {
                    tx.execute(
                        &format!("DELETE FROM repo_objects AS r WHERE NOT {KEPT_LINK}"),
                        params![cutoff],
                    )?;
                    const UNLINKED: &str =
                        "NOT EXISTS (SELECT 1 FROM repo_objects r WHERE r.id = objects.id)";
                    let packs: Vec<String> = tx
                        .prepare(&format!(
                            "SELECT DISTINCT pack FROM objects WHERE pack <> '' AND {UNLINKED}"
                        ))?
                        .query_map([], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    tx.execute(&format!("DELETE FROM objects WHERE {UNLINKED}"), [])?;
                    // Packs nothing is left in are dead from now.
                    let mut emptied = Vec::new();
                    for pack in packs {
                        if !tx
                            .prepare_cached("SELECT 1 FROM objects WHERE pack = ?1 LIMIT 1")?
                            .exists(params![pack])?
                        {
                            emptied.push(pack);
                        }
                    }
                    add_dead(&tx, &emptied, unix_now())?;
                }
                tx.commit()?;
                Ok(Sweep {
                    links: links as u64,
                    objects: objects as u64,
                    bytes: bytes as u64,
                })
            })
            .await
    }

    async fn pack_usage(&self) -> anyhow::Result<Vec<PackUsage>> {
        self.db
            .run(|db| {
                let mut stmt = db.prepare(
                    "SELECT pack, COUNT(*), SUM(stored_len) FROM objects WHERE pack <> '' GROUP BY pack ORDER BY pack",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(PackUsage {
                        pack: r.get(0)?,
                        objects: r.get::<_, i64>(1)? as u64,
                        live_bytes: r.get::<_, i64>(2)? as u64,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn pack_objects(&self, pack: &str) -> anyhow::Result<Vec<(ChunkId, Location)>> {
        let pack = pack.to_string();
        self.db
            .run(move |db| {
                let mut stmt = db.prepare(
                    "SELECT id, offset, stored_len, len FROM objects WHERE pack = ?1 ORDER BY offset",
                )?;
                let rows = stmt.query_map(params![pack], |r| {
                    Ok((
                        chunk_id(r.get(0)?)?,
                        Location {
                            offset: r.get::<_, i64>(1)? as u64,
                            stored_len: r.get::<_, i64>(2)? as u32,
                            len: r.get::<_, i64>(3)? as u32,
                        },
                    ))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn move_objects(
        &self,
        from: &str,
        to: &str,
        moved: &[(ChunkId, Location)],
    ) -> anyhow::Result<u64> {
        let (from, to, moved) = (from.to_string(), to.to_string(), moved.to_vec());
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut mv = tx.prepare_cached(
                        "UPDATE objects SET pack = ?3, offset = ?4 WHERE id = ?1 AND pack = ?2",
                    )?;
                    for (id, loc) in &moved {
                        mv.execute(params![&id.0[..], from, to, loc.offset as i64])?;
                    }
                }
                tx.execute("DELETE FROM dead_blobs WHERE key = ?1", params![to])?;
                let left: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM objects WHERE pack = ?1",
                    params![from],
                    |r| r.get(0),
                )?;
                if left == 0 {
                    add_dead(&tx, std::slice::from_ref(&from), unix_now())?;
                }
                tx.commit()?;
                Ok(left as u64)
            })
            .await
    }

    async fn add_dead(&self, keys: &[String]) -> anyhow::Result<()> {
        let keys = keys.to_vec();
        self.db
            .run(move |db| Ok(add_dead(db, &keys, unix_now())?))
            .await
    }

    async fn dead_blobs(&self) -> anyhow::Result<Vec<DeadBlob>> {
        self.db
            .run(|db| {
                let mut stmt = db.prepare("SELECT key, since FROM dead_blobs ORDER BY key")?;
                let rows = stmt.query_map([], |r| {
                    Ok(DeadBlob {
                        key: r.get(0)?,
                        since: r.get(1)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn referenced(&self, key: &str) -> anyhow::Result<bool> {
        let key = key.to_string();
        self.db
            .run(move |db| {
                let object: Option<i64> = db
                    .query_row(
                        "SELECT 1 FROM objects WHERE pack = ?1 LIMIT 1",
                        params![key],
                        |r| r.get(0),
                    )
                    .optional()?;
                let git: Option<i64> = db
                    .query_row(
                        "SELECT 1 FROM git_packs WHERE key = ?1 LIMIT 1",
                        params![key],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(object.is_some() || git.is_some())
            })
            .await
    }

    async fn referenced_keys(&self) -> anyhow::Result<Vec<String>> {
        self.db
            .run(|db| {
                let mut stmt = db.prepare(
                    "SELECT DISTINCT pack FROM objects WHERE pack <> '' UNION SELECT key FROM git_packs",
                )?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn replace_git_packs(
        &self,
        repo: i64,
        old: &[String],
        new: Option<(&str, &str, u64)>,
        quiet_since: i64,
    ) -> anyhow::Result<bool> {
        let old = old.to_vec();
        let new = new.map(|(id, key, size)| (id.to_string(), key.to_string(), size));
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let refs_changed: i64 = tx.query_row(
                    "SELECT refs_changed FROM repos WHERE id = ?1",
                    params![repo],
                    |r| r.get(0),
                )?;
                if refs_changed >= quiet_since {
                    return Ok(false);
                }
                let mut first = i64::MAX;
                let mut keys = Vec::new();
                for id in &old {
                    let row: Option<(i64, String)> = tx
                        .query_row(
                            "SELECT seq, key FROM git_packs WHERE repo_id = ?1 AND id = ?2 AND committed = 1",
                            params![repo, id],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    let Some((seq, key)) = row else {
                        return Ok(false);
                    };
                    first = first.min(seq);
                    keys.push(key);
                }
                for id in &old {
                    tx.execute(
                        "DELETE FROM git_packs WHERE repo_id = ?1 AND id = ?2",
                        params![repo, id],
                    )?;
                }
                if let Some((id, key, size)) = &new {
                    tx.execute(
                        "INSERT INTO git_packs (seq, repo_id, id, key, size, committed, created) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
                        params![
                            (first != i64::MAX).then_some(first),
                            repo,
                            id,
                            key,
                            *size as i64,
                            unix_now()
                        ],
                    )?;
                }
                add_dead(&tx, &keys, unix_now())?;
                tx.commit()?;
                Ok(true)
            })
            .await
    }

    async fn forget_dead(&self, key: &str) -> anyhow::Result<()> {
        let key = key.to_string();
        self.db
            .run(move |db| {
                db.execute("DELETE FROM dead_blobs WHERE key = ?1", params![key])?;
                db.execute("DELETE FROM pack_classes WHERE key = ?1", params![key])?;
                Ok(())
            })
            .await
    }
}
