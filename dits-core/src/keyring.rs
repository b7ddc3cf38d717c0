//! The secrets of one repository as this user holds them, and what they do to pointers.
//!
//! An encrypted repository (or its key group) has one secret per generation: the first
//! made by `git dits key init`, one more at each rotation. New content is sealed under the
//! newest (the current one); content sealed earlier stays under the secret it was sealed
//! with. A member holds the generations granted to them, which after a revocation need
//! not include the current one of someone revoked.

use std::collections::BTreeMap;

use crate::crypt::RepoSecret;
use crate::pointer::{AnyPointer, Pointer, PointerError, SealedPointer};

#[derive(Debug, Clone, Default)]
pub struct Keyring {
    encrypted: bool,
    /// The generation new content is sealed under.
    current: u32,
    /// The generations this user holds.
    secrets: BTreeMap<u32, RepoSecret>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("this repository is encrypted and you hold none of its keys: run `git dits key init` to register your key, ask an admin to run `git dits key grant <your hub user>`, then run `git dits pull-media`")]
    NoKey,
    #[error("this repository's key was rotated (generation {current}) and you hold only older ones: ask an admin to run `git dits key grant <your hub user>`")]
    NotCurrent { current: u32 },
}

impl Keyring {
    /// An unencrypted repository's: pointers and objects stay as they are.
    pub fn plain() -> Keyring {
        Keyring::default()
    }

