//! Track metadata from a `moov` box held in memory: handler, codec, dimensions, duration
//! and every sample's place in the file, in decode order (from `stsz`, `stsc`,
//! `stco`/`co64`, with sync flags from `stss`). Every table count is checked against the
//! bytes that hold it before anything is allocated; a malformed table drops the sample
//! list (and with it track-level splitting), never the add.

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
    /// Every sample in decode order (from `stbl`, or from `moof`s for fragmented files).
    pub samples: Vec<Sample>,
    /// Why `samples` could not be read, when the tables don't add up.
    pub samples_error: Option<String>,
}

impl TrackInfo {
    pub fn is_video(&self) -> bool {
        self.handler == "vide"
    }

    pub fn keyframes(&self) -> usize {
        self.samples.iter().filter(|s| s.sync).count()
    }
}

/// Where one sample's bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub size: u32,
    /// A sync sample (keyframe); every audio sample is one.
    pub sync: bool,
}

/// Movie-level facts from `mvhd` plus each track.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MovieInfo {
    pub duration_secs: f64,
    pub tracks: Vec<TrackInfo>,
}

/// A sample table past this many samples is treated as hostile (a 24-hour 120 fps video
/// has about 10 million); at 16 bytes a sample the list stays under 200 MB.
pub const MAX_SAMPLES: u64 = 12_000_000;

/// Samples one file may list in all, across its tracks and fragments: without it, 50
/// tracks of 12 million samples each (a few bytes of table apiece when every sample has
/// the same size) made a 10 KB file allocate more than 9 GB. At 16 bytes a sample the
/// lists of a file stay under 256 MiB.
pub const MAX_SAMPLES_PER_FILE: u64 = 16_000_000;

/// What is left of one file's allowance of samples: a count ([`MAX_SAMPLES_PER_FILE`]) and
/// the file's bytes, since samples that claim a size each occupy that many bytes of the
/// file and never overlap. Taken before anything is allocated for the samples.
#[derive(Debug, Clone)]
pub struct SampleBudget {
    samples: u64,
    bytes: u64,
    file_len: u64,
    /// The first refusal, for reporting.
    refused: Option<SampleLimit>,
}

/// Why a file's samples were not listed (it is then chunked by bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleLimit {
    #[error("the file lists more than {MAX_SAMPLES_PER_FILE} samples in all")]
    TooMany,
    #[error("its samples claim more bytes than the file's {file_len}")]
    LargerThanFile { file_len: u64 },
}

impl SampleBudget {
    /// The allowance of a file of `len` bytes.
    pub fn for_file(len: u64) -> Self {
        SampleBudget {
            samples: MAX_SAMPLES_PER_FILE,
            bytes: len,
            file_len: len,
            refused: None,
        }
    }

    /// Takes `count` samples of `bytes_each` bytes each (0 when their sizes come from a
    /// table in the file, whose own bytes already bound the count).
    pub fn take(&mut self, count: u64, bytes_each: u64) -> Result<(), SampleLimit> {
        let bytes = count.checked_mul(bytes_each).filter(|&b| b <= self.bytes);
        let refusal = match bytes {
            _ if count > self.samples => SampleLimit::TooMany,
            None => SampleLimit::LargerThanFile {
                file_len: self.file_len,
            },
            Some(bytes) => {
                self.samples -= count;
                self.bytes -= bytes;
                return Ok(());
            }
        };
        self.refused.get_or_insert(refusal.clone());
        Err(refusal)
    }

    /// The first request this allowance refused, if any.
    pub fn refused(&self) -> Option<&SampleLimit> {
        self.refused.as_ref()
    }
}

/// Reads a `moov` payload of a file of `file_len` bytes. Never fails: missing or malformed
/// parts are left empty, and a track whose samples would exceed the file's allowance gets
/// a `samples_error` instead of a sample list.
pub fn parse_moov(moov: &[u8], file_len: u64) -> MovieInfo {
    parse_moov_within(moov, &mut SampleBudget::for_file(file_len))
}

