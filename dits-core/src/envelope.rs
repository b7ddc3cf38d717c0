//! The stored-object envelope: every object at rest (chunk, box, recipe) is wrapped as
//! `magic "DO" | version u8 | codec u8 | payload`, so compression now and encryption later
//! change the codec byte, never the format. See docs/formats/envelope.md.
//!
//! Opening an envelope always re-hashes the plaintext against the id it was asked for:
//! nothing read back from a store is trusted on its word.

use crate::chunk_id::ChunkId;

pub const MAGIC: &[u8; 2] = b"DO";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 4;

/// How the payload after the header is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
}

/// Whether compression is worth trying for an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionHint {
    /// Structure boxes, recipes, unknown files: try zstd, keep it if it saves ≥ 5%.
    Try,
    /// Encoded media samples: probe a 4 KiB sample first; most video is incompressible
    /// and a full zstd pass would halve add throughput for nothing.
    Probe,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("object {id}: not a Dits object envelope (bad magic or too short)")]
    BadMagic { id: ChunkId },
    #[error("object {id}: envelope version {version} is newer than this git-dits understands; upgrade git-dits")]
    UnknownVersion { id: ChunkId, version: u8 },
    #[error("object {id}: unknown codec {codec}")]
    UnknownCodec { id: ChunkId, codec: u8 },
    #[error("object {id}: zstd payload is corrupt: {source}")]
    Decompress { id: ChunkId, source: std::io::Error },
    #[error("object {id}: decoded {actual} bytes, expected {expected}")]
    WrongLength {
        id: ChunkId,
        expected: u64,
        actual: u64,
    },
    #[error("object {id}: content hashes to {actual}; the stored copy is corrupt")]
    HashMismatch { id: ChunkId, actual: ChunkId },
}

const ZSTD_LEVEL: i32 = 3;
const PROBE_LEN: usize = 4096;
const PROBE_LEVEL: i32 = 1;

/// zstd at `level` with a context kept per thread and level: making a context costs
/// more than probing 4 KiB with it, and a clean probes every media chunk. The output is
/// the same as a fresh context's (parameters are set once, by level, and never change).
fn compress(plain: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    use std::cell::RefCell;
    use zstd::bulk::Compressor;
    thread_local! {
        static PROBE: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
        static STORE: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    }
    let key = if level == PROBE_LEVEL { &PROBE } else { &STORE };
    key.with(|slot| {
        let mut slot = slot.borrow_mut();
        let mut z = match slot.take() {
            Some(z) => z,
            None => Compressor::new(level)?,
        };
        let out = z.compress(plain);
        *slot = Some(z);
        out
    })
}

/// Wraps `plain` for storage, choosing zstd only when it pays.
pub fn seal(plain: &[u8], hint: CompressionHint) -> Vec<u8> {
    let parts = seal_parts(plain, hint);
    let mut out = Vec::with_capacity(parts.len());
    out.extend_from_slice(&parts.header);
    out.extend_from_slice(&parts.payload);
    out
}

/// An envelope as its header and its payload, which borrows `plain` when it is stored
/// raw: a pack writer sends both parts in one vectored write instead of first copying
/// every stored byte into one buffer. Joined, they are exactly [`seal`]'s bytes.
pub struct SealedParts<'a> {
    pub header: [u8; HEADER_LEN],
    pub payload: std::borrow::Cow<'a, [u8]>,
}

impl SealedParts<'_> {
    /// The envelope's length in bytes.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// [`seal`] without joining header and payload.
pub fn seal_parts(plain: &[u8], hint: CompressionHint) -> SealedParts<'_> {
    let worth_trying = match hint {
        CompressionHint::Try => true,
        CompressionHint::Probe => probe_compresses(plain),
    };
    if worth_trying {
        if let Ok(z) = compress(plain, ZSTD_LEVEL) {
            if z.len() * 100 <= plain.len() * 95 {
                return SealedParts {
                    header: header(Codec::Zstd),
                    payload: z.into(),
                };
            }
        }
    }
    SealedParts {
        header: header(Codec::Raw),
        payload: plain.into(),
    }
}

fn probe_compresses(plain: &[u8]) -> bool {
    let sample = &plain[..plain.len().min(PROBE_LEN)];
    match compress(sample, PROBE_LEVEL) {
        Ok(z) => z.len() * 100 <= sample.len() * 90,
        Err(_) => false,
    }
}

