//! MXF (SMPTE 377M): a file of KLV triplets (16-byte SMPTE key, BER length, value).
//! Partition packs, the header metadata (primer pack and metadata sets) and index table
//! segments are structure, each kept as its own object together with the KLV fill that
//! pads it. Runs of generic-container essence elements (and system items) between them
//! are media: each element's value is a sample of the track its key names (bytes 12..16,
//! the element's track number), so frame-wrapped elements concatenate per track into a
//! stream and clip-wrapped essence is one long sample. Keys, lengths and fill between
//! elements go to the gap stream. Video keyframes come from the index tables' random
//! access flags. A KLV that runs past the end of the file or a key that is not a SMPTE
//! label ends the walk: from there on the file is chunked as bytes.

use std::collections::HashMap;
use std::io::{self, Read, Seek};

use super::sample_table::{MovieInfo, Sample, SampleBudget, SampleLimit, TrackInfo};
use super::window::Window;
use super::{Container, Parsed, Piece, MAX_OBJECT_BOX};

/// Handler given to the streams of MXF system items (per-frame metadata packs), which
/// summaries leave out.
pub const SYSTEM_HANDLER: &str = "sys";

const SMPTE: [u8; 4] = [0x06, 0x0e, 0x2b, 0x34];
/// Partition packs, primer pack, index table segments and the random index pack share
/// these bytes (after the registry bytes 4..8) up to byte 13, which says which one it is.
const STRUCTURAL: [u8; 5] = [0x0d, 0x01, 0x02, 0x01, 0x01];
/// Bytes 8..12 of generic-container essence element and system item keys.
const ESSENCE_CONTAINER: [u8; 4] = [0x0d, 0x01, 0x03, 0x01];
/// Bytes 8..16 of the KLV fill key (byte 7, the registry version, varies by writer).
const FILL: [u8; 8] = [0x03, 0x01, 0x02, 0x10, 0x01, 0x00, 0x00, 0x00];
/// Distinct element tracks a file may have before it is treated as hostile.
const MAX_TRACKS: usize = 1024;
/// A clip-wrapped element is split into samples of at most this many bytes (a sample's
/// size is 32-bit).
const MAX_SAMPLE: u64 = 1 << 30;
/// Structure objects and media runs a file may alternate between (each costs a region and
/// a recipe entry or more); past it, the rest of the file is chunked as bytes. Also the
/// most index table segments read.
const MAX_PIECES: usize = 1 << 20;
/// Header metadata bigger than this is not parsed for the summary.
const MAX_HEADER_METADATA: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MxfError {
    #[error("MXF: no KLV could be read at {offset}")]
    Unreadable { offset: u64 },
    #[error("MXF: more than {MAX_TRACKS} essence tracks")]
    TooManyTracks,
    #[error("MXF: {0}")]
    Samples(#[from] SampleLimit),
    #[error(transparent)]
    Read(#[from] io::Error),
}

/// The first 16 bytes of a file are a header partition pack key.
pub fn is_header_partition(head: &[u8]) -> bool {
    head.len() >= 14
        && head[..4] == SMPTE
        && head[4] == 0x02
        && head[5] == 0x05
        && head[8..13] == STRUCTURAL
        && head[13] == 0x02
}

/// One KLV's place in the file.
#[derive(Debug, Clone, Copy)]
struct Klv {
    offset: u64,
    key: [u8; 16],
    header_len: u64,
    len: u64,
}

impl Klv {
    fn value_offset(&self) -> u64 {
        self.offset + self.header_len
    }
    fn end(&self) -> u64 {
        self.value_offset() + self.len
    }
}

/// What a KLV is, by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Header (2), body (3) or footer (4) partition pack.
    Partition(u8),
    Primer,
    /// A header metadata set, or any other KLV that is neither essence nor a known pack.
    Metadata,
    Index,
    RandomIndex,
    Fill,
    /// An essence element or system item; the bytes are its key's bytes 12..16.
    Essence(u32),
}

fn kind_of(key: &[u8; 16]) -> Kind {
    if key[4..8] == [0x02, 0x05, 0x01, 0x01] && key[8..13] == STRUCTURAL {
        return match key[13] {
            0x02..=0x04 => Kind::Partition(key[13]),
            0x05 => Kind::Primer,
            0x11 => Kind::RandomIndex,
            _ => Kind::Metadata,
        };
    }
    if key[4] == 0x02 && key[5] == 0x53 && key[8..13] == STRUCTURAL && key[13] == 0x10 {
        return Kind::Index;
    }
    if key[4..7] == [0x01, 0x01, 0x01] && key[8..16] == FILL {
        return Kind::Fill;
    }
    if key[8..12] == ESSENCE_CONTAINER {
        return Kind::Essence(u32::from_be_bytes([key[12], key[13], key[14], key[15]]));
    }
    Kind::Metadata
}

/// Reads the KLV header at `offset`; `None` when it is not one (not a SMPTE key, a
/// malformed or indefinite length, or a value running past the end of the file).
fn klv_at<R: Read + Seek>(w: &mut Window<R>, offset: u64) -> io::Result<Option<Klv>> {
    let len_of_file = w.file_len();
    let head = w.peek(offset, 25)?;
    if !head.starts_with(&SMPTE) {
        return Ok(None);
    }
    let Some((key, len, header_len)) = klv_header(head) else {
        return Ok(None);
    };
    let fits = offset
        .checked_add(header_len)
        .and_then(|v| v.checked_add(len))
        .is_some_and(|end| end <= len_of_file);
    Ok(fits.then_some(Klv {
        offset,
        key,
        header_len,
        len,
    }))
}

/// The key, value length and header length (key plus BER length) at the start of
/// `head`; `None` for an indefinite (`0x80`) or over-long length, or too few bytes.
fn klv_header(head: &[u8]) -> Option<([u8; 16], u64, u64)> {
    let key: [u8; 16] = head.get(..16)?.try_into().ok()?;
    match *head.get(16)? {
        b if b < 0x80 => Some((key, u64::from(b), 17)),
        0x80 => None,
        b => {
            let n = usize::from(b & 0x7f);
            if n > 8 {
                return None;
            }
            let len = head
                .get(17..17 + n)?
                .iter()
                .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
            Some((key, len, 17 + n as u64))
        }
    }
}

/// The group of KLVs the walk is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Structure([u8; 4]),
    Media,
}

