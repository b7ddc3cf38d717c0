//! The recipe: the full manifest behind a pointer, listing in file order the objects that
//! rebuild the file byte for byte. Binary with fixed-size entries so that "which entry
//! holds file offset X" is a binary search over the encoded bytes (mount and range reads
//! need that without decoding everything). Spec: docs/formats/recipe.md.

use crate::chunk_id::ChunkId;

pub const MAGIC: &[u8; 4] = b"DRCP";
pub const VERSION: u8 = 2;
const HEADER_LEN: usize = 24;
pub const ENTRY_LEN: usize = 64;
/// Version 1 entries (whole objects only) are still read: stores written before
/// track-level splitting hold them.
const V1_ENTRY_LEN: usize = 56;
/// 20 GB of 16 KiB chunks is ~1.3 M entries; anything claiming far more is hostile.
const MAX_ENTRIES: u64 = 64 << 20;
/// No object is larger than this (the wire's `MAX_OBJECT`, and the largest structure box
/// kept whole, `media::MAX_OBJECT_BOX`): an entry naming a bigger one is refused, so what
/// a reader holds for one entry is bounded whatever a recipe claims.
pub const MAX_OBJECT_LEN: u32 = 64 << 20;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A content-defined chunk of payload (or a slice of one).
    Chunk,
    /// A structure box (or an `mdat` header) kept whole; `fourcc` says which.
    Box { fourcc: [u8; 4] },
}

/// Bytes `[offset, offset+len)` of the file, which are bytes
/// `[chunk_offset, chunk_offset+len)` of object `id`. Byte-level entries cover a whole
/// object; track-level entries cover a slice of a chunk cut from one track's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    pub offset: u64,
    pub len: u32,
    pub chunk_offset: u32,
    /// The whole object's length.
    pub chunk_len: u32,
    pub stored_len: u32,
    pub kind: EntryKind,
    /// The chunk starts at a video keyframe sample (and this entry holds that start).
    pub keyframe: bool,
    /// 0 for whole objects laid down in file order; otherwise the sample stream
    /// (one per track, plus one for `mdat` bytes no sample covers) the chunk came from.
    pub stream: u16,
}

impl Entry {
    /// An entry covering the whole object at `offset`.
    pub fn whole(id: ChunkId, offset: u64, len: u32, stored_len: u32, kind: EntryKind) -> Self {
        Entry {
            id,
            offset,
            len,
            chunk_offset: 0,
            chunk_len: len,
            stored_len,
            kind,
            keyframe: false,
            stream: 0,
        }
    }

    /// One past the entry's last byte. An entry read through a [`RecipeView`] is not
    /// checked against the others, so a hostile one may claim to end past `u64::MAX`:
    /// that end is clamped rather than overflowing (a panic in debug builds).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }

    pub fn is_whole(&self) -> bool {
        self.chunk_offset == 0 && self.len == self.chunk_len
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
    /// The recipe describes a file of another size than the pointer naming it says.
    #[error("recipe describes a file of {recipe_says} bytes but the pointer says {pointer_says}")]
    WrongSize { recipe_says: u64, pointer_says: u64 },
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
            out.extend_from_slice(&e.chunk_offset.to_be_bytes());
            out.extend_from_slice(&e.chunk_len.to_be_bytes());
            out.extend_from_slice(&e.stored_len.to_be_bytes());
            let (kind, fourcc) = match e.kind {
                EntryKind::Chunk => (0u8, [0u8; 4]),
                EntryKind::Box { fourcc } => (1u8, fourcc),
            };
            out.push(kind);
            out.push(u8::from(e.keyframe));
            out.extend_from_slice(&e.stream.to_be_bytes());
            out.extend_from_slice(&fourcc);
        }
        for d in &self.dependencies {
            let bytes = d.as_bytes();
            out.extend_from_slice(&(bytes.len().min(u16::MAX as usize) as u16).to_be_bytes());
            out.extend_from_slice(&bytes[..bytes.len().min(u16::MAX as usize)]);
        }
        out
    }

    /// [`Recipe::decode`] for a pointer that says its file is `file_size` bytes. A recipe
    /// that describes any other size is refused from its header, before its entries are
    /// decoded: what a smudge writes is bounded by the pointer's size, and nothing a
    /// mismatched recipe names is fetched or expanded.
    pub fn decode_for_size(bytes: &[u8], file_size: u64) -> Result<Recipe, RecipeError> {
        let recipe_says = RecipeView::new(bytes)?.file_size;
        if recipe_says != file_size {
            return Err(RecipeError::WrongSize {
                recipe_says,
                pointer_says: file_size,
            });
        }
        Self::decode(bytes)
    }

    /// Strict decode: entries must tile `[0, file_size)` exactly, in order, and each
    /// must lie inside its object, which is at most [`MAX_OBJECT_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Recipe, RecipeError> {
        let bad = |m: &str| RecipeError::Malformed(m.to_string());
        let view = RecipeView::new(bytes)?;
        // Each entry covers at least one byte, so a recipe listing more entries than its
        // file has bytes can't tile it: refused before allocating for the entries.
        if view.count as u64 > view.file_size {
            return Err(bad("more entries than the file has bytes"));
        }
        let file_size = view.file_size;
        let dep_count = u32_at(bytes, 20);
        let entries_end = HEADER_LEN + view.count * view.entry_len;
        let mut entries = Vec::with_capacity(view.count);
        let mut expect_offset = 0u64;
        for i in 0..view.count {
            let e = view.entry(i)?;
            if e.offset != expect_offset || e.len == 0 {
                return Err(bad("entries do not tile the file"));
            }
            if u64::from(e.chunk_offset) + u64::from(e.len) > u64::from(e.chunk_len) {
                return Err(bad("an entry reaches past the end of its object"));
            }
            if e.chunk_len > MAX_OBJECT_LEN {
                return Err(bad("an entry names an object larger than 64 MiB"));
            }
            if matches!(e.kind, EntryKind::Box { .. }) && !e.is_whole() {
                return Err(bad("a box entry must cover its whole object"));
            }
            expect_offset = e
                .offset
                .checked_add(u64::from(e.len))
                .ok_or_else(|| bad("offset overflow"))?;
            entries.push(e);
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

    /// Each distinct object once, in first-use order, with its full length.
    pub fn unique_objects(&self) -> impl Iterator<Item = &Entry> + '_ {
        let mut seen = std::collections::HashSet::new();
        self.entries.iter().filter(move |e| seen.insert(e.id))
    }
}

