//! Matroska and WebM (EBML). The EBML header, the Segment's own header and each of its
//! metadata elements (SeekHead, Info, Tracks, Cues, Tags, Chapters, Attachments, Void)
//! are structure, each kept as one object. Runs of Clusters are media: each SimpleBlock's
//! or Block's frame data (after its track number, timecode and flags) is a sample of its
//! track, so every track's frames concatenate into a stream of their own; cluster and
//! block headers, CRC-32 and Void elements inside clusters go to the gap stream. The
//! keyframe flag (a SimpleBlock's flag bit, or a BlockGroup without a ReferenceBlock)
//! gives the video cuts. An element that runs past the end of the file, or that can't be
//! read, ends the walk: from there on the file is chunked as bytes.

use std::collections::HashMap;
use std::io::{self, Read, Seek};

use super::sample_table::{MovieInfo, Sample, SampleBudget, SampleLimit, TrackInfo};
use super::window::Window;
use super::{Container, Parsed, Piece};

const EBML: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const INFO: u32 = 0x1549_A966;
const TRACKS: u32 = 0x1654_AE6B;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const REFERENCE_BLOCK: u32 = 0xFB;
/// Level-1 elements: one of these ends a Cluster of unknown size.
const LEVEL_1: [u32; 9] = [
    CLUSTER,
    0x114D_9B74, // SeekHead
    INFO,
    TRACKS,
    0x1C53_BB6B, // Cues
    0x1254_C367, // Tags
    0x1043_A770, // Chapters
    0x1941_A469, // Attachments
    SEGMENT,
];
/// Distinct track numbers a file may use before it is treated as hostile.
const MAX_TRACKS: usize = 1024;
/// Structure objects and cluster runs a file may alternate between (each costs a region
/// and a recipe entry); past it, the rest of the file is chunked as bytes.
const MAX_PIECES: usize = 1 << 20;
/// Info and Tracks bigger than this are not parsed for the summary.
const MAX_HEADER_ELEMENT: u64 = 16 << 20;
/// `Element::len` of an element whose size field is all ones (unknown).
const UNKNOWN_SIZE: u64 = u64::MAX;

#[derive(Debug, thiserror::Error)]
pub enum MatroskaError {
    #[error("Matroska: the EBML header can't be read")]
    BadHeader,
    #[error("Matroska: more than {MAX_TRACKS} tracks")]
    TooManyTracks,
    #[error("Matroska: {0}")]
    Samples(#[from] SampleLimit),
    #[error(transparent)]
    Read(#[from] io::Error),
}

pub fn is_ebml(head: &[u8]) -> bool {
    head.starts_with(&EBML.to_be_bytes())
}

/// One element's place in the file. `len` is [`UNKNOWN_SIZE`] for an element of unknown
/// size (live streams' Segments and Clusters).
#[derive(Debug, Clone, Copy)]
struct Element {
    offset: u64,
    id: u32,
    header_len: u64,
    len: u64,
}

impl Element {
    fn data_offset(&self) -> u64 {
        self.offset + self.header_len
    }
    fn end(&self) -> u64 {
        self.data_offset().saturating_add(self.len)
    }
}

/// A variable-length integer of `bytes`: its value with the length marker removed, its
/// length, and whether every value bit is set (an unknown size).
fn vint(bytes: &[u8]) -> Option<(u64, usize, bool)> {
    let first = *bytes.first()?;
    if first == 0 {
        return None;
    }
    let n = first.leading_zeros() as usize + 1;
    let raw = bytes.get(..n)?;
    // The marker bit is the value's first bit; an 8-byte vint's first byte holds no value.
    let mut v = u64::from(first & 0xFFu8.checked_shr(n as u32).unwrap_or(0));
    for &b in &raw[1..] {
        v = (v << 8) | u64::from(b);
    }
    let all_ones = v == (1u64 << (7 * n)) - 1;
    Some((v, n, all_ones))
}

/// The element header at `offset`, if one fits before `limit`.
fn element_at<R: Read + Seek>(
    w: &mut Window<R>,
    offset: u64,
    limit: u64,
) -> io::Result<Option<Element>> {
    let head = w.peek(offset, 12)?;
    let Some((id, size, header_len, unknown)) = element_header(head) else {
        return Ok(None);
    };
    let header_len = header_len as u64;
    let len = if unknown { UNKNOWN_SIZE } else { size };
    let e = Element {
        offset,
        id,
        header_len,
        len,
    };
    let fits = unknown
        || offset
            .checked_add(header_len)
            .and_then(|d| d.checked_add(size))
            .is_some_and(|end| end <= limit);
    Ok(fits.then_some(e))
}

/// The id, size, header length and whether the size is unknown (all ones) of the element
/// header at the start of `head`: an id of at most 4 bytes, then a size vint.
fn element_header(head: &[u8]) -> Option<(u32, u64, usize, bool)> {
    let (_, id_len, _) = vint(head).filter(|(_, n, _)| *n <= 4)?;
    let id = head[..id_len]
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    let (size, size_len, unknown) = vint(&head[id_len..])?;
    Some((id, size, id_len + size_len, unknown))
}

struct Walk<'a> {
    pieces: Vec<Piece>,
    tracks: Vec<TrackInfo>,
    track_of: HashMap<u64, usize>,
    budget: &'a mut SampleBudget,
    /// Start of the run of clusters being walked.
    media_from: Option<u64>,
}

impl Walk<'_> {
    fn object(&mut self, offset: u64, len: u64, label: [u8; 4]) {
        self.end_media(offset);
        self.pieces.push(Piece::Object { offset, len, label });
    }

