//! Media structure: how a file's bytes divide into structure (objects stored whole) and
//! payload (content-defined chunks, cut at keyframes where known). Anything that does
//! not parse cleanly is laid out as one plain payload run: the add never fails because
//! of what a file contains.

pub mod boxes;
pub mod sample_table;

use std::io::{Read, Seek, SeekFrom};

use boxes::{top_level_boxes, BoxSpan};
use sample_table::{parse_moov, MovieInfo};

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
}

/// What kind of file this is, for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Mov,
    FragmentedMp4,
    Other,
}

impl Container {
    pub fn as_str(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::FragmentedMp4 => "fmp4",
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
    /// Why structure-aware splitting was not used, if it wasn't.
    pub fallback_reason: Option<String>,
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
            fallback_reason: reason,
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

/// Works out the layout of a seekable file of `len` bytes.
pub fn analyze<R: Read + Seek>(file: &mut R, len: u64) -> Layout {
    match analyze_iso_bmff(file, len) {
        Ok(layout) => layout,
        Err(reason) => Layout::plain(len, Some(reason)),
    }
}

fn analyze_iso_bmff<R: Read + Seek>(file: &mut R, len: u64) -> Result<Layout, String> {
    if len < 16 {
        return Err("too small to be MP4/MOV".into());
    }
    let boxes = top_level_boxes(file, len).map_err(|e| e.to_string())?;
    let movie = match boxes.iter().find(|b| &b.fourcc == b"moov") {
        Some(moov) if moov.payload_len() <= MAX_OBJECT_BOX => parse_moov(&read_span(file, moov)?),
        _ => MovieInfo::default(),
    };
    let container = container_of(file, &boxes)?;
    let mut keyframes: Vec<u64> = movie
        .tracks
        .iter()
        .flat_map(|t| t.keyframe_offsets.iter().copied())
        .collect();
    keyframes.sort_unstable();
    keyframes.dedup();

    let mut regions = Vec::with_capacity(boxes.len() + 1);
    for b in &boxes {
        if &b.fourcc == b"mdat" {
            regions.push(Region::Object {
                offset: b.offset,
                len: b.header_len,
                fourcc: b.fourcc,
            });
            let start = b.payload_offset();
            let end = b.end();
            let lo = keyframes.partition_point(|&k| k < start);
            let hi = keyframes.partition_point(|&k| k < end);
            regions.push(Region::Payload {
                offset: start,
                len: b.payload_len(),
                cuts: keyframes[lo..hi].to_vec(),
            });
        } else if b.len <= MAX_OBJECT_BOX {
            regions.push(Region::Object {
                offset: b.offset,
                len: b.len,
                fourcc: b.fourcc,
            });
        } else {
            regions.push(Region::Payload {
                offset: b.offset,
                len: b.len,
                cuts: Vec::new(),
            });
        }
    }
    Ok(Layout {
        container,
        movie,
        regions,
        fallback_reason: None,
    })
}

fn container_of<R: Read + Seek>(file: &mut R, boxes: &[BoxSpan]) -> Result<Container, String> {
    if boxes.iter().any(|b| &b.fourcc == b"moof") {
        return Ok(Container::FragmentedMp4);
    }
    if let Some(ftyp) = boxes.iter().find(|b| &b.fourcc == b"ftyp") {
        if ftyp.payload_len() >= 4 {
            let mut brand = [0u8; 4];
            file.seek(SeekFrom::Start(ftyp.payload_offset()))
                .map_err(|e| e.to_string())?;
            file.read_exact(&mut brand).map_err(|e| e.to_string())?;
            if &brand == b"qt  " {
                return Ok(Container::Mov);
            }
        }
    }
    Ok(Container::Mp4)
}

fn read_span<R: Read + Seek>(file: &mut R, span: &BoxSpan) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; span.payload_len() as usize];
    file.seek(SeekFrom::Start(span.payload_offset()))
        .map_err(|e| e.to_string())?;
    file.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}
