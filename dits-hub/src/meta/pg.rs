//! Hub metadata in PostgreSQL (`--metadata postgres://…`), behind [`MetaStore`], so any
//! number of hub processes can serve the same repositories. Ref updates lock the
//! repository's row, so concurrent pushes to one repository through different hubs are
//! serialized and each compare-and-swap sees the last one's result.

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::Pool;
use dits_core::ChunkId;
use dits_wire::wire::{RefResult, RefUpdate, ZERO_OID};

use crate::meta::{check_grant, check_rotation};
use crate::meta::{
    collected_refusal, decide_ref_updates, new_token, random_hex, replaced_pack_refusal,
    token_hash, unix_now, AccountChange, AuditEntry, IndexedCommit, KeyChange, KeyState, Location,
    MetaStore, RepoStats, Role, User, WrappedKey,
};
use crate::pg::{classify, is_unique_violation, PgResult, SWEEP_LOCK};

mod derived;
mod gc;
mod jobs;
mod tier;

/// Ids per statement when asking about many objects at once.
const BATCH: usize = 10_000;

pub struct PgMeta {
    pool: Pool,
}

impl PgMeta {
    pub fn new(pool: Pool) -> PgMeta {
        PgMeta { pool }
    }

    async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool.get().await.pg()
    }
}

fn ids_bytes(ids: &[ChunkId]) -> Vec<&[u8]> {
    ids.iter().map(|id| &id.0[..]).collect()
}

#[async_trait::async_trait]
impl MetaStore for PgMeta {
    async fn ping(&self) -> anyhow::Result<()> {
        self.client().await?.query_one("SELECT 1", &[]).await.pg()?;
        Ok(())
    }

