//! The long-running filter protocol (gitattributes(5), "Long Running Filter Process"):
//! handshake, then `clean`/`smudge` requests until Git closes the pipe. Generic over a
//! [`Filter`] so the protocol is tested without Dits' store and reused by the benchmark's
//! null filter. Nothing here writes to stdout except protocol packets.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::pktline::{read_text, write_flush, write_text, ContentReader, ContentWriter, PktError};

/// What a filter does with content. Errors are shown to the user by Git's side naming
/// the path, and logged by us with the full message.
pub trait Filter {
    type Error: std::fmt::Display;
    /// Consumes the working-tree content and returns what Git stores.
    fn clean(&mut self, path: &str, content: &mut dyn Read) -> Result<Vec<u8>, Self::Error>;
    /// Turns what Git stores back into working-tree content, streaming to `out`.
    fn smudge(
        &mut self,
        path: &str,
        content: &mut dyn Read,
        out: &mut dyn Write,
    ) -> Result<(), Self::Error>;
    /// Whether smudging `content` (all of it: only small inputs are asked) would wait on
    /// the network. If so and Git allows it, the request is answered "delayed" and the
    /// filter later gets every delayed path at once in [`Filter::fetch_delayed`].
    fn wants_delay(&mut self, _path: &str, _content: &[u8]) -> bool {
        false
    }
    /// Brings in what the delayed smudges need, all in one go (so transfers run in
    /// parallel across files). A failure here is not fatal: each path's smudge then
    /// reports its own error.
    fn fetch_delayed(&mut self, _delayed: &[(String, Vec<u8>)]) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Packet(#[from] PktError),
    #[error("filter protocol: {0}")]
    Io(#[from] io::Error),
    #[error("filter protocol: expected {expected:?}, got {got:?}")]
    Unexpected { expected: String, got: String },
    #[error("filter protocol: Git offers no version this filter speaks (wants version=2)")]
    NoVersion,
}

/// Capabilities we offer; Git picks the subset it wants.
const CAPABILITIES: [&str; 3] = ["clean", "smudge", "delay"];
/// Smudge input above this spills from memory to a temp file (pass-through blobs can
/// be large; pointers never are).
const SMUDGE_SPOOL_IN_MEMORY: usize = 8 << 20;
/// Only inputs this small are offered to [`Filter::wants_delay`] (and kept in memory
/// while delayed).
const DELAYABLE_MAX: u64 = 64 << 10;

/// Smudges answered "delayed": waiting for `list_available_blobs`, then listed and
/// waiting for Git to ask for them again (with empty content).
#[derive(Default)]
struct Delayed {
    waiting: Vec<(String, Vec<u8>)>,
    listed: HashMap<String, Vec<u8>>,
}

/// Runs the protocol on `input`/`output` until Git closes `input`.
pub fn serve<R: Read, W: Write, F: Filter>(
    input: &mut R,
    output: &mut W,
    filter: &mut F,
) -> Result<(), ProtocolError> {
    handshake(input, output)?;
    let mut delayed = Delayed::default();
    while let Some(headers) = read_headers(input)? {
        let command = headers.get("command").cloned().unwrap_or_default();
        let path = headers.get("pathname").cloned().unwrap_or_default();
        let can_delay = headers.get("can-delay").is_some_and(|v| v == "1");
        match command.as_str() {
            "clean" => handle_clean(input, output, filter, &path)?,
            "smudge" => handle_smudge(input, output, filter, &path, can_delay, &mut delayed)?,
            "list_available_blobs" => list_available(output, filter, &mut delayed)?,
            other => {
                tracing::warn!(command = other, path = %path, "unknown filter command");
                ContentReader::new(input).drain()?;
                write_text(output, "status=error")?;
                write_flush(output)?;
            }
        }
        output.flush()?;
    }
    Ok(())
}

fn handshake<R: Read, W: Write>(input: &mut R, output: &mut W) -> Result<(), ProtocolError> {
    expect(read_text(input)?, "git-filter-client")?;
    let mut versions = Vec::new();
    while let Some(line) = read_text(input)? {
        versions.push(line);
    }
    if !versions.iter().any(|v| v == "version=2") {
        return Err(ProtocolError::NoVersion);
    }
    write_text(output, "git-filter-server")?;
    write_text(output, "version=2")?;
    write_flush(output)?;
    // Git reads our version before it sends capabilities.
    output.flush()?;
    let mut offered = Vec::new();
    while let Some(line) = read_text(input)? {
        offered.push(line);
    }
    for cap in CAPABILITIES {
        if offered
            .iter()
            .any(|o| o.strip_prefix("capability=") == Some(cap))
        {
            write_text(output, &format!("capability={cap}"))?;
        }
    }
    write_flush(output)?;
    output.flush()?;
    Ok(())
}

fn expect(line: Option<String>, want: &str) -> Result<(), ProtocolError> {
    match line {
        Some(l) if l == want => Ok(()),
        // A packet is up to 64 KiB of whatever the other end sent: quote its start only.
        other => Err(ProtocolError::Unexpected {
            expected: want.to_string(),
            got: other.map_or_else(|| "flush".into(), |l| l.chars().take(80).collect()),
        }),
    }
}

/// Reads `key=value` lines up to a flush; `None` when Git has closed the pipe.
fn read_headers<R: Read>(input: &mut R) -> Result<Option<HashMap<String, String>>, ProtocolError> {
    let mut headers = HashMap::new();
    loop {
        match read_text(input) {
            Ok(Some(line)) => {
                let (k, v) = line.split_once('=').unwrap_or((line.as_str(), ""));
                headers.insert(k.to_string(), v.to_string());
            }
            Ok(None) => return Ok(Some(headers)),
            Err(PktError::Eof) if headers.is_empty() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn handle_clean<R: Read, W: Write, F: Filter>(
    input: &mut R,
    output: &mut W,
    filter: &mut F,
    path: &str,
) -> Result<(), ProtocolError> {
    let mut content = ContentReader::new(input);
    let result = filter.clean(path, &mut content);
    // Git writes all content before it reads our answer: consume the rest first.
    content.drain()?;
    match result {
        Ok(bytes) => {
            write_text(output, "status=success")?;
            write_flush(output)?;
            let mut w = ContentWriter::new(output);
            w.write_all(&bytes)?;
            w.finish()?;
            write_flush(output)?;
            write_flush(output)?;
        }
        Err(e) => {
            tracing::error!("clean failed: {e}");
            write_text(output, "status=error")?;
            write_flush(output)?;
        }
    }
    Ok(())
}

/// Everything delayed so far is fetched in one go and listed; Git then asks for each path
/// again. An empty list tells Git nothing is left.
fn list_available<W: Write, F: Filter>(
    output: &mut W,
    filter: &mut F,
    delayed: &mut Delayed,
) -> Result<(), ProtocolError> {
    if !delayed.waiting.is_empty() {
        if let Err(e) = filter.fetch_delayed(&delayed.waiting) {
            tracing::error!("fetching delayed media failed: {e}");
        }
    }
    for (path, content) in delayed.waiting.drain(..) {
        write_text(output, &format!("pathname={path}"))?;
        delayed.listed.insert(path, content);
    }
    write_flush(output)?;
    write_text(output, "status=success")?;
    write_flush(output)?;
    Ok(())
}

fn handle_smudge<R: Read, W: Write, F: Filter>(
    input: &mut R,
    output: &mut W,
    filter: &mut F,
    path: &str,
    can_delay: bool,
    delayed: &mut Delayed,
) -> Result<(), ProtocolError> {
    let mut spooled = tempfile::SpooledTempFile::new(SMUDGE_SPOOL_IN_MEMORY);
    let len = io::copy(&mut ContentReader::new(input), &mut spooled)?;
    if let Some(content) = delayed.listed.remove(path) {
        // Git's second request for a delayed path carries no content: use what it sent
        // the first time.
        spooled = tempfile::SpooledTempFile::new(SMUDGE_SPOOL_IN_MEMORY);
        spooled.write_all(&content)?;
    } else if can_delay && len <= DELAYABLE_MAX {
        let mut content = Vec::with_capacity(len as usize);
        spooled.seek(SeekFrom::Start(0))?;
        spooled.read_to_end(&mut content)?;
        if filter.wants_delay(path, &content) {
            delayed.waiting.push((path.to_string(), content));
            write_text(output, "status=delayed")?;
            write_flush(output)?;
            return Ok(());
        }
    }
    spooled.seek(SeekFrom::Start(0))?;
    write_text(output, "status=success")?;
    write_flush(output)?;
    let mut w = ContentWriter::new(output);
    let result = filter.smudge(path, &mut spooled, &mut w);
    w.finish()?;
    write_flush(output)?;
    match result {
        Ok(()) => write_flush(output)?,
        Err(e) => {
            tracing::error!("smudge failed: {e}");
            // Git discards the partial content when the final status is an error.
            write_text(output, "status=error")?;
            write_flush(output)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktline::write_data;
    use std::io::Cursor;

    /// Found by `fuzz/`'s `pkt_line` target: a handshake opening with a long packet gave
    /// an error quoting all of it (3.8 KB there, up to 64 KiB).
    #[test]
    fn an_unexpected_packet_is_quoted_in_part() {
        let mut wire = Vec::new();
        write_text(&mut wire, &"x".repeat(60_000)).unwrap();
        let err = handshake(&mut Cursor::new(wire), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ProtocolError::Unexpected { .. }));
        assert!(
            err.to_string().len() < 200,
            "{} bytes",
            err.to_string().len()
        );
    }

    struct Upper;
    impl Filter for Upper {
        type Error = String;
        fn clean(&mut self, path: &str, content: &mut dyn Read) -> Result<Vec<u8>, String> {
            let mut s = Vec::new();
            content.read_to_end(&mut s).map_err(|e| e.to_string())?;
            if path == "bad" {
                return Err("refused".into());
            }
            Ok(s.to_ascii_uppercase())
        }
        fn smudge(
            &mut self,
            _: &str,
            content: &mut dyn Read,
            out: &mut dyn Write,
        ) -> Result<(), String> {
            io::copy(content, out)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }

    /// What Git sends to start: its greeting, version 2, and every capability.
    fn client_handshake() -> Vec<u8> {
        let mut wire = Vec::new();
        write_text(&mut wire, "git-filter-client").unwrap();
        write_text(&mut wire, "version=2").unwrap();
        write_flush(&mut wire).unwrap();
        for cap in ["clean", "smudge", "delay"] {
            write_text(&mut wire, &format!("capability={cap}")).unwrap();
        }
        write_flush(&mut wire).unwrap();
        wire
    }

    fn request(wire: &mut Vec<u8>, command: &str, path: &str, content: &[u8]) {
        write_text(wire, &format!("command={command}")).unwrap();
        write_text(wire, &format!("pathname={path}")).unwrap();
        write_flush(wire).unwrap();
        if !content.is_empty() {
            write_data(wire, content).unwrap();
        }
        write_flush(wire).unwrap();
    }

    #[test]
    fn handshake_and_requests_follow_the_protocol() {
        let mut wire = client_handshake();
        request(&mut wire, "clean", "a.txt", b"hello");
        request(&mut wire, "clean", "bad", b"x");
        let mut out = Vec::new();
        serve(&mut Cursor::new(wire), &mut out, &mut Upper).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("0016git-filter-server\n000eversion=2\n0000"),
            "{text}"
        );
        assert!(text.contains("0015capability=delay\n0000"));
        assert!(
            text.contains("0013status=success\n00000009HELLO00000000"),
            "{text}"
        );
        assert!(text.ends_with("0011status=error\n0000"), "{text}");
    }

    /// Delays content starting with "remote:" and records each batch it is asked to fetch.
    #[derive(Default)]
    struct Remote {
        batches: Vec<Vec<String>>,
    }
    impl Filter for Remote {
        type Error = String;
        fn clean(&mut self, _: &str, _: &mut dyn Read) -> Result<Vec<u8>, String> {
            Err("clean not used".into())
        }
        fn smudge(&mut self, _: &str, c: &mut dyn Read, out: &mut dyn Write) -> Result<(), String> {
            let mut s = Vec::new();
            c.read_to_end(&mut s).map_err(|e| e.to_string())?;
            out.write_all(&s.to_ascii_uppercase())
                .map_err(|e| e.to_string())
        }
        fn wants_delay(&mut self, _: &str, content: &[u8]) -> bool {
            content.starts_with(b"remote:")
        }
        fn fetch_delayed(&mut self, delayed: &[(String, Vec<u8>)]) -> Result<(), String> {
            self.batches
                .push(delayed.iter().map(|(p, _)| p.clone()).collect());
            Ok(())
        }
    }

    #[test]
    fn delayed_smudges_are_fetched_together_and_served_on_the_second_request() {
        let mut wire = client_handshake();
        let delayable = |wire: &mut Vec<u8>, path: &str, content: &[u8]| {
            write_text(wire, "command=smudge").unwrap();
            write_text(wire, &format!("pathname={path}")).unwrap();
            write_text(wire, "can-delay=1").unwrap();
            write_flush(wire).unwrap();
            if !content.is_empty() {
                write_data(wire, content).unwrap();
            }
            write_flush(wire).unwrap();
        };
        delayable(&mut wire, "a", b"remote:a");
        delayable(&mut wire, "b", b"remote:b");
        delayable(&mut wire, "c", b"local");
        let list = |wire: &mut Vec<u8>| {
            write_text(wire, "command=list_available_blobs").unwrap();
            write_flush(wire).unwrap();
        };
        list(&mut wire);
        request(&mut wire, "smudge", "a", b"");
        request(&mut wire, "smudge", "b", b"");
        list(&mut wire);
        let mut filter = Remote::default();
        let mut out = Vec::new();
        serve(&mut Cursor::new(wire), &mut out, &mut filter).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(filter.batches, vec![vec!["a".to_string(), "b".to_string()]]);
        assert_eq!(text.matches("status=delayed").count(), 2, "{text}");
        assert!(text.contains("LOCAL"), "{text}");
        assert!(
            text.contains("000fpathname=a\n000fpathname=b\n00000013status=success\n0000"),
            "{text}"
        );
        assert!(
            text.contains("REMOTE:A") && text.contains("REMOTE:B"),
            "{text}"
        );
        assert!(
            text.ends_with("00000013status=success\n0000"),
            "the second list is empty: {text}"
        );
    }
}
