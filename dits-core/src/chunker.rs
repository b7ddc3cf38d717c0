//! Content-defined chunking (FastCDC 2020, BLAKE3 ids) of a byte range, with forced cut
//! points: each keyframe starts a new chunk, so trims and re-muxes keep whole GOPs shared.
//! Between forced cuts the boundaries are content-defined, so they resynchronise after
//! an insertion or deletion.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{mpsc, Mutex};

use fastcdc::v2020::FastCDC;

use crate::chunk_id::ChunkId;

pub const MIN_CHUNK: u32 = 16 * 1024;
pub const AVG_CHUNK: u32 = 64 * 1024;
pub const MAX_CHUNK: u32 = 256 * 1024;

/// Bytes the cutting thread reads and cuts at a time; a few are in flight at once.
const BLOCK: usize = 1 << 20;
/// Cut blocks queued between the two threads: bounds memory to a few `BLOCK`s.
const BLOCKS_IN_FLIGHT: usize = 4;

/// Whole blocks kept between calls. A `git add` of many small files calls [`chunk_range`]
/// a few times per file; zeroing fresh 1 MiB blocks each time was 5–7% of its CPU.
static SPARE_BLOCKS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn take_block(len: usize) -> Vec<u8> {
    if len == BLOCK {
        if let Some(block) = SPARE_BLOCKS.lock().ok().and_then(|mut spare| spare.pop()) {
            return block;
        }
    }
    vec![0u8; len]
}

fn give_back_block(block: Vec<u8>) {
    if block.len() == BLOCK {
        if let Ok(mut spare) = SPARE_BLOCKS.lock() {
            if spare.len() < BLOCKS_IN_FLIGHT + 2 {
                spare.push(block);
            }
        }
    }
}

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

/// One chunk of a range, borrowed from the chunker's buffer for the sink's call.
#[derive(Debug)]
pub struct Chunk<'a> {
    pub id: ChunkId,
    /// Absolute offset in the file.
    pub offset: u64,
    pub data: &'a [u8],
    /// The chunk starts at a forced cut (a keyframe).
    pub keyframe: bool,
}

/// Chunks `[offset, offset+len)` of `file`, starting a chunk at each of `cuts` (absolute
/// offsets, ascending, inside the range), calling `sink` for each chunk in order.
///
/// Two threads share the work: one reads `file` in `BLOCK`s and finds the cut points
/// (FastCDC's gear hash), the calling thread hashes each chunk and runs `sink` (which
/// seals and stores it). Cut points are exactly those of `fastcdc::v2020::StreamCDC`
/// run over each segment between forced cuts: FastCDC only ever looks at the next
/// `max` bytes, and it is always given `min(max, rest of segment)` or more.
pub fn chunk_range<R, F>(
    file: &mut R,
    offset: u64,
    len: u64,
    cuts: &[u64],
    sizes: ChunkSizes,
    mut sink: F,
) -> io::Result<()>
where
    R: Read + Seek + Send,
    F: FnMut(Chunk<'_>) -> io::Result<()>,
{
    let segments = segments(offset, len, cuts);
    // A range that fits in less than a block (an audio track, a short clip) gets a block
    // of its size: nothing past it would ever be read.
    let block_len = usize::try_from(len)
        .unwrap_or(BLOCK)
        .clamp(sizes.max as usize, BLOCK);
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<CutBlock>>(BLOCKS_IN_FLIGHT);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let cutting = scope.spawn(move || {
            let mut cutter = Cutter {
                sizes,
                block_len,
                full_tx,
                free_rx,
            };
            if let Err(e) = cutter.cut_segments(file, &segments) {
                // The receiver may be gone (the sink failed first); nothing to tell then.
                let _ = cutter.full_tx.send(Err(e));
            }
            cutter.free_rx
        });
        // Dropping `full_rx` on an early return stops the cutter at its next send.
        for block in full_rx {
            let block = block?;
            for cut in &block.cuts {
                let data = &block.bytes[cut.start..cut.end];
                sink(Chunk {
                    id: ChunkId::of(data),
                    offset: cut.offset,
                    data,
                    keyframe: cut.keyframe,
                })?;
            }
            let _ = free_tx.send(block.bytes);
        }
        // The blocks handed back and not reused are kept for the next range.
        if let Ok(free_rx) = cutting.join() {
            free_rx.try_iter().for_each(give_back_block);
        }
        Ok(())
    })
}

