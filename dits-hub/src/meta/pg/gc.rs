//! The collector's metadata in PostgreSQL ([`GcStore`]). The collector lock is a
//! session advisory lock held on a connection taken out of the pool for the run (closing
//! it releases the lock, even if the collector is killed); the sweep lock is a
//! transaction advisory lock (see `meta::gc`).

use dits_core::ChunkId;

use crate::meta::gc::{CollectorGuard, DeadBlob, GcStore, PackUsage, RepoEntry, Sweep};
use crate::meta::pg::{ids_bytes, PgMeta, BATCH};
use crate::meta::{unix_now, Location};
use crate::pg::{PgResult, COLLECTOR_LOCK, SWEEP_LOCK};

/// See the SQLite backend: a link this collection may not drop.
const KEPT_LINK: &str = "(r.repo_id NOT IN (SELECT repo_id FROM gc_repos) OR r.seen >= $1
     OR EXISTS (SELECT 1 FROM gc_live l WHERE l.repo_id = r.repo_id AND l.id = r.id))";

fn chunk_id(bytes: Vec<u8>) -> anyhow::Result<ChunkId> {
    let id: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("an object id in the index is not 32 bytes"))?;
    Ok(ChunkId(id))
}

async fn add_dead(
    tx: &impl deadpool_postgres::GenericClient,
    keys: &[String],
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO dead_blobs (key, since) SELECT k, $2 FROM UNNEST($1::text[]) AS k ON CONFLICT DO NOTHING",
        &[&keys, &unix_now()],
    )
    .await
    .pg()?;
    Ok(())
}

