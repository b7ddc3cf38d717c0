//! The recipe: the full manifest behind a pointer, listing in file order the objects that
//! rebuild the file byte for byte. Binary with fixed-size entries so that "which entry
//! holds file offset X" is a binary search over the encoded bytes (mount and range reads
//! need that without decoding everything). Spec: docs/formats/recipe.md.

use crate::chunk_id::ChunkId;

pub const MAGIC: &[u8; 4] = b"DRCP";
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 24;
pub const ENTRY_LEN: usize = 56;
/// 20 GB of 16 KiB chunks is ~1.3 M entries; anything claiming far more is hostile.
const MAX_ENTRIES: u64 = 64 << 20;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A content-defined chunk of payload.
    Chunk,
    /// A structure box (or an `mdat` header) kept whole; `fourcc` says which.
    Box { fourcc: [u8; 4] },
}

/// One object of the file, at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    pub offset: u64,
    pub len: u32,
    pub stored_len: u32,
    pub kind: EntryKind,
    /// The chunk starts at a video keyframe sample.
    pub keyframe: bool,
}

impl Entry {
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipe {
    pub file_size: u64,
    pub entries: Vec<Entry>,
    /// Paths of assets this file references (project files); empty for media.
    pub dependencies: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecipeError {
    #[error("recipe: not a recipe (bad magic or shorter than its header)")]
    BadMagic,
    #[error("recipe: version {0} is newer than this git-dits understands; upgrade git-dits")]
    UnknownVersion(u8),
    #[error("recipe: {0}")]
    Malformed(String),
}

impl Recipe {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * ENTRY_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.file_size.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.dependencies.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&e.offset.to_be_bytes());
            out.extend_from_slice(&e.len.to_be_bytes());
            out.extend_from_slice(&e.stored_len.to_be_bytes());
            let (kind, fourcc) = match e.kind {
                EntryKind::Chunk => (0u8, [0u8; 4]),
                EntryKind::Box { fourcc } => (1u8, fourcc),
            };
            out.push(kind);
            out.push(u8::from(e.keyframe));
            out.extend_from_slice(&fourcc);
            out.extend_from_slice(&[0, 0]);
        }
        for d in &self.dependencies {
            let bytes = d.as_bytes();
            out.extend_from_slice(&(bytes.len().min(u16::MAX as usize) as u16).to_be_bytes());
            out.extend_from_slice(&bytes[..bytes.len().min(u16::MAX as usize)]);
        }
        out
    }

    /// Strict decode: entries must tile `[0, file_size)` exactly, in order.
    pub fn decode(bytes: &[u8]) -> Result<Recipe, RecipeError> {
        let bad = |m: &str| RecipeError::Malformed(m.to_string());
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(RecipeError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(RecipeError::UnknownVersion(bytes[4]));
        }
        let file_size = u64_at(bytes, 8);
        let count = u64::from(u32_at(bytes, 16));
        let dep_count = u32_at(bytes, 20);
        if count > MAX_ENTRIES {
            return Err(bad("entry count is implausibly large"));
        }
        let entries_end = HEADER_LEN + count as usize * ENTRY_LEN;
        if bytes.len() < entries_end {
            return Err(bad("shorter than its entry count says"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut expect_offset = 0u64;
        for raw in bytes[HEADER_LEN..entries_end].chunks_exact(ENTRY_LEN) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&raw[..32]);
            let offset = u64_at(raw, 32);
            let len = u32_at(raw, 40);
            let stored_len = u32_at(raw, 44);
            let kind = match raw[48] {
                0 => EntryKind::Chunk,
                1 => EntryKind::Box {
                    fourcc: [raw[50], raw[51], raw[52], raw[53]],
                },
                k => return Err(RecipeError::Malformed(format!("unknown entry kind {k}"))),
            };
            if offset != expect_offset || len == 0 {
                return Err(bad("entries do not tile the file"));
            }
            expect_offset = offset
                .checked_add(u64::from(len))
                .ok_or_else(|| bad("offset overflow"))?;
            entries.push(Entry {
                id: ChunkId(id),
                offset,
                len,
                stored_len,
                kind,
                keyframe: raw[49] & 1 == 1,
            });
        }
        if expect_offset != file_size {
            return Err(bad("entries do not add up to the file size"));
        }
        let mut dependencies = Vec::new();
        let mut pos = entries_end;
        for _ in 0..dep_count {
            let n = bytes
                .get(pos..pos + 2)
                .ok_or_else(|| bad("dependency list truncated"))?;
            let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
            let s = bytes
                .get(pos + 2..pos + 2 + n)
                .ok_or_else(|| bad("dependency list truncated"))?;
            dependencies.push(
                String::from_utf8(s.to_vec()).map_err(|_| bad("dependency path is not UTF-8"))?,
            );
            pos += 2 + n;
        }
        if pos != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(Recipe {
            file_size,
            entries,
            dependencies,
        })
    }

    /// Index of the entry holding byte `offset`, if inside the file.
    pub fn entry_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.file_size {
            return None;
        }
        Some(self.entries.partition_point(|e| e.end() <= offset))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn recipe_from_lens(lens: &[u32]) -> Recipe {
        let mut offset = 0;
        let entries = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let e = Entry {
                    id: ChunkId::of(&i.to_be_bytes()),
                    offset,
                    len,
                    stored_len: len + 4,
                    kind: if i % 3 == 0 {
                        EntryKind::Box { fourcc: *b"moov" }
                    } else {
                        EntryKind::Chunk
                    },
                    keyframe: i % 2 == 0,
                };
                offset += u64::from(len);
                e
            })
            .collect();
        Recipe {
            file_size: offset,
            entries,
            dependencies: vec!["a/b.wav".into()],
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(lens in proptest::collection::vec(1u32..300_000, 0..50)) {
            let r = recipe_from_lens(&lens);
            prop_assert_eq!(Recipe::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn any_truncation_is_an_error(lens in proptest::collection::vec(1u32..1000, 1..10), cut in 0usize..10_000) {
            let bytes = recipe_from_lens(&lens).encode();
            let cut = cut % bytes.len();
            prop_assert!(Recipe::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn entry_at_finds_the_covering_entry() {
        let r = recipe_from_lens(&[10, 20, 30]);
        assert_eq!(r.entry_at(0), Some(0));
        assert_eq!(r.entry_at(9), Some(0));
        assert_eq!(r.entry_at(10), Some(1));
        assert_eq!(r.entry_at(59), Some(2));
        assert_eq!(r.entry_at(60), None);
    }
}
