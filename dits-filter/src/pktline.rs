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
    let text = std::str::from_utf8(&head).map_err(|_| PktError::BadLength(head))?;
    let len = usize::from_str_radix(text, 16).map_err(|_| PktError::BadLength(head))?;
    match len {
        0 => Ok(Some(Packet::Flush)),
        1..=4 => Err(PktError::BadLength(head)),
        n if n - 4 > MAX_PAYLOAD => Err(PktError::BadLength(head)),
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
pub struct ContentReader<'a, R: Read> {
    inner: &'a mut R,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<'a, R: Read> ContentReader<'a, R> {
    pub fn new(inner: &'a mut R) -> Self {
        ContentReader {
            inner,
            current: Vec::new(),
            pos: 0,
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
}

impl<R: Read> Read for ContentReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            let mut buf = std::mem::take(&mut self.current);
            self.pos = 0;
            match read_packet(self.inner, &mut buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                Some(Packet::Data(d)) => {
                    self.current = d;
                    self.pos = 0;
                }
                Some(Packet::Flush) => self.done = true,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "content ended without a flush packet",
                    ))
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
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