pub(crate) fn parse<R: Read + Seek>(
    file: &mut R,
    len: u64,
    budget: &mut SampleBudget,
) -> Result<Parsed, MxfError> {
    let mut w = Window::new(file, len);
    let mut pieces: Vec<Piece> = Vec::new();
    let mut group: Option<(Group, u64)> = None;
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut track_of: HashMap<u32, usize> = HashMap::new();
    // Elements per track: one means clip wrapping.
    let mut elements: Vec<u64> = Vec::new();
    let mut index_values: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    let close = |pieces: &mut Vec<Piece>, group: Option<(Group, u64)>, end: u64| {
        if let Some((g, start)) = group {
            pieces.push(match g {
                Group::Structure(label) => Piece::Object {
                    offset: start,
                    len: end - start,
                    label,
                },
                Group::Media => Piece::Media {
                    offset: start,
                    len: end - start,
                },
            });
        }
    };
    while pos < len && pieces.len() < MAX_PIECES {
        let Some(klv) = klv_at(&mut w, pos)? else {
            if pos == 0 {
                return Err(MxfError::Unreadable { offset: 0 });
            }
            break;
        };
        let kind = kind_of(&klv.key);
        let wanted = match kind {
            Kind::Partition(2) => Group::Structure(*b"hpar"),
            Kind::Partition(3) => Group::Structure(*b"bpar"),
            Kind::Partition(_) => Group::Structure(*b"fpar"),
            Kind::Primer => Group::Structure(*b"hmet"),
            Kind::Index => Group::Structure(*b"itab"),
            Kind::RandomIndex => Group::Structure(*b"rip "),
            Kind::Essence(_) => Group::Media,
            // Fill pads whatever it follows; other metadata joins the structure it
            // follows (header metadata sets follow the primer pack).
            Kind::Fill => group.map_or(Group::Structure(*b"fill"), |(g, _)| g),
            Kind::Metadata => match group {
                Some((g @ Group::Structure(_), _)) => g,
                _ => Group::Structure(*b"klv "),
            },
        };
        // A new partition, primer or index segment starts its own object even after
        // one of the same kind.
        let restart = matches!(kind, Kind::Partition(_) | Kind::Primer | Kind::RandomIndex);
        if restart || group.map(|(g, _)| g) != Some(wanted) {
            close(&mut pieces, group, pos);
            group = Some((wanted, pos));
        }
        match kind {
            Kind::Essence(number) => {
                let next = tracks.len();
                let i = *track_of.entry(number).or_insert(next);
                if i == next {
                    if tracks.len() >= MAX_TRACKS {
                        return Err(MxfError::TooManyTracks);
                    }
                    tracks.push(new_track(number));
                    elements.push(0);
                }
                elements[i] += 1;
                add_samples(&mut tracks[i], &klv, budget)?;
            }
            Kind::Index if klv.len <= MAX_OBJECT_BOX && index_values.len() < MAX_PIECES => {
                index_values.push((klv.value_offset(), klv.len));
            }
            _ => {}
        }
        pos = klv.end();
    }
    close(&mut pieces, group, pos);
    if pos < len {
        pieces.push(Piece::Bytes {
            offset: pos,
            len: len - pos,
        });
    }
    // The first header metadata object (primer pack plus sets), for the summary.
    let metadata = pieces.iter().find_map(|p| match p {
        Piece::Object {
            offset,
            len,
            label: [b'h', b'm', b'e', b't'],
        } => Some((*offset, *len)),
        _ => None,
    });
    mark_keyframes(&mut w, &index_values, &mut tracks, &elements, budget)?;
    let mut movie = MovieInfo {
        duration_secs: 0.0,
        tracks,
    };
    if let Some((offset, mlen)) = metadata.filter(|(_, l)| *l <= MAX_HEADER_METADATA) {
        let bytes = w.read_exact_at(offset, mlen as usize)?;
        describe_tracks(&bytes, &mut movie);
    }
    Ok(Parsed {
        container: Container::Mxf,
        movie,
        pieces,
    })
}

