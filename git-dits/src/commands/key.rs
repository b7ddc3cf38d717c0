//! `git dits key init | grant USER | revoke USER | status`: the keys of an encrypted
//! repository. Each user has an identity (an X25519 key pair whose private half stays in
//! a 0600 file on their machine); an admin wraps the repository's secret for members'
//! public keys, and the hub keeps the wrapped copies. See docs/threat-model.md.

use anyhow::{Context, Result};
use dits_core::crypt::RepoSecret;
use dits_core::keyring::Keyring;
use dits_core::wrap::{wrap, UserPublicKey};
use dits_wire::wire::{KeyChangeRequest, KeysResult, MemberKey, WrappedKeyInfo};
use serde_json::json;

use crate::output::print_json;
use git_remote_dits::keys;
use git_remote_dits::session::{connect, default_remote_url, Session};

/// Runs `work` against the default remote's hub, then closes the connection.
fn with_hub<T>(work: impl AsyncFnOnce(&Session) -> Result<T>) -> Result<T> {
    let url = default_remote_url()?;
    git_remote_dits::runtime()?.block_on(async {
        let session = connect(&url).await?;
        let result = work(&session).await;
        session.close().await;
        result
    })
}

/// `secret` wrapped for `user`, whose public key the hub reported in `keys`.
fn wrap_for(
    keys: &KeysResult,
    user: &str,
    generation: u32,
    secret: &RepoSecret,
) -> Result<WrappedKeyInfo> {
    let public = keys
        .public_keys
        .iter()
        .find(|k| k.user == user)
        .with_context(|| {
            format!("{user} has no public key on the hub for this repository: they run `git dits key init` in a clone of it first (and must be a member)")
        })?;
    let public: UserPublicKey = public
        .public_key
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{user}'s public key: {e}"))?;
    Ok(WrappedKeyInfo {
        generation,
        key_id: secret.key_id().to_string(),
        user: user.to_string(),
        wrapped: dits_core::hex::encode(&wrap(secret, &public)?),
    })
}

/// Makes generation `keys.generation + 1`, granted to `users` (the caller among them),
/// after `revoke` loses every key it held. Returns the new key id.
async fn rotate(
    session: &Session,
    keys: &KeysResult,
    users: &[String],
    revoke: Option<String>,
) -> Result<String> {
    let generation = keys.generation + 1;
    let secret = RepoSecret::generate()?;
    let wraps = users
        .iter()
        .map(|u| wrap_for(keys, u, generation, &secret))
        .collect::<Result<Vec<_>>>()?;
    session
        .hub
        .change_keys(KeyChangeRequest::Rotate {
            generation,
            wraps,
            revoke,
        })
        .await
        .map_err(|e| session.explain(e))?;
    Ok(secret.key_id().to_string())
}

/// Asks the hub again and remembers the answer (so the filter seals with what changed).
async fn refresh(session: &Session) -> Result<KeysResult> {
    let keys = session.hub.keys().await.map_err(|e| session.explain(e))?;
    keys::remember(&keys)?;
    Ok(keys)
}

pub fn init(json_out: bool) -> Result<()> {
    let (identity, created) = keys::load_or_create_identity()?;
    let public = identity.public().to_string();
    if created && !json_out {
        eprintln!(
            "Made your Dits identity: {} (private key, readable only by you)",
            keys::identity_path()?.display()
        );
    }
    let (keys, made) = with_hub(async |session| {
        session
            .hub
            .register_key(&public)
            .await
            .map_err(|e| session.explain(e))?;
        // What the hub said as the session began (registering changes none of it).
        let keys = session.keys.clone();
        if keys.encrypted && keys.generation > 0 {
            return Ok((keys, None));
        }
        // The first key: this repository is encrypted from now on (an admin's act; the
        // hub refuses anyone else). It is wrapped for this user's own key, which the hub
        // lists only once the repository is encrypted.
        let mut keys = keys;
        if !keys.public_keys.iter().any(|k| k.user == keys.user) {
            keys.public_keys.push(MemberKey {
                user: keys.user.clone(),
                public_key: public.clone(),
            });
        }
        let key_id = rotate(session, &keys, std::slice::from_ref(&keys.user), None).await?;
        Ok((refresh(session).await?, Some(key_id)))
    })?;
    let holds_current = keys.mine.iter().any(|w| w.generation == keys.generation);
    if json_out {
        print_json(&json!({
            "user": keys.user,
            "public_key": public,
            "made_key": made,
            "generation": keys.generation,
            "holds_current": holds_current,
        }));
        return Ok(());
    }
    println!("Your public key: {public}");
    match made {
        Some(key_id) => println!(
            "Made key {key_id} (generation {}): media pushed from now on is encrypted. Media pushed before stays on the hub as it was, unencrypted; grant members access with `git dits key grant USER`.",
            keys.generation
        ),
        None if holds_current => println!(
            "You ({}) hold the current key (generation {}) of this encrypted repository.",
            keys.user, keys.generation
        ),
        None => println!(
            "Registered. Ask an admin of this repository to run `git dits key grant {}`, then run `git dits pull-media`.",
            keys.user
        ),
    }
    Ok(())
}