/// `(start, end, starts at a forced cut)` of each stretch between forced cuts.
fn segments(offset: u64, len: u64, cuts: &[u64]) -> Vec<(u64, u64, bool)> {
    let end = offset + len;
    let mut starts: Vec<(u64, bool)> = Vec::with_capacity(cuts.len() + 1);
    starts.push((offset, false));
    for &c in cuts.iter().filter(|&&c| c > offset && c < end) {
        starts.push((c, true));
    }
    if cuts.first() == Some(&offset) {
        starts[0].1 = true;
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &(seg_start, is_key)) in starts.iter().enumerate() {
        let seg_end = starts.get(i + 1).map_or(end, |s| s.0);
        if seg_end > seg_start {
            out.push((seg_start, seg_end, is_key));
        }
    }
    out
}

/// Bytes read from the source and the chunks cut in them, in order.
struct CutBlock {
    bytes: Vec<u8>,
    cuts: Vec<Cut>,
}

struct Cut {
    start: usize,
    end: usize,
    offset: u64,
    keyframe: bool,
}

/// The cutting thread: fills blocks, finds cut points, ships blocks.
struct Cutter {
    sizes: ChunkSizes,
    /// Length of every block of this range (`BLOCK`, or less for a short range).
    block_len: usize,
    full_tx: mpsc::SyncSender<io::Result<CutBlock>>,
    free_rx: mpsc::Receiver<Vec<u8>>,
}

impl Cutter {
    fn cut_segments<R: Read + Seek>(
        &mut self,
        file: &mut R,
        segments: &[(u64, u64, bool)],
    ) -> io::Result<()> {
        let max = self.sizes.max as usize;
        let mut block = self.fresh_block();
        // `block.bytes[cur..filled]` are read but not yet cut.
        let (mut cur, mut filled) = (0usize, 0usize);
        for &(seg_start, seg_end, is_key) in segments {
            file.seek(SeekFrom::Start(seg_start))?;
            let mut unread = seg_end - seg_start;
            let mut next_offset = seg_start;
            let mut first = true;
            loop {
                if filled - cur < max && unread > 0 {
                    let want = unread.min(max as u64) as usize;
                    if self.block_len - filled < want {
                        let mut next = self.fresh_block();
                        next.bytes[..filled - cur].copy_from_slice(&block.bytes[cur..filled]);
                        filled -= cur;
                        cur = 0;
                        self.ship(std::mem::replace(&mut block, next))?;
                    }
                    let room = (self.block_len - filled)
                        .min(usize::try_from(unread).unwrap_or(usize::MAX));
                    let n = read_up_to(file, &mut block.bytes[filled..filled + room])?;
                    filled += n;
                    // A short read means the source ended early; cut what there is.
                    unread = if n < room { 0 } else { unread - n as u64 };
                    continue;
                }
                if cur == filled {
                    break;
                }
                let cdc = FastCDC::new(
                    &block.bytes[..filled],
                    self.sizes.min,
                    self.sizes.avg,
                    self.sizes.max,
                );
                while cur < filled && (filled - cur >= max || unread == 0) {
                    let (_, end) = cdc.cut(cur, filled - cur);
                    block.cuts.push(Cut {
                        start: cur,
                        end,
                        offset: next_offset,
                        keyframe: first && is_key,
                    });
                    next_offset += (end - cur) as u64;
                    cur = end;
                    first = false;
                }
            }
        }
        if !block.cuts.is_empty() {
            self.ship(block)?;
        }
        Ok(())
    }

    /// A block with a recycled buffer if one came back, else a new one.
    fn fresh_block(&self) -> CutBlock {
        let bytes = self
            .free_rx
            .try_recv()
            .unwrap_or_else(|_| take_block(self.block_len));
        CutBlock {
            bytes,
            cuts: Vec::new(),
        }
    }

