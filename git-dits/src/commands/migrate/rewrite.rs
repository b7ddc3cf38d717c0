//! The history rewrite behind `migrate import` and `export`: `git fast-export --no-data`
//! piped through [`rewrite`] into `git fast-import --force`. Commits, merges, authors,
//! committers, dates and messages pass through byte for byte; only the file lines of
//! chosen paths change (to the blob a [`Converter`] makes of the original), and every
//! commit's `.gitattributes` gets the lines the conversion needs. A given blob always
//! converts to the same blob, so the same history rewrites to the same commits.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};

/// What a rewrite does to blobs and to `.gitattributes`.
pub trait Converter {
    /// Whether the file at `path` is one to convert.
    fn wants(&self, path: &str) -> bool;
    /// The blob id to store in place of blob `oid` at `path`.
    fn convert(&mut self, oid: &str, path: &str) -> Result<String>;
    /// `.gitattributes` as it must read after the conversion, from what it read before
    /// (empty when the commit has none).
    fn attributes(&mut self, before: &[u8]) -> Vec<u8>;
    /// The contents of blob `oid` (a `.gitattributes`), from the repository.
    fn blob(&mut self, oid: &str) -> Result<Vec<u8>> {
        git_remote_dits::git::cat_file_small(&[oid.to_string()], u64::MAX)?
            .pop()
            .flatten()
            .filter(|b| b.kind == "blob")
            .map(|b| b.content)
            .with_context(|| format!("no blob {oid}"))
    }
}

