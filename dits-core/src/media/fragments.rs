//! Samples of fragmented MP4 (`moof` + `mdat` pairs): each `traf`'s `trun`s give sample
//! sizes, flags and data offsets relative to a base (ISO/IEC 14496-12 §8.8). Defaults
//! cascade from the `trun` entry to `tfhd` to the movie's `trex`. Anything that does not
//! add up is an error; the caller then falls back to byte-level chunking.

use std::collections::HashMap;

use super::boxes::{children, find_child, BoxError};
use super::sample_table::{be32, be64, Sample, SampleBudget, SampleLimit, MAX_SAMPLES};

/// Why a `moof` could not be read as samples. Never fatal: the file is then chunked by
/// bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragmentError {
    #[error("moof at {moof_offset}: {source}")]
    Moof { moof_offset: u64, source: BoxError },
    #[error(transparent)]
    Traf(BoxError),
    #[error("traf without tfhd")]
    NoTfhd,
    #[error("tfhd is malformed")]
    BadTfhd,
    #[error("trun is malformed")]
    BadTrun,
    #[error("trun sample has no size and no default")]
    NoSampleSize,
    #[error(transparent)]
    Limit(#[from] SampleLimit),
}

/// `sample_is_non_sync_sample` in the sample flags word.
const NON_SYNC: u32 = 0x0001_0000;

/// Per-track defaults from `moov/mvex/trex`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackDefaults {
    size: u32,
    flags: u32,
}

/// Reads the `trex` boxes of a `moov` payload, keyed by track id.
pub fn track_defaults(moov: &[u8]) -> HashMap<u32, TrackDefaults> {
    let mut out = HashMap::new();
    let Some(mvex) = find_child(moov, b"mvex") else {
        return out;
    };
    let Ok(kids) = children(mvex, 0) else {
        return out;
    };
    for (span, trex) in kids {
        if &span.fourcc != b"trex" {
            continue;
        }
        // version/flags, track_ID, description index, duration, size, flags.
        if let (Some(id), Some(size), Some(flags)) = (be32(trex, 4), be32(trex, 16), be32(trex, 20))
        {
            out.insert(id, TrackDefaults { size, flags });
        }
    }
    out
}

/// Where the samples of a file's fragments go, and what the file still allows.
pub struct FragmentSamples<'a> {
    pub by_track: &'a mut HashMap<u32, Vec<Sample>>,
    pub budget: &'a mut SampleBudget,
}

/// Appends the samples one `moof` (payload `moof`, box starting at file offset
/// `moof_offset`) describes to `out`, keyed by track id, each `trun`'s count taken from
/// `out.budget` before anything is allocated for it.
pub fn fragment_samples(
    moof: &[u8],
    moof_offset: u64,
    defaults: &HashMap<u32, TrackDefaults>,
    out: &mut FragmentSamples<'_>,
) -> Result<(), FragmentError> {
    let kids = children(moof, 0).map_err(|source| FragmentError::Moof {
        moof_offset,
        source,
    })?;
    // Without an explicit base, a traf's data follows the previous traf's data.
    let mut previous_end = moof_offset;
    for (span, traf) in kids {
        if &span.fourcc != b"traf" {
            continue;
        }
        let tfhd = find_child(traf, b"tfhd").ok_or(FragmentError::NoTfhd)?;
        let header = Tfhd::parse(tfhd).ok_or(FragmentError::BadTfhd)?;
        let trex = defaults.get(&header.track_id).copied().unwrap_or_default();
        let base = match header.base_data_offset {
            Some(b) => b,
            None if header.base_is_moof => moof_offset,
            None => previous_end,
        };
        let samples = out.by_track.entry(header.track_id).or_default();
        let mut next = base;
        for (span, trun) in children(traf, 0).map_err(FragmentError::Traf)? {
            if &span.fourcc != b"trun" {
                continue;
            }
            next = read_trun(trun, base, next, &header, trex, samples, out.budget)?;
        }
        previous_end = next;
    }
    Ok(())
}

struct Tfhd {
    track_id: u32,
    base_data_offset: Option<u64>,
    base_is_moof: bool,
    size: Option<u32>,
    flags: Option<u32>,
}

impl Tfhd {
    fn parse(b: &[u8]) -> Option<Tfhd> {
        let flags = be32(b, 0)? & 0x00ff_ffff;
        let track_id = be32(b, 4)?;
        let mut at = 8;
        let take32 = |present: bool, at: &mut usize| -> Option<Option<u32>> {
            if !present {
                return Some(None);
            }
            let v = be32(b, *at)?;
            *at += 4;
            Some(Some(v))
        };
        let base_data_offset = if flags & 0x1 != 0 {
            let v = be64(b, at)?;
            at += 8;
            Some(v)
        } else {
            None
        };
        take32(flags & 0x2 != 0, &mut at)?; // sample description index
        take32(flags & 0x8 != 0, &mut at)?; // default duration
        let size = take32(flags & 0x10 != 0, &mut at)?;
        let sample_flags = take32(flags & 0x20 != 0, &mut at)?;
        Some(Tfhd {
            track_id,
            base_data_offset,
            base_is_moof: flags & 0x2_0000 != 0,
            size,
            flags: sample_flags,
        })
    }
}