/// A recipe read in place: "which entries hold bytes `[a, b)`" by binary search over the
/// encoded entries, without decoding the rest. For range reads and the mount on recipes
/// with millions of entries. Entries are decoded (and bounds-checked) as they are read;
/// whole-recipe rules (tiling) are what `Recipe::decode` checks.
pub struct RecipeView<'a> {
    bytes: &'a [u8],
    entry_len: usize,
    count: usize,
    pub file_size: u64,
}

impl<'a> RecipeView<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, RecipeError> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(RecipeError::BadMagic);
        }
        let entry_len = match bytes[4] {
            1 => V1_ENTRY_LEN,
            2 => ENTRY_LEN,
            v => return Err(RecipeError::UnknownVersion(v)),
        };
        let count = u32_at(bytes, 16) as usize;
        if count as u64 > MAX_ENTRIES {
            return Err(RecipeError::Malformed(
                "entry count is implausibly large".into(),
            ));
        }
        if bytes.len() < HEADER_LEN + count * entry_len {
            return Err(RecipeError::Malformed(
                "shorter than its entry count says".into(),
            ));
        }
        Ok(RecipeView {
            bytes,
            entry_len,
            count,
            file_size: u64_at(bytes, 8),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn entry(&self, i: usize) -> Result<Entry, RecipeError> {
        let at = HEADER_LEN + i * self.entry_len;
        let raw = self
            .bytes
            .get(at..at + self.entry_len)
            .ok_or_else(|| RecipeError::Malformed(format!("no entry {i}")))?;
        if self.entry_len == V1_ENTRY_LEN {
            decode_v1_entry(raw)
        } else {
            decode_entry(raw)
        }
    }

    /// The entries covering file bytes `[start, end)`, in file order.
    pub fn entries_in(&self, start: u64, end: u64) -> Result<Vec<Entry>, RecipeError> {
        let end = end.min(self.file_size);
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        // The first entry whose end is past `start`; entries are in file order.
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid)?.end() <= start {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for i in lo..self.count {
            let e = self.entry(i)?;
            if e.offset >= end {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
}

fn decode_kind(kind: u8, fourcc: &[u8]) -> Result<EntryKind, RecipeError> {
    match kind {
        0 => Ok(EntryKind::Chunk),
        1 => Ok(EntryKind::Box {
            fourcc: [fourcc[0], fourcc[1], fourcc[2], fourcc[3]],
        }),
        k => Err(RecipeError::Malformed(format!("unknown entry kind {k}"))),
    }
}

fn decode_entry(raw: &[u8]) -> Result<Entry, RecipeError> {
    let mut id = [0u8; 32];
    id.copy_from_slice(&raw[..32]);
    Ok(Entry {
        id: ChunkId(id),
        offset: u64_at(raw, 32),
        len: u32_at(raw, 40),
        chunk_offset: u32_at(raw, 44),
        chunk_len: u32_at(raw, 48),
        stored_len: u32_at(raw, 52),
        kind: decode_kind(raw[56], &raw[60..64])?,
        keyframe: raw[57] & 1 == 1,
        stream: u16::from_be_bytes([raw[58], raw[59]]),
    })
}

/// Version 1: id | offset u64 | len u32 | stored_len u32 | kind | flags | fourcc | 2 zero.
fn decode_v1_entry(raw: &[u8]) -> Result<Entry, RecipeError> {
    let mut id = [0u8; 32];
    id.copy_from_slice(&raw[..32]);
    let len = u32_at(raw, 40);
    let mut e = Entry::whole(
        ChunkId(id),
        u64_at(raw, 32),
        len,
        u32_at(raw, 44),
        decode_kind(raw[48], &raw[50..54])?,
    );
    e.keyframe = raw[49] & 1 == 1;
    Ok(e)
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
                let kind = if i % 3 == 0 {
                    EntryKind::Box { fourcc: *b"moov" }
                } else {
                    EntryKind::Chunk
                };
                let mut e = Entry::whole(ChunkId::of(&i.to_be_bytes()), offset, len, len + 4, kind);
                e.keyframe = i % 2 == 0;
                if i % 3 == 2 {
                    // A slice from the middle of a bigger chunk of stream 2.
                    e.chunk_offset = 7;
                    e.chunk_len = len + 100;
                    e.stream = 2;
                }
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
    fn a_slice_past_its_object_is_refused() {
        let mut r = recipe_from_lens(&[10, 20, 30]);
        r.entries[1].chunk_offset = 1;
        r.entries[1].chunk_len = 20;
        assert!(Recipe::decode(&r.encode()).is_err());
    }

    #[test]
    fn version_1_recipes_still_decode() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"DRCP\x01\0\0\0");
        v1.extend_from_slice(&10u64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&0u32.to_be_bytes());
        v1.extend_from_slice(&[9u8; 32]);
        v1.extend_from_slice(&0u64.to_be_bytes());
        v1.extend_from_slice(&10u32.to_be_bytes());
        v1.extend_from_slice(&12u32.to_be_bytes());
        v1.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        let r = Recipe::decode(&v1).unwrap();
        assert_eq!(r.entries[0].chunk_len, 10);
        assert!(r.entries[0].keyframe && r.entries[0].is_whole());
    }

    proptest! {
        #[test]
        fn view_finds_the_same_entries_as_a_full_decode(
            lens in proptest::collection::vec(1u32..5000, 1..60),
            a in 0u64..200_000,
            span in 0u64..20_000,
        ) {
            let r = recipe_from_lens(&lens);
            let bytes = r.encode();
            let view = RecipeView::new(&bytes).unwrap();
            let expected: Vec<Entry> = r
                .entries
                .iter()
                .filter(|e| e.end() > a && e.offset < a + span)
                .copied()
                .collect();
            prop_assert_eq!(view.entries_in(a, a + span).unwrap(), expected);
        }
    }

    /// Found by `fuzz/`'s `recipe` target: `entries_in` over a view whose entry claims
    /// an offset near `u64::MAX` overflowed computing the entry's end.
    #[test]
    fn view_of_an_entry_ending_past_u64_max_is_searched_without_overflow() {
        let mut r = recipe_from_lens(&[10, 20]);
        r.entries[1].offset = u64::MAX - 5;
        r.file_size = u64::MAX;
        let bytes = r.encode();
        assert!(Recipe::decode(&bytes).is_err());
        let view = RecipeView::new(&bytes).unwrap();
        let found = view.entries_in(u64::MAX - 2, u64::MAX).unwrap();
        assert_eq!(found, vec![r.entries[1]]);
        assert_eq!(found[0].end(), u64::MAX);
    }

    #[test]
    fn a_recipe_of_another_size_than_the_pointer_is_refused_from_its_header() {
        let r = recipe_from_lens(&[10, 20, 30]);
        let bytes = r.encode();
        assert_eq!(Recipe::decode_for_size(&bytes, 60).unwrap(), r);
        assert_eq!(
            Recipe::decode_for_size(&bytes, 59),
            Err(RecipeError::WrongSize {
                recipe_says: 60,
                pointer_says: 59
            })
        );
        // Only the header is read: a body that would fail to decode is never looked at.
        let mut header_only = bytes[..HEADER_LEN].to_vec();
        header_only[8..16].copy_from_slice(&(64u64 << 40).to_be_bytes());
        header_only[16..20].copy_from_slice(&0u32.to_be_bytes());
        assert!(matches!(
            Recipe::decode_for_size(&header_only, 1000),
            Err(RecipeError::WrongSize { .. })
        ));
    }

    #[test]
    fn entries_naming_objects_over_64_mib_are_refused() {
        let mut r = recipe_from_lens(&[10]);
        r.entries[0].kind = EntryKind::Chunk;
        r.entries[0].chunk_len = MAX_OBJECT_LEN + 1;
        assert!(Recipe::decode(&r.encode()).is_err());
        r.entries[0].chunk_len = MAX_OBJECT_LEN;
        assert!(Recipe::decode(&r.encode()).is_ok());
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
