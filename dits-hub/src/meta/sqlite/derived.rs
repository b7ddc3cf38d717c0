//! Derived objects (posters, strips, proxies) in SQLite ([`DerivedStore`]).

use dits_core::ChunkId;
use rusqlite::{params, OptionalExtension};

use crate::meta::derived::{Derived, DerivedStore};
use crate::meta::sqlite::SqliteMeta;

const COLUMNS: &str = "recipe, kind, key, size, hash, created";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Derived> {
    let recipe: Vec<u8> = r.get(0)?;
    let recipe = recipe.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "recipe".into(), rusqlite::types::Type::Blob)
    })?;
    Ok(Derived {
        recipe: ChunkId(recipe),
        kind: r.get(1)?,
        key: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        hash: r.get(4)?,
        created: r.get(5)?,
    })
}

#[async_trait::async_trait]
impl DerivedStore for SqliteMeta {
    async fn put_derived(&self, d: &Derived) -> anyhow::Result<()> {
        let d = d.clone();
        self.db
            .run(move |db| {
                db.execute(
                    &format!("INSERT OR REPLACE INTO derived ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    params![&d.recipe.0[..], d.kind, d.key, d.size as i64, d.hash, d.created],
                )?;
                Ok(())
            })
            .await
    }

    async fn derived(&self, recipe: &ChunkId, kind: &str) -> anyhow::Result<Option<Derived>> {
        let (recipe, kind) = (*recipe, kind.to_string());
        self.db
            .run(move |db| {
                Ok(db
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM derived WHERE recipe = ?1 AND kind = ?2"),
                        params![&recipe.0[..], kind],
                        row,
                    )
                    .optional()?)
            })
            .await
    }

    async fn drop_orphans(&self, now: i64) -> anyhow::Result<u64> {
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                const ORPHAN: &str =
                    "NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = derived.recipe)";
                tx.execute(
                    &format!(
                        "INSERT OR IGNORE INTO dead_blobs (key, since) SELECT key, ?1 FROM derived WHERE {ORPHAN}"
                    ),
                    params![now],
                )?;
                tx.execute(
                    &format!(
                        "DELETE FROM jobs WHERE kind = 'transcode' AND subject IN
                         (SELECT lower(hex(recipe)) FROM derived WHERE {ORPHAN})"
                    ),
                    [],
                )?;
                let dropped = tx.execute(&format!("DELETE FROM derived WHERE {ORPHAN}"), [])?;
                tx.commit()?;
                Ok(dropped as u64)
            })
            .await
    }

    async fn derived_all(&self, recipe: &ChunkId) -> anyhow::Result<Vec<Derived>> {
        let recipe = *recipe;
        self.db
            .run(move |db| {
                let mut stmt = db.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM derived WHERE recipe = ?1 ORDER BY kind"
                ))?;
                let rows = stmt
                    .query_map(params![&recipe.0[..]], row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }
}