fn new_track(number: u32) -> TrackInfo {
    let item_type = (number >> 24) as u8;
    let handler = match item_type {
        0x05 | 0x15 => "vide",
        0x06 | 0x16 => "soun",
        0x04 | 0x14 => SYSTEM_HANDLER,
        0x18 => "cmpd",
        _ => "data",
    };
    TrackInfo {
        track_id: number,
        handler: handler.to_string(),
        codec: if handler == SYSTEM_HANDLER {
            "system".into()
        } else {
            "unknown".into()
        },
        ..TrackInfo::default()
    }
}

/// The element's value as the track's next samples (more than one only for a
/// clip-wrapped element longer than [`MAX_SAMPLE`]).
fn add_samples(
    track: &mut TrackInfo,
    klv: &Klv,
    budget: &mut SampleBudget,
) -> Result<(), MxfError> {
    let mut offset = klv.value_offset();
    let end = klv.end();
    while offset < end {
        let size = (end - offset).min(MAX_SAMPLE);
        budget.take(1, 0)?;
        track.samples.push(Sample {
            offset,
            size: size as u32,
            sync: false,
        });
        track.sample_count += 1;
        offset += size;
    }
    Ok(())
}

/// Video keyframes from the index tables. Random access flags (bit 7 of an index entry's
/// flags) by edit unit, from every index table segment, apply to each picture track whose
/// elements the entries cover one for one (frame wrapping). A constant-bytes-per-unit
/// index (`EditUnitByteCount`, written for intra codecs) makes every frame a keyframe: a
/// frame-wrapped track's elements all become sync samples, and the one clip-wrapped
/// element of a single-track file (OP-Atom) is split into frames of that many bytes.
/// Without either, no keyframes are marked and the video is chunked by content alone.
fn mark_keyframes<R: Read + Seek>(
    w: &mut Window<R>,
    segments: &[(u64, u64)],
    tracks: &mut [TrackInfo],
    elements: &[u64],
    budget: &mut SampleBudget,
) -> Result<(), MxfError> {
    let mut flags: Vec<Option<bool>> = Vec::new();
    let mut unit_bytes: Option<u64> = None;
    for &(offset, len) in segments {
        let value = w.read_exact_at(offset, len as usize)?;
        let mut start: Option<u64> = None;
        let mut entries: Option<&[u8]> = None;
        for (tag, v) in local_tags(&value) {
            match tag {
                0x3F0C if v.len() == 8 => {
                    start = u64::try_from(i64::from_be_bytes(v.try_into().unwrap_or([0; 8]))).ok()
                }
                0x3F0A => entries = Some(v),
                0x3F05 => {
                    if let Some(n) = be_u32(v).filter(|&n| n > 0) {
                        unit_bytes = Some(u64::from(n));
                    }
                }
                _ => {}
            }
        }
        let (Some(start), Some(entries)) = (start, entries) else {
            continue;
        };
        if entries.len() < 8 {
            continue;
        }
        let count = u32::from_be_bytes([entries[0], entries[1], entries[2], entries[3]]) as usize;
        let each = u32::from_be_bytes([entries[4], entries[5], entries[6], entries[7]]) as usize;
        let body = &entries[8..];
        if each < 11 || count.checked_mul(each).is_none_or(|n| n > body.len()) {
            continue;
        }
        let Ok(start) = usize::try_from(start) else {
            continue;
        };
        // Entries are bounded by the segment's bytes; positions by the elements seen.
        let most = tracks.iter().map(|t| t.samples.len()).max().unwrap_or(0);
        for i in 0..count {
            let unit = start.saturating_add(i);
            if unit >= most {
                break;
            }
            if flags.len() <= unit {
                flags.resize(unit + 1, None);
            }
            flags[unit] = Some(body[i * each + 2] & 0x80 != 0);
        }
    }
    let essence_tracks = tracks
        .iter()
        .filter(|t| t.handler != SYSTEM_HANDLER)
        .count();
    for (track, &element_count) in tracks.iter_mut().zip(elements) {
        if !track.is_video() {
            continue;
        }
        let n = track.samples.len();
        if n > 0 && flags.len() >= n && flags[..n].iter().all(Option::is_some) {
            for (sample, flag) in track.samples.iter_mut().zip(&flags) {
                sample.sync = flag.unwrap_or(false);
            }
            continue;
        }
        let Some(frame) = unit_bytes else {
            continue;
        };
        if element_count > 1 {
            track.samples.iter_mut().for_each(|s| s.sync = true);
        } else if element_count == 1 && essence_tracks == 1 {
            let (start, end) = match (track.samples.first(), track.samples.last()) {
                (Some(first), Some(last)) => (first.offset, last.offset + u64::from(last.size)),
                _ => continue,
            };
            let frames = (end - start).div_ceil(frame);
            budget.take(frames.saturating_sub(n as u64), 0)?;
            track.samples = (0..frames)
                .map(|i| {
                    let offset = start + i * frame;
                    Sample {
                        offset,
                        size: (end - offset).min(frame) as u32,
                        sync: true,
                    }
                })
                .collect();
            track.sample_count = frames;
        }
    }
    Ok(())
}

