//! Content-defined chunking (FastCDC 2020, BLAKE3 ids) of a byte range, with forced cut
//! points: each keyframe starts a new chunk, so trims and re-muxes keep whole GOPs shared.
//! Between forced cuts the boundaries are content-defined, so they resynchronise after
//! an insertion or deletion.

use std::io::{self, Read, Seek, SeekFrom};

use fastcdc::v2020::StreamCDC;

use crate::chunk_id::ChunkId;

pub const MIN_CHUNK: u32 = 16 * 1024;
pub const AVG_CHUNK: u32 = 64 * 1024;
pub const MAX_CHUNK: u32 = 256 * 1024;

/// FastCDC bounds for one byte sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSizes {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkSizes {
    /// Video and raw bytes: 16/64/256 KiB.
    pub const DEFAULT: ChunkSizes = ChunkSizes {
        min: MIN_CHUNK,
        avg: AVG_CHUNK,
        max: MAX_CHUNK,
    };
    /// Audio, subtitles and other low-rate tracks: 2/8/64 KiB. A 128 kb/s AAC track is
    /// 16 KB a second, so 64 KiB chunks would be 4 s each and a trim or a small re-edit
    /// would rewrite most of a short track; smaller chunks resynchronise within a second.
    pub const LOW_RATE: ChunkSizes = ChunkSizes {
        min: 2 * 1024,
        avg: 8 * 1024,
        max: 64 * 1024,
    };
}

/// One chunk of a range.
#[derive(Debug)]
pub struct Chunk {
    pub id: ChunkId,
    /// Absolute offset in the file.
    pub offset: u64,
    pub data: Vec<u8>,
    /// The chunk starts at a forced cut (a keyframe).
    pub keyframe: bool,
}

/// Chunks `[offset, offset+len)` of `file`, starting a chunk at each of `cuts` (absolute
/// offsets, ascending, inside the range), calling `sink` for each chunk in order.
pub fn chunk_range<R, F>(
    file: &mut R,
    offset: u64,
    len: u64,
    cuts: &[u64],
    sizes: ChunkSizes,
    mut sink: F,
) -> io::Result<()>
where
    R: Read + Seek,
    F: FnMut(Chunk) -> io::Result<()>,
{
    let end = offset + len;
    let mut starts: Vec<(u64, bool)> = Vec::with_capacity(cuts.len() + 1);
    starts.push((offset, false));
    for &c in cuts.iter().filter(|&&c| c > offset && c < end) {
        starts.push((c, true));
    }
    if cuts.first() == Some(&offset) {
        starts[0].1 = true;
    }
    for (i, &(seg_start, is_key)) in starts.iter().enumerate() {
        let seg_end = starts.get(i + 1).map_or(end, |s| s.0);
        if seg_end <= seg_start {
            continue;
        }
        file.seek(SeekFrom::Start(seg_start))?;
        let source = (&mut *file).take(seg_end - seg_start);
        let mut first = true;
        for chunk in StreamCDC::new(source, sizes.min, sizes.avg, sizes.max) {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => io,
                other => io::Error::other(other.to_string()),
            })?;
            sink(Chunk {
                id: ChunkId::of(&chunk.data),
                offset: seg_start + chunk.offset,
                data: chunk.data,
                keyframe: first && is_key,
            })?;
            first = false;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn collect(data: &[u8], cuts: &[u64]) -> Vec<Chunk> {
        let mut out = Vec::new();
        chunk_range(
            &mut Cursor::new(data),
            0,
            data.len() as u64,
            cuts,
            ChunkSizes::DEFAULT,
            |c| {
                out.push(c);
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn forced_cuts_start_keyframe_chunks() {
        let data = pseudo_random(1 << 20, 7);
        let chunks = collect(&data, &[300_000, 700_001]);
        assert!(chunks.iter().any(|c| c.offset == 300_000 && c.keyframe));
        assert!(chunks.iter().any(|c| c.offset == 700_001 && c.keyframe));
        assert_eq!(chunks.iter().filter(|c| c.keyframe).count(), 2);
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(4 << 20, 11);
        let mut edited = data[..1_000_000].to_vec();
        edited.extend_from_slice(b"inserted bytes");
        edited.extend_from_slice(&data[1_000_000..]);
        let before: std::collections::HashSet<_> =
            collect(&data, &[]).iter().map(|c| c.id).collect();
        let after = collect(&edited, &[]);
        let new_bytes: usize = after
            .iter()
            .filter(|c| !before.contains(&c.id))
            .map(|c| c.data.len())
            .sum();
        assert!(new_bytes < 3 * MAX_CHUNK as usize, "{new_bytes} new bytes");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn chunks_tile_the_range_within_size_bounds(len in 0usize..900_000, seed in any::<u64>(), cut in 0u64..900_000) {
            let data = pseudo_random(len, seed);
            let chunks = collect(&data, &[cut]);
            let mut pos = 0u64;
            for (i, c) in chunks.iter().enumerate() {
                prop_assert_eq!(c.offset, pos);
                prop_assert!(c.data.len() <= MAX_CHUNK as usize);
                let next_is_forced = chunks.get(i + 1).is_some_and(|n| n.keyframe);
                prop_assert!(c.data.len() >= MIN_CHUNK as usize || i + 1 == chunks.len() || next_is_forced);
                prop_assert_eq!(c.id, ChunkId::of(&c.data));
                pos += c.data.len() as u64;
            }
            prop_assert_eq!(pos, len as u64);
        }
    }
}
