//! Track metadata from a `moov` box held in memory: handler, codec, dimensions, duration
//! and, for video, the file offsets of keyframe samples (from `stss`, `stsz`, `stsc`,
//! `stco`/`co64`). Every table count is checked against the bytes that hold it before
//! anything is allocated; a malformed table drops the keyframe list, never the add.

use super::boxes::{children, find_child, fourcc_str};

/// What one `trak` says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackInfo {
    pub track_id: u32,
    /// `vide`, `soun`, `subt`, `text`, ...
    pub handler: String,
    /// First sample entry's type in `stsd`: `avc1`, `hvc1`, `mp4a`, ...
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub duration_secs: f64,
    pub sample_count: u64,
    /// Absolute file offsets of sync samples (video only), ascending.
    pub keyframe_offsets: Vec<u64>,
}

/// Movie-level facts from `mvhd` plus each track.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MovieInfo {
    pub duration_secs: f64,
    pub tracks: Vec<TrackInfo>,
}

/// A sample table past this many samples is treated as hostile (a 24-hour 120 fps video
/// has about 10 million).
const MAX_SAMPLES: u64 = 50_000_000;

/// Reads a `moov` payload. Never fails: missing or malformed parts are left empty.
pub fn parse_moov(moov: &[u8]) -> MovieInfo {
    let mut info = MovieInfo::default();
    if let Some(mvhd) = find_child(moov, b"mvhd") {
        info.duration_secs = full_box_duration(mvhd).unwrap_or(0.0);
    }
    if let Ok(kids) = children(moov, 0) {
        for (span, trak) in kids {
            if &span.fourcc == b"trak" {
                info.tracks.push(parse_trak(trak));
            }
        }
    }
    info
}

fn parse_trak(trak: &[u8]) -> TrackInfo {
    let mut t = TrackInfo::default();
    if let Some(tkhd) = find_child(trak, b"tkhd") {
        t.track_id = tkhd_track_id(tkhd).unwrap_or(0);
    }
    let Some(mdia) = find_child(trak, b"mdia") else {
        return t;
    };
    if let Some(mdhd) = find_child(mdia, b"mdhd") {
        t.duration_secs = full_box_duration(mdhd).unwrap_or(0.0);
    }
    if let Some(hdlr) = find_child(mdia, b"hdlr") {
        if let Some(h) = hdlr.get(8..12) {
            t.handler = fourcc_str(&[h[0], h[1], h[2], h[3]]);
        }
    }
    let Some(stbl) = find_child(mdia, b"minf").and_then(|m| find_child(m, b"stbl")) else {
        return t;
    };
    if let Some(stsd) = find_child(stbl, b"stsd") {
        read_sample_entry(stsd, &mut t);
    }
    if let Some(sizes) = find_child(stbl, b"stsz").and_then(SampleSizes::parse) {
        t.sample_count = sizes.count;
        if t.handler == "vide" {
            t.keyframe_offsets = keyframe_offsets(stbl, &sizes).unwrap_or_default();
        }
    }
    t
}

/// mvhd/mdhd: version 0 has 32-bit times, version 1 has 64-bit.
fn full_box_duration(b: &[u8]) -> Option<f64> {
    let (timescale, duration) = if *b.first()? == 1 {
        (be32(b, 20)?, be64(b, 24)?)
    } else {
        (be32(b, 12)?, u64::from(be32(b, 16)?))
    };
    if timescale == 0 || duration == u64::MAX || duration == u64::from(u32::MAX) {
        return None;
    }
    Some(duration as f64 / f64::from(timescale))
}

fn tkhd_track_id(b: &[u8]) -> Option<u32> {
    if *b.first()? == 1 {
        be32(b, 20)
    } else {
        be32(b, 12)
    }
}

fn read_sample_entry(stsd: &[u8], t: &mut TrackInfo) {
    // full box header (4) + entry_count (4), then sample entries as boxes.
    let Some(entries) = stsd.get(8..) else { return };
    let Ok(kids) = children(entries, 0) else {
        return;
    };
    let Some((span, entry)) = kids.first() else {
        return;
    };
    t.codec = span.name().trim().to_string();
    if t.handler == "vide" {
        // VisualSampleEntry: 6 reserved + 2 dref index + 16 predefined/reserved, then w, h.
        t.width = be16(entry, 24).map(u32::from).unwrap_or(0);
        t.height = be16(entry, 26).map(u32::from).unwrap_or(0);
    }
}