pub fn grant(user: &str, json_out: bool) -> Result<()> {
    let granted = with_hub(async |session| {
        let keys = &session.keys;
        anyhow::ensure!(
            keys.encrypted && keys.generation > 0,
            "this repository has no key yet: an admin makes the first with `git dits key init`"
        );
        let keyring = session.hub.keyring();
        let held: Vec<(u32, RepoSecret)> = keyring.held().map(|(g, s)| (g, s.clone())).collect();
        anyhow::ensure!(
            !held.is_empty(),
            "you hold none of this repository's keys, so you cannot grant them"
        );
        let wraps = held
            .iter()
            .map(|(g, s)| wrap_for(keys, user, *g, s))
            .collect::<Result<Vec<_>>>()?;
        session
            .hub
            .change_keys(KeyChangeRequest::Grant { wraps })
            .await
            .map_err(|e| session.explain(e))?;
        let generations: Vec<u32> = held.iter().map(|(g, _)| *g).rev().collect();
        if held.len() < keys.generation as usize {
            eprintln!(
                "warning: you hold generations {generations:?} of {}; {user} gets those only",
                keys.generation
            );
        }
        Ok(generations)
    })?;
    if json_out {
        print_json(&json!({"user": user, "generations": granted}));
    } else {
        println!("Granted {user} key generations {granted:?}; they run `git dits pull-media` (or fetch) to use them.");
    }
    Ok(())
}

pub fn revoke(user: &str, json_out: bool) -> Result<()> {
    let (key_id, generation, kept) = with_hub(async |session| {
        let keys = &session.keys;
        anyhow::ensure!(
            keys.encrypted && keys.generation > 0,
            "this repository has no key to revoke"
        );
        anyhow::ensure!(
            session.hub.keyring().sealing().is_ok_and(|s| s.is_some()),
            "you do not hold the current key, so you cannot rotate it"
        );
        anyhow::ensure!(user != keys.user, "you cannot revoke your own key");
        // Everyone who holds the current key keeps access, under the new one.
        let mut kept: Vec<String> = keys
            .holders
            .iter()
            .filter(|h| h.generation == keys.generation && h.user != user)
            .map(|h| h.user.clone())
            .collect();
        kept.sort();
        kept.dedup();
        let key_id = rotate(session, keys, &kept, Some(user.to_string())).await?;
        refresh(session).await?;
        Ok((key_id, keys.generation + 1, kept))
    })?;
    if json_out {
        print_json(
            &json!({"revoked": user, "key_id": key_id, "generation": generation, "granted": kept}),
        );
    } else {
        println!(
            "Revoked {user}'s keys and made key {key_id} (generation {generation}), granted to {}.",
            kept.join(", ")
        );
        println!("Media pushed from now on is sealed under it and unreadable to {user}. What was pushed before stays readable to anyone who kept its key or its bytes; revoke their hub access too (`dits-hub repo remove-member`).");
    }
    Ok(())
}

pub fn status(json_out: bool) -> Result<()> {
    let identity = keys::load_identity()?;
    let public = identity.as_ref().map(|k| k.public().to_string());
    let (keys, keyring): (KeysResult, Keyring) =
        with_hub(async |session| Ok((session.keys.clone(), session.hub.keyring())))?;
    let held: Vec<u32> = keyring.held().map(|(g, _)| g).collect();
    if json_out {
        let holders: Vec<_> = keys
            .holders
            .iter()
            .map(|h| json!({"user": h.user, "generation": h.generation, "key_id": h.key_id}))
            .collect();
        print_json(&json!({
            "user": keys.user,
            "public_key": public,
            "encrypted": keys.encrypted,
            "group": keys.group,
            "generation": keys.generation,
            "held": held,
            "holders": holders,
        }));
        return Ok(());
    }
    println!(
        "Identity: {}",
        public
            .as_deref()
            .unwrap_or("none (run `git dits key init`)")
    );
    if !keys.encrypted {
        println!(
            "This repository is not encrypted (an admin turns it on with `git dits key init`)."
        );
        return Ok(());
    }
    println!(
        "Encrypted, key group {}, current generation {}.",
        keys.group.as_deref().unwrap_or("?"),
        keys.generation
    );
    if held.contains(&keys.generation) {
        println!("You ({}) hold generations {held:?}.", keys.user);
    } else {
        println!(
            "You ({}) do not hold the current key (you hold {held:?}): ask an admin to run `git dits key grant {}`.",
            keys.user, keys.user
        );
    }
    for h in &keys.holders {
        println!(
            "  {} holds generation {} (key {})",
            h.user, h.generation, h.key_id
        );
    }
    Ok(())
}
