//! Media structure: how a file's bytes divide into structure (objects stored whole) and
//! payload. Payload is either per-track sample streams (track-level splitting, see
//! `streams`) or, when the sample tables can't be trusted, content-defined chunks of the
//! raw bytes cut at keyframes where known. Anything that does not parse cleanly is laid
//! out as one plain payload run: the add never fails because of what a file contains.

pub mod boxes;
pub mod fragments;
pub mod matroska;
pub mod mxf;
pub mod sample_table;
pub mod streams;
mod window;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use boxes::{top_level_boxes, BoxError, BoxSpan};
use fragments::FragmentError;
use sample_table::{parse_moov_within, MovieInfo, SampleBudget};
use streams::{build_streams, SampleStream};

/// Why a file's structure could not be used. Never fatal: `analyze` then lays the file out
/// as one plain payload run and keeps the message as `Layout::fallback_reason`.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("too small to be MP4/MOV")]
    TooSmall,
    #[error(transparent)]
    Boxes(#[from] BoxError),
    /// Reading a box of the (spooled) file failed.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// A `moof` bigger than [`MAX_OBJECT_BOX`]: its samples are not read.
    #[error("moof is too large")]
    MoofTooLarge,
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    #[error(transparent)]
    Mxf(#[from] mxf::MxfError),
    #[error(transparent)]
    Matroska(#[from] matroska::MatroskaError),
}

/// Structure boxes bigger than this are chunked like payload rather than kept whole,
/// so a hostile or bloated `free`/`uuid` box can't demand a huge allocation.
pub const MAX_OBJECT_BOX: u64 = 64 << 20;

/// A contiguous byte range of the file and how to store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Region {
    /// A whole box kept as one object (`ftyp`, `moov`, `free`, `moof`, an `mdat` header).
    Object {
        offset: u64,
        len: u64,
        fourcc: [u8; 4],
    },
    /// Bytes cut into content-defined chunks; `cuts` are absolute offsets inside the
    /// region where a chunk must start (video keyframes).
    Payload {
        offset: u64,
        len: u64,
        cuts: Vec<u64>,
    },
    /// An `mdat` payload whose bytes are laid down by `Layout::streams`.
    Streamed { offset: u64, len: u64 },
}

/// What kind of file this is, for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Mov,
    FragmentedMp4,
    Mxf,
    Matroska,
    WebM,
    Other,
}

impl Container {
    pub fn as_str(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::FragmentedMp4 => "fmp4",
            Container::Mxf => "mxf",
            Container::Matroska => "mkv",
            Container::WebM => "webm",
            Container::Other => "binary",
        }
    }
}

/// The file's layout plus what was learnt about it.
#[derive(Debug, Clone)]
pub struct Layout {
    pub container: Container,
    pub movie: MovieInfo,
    pub regions: Vec<Region>,
    /// The sample streams behind `Region::Streamed` regions; empty without track-level
    /// splitting.
    pub streams: Vec<SampleStream>,
    /// Why structure-aware splitting was not used, if it wasn't.
    pub fallback_reason: Option<String>,
    /// Why track-level splitting was not used for a parsed MP4/MOV, if it wasn't.
    pub track_split_fallback: Option<String>,
    /// The file's sample tables claimed more than a file may list (see
    /// [`SampleBudget`]): worth a warning, since such a file is usually hostile.
    pub sample_limit: Option<sample_table::SampleLimit>,
}

/// How `analyze` may lay out a file.
#[derive(Debug, Clone, Copy)]
pub struct LayoutOptions {
    /// Chunk each track's samples as its own stream (`dits.splitTracks`, default on).
    pub split_tracks: bool,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        LayoutOptions { split_tracks: true }
    }
}

impl Layout {
    fn plain(len: u64, reason: Option<String>) -> Self {
        Layout {
            container: Container::Other,
            movie: MovieInfo::default(),
            regions: vec![Region::Payload {
                offset: 0,
                len,
                cuts: Vec::new(),
            }],
            streams: Vec::new(),
            fallback_reason: reason,
            track_split_fallback: None,
            sample_limit: None,
        }
    }