struct SampleSizes<'a> {
    constant: u32,
    count: u64,
    table: &'a [u8],
}

impl<'a> SampleSizes<'a> {
    fn parse(stsz: &'a [u8]) -> Option<Self> {
        let constant = be32(stsz, 4)?;
        let count = u64::from(be32(stsz, 8)?);
        if count > MAX_SAMPLES {
            return None;
        }
        let table = if constant == 0 {
            let bytes = usize::try_from(count.checked_mul(4)?).ok()?;
            stsz.get(12..12usize.checked_add(bytes)?)?
        } else {
            &[]
        };
        Some(SampleSizes {
            constant,
            count,
            table,
        })
    }

    fn size(&self, sample_index: u64) -> Option<u64> {
        if self.constant != 0 {
            return Some(u64::from(self.constant));
        }
        be32(
            self.table,
            usize::try_from(sample_index.checked_mul(4)?).ok()?,
        )
        .map(u64::from)
    }
}

/// A table of fixed-size entries after a full-box header and a 32-bit entry count.
fn entry_table(b: &[u8], entry_len: usize) -> Option<(usize, &[u8])> {
    let n = usize::try_from(be32(b, 4)?).ok()?;
    let bytes = n.checked_mul(entry_len)?;
    Some((n, b.get(8..8usize.checked_add(bytes)?)?))
}

fn keyframe_offsets(stbl: &[u8], sizes: &SampleSizes) -> Option<Vec<u64>> {
    let chunk_offsets: Vec<u64> = if let Some(stco) = find_child(stbl, b"stco") {
        let (n, t) = entry_table(stco, 4)?;
        (0..n)
            .map(|i| be32(t, i * 4).map(u64::from))
            .collect::<Option<_>>()?
    } else {
        let (n, t) = entry_table(find_child(stbl, b"co64")?, 8)?;
        (0..n).map(|i| be64(t, i * 8)).collect::<Option<_>>()?
    };
    let (stsc_n, stsc) = entry_table(find_child(stbl, b"stsc")?, 12)?;
    // No stss means every sample is a sync sample (intra-only codecs).
    let sync: Option<Vec<u64>> = match find_child(stbl, b"stss") {
        Some(stss) => {
            let (n, t) = entry_table(stss, 4)?;
            Some(
                (0..n)
                    .map(|i| be32(t, i * 4).map(u64::from))
                    .collect::<Option<_>>()?,
            )
        }
        None => None,
    };
    let is_sync = |sample_number: u64, next_sync: &mut usize| -> bool {
        match &sync {
            None => true,
            Some(list) => {
                while *next_sync < list.len() && list[*next_sync] < sample_number {
                    *next_sync += 1;
                }
                list.get(*next_sync) == Some(&sample_number)
            }
        }
    };

    let mut out = Vec::new();
    let mut sample = 0u64; // zero-based
    let mut next_sync = 0usize;
    for entry in 0..stsc_n {
        let first_chunk = u64::from(be32(stsc, entry * 12)?);
        let per_chunk = u64::from(be32(stsc, entry * 12 + 4)?);
        let last_chunk = if entry + 1 < stsc_n {
            u64::from(be32(stsc, (entry + 1) * 12)?).checked_sub(1)?
        } else {
            chunk_offsets.len() as u64
        };
        if first_chunk == 0 || last_chunk < first_chunk.checked_sub(1)? {
            return None;
        }
        for chunk in first_chunk..=last_chunk {
            let mut offset = *chunk_offsets.get(usize::try_from(chunk - 1).ok()?)?;
            for _ in 0..per_chunk {
                if sample >= sizes.count {
                    return Some(out);
                }
                if is_sync(sample + 1, &mut next_sync) {
                    out.push(offset);
                }
                offset = offset.checked_add(sizes.size(sample)?)?;
                sample += 1;
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_moov_yields_empty_info() {
        assert_eq!(parse_moov(&[0xff; 64]).tracks.len(), 0);
        assert_eq!(parse_moov(&[]).duration_secs, 0.0);
    }

    #[test]
    fn huge_sample_count_is_refused_before_allocating() {
        let mut stsz = vec![0, 0, 0, 0, 0, 0, 0, 0];
        stsz.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(SampleSizes::parse(&stsz).is_none());
    }
}
