//! Test inputs for dits-core's unit tests: deterministic pseudo-random bytes (data that
//! no chunker, hash or comparison can shortcut, the same on every run) and a stream that
//! changes the file it came from part-way through.

/// `len` xorshift bytes from `seed`. The seed is scrambled first, so neighbouring seeds
/// (2 and 3, say) give unrelated streams.
pub(crate) fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Yields `data`, running `edit` once when `at` bytes have been read: Git's stream of a
/// file that someone edits while it is being added.
pub(crate) struct EditingReader<'a, F: FnOnce()> {
    data: &'a [u8],
    pos: usize,
    at: usize,
    edit: Option<F>,
}

impl<'a, F: FnOnce()> EditingReader<'a, F> {
    pub(crate) fn new(data: &'a [u8], at: usize, edit: F) -> Self {
        EditingReader {
            data,
            pos: 0,
            at,
            edit: Some(edit),
        }
    }
}

impl<F: FnOnce()> std::io::Read for EditingReader<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.at {
            if let Some(edit) = self.edit.take() {
                edit();
            }
        }
        let end = if self.pos < self.at {
            self.at
        } else {
            self.data.len()
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
