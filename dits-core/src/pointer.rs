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
    /// An encrypted repository's pointer, read without its key.
    #[error("encrypted with key {key_id}, which you do not hold: run `git dits key status` to see your access; an admin gives it with `git dits key grant <your hub user>`, then run `git dits pull-media`")]
    Encrypted { key_id: String },
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

    /// A plain pointer; an encrypted repository's pointer is [`PointerError::Encrypted`]
    /// (open it with a `Keyring`).
    pub fn parse(bytes: &[u8]) -> Result<Pointer, PointerError> {
        match AnyPointer::parse(bytes)? {
            AnyPointer::Plain(p) => Ok(p),
            AnyPointer::Sealed(s) => Err(PointerError::Encrypted { key_id: s.key_id }),
        }
    }
}

/// An encrypted repository's pointer: the file's keyed hash in place of its BLAKE3, and
/// the file and recipe ids sealed under the secret named by `key_id`. Size and media
/// summary stay readable (see docs/threat-model.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPointer {
    pub media: String,
    /// The keyed hash of the file (`RepoSecret::file_tag`).
    pub tag: ChunkId,
    /// Which secret sealed it (`RepoSecret::key_id`).
    pub key_id: String,
    /// `RepoSecret::seal_ids` of the file and recipe ids.
    pub sealed: Vec<u8>,
    pub size: u64,
}

impl SealedPointer {
    pub fn encode(&self) -> String {
        let hex = crate::hex::encode(&self.sealed);
        format!(
            "{VERSION_LINE}\nmedia {}\noid {KEYED}{}\nrecipe {SEALED}{}:{hex}\nsize {}\n",
            sanitize_summary(&self.media),
            self.tag,
            self.key_id,
            self.size
        )
    }
}

const KEYED: &str = "keyed:";
const SEALED: &str = "sealed:";

/// A pointer of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPointer {
    Plain(Pointer),
    Sealed(SealedPointer),
}

impl AnyPointer {
    pub fn parse(bytes: &[u8]) -> Result<AnyPointer, PointerError> {
        if !Pointer::looks_like_pointer(bytes) {
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
        let oid = field("oid")?;
        let recipe = field("recipe")?;
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
        if let Some(tag) = oid.strip_prefix(KEYED) {
            let tag = tag
                .parse()
                .map_err(|e: crate::chunk_id::ParseChunkIdError| bad(e.to_string()))?;
            let (key_id, hex) = recipe
                .strip_prefix(SEALED)
                .and_then(|r| r.split_once(':'))
                .ok_or_else(|| bad("an encrypted pointer's recipe is not `sealed:KEY:…`".into()))?;
            let valid_key_id = key_id.len() == 16 && crate::hex::decode(key_id).is_some();
            let sealed = crate::hex::decode(hex)
                .filter(|s| s.len() == crate::crypt::SEALED_IDS_LEN && valid_key_id)
                .ok_or_else(|| bad("an encrypted pointer's sealed ids are malformed".into()))?;
            return Ok(AnyPointer::Sealed(SealedPointer {
                media,
                tag,
                key_id: key_id.to_string(),
                sealed,
                size,
            }));
        }
        Ok(AnyPointer::Plain(Pointer {
            media,
            oid: parse_hash(oid)?,
            recipe: parse_hash(recipe)?,
            size,
        }))
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