/// A local set's (tag, value) pairs: 2-byte tags with 2-byte lengths, as header metadata
/// sets and index table segments are written. Stops at the first one that does not fit.
fn local_tags(value: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let head = value.get(pos..pos + 4)?;
        let tag = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let v = value.get(pos + 4..pos + 4 + len)?;
        pos += 4 + len;
        Some((tag, v))
    })
}

/// What the header metadata says of one essence track.
#[derive(Debug, Clone, Default)]
struct TrackDescription {
    codec: &'static str,
    width: u32,
    height: u32,
    /// Container duration in edit units and the rate they run at, where given.
    units: Option<f64>,
    rate: Option<f64>,
}

/// The file's essence tracks as its header metadata (a primer pack and metadata sets,
/// the `hmet` object) describes them, without samples: what `git dits show` reads from a
/// stored file without fetching its essence.
pub fn movie_from_header_metadata(metadata: &[u8]) -> MovieInfo {
    let described = describe(metadata);
    let mut movie = MovieInfo::default();
    for (number, d) in described.numbered {
        let mut track = new_track(number);
        apply(&d, &mut track);
        movie.tracks.push(track);
    }
    movie.tracks.sort_by_key(|t| t.track_id);
    movie.duration_secs = longest(&movie.tracks);
    movie
}

