//! Hub metadata in SQLite (the embedded backend), behind [`MetaStore`].

use std::collections::BTreeMap;
use std::path::Path;

use dits_core::ChunkId;
use dits_wire::wire::{RefResult, RefUpdate, ZERO_OID};
use rusqlite::{params, Connection, OptionalExtension};

use crate::meta::{
    collected_refusal, decide_ref_updates, new_token, replaced_pack_refusal, token_hash, unix_now,
    AccountChange, AuditEntry, IndexedCommit, KeyChange, KeyState, Location, MetaStore, RepoStats,
    Role, User,
};
use crate::sqlite::SqliteDb;

mod derived;
mod gc;
mod jobs;
mod keys;
mod tier;
use keys::{change_keys, key_state, set_key_group};

pub struct SqliteMeta {
    db: SqliteDb,
    /// The directory holding the database (and the hub id file).
    dir: std::path::PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS repos (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, created INTEGER NOT NULL, UNIQUE(owner, name));
CREATE TABLE IF NOT EXISTS members (repo_id INTEGER NOT NULL REFERENCES repos(id), user_id INTEGER NOT NULL REFERENCES users(id), role INTEGER NOT NULL, PRIMARY KEY (repo_id, user_id));
CREATE TABLE IF NOT EXISTS refs (repo_id INTEGER NOT NULL REFERENCES repos(id), name TEXT NOT NULL, oid TEXT NOT NULL, PRIMARY KEY (repo_id, name));
CREATE TABLE IF NOT EXISTS objects (id BLOB PRIMARY KEY, pack TEXT NOT NULL, offset INTEGER NOT NULL, stored_len INTEGER NOT NULL, len INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS repo_objects (repo_id INTEGER NOT NULL, id BLOB NOT NULL, PRIMARY KEY (repo_id, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits (repo_id INTEGER NOT NULL, oid TEXT NOT NULL, parents TEXT NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL, time INTEGER NOT NULL, PRIMARY KEY (repo_id, oid));
CREATE TABLE IF NOT EXISTS commit_pointers (repo_id INTEGER NOT NULL, commit_oid TEXT NOT NULL, path TEXT NOT NULL, recipe BLOB NOT NULL, PRIMARY KEY (repo_id, commit_oid, path));
CREATE INDEX IF NOT EXISTS commit_pointers_by_recipe ON commit_pointers (repo_id, recipe);
-- The dependencies of each project file a commit adds or changes (JSON, mirror::deps::RecordedDeps).
CREATE TABLE IF NOT EXISTS commit_deps (repo_id INTEGER NOT NULL, commit_oid TEXT NOT NULL, project TEXT NOT NULL, deps TEXT NOT NULL, PRIMARY KEY (repo_id, commit_oid, project));
CREATE TABLE IF NOT EXISTS assets (recipe BLOB PRIMARY KEY, file_oid BLOB NOT NULL, size INTEGER NOT NULL, media TEXT NOT NULL);
-- What each repository's pointers say of a recipe: per repository, so one repository's
-- pointers cannot set what another's asset listing shows. The old global table's rows
-- move here (CROSS JOIN: driven by assets, so nothing is scanned once it is empty).
CREATE TABLE IF NOT EXISTS repo_assets (repo_id INTEGER NOT NULL, recipe BLOB NOT NULL, file_oid BLOB NOT NULL, size INTEGER NOT NULL, media TEXT NOT NULL, PRIMARY KEY (repo_id, recipe)) WITHOUT ROWID;
INSERT OR IGNORE INTO repo_assets SELECT p.repo_id, a.recipe, a.file_oid, a.size, a.media FROM assets a CROSS JOIN commit_pointers p WHERE p.recipe = a.recipe;
DELETE FROM assets;
CREATE TABLE IF NOT EXISTS admin_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS git_packs (seq INTEGER PRIMARY KEY AUTOINCREMENT, repo_id INTEGER NOT NULL, id TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, committed INTEGER NOT NULL DEFAULT 0, UNIQUE(repo_id, id));
-- Encryption: repositories of one key group share its secrets (repos.key_group), each
-- generation wrapped for each member's registered public key.
CREATE TABLE IF NOT EXISTS key_groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS user_keys (user_id INTEGER PRIMARY KEY REFERENCES users(id), public_key TEXT NOT NULL, created INTEGER NOT NULL);
-- Garbage collection (meta::gc): the repositories a collection drops unreachable links
-- of, what refs reach in each, and blobs no row names any more (deleted after the grace).
CREATE INDEX IF NOT EXISTS repo_objects_by_id ON repo_objects (id);
CREATE INDEX IF NOT EXISTS objects_by_pack ON objects (pack);
CREATE TABLE IF NOT EXISTS gc_repos (repo_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS gc_live (repo_id INTEGER NOT NULL, id BLOB NOT NULL, PRIMARY KEY (repo_id, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_blobs (key TEXT PRIMARY KEY, since INTEGER NOT NULL);
-- The cold tier (meta::tier): each repository's policy, and packs moved out of the
-- standard class.
CREATE TABLE IF NOT EXISTS repo_policies (repo_id INTEGER PRIMARY KEY, cold_after INTEGER NOT NULL, class TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pack_classes (key TEXT PRIMARY KEY, class TEXT NOT NULL);
-- The job queue (meta::jobs): one row per kind and subject; run_after is when a queued
-- job may run, or a running one's lease ends.
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, subject TEXT NOT NULL, repo_id INTEGER, state TEXT NOT NULL, attempts INTEGER NOT NULL, worker TEXT, error TEXT, run_after INTEGER NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL, UNIQUE (kind, subject));
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (state, run_after);
-- Objects a scrub found not to match their ids, taken out of the index.
CREATE TABLE IF NOT EXISTS corrupt_objects (id BLOB PRIMARY KEY, pack TEXT NOT NULL, found INTEGER NOT NULL, detail TEXT NOT NULL);
-- Which repositories held them: their pushers are asked to send them again.
CREATE TABLE IF NOT EXISTS lost_links (repo_id INTEGER NOT NULL, id BLOB NOT NULL, PRIMARY KEY (repo_id, id)) WITHOUT ROWID;
-- What transcodes made of an asset (meta::derived), by recipe.
CREATE TABLE IF NOT EXISTS derived (recipe BLOB NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, hash TEXT NOT NULL, created INTEGER NOT NULL, PRIMARY KEY (recipe, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wrapped_keys (group_id INTEGER NOT NULL REFERENCES key_groups(id), generation INTEGER NOT NULL, user_id INTEGER NOT NULL REFERENCES users(id), key_id TEXT NOT NULL, wrapped BLOB NOT NULL, PRIMARY KEY (group_id, generation, user_id)) WITHOUT ROWID;
";

/// Columns added after the first release (CREATE TABLE IF NOT EXISTS keeps an old table
/// as it was): table, column, and the statement that adds it.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "users",
        "disabled",
        "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "repo_objects",
        "seen",
        "ALTER TABLE repo_objects ADD COLUMN seen INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "objects",
        "created",
        "ALTER TABLE objects ADD COLUMN created INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "objects",
        "last_access",
        "ALTER TABLE objects ADD COLUMN last_access INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "repos",
        "refs_changed",
        "ALTER TABLE repos ADD COLUMN refs_changed INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "git_packs",
        "created",
        "ALTER TABLE git_packs ADD COLUMN created INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "tokens",
        "expires",
        "ALTER TABLE tokens ADD COLUMN expires INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "commit_pointers",
        "previous",
        "ALTER TABLE commit_pointers ADD COLUMN previous BLOB",
    ),
    (
        "commit_pointers",
        "shared",
        "ALTER TABLE commit_pointers ADD COLUMN shared INTEGER",
    ),
    (
        "repos",
        "key_group",
        "ALTER TABLE repos ADD COLUMN key_group INTEGER REFERENCES key_groups(id)",
    ),
];

impl SqliteMeta {
    pub fn open(path: &Path) -> anyhow::Result<SqliteMeta> {
        let db = SqliteDb::open(path, SCHEMA)?;
        db.with_conn(|conn| {
            for (table, column, add) in ADDED_COLUMNS {
                let present = conn
                    .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
                    .exists(params![table, column])?;
                if !present {
                    conn.execute_batch(add)?;
                }
            }
            Ok(())
        })?;
        Ok(SqliteMeta {
            db,
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        })
    }

    fn user_id(db: &Connection, name: &str) -> anyhow::Result<Option<i64>> {
        Ok(db
            .query_row("SELECT id FROM users WHERE name = ?1", params![name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn repo_id(db: &Connection, owner: &str, name: &str) -> anyhow::Result<Option<i64>> {
        Ok(db
            .query_row(
                "SELECT id FROM repos WHERE owner = ?1 AND name = ?2",
                params![owner, name],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[async_trait::async_trait]
impl MetaStore for SqliteMeta {
    async fn ping(&self) -> anyhow::Result<()> {
        self.db
            .run(|db| {
                db.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
                Ok(())
            })
            .await
    }

    async fn namespace(&self) -> anyhow::Result<String> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || crate::meta::hub_id(&dir)).await?
    }

    async fn add_user(&self, name: &str) -> anyhow::Result<String> {
        let name = name.to_string();
        self.db
            .run(move |db| {
                db.execute(
                    "INSERT INTO users (name, created) VALUES (?1, ?2)",
                    params![name, unix_now()],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        anyhow::anyhow!("user {name} already exists")
                    }
                    other => other.into(),
                })?;
                let id = db.last_insert_rowid();
                let token = new_token()?;
                db.execute(
                    "INSERT INTO tokens (hash, user_id, created) VALUES (?1, ?2, ?3)",
                    params![&token_hash(&token)[..], id, unix_now()],
                )?;
                Ok(token)
            })
            .await
    }

    async fn user_for_token(&self, token: &str) -> anyhow::Result<Option<User>> {
        if token.is_empty() {
            return Ok(None);
        }
        let hash = token_hash(token);
        self.db
            .run(move |db| {
                Ok(db
                    .query_row(
                        "SELECT users.id, users.name FROM tokens JOIN users ON users.id = tokens.user_id WHERE tokens.hash = ?1 AND users.disabled = 0 AND (tokens.expires = 0 OR tokens.expires > ?2)",
                        params![&hash[..], unix_now()],
                        |r| Ok(User { id: r.get(0)?, name: r.get(1)? }),
                    )
                    .optional()?)
            })
            .await
    }

    async fn create_repo(&self, owner: &str, name: &str) -> anyhow::Result<()> {
        let (owner, name) = (owner.to_string(), name.to_string());
        self.db
            .run(move |db| {
                db.execute(
                    "INSERT INTO repos (owner, name, created) VALUES (?1, ?2, ?3)",
                    params![owner, name, unix_now()],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        anyhow::anyhow!("repository {owner}/{name} already exists")
                    }
                    other => other.into(),
                })?;
                let repo = db.last_insert_rowid();
                if let Some(user) = Self::user_id(db, &owner)? {
                    db.execute(
                        "INSERT OR REPLACE INTO members (repo_id, user_id, role) VALUES (?1, ?2, ?3)",
                        params![repo, user, Role::Admin as i64],
                    )?;
                }
                Ok(())
            })
            .await
    }

    async fn set_member(
        &self,
        owner: &str,
        name: &str,
        user: &str,
        role: Role,
    ) -> anyhow::Result<()> {
        let (owner, name, user) = (owner.to_string(), name.to_string(), user.to_string());
        self.db
            .run(move |db| {
                let repo = Self::repo_id(db, &owner, &name)?
                    .ok_or_else(|| anyhow::anyhow!("repository {owner}/{name} does not exist"))?;
                let user_id = Self::user_id(db, &user)?
                    .ok_or_else(|| anyhow::anyhow!("user {user} does not exist"))?;
                db.execute(
                    "INSERT OR REPLACE INTO members (repo_id, user_id, role) VALUES (?1, ?2, ?3)",
                    params![repo, user_id, role as i64],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_repo(&self, owner: &str, name: &str) -> anyhow::Result<Option<i64>> {
        let (owner, name) = (owner.to_string(), name.to_string());
        self.db
            .run(move |db| Self::repo_id(db, &owner, &name))
            .await
    }

    async fn access(&self, repo: &str, user: &User) -> anyhow::Result<Option<(i64, Role)>> {
        let Some((owner, name)) = repo.split_once('/') else {
            return Ok(None);
        };
        let (owner, name, user) = (owner.to_string(), name.to_string(), user.id);
        self.db
            .run(move |db| {
                let row: Option<(i64, i64)> = db
                    .query_row(
                        "SELECT repos.id, members.role FROM repos JOIN members ON members.repo_id = repos.id
                         WHERE repos.owner = ?1 AND repos.name = ?2 AND members.user_id = ?3",
                        params![owner, name, user],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                Ok(row.map(|(id, role)| (id, Role::from_i64(role))))
            })
            .await
    }

    async fn repos_for(&self, user: &User) -> anyhow::Result<Vec<(String, Role)>> {
        let user = user.id;
        self.db
            .run(move |db| {
                let mut stmt = db.prepare(
                    "SELECT repos.owner || '/' || repos.name, members.role FROM repos
                     JOIN members ON members.repo_id = repos.id
                     WHERE members.user_id = ?1 ORDER BY repos.owner, repos.name",
                )?;
                let rows = stmt.query_map(params![user], |r| {
                    Ok((r.get::<_, String>(0)?, Role::from_i64(r.get(1)?)))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn refs(&self, repo: i64) -> anyhow::Result<BTreeMap<String, String>> {
        self.db
            .run(move |db| {
                let mut stmt =
                    db.prepare("SELECT name, oid FROM refs WHERE repo_id = ?1 ORDER BY name")?;
                let rows = stmt.query_map(params![repo], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn missing(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<Vec<ChunkId>> {
        let ids = ids.to_vec();
        self.db
            .run(move |db| {
                let mut stmt =
                    db.prepare_cached("SELECT 1 FROM repo_objects WHERE repo_id = ?1 AND id = ?2")?;
                let mut out = Vec::new();
                for id in ids {
                    if !stmt.exists(params![repo, &id.0[..]])? {
                        out.push(id);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn touch(&self, repo: i64, ids: &[ChunkId]) -> anyhow::Result<()> {
        let ids = ids.to_vec();
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut seen = tx.prepare_cached(
                        "UPDATE repo_objects SET seen = ?3 WHERE repo_id = ?1 AND id = ?2 AND seen < ?3",
                    )?;
                    let now = unix_now();
                    for id in &ids {
                        seen.execute(params![repo, &id.0[..], now])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
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
        let ids = ids.to_vec();
        self.db
            .run(move |db| {
                let mut stmt = db.prepare_cached(
                    "SELECT pack, offset, stored_len, len FROM objects WHERE id = ?1",
                )?;
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    out.push(
                        stmt.query_row(params![&id.0[..]], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                Location {
                                    offset: r.get::<_, i64>(1)? as u64,
                                    stored_len: r.get::<_, i64>(2)? as u32,
                                    len: r.get::<_, i64>(3)? as u32,
                                },
                            ))
                        })
                        .optional()?,
                    );
                }
                Ok(out)
            })
            .await
    }

    async fn record_objects(
        &self,
        repo: i64,
        pack: Option<&str>,
        stored: &[(ChunkId, Location)],
        ids: &[ChunkId],
    ) -> anyhow::Result<()> {
        let pack = pack.unwrap_or_default().to_string();
        let (stored, ids) = (stored.to_vec(), ids.to_vec());
        self.db
            .run(move |db| {
                // IMMEDIATE: take the write lock up front (waiting on the busy timeout)
                // rather than upgrade a read, which SQLite refuses at once if another
                // connection wrote since.
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut put = tx.prepare_cached(
                        "INSERT OR IGNORE INTO objects (id, pack, offset, stored_len, len, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    let now = unix_now();
                    for (id, loc) in &stored {
                        put.execute(params![
                            &id.0[..],
                            pack,
                            loc.offset as i64,
                            loc.stored_len as i64,
                            loc.len as i64,
                            now
                        ])?;
                    }
                    // Only objects the index still holds are linked: one a collection
                    // deleted since `missing` said the repository had it stays missing,
                    // and the ref update that needs it says so.
                    let mut link = tx.prepare_cached(
                        "INSERT INTO repo_objects (repo_id, id, seen) SELECT ?1, id, ?3 FROM objects WHERE id = ?2
                         ON CONFLICT (repo_id, id) DO UPDATE SET seen = excluded.seen",
                    )?;
                    let now = unix_now();
                    for id in &ids {
                        link.execute(params![repo, &id.0[..], now])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn add_git_pack(&self, repo: i64, id: &str, key: &str, size: u64) -> anyhow::Result<()> {
        let (id, key) = (id.to_string(), key.to_string());
        self.db
            .run(move |db| {
                db.execute(
                    "INSERT OR IGNORE INTO git_packs (repo_id, id, key, size, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![repo, id, key, size as i64, unix_now()],
                )?;
                Ok(())
            })
            .await
    }

    async fn git_packs(&self, repo: i64) -> anyhow::Result<Vec<String>> {
        self.db
            .run(move |db| {
                let mut stmt = db.prepare(
                    "SELECT id FROM git_packs WHERE repo_id = ?1 AND committed = 1 ORDER BY seq",
                )?;
                let rows = stmt.query_map(params![repo], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn git_pack(&self, repo: i64, id: &str) -> anyhow::Result<Option<(String, u64, bool)>> {
        let id = id.to_string();
        self.db
            .run(move |db| {
                Ok(db
                    .query_row(
                        "SELECT key, size, committed FROM git_packs WHERE repo_id = ?1 AND id = ?2",
                        params![repo, id],
                        |r| {
                            Ok((
                                r.get(0)?,
                                r.get::<_, i64>(1)? as u64,
                                r.get::<_, i64>(2)? == 1,
                            ))
                        },
                    )
                    .optional()?)
            })
            .await
    }

    async fn update_refs(
        &self,
        repo: i64,
        updates: &[RefUpdate],
        packs: &[String],
        required: &[ChunkId],
        atomic: bool,
    ) -> anyhow::Result<Vec<RefResult>> {
        let (updates, packs, required) = (updates.to_vec(), packs.to_vec(), required.to_vec());
        self.db
            .run(move |db| {
                // IMMEDIATE: see record_objects.
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    // Seen now, so no collection running drops them; gone, the update fails.
                    let mut seen = tx.prepare_cached(
                        "UPDATE repo_objects SET seen = ?3 WHERE repo_id = ?1 AND id = ?2",
                    )?;
                    let now = unix_now();
                    for id in &required {
                        if seen.execute(params![repo, &id.0[..], now])? == 0 {
                            return Ok(collected_refusal(&updates, id));
                        }
                    }
                }
                let mut current = Vec::with_capacity(updates.len());
                for u in &updates {
                    let oid: Option<String> = tx
                        .query_row(
                            "SELECT oid FROM refs WHERE repo_id = ?1 AND name = ?2",
                            params![repo, u.name],
                            |r| r.get(0),
                        )
                        .optional()?;
                    current.push(oid);
                }
                let results = decide_ref_updates(&updates, &current, atomic);
                if !results.iter().any(|r| r.ok) {
                    return Ok(results);
                }
                for (u, r) in updates.iter().zip(&results) {
                    if !r.ok {
                        continue;
                    }
                    if u.new == ZERO_OID {
                        tx.execute(
                            "DELETE FROM refs WHERE repo_id = ?1 AND name = ?2",
                            params![repo, u.name],
                        )?;
                    } else {
                        tx.execute(
                            "INSERT OR REPLACE INTO refs (repo_id, name, oid) VALUES (?1, ?2, ?3)",
                            params![repo, u.name, u.new],
                        )?;
                    }
                }
                for p in &packs {
                    let named = tx.execute(
                        "UPDATE git_packs SET committed = 1 WHERE repo_id = ?1 AND id = ?2",
                        params![repo, p],
                    )?;
                    if named == 0 {
                        // Rolled back with the transaction.
                        return Ok(replaced_pack_refusal(&updates, p));
                    }
                }
                tx.execute(
                    "UPDATE repos SET refs_changed = ?2 WHERE id = ?1",
                    params![repo, unix_now()],
                )?;
                tx.commit()?;
                Ok(results)
            })
            .await
    }

    async fn record_commits(&self, repo: i64, commits: &[IndexedCommit]) -> anyhow::Result<()> {
        let commits = commits.to_vec();
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut commit = tx.prepare_cached(
                        "INSERT OR IGNORE INTO commits (repo_id, oid, parents, author, message, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    let mut pointer = tx.prepare_cached(
                        "INSERT OR IGNORE INTO commit_pointers (repo_id, commit_oid, path, recipe, previous, shared) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    let mut asset = tx.prepare_cached(
                        "INSERT OR IGNORE INTO repo_assets (repo_id, recipe, file_oid, size, media) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    let mut project = tx.prepare_cached(
                        "INSERT OR IGNORE INTO commit_deps (repo_id, commit_oid, project, deps) VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for c in commits.iter().rev() {
                        commit.execute(params![
                            repo,
                            c.oid,
                            c.parents.join(" "),
                            c.author,
                            c.message,
                            c.time
                        ])?;
                        for (path, p) in &c.pointers {
                            let previous = c.previous.get(path).map(|r| r.0.to_vec());
                            let shared = c.shared.get(path).map(|&n| n as i64);
                            pointer.execute(params![
                                repo,
                                c.oid,
                                path,
                                &p.recipe.0[..],
                                previous,
                                shared
                            ])?;
                            asset.execute(params![
                                repo,
                                &p.recipe.0[..],
                                &p.oid.0[..],
                                p.size as i64,
                                p.media
                            ])?;
                        }
                        for d in &c.projects {
                            project.execute(params![
                                repo,
                                c.oid,
                                d.project,
                                serde_json::to_string(d)?
                            ])?;
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn commit_log(
        &self,
        repo: i64,
        skip: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<IndexedCommit>> {
        self.db
            .run(move |db| commit_log(db, repo, skip, limit))
            .await
    }

    async fn asset_version(
        &self,
        repo: i64,
        recipe: &ChunkId,
    ) -> anyhow::Result<Option<crate::meta::AssetVersion>> {
        let recipe = *recipe;
        self.db
            .run(move |db| {
                let row = db
                    .query_row(
                        "SELECT p.commit_oid, p.path, p.previous, p.shared, a.file_oid, a.size, a.media
                         FROM commit_pointers p
                         JOIN commits c ON c.repo_id = p.repo_id AND c.oid = p.commit_oid
                         JOIN repo_assets a ON a.repo_id = p.repo_id AND a.recipe = p.recipe
                         WHERE p.repo_id = ?1 AND p.recipe = ?2 ORDER BY c.rowid DESC LIMIT 1",
                        params![repo, &recipe.0[..]],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, Option<Vec<u8>>>(2)?,
                                r.get::<_, Option<i64>>(3)?,
                                r.get::<_, Vec<u8>>(4)?,
                                r.get::<_, i64>(5)?,
                                r.get::<_, String>(6)?,
                            ))
                        },
                    )
                    .optional()?;
                Ok(row.and_then(|(commit, path, previous, shared, oid, size, media)| {
                    Some(crate::meta::AssetVersion {
                        commit,
                        path,
                        pointer: crate::meta::stored_pointer(&recipe.0, &oid, size, media)?,
                        previous: previous.and_then(|p| crate::meta::stored_id(&p)),
                        shared: shared.map(|n| n as u64),
                    })
                }))
            })
            .await
    }

    async fn record_shared(
        &self,
        repo: i64,
        commit: &str,
        path: &str,
        shared: u64,
    ) -> anyhow::Result<()> {
        let (commit, path) = (commit.to_string(), path.to_string());
        self.db
            .run(move |db| {
                db.execute(
                    "UPDATE commit_pointers SET shared = ?4 WHERE repo_id = ?1 AND commit_oid = ?2 AND path = ?3",
                    params![repo, commit, path, shared as i64],
                )?;
                Ok(())
            })
            .await
    }

    async fn repo_stats(&self, repo: i64) -> anyhow::Result<RepoStats> {
        self.db
            .run(move |db| {
                let sums = |sql: &str| -> rusqlite::Result<(u64, u64)> {
                    db.query_row(sql, params![repo], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                    })
                };
                let (versions, logical_bytes) = sums(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM repo_assets WHERE repo_id = ?1",
                )?;
                let (objects, stored_bytes) = sums(
                    "SELECT COUNT(*), COALESCE(SUM(o.stored_len), 0) FROM repo_objects r
                     JOIN objects o ON o.id = r.id WHERE r.repo_id = ?1",
                )?;
                Ok(RepoStats {
                    versions,
                    logical_bytes,
                    objects,
                    stored_bytes,
                })
            })
            .await
    }

    async fn change_account(
        &self,
        change: &AccountChange,
        actor: &str,
    ) -> anyhow::Result<Option<String>> {
        let (change, actor) = (change.clone(), actor.to_string());
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let user_id = |name: &str| {
                    Self::user_id(&tx, name)?
                        .ok_or_else(|| anyhow::anyhow!("user {name} does not exist"))
                };
                let issue_until = |user: i64, expires: i64| -> anyhow::Result<String> {
                    let token = new_token()?;
                    tx.execute(
                        "INSERT INTO tokens (hash, user_id, created, expires) VALUES (?1, ?2, ?3, ?4)",
                        params![&token_hash(&token)[..], user, unix_now(), expires],
                    )?;
                    // Sessions that ended are of no use to anyone: dropped as new ones start.
                    tx.execute(
                        "DELETE FROM tokens WHERE user_id = ?1 AND expires > 0 AND expires <= ?2",
                        params![user, unix_now()],
                    )?;
                    Ok(token)
                };
                let issue = |user: i64| issue_until(user, 0);
                let revoke_all = |user: i64| {
                    tx.execute("DELETE FROM tokens WHERE user_id = ?1", params![user])
                };
                let set_disabled = |user: i64, disabled: bool| {
                    tx.execute(
                        "UPDATE users SET disabled = ?2 WHERE id = ?1",
                        params![user, disabled as i64],
                    )
                };
                let (subject, detail, token) = match &change {
                    AccountChange::IssueToken { user } => {
                        (user.clone(), String::new(), Some(issue(user_id(user)?)?))
                    }
                    AccountChange::IssueSession { user, expires } => (
                        user.clone(),
                        format!("until {}", crate::locks::rfc3339(*expires)),
                        Some(issue_until(user_id(user)?, *expires)?),
                    ),
                    AccountChange::RotateTokens { user } => {
                        let id = user_id(user)?;
                        let revoked = revoke_all(id)?;
                        (user.clone(), format!("{revoked} revoked"), Some(issue(id)?))
                    }
                    AccountChange::RevokeToken { token } => {
                        let owner: Option<String> = tx
                            .query_row(
                                "SELECT users.name FROM tokens JOIN users ON users.id = tokens.user_id WHERE tokens.hash = ?1",
                                params![&token_hash(token)[..]],
                                |r| r.get(0),
                            )
                            .optional()?;
                        let owner = owner
                            .ok_or_else(|| anyhow::anyhow!("the hub does not know this token"))?;
                        tx.execute(
                            "DELETE FROM tokens WHERE hash = ?1",
                            params![&token_hash(token)[..]],
                        )?;
                        (owner, String::new(), None)
                    }
                    AccountChange::RevokeTokens { user } => {
                        let revoked = revoke_all(user_id(user)?)?;
                        (user.clone(), format!("{revoked} revoked"), None)
                    }
                    AccountChange::Disable { user } => {
                        set_disabled(user_id(user)?, true)?;
                        (user.clone(), String::new(), None)
                    }
                    AccountChange::Enable { user } => {
                        set_disabled(user_id(user)?, false)?;
                        (user.clone(), String::new(), None)
                    }
                    AccountChange::RemoveUser { user } => {
                        let id = user_id(user)?;
                        let revoked = revoke_all(id)?;
                        let memberships =
                            tx.execute("DELETE FROM members WHERE user_id = ?1", params![id])?;
                        set_disabled(id, true)?;
                        let detail = format!("{revoked} tokens revoked, {memberships} memberships removed");
                        (user.clone(), detail, None)
                    }
                    AccountChange::RemoveMember { owner, name, user } => {
                        let repo = Self::repo_id(&tx, owner, name)?.ok_or_else(|| {
                            anyhow::anyhow!("repository {owner}/{name} does not exist")
                        })?;
                        let removed = tx.execute(
                            "DELETE FROM members WHERE repo_id = ?1 AND user_id = ?2",
                            params![repo, user_id(user)?],
                        )?;
                        anyhow::ensure!(removed == 1, "user {user} is not a member of {owner}/{name}");
                        (user.clone(), format!("{owner}/{name}"), None)
                    }
                };
                record_audit(
                    &tx,
                    &AuditEntry::now(&actor, change.action(), &subject, &detail),
                )?;
                tx.commit()?;
                Ok(token)
            })
            .await
    }

    async fn audit(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        let entry = entry.clone();
        self.db.run(move |db| record_audit(db, &entry)).await
    }

    async fn audit_log(&self, limit: u32) -> anyhow::Result<Vec<AuditEntry>> {
        self.db
            .run(move |db| {
                let mut stmt = db.prepare(
                    "SELECT at, actor, action, subject, detail FROM admin_events ORDER BY seq DESC LIMIT ?1",
                )?;
                let rows = stmt.query_map(params![limit], |r| {
                    Ok(AuditEntry {
                        at: r.get(0)?,
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        subject: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn encrypted(&self, repo: i64) -> anyhow::Result<bool> {
        self.db
            .run(move |db| {
                Ok(db.query_row(
                    "SELECT key_group IS NOT NULL FROM repos WHERE id = ?1",
                    params![repo],
                    |r| r.get(0),
                )?)
            })
            .await
    }

    async fn key_state(&self, repo: i64) -> anyhow::Result<KeyState> {
        self.db
            .run(move |db| {
                let tx = db.transaction()?;
                let state = key_state(&tx, repo)?;
                tx.commit()?;
                Ok(state)
            })
            .await
    }

    async fn set_public_key(&self, user: &User, key: &str) -> anyhow::Result<()> {
        anyhow::ensure!(!key.trim().is_empty(), "the public key is empty");
        let (user, key) = (user.id, key.to_string());
        self.db
            .run(move |db| {
                db.execute(
                    "INSERT INTO user_keys (user_id, public_key, created) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id) DO UPDATE SET public_key = excluded.public_key, created = excluded.created",
                    params![user, key, unix_now()],
                )?;
                Ok(())
            })
            .await
    }

    async fn set_key_group(&self, repo: i64, group: &str) -> anyhow::Result<()> {
        anyhow::ensure!(!group.is_empty(), "the key group name is empty");
        let group = group.to_string();
        self.db
            .run(move |db| {
                // IMMEDIATE: see record_objects.
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                set_key_group(&tx, repo, &group)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn change_keys(&self, repo: i64, change: &KeyChange) -> anyhow::Result<()> {
        let change = change.clone();
        self.db
            .run(move |db| {
                // IMMEDIATE: the generation read below is the one the change is checked
                // against, and no other writer can move it before the commit.
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                change_keys(&tx, repo, &change)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

/// See [`MetaStore::commit_log`].
fn commit_log(
    db: &Connection,
    repo: i64,
    skip: u32,
    limit: u32,
) -> anyhow::Result<Vec<IndexedCommit>> {
    let mut stmt = db.prepare(
        "SELECT oid, parents, author, message, time FROM commits WHERE repo_id = ?1 ORDER BY rowid DESC LIMIT ?2 OFFSET ?3",
    )?;
    let mut commits = stmt
        .query_map(params![repo, limit, skip], |r| {
            Ok(IndexedCommit {
                oid: r.get(0)?,
                parents: r
                    .get::<_, String>(1)?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                author: r.get(2)?,
                message: r.get(3)?,
                time: r.get(4)?,
                pointers: Vec::new(),
                projects: Vec::new(),
                previous: Default::default(),
                shared: Default::default(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut pointers = db.prepare(
        "SELECT p.path, a.recipe, a.file_oid, a.size, a.media, p.previous, p.shared FROM commit_pointers p
         JOIN repo_assets a ON a.repo_id = p.repo_id AND a.recipe = p.recipe
         WHERE p.repo_id = ?1 AND p.commit_oid = ?2 ORDER BY p.path",
    )?;
    let mut projects = db.prepare(
        "SELECT deps FROM commit_deps WHERE repo_id = ?1 AND commit_oid = ?2 ORDER BY project",
    )?;
    for c in &mut commits {
        let rows = pointers
            .query_map(params![repo, c.oid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<Vec<u8>>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (path, recipe, oid, size, media, previous, shared) in rows {
            let Some(pointer) = crate::meta::stored_pointer(&recipe, &oid, size, media) else {
                continue;
            };
            if let Some(previous) = previous.and_then(|p| crate::meta::stored_id(&p)) {
                c.previous.insert(path.clone(), previous);
            }
            if let Some(shared) = shared {
                c.shared.insert(path.clone(), shared as u64);
            }
            c.pointers.push((path, pointer));
        }
        c.projects = projects
            .query_map(params![repo, c.oid], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
    }
    Ok(commits)
}

/// Appends `entry` to the operators' audit log.
fn record_audit(db: &Connection, entry: &AuditEntry) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO admin_events (at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            entry.at,
            entry.actor,
            entry.action,
            entry.subject,
            entry.detail
        ],
    )?;
    Ok(())
}