    /// One line for the pointer: `mp4 duration=10.00s tracks=vide:avc1:320x240,soun:mp4a`.
    pub fn summary_line(&self) -> String {
        if self.container == Container::Other {
            return "binary".to_string();
        }
        let tracks: Vec<String> = self
            .movie
            .tracks
            .iter()
            // MXF system items are laid out like a track but are not one for people.
            .filter(|t| t.handler != mxf::SYSTEM_HANDLER)
            .map(|t| {
                let mut s = format!("{}:{}", clean_token(&t.handler), clean_token(&t.codec));
                if t.width > 0 && t.height > 0 {
                    s.push_str(&format!(":{}x{}", t.width, t.height));
                }
                s
            })
            .collect();
        format!(
            "{} duration={:.2}s tracks={}",
            self.container.as_str(),
            self.movie.duration_secs,
            if tracks.is_empty() {
                "none".to_string()
            } else {
                tracks.join(",")
            }
        )
    }
}

/// Whether a pointer's media line ([`Layout::summary_line`]) (`mp4 duration=… tracks=vide:avc1:1280x720,…`) names a
/// picture track: only those are transcoded.
pub fn has_picture(media: &str) -> bool {
    let Some(tracks) = media
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tracks="))
    else {
        return false;
    };
    tracks.split(',').any(|t| {
        t.rsplit(':').next().is_some_and(|size| {
            size.split_once('x')
                .is_some_and(|(w, h)| w.parse::<u32>().is_ok() && h.parse::<u32>().is_ok())
        })
    })
}

/// Keeps a pointer line one line of plain ASCII whatever a file's boxes say.
fn clean_token(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    if t.is_empty() {
        "?".to_string()
    } else {
        t
    }
}

/// A stretch of a file as a container parser sees it; a parser's pieces tile the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Structure stored as one object (a box, a partition's metadata, an EBML element);
    /// `label` names it in recipes and `git dits show`.
    Object {
        offset: u64,
        len: u64,
        label: [u8; 4],
    },
    /// Bytes the tracks' samples lie in (an `mdat` payload, a run of MXF essence
    /// elements, a run of Matroska clusters), with whatever headers sit between samples.
    Media { offset: u64, len: u64 },
    /// Bytes the parser did not understand (a truncated or damaged tail): chunked as
    /// bytes, so the add goes on with what was understood before them.
    Bytes { offset: u64, len: u64 },
}

/// What a container parser learnt: the file's pieces and its tracks with their samples.
pub(crate) struct Parsed {
    pub container: Container,
    pub movie: MovieInfo,
    pub pieces: Vec<Piece>,
}

/// Works out the layout of a seekable file of `len` bytes.
pub fn analyze<R: Read + Seek>(file: &mut R, len: u64, options: LayoutOptions) -> Layout {
    let mut budget = SampleBudget::for_file(len);
    let parsed = match sniff(file, len) {
        Ok(Sniffed::Mxf) => mxf::parse(file, len, &mut budget).map_err(LayoutError::from),
        Ok(Sniffed::Matroska) => matroska::parse(file, len, &mut budget).map_err(LayoutError::from),
        Ok(Sniffed::IsoBmff) => parse_iso_bmff(file, len, &mut budget),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(parsed) => layout_of(parsed, options, budget.refused().cloned()),
        Err(reason) => {
            let mut layout = Layout::plain(len, Some(reason.to_string()));
            layout.sample_limit = budget.refused().cloned();
            layout
        }
    }
}

enum Sniffed {
    IsoBmff,
    Mxf,
    Matroska,
}