/// Reads one `trun`, returning where the next run's data would start.
fn read_trun(
    b: &[u8],
    base: u64,
    continue_at: u64,
    tfhd: &Tfhd,
    trex: TrackDefaults,
    out: &mut Vec<Sample>,
    budget: &mut SampleBudget,
) -> Result<u64, FragmentError> {
    let bad = || FragmentError::BadTrun;
    let flags = be32(b, 0).ok_or_else(bad)? & 0x00ff_ffff;
    let count = u64::from(be32(b, 4).ok_or_else(bad)?);
    let mut at = 8usize;
    let mut offset = if flags & 0x1 != 0 {
        let rel = be32(b, at).ok_or_else(bad)? as i32;
        at += 4;
        base.checked_add_signed(i64::from(rel)).ok_or_else(bad)?
    } else {
        continue_at
    };
    let first_flags = if flags & 0x4 != 0 {
        let f = be32(b, at).ok_or_else(bad)?;
        at += 4;
        Some(f)
    } else {
        None
    };
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    // Every per-sample field must be present in the box before anything is allocated.
    let needed = count
        .checked_mul(per_sample as u64 * 4)
        .and_then(|n| n.checked_add(at as u64))
        .ok_or_else(bad)?;
    if needed > b.len() as u64 || (out.len() as u64).saturating_add(count) > MAX_SAMPLES {
        return Err(bad());
    }
    // Samples without a size of their own in the box each claim the default size of the
    // file's bytes (a size of 0 claims none, and only the count bounds them).
    let bytes_each = if flags & 0x200 != 0 {
        0
    } else {
        u64::from(tfhd.size.unwrap_or(trex.size))
    };
    budget.take(count, bytes_each)?;
    for i in 0..count {
        let mut field = |bit: u32| -> Option<u32> {
            if flags & bit == 0 {
                return None;
            }
            let v = be32(b, at);
            at += 4;
            v
        };
        field(0x100); // duration
        let size = field(0x200)
            .or(tfhd.size)
            .or((trex.size != 0).then_some(trex.size))
            .ok_or(FragmentError::NoSampleSize)?;
        let sample_flags = field(0x400);
        field(0x800); // composition time offset
        let sample_flags = match (i, first_flags) {
            (0, Some(f)) => f,
            _ => sample_flags.or(tfhd.flags).unwrap_or(trex.flags),
        };
        out.push(Sample {
            offset,
            size,
            sync: sample_flags & NON_SYNC == 0,
        });
        offset = offset.checked_add(u64::from(size)).ok_or_else(bad)?;
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traf(tfhd: &[u8], trun: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, body) in [(b"tfhd", tfhd), (b"trun", trun)] {
            out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(body);
        }
        let mut moof = (8 + out.len() as u32).to_be_bytes().to_vec();
        moof.extend_from_slice(b"traf");
        moof.extend_from_slice(&out);
        moof
    }

    #[test]
    fn trun_sizes_flags_and_offsets_follow_the_defaults() {
        // tfhd: default-base-is-moof, default sample size 100, default flags non-sync.
        let mut tfhd = 0x0002_0030u32.to_be_bytes().to_vec();
        tfhd.extend_from_slice(&7u32.to_be_bytes());
        tfhd.extend_from_slice(&100u32.to_be_bytes());
        tfhd.extend_from_slice(&NON_SYNC.to_be_bytes());
        // trun: data offset 500, first-sample flags (sync), 3 samples.
        let mut trun = 0x0000_0005u32.to_be_bytes().to_vec();
        trun.extend_from_slice(&3u32.to_be_bytes());
        trun.extend_from_slice(&500i32.to_be_bytes());
        trun.extend_from_slice(&0u32.to_be_bytes());
        let mut by_track = HashMap::new();
        let mut budget = SampleBudget::for_file(10_000);
        let mut out = FragmentSamples {
            by_track: &mut by_track,
            budget: &mut budget,
        };
        fragment_samples(&traf(&tfhd, &trun), 1000, &HashMap::new(), &mut out).unwrap();
        let s = &by_track[&7];
        assert_eq!(
            s.iter()
                .map(|s| (s.offset, s.size, s.sync))
                .collect::<Vec<_>>(),
            vec![(1500, 100, true), (1600, 100, false), (1700, 100, false)]
        );
    }

    #[test]
    fn a_sample_count_the_box_cannot_hold_is_refused() {
        let mut tfhd = 0x0002_0000u32.to_be_bytes().to_vec();
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        let mut trun = 0x0000_0201u32.to_be_bytes().to_vec(); // data offset + sizes
        trun.extend_from_slice(&u32::MAX.to_be_bytes());
        trun.extend_from_slice(&0i32.to_be_bytes());
        let mut by_track = HashMap::new();
        let mut budget = SampleBudget::for_file(1 << 40);
        let mut out = FragmentSamples {
            by_track: &mut by_track,
            budget: &mut budget,
        };
        assert_eq!(
            fragment_samples(&traf(&tfhd, &trun), 0, &HashMap::new(), &mut out),
            Err(FragmentError::BadTrun)
        );
    }

    #[test]
    fn default_sized_samples_beyond_the_file_are_refused_before_allocating() {
        // tfhd: default size 100; trun: 12 M samples, no per-sample fields (12 bytes).
        let mut tfhd = 0x0002_0010u32.to_be_bytes().to_vec();
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        tfhd.extend_from_slice(&100u32.to_be_bytes());
        let mut trun = 0x0000_0001u32.to_be_bytes().to_vec();
        trun.extend_from_slice(&12_000_000u32.to_be_bytes());
        trun.extend_from_slice(&0i32.to_be_bytes());
        let mut by_track = HashMap::new();
        let mut budget = SampleBudget::for_file(10_000);
        let mut out = FragmentSamples {
            by_track: &mut by_track,
            budget: &mut budget,
        };
        assert_eq!(
            fragment_samples(&traf(&tfhd, &trun), 0, &HashMap::new(), &mut out),
            Err(FragmentError::Limit(SampleLimit::LargerThanFile {
                file_len: 10_000
            }))
        );
        assert!(by_track.values().all(Vec::is_empty));
    }
}
