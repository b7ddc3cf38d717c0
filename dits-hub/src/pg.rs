//! The PostgreSQL connection pool the scale-out hub shares between metadata and locks,
//! the schema's versioned migrations, and the mapping of PostgreSQL failures to
//! "unavailable, try again" versus real errors.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;

use crate::error::{with_sources, Unavailable};

pub const WHAT: &str = "metadata store (PostgreSQL)";

/// Each migration runs once, in order, inside one transaction holding an advisory lock,
/// so hubs starting together apply it exactly once. Never edit one that has shipped:
/// add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
CREATE TABLE users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created BIGINT NOT NULL);
CREATE TABLE tokens (hash BYTEA PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), created BIGINT NOT NULL);
CREATE TABLE repos (id BIGSERIAL PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, created BIGINT NOT NULL, UNIQUE (owner, name));
CREATE TABLE members (repo_id BIGINT NOT NULL REFERENCES repos(id), user_id BIGINT NOT NULL REFERENCES users(id), role SMALLINT NOT NULL, PRIMARY KEY (repo_id, user_id));
CREATE TABLE refs (repo_id BIGINT NOT NULL REFERENCES repos(id), name TEXT NOT NULL, oid TEXT NOT NULL, PRIMARY KEY (repo_id, name));
-- Every stored object (chunk or recipe) once, wherever it came from: its pack and place in
-- it, its size, and what a future garbage collector and tiering need.
CREATE TABLE objects (
    id BYTEA PRIMARY KEY,
    pack TEXT NOT NULL,
    pack_offset BIGINT NOT NULL,
    stored_len BIGINT NOT NULL,
    len BIGINT NOT NULL,
    storage_class TEXT NOT NULL DEFAULT 'standard',
    created BIGINT NOT NULL,
    last_access BIGINT NOT NULL
);
CREATE INDEX objects_by_pack ON objects (pack);
-- Reachability for GC: which repositories hold which objects.
CREATE TABLE repo_objects (repo_id BIGINT NOT NULL REFERENCES repos(id), id BYTEA NOT NULL, PRIMARY KEY (repo_id, id));
CREATE INDEX repo_objects_by_id ON repo_objects (id);
CREATE TABLE git_packs (seq BIGSERIAL PRIMARY KEY, repo_id BIGINT NOT NULL REFERENCES repos(id), id TEXT NOT NULL, key TEXT NOT NULL, size BIGINT NOT NULL, committed BOOLEAN NOT NULL DEFAULT FALSE, UNIQUE (repo_id, id));
CREATE TABLE locks (id BIGSERIAL PRIMARY KEY, repo_id BIGINT NOT NULL REFERENCES repos(id), path TEXT NOT NULL, owner_id BIGINT NOT NULL REFERENCES users(id), branch TEXT, locked_at BIGINT NOT NULL, UNIQUE (repo_id, path));
CREATE TABLE lock_events (seq BIGSERIAL PRIMARY KEY, repo_id BIGINT NOT NULL, lock_id BIGINT NOT NULL, path TEXT NOT NULL, owner_id BIGINT NOT NULL, actor_id BIGINT NOT NULL, action TEXT NOT NULL, at BIGINT NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
",
    ),
    (
        2,
        "
-- The commit index: pushed commits, the Dits pointers each adds or changes, and the
-- assets (a recipe: whole-file hash, size, media summary) those name.
CREATE TABLE commits (seq BIGSERIAL UNIQUE, repo_id BIGINT NOT NULL REFERENCES repos(id), oid TEXT NOT NULL, parents TEXT[] NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL, time BIGINT NOT NULL, PRIMARY KEY (repo_id, oid));
CREATE TABLE assets (recipe BYTEA PRIMARY KEY, file_oid BYTEA NOT NULL, size BIGINT NOT NULL, media TEXT NOT NULL);
CREATE TABLE commit_pointers (repo_id BIGINT NOT NULL, commit_oid TEXT NOT NULL, path TEXT NOT NULL, recipe BYTEA NOT NULL REFERENCES assets(recipe), PRIMARY KEY (repo_id, commit_oid, path), FOREIGN KEY (repo_id, commit_oid) REFERENCES commits(repo_id, oid));
",
    ),
    (
        3,
        "
-- Assets per repository: what one repository's pointers say of a recipe must not set
-- what another's listing shows (the global table was first-writer-wins).
CREATE TABLE repo_assets (repo_id BIGINT NOT NULL REFERENCES repos(id), recipe BYTEA NOT NULL, file_oid BYTEA NOT NULL, size BIGINT NOT NULL, media TEXT NOT NULL, PRIMARY KEY (repo_id, recipe));
INSERT INTO repo_assets SELECT DISTINCT p.repo_id, a.recipe, a.file_oid, a.size, a.media FROM commit_pointers p JOIN assets a ON a.recipe = p.recipe;
ALTER TABLE commit_pointers DROP CONSTRAINT commit_pointers_recipe_fkey;
DROP TABLE assets;
",
    ),
    (
        4,
        "
-- Accounts can be disabled, and operators' changes are audited.
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE admin_events (seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
",
    ),
    (
        5,
        "
-- Encryption: repositories of one key group share its secrets, each generation wrapped
-- for each member's registered public key (the hub cannot open one).
CREATE TABLE key_groups (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, generation INTEGER NOT NULL DEFAULT 0);
ALTER TABLE repos ADD COLUMN key_group BIGINT REFERENCES key_groups(id);
CREATE TABLE user_keys (user_id BIGINT PRIMARY KEY REFERENCES users(id), public_key TEXT NOT NULL, created BIGINT NOT NULL);
CREATE TABLE wrapped_keys (group_id BIGINT NOT NULL REFERENCES key_groups(id), generation INTEGER NOT NULL, user_id BIGINT NOT NULL REFERENCES users(id), key_id TEXT NOT NULL, wrapped BYTEA NOT NULL, PRIMARY KEY (group_id, generation, user_id));
",
    ),
    (
        6,
        "
-- Garbage collection (meta::gc): when each link was last seen, when each Git pack was
-- uploaded and each repository's refs last moved, the repositories a collection drops unreachable links of, what refs reach in
-- each, and blobs no row names any more (deleted after the grace period).
ALTER TABLE repo_objects ADD COLUMN seen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE git_packs ADD COLUMN created BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repos ADD COLUMN refs_changed BIGINT NOT NULL DEFAULT 0;
CREATE TABLE gc_repos (repo_id BIGINT PRIMARY KEY);
CREATE TABLE gc_live (repo_id BIGINT NOT NULL, id BYTEA NOT NULL, PRIMARY KEY (repo_id, id));
CREATE TABLE dead_blobs (key TEXT PRIMARY KEY, since BIGINT NOT NULL);
-- The cold tier (meta::tier): each repository's policy, and packs moved out of the
-- standard class.
CREATE TABLE repo_policies (repo_id BIGINT PRIMARY KEY REFERENCES repos(id), cold_after BIGINT NOT NULL, class TEXT NOT NULL);
CREATE TABLE pack_classes (key TEXT PRIMARY KEY, class TEXT NOT NULL);
",
    ),
    (
        7,
        "
-- Issues 18 and 19. The dependencies of each project file a commit adds or changes
-- (JSON, mirror::deps::RecordedDeps).
CREATE TABLE commit_deps (repo_id BIGINT NOT NULL, commit_oid TEXT NOT NULL, project TEXT NOT NULL, deps TEXT NOT NULL, PRIMARY KEY (repo_id, commit_oid, project), FOREIGN KEY (repo_id, commit_oid) REFERENCES commits(repo_id, oid));
-- The job queue (meta::jobs): one row per kind and subject; run_after is when a queued
-- job may run, or a running one's lease ends.
CREATE TABLE jobs (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, repo_id BIGINT, state TEXT NOT NULL, attempts INTEGER NOT NULL, worker TEXT, error TEXT, run_after BIGINT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL, UNIQUE (kind, subject));
CREATE INDEX jobs_runnable ON jobs (state, run_after);
-- Objects a scrub found not to match their ids, taken out of the index.
CREATE TABLE corrupt_objects (id BYTEA PRIMARY KEY, pack TEXT NOT NULL, found BIGINT NOT NULL, detail TEXT NOT NULL);
-- Which repositories held them: their pushers are asked to send them again.
CREATE TABLE lost_links (repo_id BIGINT NOT NULL, id BYTEA NOT NULL, PRIMARY KEY (repo_id, id));
",
    ),
    (
        8,
        "
-- Issue 19. What transcodes made of an asset (meta::derived), by recipe.
CREATE TABLE derived (recipe BYTEA NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, size BIGINT NOT NULL, hash TEXT NOT NULL, created BIGINT NOT NULL, PRIMARY KEY (recipe, kind));
",
    ),
    (
        9,
        "
-- Issue 20. Browser sessions are tokens that expire (0: never); each pointer keeps the
-- recipe it replaced in the first parent and, once worked out, how many of its bytes that
-- previous version already held; assets are found by recipe.
ALTER TABLE tokens ADD COLUMN expires BIGINT NOT NULL DEFAULT 0;
ALTER TABLE commit_pointers ADD COLUMN previous BYTEA;
ALTER TABLE commit_pointers ADD COLUMN shared BIGINT;
CREATE INDEX commit_pointers_by_recipe ON commit_pointers (repo_id, recipe);
",
    ),
];