/// Which parser a file's first bytes call for; ISO BMFF has no fixed magic, so it is the
/// default.
fn sniff<R: Read + Seek>(file: &mut R, len: u64) -> Result<Sniffed, LayoutError> {
    if len < 16 {
        return Err(LayoutError::TooSmall);
    }
    let mut head = [0u8; 16];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut head)?;
    Ok(if mxf::is_header_partition(&head) {
        Sniffed::Mxf
    } else if matroska::is_ebml(&head) {
        Sniffed::Matroska
    } else {
        Sniffed::IsoBmff
    })
}

/// Lays out a parsed file: structure pieces as objects (or as payload when too big to
/// keep whole), media pieces as per-track streams when the samples tile them (else as
/// payload cut at video keyframes), and what the parser did not understand as payload.
fn layout_of(
    parsed: Parsed,
    options: LayoutOptions,
    sample_limit: Option<sample_table::SampleLimit>,
) -> Layout {
    let Parsed {
        container,
        movie,
        pieces,
    } = parsed;
    let payloads: Vec<(u64, u64)> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Media { offset, len } => Some((*offset, *len)),
            _ => None,
        })
        .collect();
    let (streams, track_split_fallback) = if options.split_tracks {
        match build_streams(&movie.tracks, &payloads) {
            Ok(streams) => (streams, None),
            Err(reason) => (Vec::new(), Some(reason.to_string())),
        }
    } else {
        (Vec::new(), Some("dits.splitTracks is off".to_string()))
    };
    let mut keyframes: Vec<u64> = movie
        .tracks
        .iter()
        .filter(|t| t.is_video())
        .flat_map(|t| t.samples.iter().filter(|s| s.sync).map(|s| s.offset))
        .collect();
    keyframes.sort_unstable();
    keyframes.dedup();

    let mut regions = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece {
            Piece::Object { offset, len, label } if len <= MAX_OBJECT_BOX => {
                regions.push(Region::Object {
                    offset,
                    len,
                    fourcc: label,
                })
            }
            Piece::Object { offset, len, .. } | Piece::Bytes { offset, len } => {
                regions.push(Region::Payload {
                    offset,
                    len,
                    cuts: Vec::new(),
                })
            }
            Piece::Media { offset, len } if !streams.is_empty() => {
                regions.push(Region::Streamed { offset, len })
            }
            Piece::Media { offset, len } => {
                let end = offset + len;
                let lo = keyframes.partition_point(|&k| k < offset);
                let hi = keyframes.partition_point(|&k| k < end);
                regions.push(Region::Payload {
                    offset,
                    len,
                    cuts: keyframes[lo..hi].to_vec(),
                });
            }
        }
    }
    // Empty pieces (an `mdat` with no payload) would be zero-length regions.
    regions.retain(|r| match r {
        Region::Object { len, .. } | Region::Payload { len, .. } | Region::Streamed { len, .. } => {
            *len > 0
        }
    });
    Layout {
        container,
        movie,
        regions,
        streams,
        fallback_reason: None,
        track_split_fallback,
        sample_limit,
    }
}

fn parse_iso_bmff<R: Read + Seek>(
    file: &mut R,
    len: u64,
    budget: &mut SampleBudget,
) -> Result<Parsed, LayoutError> {
    let boxes = top_level_boxes(file, len)?;
    let container = container_of(file, &boxes)?;
    let mut movie = MovieInfo::default();
    let mut defaults = HashMap::new();
    // One allowance of samples for the whole file, moov and fragments together.
    if let Some(moov) = boxes.iter().find(|b| &b.fourcc == b"moov") {
        if moov.payload_len() <= MAX_OBJECT_BOX {
            let payload = read_span(file, moov)?;
            movie = parse_moov_within(&payload, budget);
            defaults = fragments::track_defaults(&payload);
        }
    }
    if container == Container::FragmentedMp4 {
        add_fragment_samples(file, &boxes, &defaults, &mut movie, budget);
    }
    let mut pieces = Vec::with_capacity(boxes.len() + 1);
    for b in &boxes {
        if &b.fourcc == b"mdat" {
            pieces.push(Piece::Object {
                offset: b.offset,
                len: b.header_len,
                label: b.fourcc,
            });
            pieces.push(Piece::Media {
                offset: b.payload_offset(),
                len: b.payload_len(),
            });
        } else {
            pieces.push(Piece::Object {
                offset: b.offset,
                len: b.len,
                label: b.fourcc,
            });
        }
    }
    Ok(Parsed {
        container,
        movie,
        pieces,
    })
}