    fn end_media(&mut self, at: u64) {
        if let Some(start) = self.media_from.take() {
            self.pieces.push(Piece::Media {
                offset: start,
                len: at - start,
            });
        }
    }

    /// Notes a block's frame data as its track's next sample (the sample was taken from
    /// the file's allowance when its block was found).
    fn sample(
        &mut self,
        track: u64,
        offset: u64,
        size: u64,
        sync: bool,
    ) -> Result<(), MatroskaError> {
        let next = self.tracks.len();
        let i = *self.track_of.entry(track).or_insert(next);
        if i == next {
            if next >= MAX_TRACKS {
                return Err(MatroskaError::TooManyTracks);
            }
            self.tracks.push(TrackInfo {
                track_id: track as u32,
                handler: "data".into(),
                codec: "unknown".into(),
                ..TrackInfo::default()
            });
        }
        let t = &mut self.tracks[i];
        t.samples.push(Sample {
            offset,
            // `block` refuses frame data of 4 GiB or more.
            size: size as u32,
            sync,
        });
        t.sample_count += 1;
        Ok(())
    }
}

pub(crate) fn parse<R: Read + Seek>(
    file: &mut R,
    len: u64,
    budget: &mut SampleBudget,
) -> Result<Parsed, MatroskaError> {
    let mut w = Window::new(file, len);
    let header = element_at(&mut w, 0, len)?
        .filter(|e| e.id == EBML && e.len != UNKNOWN_SIZE && e.len <= 4096)
        .ok_or(MatroskaError::BadHeader)?;
    let header_bytes = w.read_exact_at(header.data_offset(), header.len as usize)?;
    let webm = children(&header_bytes)
        .find(|(id, _)| *id == DOC_TYPE)
        .is_some_and(|(_, v)| v == b"webm");
    let mut walk = Walk {
        pieces: vec![Piece::Object {
            offset: 0,
            len: header.end(),
            label: *b"EBML",
        }],
        tracks: Vec::new(),
        track_of: HashMap::new(),
        budget,
        media_from: None,
    };
    let mut info: Option<(u64, u64)> = None;
    let mut track_list: Option<(u64, u64)> = None;
    let mut pos = header.end();
    'top: while pos < len && walk.pieces.len() < MAX_PIECES {
        let Some(top) = element_at(&mut w, pos, len)? else {
            break;
        };
        if top.id != SEGMENT {
            if top.len == UNKNOWN_SIZE {
                break;
            }
            walk.object(top.offset, top.end() - top.offset, *b"ebml");
            pos = top.end();
            continue;
        }
        walk.object(top.offset, top.header_len, *b"Segm");
        let segment_end = if top.len == UNKNOWN_SIZE {
            len
        } else {
            top.end()
        };
        pos = top.data_offset();
        while pos < segment_end {
            if walk.pieces.len() >= MAX_PIECES {
                break 'top;
            }
            let Some(child) = element_at(&mut w, pos, segment_end)? else {
                break 'top;
            };
            if child.id == CLUSTER {
                let Some(end) = walk_cluster(&mut w, &mut walk, child, segment_end)? else {
                    break 'top;
                };
                walk.media_from.get_or_insert(child.offset);
                pos = end;
                continue;
            }
            if child.len == UNKNOWN_SIZE {
                break 'top;
            }
            let label = match child.id {
                0x114D_9B74 => *b"seek",
                INFO => *b"info",
                TRACKS => *b"trks",
                0x1C53_BB6B => *b"cues",
                0x1254_C367 => *b"tags",
                0x1043_A770 => *b"chap",
                0x1941_A469 => *b"atch",
                0xEC => *b"void",
                _ => *b"ebml",
            };
            let span = (child.data_offset(), child.len);
            match child.id {
                INFO if info.is_none() => info = Some(span),
                TRACKS if track_list.is_none() => track_list = Some(span),
                _ => {}
            }
            walk.object(child.offset, child.end() - child.offset, label);
            pos = child.end();
        }
    }
    walk.end_media(pos);
    if pos < len {
        walk.pieces.push(Piece::Bytes {
            offset: pos,
            len: len - pos,
        });
    }
    let mut tracks = walk.tracks;
    // Streams follow the file's track numbers, not which track's block came first.
    tracks.sort_by_key(|t| t.track_id);
    let mut movie = MovieInfo {
        duration_secs: 0.0,
        tracks,
    };
    if let Some((offset, l)) = info.filter(|(_, l)| *l <= MAX_HEADER_ELEMENT) {
        movie.duration_secs = duration_of(&w.read_exact_at(offset, l as usize)?);
    }
    if let Some((offset, l)) = track_list.filter(|(_, l)| *l <= MAX_HEADER_ELEMENT) {
        describe_tracks(&w.read_exact_at(offset, l as usize)?, &mut movie);
    }
    Ok(Parsed {
        container: if webm {
            Container::WebM
        } else {
            Container::Matroska
        },
        movie,
        pieces: walk.pieces,
    })
}