/// Codec, picture size and duration for the tracks the walk found.
fn describe_tracks(metadata: &[u8], movie: &mut MovieInfo) {
    let described = describe(metadata);
    for track in movie.tracks.iter_mut() {
        if track.handler == SYSTEM_HANDLER {
            continue;
        }
        let d = described
            .numbered
            .iter()
            .find(|(n, _)| *n == track.track_id)
            .map(|(_, d)| d.clone())
            .or_else(|| described.lone.clone());
        let Some(d) = d else {
            continue;
        };
        apply(&d, track);
    }
    movie.duration_secs = longest(&movie.tracks);
}

fn apply(d: &TrackDescription, track: &mut TrackInfo) {
    track.codec = d.codec.to_string();
    if track.is_video() {
        track.width = d.width;
        track.height = d.height;
    }
    if let (Some(units), Some(rate)) = (d.units, d.rate) {
        track.duration_secs = units / rate;
    }
}

fn longest(tracks: &[TrackInfo]) -> f64 {
    tracks.iter().map(|t| t.duration_secs).fold(0.0, f64::max)
}

struct Described {
    /// By element track number: each source track with a nonzero `TrackNumber` whose
    /// `TrackID` a descriptor links to.
    numbered: Vec<(u32, TrackDescription)>,
    /// The file's one descriptor, which serves any track when nothing links (OP-Atom).
    lone: Option<TrackDescription>,
}

/// Reads the metadata sets: each element track number is a timeline track's
/// `TrackNumber`; that track's `TrackID` is a descriptor's `LinkedTrackID`.
fn describe(metadata: &[u8]) -> Described {
    let mut numbered_tracks: Vec<(u32, u32, Option<f64>)> = Vec::new();
    let mut descriptors: Vec<Descriptor> = Vec::new();
    // The longest sequence or clip (in edit units): the duration when descriptors don't
    // give their container duration.
    let mut longest_component = 0i64;
    let mut pos = 0usize;
    while let Some((key, value, next)) = klv_in(metadata, pos) {
        pos = next;
        if key[4] != 0x02 || key[5] != 0x53 {
            continue;
        }
        let mut d = Descriptor {
            set: key[14],
            ..Descriptor::default()
        };
        let (mut id, mut number, mut rate) = (None, None, None);
        for (tag, v) in local_tags(value) {
            match tag {
                0x4801 => id = be_u32(v),
                0x4804 => number = be_u32(v),
                0x4B01 => rate = rational(v),
                0x3006 => d.linked = be_u32(v),
                0x3001 => d.sample_rate = rational(v),
                0x3002 => d.duration = v.try_into().ok().map(i64::from_be_bytes),
                0x3201 | 0x3D06 => d.coding = v.try_into().ok(),
                0x3203 if d.width.is_none() => d.width = be_u32(v),
                0x3202 if d.height.is_none() => d.height = be_u32(v),
                // The displayed size wins over the stored (macroblock-aligned) one.
                0x3209 => d.width = be_u32(v).or(d.width),
                0x3208 => d.height = be_u32(v).or(d.height),
                0x0202 => {
                    let units = v.try_into().ok().map(i64::from_be_bytes).unwrap_or(0);
                    longest_component = longest_component.max(units);
                }
                _ => {}
            }
        }
        if let (Some(id), Some(number)) = (id, number) {
            if number != 0 && numbered_tracks.len() < MAX_TRACKS {
                numbered_tracks.push((number, id, rate));
            }
        }
        // Multiple descriptors (0x44) only list the others.
        let is_descriptor = d.sample_rate.is_some() || d.linked.is_some() || d.coding.is_some();
        if is_descriptor && d.set != 0x44 && descriptors.len() < MAX_TRACKS {
            descriptors.push(d);
        }
    }
    for d in &mut descriptors {
        if d.duration.is_none_or(|u| u <= 0) && longest_component > 0 {
            d.duration = Some(longest_component);
        }
    }
    let lone = (descriptors.len() == 1).then(|| descriptors[0].description(None));
    let mut numbered = Vec::new();
    for (number, id, rate) in numbered_tracks {
        let linked = descriptors.iter().find(|d| d.linked == Some(id));
        if let Some(d) = linked.or(if descriptors.len() == 1 {
            descriptors.first()
        } else {
            None
        }) {
            if !numbered.iter().any(|(n, _)| *n == number) {
                numbered.push((number, d.description(rate)));
            }
        }
    }
    Described { numbered, lone }
}