#[async_trait::async_trait]
impl GcStore for PgMeta {
    async fn collector_lock(&self) -> anyhow::Result<Option<CollectorGuard>> {
        let c = self.client().await?;
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&COLLECTOR_LOCK])
            .await
            .pg()?
            .get(0);
        if !got {
            return Ok(None);
        }
        // Out of the pool: the lock lives as long as this connection.
        let client = deadpool_postgres::Object::take(c);
        Ok(Some(CollectorGuard(Box::new(client))))
    }

    async fn repo_list(&self) -> anyhow::Result<Vec<RepoEntry>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, owner || '/' || name, key_group IS NOT NULL, refs_changed FROM repos ORDER BY id",
                &[],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| RepoEntry {
                id: r.get(0),
                name: r.get(1),
                encrypted: r.get(2),
                refs_changed: r.get(3),
            })
            .collect())
    }

    async fn delete_repo(&self, repo: i64) -> anyhow::Result<Vec<String>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        tx.query_one("SELECT id FROM repos WHERE id = $1 FOR UPDATE", &[&repo])
            .await
            .pg()?;
        let keys: Vec<String> = tx
            .query("SELECT key FROM git_packs WHERE repo_id = $1", &[&repo])
            .await
            .pg()?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for table in [
            "refs",
            "members",
            "repo_objects",
            "commit_pointers",
            "commit_deps",
            "lost_links",
            "commits",
            "repo_assets",
            "git_packs",
            "locks",
            "lock_events",
            "gc_repos",
            "gc_live",
            "repo_policies",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE repo_id = $1"), &[&repo])
                .await
                .pg()?;
        }
        tx.execute("DELETE FROM repos WHERE id = $1", &[&repo])
            .await
            .pg()?;
        add_dead(&tx, &keys).await?;
        tx.commit().await.pg()?;
        Ok(keys)
    }

    async fn reset_marks(&self) -> anyhow::Result<()> {
        let c = self.client().await?;
        c.batch_execute("TRUNCATE gc_repos, gc_live").await.pg()?;
        Ok(())
    }

    async fn collect_repo(&self, repo: i64) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO gc_repos (repo_id) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&repo],
            )
            .await
            .pg()?;
        Ok(())
    }

    async fn mark_live(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<()> {
        let c = self.client().await?;
        for batch in ids.chunks(BATCH) {
            c.execute(
                "INSERT INTO gc_live (repo_id, id) SELECT $1, u FROM UNNEST($2::bytea[]) AS u ON CONFLICT DO NOTHING",
                &[&repo, &ids_bytes(batch)],
            )
            .await
            .pg()?;
        }
        Ok(())
    }

    async fn sweep(&self, cutoff: i64, apply: bool) -> anyhow::Result<Sweep> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        // Exclusive: no push links objects or moves a ref while links and objects go.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SWEEP_LOCK])
            .await
            .pg()?;
        let links: i64 = tx
            .query_one(
                &format!("SELECT COUNT(*) FROM repo_objects r WHERE NOT {KEPT_LINK}"),
                &[&cutoff],
            )
            .await
            .pg()?
            .get(0);
        let row = tx
            .query_one(
                &format!(
                    "SELECT COUNT(*), COALESCE(SUM(o.stored_len), 0)::BIGINT FROM objects o
                     WHERE NOT EXISTS (SELECT 1 FROM repo_objects r WHERE r.id = o.id AND {KEPT_LINK})"
                ),
                &[&cutoff],
            )
            .await
            .pg()?;
        let (objects, bytes): (i64, i64) = (row.get(0), row.get(1));
        if apply {
            tx.execute(
                &format!("DELETE FROM repo_objects r WHERE NOT {KEPT_LINK}"),
                &[&cutoff],
            )
            .await
            .pg()?;
            let packs: Vec<String> = tx
                .query(
                    "WITH gone AS (DELETE FROM objects o WHERE NOT EXISTS (SELECT 1 FROM repo_objects r WHERE r.id = o.id) RETURNING pack)
                     SELECT DISTINCT pack FROM gone WHERE pack <> ''",
                    &[],
                )
                .await
                .pg()?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Packs nothing is left in are dead from now.
            let emptied: Vec<String> = tx
                .query(
                    "SELECT p FROM UNNEST($1::text[]) AS p WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.pack = p)",
                    &[&packs],
                )
                .await
                .pg()?
                .iter()
                .map(|r| r.get(0))
                .collect();
            add_dead(&tx, &emptied).await?;
        }
        tx.commit().await.pg()?;
        Ok(Sweep {
            links: links as u64,
            objects: objects as u64,
            bytes: bytes as u64,
        })
    }

    async fn pack_usage(&self) -> anyhow::Result<Vec<PackUsage>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT pack, COUNT(*), SUM(stored_len)::BIGINT FROM objects WHERE pack <> '' GROUP BY pack ORDER BY pack",
                &[],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| PackUsage {
                pack: r.get(0),
                objects: r.get::<_, i64>(1) as u64,
                live_bytes: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    async fn pack_objects(&self, pack: &str) -> anyhow::Result<Vec<(ChunkId, Location)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, pack_offset, stored_len, len FROM objects WHERE pack = $1 ORDER BY pack_offset",
                &[&pack],
            )
            .await
            .pg()?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    chunk_id(r.get(0))?,
                    Location {
                        offset: r.get::<_, i64>(1) as u64,
                        stored_len: r.get::<_, i64>(2) as u32,
                        len: r.get::<_, i64>(3) as u32,
                    },
                ))
            })
            .collect()
    }

    async fn move_objects(
        &self,
        from: &str,
        to: &str,
        moved: &[(ChunkId, Location)],
    ) -> anyhow::Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SWEEP_LOCK])
            .await
            .pg()?;
        for batch in moved.chunks(BATCH) {
            let ids: Vec<&[u8]> = batch.iter().map(|(id, _)| &id.0[..]).collect();
            let offsets: Vec<i64> = batch.iter().map(|(_, l)| l.offset as i64).collect();
            tx.execute(
                "UPDATE objects o SET pack = $3, pack_offset = u.off
                 FROM UNNEST($1::bytea[], $4::int8[]) AS u(id, off)
                 WHERE o.id = u.id AND o.pack = $2",
                &[&ids, &from, &to, &offsets],
            )
            .await
            .pg()?;
        }
        tx.execute("DELETE FROM dead_blobs WHERE key = $1", &[&to])
            .await
            .pg()?;
        let left: i64 = tx
            .query_one("SELECT COUNT(*) FROM objects WHERE pack = $1", &[&from])
            .await
            .pg()?
            .get(0);
        if left == 0 {
            add_dead(&tx, &[from.to_string()]).await?;
        }
        tx.commit().await.pg()?;
        Ok(left as u64)
    }

    async fn add_dead(&self, keys: &[String]) -> anyhow::Result<()> {
        add_dead(&self.client().await?, keys).await
    }

    async fn dead_blobs(&self) -> anyhow::Result<Vec<DeadBlob>> {
        let rows = self
            .client()
            .await?
            .query("SELECT key, since FROM dead_blobs ORDER BY key", &[])
            .await
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| DeadBlob {
                key: r.get(0),
                since: r.get(1),
            })
            .collect())
    }

    async fn referenced(&self, key: &str) -> anyhow::Result<bool> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE pack = $1) OR EXISTS (SELECT 1 FROM git_packs WHERE key = $1)",
                &[&key],
            )
            .await
            .pg()?
            .get(0))
    }

    async fn referenced_keys(&self) -> anyhow::Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT pack FROM objects WHERE pack <> '' UNION SELECT key FROM git_packs",
                &[],
            )
            .await
            .pg()?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn replace_git_packs(
        &self,
        repo: i64,
        old: &[String],
        new: Option<(&str, &str, u64)>,
        quiet_since: i64,
    ) -> anyhow::Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        // The lock every ref update of the repository takes.
        let refs_changed: i64 = tx
            .query_one(
                "SELECT refs_changed FROM repos WHERE id = $1 FOR UPDATE",
                &[&repo],
            )
            .await
            .pg()?
            .get(0);
        if refs_changed >= quiet_since {
            return Ok(false);
        }
        let rows = tx
            .query(
                "SELECT seq, key FROM git_packs WHERE repo_id = $1 AND id = ANY($2) AND committed",
                &[&repo, &old],
            )
            .await
            .pg()?;
        if rows.len() != old.len() {
            return Ok(false);
        }
        let first: i64 = rows
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .min()
            .unwrap_or(i64::MAX);
        let keys: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
        tx.execute(
            "DELETE FROM git_packs WHERE repo_id = $1 AND id = ANY($2)",
            &[&repo, &old],
        )
        .await
        .pg()?;
        if let Some((id, key, size)) = new {
            let seq = if first == i64::MAX { None } else { Some(first) };
            tx.execute(
                "INSERT INTO git_packs (seq, repo_id, id, key, size, committed, created)
                 VALUES (COALESCE($1, nextval('git_packs_seq_seq')), $2, $3, $4, $5, TRUE, $6)",
                &[&seq, &repo, &id, &key, &(size as i64), &unix_now()],
            )
            .await
            .pg()?;
        }
        add_dead(&tx, &keys).await?;
        tx.commit().await.pg()?;
        Ok(true)
    }

    async fn forget_dead(&self, key: &str) -> anyhow::Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM dead_blobs WHERE key = $1", &[&key])
            .await
            .pg()?;
        c.execute("DELETE FROM pack_classes WHERE key = $1", &[&key])
            .await
            .pg()?;
        Ok(())
    }
}
