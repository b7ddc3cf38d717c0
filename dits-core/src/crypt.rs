//! Convergent encryption for encrypted repositories (issue 16; the primitives only, not
//! yet wired into the filter, the wire or the hub).
//!
//! An object is sealed after compression: its stored envelope (see [`crate::envelope`])
//! is padded to a size class, then encrypted with XChaCha20-Poly1305 under a key and nonce
//! that HKDF-SHA256 derives from the repository secret and the object's content id. Equal
//! content in one repository (or key group: repositories sharing a secret) therefore
//! gives equal ciphertext, so dedup keeps working, while nothing without the secret can
//! compute the ciphertext of a known chunk. Each derived key seals exactly one plaintext
//! (the content its id names), so the fixed per-key nonce is never reused with a different
//! message.
//!
//! The hub does not see content ids: an object is stored under its **locator**, a BLAKE3
//! keyed hash of the id under a key derived from the secret, so nobody without it can tell
//! whether a known file or chunk is stored.
//!
//! **Lengths.** A sealed object's length is its padded length plus a fixed overhead.
//! Padding follows Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files
//! and Communication with PURBs", PETS 2019): a length of `L` bytes is rounded up so that
//! only the top `⌊log2 ⌊log2 L⌋⌋ + 1` bits of it may be set. That costs at most 12%
//! (less for large objects) and leaves O(log log L) bits of each length visible instead of
//! log L. Chunk boundaries are still content-defined; keyed boundaries are not done yet.
//!
//! Sealed format: `magic "DE" | version u8 | ciphertext` where the ciphertext (with its
//! 16-byte tag) encrypts `plain_len u32 LE | envelope_len u32 LE | envelope | zero
//! padding`.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::chunk_id::ChunkId;

pub const MAGIC: &[u8; 2] = b"DE";
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 3;
/// `plain_len u32 | envelope_len u32` before the envelope.
const LENGTHS_LEN: usize = 8;
const TAG_LEN: usize = 16;

/// Domain separation for what HKDF derives from the secret.
const OBJECT_KEY_INFO: &[u8] = b"dits object key v1";
const LOCATOR_KEY_INFO: &[u8] = b"dits locator key v1";
const KEY_ID_INFO: &[u8] = b"dits key id v1";
const FILE_TAG_INFO: &[u8] = b"dits file tag key v1";
const POINTER_KEY_INFO: &[u8] = b"dits pointer key v1";
const POINTER_NONCE_INFO: &[u8] = b"dits pointer nonce v1";

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("object {locator}: not a sealed Dits object (bad magic, version or length)")]
    BadFormat { locator: ChunkId },
    /// Wrong secret, wrong id, or bytes changed since sealing: AEAD cannot tell which.
    #[error("object {locator}: does not open with this repository's key (corrupt, or sealed under another key)")]
    Unauthentic { locator: ChunkId },
    #[error("object {locator}: its padding is malformed")]
    BadPadding { locator: ChunkId },
}

/// A repository's (or key group's) secret: 32 random bytes. Wiped from memory when
/// dropped, and never printed.
#[derive(Clone)]
pub struct RepoSecret {
    secret: Zeroizing<[u8; 32]>,
    // Derived once, not per object: locators and pointers are made for every chunk a
    // push or fetch names.
    locator_key: Zeroizing<[u8; 32]>,
    file_tag_key: Zeroizing<[u8; 32]>,
    pointer_key: Zeroizing<[u8; 32]>,
    key_id: String,
}

impl std::fmt::Debug for RepoSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepoSecret(..)")
    }
}