/// Advisory lock one collector holds for its whole run (session level).
pub const COLLECTOR_LOCK: i64 = 7716400511;
/// Advisory lock a sweep holds exclusively, and linking objects and moving refs hold
/// shared, for their transactions (see `meta::gc`).
pub const SWEEP_LOCK: i64 = 7716400512;

/// A pool on `url` (postgres://USER@HOST:PORT/DB?…) with the schema migrated.
pub async fn connect(url: &str) -> anyhow::Result<Pool> {
    let settings =
        |e: anyhow::Error| anyhow::anyhow!("--metadata {}: {e:#}", crate::backends::redact(url));
    let (pg_url, tls) = crate::pg_tls::split_url(url).map_err(settings)?;
    let mut config = tokio_postgres::Config::from_str(&pg_url)
        .map_err(|e| anyhow::anyhow!("--metadata {}: {e}", crate::backends::redact(url)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name("dits-hub");
    let recycling = || ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls.mode {
        crate::pg_tls::SslMode::Disable => {
            Manager::from_config(config, tokio_postgres::NoTls, recycling())
        }
        _ => Manager::from_config(config, tls.connector().map_err(settings)?, recycling()),
    };
    let pool = Pool::builder(manager)
        .max_size(16)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(5)))
        .wait_timeout(Some(Duration::from_secs(10)))
        .build()?;
    let mut client = pool.get().await.map_err(|e| {
        anyhow::anyhow!(
            "--metadata {}: cannot connect: {}",
            crate::backends::redact(url),
            pool_error(&e)
        )
    })?;
    migrate(&mut client).await?;
    Ok(pool)
}