/// Notes the samples of the blocks in `cluster`; returns where the cluster ends, or
/// `None` if it can't be walked to its end (the walk then stops before it).
fn walk_cluster<R: Read + Seek>(
    w: &mut Window<R>,
    walk: &mut Walk,
    cluster: Element,
    segment_end: u64,
) -> Result<Option<u64>, MatroskaError> {
    let unknown = cluster.len == UNKNOWN_SIZE;
    let end = if unknown { segment_end } else { cluster.end() };
    // Samples are noted only once the whole cluster proved readable; each is taken from
    // the file's allowance as it is found, so one huge cluster can't list without bound.
    let mut found: Vec<(u64, u64, u64, bool)> = Vec::new();
    let mut pos = cluster.data_offset();
    while pos < end {
        let Some(e) = element_at(w, pos, end)? else {
            return Ok(None);
        };
        if unknown && LEVEL_1.contains(&e.id) {
            break;
        }
        if e.len == UNKNOWN_SIZE {
            return Ok(None);
        }
        match e.id {
            SIMPLE_BLOCK => match block(w, e)? {
                Some((track, offset, size, flags)) => {
                    walk.budget.take(1, 0)?;
                    found.push((track, offset, size, flags & 0x80 != 0))
                }
                None => return Ok(None),
            },
            BLOCK_GROUP => {
                let mut inner = e.data_offset();
                let mut the_block = None;
                let mut referenced = false;
                while inner < e.end() {
                    let Some(c) = element_at(w, inner, e.end())? else {
                        return Ok(None);
                    };
                    if c.len == UNKNOWN_SIZE {
                        return Ok(None);
                    }
                    match c.id {
                        BLOCK => the_block = block(w, c)?,
                        REFERENCE_BLOCK => referenced = true,
                        _ => {}
                    }
                    inner = c.end();
                }
                if let Some((track, offset, size, _)) = the_block {
                    walk.budget.take(1, 0)?;
                    found.push((track, offset, size, !referenced));
                }
            }
            _ => {}
        }
        pos = e.end();
    }
    for (track, offset, size, sync) in found {
        walk.sample(track, offset, size, sync)?;
    }
    Ok(Some(pos))
}

/// A block's track number and where its frame data lies (after the track number, the
/// 16-bit timecode and the flags byte), with the flags.
fn block<R: Read + Seek>(w: &mut Window<R>, e: Element) -> io::Result<Option<(u64, u64, u64, u8)>> {
    let head = w.peek(e.data_offset(), 11)?;
    let Some((track, n, _)) = vint(head) else {
        return Ok(None);
    };
    let Some(&flags) = head.get(n + 2) else {
        return Ok(None);
    };
    let skip = n as u64 + 3;
    if e.len < skip || e.len - skip > u64::from(u32::MAX) {
        return Ok(None);
    }
    Ok(Some((track, e.data_offset() + skip, e.len - skip, flags)))
}

/// The (id, data) children of an element held in memory; stops at the first that does
/// not fit.
fn children(bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = bytes.get(pos..)?;
        let (id, size, start, _) = element_header(rest)?;
        let data = rest.get(start..start.checked_add(usize::try_from(size).ok()?)?)?;
        pos += start + data.len();
        Some((id, data))
    })
}