impl RepoSecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> std::io::Result<RepoSecret> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(bytes.as_mut()).map_err(std::io::Error::other)?;
        Ok(RepoSecret::from_bytes(*bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> RepoSecret {
        let secret = Zeroizing::new(bytes);
        let key = |info: &[u8]| {
            let mut key = Zeroizing::new([0u8; 32]);
            derive(&secret, info, &[], key.as_mut());
            key
        };
        let mut id = [0u8; 8];
        derive(&secret, KEY_ID_INFO, &[], &mut id);
        RepoSecret {
            locator_key: key(LOCATOR_KEY_INFO),
            file_tag_key: key(FILE_TAG_INFO),
            pointer_key: key(POINTER_KEY_INFO),
            key_id: crate::hex::encode(&id),
            secret,
        }
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// `len` bytes from HKDF-SHA256 over the secret, for `info` and `id`.
    fn derive(&self, info: &[u8], id: &[u8], out: &mut [u8]) {
        derive(&self.secret, info, id, out)
    }

    /// Where the hub keeps the object with content id `id`: a keyed hash of the id.
    pub fn locator(&self, id: &ChunkId) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.locator_key, &id.0).as_bytes())
    }

    /// The cipher and nonce that seal the object with content id `id`.
    fn cipher(&self, id: &ChunkId) -> (XChaCha20Poly1305, XNonce) {
        let mut okm = Zeroizing::new([0u8; 32 + 24]);
        self.derive(OBJECT_KEY_INFO, &id.0, okm.as_mut());
        let cipher = XChaCha20Poly1305::new_from_slice(&okm[..32]).expect("32-byte key");
        (cipher, *XNonce::from_slice(&okm[32..]))
    }

    /// Seals `envelope` (an object's stored envelope), whose content id is `id` and
    /// plaintext `plain_len` bytes: the hub is told neither.
    pub fn seal(&self, id: &ChunkId, plain_len: u32, envelope: &[u8]) -> Vec<u8> {
        let len = u32::try_from(envelope.len()).expect("objects are at most 64 MiB");
        let size = padded_len(LENGTHS_LEN + envelope.len());
        // Laid out in the output and encrypted there, in place: one copy of the envelope,
        // and no plaintext left behind to wipe.
        let mut out = Vec::with_capacity(HEADER_LEN + size + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&plain_len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(envelope);
        out.resize(HEADER_LEN + size, 0);
        let (cipher, nonce) = self.cipher(id);
        let tag = cipher
            .encrypt_in_place_detached(&nonce, b"", &mut out[HEADER_LEN..])
            .expect("XChaCha20-Poly1305 encrypts any length we hold in memory");
        out.extend_from_slice(&tag);
        out
    }

    /// Opens what [`RepoSecret::seal`] made for content id `id`: the plaintext length and
    /// the envelope, which the caller then opens and checks against `id` as for any
    /// stored object.
    pub fn open(&self, id: &ChunkId, sealed: &[u8]) -> Result<(u32, Vec<u8>), CryptError> {
        let locator = self.locator(id);
        if !looks_sealed(sealed) {
            return Err(CryptError::BadFormat { locator });
        }
        let (ciphertext, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
        let (cipher, nonce) = self.cipher(id);
        let mut padded = ciphertext.to_vec();
        cipher
            .decrypt_in_place_detached(&nonce, b"", &mut padded, Tag::from_slice(tag))
            .map_err(|_| CryptError::Unauthentic { locator })?;
        let word = |at: usize| u32::from_le_bytes(padded[at..at + 4].try_into().expect("4 bytes"));
        let (plain_len, len) = (word(0), word(4) as usize);
        let body = &padded[LENGTHS_LEN..];
        if len > body.len() || body[len..].iter().any(|&b| b != 0) {
            return Err(CryptError::BadPadding { locator });
        }
        padded.truncate(LENGTHS_LEN + len);
        padded.drain(..LENGTHS_LEN);
        Ok((plain_len, padded))
    }

    /// A public name for this secret (16 hex digits): pointers and wrapped keys say which
    /// secret they need by it. It reveals nothing of the secret.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The keyed hash an encrypted repository's pointer carries in place of the file's
    /// BLAKE3 `oid`: equal files give equal pointers, but nobody without the secret can
    /// tell which file a pointer is of.
    pub fn file_tag(&self, oid: &ChunkId) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.file_tag_key, &oid.0).as_bytes())
    }

    /// `oid | recipe` sealed deterministically for a pointer (SIV-style: the nonce is a
    /// keyed hash of the plaintext, so equal content gives an equal pointer and unequal
    /// content never shares a nonce): `nonce 24 | ciphertext 64 | tag 16`.
    pub fn seal_ids(&self, oid: &ChunkId, recipe: &ChunkId) -> Vec<u8> {
        let mut plain = Zeroizing::new([0u8; 64]);
        plain[..32].copy_from_slice(&oid.0);
        plain[32..].copy_from_slice(&recipe.0);
        let mut nonce = [0u8; 24];
        self.derive(POINTER_NONCE_INFO, plain.as_ref(), &mut nonce);
        let sealed = self
            .pointer_cipher()
            .encrypt(XNonce::from_slice(&nonce), plain.as_slice())
            .expect("encrypting 64 bytes");
        let mut out = Vec::with_capacity(SEALED_IDS_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The `(oid, recipe)` [`RepoSecret::seal_ids`] sealed, or `None` when `sealed` was
    /// not made with this secret or was changed.
    pub fn open_ids(&self, sealed: &[u8]) -> Option<(ChunkId, ChunkId)> {
        if sealed.len() != SEALED_IDS_LEN {
            return None;
        }
        let plain = Zeroizing::new(
            self.pointer_cipher()
                .decrypt(XNonce::from_slice(&sealed[..24]), &sealed[24..])
                .ok()?,
        );
        let id = |r: std::ops::Range<usize>| ChunkId(plain[r].try_into().expect("32 bytes"));
        Some((id(0..32), id(32..64)))
    }

    fn pointer_cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(self.pointer_key.as_ref()).expect("32-byte key")
    }
}