#[derive(Debug, Clone, Default)]
struct Descriptor {
    /// Byte 14 of the set's key: which descriptor it is.
    set: u8,
    linked: Option<u32>,
    sample_rate: Option<f64>,
    duration: Option<i64>,
    coding: Option<[u8; 16]>,
    width: Option<u32>,
    height: Option<u32>,
}

impl Descriptor {
    fn description(&self, edit_rate: Option<f64>) -> TrackDescription {
        TrackDescription {
            codec: self.codec(),
            width: self.width.unwrap_or(0),
            height: self.height.unwrap_or(0),
            units: self.duration.filter(|&u| u > 0).map(|u| u as f64),
            rate: self.sample_rate.or(edit_rate).filter(|r| *r > 0.0),
        }
    }

    fn codec(&self) -> &'static str {
        if let Some(ul) = self.coding {
            // Essence coding labels: 04.01.02.02 compressed picture, 04.02.02 sound.
            match (ul[8], ul[9], ul[10], ul[11], ul[12], ul[13]) {
                (0x04, 0x01, 0x02, 0x02, 0x01, 0x01..=0x04) => return "mpeg2",
                (0x04, 0x01, 0x02, 0x02, 0x01, 0x20..=0x3f) => return "h264",
                (0x04, 0x01, 0x02, 0x02, 0x03, 0x01) => return "jpeg2000",
                (0x04, 0x01, 0x02, 0x02, 0x03, 0x06) => return "prores",
                (0x04, 0x01, 0x02, 0x02, 0x71, _) => return "dnxhd",
                (0x04, 0x01, 0x02, 0x01, _, _) => return "uncompressed",
                (0x04, 0x02, 0x02, 0x01, _, _) => return "pcm",
                (0x04, 0x02, 0x02, 0x02, 0x03, _) => return "aac",
                _ => {}
            }
        }
        match self.set {
            // AES3 and wave descriptors both describe PCM.
            0x47 => "pcm",
            0x48 => "pcm",
            0x51 => "mpeg2",
            _ => "unknown",
        }
    }
}

/// The KLV at `pos` of an in-memory run of KLVs: its key, its value and where the next
/// one starts.
fn klv_in(bytes: &[u8], pos: usize) -> Option<([u8; 16], &[u8], usize)> {
    let (key, len, header) = klv_header(bytes.get(pos..)?)?;
    let start = pos.checked_add(usize::try_from(header).ok()?)?;
    let value = bytes.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
    Some((key, value, start + value.len()))
}

fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

fn rational(v: &[u8]) -> Option<f64> {
    if v.len() != 8 {
        return None;
    }
    let num = i32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let den = i32::from_be_bytes([v[4], v[5], v[6], v[7]]);
    (den != 0).then(|| f64::from(num) / f64::from(den))
}
