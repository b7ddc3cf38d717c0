//! Git's pkt-line framing: a 4-hex-digit length (including itself) then payload;
//! `0000` is a flush packet. Pure parsing over `Read`/`Write`, testable without pipes.

use std::io::{self, Read, Write};

/// Largest payload Git accepts in one packet (65520 - 4).
pub const MAX_PAYLOAD: usize = 65516;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Flush,
    Data(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum PktError {
    #[error("pkt-line: {0}")]
    Io(#[from] io::Error),
    #[error("pkt-line: bad length header {0:?}")]
    BadLength([u8; 4]),
    #[error("pkt-line: unexpected end of stream")]
    Eof,
}

/// Reads one packet; `Ok(None)` at a clean end of stream (between packets).
pub fn read_packet<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<Option<Packet>, PktError> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(PktError::Eof),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    match packet_len(head)? {
        0 => Ok(Some(Packet::Flush)),
        n => {
            buf.resize(n - 4, 0);
            r.read_exact(buf).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    PktError::Eof
                } else {
                    e.into()
                }
            })?;
            Ok(Some(Packet::Data(std::mem::take(buf))))
        }
    }
}

/// The length a packet header announces (header included): 0 for a flush, else
/// 5..=65520.
fn packet_len(head: [u8; 4]) -> Result<usize, PktError> {
    let text = std::str::from_utf8(&head).map_err(|_| PktError::BadLength(head))?;
    let len = usize::from_str_radix(text, 16).map_err(|_| PktError::BadLength(head))?;
    match len {
        0 => Ok(0),
        1..=4 => Err(PktError::BadLength(head)),
        n if n - 4 > MAX_PAYLOAD => Err(PktError::BadLength(head)),
        n => Ok(n),
    }
}

/// Reads a text packet (trailing LF stripped); a flush gives `None`.
pub fn read_text<R: Read>(r: &mut R) -> Result<Option<String>, PktError> {
    let mut buf = Vec::new();
    match read_packet(r, &mut buf)? {
        None => Err(PktError::Eof),
        Some(Packet::Flush) => Ok(None),
        Some(Packet::Data(mut d)) => {
            if d.last() == Some(&b'\n') {
                d.pop();
            }
            Ok(Some(String::from_utf8_lossy(&d).into_owned()))
        }
    }
}

pub fn write_data<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    debug_assert!(payload.len() <= MAX_PAYLOAD && !payload.is_empty());
    write!(w, "{:04x}", payload.len() + 4)?;
    w.write_all(payload)
}

pub fn write_text<W: Write>(w: &mut W, line: &str) -> io::Result<()> {
    writeln!(w, "{:04x}{}", line.len() + 5, line)
}

pub fn write_flush<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(b"0000")
}

/// Streams the data packets of one content section as a `Read`, ending at its flush.
/// Payload bytes go from `inner` straight into the caller's buffer (no packet-sized copy
/// in between): content is most of what crosses the pipe.
pub struct ContentReader<'a, R: Read> {
    inner: &'a mut R,
    /// Payload bytes of the current packet not yet read.
    left: usize,
    done: bool,
}

impl<'a, R: Read> ContentReader<'a, R> {
    pub fn new(inner: &'a mut R) -> Self {
        ContentReader {
            inner,
            left: 0,
            done: false,
        }
    }

    /// Consumes whatever is left of the section, so the protocol stays in step even
    /// when the consumer gave up early.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 65536];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }

    /// Reads the next packet header: the payload length, or `None` at the flush.
    fn next_packet(&mut self) -> io::Result<Option<usize>> {
        let invalid = |e: PktError| io::Error::new(io::ErrorKind::InvalidData, e);
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut head[got..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "content ended without a flush packet",
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match packet_len(head).map_err(invalid)? {
            0 => Ok(None),
            n => Ok(Some(n - 4)),
        }
    }
}

impl<R: Read> Read for ContentReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            match self.next_packet()? {
                Some(len) => self.left = len,
                None => self.done = true,
            }
        }
        let want = out.len().min(self.left);
        let n = loop {
            match self.inner.read(&mut out[..want]) {
                Ok(0) if want > 0 => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, PktError::Eof))
                }
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.left -= n;
        Ok(n)
    }
}

/// Splits written bytes into data packets (what Git expects for filter output).
pub struct ContentWriter<'a, W: Write> {
    inner: &'a mut W,
    buf: Vec<u8>,
}

impl<'a, W: Write> ContentWriter<'a, W> {
    pub fn new(inner: &'a mut W) -> Self {
        ContentWriter {
            inner,
            buf: Vec::with_capacity(MAX_PAYLOAD),
        }
    }

    /// Writes what is buffered; the caller then writes the flush packet.
    pub fn finish(mut self) -> io::Result<()> {
        self.emit()
    }

    fn emit(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_data(self.inner, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for ContentWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(MAX_PAYLOAD - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_PAYLOAD {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn content_round_trips_through_packets() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        {
            let mut w = ContentWriter::new(&mut wire);
            w.write_all(&data).unwrap();
            w.finish().unwrap();
        }
        write_flush(&mut wire).unwrap();
        let mut cur = Cursor::new(wire);
        let mut back = Vec::new();
        ContentReader::new(&mut cur).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn reading_past_the_flush_returns_eof_again() {
        let mut wire = Vec::new();
        write_data(&mut wire, b"abc").unwrap();
        write_flush(&mut wire).unwrap();
        let mut cur = Cursor::new(wire);
        let mut r = ContentReader::new(&mut cur);
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.read(&mut buf).unwrap(), 1);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn content_reads_of_any_size_cross_packet_boundaries() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i * 31) as u8).collect();
        let mut wire = Vec::new();
        for piece in data.chunks(MAX_PAYLOAD - 7) {
            write_data(&mut wire, piece).unwrap();
        }
        write_flush(&mut wire).unwrap();
        write_text(&mut wire, "next").unwrap();
        for size in [1, 4096, MAX_PAYLOAD, 1 << 20] {
            let mut cur = Cursor::new(wire.clone());
            let mut back = Vec::new();
            let mut buf = vec![0u8; size];
            let mut r = ContentReader::new(&mut cur);
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
            assert_eq!(back, data, "read size {size}");
            // The reader stopped at the flush: the next packet is intact.
            assert_eq!(read_text(&mut cur).unwrap().as_deref(), Some("next"));
        }
    }

    #[test]
    fn content_without_a_flush_or_cut_short_is_an_error() {
        let mut wire = Vec::new();
        write_data(&mut wire, b"abcdef").unwrap();
        let mut back = Vec::new();
        let err = ContentReader::new(&mut Cursor::new(wire.clone()))
            .read_to_end(&mut back)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        wire.truncate(wire.len() - 2);
        let err = ContentReader::new(&mut Cursor::new(wire))
            .read_to_end(&mut back)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = ContentReader::new(&mut Cursor::new(b"zzzz".to_vec()))
            .read_to_end(&mut back)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn hostile_lengths_are_errors() {
        for head in [&b"0003"[..], b"zzzz", b"ffff", b"0009ab"] {
            let mut buf = Vec::new();
            assert!(
                read_packet(&mut Cursor::new(head), &mut buf).is_err(),
                "{head:?}"
            );
        }
    }
}