    async fn namespace(&self) -> anyhow::Result<String> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO settings (key, value) VALUES ('hub-id', $1) ON CONFLICT (key) DO NOTHING",
            &[&random_hex(8)?],
        )
        .await
        .pg()?;
        Ok(
            c.query_one("SELECT value FROM settings WHERE key = 'hub-id'", &[])
                .await
                .pg()?
                .get(0),
        )
    }

    async fn add_user(&self, name: &str) -> anyhow::Result<String> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        let id: i64 = match tx
            .query_one(
                "INSERT INTO users (name, created) VALUES ($1, $2) RETURNING id",
                &[&name, &unix_now()],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(e) if is_unique_violation(&e) => anyhow::bail!("user {name} already exists"),
            Err(e) => return Err(classify(e)),
        };
        let token = new_token()?;
        tx.execute(
            "INSERT INTO tokens (hash, user_id, created) VALUES ($1, $2, $3)",
            &[&&token_hash(&token)[..], &id, &unix_now()],
        )
        .await
        .pg()?;
        tx.commit().await.pg()?;
        Ok(token)
    }

    async fn user_for_token(&self, token: &str) -> anyhow::Result<Option<User>> {
        if token.is_empty() {
            return Ok(None);
        }
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT users.id, users.name FROM tokens JOIN users ON users.id = tokens.user_id WHERE tokens.hash = $1 AND NOT users.disabled AND (tokens.expires = 0 OR tokens.expires > $2)",
                &[&&token_hash(token)[..], &unix_now()],
            )
            .await
            .pg()?;
        Ok(row.map(|r| User {
            id: r.get(0),
            name: r.get(1),
        }))
    }

    async fn create_repo(&self, owner: &str, name: &str) -> anyhow::Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        let repo: i64 = match tx
            .query_one(
                "INSERT INTO repos (owner, name, created) VALUES ($1, $2, $3) RETURNING id",
                &[&owner, &name, &unix_now()],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(e) if is_unique_violation(&e) => {
                anyhow::bail!("repository {owner}/{name} already exists")
            }
            Err(e) => return Err(classify(e)),
        };
        tx.execute(
            "INSERT INTO members (repo_id, user_id, role) SELECT $1, id, $3 FROM users WHERE name = $2
             ON CONFLICT (repo_id, user_id) DO UPDATE SET role = excluded.role",
            &[&repo, &owner, &(Role::Admin as i16)],
        )
        .await
        .pg()?;
        tx.commit().await.pg()?;
        Ok(())
    }

    async fn set_member(
        &self,
        owner: &str,
        name: &str,
        user: &str,
        role: Role,
    ) -> anyhow::Result<()> {
        let repo = self
            .find_repo(owner, name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("repository {owner}/{name} does not exist"))?;
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO members (repo_id, user_id, role) SELECT $1, id, $3 FROM users WHERE name = $2
                 ON CONFLICT (repo_id, user_id) DO UPDATE SET role = excluded.role",
                &[&repo, &user, &(role as i16)],
            )
            .await
            .pg()?;
        anyhow::ensure!(n == 1, "user {user} does not exist");
        Ok(())
    }

    async fn find_repo(&self, owner: &str, name: &str) -> anyhow::Result<Option<i64>> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT id FROM repos WHERE owner = $1 AND name = $2",
                &[&owner, &name],
            )
            .await
            .pg()?
            .map(|r| r.get(0)))
    }

    async fn access(&self, repo: &str, user: &User) -> anyhow::Result<Option<(i64, Role)>> {
        let Some((owner, name)) = repo.split_once('/') else {
            return Ok(None);
        };
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT repos.id, members.role FROM repos JOIN members ON members.repo_id = repos.id
                 WHERE repos.owner = $1 AND repos.name = $2 AND members.user_id = $3",
                &[&owner, &name, &user.id],
            )
            .await
            .pg()?;
        Ok(row.map(|r| (r.get(0), Role::from_i64(r.get::<_, i16>(1) as i64))))
    }

    async fn repos_for(&self, user: &User) -> anyhow::Result<Vec<(String, Role)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT repos.owner || '/' || repos.name, members.role FROM repos
                 JOIN members ON members.repo_id = repos.id
                 WHERE members.user_id = $1 ORDER BY repos.owner, repos.name",
                &[&user.id],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), Role::from_i64(r.get::<_, i16>(1) as i64)))
            .collect())
    }

    async fn refs(&self, repo: i64) -> anyhow::Result<BTreeMap<String, String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT name, oid FROM refs WHERE repo_id = $1 ORDER BY name",
                &[&repo],
            )
            .await
            .pg()?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn missing(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<Vec<ChunkId>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT id FROM repo_objects WHERE repo_id = $1 AND id = ANY($2)")
            .await
            .pg()?;
        let mut held: HashSet<Vec<u8>> = HashSet::new();
        for batch in ids.chunks(BATCH) {
            for row in c.query(&stmt, &[&repo, &ids_bytes(batch)]).await.pg()? {
                held.insert(row.get(0));
            }
        }
        Ok(ids
            .iter()
            .filter(|id| !held.contains(&id.0[..]))
            .copied()
            .collect())
    }

    async fn touch(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<()> {
        let mut ids = ids.to_vec();
        ids.sort_by_key(|id| id.0);
        ids.dedup();
        let c = self.client().await?;
        let now = unix_now();
        for batch in ids.chunks(BATCH) {
            c.execute(
                "UPDATE repo_objects SET seen = $3 WHERE repo_id = $1 AND id = ANY($2) AND seen < $3",
                &[&repo, &ids_bytes(batch), &now],
            )
            .await
            .pg()?;
        }
        Ok(())
    }

    fn gc(&self) -> &dyn crate::meta::gc::GcStore {
        self
    }

    fn tier(&self) -> &dyn crate::meta::tier::TierStore {
        self
    }

    fn jobs(&self) -> &dyn crate::meta::jobs::JobStore {
        self
    }

    fn derived(&self) -> &dyn crate::meta::derived::DerivedStore {
        self
    }

    async fn locations(&self, ids: &[ChunkId]) -> anyhow::Result<Vec<Option<(String, Location)>>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT id, pack, pack_offset, stored_len, len FROM objects WHERE id = ANY($1)",
            )
            .await
            .pg()?;
        let mut found: HashMap<Vec<u8>, (String, Location)> = HashMap::new();
        for batch in ids.chunks(BATCH) {
            for r in c.query(&stmt, &[&ids_bytes(batch)]).await.pg()? {
                found.insert(
                    r.get(0),
                    (
                        r.get(1),
                        Location {
                            offset: r.get::<_, i64>(2) as u64,
                            stored_len: r.get::<_, i64>(3) as u32,
                            len: r.get::<_, i64>(4) as u32,
                        },
                    ),
                );
            }
        }
        Ok(ids.iter().map(|id| found.get(&id.0[..]).cloned()).collect())
    }

    async fn record_objects(
        &self,
        repo: i64,
        pack: Option<&str>,
        stored: &[(ChunkId, Location)],
        ids: &[ChunkId],
    ) -> anyhow::Result<()> {
        // Rows are written in id order, so two pushes of overlapping objects lock them in
        // the same order and can't deadlock.
        let mut stored = stored.to_vec();
        stored.sort_by_key(|(id, _)| id.0);
        let mut ids = ids.to_vec();
        ids.sort_by_key(|id| id.0);
        ids.dedup();
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&SWEEP_LOCK])
            .await
            .pg()?;
        let now = unix_now();
        for batch in stored.chunks(BATCH) {
            let id: Vec<&[u8]> = batch.iter().map(|(id, _)| &id.0[..]).collect();
            let offset: Vec<i64> = batch.iter().map(|(_, l)| l.offset as i64).collect();
            let stored_len: Vec<i64> = batch.iter().map(|(_, l)| l.stored_len as i64).collect();
            let len: Vec<i64> = batch.iter().map(|(_, l)| l.len as i64).collect();
            tx.execute(
                "INSERT INTO objects (id, pack, pack_offset, stored_len, len, created, last_access)
                 SELECT u.id, $2, u.off, u.sl, u.len, $6, $6
                 FROM UNNEST($1::bytea[], $3::int8[], $4::int8[], $5::int8[]) AS u(id, off, sl, len)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &id,
                    &pack.unwrap_or_default(),
                    &offset,
                    &stored_len,
                    &len,
                    &now,
                ],
            )
            .await
            .pg()?;
        }
        for batch in ids.chunks(BATCH) {
            // Only objects the index still holds are linked: one a collection deleted
            // since `missing` said the repository had it stays missing, and the ref
            // update that needs it says so.
            tx.execute(
                "INSERT INTO repo_objects (repo_id, id, seen) SELECT $1, o.id, $3 FROM objects o WHERE o.id = ANY($2)
                 ON CONFLICT (repo_id, id) DO UPDATE SET seen = excluded.seen",
                &[&repo, &ids_bytes(batch), &now],
            )
            .await
            .pg()?;
        }
        tx.commit().await.pg()?;
        Ok(())
    }

    async fn add_git_pack(&self, repo: i64, id: &str, key: &str, size: u64) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO git_packs (repo_id, id, key, size, created) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&repo, &id, &key, &(size as i64), &unix_now()],
            )
            .await
            .pg()?;
        Ok(())
    }

    async fn git_packs(&self, repo: i64) -> anyhow::Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id FROM git_packs WHERE repo_id = $1 AND committed ORDER BY seq",
                &[&repo],
            )
            .await
            .pg()?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn git_pack(&self, repo: i64, id: &str) -> anyhow::Result<Option<(String, u64, bool)>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT key, size, committed FROM git_packs WHERE repo_id = $1 AND id = $2",
                &[&repo, &id],
            )
            .await
            .pg()?;
        Ok(row.map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get(2))))
    }

    async fn update_refs(
        &self,
        repo: i64,
        updates: &[RefUpdate],
        packs: &[String],
        required: &[ChunkId],
        atomic: bool,
    ) -> anyhow::Result<Vec<RefResult>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&SWEEP_LOCK])
            .await
            .pg()?;
        // Seen now, so no collection running drops them; gone, the update fails.
        let now = unix_now();
        let mut required = required.to_vec();
        required.sort_by_key(|id| id.0);
        required.dedup();
        for batch in required.chunks(BATCH) {
            let seen: Vec<Vec<u8>> = tx
                .query(
                    "UPDATE repo_objects SET seen = $3 WHERE repo_id = $1 AND id = ANY($2) RETURNING id",
                    &[&repo, &ids_bytes(batch), &now],
                )
                .await
                .pg()?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if seen.len() < batch.len() {
                let seen: HashSet<Vec<u8>> = seen.into_iter().collect();
                if let Some(gone) = batch.iter().find(|id| !seen.contains(&id.0[..])) {
                    return Ok(collected_refusal(updates, gone));
                }
            }
        }
        // The repository's row is the lock every ref update of it takes: the reads
        // below then see the previous update's commit, and nobody can interleave.
        tx.query_one("SELECT id FROM repos WHERE id = $1 FOR UPDATE", &[&repo])
            .await
            .pg()?;
        let mut current = Vec::with_capacity(updates.len());
        for u in updates {
            let row = tx
                .query_opt(
                    "SELECT oid FROM refs WHERE repo_id = $1 AND name = $2",
                    &[&repo, &u.name],
                )
                .await
                .pg()?;
            current.push(row.map(|r| r.get::<_, String>(0)));
        }
        let results = decide_ref_updates(updates, &current, atomic);
        if !results.iter().any(|r| r.ok) {
            return Ok(results);
        }
        for (u, r) in updates.iter().zip(&results) {
            if !r.ok {
                continue;
            }
            if u.new == ZERO_OID {
                tx.execute(
                    "DELETE FROM refs WHERE repo_id = $1 AND name = $2",
                    &[&repo, &u.name],
                )
                .await
                .pg()?;
            } else {
                tx.execute(
                    "INSERT INTO refs (repo_id, name, oid) VALUES ($1, $2, $3)
                     ON CONFLICT (repo_id, name) DO UPDATE SET oid = excluded.oid",
                    &[&repo, &u.name, &u.new],
                )
                .await
                .pg()?;
            }
        }
        let named: Vec<String> = tx
            .query(
                "UPDATE git_packs SET committed = TRUE WHERE repo_id = $1 AND id = ANY($2) RETURNING id",
                &[&repo, &packs],
            )
            .await
            .pg()?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(gone) = packs.iter().find(|p| !named.contains(p)) {
            // Rolled back with the transaction.
            return Ok(replaced_pack_refusal(updates, gone));
        }
        tx.execute(
            "UPDATE repos SET refs_changed = $2 WHERE id = $1",
            &[&repo, &unix_now()],
        )
        .await
        .pg()?;
        tx.commit().await.pg()?;
        Ok(results)
    }

    async fn record_commits(&self, repo: i64, commits: &[IndexedCommit]) -> anyhow::Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        for commit in commits.iter().rev() {
            tx.execute(
                "INSERT INTO commits (repo_id, oid, parents, author, message, time) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING",
                &[&repo, &commit.oid, &commit.parents, &commit.author, &commit.message, &commit.time],
            )
            .await
            .pg()?;
            for (path, p) in &commit.pointers {
                tx.execute(
                    "INSERT INTO repo_assets (repo_id, recipe, file_oid, size, media) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT DO NOTHING",
                    &[&repo, &&p.recipe.0[..], &&p.oid.0[..], &(p.size as i64), &p.media],
                )
                .await
                .pg()?;
                let previous = commit.previous.get(path).map(|r| r.0.to_vec());
                let shared = commit.shared.get(path).map(|&n| n as i64);
                tx.execute(
                    "INSERT INTO commit_pointers (repo_id, commit_oid, path, recipe, previous, shared) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT DO NOTHING",
                    &[&repo, &commit.oid, &path, &&p.recipe.0[..], &previous, &shared],
                )
                .await
                .pg()?;
            }
            for d in &commit.projects {
                tx.execute(
                    "INSERT INTO commit_deps (repo_id, commit_oid, project, deps) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&repo, &commit.oid, &d.project, &serde_json::to_string(d)?],
                )
                .await
                .pg()?;
            }
        }
        tx.commit().await.pg()?;
        Ok(())
    }

    async fn repo_stats(&self, repo: i64) -> anyhow::Result<RepoStats> {
        let c = self.client().await?;
        // SUM over BIGINT is NUMERIC in PostgreSQL: cast back for the driver.
        let sums = |sql: &'static str| {
            let c = &c;
            async move {
                let row = c.query_one(sql, &[&repo]).await.pg()?;
                anyhow::Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
            }
        };
        let (versions, logical_bytes) = sums(
            "SELECT COUNT(*), COALESCE(SUM(size), 0)::BIGINT FROM repo_assets WHERE repo_id = $1",
        )
        .await?;
        let (objects, stored_bytes) = sums(
            "SELECT COUNT(*), COALESCE(SUM(o.stored_len), 0)::BIGINT FROM repo_objects r
             JOIN objects o ON o.id = r.id WHERE r.repo_id = $1",
        )
        .await?;
        Ok(RepoStats {
            versions,
            logical_bytes,
            objects,
            stored_bytes,
        })
    }

    async fn commit_log(
        &self,
        repo: i64,
        skip: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<IndexedCommit>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT oid, parents, author, message, time FROM commits WHERE repo_id = $1
                 ORDER BY seq DESC LIMIT $2 OFFSET $3",
                &[&repo, &(limit as i64), &(skip as i64)],
            )
            .await
            .pg()?;
        let mut commits = Vec::with_capacity(rows.len());
        for r in rows {
            let oid: String = r.get(0);
            let (mut pointers, mut previous, mut shared) =
                (Vec::new(), HashMap::new(), HashMap::new());
            for p in c
                .query(
                    "SELECT p.path, a.recipe, a.file_oid, a.size, a.media, p.previous, p.shared
                     FROM commit_pointers p
                     JOIN repo_assets a ON a.repo_id = p.repo_id AND a.recipe = p.recipe
                     WHERE p.repo_id = $1 AND p.commit_oid = $2 ORDER BY p.path",
                    &[&repo, &oid],
                )
                .await
                .pg()?
            {
                let (path, recipe, file_oid): (String, Vec<u8>, Vec<u8>) =
                    (p.get(0), p.get(1), p.get(2));
                let Some(pointer) =
                    crate::meta::stored_pointer(&recipe, &file_oid, p.get(3), p.get(4))
                else {
                    continue;
                };
                if let Some(id) = p
                    .get::<_, Option<Vec<u8>>>(5)
                    .and_then(|id| crate::meta::stored_id(&id))
                {
                    previous.insert(path.clone(), id);
                }
                if let Some(n) = p.get::<_, Option<i64>>(6) {
                    shared.insert(path.clone(), n as u64);
                }
                pointers.push((path, pointer));
            }
            let projects = c
                .query(
                    "SELECT deps FROM commit_deps WHERE repo_id = $1 AND commit_oid = $2 ORDER BY project",
                    &[&repo, &oid],
                )
                .await
                .pg()?
                .into_iter()
                .filter_map(|row| serde_json::from_str(&row.get::<_, String>(0)).ok())
                .collect();
            commits.push(IndexedCommit {
                oid,
                parents: r.get(1),
                author: r.get(2),
                message: r.get(3),
                time: r.get(4),
                pointers,
                projects,
                previous,
                shared,
            });
        }
        Ok(commits)
    }

    async fn asset_version(
        &self,
        repo: i64,
        recipe: &ChunkId,
    ) -> anyhow::Result<Option<crate::meta::AssetVersion>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT p.commit_oid, p.path, p.previous, p.shared, a.file_oid, a.size, a.media
                 FROM commit_pointers p
                 JOIN commits c ON c.repo_id = p.repo_id AND c.oid = p.commit_oid
                 JOIN repo_assets a ON a.repo_id = p.repo_id AND a.recipe = p.recipe
                 WHERE p.repo_id = $1 AND p.recipe = $2 ORDER BY c.seq DESC LIMIT 1",
                &[&repo, &&recipe.0[..]],
            )
            .await
            .pg()?;
        Ok(row.and_then(|r| {
            let file_oid: Vec<u8> = r.get(4);
            Some(crate::meta::AssetVersion {
                commit: r.get(0),
                path: r.get(1),
                previous: r
                    .get::<_, Option<Vec<u8>>>(2)
                    .and_then(|id| crate::meta::stored_id(&id)),
                shared: r.get::<_, Option<i64>>(3).map(|n| n as u64),
                pointer: crate::meta::stored_pointer(&recipe.0, &file_oid, r.get(5), r.get(6))?,
            })
        }))
    }

    async fn record_shared(
        &self,
        repo: i64,
        commit: &str,
        path: &str,
        shared: u64,
    ) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE commit_pointers SET shared = $4 WHERE repo_id = $1 AND commit_oid = $2 AND path = $3",
                &[&repo, &commit, &path, &(shared as i64)],
            )
            .await
            .pg()?;
        Ok(())
    }

    async fn change_account(
        &self,
        change: &AccountChange,
        actor: &str,
    ) -> anyhow::Result<Option<String>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        let user_id = |name: String| {
            let tx = &tx;
            async move {
                let row = tx
                    .query_opt("SELECT id FROM users WHERE name = $1", &[&name])
                    .await
                    .pg()?;
                row.map(|r| r.get::<_, i64>(0))
                    .ok_or_else(|| anyhow::anyhow!("user {name} does not exist"))
            }
        };
        let issue_until = |user: i64, expires: i64| {
            let tx = &tx;
            async move {
                let token = new_token()?;
                tx.execute(
                    "INSERT INTO tokens (hash, user_id, created, expires) VALUES ($1, $2, $3, $4)",
                    &[&&token_hash(&token)[..], &user, &unix_now(), &expires],
                )
                .await
                .pg()?;
                // Sessions that ended are of no use to anyone: dropped as new ones start.
                tx.execute(
                    "DELETE FROM tokens WHERE user_id = $1 AND expires > 0 AND expires <= $2",
                    &[&user, &unix_now()],
                )
                .await
                .pg()?;
                anyhow::Ok(token)
            }
        };
        let issue = |user: i64| issue_until(user, 0);
        let revoke_all = |user: i64| {
            let tx = &tx;
            async move {
                tx.execute("DELETE FROM tokens WHERE user_id = $1", &[&user])
                    .await
                    .pg()
            }
        };
        let set_disabled = |user: i64, disabled: bool| {
            let tx = &tx;
            async move {
                tx.execute(
                    "UPDATE users SET disabled = $2 WHERE id = $1",
                    &[&user, &disabled],
                )
                .await
                .pg()
            }
        };
        let (subject, detail, token) = match change {
            AccountChange::IssueToken { user } => {
                let token = issue(user_id(user.clone()).await?).await?;
                (user.clone(), String::new(), Some(token))
            }
            AccountChange::IssueSession { user, expires } => {
                let token = issue_until(user_id(user.clone()).await?, *expires).await?;
                let detail = format!("until {}", crate::locks::rfc3339(*expires));
                (user.clone(), detail, Some(token))
            }
            AccountChange::RotateTokens { user } => {
                let id = user_id(user.clone()).await?;
                let revoked = revoke_all(id).await?;
                let token = issue(id).await?;
                (user.clone(), format!("{revoked} revoked"), Some(token))
            }
            AccountChange::RevokeToken { token } => {
                let hash = token_hash(token);
                let owner = tx
                    .query_opt(
                        "DELETE FROM tokens t USING users u WHERE u.id = t.user_id AND t.hash = $1 RETURNING u.name",
                        &[&&hash[..]],
                    )
                    .await
                    .pg()?
                    .map(|r| r.get::<_, String>(0))
                    .ok_or_else(|| anyhow::anyhow!("the hub does not know this token"))?;
                (owner, String::new(), None)
            }
            AccountChange::RevokeTokens { user } => {
                let revoked = revoke_all(user_id(user.clone()).await?).await?;
                (user.clone(), format!("{revoked} revoked"), None)
            }
            AccountChange::Disable { user } => {
                set_disabled(user_id(user.clone()).await?, true).await?;
                (user.clone(), String::new(), None)
            }
            AccountChange::Enable { user } => {
                set_disabled(user_id(user.clone()).await?, false).await?;
                (user.clone(), String::new(), None)
            }
            AccountChange::RemoveUser { user } => {
                let id = user_id(user.clone()).await?;
                let revoked = revoke_all(id).await?;
                let memberships = tx
                    .execute("DELETE FROM members WHERE user_id = $1", &[&id])
                    .await
                    .pg()?;
                set_disabled(id, true).await?;
                let detail = format!("{revoked} tokens revoked, {memberships} memberships removed");
                (user.clone(), detail, None)
            }
            AccountChange::RemoveMember { owner, name, user } => {
                let id = user_id(user.clone()).await?;
                let removed = tx
                    .execute(
                        "DELETE FROM members m USING repos r
                         WHERE r.id = m.repo_id AND r.owner = $1 AND r.name = $2 AND m.user_id = $3",
                        &[owner, name, &id],
                    )
                    .await
                    .pg()?;
                anyhow::ensure!(
                    removed == 1,
                    "user {user} is not a member of {owner}/{name} (or it does not exist)"
                );
                (user.clone(), format!("{owner}/{name}"), None)
            }
        };
        let e = AuditEntry::now(actor, change.action(), &subject, &detail);
        tx.execute(
            INSERT_AUDIT,
            &[&e.at, &e.actor, &e.action, &e.subject, &e.detail],
        )
        .await
        .pg()?;
        tx.commit().await.pg()?;
        Ok(token)
    }

    async fn audit(&self, e: &AuditEntry) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                INSERT_AUDIT,
                &[&e.at, &e.actor, &e.action, &e.subject, &e.detail],
            )
            .await
            .pg()?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> anyhow::Result<Vec<AuditEntry>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT at, actor, action, subject, detail FROM admin_events ORDER BY seq DESC LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                subject: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }

    async fn encrypted(&self, repo: i64) -> anyhow::Result<bool> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT key_group IS NOT NULL FROM repos WHERE id = $1",
                &[&repo],
            )
            .await
            .pg()?;
        Ok(row.get(0))
    }

    async fn key_state(&self, repo: i64) -> anyhow::Result<KeyState> {
        let mut c = self.client().await?;
        // One snapshot for the three reads: the wraps and the generation agree.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .pg()?;
        let Some(group) = key_group(&tx, repo, false).await? else {
            return Ok(KeyState::default());
        };
        let wraps = tx
            .query(
                "SELECT w.generation, w.key_id, u.name, w.wrapped FROM wrapped_keys w
                 JOIN users u ON u.id = w.user_id WHERE w.group_id = $1 ORDER BY w.generation, u.name",
                &[&group.id],
            )
            .await
            .pg()?
            .iter()
            .map(|r| {
                Ok(WrappedKey {
                    generation: stored_generation(r.get(0))?,
                    key_id: r.get(1),
                    user: r.get(2),
                    wrapped: r.get(3),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Members, and holders of wrapped keys who are not (or no longer) members: both
        // matter to whoever wraps the next secret or decides whom to revoke.
        let public_keys = tx
            .query(
                "SELECT u.name, k.public_key FROM user_keys k JOIN users u ON u.id = k.user_id
                 WHERE k.user_id IN (SELECT user_id FROM members WHERE repo_id = $1
                                     UNION SELECT user_id FROM wrapped_keys WHERE group_id = $2)
                 ORDER BY u.name",
                &[&repo, &group.id],
            )
            .await
            .pg()?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().await.pg()?;
        Ok(KeyState {
            group: Some(group.name),
            generation: group.generation,
            wraps,
            public_keys,
        })
    }

    async fn set_public_key(&self, user: &User, key: &str) -> anyhow::Result<()> {
        anyhow::ensure!(!key.trim().is_empty(), "the public key is empty");
        self.client()
            .await?
            .execute(
                "INSERT INTO user_keys (user_id, public_key, created) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id) DO UPDATE SET public_key = excluded.public_key, created = excluded.created",
                &[&user.id, &key, &unix_now()],
            )
            .await
            .pg()?;
        Ok(())
    }

    async fn set_key_group(&self, repo: i64, group: &str) -> anyhow::Result<()> {
        anyhow::ensure!(!group.is_empty(), "the key group name is empty");
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        // DO UPDATE (a no-op) rather than DO NOTHING, so RETURNING names an existing row.
        let id: i64 = tx
            .query_one(
                "INSERT INTO key_groups (name) VALUES ($1)
                 ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
                &[&group],
            )
            .await
            .pg()?
            .get(0);
        // The repository's row lock: two hubs setting its group can't both see NULL.
        let current: Option<i64> = tx
            .query_opt(
                "SELECT key_group FROM repos WHERE id = $1 FOR UPDATE",
                &[&repo],
            )
            .await
            .pg()?
            .ok_or_else(|| anyhow::anyhow!("repository id {repo} does not exist"))?
            .get(0);
        match current {
            None => {
                tx.execute(
                    "UPDATE repos SET key_group = $2 WHERE id = $1",
                    &[&repo, &id],
                )
                .await
                .pg()?;
            }
            Some(current) if current == id => {}
            Some(current) => {
                let name: String = tx
                    .query_one("SELECT name FROM key_groups WHERE id = $1", &[&current])
                    .await
                    .pg()?
                    .get(0);
                anyhow::bail!("repository is already encrypted under key group {name}");
            }
        }
        tx.commit().await.pg()?;
        Ok(())
    }

    async fn change_keys(&self, repo: i64, change: &KeyChange) -> anyhow::Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        // Locks the group's row: concurrent changes (through any hub, to any repository
        // of the group) queue here, and each checks against the one before.
        let group = key_group(&tx, repo, true)
            .await?
            .ok_or_else(|| anyhow::anyhow!("repository is not encrypted"))?;
        let wraps = match change {
            KeyChange::Grant { wraps } => {
                for w in wraps {
                    let stored: Option<String> = tx
                        .query_opt(
                            "SELECT key_id FROM wrapped_keys WHERE group_id = $1 AND generation = $2 LIMIT 1",
                            &[&group.id, &db_generation(w.generation)?],
                        )
                        .await
                        .pg()?
                        .map(|r| r.get(0));
                    check_grant(&group.name, group.generation, w, stored.as_deref())?;
                }
                wraps
            }
            KeyChange::Rotate {
                generation,
                wraps,
                revoke,
            } => {
                check_rotation(
                    &group.name,
                    group.generation,
                    *generation,
                    wraps,
                    revoke.as_deref(),
                )?;
                if let Some(user) = revoke {
                    let id = user_id(&tx, user).await?;
                    tx.execute(
                        "DELETE FROM wrapped_keys WHERE group_id = $1 AND user_id = $2",
                        &[&group.id, &id],
                    )
                    .await
                    .pg()?;
                }
                tx.execute(
                    "UPDATE key_groups SET generation = $2 WHERE id = $1",
                    &[&group.id, &db_generation(*generation)?],
                )
                .await
                .pg()?;
                wraps
            }
        };
        for w in wraps {
            let user = user_id(&tx, &w.user).await?;
            tx.execute(
                "INSERT INTO wrapped_keys (group_id, generation, user_id, key_id, wrapped) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (group_id, generation, user_id) DO UPDATE SET key_id = excluded.key_id, wrapped = excluded.wrapped",
                &[&group.id, &db_generation(w.generation)?, &user, &w.key_id, &w.wrapped],
            )
            .await
            .pg()?;
        }
        tx.commit().await.pg()?;
        Ok(())
    }
}

/// A repository's key group, as stored.
struct KeyGroup {
    id: i64,
    name: String,
    generation: u32,
}

/// The key group of `repo` (its row locked for the transaction with `lock`); `None` when
/// the repository is not encrypted.
async fn key_group(
    tx: &deadpool_postgres::Transaction<'_>,
    repo: i64,
    lock: bool,
) -> anyhow::Result<Option<KeyGroup>> {
    let id: Option<i64> = tx
        .query_opt("SELECT key_group FROM repos WHERE id = $1", &[&repo])
        .await
        .pg()?
        .ok_or_else(|| anyhow::anyhow!("repository id {repo} does not exist"))?
        .get(0);
    let Some(id) = id else {
        return Ok(None);
    };
    let sql = if lock {
        "SELECT name, generation FROM key_groups WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT name, generation FROM key_groups WHERE id = $1"
    };
    let row = tx.query_one(sql, &[&id]).await.pg()?;
    Ok(Some(KeyGroup {
        id,
        name: row.get(0),
        generation: stored_generation(row.get(1))?,
    }))
}

/// The id of user `name`, who must exist.
async fn user_id(tx: &deadpool_postgres::Transaction<'_>, name: &str) -> anyhow::Result<i64> {
    tx.query_opt("SELECT id FROM users WHERE name = $1", &[&name])
        .await
        .pg()?
        .map(|r| r.get(0))
        .ok_or_else(|| anyhow::anyhow!("user {name} does not exist"))
}

/// A key generation read from the database.
fn stored_generation(n: i32) -> anyhow::Result<u32> {
    u32::try_from(n).map_err(|_| anyhow::anyhow!("stored key generation {n} is out of range"))
}

/// A key generation for an INTEGER column.
fn db_generation(n: u32) -> anyhow::Result<i32> {
    i32::try_from(n).map_err(|_| anyhow::anyhow!("key generation {n} is out of range"))
}

/// Appends an entry to the operators' audit log: at, actor, action, subject, detail.
const INSERT_AUDIT: &str =
    "INSERT INTO admin_events (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)";