/// `out.len()` bytes from HKDF-SHA256 over `secret`, for `info` and `id`.
fn derive(secret: &[u8; 32], info: &[u8], id: &[u8], out: &mut [u8]) {
    let hkdf = Hkdf::<Sha256>::new(None, secret);
    // Only fails for outputs over 255 × 32 bytes; ours are at most 56.
    hkdf.expand_multi_info(&[info, id], out)
        .expect("HKDF output within its limit");
}

/// Bytes of [`RepoSecret::seal_ids`]' output.
pub const SEALED_IDS_LEN: usize = 24 + 64 + TAG_LEN;

/// Whether `sealed` has the shape of a sealed object (magic, version, room for the
/// lengths and the tag): what a hub, which cannot open it, checks before storing it.
pub fn looks_sealed(sealed: &[u8]) -> bool {
    sealed.len() >= HEADER_LEN + TAG_LEN + LENGTHS_LEN
        && &sealed[..2] == MAGIC
        && sealed[2] == VERSION
}

/// Bytes a sealed object takes for an envelope of `envelope_len` bytes.
pub fn sealed_len(envelope_len: usize) -> usize {
    HEADER_LEN + padded_len(LENGTHS_LEN + envelope_len) + TAG_LEN
}

/// Padmé: `len` rounded up so that only its top `⌊log2 ⌊log2 len⌋⌋ + 1` bits may be set.
pub fn padded_len(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let e = usize::BITS - 1 - len.leading_zeros(); // ⌊log2 len⌋
    let s = u32::BITS - 1 - e.leading_zeros() + 1; // ⌊log2 e⌋ + 1
    let last_bits = e - s.min(e);
    let mask = (1usize << last_bits) - 1;
    (len + mask) & !mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{self, CompressionHint};
    use proptest::prelude::*;

    fn secret(byte: u8) -> RepoSecret {
        RepoSecret::from_bytes([byte; 32])
    }

    fn object(plain: &[u8]) -> (ChunkId, Vec<u8>) {
        (
            ChunkId::of(plain),
            envelope::seal(plain, CompressionHint::Try),
        )
    }

    #[test]
    fn an_object_opens_to_its_envelope_and_then_to_its_bytes() {
        let s = secret(7);
        for plain in [
            &b""[..],
            b"x",
            &[3u8; 1000][..],
            &crate::test_bytes::test_bytes(256 << 10, 1),
        ] {
            let (id, env) = object(plain);
            let sealed = s.seal(&id, plain.len() as u32, &env);
            assert_eq!(sealed.len(), sealed_len(env.len()));
            let (len, opened) = s.open(&id, &sealed).unwrap();
            assert_eq!((len as usize, &opened), (plain.len(), &env));
            assert_eq!(
                envelope::open(&id, &opened, plain.len() as u64).unwrap(),
                plain
            );
        }
    }

    #[test]
    fn equal_content_under_one_secret_seals_equal_and_under_another_differently() {
        let plain = crate::test_bytes::test_bytes(10_000, 2);
        let (id, env) = object(&plain);
        assert_eq!(secret(1).seal(&id, 9, &env), secret(1).seal(&id, 9, &env));
        assert_eq!(secret(1).locator(&id), secret(1).locator(&id));
        assert_ne!(secret(1).seal(&id, 9, &env), secret(2).seal(&id, 9, &env));
        assert_ne!(secret(1).locator(&id), secret(2).locator(&id));
        assert_ne!(
            secret(1).locator(&id),
            id,
            "the hub never sees the content id"
        );
    }

    #[test]
    fn the_sealed_bytes_do_not_contain_the_plaintext() {
        // Incompressible, so the envelope holds the bytes verbatim.
        let plain = crate::test_bytes::test_bytes(64 << 10, 3);
        let (id, env) = object(&plain);
        let sealed = secret(1).seal(&id, 9, &env);
        assert!(env.windows(64).any(|w| w == &plain[..64]));
        assert!(!sealed.windows(64).any(|w| w == &plain[..64]));
    }

    #[test]
    fn a_wrong_secret_a_wrong_id_a_flipped_byte_or_a_cut_are_refused() {
        let plain = crate::test_bytes::test_bytes(5_000, 4);
        let (id, env) = object(&plain);
        let sealed = secret(1).seal(&id, 9, &env);
        assert!(matches!(
            secret(2).open(&id, &sealed),
            Err(CryptError::Unauthentic { .. })
        ));
        let other = ChunkId::of(b"another object");
        assert!(matches!(
            secret(1).open(&other, &sealed),
            Err(CryptError::Unauthentic { .. })
        ));
        for at in [0, 2, 3, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(secret(1).open(&id, &bad).is_err(), "flip at {at}");
        }
        for len in [0, 2, 10, sealed.len() - 1] {
            assert!(secret(1).open(&id, &sealed[..len]).is_err(), "cut to {len}");
        }
    }

    #[test]
    fn errors_name_the_locator_not_the_content_id() {
        let (id, env) = object(b"clip bytes");
        let sealed = secret(1).seal(&id, 9, &env);
        let message = secret(2).open(&id, &sealed).unwrap_err().to_string();
        assert!(
            message.contains(&secret(2).locator(&id).to_string()),
            "{message}"
        );
        assert!(!message.contains(&id.to_string()), "{message}");
        assert_eq!(format!("{:?}", secret(9)), "RepoSecret(..)");
    }

    #[test]
    fn padme_costs_at_most_12_percent_and_leaves_few_distinct_lengths() {
        let mut distinct = std::collections::BTreeSet::new();
        for len in 1..=(1usize << 20) {
            let padded = padded_len(len);
            assert!(padded >= len);
            assert!(
                padded as f64 <= len as f64 * 1.12 + 1.0,
                "{len} -> {padded}"
            );
            if len >= 1 << 19 {
                distinct.insert(padded);
            }
        }
        // Lengths 512 KiB..1 MiB (2^19 of them) fall into a handful of classes.
        assert!(distinct.len() <= 64, "{} classes", distinct.len());
        assert_eq!(padded_len(1 << 20), 1 << 20);
        assert_eq!(padded_len((1 << 20) + 1), (1 << 20) + (1 << 15));
    }

    #[test]
    fn pointer_ids_seal_deterministically_and_open_only_with_their_secret() {
        let (oid, recipe) = (ChunkId::of(b"file"), ChunkId::of(b"recipe"));
        let sealed = secret(1).seal_ids(&oid, &recipe);
        assert_eq!(sealed, secret(1).seal_ids(&oid, &recipe));
        assert_ne!(sealed, secret(1).seal_ids(&oid, &ChunkId::of(b"other")));
        assert_eq!(secret(1).open_ids(&sealed), Some((oid, recipe)));
        assert_eq!(secret(2).open_ids(&sealed), None);
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert_eq!(secret(1).open_ids(&bad), None);
        assert_ne!(secret(1).file_tag(&oid), oid);
        assert_ne!(secret(1).key_id(), secret(2).key_id());
        assert_eq!(secret(1).key_id().len(), 16);
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..20_000), key in any::<[u8; 32]>()) {
            let s = RepoSecret::from_bytes(key);
            let (id, env) = object(&plain);
            prop_assert_eq!(s.open(&id, &s.seal(&id, 9, &env)).unwrap(), (9, env));
        }
    }
}