fn header(codec: Codec) -> [u8; HEADER_LEN] {
    [MAGIC[0], MAGIC[1], VERSION, codec as u8]
}

/// Unwraps a stored object and checks it really is `id` of `plain_len` bytes.
pub fn open(id: &ChunkId, sealed: &[u8], plain_len: u64) -> Result<Vec<u8>, EnvelopeError> {
    Ok(checked_plain(id, sealed, plain_len)?.into_owned())
}

/// Checks a stored object really is `id` of `plain_len` bytes without keeping its bytes:
/// for a receiver that stores the envelope as it came (the hub on upload), which then
/// neither copies a raw payload nor allocates for it.
pub fn verify(id: &ChunkId, sealed: &[u8], plain_len: u64) -> Result<(), EnvelopeError> {
    checked_plain(id, sealed, plain_len).map(drop)
}

/// The plaintext of `sealed`, borrowed when it is stored raw, once it is known to be `id`.
fn checked_plain<'s>(
    id: &ChunkId,
    sealed: &'s [u8],
    plain_len: u64,
) -> Result<std::borrow::Cow<'s, [u8]>, EnvelopeError> {
    if sealed.len() < HEADER_LEN || &sealed[..2] != MAGIC {
        return Err(EnvelopeError::BadMagic { id: *id });
    }
    if sealed[2] != VERSION {
        return Err(EnvelopeError::UnknownVersion {
            id: *id,
            version: sealed[2],
        });
    }
    let payload = &sealed[HEADER_LEN..];
    let plain = match sealed[3] {
        0 => std::borrow::Cow::Borrowed(payload),
        1 => {
            // The expected length bounds the allocation: a hostile frame can't balloon it.
            let cap = usize::try_from(plain_len).unwrap_or(usize::MAX);
            std::borrow::Cow::Owned(
                zstd::bulk::decompress(payload, cap)
                    .map_err(|source| EnvelopeError::Decompress { id: *id, source })?,
            )
        }
        codec => return Err(EnvelopeError::UnknownCodec { id: *id, codec }),
    };
    if plain.len() as u64 != plain_len {
        return Err(EnvelopeError::WrongLength {
            id: *id,
            expected: plain_len,
            actual: plain.len() as u64,
        });
    }
    let actual = ChunkId::of(&plain);
    if actual != *id {
        return Err(EnvelopeError::HashMismatch { id: *id, actual });
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compressible_objects_are_zstd_and_random_ones_raw() {
        let text = b"moov trak mdia ".repeat(1000);
        assert_eq!(seal(&text, CompressionHint::Try)[3], Codec::Zstd as u8);
        let noise: Vec<u8> = (0..65536u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let sealed = seal(&noise, CompressionHint::Probe);
        assert_eq!(
            open(&ChunkId::of(&noise), &sealed, noise.len() as u64).unwrap(),
            noise
        );
    }

    #[test]
    fn a_flipped_byte_is_reported_as_corruption() {
        let plain = vec![7u8; 1000];
        let id = ChunkId::of(&plain);
        let mut sealed = seal(&plain, CompressionHint::Probe);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(open(&id, &sealed, 1000).is_err());
    }

    #[test]
    fn verify_accepts_what_open_accepts_and_refuses_what_it_refuses() {
        let noise: Vec<u8> = (0..65536u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let text = b"moov trak mdia ".repeat(1000);
        for (plain, hint) in [
            (&noise, CompressionHint::Probe),
            (&text, CompressionHint::Try),
        ] {
            let id = ChunkId::of(plain);
            let len = plain.len() as u64;
            let sealed = seal(plain, hint);
            assert!(verify(&id, &sealed, len).is_ok());
            let mut flipped = sealed.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(open(&id, &flipped, len).is_err() && verify(&id, &flipped, len).is_err());
            assert!(verify(&id, &sealed, len + 1).is_err());
            assert!(verify(&ChunkId::of(b"other"), &sealed, len).is_err());
        }
    }

    proptest! {
        #[test]
        fn seal_open_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let id = ChunkId::of(&plain);
            for hint in [CompressionHint::Try, CompressionHint::Probe] {
                let sealed = seal(&plain, hint);
                prop_assert_eq!(open(&id, &sealed, plain.len() as u64).unwrap(), plain.clone());
            }
        }
    }
}
