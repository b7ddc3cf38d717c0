//! The cold-tier reaper's metadata in SQLite ([`TierStore`]).

use dits_core::ChunkId;
use rusqlite::{params, OptionalExtension};

use crate::meta::sqlite::SqliteMeta;
use crate::meta::tier::{ColdPack, ColdPolicy, TierStore, STANDARD};

/// Per standard-class pack: its stored bytes, and 1 when every object in it may move
/// (held only by repositories with a policy, untouched for the longest of their ages).
const ELIGIBLE: &str = "
SELECT pack, SUM(stored_len) FROM (
  SELECT o.pack AS pack, o.stored_len AS stored_len,
    CASE WHEN EXISTS (SELECT 1 FROM repo_objects r WHERE r.id = o.id)
          AND NOT EXISTS (SELECT 1 FROM repo_objects r LEFT JOIN repo_policies p ON p.repo_id = r.repo_id
                          WHERE r.id = o.id AND (p.repo_id IS NULL OR MAX(o.last_access, o.created) >= ?1 - p.cold_after))
    THEN 1 ELSE 0 END AS ok
  FROM objects o WHERE o.pack <> '' AND o.pack NOT IN (SELECT key FROM pack_classes)
) GROUP BY pack HAVING MIN(ok) = 1 ORDER BY pack";

#[async_trait::async_trait]
impl TierStore for SqliteMeta {
    async fn set_policy(&self, repo: i64, policy: Option<&ColdPolicy>) -> anyhow::Result<()> {
        let policy = policy.cloned();
        self.db
            .run(move |db| {
                match policy {
                    Some(p) => db.execute(
                        "INSERT INTO repo_policies (repo_id, cold_after, class) VALUES (?1, ?2, ?3)
                         ON CONFLICT (repo_id) DO UPDATE SET cold_after = excluded.cold_after, class = excluded.class",
                        params![repo, p.after, p.class],
                    )?,
                    None => db.execute("DELETE FROM repo_policies WHERE repo_id = ?1", params![repo])?,
                };
                Ok(())
            })
            .await
    }

    async fn policy(&self, repo: i64) -> anyhow::Result<Option<ColdPolicy>> {
        self.db
            .run(move |db| {
                Ok(db
                    .query_row(
                        "SELECT cold_after, class FROM repo_policies WHERE repo_id = ?1",
                        params![repo],
                        |r| {
                            Ok(ColdPolicy {
                                after: r.get(0)?,
                                class: r.get(1)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }

    async fn record_access(&self, ids: &[ChunkId], at: i64) -> anyhow::Result<()> {
        let ids = ids.to_vec();
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut read = tx.prepare_cached(
                        "UPDATE objects SET last_access = ?2 WHERE id = ?1 AND last_access < ?2 - 3600",
                    )?;
                    for id in &ids {
                        read.execute(params![&id.0[..], at])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn cold_candidates(&self, now: i64) -> anyhow::Result<Vec<ColdPack>> {
        self.db
            .run(move |db| {
                let packs: Vec<(String, i64)> = db
                    .prepare(ELIGIBLE)?
                    .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let mut classes = db.prepare(
                    "SELECT DISTINCT p.class FROM objects o JOIN repo_objects r ON r.id = o.id
                     JOIN repo_policies p ON p.repo_id = r.repo_id WHERE o.pack = ?1",
                )?;
                let mut out = Vec::new();
                for (pack, bytes) in packs {
                    let class: Vec<String> = classes
                        .query_map(params![pack], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    if let [class] = &class[..] {
                        out.push(ColdPack {
                            pack,
                            bytes: bytes as u64,
                            class: class.clone(),
                        });
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn set_pack_class(&self, pack: &str, class: &str) -> anyhow::Result<()> {
        let (pack, class) = (pack.to_string(), class.to_string());
        self.db
            .run(move |db| {
                db.execute(
                    "INSERT INTO pack_classes (key, class) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET class = excluded.class",
                    params![pack, class],
                )?;
                Ok(())
            })
            .await
    }

    async fn bytes_by_class(&self, repo: Option<i64>) -> anyhow::Result<Vec<(String, u64)>> {
        self.db
            .run(move |db| {
                let sql = format!(
                    "SELECT COALESCE(c.class, '{STANDARD}'), SUM(o.stored_len) FROM objects o
                     LEFT JOIN pack_classes c ON c.key = o.pack {} GROUP BY 1 ORDER BY 1",
                    if repo.is_some() {
                        "WHERE o.id IN (SELECT id FROM repo_objects WHERE repo_id = ?1)"
                    } else {
                        "WHERE ?1 IS NULL"
                    }
                );
                let rows = db
                    .prepare(&sql)?
                    .query_map(params![repo], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
    }
}