    /// An encrypted repository's, sealing new content under generation `current`, with
    /// the generations this user holds (possibly none).
    pub fn encrypted(
        current: u32,
        secrets: impl IntoIterator<Item = (u32, RepoSecret)>,
    ) -> Keyring {
        Keyring {
            encrypted: true,
            current,
            secrets: secrets.into_iter().collect(),
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    pub fn current_generation(&self) -> u32 {
        self.current
    }

    /// The secret new content is sealed under (`None` for an unencrypted repository), or
    /// why this user cannot seal.
    pub fn sealing(&self) -> Result<Option<&RepoSecret>, KeyError> {
        if !self.encrypted {
            return Ok(None);
        }
        match self.secrets.get(&self.current) {
            Some(s) => Ok(Some(s)),
            None if self.secrets.is_empty() => Err(KeyError::NoKey),
            None => Err(KeyError::NotCurrent {
                current: self.current,
            }),
        }
    }

    /// The secrets this user holds, newest first.
    pub fn held(&self) -> impl Iterator<Item = (u32, &RepoSecret)> + '_ {
        self.secrets.iter().rev().map(|(g, s)| (*g, s))
    }

    /// The secret of `generation`, if this user holds it.
    pub fn secret(&self, generation: u32) -> Option<&RepoSecret> {
        self.secrets.get(&generation)
    }

    pub fn by_key_id(&self, key_id: &str) -> Option<&RepoSecret> {
        self.secrets.values().find(|s| s.key_id() == key_id)
    }

    /// `pointer` as this repository commits it: sealed under the current secret in an
    /// encrypted repository.
    pub fn encode_pointer(&self, pointer: &Pointer) -> Result<String, KeyError> {
        Ok(match self.sealing()? {
            None => pointer.encode(),
            Some(secret) => SealedPointer {
                media: pointer.media.clone(),
                tag: secret.file_tag(&pointer.oid),
                key_id: secret.key_id().to_string(),
                sealed: secret.seal_ids(&pointer.oid, &pointer.recipe),
                size: pointer.size,
            }
            .encode(),
        })
    }

    /// A pointer of either kind, opened. One sealed under a secret this user lacks is
    /// [`PointerError::Encrypted`].
    pub fn parse_pointer(&self, bytes: &[u8]) -> Result<Pointer, PointerError> {
        self.open(&AnyPointer::parse(bytes)?)
    }

    /// A parsed pointer of either kind, opened (for callers that also ask its kind).
    pub fn open(&self, pointer: &AnyPointer) -> Result<Pointer, PointerError> {
        match pointer {
            AnyPointer::Plain(p) => Ok(p.clone()),
            AnyPointer::Sealed(s) => self.open_pointer(s),
        }
    }

    pub fn open_pointer(&self, sealed: &SealedPointer) -> Result<Pointer, PointerError> {
        let Some(secret) = self.by_key_id(&sealed.key_id) else {
            return Err(PointerError::Encrypted {
                key_id: sealed.key_id.clone(),
            });
        };
        let (oid, recipe) = secret
            .open_ids(&sealed.sealed)
            .filter(|(oid, _)| secret.file_tag(oid) == sealed.tag)
            .ok_or_else(|| {
                PointerError::Malformed(format!(
                    "its sealed ids do not open with key {} (changed, or made by another key)",
                    sealed.key_id
                ))
            })?;
        Ok(Pointer {
            media: sealed.media.clone(),
            oid,
            recipe,
            size: sealed.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_id::ChunkId;

    fn pointer() -> Pointer {
        Pointer {
            media: "mp4 duration=2.00s".into(),
            oid: ChunkId::of(b"file"),
            recipe: ChunkId::of(b"recipe"),
            size: 42,
        }
    }

    #[test]
    fn a_plain_keyring_keeps_pointers_plain() {
        let k = Keyring::plain();
        let text = k.encode_pointer(&pointer()).unwrap();
        assert_eq!(text, pointer().encode());
        assert_eq!(k.parse_pointer(text.as_bytes()).unwrap(), pointer());
    }

    #[test]
    fn a_sealed_pointer_hides_the_ids_and_opens_only_with_its_secret() {
        let s1 = RepoSecret::from_bytes([1; 32]);
        let k = Keyring::encrypted(1, [(1, s1.clone())]);
        let text = k.encode_pointer(&pointer()).unwrap();
        assert_eq!(text, k.encode_pointer(&pointer()).unwrap(), "deterministic");
        assert!(!text.contains(&pointer().oid.to_hex()));
        assert!(!text.contains(&pointer().recipe.to_hex()));
        assert!(text.contains("size 42") && text.contains("media mp4"));
        assert_eq!(k.parse_pointer(text.as_bytes()).unwrap(), pointer());
        assert!(matches!(
            Pointer::parse(text.as_bytes()),
            Err(PointerError::Encrypted { .. })
        ));
        let other = Keyring::encrypted(1, [(1, RepoSecret::from_bytes([2; 32]))]);
        assert!(matches!(
            other.parse_pointer(text.as_bytes()),
            Err(PointerError::Encrypted { .. })
        ));
        let keyless = Keyring::encrypted(1, []);
        assert!(matches!(keyless.sealing(), Err(KeyError::NoKey)));
        // A flipped digit in the sealed ids is refused, not misread.
        let at = text.find("recipe sealed:").unwrap() + "recipe sealed:".len() + 20;
        let mut bytes = text.clone().into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        assert!(k.parse_pointer(&bytes).is_err());
    }

    #[test]
    fn after_a_rotation_new_pointers_use_the_new_secret_and_old_ones_still_open() {
        let (s1, s2) = (
            RepoSecret::from_bytes([1; 32]),
            RepoSecret::from_bytes([2; 32]),
        );
        let old = Keyring::encrypted(1, [(1, s1.clone())])
            .encode_pointer(&pointer())
            .unwrap();
        let k = Keyring::encrypted(2, [(1, s1.clone()), (2, s2.clone())]);
        let new = k.encode_pointer(&pointer()).unwrap();
        assert_ne!(old, new);
        assert!(new.contains(s2.key_id()));
        assert_eq!(k.parse_pointer(old.as_bytes()).unwrap(), pointer());
        let revoked = Keyring::encrypted(2, [(1, s1)]);
        assert!(matches!(
            revoked.sealing(),
            Err(KeyError::NotCurrent { current: 2 })
        ));
        assert!(revoked.parse_pointer(new.as_bytes()).is_err());
    }
}
