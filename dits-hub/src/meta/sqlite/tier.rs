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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{unix_now, Location, MetaStore};

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    #[tokio::test]
    async fn a_pack_goes_cold_only_when_every_object_is_unread_for_the_policy_age() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&dir.path().join("hub.sqlite")).unwrap();
        meta.create_repo("a", "film").await.unwrap();
        meta.create_repo("a", "other").await.unwrap();
        let film = meta.find_repo("a", "film").await.unwrap().unwrap();
        let other = meta.find_repo("a", "other").await.unwrap().unwrap();
        let loc = |offset| Location {
            offset,
            stored_len: 10,
            len: 10,
        };
        let stored = [(id(1), loc(0)), (id(2), loc(10))];
        meta.record_objects(film, Some("chunks/p1"), &stored, &[id(1), id(2)])
            .await
            .unwrap();
        let now = unix_now();
        let tier: &dyn TierStore = &meta;
        // No policy: nothing moves.
        assert!(tier.cold_candidates(now + 1000).await.unwrap().is_empty());
        let policy = ColdPolicy {
            after: 100,
            class: "STANDARD_IA".into(),
        };
        tier.set_policy(film, Some(&policy)).await.unwrap();
        assert!(
            tier.cold_candidates(now).await.unwrap().is_empty(),
            "too new"
        );
        let later = tier.cold_candidates(now + 200).await.unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(
            (later[0].bytes, later[0].class.as_str()),
            (20, "STANDARD_IA")
        );
        // One object read since (batched reads land as one write) keeps the whole pack.
        tier.record_access(&[id(2)], now + 150).await.unwrap();
        assert!(tier.cold_candidates(now + 200).await.unwrap().is_empty());
        assert_eq!(tier.cold_candidates(now + 300).await.unwrap().len(), 1);
        // Held by a repository without a policy: it stays.
        meta.record_objects(other, None, &[], &[id(1)])
            .await
            .unwrap();
        assert!(tier.cold_candidates(now + 1000).await.unwrap().is_empty());
        tier.set_policy(other, Some(&policy)).await.unwrap();
        tier.set_pack_class("chunks/p1", "STANDARD_IA")
            .await
            .unwrap();
        assert!(
            tier.cold_candidates(now + 1000).await.unwrap().is_empty(),
            "moved already"
        );
        let classes = tier.bytes_by_class(Some(film)).await.unwrap();
        assert_eq!(classes, vec![("STANDARD_IA".to_string(), 20)]);
    }
}
