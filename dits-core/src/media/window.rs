//! A read window over a seekable file for walking element headers (MXF KLV keys and
//! lengths, Matroska EBML ids and sizes). A walk reads a few bytes per element, and
//! elements are often a few hundred bytes apart: one `pread` per header made walking a
//! long interleaved file cost hundreds of thousands of system calls, so headers are read
//! out of blocks of the file instead.

use std::io::{self, Read, Seek, SeekFrom};

/// How much one refill reads.
const BLOCK: usize = 64 << 10;

pub struct Window<'r, R: Read + Seek> {
    file: &'r mut R,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
}

impl<'r, R: Read + Seek> Window<'r, R> {
    pub fn new(file: &'r mut R, len: u64) -> Self {
        Window {
            file,
            len,
            buf: Vec::new(),
            start: 0,
        }
    }

    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Up to `want` bytes at `offset` (fewer only at the end of the file; `want` is at
    /// most a header's worth, far below [`BLOCK`]).
    pub fn peek(&mut self, offset: u64, want: usize) -> io::Result<&[u8]> {
        let want = want.min(BLOCK);
        let end = offset.saturating_add(want as u64).min(self.len);
        if offset >= end {
            return Ok(&[]);
        }
        let buffered_end = self.start + self.buf.len() as u64;
        if offset < self.start || end > buffered_end {
            let n = (self.len - offset).min(BLOCK as u64) as usize;
            self.buf.resize(n, 0);
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read_exact(&mut self.buf)?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.buf[from..from + (end - offset) as usize])
    }

    /// Exactly `len` bytes at `offset`, read whole (for elements parsed in memory, which
    /// callers bound before asking).
    pub fn read_exact_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let in_file = offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= self.len);
        if !in_file {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "element runs past the end of the file",
            ));
        }
        let mut out = vec![0u8; len];
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn peeks_across_block_boundaries_and_stops_at_the_end() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut cursor = Cursor::new(data.clone());
        let mut w = Window::new(&mut cursor, data.len() as u64);
        for offset in [0u64, 65_530, 65_536, 131_070, 199_990] {
            let got = w.peek(offset, 16).unwrap().to_vec();
            let end = (offset as usize + 16).min(data.len());
            assert_eq!(got, &data[offset as usize..end]);
        }
        assert!(w.peek(200_000, 4).unwrap().is_empty());
        assert!(w.read_exact_at(199_999, 2).is_err());
        assert_eq!(w.read_exact_at(10, 3).unwrap(), &data[10..13]);
    }
}
