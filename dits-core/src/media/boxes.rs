//! ISO BMFF box headers and the top-level walk of a file. Sizes come from untrusted
//! files, so every one is checked against what actually exists before it is used.

use std::io::{Read, Seek, SeekFrom};

/// One box as found in a file or a parent's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxSpan {
    pub fourcc: [u8; 4],
    /// Absolute offset of the box header.
    pub offset: u64,
    /// 8, or 16 with a 64-bit size.
    pub header_len: u64,
    /// Whole box, header included.
    pub len: u64,
}

impl BoxSpan {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
    pub fn payload_offset(&self) -> u64 {
        self.offset + self.header_len
    }
    pub fn payload_len(&self) -> u64 {
        self.len - self.header_len
    }
    pub fn name(&self) -> String {
        fourcc_str(&self.fourcc)
    }
}

pub fn fourcc_str(f: &[u8; 4]) -> String {
    f.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoxError {
    #[error("box at offset {offset}: header truncated")]
    TruncatedHeader { offset: u64 },
    #[error("box `{fourcc}` at offset {offset}: size {len} does not fit in {available} bytes")]
    BadSize {
        fourcc: String,
        offset: u64,
        len: u64,
        available: u64,
    },
    #[error("box at offset {offset}: type is not printable, so this is not ISO BMFF")]
    NotAsciiType { offset: u64 },
    #[error("more than {0} top-level boxes")]
    TooManyBoxes(usize),
    #[error("no `ftyp` or `moov` box: not an MP4/MOV file")]
    NotIsoBmff,
    #[error("reading the file: {0}")]
    Io(String),
}

const MAX_TOP_LEVEL_BOXES: usize = 1 << 20;

/// Parses one box header from `bytes` (which start at absolute `offset` and hold
/// `available` bytes of the parent). Size 0 means "to the end of the parent".
pub fn parse_header(bytes: &[u8], offset: u64, available: u64) -> Result<BoxSpan, BoxError> {
    let short = || BoxError::TruncatedHeader { offset };
    let size32 = u32::from_be_bytes(
        bytes
            .get(0..4)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let fourcc: [u8; 4] = bytes
        .get(4..8)
        .ok_or_else(short)?
        .try_into()
        .map_err(|_| short())?;
    if !fourcc
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == 0xa9)
    {
        return Err(BoxError::NotAsciiType { offset });
    }
    let (header_len, len) = match size32 {
        0 => (8, available),
        1 => {
            let large: [u8; 8] = bytes
                .get(8..16)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?;
            (16, u64::from_be_bytes(large))
        }
        n => (8, u64::from(n)),
    };
    if len < header_len || len > available {
        return Err(BoxError::BadSize {
            fourcc: fourcc_str(&fourcc),
            offset,
            len,
            available,
        });
    }
    Ok(BoxSpan {
        fourcc,
        offset,
        header_len,
        len,
    })
}

/// Walks the top-level boxes of a seekable file of `file_len` bytes. The walk must tile
/// the file exactly, or the file is not treated as ISO BMFF.
pub fn top_level_boxes<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
) -> Result<Vec<BoxSpan>, BoxError> {
    let io = |e: std::io::Error| BoxError::Io(e.to_string());
    let mut boxes = Vec::new();
    let mut offset = 0u64;
    while offset < file_len {
        if boxes.len() >= MAX_TOP_LEVEL_BOXES {
            return Err(BoxError::TooManyBoxes(MAX_TOP_LEVEL_BOXES));
        }
        let available = file_len - offset;
        let mut head = [0u8; 16];
        let want = available.min(16) as usize;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut head[..want]).map_err(io)?;
        let span = parse_header(&head[..want], offset, available)?;
        offset = span.end();
        boxes.push(span);
    }
    if !boxes
        .iter()
        .any(|b| &b.fourcc == b"ftyp" || &b.fourcc == b"moov")
    {
        return Err(BoxError::NotIsoBmff);
    }
    Ok(boxes)
}

/// Iterates the child boxes inside an in-memory payload. Stops at the first malformed
/// child and reports it; the caller decides whether that is fatal.
pub fn children(payload: &[u8], base_offset: u64) -> Result<Vec<(BoxSpan, &[u8])>, BoxError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while payload.len() - pos >= 8 {
        let rest = &payload[pos..];
        let span = parse_header(rest, base_offset + pos as u64, rest.len() as u64)?;
        let (h, l) = (span.header_len as usize, span.len as usize);
        out.push((span, &rest[h..l]));
        pos += l;
    }
    Ok(out)
}

/// The first child of `payload` with type `fourcc`.
pub fn find_child<'a>(payload: &'a [u8], fourcc: &[u8; 4]) -> Option<&'a [u8]> {
    children(payload, 0)
        .ok()?
        .into_iter()
        .find(|(s, _)| &s.fourcc == fourcc)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn boxed(fourcc: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(fourcc);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn walk_tiles_the_file() {
        let mut f = boxed(b"ftyp", b"isom\0\0\0\0");
        f.extend(boxed(b"mdat", &[1; 100]));
        let boxes = top_level_boxes(&mut Cursor::new(&f), f.len() as u64).unwrap();
        assert_eq!(boxes.len(), 2);
        assert_eq!(boxes[1].end(), f.len() as u64);
    }

    #[test]
    fn lying_sizes_are_errors_not_panics() {
        for size in [0xffff_fff0u32, 3, 1] {
            let mut f = boxed(b"ftyp", b"isom");
            f.extend_from_slice(&size.to_be_bytes());
            f.extend_from_slice(b"mdat");
            f.extend_from_slice(&[0xff; 8]);
            assert!(
                top_level_boxes(&mut Cursor::new(&f), f.len() as u64).is_err(),
                "size {size}"
            );
        }
    }
}