fn uint(data: &[u8]) -> Option<u64> {
    (data.len() <= 8).then(|| data.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn float(data: &[u8]) -> Option<f64> {
    match data.len() {
        4 => Some(f64::from(f32::from_be_bytes(data.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(data.try_into().ok()?)),
        _ => None,
    }
}

/// Seconds from an Info element's Duration (in TimestampScale units, default 1 ms).
fn duration_of(info: &[u8]) -> f64 {
    let mut scale = 1_000_000u64;
    let mut duration = 0.0;
    for (id, data) in children(info) {
        match id {
            TIMESTAMP_SCALE => scale = uint(data).filter(|&s| s > 0).unwrap_or(scale),
            DURATION => {
                duration = float(data)
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .unwrap_or(0.0)
            }
            _ => {}
        }
    }
    duration * scale as f64 / 1e9
}

/// The tracks and duration that stored Info and Tracks elements (whole, with their
/// headers: the `info` and `trks` objects) describe, without samples: what `git dits
/// show` reads without fetching the clusters.
pub fn movie_from_elements(info: Option<&[u8]>, tracks: &[u8]) -> MovieInfo {
    let mut movie = MovieInfo::default();
    if let Some((INFO, data)) = info.and_then(|i| children(i).next()) {
        movie.duration_secs = duration_of(data);
    }
    let Some((TRACKS, data)) = children(tracks).next() else {
        return movie;
    };
    for (id, entry) in children(data).take(MAX_TRACKS) {
        if id != TRACK_ENTRY {
            continue;
        }
        if let Some(number) = children(entry)
            .find(|(id, _)| *id == TRACK_NUMBER)
            .and_then(|(_, d)| uint(d))
        {
            movie.tracks.push(TrackInfo {
                track_id: number as u32,
                ..TrackInfo::default()
            });
        }
    }
    describe_tracks(data, &mut movie);
    movie
}

/// Handler, codec and picture size of each track the Tracks element describes.
fn describe_tracks(tracks: &[u8], movie: &mut MovieInfo) {
    for (id, entry) in children(tracks) {
        if id != TRACK_ENTRY {
            continue;
        }
        let (mut number, mut kind, mut codec, mut width, mut height) = (None, 0, "", 0, 0);
        for (id, data) in children(entry) {
            match id {
                TRACK_NUMBER => number = uint(data),
                TRACK_TYPE => kind = uint(data).unwrap_or(0),
                CODEC_ID => {
                    codec = std::str::from_utf8(data)
                        .unwrap_or("")
                        .trim_end_matches('\0')
                }
                VIDEO => {
                    for (id, data) in children(data) {
                        match id {
                            PIXEL_WIDTH => width = uint(data).unwrap_or(0) as u32,
                            PIXEL_HEIGHT => height = uint(data).unwrap_or(0) as u32,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let Some(track) =
            number.and_then(|n| movie.tracks.iter_mut().find(|t| u64::from(t.track_id) == n))
        else {
            continue;
        };
        track.handler = match kind {
            1 => "vide",
            2 => "soun",
            0x11 => "subt",
            _ => "data",
        }
        .into();
        track.codec = codec_name(codec);
        track.width = width;
        track.height = height;
        track.duration_secs = movie.duration_secs;
    }
}

/// A short codec name for a Matroska CodecID.
fn codec_name(codec_id: &str) -> String {
    let known = [
        ("V_MPEG4/ISO/AVC", "h264"),
        ("V_MPEGH/ISO/HEVC", "hevc"),
        ("V_VP8", "vp8"),
        ("V_VP9", "vp9"),
        ("V_AV1", "av1"),
        ("V_MPEG2", "mpeg2"),
        ("V_PRORES", "prores"),
        ("V_MJPEG", "mjpeg"),
        ("A_AAC", "aac"),
        ("A_OPUS", "opus"),
        ("A_VORBIS", "vorbis"),
        ("A_FLAC", "flac"),
        ("A_AC3", "ac3"),
        ("A_EAC3", "eac3"),
        ("A_PCM", "pcm"),
        ("A_MPEG/L3", "mp3"),
        ("S_TEXT/UTF8", "srt"),
        ("S_TEXT/ASS", "ass"),
        ("S_TEXT/WEBVTT", "webvtt"),
    ];
    known
        .iter()
        .find(|(prefix, _)| codec_id.starts_with(prefix))
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| codec_id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints_decode_with_their_length_and_unknown_sizes() {
        assert_eq!(vint(&[0x81]), Some((1, 1, false)));
        assert_eq!(vint(&[0x40, 0x02]), Some((2, 2, false)));
        assert_eq!(vint(&[0xFF]), Some((127, 1, true)));
        assert_eq!(
            vint(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).map(|v| v.2),
            Some(true)
        );
        assert_eq!(vint(&[0x00, 0x81]), None);
        assert_eq!(vint(&[0x40]), None);
    }
}