/// Git's C-style quoting of a path in a fast-export stream, undone.
pub fn unquote(raw: &str) -> String {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return raw.to_string();
    };
    let mut out = Vec::new();
    let mut bytes = inner.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'"') => out.push(b'"'),
            Some(b'\\') => out.push(b'\\'),
            Some(d @ b'0'..=b'7') => {
                let mut n = u32::from(d - b'0');
                for _ in 0..2 {
                    if let Some(&d @ b'0'..=b'7') = bytes.peek() {
                        n = n * 8 + u32::from(d - b'0');
                        bytes.next();
                    }
                }
                out.push(n as u8);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `data` for an inline file content in a fast-import stream.
fn inline(out: &mut dyn Write, path: &str, content: &[u8]) -> Result<()> {
    write!(out, "M 100644 inline {path}\ndata {}\n", content.len())?;
    out.write_all(content)?;
    out.write_all(b"\n")?;
    Ok(())
}

const ATTRIBUTES: &str = ".gitattributes";

/// Copies the fast-export stream `input` to `out`, converting what `conv` wants.
/// Returns the number of file versions converted (counting repeats).
pub fn rewrite(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    conv: &mut dyn Converter,
) -> Result<u64> {
    let mut converted = 0u64;
    // Within a commit: whether it has a parent, and whether it wrote .gitattributes.
    let mut commit: Option<(bool, bool)> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let trimmed = text.trim_end_matches('\n');
        if let Some(n) = trimmed.strip_prefix("data ") {
            // Commit and tag messages: passed through exactly.
            let n: usize = n
                .parse()
                .with_context(|| format!("fast-export: {trimmed}"))?;
            out.write_all(&line)?;
            let mut data = vec![0u8; n];
            input.read_exact(&mut data)?;
            out.write_all(&data)?;
            continue;
        }
        let starts_command = [
            "commit ",
            "reset ",
            "tag ",
            "blob",
            "done",
            "feature ",
            "progress ",
        ]
        .iter()
        .any(|c| trimmed.starts_with(c));
        if trimmed.is_empty() || starts_command {
            if let Some((has_parent, wrote)) = commit.take() {
                if !has_parent && !wrote {
                    inline(out, ATTRIBUTES, &conv.attributes(b""))?;
                }
            }
        }
        if trimmed.starts_with("commit ") {
            commit = Some((false, false));
            out.write_all(&line)?;
            continue;
        }
        let Some((has_parent, wrote)) = commit.as_mut() else {
            out.write_all(&line)?;
            continue;
        };
        if trimmed.starts_with("from ") {
            *has_parent = true;
            out.write_all(&line)?;
        } else if let Some(rest) = trimmed.strip_prefix("M ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(mode), Some(oid), Some(raw_path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                bail!("fast-export: unexpected line {trimmed:?}");
            };
            let path = unquote(raw_path);
            if path == ATTRIBUTES {
                let before = conv.blob(oid)?;
                inline(out, raw_path, &conv.attributes(&before))?;
                *wrote = true;
            } else if matches!(mode, "100644" | "100755") && conv.wants(&path) {
                let new = conv.convert(oid, &path)?;
                writeln!(out, "M {mode} {new} {raw_path}")?;
                converted += 1;
            } else {
                out.write_all(&line)?;
            }
        } else if let Some(raw_path) = trimmed.strip_prefix("D ") {
            if unquote(raw_path) == ATTRIBUTES {
                // Deleting the attributes would turn the converted files back into
                // plain blobs for Git: they stay, with only the conversion's lines.
                inline(out, raw_path, &conv.attributes(b""))?;
                *wrote = true;
            } else {
                out.write_all(&line)?;
            }
        } else if trimmed == "deleteall" {
            out.write_all(&line)?;
            *has_parent = false;
        } else {
            out.write_all(&line)?;
        }
    }
    if let Some((has_parent, wrote)) = commit.take() {
        if !has_parent && !wrote {
            inline(out, ATTRIBUTES, &conv.attributes(b""))?;
        }
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;
    impl Converter for Upper {
        fn wants(&self, path: &str) -> bool {
            path.ends_with(".mp4")
        }
        fn convert(&mut self, oid: &str, _: &str) -> Result<String> {
            Ok(oid.to_uppercase())
        }
        fn attributes(&mut self, before: &[u8]) -> Vec<u8> {
            let mut a = before.to_vec();
            a.extend_from_slice(b"*.mp4 filter=dits\n");
            a
        }
        fn blob(&mut self, _: &str) -> Result<Vec<u8>> {
            Ok(b"*.txt text\n".to_vec())
        }
    }

    #[test]
    fn only_chosen_paths_change_and_every_root_gets_attributes() {
        let stream = "reset refs/heads/main\ncommit refs/heads/main\nmark :1\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\ndata 6\nfirst\nM 100644 abc \"take 1.mp4\"\nM 100644 def notes.txt\n\ncommit refs/heads/main\nmark :2\nauthor A <a@x> 2 +0000\ncommitter A <a@x> 2 +0000\ndata 4\nM x\nfrom :1\nM 100644 fed .gitattributes\nD old.mp4\n\n";
        let mut out = Vec::new();
        let n = rewrite(&mut stream.as_bytes(), &mut out, &mut Upper).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(n, 1);
        assert!(out.contains("M 100644 ABC \"take 1.mp4\"\n"), "{out}");
        assert!(out.contains("M 100644 def notes.txt\n"));
        // The message "M x\n" is data, not a file line.
        assert!(out.contains("data 4\nM x\nfrom :1\n"), "{out}");
        assert!(
            out.contains("M 100644 inline .gitattributes\ndata 18\n*.mp4 filter=dits\n\n\ncommit"),
            "{out}"
        );
        assert!(
            out.contains(
                "M 100644 inline .gitattributes\ndata 29\n*.txt text\n*.mp4 filter=dits\n"
            ),
            "{out}"
        );
        assert!(out.contains("D old.mp4\n"));
    }

    #[test]
    fn quoted_paths_read_as_git_wrote_them() {
        assert_eq!(unquote("\"a\\tb\\\"c\\303\\251\""), "a\tb\"cé");
        assert_eq!(unquote("plain/path.mp4"), "plain/path.mp4");
    }
}
