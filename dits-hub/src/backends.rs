//! Opening the backends the settings name: metadata (SQLite in the data directory, or
//! PostgreSQL), locks (with the metadata, or Redis written through to it) and objects
//! (the data directory, or S3-compatible storage).

use std::path::Path;

use crate::blobs::{local::LocalBlobs, s3::S3Blobs, BlobStore, Staging};
use crate::locks::sqlite::SqliteLocks;
use crate::locks::{DurableLocks, LockStore};
use crate::meta::MetaStore;

/// The metadata store and the lock table beside it.
pub struct Metadata {
    pub meta: Box<dyn MetaStore>,
    pub locks: Box<dyn DurableLocks>,
    /// For messages: "sqlite PATH" or the PostgreSQL URL without its password.
    pub describe: String,
}

pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `url`: `postgres://…` (or `postgresql://…`); none: SQLite in `data`.
pub async fn open_metadata(data: &Path, url: Option<&str>) -> anyhow::Result<Metadata> {
    match url {
        None | Some("sqlite") => {
            crate::private::create_dir(data)?;
            let path = data.join("hub.sqlite");
            Ok(Metadata {
                meta: Box::new(crate::meta::sqlite::SqliteMeta::open(&path)?),
                locks: Box::new(SqliteLocks::open(&path)?),
                describe: format!("sqlite {}", path.display()),
            })
        }
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            let pool = crate::pg::connect(u).await?;
            Ok(Metadata {
                meta: Box::new(crate::meta::pg::PgMeta::new(pool.clone())),
                locks: Box::new(crate::locks::pg::PgLocks::new(pool)),
                describe: redact(u),
            })
        }
        Some(u) => anyhow::bail!(
            "--metadata {u:?}: expected postgres://USER@HOST:PORT/DATABASE (or leave it unset for SQLite in the data directory)"
        ),
    }
}

/// The object store: `s3://BUCKET[/PREFIX]`, or (none) the `objects` directory under
/// `data`. Either stages writes under `data/objects/tmp`.
pub fn open_blobs(data: &Path, objects: Option<&str>) -> anyhow::Result<Box<dyn BlobStore>> {
    let root = data.join("objects");
    let staging = Staging::open(&root.join("tmp"))?;
    Ok(match objects {
        Some(url) => Box::new(S3Blobs::open(url, staging)?),
        None => Box::new(LocalBlobs::new(&root, staging)),
    })
}

/// The lock store: Redis at `url` written through to the metadata's lock table, or that
/// table itself.
pub async fn open_locks(
    metadata: Metadata,
    url: Option<&str>,
) -> anyhow::Result<(Box<dyn MetaStore>, Box<dyn LockStore>)> {
    let Metadata { meta, locks, .. } = metadata;
    match url {
        None => Ok((meta, locks)),
        Some(url) => {
            let ns = meta.namespace().await?;
            let redis = crate::locks::redis::RedisLocks::connect(url, locks, &ns).await?;
            Ok((meta, Box::new(redis)))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            super::redact("postgres://hub:s3cret@db:5432/dits"),
            "postgres://hub:***@db:5432/dits"
        );
        assert_eq!(
            super::redact("postgres://root@127.0.0.1/test"),
            "postgres://root@127.0.0.1/test"
        );
    }
}
