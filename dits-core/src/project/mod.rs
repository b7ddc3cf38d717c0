//! Project files: which media an edit needs. One parser per format finds each reference
//! a project makes to a file (its raw string as written, the path it decodes to and the
//! role it plays); resolving those paths against a repository is the caller's business
//! (`git dits deps`). Parsers stream (`quick-xml`, `serde_json`), bound what they
//! decompress and nest, and answer hostile input with an error, never a panic.

pub mod deps;
pub mod edl;
pub mod fcpxml;
pub mod mlt;
pub mod otio;
pub mod path;
pub mod prproj;
pub mod resolve;
mod xml;

use std::fmt;

/// The most bytes a project may decompress to (a gzip or zip bomb is an error).
pub const MAX_PROJECT_BYTES: u64 = 256 << 20;
/// The most references one project may list.
pub const MAX_REFERENCES: usize = 1 << 20;
/// The deepest element nesting a project may have.
pub const MAX_DEPTH: usize = 256;

/// What a reference is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The clip itself.
    Original,
    /// A smaller stand-in the editor plays instead.
    Proxy,
    /// A colour lookup table.
    Lut,
    /// A wipe's luma (greyscale) image.
    Luma,
    /// An image inside a title.
    TitleImage,
    /// An image sequence (a pattern standing for numbered files).
    Sequence,
    /// Data a filter keeps beside the project (a stabilizer's motion file).
    Data,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Original => "original",
            Role::Proxy => "proxy",
            Role::Lut => "lut",
            Role::Luma => "luma",
            Role::TitleImage => "title-image",
            Role::Sequence => "sequence",
            Role::Data => "data",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reference a project makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The string as the project holds it (after XML or JSON unescaping).
    pub raw: String,
    /// The path it decodes to: percent-decoding and `file://` forms undone, Windows
    /// separators kept as written (see [`path::decode`]).
    pub path: String,
    pub role: Role,
    /// Whether `path` may be relative to a base the project names (MLT `root`), rather
    /// than to the project's own directory.
    pub base: Option<String>,
    /// A relative path the format records beside the absolute one (Premiere
    /// `RelativePath`), tried when the absolute one does not resolve.
    pub relative: Option<String>,
    /// The format's own fingerprint of the file, where it keeps one (Kdenlive
    /// `kdenlive:file_hash`), and the size it recorded (`kdenlive:file_size`).
    pub fingerprint: Option<String>,
    pub size: Option<u64>,
    /// An EDL names clips, not paths: match by file name only.
    pub by_name: bool,
}

impl Reference {
    pub(crate) fn new(raw: &str, role: Role) -> Self {
        Reference {
            raw: raw.to_string(),
            path: path::decode(raw),
            role,
            base: None,
            relative: None,
            fingerprint: None,
            size: None,
            by_name: false,
        }
    }
}

/// Which format a project is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Kdenlive `.kdenlive`, Shotcut and melt `.mlt`.
    Mlt,
    /// OpenTimelineIO `.otio`.
    Otio,
    /// An `.otioz` bundle (zip holding `content.otio` and `media/`).
    Otioz,
    /// Final Cut Pro `.fcpxml` (or `Info.fcpxml` of an `.fcpxmld` bundle).
    Fcpxml,
    /// Premiere Pro `.prproj` (gzip-compressed XML).
    Prproj,
    /// CMX3600 `.edl`.
    Edl,
}

impl Format {
    /// The format a project path's extension names.
    pub fn of_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit('.').next()?;
        Some(match ext {
            "kdenlive" | "mlt" => Format::Mlt,
            "otio" => Format::Otio,
            "otioz" => Format::Otioz,
            "fcpxml" => Format::Fcpxml,
            "prproj" => Format::Prproj,
            "edl" => Format::Edl,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Mlt => "mlt",
            Format::Otio => "otio",
            Format::Otioz => "otioz",
            Format::Fcpxml => "fcpxml",
            Format::Prproj => "prproj",
            Format::Edl => "edl",
        }
    }
}

/// Why a project could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("not valid XML at byte {position}: {reason}")]
    Xml { position: u64, reason: String },
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error(
        "the entity &{0}; is not one XML predefines (entities a document declares are refused)"
    )]
    UnknownEntity(String),
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("decompresses to more than {MAX_PROJECT_BYTES} bytes")]
    TooLarge,
    #[error("lists more than {MAX_REFERENCES} references")]
    TooManyReferences,
    #[error("text is not UTF-8")]
    NotUtf8,
    #[error("gzip: {0}")]
    Gzip(String),
    #[error("zip: {0}")]
    Zip(String),
    #[error("a bundle without {0}")]
    MissingEntry(&'static str),
}

/// `s` cut to at most 200 characters: parser messages may quote the document (a tag or
/// an entity name), and a hostile document must not make an error message huge.
pub(crate) fn short(s: &str) -> String {
    cut_chars(s, 200)
}

/// `s` cut to `max` characters, with an ellipsis if it was longer.
pub fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// Every reference the project `bytes` (in `format`) makes, in document order.
pub fn references(format: Format, bytes: &[u8]) -> Result<Vec<Reference>, ProjectError> {
    let refs = match format {
        Format::Mlt => mlt::references(bytes)?,
        Format::Otio => otio::references(bytes)?,
        Format::Otioz => otio::bundle_references(bytes)?,
        Format::Fcpxml => fcpxml::references(bytes)?,
        Format::Prproj => prproj::references(bytes)?,
        Format::Edl => edl::references(bytes)?,
    };
    if refs.len() > MAX_REFERENCES {
        return Err(ProjectError::TooManyReferences);
    }
    Ok(refs)
}

/// Adds `r` unless the list already holds the same path in the same role.
pub(crate) fn push_unique(refs: &mut Vec<Reference>, r: Reference) -> Result<(), ProjectError> {
    if r.path.is_empty() || refs.iter().any(|o| o.path == r.path && o.role == r.role) {
        return Ok(());
    }
    if refs.len() >= MAX_REFERENCES {
        return Err(ProjectError::TooManyReferences);
    }
    refs.push(r);
    Ok(())
}

/// Reads at most [`MAX_PROJECT_BYTES`] from `reader` (a decompressor); more is
/// [`ProjectError::TooLarge`], a read error is `wrap`ped.
pub(crate) fn read_bounded(
    reader: impl std::io::Read,
    wrap: fn(String) -> ProjectError,
) -> Result<Vec<u8>, ProjectError> {
    use std::io::Read;
    let mut out = Vec::new();
    reader
        .take(MAX_PROJECT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| wrap(short(&e.to_string())))?;
    if out.len() as u64 > MAX_PROJECT_BYTES {
        return Err(ProjectError::TooLarge);
    }
    Ok(out)
}

/// Whether `bytes` are gzip-compressed (Premiere saves projects so).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Inflates gzip `bytes`, at most [`MAX_PROJECT_BYTES`] of them (a gzip bomb is an error).
pub fn inflate_gzip(bytes: &[u8]) -> Result<Vec<u8>, ProjectError> {
    read_bounded(flate2::read::GzDecoder::new(bytes), ProjectError::Gzip)
}
