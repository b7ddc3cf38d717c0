//! Member key pairs and wrapped repository secrets (issue 16; primitives only).
//!
//! Each user has an X25519 key pair (`x25519-dalek`) whose private half stays on their
//! machine. An admin grants a member access by wrapping the repository secret for the
//! member's public key: an ephemeral X25519 exchange with that key, HKDF-SHA256 over the
//! shared secret and both public keys, then XChaCha20-Poly1305 with a random nonce. The
//! hub stores only the wrapped form; opening it takes the member's private key.
//!
//! Wrapped format: `magic "DW" | version u8 | ephemeral public key (32) | nonce (24) |
//! ciphertext of the 32-byte secret (48, tag included)` = 107 bytes.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::crypt::RepoSecret;

pub const MAGIC: &[u8; 2] = b"DW";
pub const VERSION: u8 = 1;
/// Bytes of a wrapped secret.
pub const WRAPPED_LEN: usize = 3 + 32 + 24 + 32 + 16;
const WRAP_INFO: &[u8] = b"dits wrap v1";

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("not a wrapped Dits key (bad magic, version or length)")]
    BadFormat,
    #[error("the wrapped key does not open with this user's key (it was granted to another key, or changed)")]
    NotForThisKey,
    #[error("reading the system's random source: {0}")]
    Random(std::io::Error),
}

/// A user's X25519 key pair. The private half is wiped from memory when dropped and
/// never printed.
pub struct UserKey {
    private: StaticSecret,
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserKey({})", self.public())
    }
}

/// A user's public key, as `git dits key` prints and the hub stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPublicKey(pub [u8; 32]);

impl std::fmt::Display for UserPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dits-x25519:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for UserPublicKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hex = s
            .trim()
            .strip_prefix("dits-x25519:")
            .ok_or_else(|| format!("{s:?} is not a Dits public key (dits-x25519:…)"))?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(format!("{s:?}: a Dits public key has 64 hex digits"));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("{s:?}: not hexadecimal"))?;
        }
        Ok(UserPublicKey(key))
    }
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, WrapError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::getrandom(bytes.as_mut())
        .map_err(|e| WrapError::Random(std::io::Error::other(e)))?;
    Ok(bytes)
}

impl UserKey {
    pub fn generate() -> Result<UserKey, WrapError> {
        Ok(UserKey::from_bytes(*random::<32>()?))
    }

    pub fn from_bytes(private: [u8; 32]) -> UserKey {
        UserKey {
            private: StaticSecret::from(private),
        }
    }

    /// The private half, for saving to a file only its owner can read.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.private.to_bytes())
    }

    pub fn public(&self) -> UserPublicKey {
        UserPublicKey(PublicKey::from(&self.private).to_bytes())
    }

    /// The repository secret in `wrapped`, if it was wrapped for this key.
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<RepoSecret, WrapError> {
        if wrapped.len() != WRAPPED_LEN || &wrapped[..2] != MAGIC || wrapped[2] != VERSION {
            return Err(WrapError::BadFormat);
        }
        let ephemeral: [u8; 32] = wrapped[3..35].try_into().expect("32 bytes");
        let nonce = XNonce::from_slice(&wrapped[35..59]);
        let shared = self.private.diffie_hellman(&PublicKey::from(ephemeral));
        let cipher = wrapping_cipher(shared.as_bytes(), &ephemeral, &self.public().0);
        let secret = Zeroizing::new(
            cipher
                .decrypt(nonce, &wrapped[59..])
                .map_err(|_| WrapError::NotForThisKey)?,
        );
        let bytes: [u8; 32] = secret[..].try_into().map_err(|_| WrapError::BadFormat)?;
        Ok(RepoSecret::from_bytes(bytes))
    }
}

/// The cipher both ends derive from the X25519 shared secret and the two public keys.
fn wrapping_cipher(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> XChaCha20Poly1305 {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(WRAP_INFO, key.as_mut())
        .expect("32 bytes is within HKDF's limit");
    XChaCha20Poly1305::new_from_slice(key.as_ref()).expect("32-byte key")
}

/// `secret` wrapped for the holder of `recipient`'s private key.
pub fn wrap(secret: &RepoSecret, recipient: &UserPublicKey) -> Result<Vec<u8>, WrapError> {
    let ephemeral = StaticSecret::from(*random::<32>()?);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(recipient.0));
    let cipher = wrapping_cipher(shared.as_bytes(), &ephemeral_public, &recipient.0);
    let nonce = random::<24>()?;
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(nonce.as_ref()),
            secret.as_bytes().as_slice(),
        )
        .expect("encrypting 32 bytes");
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&ephemeral_public);
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&sealed);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_wrapped_for_a_member_opens_with_their_key_only() {
        let secret = RepoSecret::generate().unwrap();
        let (alice, bob) = (UserKey::generate().unwrap(), UserKey::generate().unwrap());
        let wrapped = wrap(&secret, &alice.public()).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(
            alice.unwrap(&wrapped).unwrap().as_bytes(),
            secret.as_bytes()
        );
        assert!(matches!(
            bob.unwrap(&wrapped),
            Err(WrapError::NotForThisKey)
        ));
        // Wrapping is randomised: two grants of one secret look unrelated.
        assert_ne!(wrap(&secret, &alice.public()).unwrap(), wrapped);
        // The secret's bytes appear nowhere in the wrapped form.
        assert!(!wrapped.windows(32).any(|w| w == secret.as_bytes()));
    }

    #[test]
    fn a_changed_or_cut_wrapped_key_is_refused() {
        let secret = RepoSecret::generate().unwrap();
        let alice = UserKey::generate().unwrap();
        let wrapped = wrap(&secret, &alice.public()).unwrap();
        for at in [0, 3, 40, 70, WRAPPED_LEN - 1] {
            let mut bad = wrapped.clone();
            bad[at] ^= 0x80;
            assert!(alice.unwrap(&bad).is_err(), "flip at {at}");
        }
        assert!(matches!(
            alice.unwrap(&wrapped[..50]),
            Err(WrapError::BadFormat)
        ));
    }

    #[test]
    fn keys_survive_saving_and_public_keys_print_and_parse() {
        let alice = UserKey::generate().unwrap();
        let again = UserKey::from_bytes(*alice.to_bytes());
        assert_eq!(again.public(), alice.public());
        let printed = alice.public().to_string();
        assert!(printed.starts_with("dits-x25519:") && printed.len() == 12 + 64);
        assert_eq!(printed.parse::<UserPublicKey>().unwrap(), alice.public());
        assert!("dits-x25519:zz".parse::<UserPublicKey>().is_err());
        assert!("ssh-ed25519 AAAA".parse::<UserPublicKey>().is_err());
        // Debug shows the public half only.
        let debug = format!("{alice:?}");
        assert!(debug.contains(&printed));
        let private_hex: String = alice
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!debug.contains(&private_hex));
    }
}