/// [`parse_moov`] drawing on `budget`, which fragments of the same file then share.
pub fn parse_moov_within(moov: &[u8], budget: &mut SampleBudget) -> MovieInfo {
    let mut info = MovieInfo::default();
    if let Some(mvhd) = find_child(moov, b"mvhd") {
        info.duration_secs = full_box_duration(mvhd).unwrap_or(0.0);
    }
    if let Ok(kids) = children(moov, 0) {
        for (span, trak) in kids {
            if &span.fourcc == b"trak" {
                info.tracks.push(parse_trak(trak, budget));
            }
        }
    }
    info
}

fn parse_trak(trak: &[u8], budget: &mut SampleBudget) -> TrackInfo {
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
    match find_child(stbl, b"stsz").map(SampleSizes::parse) {
        Some(Some(sizes)) => {
            t.sample_count = sizes.count;
            let listed = budget
                .take(sizes.count, u64::from(sizes.constant))
                .map_err(|e| e.to_string())
                .and_then(|()| sample_list(stbl, &sizes).map_err(str::to_string));
            match listed {
                Ok(samples) => t.samples = samples,
                Err(e) => t.samples_error = Some(e),
            }
        }
        Some(None) => t.samples_error = Some("stsz is malformed".into()),
        None => t.samples_error = Some("no stsz".into()),
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

/// Every sample in decode order, or why the tables don't describe them consistently.
fn sample_list(stbl: &[u8], sizes: &SampleSizes) -> Result<Vec<Sample>, &'static str> {
    let chunk_offsets: Vec<u64> = if let Some(stco) = find_child(stbl, b"stco") {
        let (n, t) = entry_table(stco, 4).ok_or("stco is malformed")?;
        (0..n)
            .map(|i| be32(t, i * 4).map(u64::from))
            .collect::<Option<_>>()
            .ok_or("stco is malformed")?
    } else {
        let co64 = find_child(stbl, b"co64").ok_or("no chunk offsets")?;
        let (n, t) = entry_table(co64, 8).ok_or("co64 is malformed")?;
        (0..n)
            .map(|i| be64(t, i * 8))
            .collect::<Option<_>>()
            .ok_or("co64 is malformed")?
    };
    let stsc = find_child(stbl, b"stsc").ok_or("no stsc")?;
    let (stsc_n, stsc) = entry_table(stsc, 12).ok_or("stsc is malformed")?;
    // No stss means every sample is a sync sample (audio, intra-only video).
    let sync: Option<Vec<u64>> = match find_child(stbl, b"stss") {
        Some(stss) => {
            let (n, t) = entry_table(stss, 4).ok_or("stss is malformed")?;
            Some(
                (0..n)
                    .map(|i| be32(t, i * 4).map(u64::from))
                    .collect::<Option<_>>()
                    .ok_or("stss is malformed")?,
            )
        }
        None => None,
    };
    let mut next_sync = 0usize;
    let mut is_sync = |sample_number: u64| -> bool {
        match &sync {
            None => true,
            Some(list) => {
                while next_sync < list.len() && list[next_sync] < sample_number {
                    next_sync += 1;
                }
                list.get(next_sync) == Some(&sample_number)
            }
        }
    };

    let bad = "stsc/stco/stsz do not add up";
    let mut out = Vec::with_capacity(usize::try_from(sizes.count).map_err(|_| bad)?);
    'entries: for entry in 0..stsc_n {
        let first_chunk = u64::from(be32(stsc, entry * 12).ok_or(bad)?);
        let per_chunk = u64::from(be32(stsc, entry * 12 + 4).ok_or(bad)?);
        let last_chunk = if entry + 1 < stsc_n {
            u64::from(be32(stsc, (entry + 1) * 12).ok_or(bad)?)
                .checked_sub(1)
                .ok_or(bad)?
        } else {
            chunk_offsets.len() as u64
        };
        if first_chunk == 0 || last_chunk < first_chunk - 1 {
            return Err(bad);
        }
        for chunk in first_chunk..=last_chunk {
            let mut offset = *chunk_offsets
                .get(usize::try_from(chunk - 1).map_err(|_| bad)?)
                .ok_or(bad)?;
            for _ in 0..per_chunk {
                let index = out.len() as u64;
                if index >= sizes.count {
                    break 'entries;
                }
                let size = sizes.size(index).ok_or(bad)?;
                out.push(Sample {
                    offset,
                    size: u32::try_from(size).map_err(|_| bad)?,
                    sync: is_sync(index + 1),
                });
                offset = offset.checked_add(size).ok_or(bad)?;
            }
        }
    }
    if (out.len() as u64) < sizes.count {
        return Err("stsc/stco describe fewer samples than stsz");
    }
    Ok(out)
}

pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
pub(super) fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_moov_yields_empty_info() {
        assert_eq!(parse_moov(&[0xff; 64], 64).tracks.len(), 0);
        assert_eq!(parse_moov(&[], 0).duration_secs, 0.0);
    }

    /// A `trak` whose `stsz` gives every one of `count` samples `size` bytes, all in one
    /// chunk at offset 0: a few dozen bytes claiming any number of samples.
    fn constant_size_trak(count: u32, size: u32) -> Vec<u8> {
        fn boxed(name: &[u8; 4], body: &[u8]) -> Vec<u8> {
            let mut out = (8 + body.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(name);
            out.extend_from_slice(body);
            out
        }
        let mut stsz = vec![0u8; 4];
        stsz.extend_from_slice(&size.to_be_bytes());
        stsz.extend_from_slice(&count.to_be_bytes());
        let mut stsc = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        stsc.extend_from_slice(&count.to_be_bytes());
        stsc.extend_from_slice(&1u32.to_be_bytes());
        let stco = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        let stbl = [
            boxed(b"stsz", &stsz),
            boxed(b"stsc", &stsc),
            boxed(b"stco", &stco),
        ]
        .concat();
        let minf = boxed(b"minf", &boxed(b"stbl", &stbl));
        boxed(b"trak", &boxed(b"mdia", &minf))
    }

    #[test]
    fn samples_claiming_more_bytes_than_the_file_are_not_listed() {
        let trak = constant_size_trak(1000, 10);
        let movie = parse_moov(&trak, 10_000);
        assert_eq!(movie.tracks[0].samples.len(), 1000);
        let movie = parse_moov(&trak, 9_999);
        assert!(movie.tracks[0].samples.is_empty());
        assert!(movie.tracks[0]
            .samples_error
            .as_deref()
            .unwrap()
            .contains("more bytes than the file"));
    }

    #[test]
    fn a_file_lists_at_most_its_allowance_of_samples_across_tracks() {
        let mut budget = SampleBudget::for_file(1 << 40);
        budget.take(10_000_000, 1).unwrap();
        assert_eq!(budget.take(10_000_000, 1), Err(SampleLimit::TooMany));
        budget.take(MAX_SAMPLES_PER_FILE - 10_000_000, 0).unwrap();
        assert_eq!(budget.take(1, 0), Err(SampleLimit::TooMany));
        // The allowance is taken before a track's list is built: a second track that
        // would exceed it is refused and keeps an error, not a list.
        let trak = constant_size_trak(1000, 1);
        let mut budget = SampleBudget::for_file(1500);
        let movie = parse_moov_within(&[trak.clone(), trak].concat(), &mut budget);
        assert_eq!(movie.tracks[0].samples.len(), 1000);
        assert!(movie.tracks[1].samples.is_empty());
        assert!(movie.tracks[1].samples_error.is_some());
    }

    #[test]
    fn huge_sample_count_is_refused_before_allocating() {
        let mut stsz = vec![0, 0, 0, 0, 0, 0, 0, 0];
        stsz.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(SampleSizes::parse(&stsz).is_none());
    }
}
