//! The filter process (`serve`) and the bare pkt-line readers fed arbitrary bytes and
//! mutated real conversations as Git's side of the pipe: no panic, and whatever the filter
//! writes back is well-formed pkt-lines. The short form of `fuzz/`'s `pkt_line` target
//! (issue 15).

use std::io::{Read, Write};

use dits_filter::pktline::{read_packet, write_data, write_flush, write_text, ContentReader};
use dits_filter::{serve, Filter};
use proptest::prelude::*;

/// Reads content and answers with its length; smudges copy, and delay when the content's
/// first byte is even.
struct NullFilter;

impl Filter for NullFilter {
    type Error = std::io::Error;

    fn clean(&mut self, _path: &str, content: &mut dyn Read) -> Result<Vec<u8>, Self::Error> {
        let n = std::io::copy(content, &mut std::io::sink())?;
        Ok(n.to_string().into_bytes())
    }

    fn smudge(
        &mut self,
        _path: &str,
        content: &mut dyn Read,
        out: &mut dyn Write,
    ) -> Result<(), Self::Error> {
        std::io::copy(content, out).map(drop)
    }

    fn wants_delay(&mut self, _path: &str, content: &[u8]) -> bool {
        content.first().is_some_and(|b| b % 2 == 0)
    }
}

/// What Git sends in a checkout that cleans one file and smudges another, delayed.
fn session() -> Vec<u8> {
    let mut w = Vec::new();
    write_text(&mut w, "git-filter-client").unwrap();
    write_text(&mut w, "version=2").unwrap();
    write_flush(&mut w).unwrap();
    for cap in ["clean", "smudge", "delay"] {
        write_text(&mut w, &format!("capability={cap}")).unwrap();
    }
    write_flush(&mut w).unwrap();
    write_text(&mut w, "command=clean").unwrap();
    write_text(&mut w, "pathname=clip.mp4").unwrap();
    write_flush(&mut w).unwrap();
    write_data(&mut w, b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2").unwrap();
    write_flush(&mut w).unwrap();
    write_text(&mut w, "command=smudge").unwrap();
    write_text(&mut w, "pathname=clip.mp4").unwrap();
    write_text(&mut w, "can-delay=1").unwrap();
    write_flush(&mut w).unwrap();
    write_data(&mut w, b"dits-pointer v1\nmedia mp4\n").unwrap();
    write_flush(&mut w).unwrap();
    write_text(&mut w, "command=list_available_blobs").unwrap();
    write_flush(&mut w).unwrap();
    write_text(&mut w, "command=smudge").unwrap();
    write_text(&mut w, "pathname=clip.mp4").unwrap();
    write_flush(&mut w).unwrap();
    write_flush(&mut w).unwrap();
    w
}

fn check(input: &[u8]) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    let _ = serve(&mut &input[..], &mut out, &mut NullFilter);
    let mut written = &out[..];
    let mut buf = Vec::new();
    loop {
        match read_packet(&mut written, &mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return Err(TestCaseError::fail(format!("the filter wrote {e}"))),
        }
    }
    let mut rest = input;
    while let Ok(Some(_)) = read_packet(&mut rest, &mut buf) {}
    let mut content = Vec::new();
    let mut rest = input;
    if ContentReader::new(&mut rest)
        .read_to_end(&mut content)
        .is_ok()
    {
        prop_assert!(content.len() <= input.len());
    }
    Ok(())
}

#[test]
fn the_real_session_is_served() {
    let mut out = Vec::new();
    serve(&mut &session()[..], &mut out, &mut NullFilter).unwrap();
    assert!(String::from_utf8_lossy(&out).contains("status=delayed"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_filter(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        check(&bytes)?;
    }

    #[test]
    fn mutated_sessions_never_panic_the_filter(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = session();
        for (at, value, kind) in edits {
            let at = at % bytes.len().max(1);
            match kind {
                0 if !bytes.is_empty() => bytes[at] = value,
                1 => bytes.insert(at, value),
                _ => bytes.truncate(at),
            }
        }
        check(&bytes)?;
    }
}
