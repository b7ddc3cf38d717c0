//! This user's keys on this machine: their X25519 identity (a 0600 file under the user's
//! config directory; never in Git config) and, per repository, the wrapped repository
//! secrets the hub granted them (`<git-common-dir>/dits/keyring.json`, refreshed on every
//! connection to the hub). Wrapped secrets are useless without the identity, so the cache
//! holds nothing a thief of the repository could open; secrets are unwrapped in memory
//! when a command needs them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use dits_core::crypt::RepoSecret;
use dits_core::keyring::Keyring;
use dits_core::wrap::UserKey;
use dits_wire::wire::{KeysResult, WrappedKeyInfo};
use serde::{Deserialize, Serialize};

const IDENTITY_PREFIX: &str = "dits-x25519-private:";

/// Where this user's identity lives: `$DITS_CONFIG_HOME`, else `$XDG_CONFIG_HOME/dits`,
/// else `~/.config/dits`; the file is `identity`.
pub fn identity_path() -> Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("DITS_CONFIG_HOME") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("dits")
    } else {
        let home = std::env::var_os("HOME")
            .context("HOME is not set: set DITS_CONFIG_HOME to the directory for your Dits key")?;
        PathBuf::from(home).join(".config").join("dits")
    };
    Ok(dir.join("identity"))
}

/// This user's identity, if they made one.
pub fn load_identity() -> Result<Option<UserKey>> {
    let path = identity_path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let bytes = text
        .trim()
        .strip_prefix(IDENTITY_PREFIX)
        .and_then(dits_core::hex::decode)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!(
                "{} is not a Dits identity (move it aside and run `git dits key init` to make a new one; secrets granted to the old one must then be granted again)",
                path.display()
            )
        })?;
    Ok(Some(UserKey::from_bytes(bytes)))
}

/// This user's identity, made (and saved, readable by them alone) if they had none.
pub fn load_or_create_identity() -> Result<(UserKey, bool)> {
    if let Some(key) = load_identity()? {
        return Ok((key, false));
    }
    let path = identity_path()?;
    let dir = path.parent().context("the identity file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = UserKey::generate()?;
    let text = zeroize::Zeroizing::new(format!(
        "{IDENTITY_PREFIX}{}\n",
        dits_core::hex::encode(key.to_bytes().as_ref())
    ));
    // Made 0600 before a byte is written, and renamed into place whole.
    let mut tmp = tempfile::Builder::new()
        .prefix(".identity-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(&path)
        .with_context(|| format!("saving {}", path.display()))?;
    Ok((key, true))
}

/// What the hub last said of this repository's keys, as this user may know them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cached {
    encrypted: bool,
    generation: u32,
    mine: Vec<WrappedKeyInfo>,
}

fn cache_path() -> Result<PathBuf> {
    Ok(crate::git::store_dir()?.join("keyring.json"))
}

/// Records what the hub said (a clone learns its keys on its own this way).
pub fn remember(keys: &KeysResult) -> Result<()> {
    let cached = Cached {
        encrypted: keys.encrypted,
        generation: keys.generation,
        mine: keys.mine.clone(),
    };
    let path = cache_path()?;
    let dir = path.parent().context("the keyring has a directory")?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, &cached)?;
    tmp.persist(&path)
        .with_context(|| format!("saving {}", path.display()))?;
    Ok(())
}

/// This repository's keyring from what the hub last said: plain until the hub said the
/// repository is encrypted.
pub fn load_keyring() -> Result<Keyring> {
    let path = cache_path()?;
    let cached: Cached = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is corrupt (delete it; the next fetch remakes it)",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cached::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    keyring_of(cached.encrypted, cached.generation, &cached.mine)
}

/// The keyring the hub's answer gives this user.
pub fn keyring_from(keys: &KeysResult) -> Result<Keyring> {
    keyring_of(keys.encrypted, keys.generation, &keys.mine)
}

fn keyring_of(encrypted: bool, generation: u32, mine: &[WrappedKeyInfo]) -> Result<Keyring> {
    if !encrypted {
        return Ok(Keyring::plain());
    }
    let identity = load_identity()?;
    let mut secrets: Vec<(u32, RepoSecret)> = Vec::new();
    if let Some(identity) = identity {
        for w in mine {
            let opened = dits_core::hex::decode(&w.wrapped)
                .ok_or(dits_core::wrap::WrapError::BadFormat)
                .and_then(|bytes| identity.unwrap(&bytes));
            match opened {
                Ok(secret) if secret.key_id() == w.key_id => secrets.push((w.generation, secret)),
                // Granted to an identity this machine no longer has, or tampered with:
                // that generation stays unreadable here, and commands say so.
                Ok(_) => tracing::warn!(
                    generation = w.generation,
                    "a granted key does not match its key id; ignored"
                ),
                Err(e) => tracing::warn!(
                    generation = w.generation,
                    "a granted key does not open: {e}"
                ),
            }
        }
    }
    Ok(Keyring::encrypted(generation, secrets))
}
