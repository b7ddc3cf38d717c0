//! The SQLite side of encrypted repositories' keys: key groups, members' public keys
//! and wrapped secrets (see [`MetaStore::key_state`] and [`MetaStore::change_keys`]).

use rusqlite::{params, Connection, OptionalExtension};

use crate::meta::sqlite::SqliteMeta;
use crate::meta::{check_grant, check_rotation, KeyChange, KeyState, WrappedKey};

/// A repository's key group, as stored.
struct KeyGroup {
    id: i64,
    name: String,
    generation: u32,
}

/// The key group of `repo`; `None` when the repository is not encrypted.
fn key_group(db: &Connection, repo: i64) -> anyhow::Result<Option<KeyGroup>> {
    type Row = (Option<i64>, Option<String>, Option<i64>);
    let row: Option<Row> = db
        .query_row(
            "SELECT g.id, g.name, g.generation FROM repos r LEFT JOIN key_groups g ON g.id = r.key_group
             WHERE r.id = ?1",
            params![repo],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match row {
        None => anyhow::bail!("repository id {repo} does not exist"),
        Some((Some(id), Some(name), Some(generation))) => Ok(Some(KeyGroup {
            id,
            name,
            generation: stored_generation(generation)?,
        })),
        Some(_) => Ok(None),
    }
}

/// A key generation read from the database.
fn stored_generation(n: i64) -> anyhow::Result<u32> {
    u32::try_from(n).map_err(|_| anyhow::anyhow!("stored key generation {n} is out of range"))
}

/// See [`MetaStore::key_state`].
pub(super) fn key_state(db: &Connection, repo: i64) -> anyhow::Result<KeyState> {
    let Some(group) = key_group(db, repo)? else {
        return Ok(KeyState::default());
    };
    let wraps = db
        .prepare(
            "SELECT w.generation, w.key_id, u.name, w.wrapped FROM wrapped_keys w
             JOIN users u ON u.id = w.user_id WHERE w.group_id = ?1 ORDER BY w.generation, u.name",
        )?
        .query_map(params![group.id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .map(|row| {
            let (generation, key_id, user, wrapped) = row?;
            Ok(WrappedKey {
                generation: stored_generation(generation)?,
                key_id,
                user,
                wrapped,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Members, and holders of wrapped keys who are not (or no longer) members: both
    // matter to whoever wraps the next secret or decides whom to revoke.
    let public_keys = db
        .prepare(
            "SELECT u.name, k.public_key FROM user_keys k JOIN users u ON u.id = k.user_id
             WHERE k.user_id IN (SELECT user_id FROM members WHERE repo_id = ?1
                                 UNION SELECT user_id FROM wrapped_keys WHERE group_id = ?2)
             ORDER BY u.name",
        )?
        .query_map(params![repo, group.id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(KeyState {
        group: Some(group.name),
        generation: group.generation,
        wraps,
        public_keys,
    })
}

/// See [`MetaStore::set_key_group`].
pub(super) fn set_key_group(db: &Connection, repo: i64, group: &str) -> anyhow::Result<()> {
    db.execute(
        "INSERT OR IGNORE INTO key_groups (name) VALUES (?1)",
        params![group],
    )?;
    let id: i64 = db.query_row(
        "SELECT id FROM key_groups WHERE name = ?1",
        params![group],
        |r| r.get(0),
    )?;
    match key_group(db, repo)? {
        None => {
            db.execute(
                "UPDATE repos SET key_group = ?2 WHERE id = ?1",
                params![repo, id],
            )?;
            Ok(())
        }
        Some(current) if current.id == id => Ok(()),
        Some(current) => anyhow::bail!(
            "repository is already encrypted under key group {}",
            current.name
        ),
    }
}

/// See [`MetaStore::change_keys`].
pub(super) fn change_keys(db: &Connection, repo: i64, change: &KeyChange) -> anyhow::Result<()> {
    let group =
        key_group(db, repo)?.ok_or_else(|| anyhow::anyhow!("repository is not encrypted"))?;
    let user_id = |name: &str| {
        SqliteMeta::user_id(db, name)?.ok_or_else(|| anyhow::anyhow!("user {name} does not exist"))
    };
    let wraps = match change {
        KeyChange::Grant { wraps } => {
            for w in wraps {
                let stored: Option<String> = db
                    .query_row(
                        "SELECT key_id FROM wrapped_keys WHERE group_id = ?1 AND generation = ?2 LIMIT 1",
                        params![group.id, w.generation],
                        |r| r.get(0),
                    )
                    .optional()?;
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
                db.execute(
                    "DELETE FROM wrapped_keys WHERE group_id = ?1 AND user_id = ?2",
                    params![group.id, user_id(user)?],
                )?;
            }
            db.execute(
                "UPDATE key_groups SET generation = ?2 WHERE id = ?1",
                params![group.id, generation],
            )?;
            wraps
        }
    };
    let mut put = db.prepare_cached(
        "INSERT INTO wrapped_keys (group_id, generation, user_id, key_id, wrapped) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (group_id, generation, user_id) DO UPDATE SET key_id = excluded.key_id, wrapped = excluded.wrapped",
    )?;
    for w in wraps {
        put.execute(params![
            group.id,
            w.generation,
            user_id(&w.user)?,
            w.key_id,
            w.wrapped
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaStore;

    fn wrap(generation: u32, key_id: &str, user: &str) -> WrappedKey {
        WrappedKey {
            generation,
            key_id: key_id.into(),
            user: user.into(),
            wrapped: format!("{key_id} for {user}").into_bytes(),
        }
    }

    fn rotate(generation: u32, key_id: &str, users: &[&str], revoke: Option<&str>) -> KeyChange {
        KeyChange::Rotate {
            generation,
            wraps: users.iter().map(|u| wrap(generation, key_id, u)).collect(),
            revoke: revoke.map(str::to_string),
        }
    }

    /// A hub with users alice (who owns alice/film, so is its admin) and bob, each with
    /// a registered public key; returns the store and alice/film's id.
    async fn hub(dir: &tempfile::TempDir) -> (SqliteMeta, i64) {
        let meta = SqliteMeta::open(&dir.path().join("hub.sqlite")).unwrap();
        for name in ["alice", "bob"] {
            let token = meta.add_user(name).await.unwrap();
            let user = meta.user_for_token(&token).await.unwrap().unwrap();
            meta.set_public_key(&user, &format!("age1{name}"))
                .await
                .unwrap();
        }
        meta.create_repo("alice", "film").await.unwrap();
        let repo = meta.find_repo("alice", "film").await.unwrap().unwrap();
        (meta, repo)
    }

    #[tokio::test]
    async fn unencrypted_repo_has_no_key_state() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, repo) = hub(&dir).await;
        assert_eq!(meta.key_state(repo).await.unwrap(), KeyState::default());
        let refused = meta
            .change_keys(repo, &rotate(1, "k1", &["alice"], None))
            .await
            .unwrap_err();
        assert!(
            format!("{refused:#}").contains("not encrypted"),
            "{refused:#}"
        );
    }

    #[tokio::test]
    async fn first_rotation_wraps_are_reported_with_holders_public_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, repo) = hub(&dir).await;
        let token = meta.add_user("carol").await.unwrap();
        let carol = meta.user_for_token(&token).await.unwrap().unwrap();
        meta.set_public_key(&carol, "age1carol").await.unwrap();
        meta.set_key_group(repo, "alice/film").await.unwrap();
        meta.set_key_group(repo, "alice/film").await.unwrap();
        let fresh = meta.key_state(repo).await.unwrap();
        assert_eq!(
            (fresh.group.as_deref(), fresh.generation),
            (Some("alice/film"), 0)
        );
        meta.change_keys(repo, &rotate(1, "k1", &["bob", "alice"], None))
            .await
            .unwrap();
        let state = meta.key_state(repo).await.unwrap();
        assert_eq!(state.generation, 1);
        assert_eq!(
            state.wraps,
            vec![wrap(1, "k1", "alice"), wrap(1, "k1", "bob")]
        );
        // bob holds a wrap without being a member; carol is neither.
        assert_eq!(
            state.public_keys,
            vec![
                ("alice".to_string(), "age1alice".to_string()),
                ("bob".to_string(), "age1bob".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn grant_under_another_key_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, repo) = hub(&dir).await;
        meta.set_key_group(repo, "g").await.unwrap();
        meta.change_keys(repo, &rotate(1, "k1", &["alice"], None))
            .await
            .unwrap();
        let wrong = KeyChange::Grant {
            wraps: vec![wrap(1, "k-other", "bob")],
        };
        let refused = meta.change_keys(repo, &wrong).await.unwrap_err();
        assert!(
            format!("{refused:#}").contains("key id k-other"),
            "{refused:#}"
        );
        let future = KeyChange::Grant {
            wraps: vec![wrap(2, "k1", "bob")],
        };
        assert!(meta.change_keys(repo, &future).await.is_err());
        let right = KeyChange::Grant {
            wraps: vec![wrap(1, "k1", "bob")],
        };
        meta.change_keys(repo, &right).await.unwrap();
        assert_eq!(meta.key_state(repo).await.unwrap().wraps.len(), 2);
    }

    #[tokio::test]
    async fn rotation_from_a_stale_generation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, repo) = hub(&dir).await;
        meta.set_key_group(repo, "g").await.unwrap();
        meta.change_keys(repo, &rotate(1, "k1", &["alice"], None))
            .await
            .unwrap();
        // A second admin who also saw generation 0.
        let stale = meta
            .change_keys(repo, &rotate(1, "k1b", &["bob"], None))
            .await
            .unwrap_err();
        assert!(
            format!("{stale:#}").contains("is not the next one"),
            "{stale:#}"
        );
        assert!(meta
            .change_keys(repo, &rotate(3, "k3", &["alice"], None))
            .await
            .is_err());
        let state = meta.key_state(repo).await.unwrap();
        assert_eq!(
            (state.generation, state.wraps),
            (1, vec![wrap(1, "k1", "alice")])
        );
    }

    #[tokio::test]
    async fn revoking_rotation_removes_every_wrap_of_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, repo) = hub(&dir).await;
        meta.set_key_group(repo, "g").await.unwrap();
        meta.change_keys(repo, &rotate(1, "k1", &["alice", "bob"], None))
            .await
            .unwrap();
        let for_revoked = rotate(2, "k2", &["alice", "bob"], Some("bob"));
        assert!(meta.change_keys(repo, &for_revoked).await.is_err());
        meta.change_keys(repo, &rotate(2, "k2", &["alice"], Some("bob")))
            .await
            .unwrap();
        let state = meta.key_state(repo).await.unwrap();
        assert_eq!(state.generation, 2);
        assert_eq!(
            state.wraps,
            vec![wrap(1, "k1", "alice"), wrap(2, "k2", "alice")]
        );
        // bob is neither a member nor a holder any more.
        assert_eq!(state.public_keys.len(), 1);
    }

    #[tokio::test]
    async fn repos_of_one_key_group_share_its_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, film) = hub(&dir).await;
        meta.create_repo("alice", "trailer").await.unwrap();
        let trailer = meta.find_repo("alice", "trailer").await.unwrap().unwrap();
        meta.set_key_group(film, "studio").await.unwrap();
        meta.set_key_group(trailer, "studio").await.unwrap();
        meta.change_keys(film, &rotate(1, "k1", &["alice"], None))
            .await
            .unwrap();
        let state = meta.key_state(trailer).await.unwrap();
        assert_eq!(state.group.as_deref(), Some("studio"));
        assert_eq!(
            (state.generation, state.wraps),
            (1, vec![wrap(1, "k1", "alice")])
        );
        let moved = meta.set_key_group(trailer, "other").await.unwrap_err();
        assert!(
            format!("{moved:#}").contains("already encrypted under key group studio"),
            "{moved:#}"
        );
    }
}
