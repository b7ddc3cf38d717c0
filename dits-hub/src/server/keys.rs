//! The key ops of encrypted repositories: `keys` (what the caller may know), `key-register`
//! (a member's public key) and `key-change` (an admin's grants and rotations). The hub
//! stores wrapped keys and hands them to their members; it never sees a secret.

use dits_wire::wire::{Done, KeyChangeRequest, KeyHolder, KeysResult, MemberKey, WrappedKeyInfo};

use crate::error::HubError;
use crate::meta::{check_grant, check_rotation, KeyChange, KeyState, Role, WrappedKey};
use crate::server::auth::Caller;
use crate::server::state::HubState;

/// Whether `repo` is encrypted: its objects must arrive sealed, and the hub cannot read
/// its recipes.
pub async fn encrypted(state: &HubState, repo: i64) -> Result<bool, HubError> {
    Ok(state.meta.encrypted(repo).await?)
}

pub async fn status(state: &HubState, caller: &Caller) -> Result<KeysResult, HubError> {
    let keys = state.meta.key_state(caller.repo).await?;
    let mine = keys
        .wraps
        .iter()
        .filter(|w| w.user == caller.user.name)
        .map(to_wire)
        .collect();
    Ok(KeysResult {
        encrypted: keys.group.is_some(),
        group: keys.group.clone(),
        generation: keys.generation,
        user: caller.user.name.clone(),
        mine,
        holders: keys
            .wraps
            .iter()
            .map(|w| KeyHolder {
                user: w.user.clone(),
                generation: w.generation,
                key_id: w.key_id.clone(),
            })
            .collect(),
        public_keys: keys
            .public_keys
            .iter()
            .map(|(user, key)| MemberKey {
                user: user.clone(),
                public_key: key.clone(),
            })
            .collect(),
    })
}

pub async fn register(
    state: &HubState,
    caller: &Caller,
    public_key: &str,
) -> Result<Done, HubError> {
    public_key
        .parse::<dits_core::wrap::UserPublicKey>()
        .map_err(HubError::BadRequest)?;
    state.meta.set_public_key(&caller.user, public_key).await?;
    tracing::info!(repo = %caller.repo_name, user = %caller.user.name, "public key registered");
    Ok(Done {})
}

pub async fn change(
    state: &HubState,
    caller: &Caller,
    request: KeyChangeRequest,
) -> Result<Done, HubError> {
    if caller.role < Role::Admin {
        return Err(HubError::Forbidden(format!(
            "only an admin of {} may grant or rotate its keys (user {} is not one)",
            caller.repo_name, caller.user.name
        )));
    }
    let mut keys = state.meta.key_state(caller.repo).await?;
    // The metadata store checks the same again inside its transaction; checking here first
    // answers a stale or malformed request with what to do, not an internal error.
    let refused = |e: anyhow::Error| HubError::Rejected(format!("{e:#}"));
    let change = match request {
        KeyChangeRequest::Grant { wraps } => {
            let wraps = from_wire(&wraps)?;
            let group = keys.group.clone().unwrap_or_default();
            for w in &wraps {
                check_recipient(&keys, w)?;
                let stored = keys
                    .wraps
                    .iter()
                    .find(|k| k.generation == w.generation)
                    .map(|k| k.key_id.as_str());
                check_grant(&group, keys.generation, w, stored).map_err(refused)?;
            }
            KeyChange::Grant { wraps }
        }
        KeyChangeRequest::Rotate {
            generation,
            wraps,
            revoke,
        } => {
            if keys.group.is_none() {
                // `git dits key init` on a repository made without --encrypted: from now
                // on it is, under a key group of its own.
                state
                    .meta
                    .set_key_group(caller.repo, &caller.repo_name)
                    .await?;
                keys = state.meta.key_state(caller.repo).await?;
            }
            let wraps = from_wire(&wraps)?;
            if !wraps.iter().any(|w| w.user == caller.user.name) {
                return Err(HubError::BadRequest(
                    "a new key must be granted to the admin making it".into(),
                ));
            }
            for w in &wraps {
                check_recipient(&keys, w)?;
            }
            let group = keys.group.clone().unwrap_or_default();
            check_rotation(
                &group,
                keys.generation,
                generation,
                &wraps,
                revoke.as_deref(),
            )
            .map_err(refused)?;
            KeyChange::Rotate {
                generation,
                wraps,
                revoke,
            }
        }
    };
    state.meta.change_keys(caller.repo, &change).await?;
    tracing::info!(repo = %caller.repo_name, user = %caller.user.name, change = ?summary(&change), "keys changed");
    Ok(Done {})
}

/// A wrap must be for someone whose public key the hub holds (else nobody could open it).
fn check_recipient(keys: &KeyState, w: &WrappedKey) -> Result<(), HubError> {
    if keys.public_keys.iter().any(|(user, _)| user == &w.user) {
        Ok(())
    } else {
        Err(HubError::Rejected(format!(
            "user {} has no public key registered for this repository (they run `git dits key init` in a clone first)",
            w.user
        )))
    }
}

/// What the log says of a change: who, which generation, never the wrapped bytes.
fn summary(change: &KeyChange) -> String {
    match change {
        KeyChange::Grant { wraps } => {
            let who: Vec<String> = wraps
                .iter()
                .map(|w| format!("{}@{}", w.user, w.generation))
                .collect();
            format!("grant {}", who.join(","))
        }
        KeyChange::Rotate {
            generation, revoke, ..
        } => format!("rotate to {generation}, revoking {revoke:?}"),
    }
}

fn to_wire(w: &WrappedKey) -> WrappedKeyInfo {
    WrappedKeyInfo {
        generation: w.generation,
        key_id: w.key_id.clone(),
        user: w.user.clone(),
        wrapped: dits_core::hex::encode(&w.wrapped),
    }
}

fn from_wire(wraps: &[WrappedKeyInfo]) -> Result<Vec<WrappedKey>, HubError> {
    wraps
        .iter()
        .map(|w| {
            let wrapped = dits_core::hex::decode(&w.wrapped)
                .filter(|b| b.len() == dits_core::wrap::WRAPPED_LEN)
                .ok_or_else(|| {
                    HubError::BadRequest(format!("the wrapped key for {} is malformed", w.user))
                })?;
            let valid_id = w.key_id.len() == 16 && dits_core::hex::decode(&w.key_id).is_some();
            if !valid_id || w.generation == 0 {
                return Err(HubError::BadRequest(format!(
                    "the wrapped key for {} names no valid key",
                    w.user
                )));
            }
            Ok(WrappedKey {
                generation: w.generation,
                key_id: w.key_id.clone(),
                user: w.user.clone(),
                wrapped,
            })
        })
        .collect()
}