async fn migrate(client: &mut deadpool_postgres::Object) -> anyhow::Result<()> {
    let tx = client.transaction().await.pg()?;
    // Any fixed number: every hub takes the same lock.
    tx.execute("SELECT pg_advisory_xact_lock(7716400510)", &[])
        .await
        .pg()?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS dits_migrations (version INT PRIMARY KEY, applied BIGINT NOT NULL)",
    )
    .await
    .pg()?;
    let done: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM dits_migrations", &[])
        .await
        .pg()?
        .get(0);
    let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    anyhow::ensure!(
        done <= newest,
        "the metadata database has schema version {done}; this dits-hub knows up to {newest}: upgrade dits-hub"
    );
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > done) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| anyhow::anyhow!("schema migration {version}: {e}"))?;
        tx.execute(
            "INSERT INTO dits_migrations (version, applied) VALUES ($1, $2)",
            &[version, &crate::meta::unix_now()],
        )
        .await
        .pg()?;
        tracing::info!(version, "metadata schema migrated");
    }
    tx.commit().await.pg()?;
    Ok(())
}

/// PostgreSQL results as hub results: lost connections and a server shutting down or
/// starting are [`Unavailable`]; constraint and other statement errors are not.
pub trait PgResult<T> {
    fn pg(self) -> anyhow::Result<T>;
}

impl<T> PgResult<T> for Result<T, tokio_postgres::Error> {
    fn pg(self) -> anyhow::Result<T> {
        self.map_err(classify)
    }
}

/// See [`PgResult`].
pub fn classify(e: tokio_postgres::Error) -> anyhow::Error {
    let transient = match e.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            // 08: connection exception; 57: operator intervention (shutdown); 53:
            // insufficient resources; 40P01: deadlock (the other transaction went on).
            class == "08"
                || class == "57"
                || class == "53"
                || code == &SqlState::T_R_DEADLOCK_DETECTED
        }
    };
    if transient {
        Unavailable::new(WHAT, with_sources(&e)).into()
    } else {
        anyhow::Error::new(e)
    }
}

impl<T> PgResult<T> for Result<T, deadpool_postgres::PoolError> {
    fn pg(self) -> anyhow::Result<T> {
        self.map_err(|e| Unavailable::new(WHAT, pool_error(&e)).into())
    }
}

/// A pool error with its cause (deadpool doesn't chain the connection's error).
fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(pg) => with_sources(pg),
        other => with_sources(other),
    }
}

/// Whether `e` is PostgreSQL refusing a duplicate.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
