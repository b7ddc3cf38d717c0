//! Derived objects (posters, strips, proxies) in PostgreSQL ([`DerivedStore`]).

use dits_core::ChunkId;

use crate::meta::derived::{Derived, DerivedStore};
use crate::meta::pg::PgMeta;
use crate::pg::PgResult;

const COLUMNS: &str = "recipe, kind, key, size, hash, created";

fn row(r: &tokio_postgres::Row) -> anyhow::Result<Derived> {
    let recipe: Vec<u8> = r.get(0);
    let recipe = recipe
        .try_into()
        .map_err(|_| anyhow::anyhow!("a derived object's recipe id is not 32 bytes"))?;
    Ok(Derived {
        recipe: ChunkId(recipe),
        kind: r.get(1),
        key: r.get(2),
        size: r.get::<_, i64>(3) as u64,
        hash: r.get(4),
        created: r.get(5),
    })
}

#[async_trait::async_trait]
impl DerivedStore for PgMeta {
    async fn put_derived(&self, d: &Derived) -> anyhow::Result<()> {
        let c = self.client().await?;
        c.execute(
            &format!(
                "INSERT INTO derived ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (recipe, kind) DO UPDATE SET key = excluded.key, size = excluded.size,
                   hash = excluded.hash, created = excluded.created"
            ),
            &[
                &&d.recipe.0[..],
                &d.kind,
                &d.key,
                &(d.size as i64),
                &d.hash,
                &d.created,
            ],
        )
        .await
        .pg()?;
        Ok(())
    }

    async fn derived(&self, recipe: &ChunkId, kind: &str) -> anyhow::Result<Option<Derived>> {
        let c = self.client().await?;
        let found = c
            .query_opt(
                &format!("SELECT {COLUMNS} FROM derived WHERE recipe = $1 AND kind = $2"),
                &[&&recipe.0[..], &kind],
            )
            .await
            .pg()?;
        found.as_ref().map(row).transpose()
    }

    async fn drop_orphans(&self, now: i64) -> anyhow::Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        const ORPHAN: &str = "NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = derived.recipe)";
        tx.execute(
            &format!(
                "INSERT INTO dead_blobs (key, since) SELECT key, $1 FROM derived WHERE {ORPHAN}
                 ON CONFLICT DO NOTHING"
            ),
            &[&now],
        )
        .await
        .pg()?;
        tx.execute(
            &format!(
                "DELETE FROM jobs WHERE kind = 'transcode' AND subject IN
                 (SELECT encode(recipe, 'hex') FROM derived WHERE {ORPHAN})"
            ),
            &[],
        )
        .await
        .pg()?;
        let dropped = tx
            .execute(&format!("DELETE FROM derived WHERE {ORPHAN}"), &[])
            .await
            .pg()?;
        tx.commit().await.pg()?;
        Ok(dropped)
    }

    async fn derived_all(&self, recipe: &ChunkId) -> anyhow::Result<Vec<Derived>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {COLUMNS} FROM derived WHERE recipe = $1 ORDER BY kind"),
                &[&&recipe.0[..]],
            )
            .await
            .pg()?;
        rows.iter().map(row).collect()
    }
}
