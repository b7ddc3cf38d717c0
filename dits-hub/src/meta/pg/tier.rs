//! The cold-tier reaper's metadata in PostgreSQL ([`TierStore`]).

use dits_core::ChunkId;

use crate::meta::pg::{ids_bytes, PgMeta, BATCH};
use crate::meta::tier::{ColdPack, ColdPolicy, TierStore, STANDARD};
use crate::pg::PgResult;

/// See the SQLite backend.
const ELIGIBLE: &str = "
SELECT pack, SUM(stored_len)::BIGINT FROM (
  SELECT o.pack AS pack, o.stored_len AS stored_len,
    CASE WHEN EXISTS (SELECT 1 FROM repo_objects r WHERE r.id = o.id)
          AND NOT EXISTS (SELECT 1 FROM repo_objects r LEFT JOIN repo_policies p ON p.repo_id = r.repo_id
                          WHERE r.id = o.id AND (p.repo_id IS NULL OR GREATEST(o.last_access, o.created) >= $1 - p.cold_after))
    THEN 1 ELSE 0 END AS ok
  FROM objects o WHERE o.pack <> '' AND o.pack NOT IN (SELECT key FROM pack_classes)
) e GROUP BY pack HAVING MIN(ok) = 1 ORDER BY pack";

#[async_trait::async_trait]
impl TierStore for PgMeta {
    async fn set_policy(&self, repo: i64, policy: Option<&ColdPolicy>) -> anyhow::Result<()> {
        let c = self.client().await?;
        match policy {
            Some(p) => c
                .execute(
                    "INSERT INTO repo_policies (repo_id, cold_after, class) VALUES ($1, $2, $3)
                     ON CONFLICT (repo_id) DO UPDATE SET cold_after = excluded.cold_after, class = excluded.class",
                    &[&repo, &p.after, &p.class],
                )
                .await
                .pg()?,
            None => c
                .execute("DELETE FROM repo_policies WHERE repo_id = $1", &[&repo])
                .await
                .pg()?,
        };
        Ok(())
    }

    async fn policy(&self, repo: i64) -> anyhow::Result<Option<ColdPolicy>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT cold_after, class FROM repo_policies WHERE repo_id = $1",
                &[&repo],
            )
            .await
            .pg()?;
        Ok(row.map(|r| ColdPolicy {
            after: r.get(0),
            class: r.get(1),
        }))
    }

    async fn record_access(&self, ids: &[ChunkId], at: i64) -> anyhow::Result<()> {
        let mut ids = ids.to_vec();
        ids.sort_by_key(|id| id.0);
        ids.dedup();
        let c = self.client().await?;
        for batch in ids.chunks(BATCH) {
            c.execute(
                "UPDATE objects SET last_access = $2 WHERE id = ANY($1) AND last_access < $2 - 3600",
                &[&ids_bytes(batch), &at],
            )
            .await
            .pg()?;
        }
        Ok(())
    }

    async fn cold_candidates(&self, now: i64) -> anyhow::Result<Vec<ColdPack>> {
        let c = self.client().await?;
        let packs = c.query(ELIGIBLE, &[&now]).await.pg()?;
        let mut out = Vec::new();
        for row in packs {
            let pack: String = row.get(0);
            let classes: Vec<String> = c
                .query(
                    "SELECT DISTINCT p.class FROM objects o JOIN repo_objects r ON r.id = o.id
                     JOIN repo_policies p ON p.repo_id = r.repo_id WHERE o.pack = $1",
                    &[&pack],
                )
                .await
                .pg()?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if let [class] = &classes[..] {
                out.push(ColdPack {
                    bytes: row.get::<_, i64>(1) as u64,
                    class: class.clone(),
                    pack,
                });
            }
        }
        Ok(out)
    }

    async fn set_pack_class(&self, pack: &str, class: &str) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO pack_classes (key, class) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET class = excluded.class",
                &[&pack, &class],
            )
            .await
            .pg()?;
        Ok(())
    }

    async fn bytes_by_class(&self, repo: Option<i64>) -> anyhow::Result<Vec<(String, u64)>> {
        let sql = format!(
            "SELECT COALESCE(c.class, '{STANDARD}'), SUM(o.stored_len)::BIGINT FROM objects o
             LEFT JOIN pack_classes c ON c.key = o.pack
             WHERE $1::BIGINT IS NULL OR o.id IN (SELECT id FROM repo_objects WHERE repo_id = $1)
             GROUP BY 1 ORDER BY 1"
        );
        let rows = self.client().await?.query(&sql, &[&repo]).await.pg()?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }
}