    fn ship(&self, block: CutBlock) -> io::Result<()> {
        self.full_tx
            .send(Ok(block))
            .map_err(|_| io::Error::other("chunk consumer stopped"))
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
pub(crate) fn read_up_to<R: Read>(source: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match source.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::test_bytes;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// A chunk copied out of the sink call.
    #[derive(Debug, PartialEq)]
    struct Owned {
        id: ChunkId,
        offset: u64,
        data: Vec<u8>,
        keyframe: bool,
    }

    fn collect_sized(data: &[u8], cuts: &[u64], sizes: ChunkSizes) -> Vec<Owned> {
        let mut out = Vec::new();
        chunk_range(
            &mut Cursor::new(data),
            0,
            data.len() as u64,
            cuts,
            sizes,
            |c| {
                out.push(Owned {
                    id: c.id,
                    offset: c.offset,
                    data: c.data.to_vec(),
                    keyframe: c.keyframe,
                });
                Ok(())
            },
        )
        .unwrap();
        out
    }

    fn collect(data: &[u8], cuts: &[u64]) -> Vec<Owned> {
        collect_sized(data, cuts, ChunkSizes::DEFAULT)
    }

    /// What the chunker did before it cut blocks itself: fastcdc's StreamCDC over each
    /// segment. The stored recipes of every existing repository depend on these cuts.
    fn reference(data: &[u8], cuts: &[u64], sizes: ChunkSizes) -> Vec<Owned> {
        let mut out = Vec::new();
        for (start, end, key) in segments(0, data.len() as u64, cuts) {
            let segment = &data[start as usize..end as usize];
            let cdc = fastcdc::v2020::StreamCDC::new(segment, sizes.min, sizes.avg, sizes.max);
            for (i, c) in cdc.enumerate() {
                let c = c.unwrap();
                out.push(Owned {
                    id: ChunkId::of(&c.data),
                    offset: start + c.offset,
                    data: c.data,
                    keyframe: i == 0 && key,
                });
            }
        }
        out
    }

    #[test]
    fn cuts_match_streamcdc_across_blocks_and_segments() {
        let data = test_bytes(11 << 20, 5);
        let cuts = [0, 3_000_000, 3_000_100, 4_194_300, 9_999_999];
        for sizes in [ChunkSizes::DEFAULT, ChunkSizes::LOW_RATE] {
            assert_eq!(
                collect_sized(&data, &cuts, sizes),
                reference(&data, &cuts, sizes)
            );
            assert_eq!(
                collect_sized(&data, &[], sizes),
                reference(&data, &[], sizes)
            );
        }
    }

    #[test]
    fn a_failing_sink_stops_the_chunker() {
        let data = test_bytes(12 << 20, 9);
        let mut calls = 0;
        let err = chunk_range(
            &mut Cursor::new(&data),
            0,
            data.len() as u64,
            &[],
            ChunkSizes::DEFAULT,
            |_| {
                calls += 1;
                Err(io::Error::other("full"))
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "full");
        assert_eq!(calls, 1);
    }

    #[test]
    fn forced_cuts_start_keyframe_chunks() {
        let data = test_bytes(1 << 20, 7);
        let chunks = collect(&data, &[300_000, 700_001]);
        assert!(chunks.iter().any(|c| c.offset == 300_000 && c.keyframe));
        assert!(chunks.iter().any(|c| c.offset == 700_001 && c.keyframe));
        assert_eq!(chunks.iter().filter(|c| c.keyframe).count(), 2);
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let data = test_bytes(4 << 20, 11);
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
        fn cuts_match_streamcdc(len in 0usize..2_000_000, seed in any::<u64>(), cut in 0u64..2_000_000, low in any::<bool>()) {
            let data = test_bytes(len, seed);
            let sizes = if low { ChunkSizes::LOW_RATE } else { ChunkSizes::DEFAULT };
            prop_assert_eq!(collect_sized(&data, &[cut], sizes), reference(&data, &[cut], sizes));
        }

        #[test]
        fn chunks_tile_the_range_within_size_bounds(len in 0usize..900_000, seed in any::<u64>(), cut in 0u64..900_000) {
            let data = test_bytes(len, seed);
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
