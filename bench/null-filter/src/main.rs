//! A long-running Git filter that reads each file's content and answers a constant: the
//! ceiling on what any clean filter can reach through Git's pipe. Used by bench/add.sh.

use std::io::{self, BufReader, BufWriter, Read, Write};

struct Null;

impl dits_filter::Filter for Null {
    type Error = io::Error;

    fn clean(&mut self, _path: &str, content: &mut dyn Read) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match content.read(&mut buf)? {
                0 => break,
                k => n += k as u64,
            }
        }
        Ok(format!("null {n}\n").into_bytes())
    }

    fn smudge(
        &mut self,
        _path: &str,
        content: &mut dyn Read,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        io::copy(content, out).map(|_| ())
    }
}

fn main() -> io::Result<()> {
    let mut input = BufReader::with_capacity(1 << 20, io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    dits_filter::serve(&mut input, &mut output, &mut Null).map_err(io::Error::other)?;
    output.flush()
}
