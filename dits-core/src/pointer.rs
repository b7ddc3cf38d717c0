//! The pointer (`.ditsm`): the small text Git stores for a tracked file. UTF-8, one
//! `key value` per line, keys sorted, first line the version. Identical content gives
//! identical bytes, so re-adding a file never shows as a change. Spec:
//! docs/formats/pointer.md.

use crate::chunk_id::ChunkId;

pub const VERSION_LINE: &str = "dits-pointer v1";
const PREFIX: &str = "dits-pointer ";
pub const MAX_POINTER_LEN: usize = 1024;
const MAX_SUMMARY_LEN: usize = 600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// One-line structure summary: container, duration, tracks.
    pub media: String,
    /// BLAKE3 of the whole file.
    pub oid: ChunkId,
    /// Id of the recipe object.
    pub recipe: ChunkId,
    pub size: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PointerError {
    #[error("not a Dits pointer")]
    NotAPointer,
    #[error("Dits pointer version `{0}` is not supported by this git-dits; upgrade git-dits")]
    UnknownVersion(String),
    #[error("malformed Dits pointer: {0}")]
    Malformed(String),
}

impl Pointer {
    /// The pointer's bytes, always ending in a newline.
    pub fn encode(&self) -> String {
        format!(
            "{VERSION_LINE}\nmedia {}\noid blake3:{}\nrecipe blake3:{}\nsize {}\n",
            sanitize_summary(&self.media),
            self.oid,
            self.recipe,
            self.size
        )
    }

    /// True when `bytes` claim to be a pointer (so a parse failure is an error, not
    /// a pass-through of ordinary content).
    pub fn looks_like_pointer(bytes: &[u8]) -> bool {
        bytes.starts_with(PREFIX.as_bytes())
    }

    pub fn parse(bytes: &[u8]) -> Result<Pointer, PointerError> {
        if !Self::looks_like_pointer(bytes) {
            return Err(PointerError::NotAPointer);
        }
        let bad = |m: String| PointerError::Malformed(m);
        if bytes.len() > MAX_POINTER_LEN {
            return Err(bad(format!(
                "{} bytes, more than {MAX_POINTER_LEN}",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline".into()))?;
        let mut lines = body.split('\n');
        let version = lines.next().unwrap_or_default();
        if version != VERSION_LINE {
            return Err(PointerError::UnknownVersion(
                version.chars().take(60).collect(),
            ));
        }
        let mut field = |key: &str| -> Result<&str, PointerError> {
            let line = lines
                .next()
                .ok_or_else(|| bad(format!("missing `{key}` line")))?;
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| {
                    bad(format!(
                        "expected `{key} …`, found `{}`",
                        line.chars().take(60).collect::<String>()
                    ))
                })
        };
        let media = field("media")?.to_string();
        let oid = parse_hash(field("oid")?)?;
        let recipe = parse_hash(field("recipe")?)?;
        let size_text = field("size")?;
        let size = size_text
            .parse::<u64>()
            .ok()
            .filter(|_| {
                size_text.bytes().all(|b| b.is_ascii_digit())
                    && (size_text == "0" || !size_text.starts_with('0'))
            })
            .ok_or_else(|| bad(format!("size `{size_text}` is not a number")))?;
        if lines.next().is_some() {
            return Err(bad("unexpected extra lines".into()));
        }
        if media.is_empty() || media != sanitize_summary(&media) {
            return Err(bad(
                "media summary has characters a pointer may not hold".into()
            ));
        }
        Ok(Pointer {
            media,
            oid,
            recipe,
            size,
        })
    }
}

fn parse_hash(v: &str) -> Result<ChunkId, PointerError> {
    let hex = v.strip_prefix("blake3:").ok_or_else(|| {
        PointerError::Malformed(format!(
            "hash `{}` lacks the blake3: prefix",
            v.chars().take(80).collect::<String>()
        ))
    })?;
    hex.parse()
        .map_err(|e: crate::chunk_id::ParseChunkIdError| PointerError::Malformed(e.to_string()))
}

fn sanitize_summary(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_SUMMARY_LEN)
        .collect();
    cleaned.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Pointer {
        Pointer {
            media: "mp4 duration=2.00s tracks=vide:avc1:320x240,soun:mp4a".into(),
            oid: ChunkId::of(b"file"),
            recipe: ChunkId::of(b"recipe"),
            size: 123_456,
        }
    }

    #[test]
    fn pointer_is_small_sorted_text() {
        let text = sample().encode();
        assert!(text.len() < MAX_POINTER_LEN);
        let keys: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(Pointer::parse(text.as_bytes()).unwrap(), sample());
    }

    #[test]
    fn ordinary_content_is_not_a_pointer() {
        assert_eq!(
            Pointer::parse(b"\x00\x00\x00\x18ftypisom"),
            Err(PointerError::NotAPointer)
        );
    }

    #[test]
    fn unknown_version_and_bad_lines_are_errors() {
        assert!(matches!(
            Pointer::parse(b"dits-pointer v9\n"),
            Err(PointerError::UnknownVersion(_))
        ));
        let text = sample().encode().replace("size 123456", "size 12x");
        assert!(matches!(
            Pointer::parse(text.as_bytes()),
            Err(PointerError::Malformed(_))
        ));
        let text = sample().encode().replace("oid blake3:", "oid sha256:");
        assert!(matches!(
            Pointer::parse(text.as_bytes()),
            Err(PointerError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut with_prefix = PREFIX.as_bytes().to_vec();
            with_prefix.extend(bytes);
            let _ = Pointer::parse(&with_prefix);
        }

        #[test]
        fn round_trips(size in any::<u64>(), summary in "[ -~]{1,80}") {
            let p = Pointer { media: summary.trim().to_string(), ..sample() };
            prop_assume!(!p.media.is_empty());
            let p = Pointer { size, ..p };
            prop_assert_eq!(Pointer::parse(p.encode().as_bytes()).unwrap(), p);
        }
    }
}