/// Fills in the samples of a fragmented file's tracks from its `moof`s. A `moof` that
/// doesn't parse marks every track's samples unusable (the file is then chunked by bytes).
fn add_fragment_samples<R: Read + Seek>(
    file: &mut R,
    boxes: &[BoxSpan],
    defaults: &HashMap<u32, fragments::TrackDefaults>,
    movie: &mut MovieInfo,
    budget: &mut SampleBudget,
) {
    let mut by_track: HashMap<u32, Vec<sample_table::Sample>> = HashMap::new();
    let mut failure = None;
    for moof in boxes.iter().filter(|b| &b.fourcc == b"moof") {
        let result = if moof.payload_len() > MAX_OBJECT_BOX {
            Err(LayoutError::MoofTooLarge)
        } else {
            read_span(file, moof).and_then(|payload| {
                let mut out = fragments::FragmentSamples {
                    by_track: &mut by_track,
                    budget: &mut *budget,
                };
                fragments::fragment_samples(&payload, moof.offset, defaults, &mut out)
                    .map_err(LayoutError::from)
            })
        };
        if let Err(e) = result {
            failure = Some(e.to_string());
            break;
        }
    }
    for track in &mut movie.tracks {
        let fragmented = by_track.remove(&track.track_id).unwrap_or_default();
        match &failure {
            Some(e) => track.samples_error = Some(e.clone()),
            None if !fragmented.is_empty() => {
                // The moov of a fragmented file usually lists no samples; if it lists some,
                // they come first in decode order.
                track.samples_error = None;
                track.sample_count = (track.samples.len() + fragmented.len()) as u64;
                track.samples.extend(fragmented);
            }
            None => {}
        }
    }
    if failure.is_none() && !by_track.is_empty() {
        // A traf for a track the moov doesn't declare: its samples would be unaccounted.
        if let Some(t) = movie.tracks.first_mut() {
            t.samples_error = Some("a moof names a track the moov does not declare".into());
        }
    }
}

fn container_of<R: Read + Seek>(file: &mut R, boxes: &[BoxSpan]) -> Result<Container, LayoutError> {
    if boxes.iter().any(|b| &b.fourcc == b"moof") {
        return Ok(Container::FragmentedMp4);
    }
    if let Some(ftyp) = boxes.iter().find(|b| &b.fourcc == b"ftyp") {
        if ftyp.payload_len() >= 4 {
            let mut brand = [0u8; 4];
            file.seek(SeekFrom::Start(ftyp.payload_offset()))?;
            file.read_exact(&mut brand)?;
            if &brand == b"qt  " {
                return Ok(Container::Mov);
            }
        }
    }
    Ok(Container::Mp4)
}

fn read_span<R: Read + Seek>(file: &mut R, span: &BoxSpan) -> Result<Vec<u8>, LayoutError> {
    let mut buf = vec![0u8; span.payload_len() as usize];
    file.seek(SeekFrom::Start(span.payload_offset()))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::has_picture;

    #[test]
    fn only_media_lines_with_a_sized_track_have_a_picture() {
        assert!(has_picture(
            "mp4 duration=2.00s tracks=vide:avc1:320x240,soun:mp4a"
        ));
        assert!(has_picture(
            "mkv duration=2.00s tracks=soun:opus,vide:vp9:640x360"
        ));
        assert!(!has_picture("mp4 duration=2.00s tracks=soun:mp4a"));
        assert!(!has_picture("binary"));
        assert!(!has_picture("mp4 duration=2.00s tracks=none"));
    }
}
