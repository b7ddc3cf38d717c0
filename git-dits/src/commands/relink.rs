//! `git dits relink PROJECT [--write]`: rewrites the paths of a project's references that
//! resolve (through relink rules, the project's folder or the file name) to where the
//! files are in this checkout. The project keeps its format: each reference is replaced
//! in the form the file holds it (XML-escaped, JSON-escaped, a percent-encoded `file://`
//! URL where it was one; a `.prproj` is inflated, edited and compressed again). Without
//! `--write` it lists the changes; with it, the old project is kept beside the new one as
//! `NAME.bak` (then `.bak.2`, …) and the new one is written whole and renamed into place.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::json;

use dits_core::project::deps::document_of;
use dits_core::project::resolve::How;
use dits_core::project::{inflate_gzip, is_gzip, Format};
use git_remote_dits::git;

use super::deps::{dependencies, repo_path, Dependency, Source, Status};
use crate::output::print_json;

/// One replacement: the reference as written, and what it becomes.
struct Change {
    from: String,
    to: String,
}

/// The new string for `d` in the form its old one had: a `file://` URL stays one.
fn new_reference(d: &Dependency, checkout: &str) -> Option<String> {
    let resolved = d.resolved.as_deref()?;
    let absolute = format!("{}/{resolved}", checkout.trim_end_matches('/'));
    if d.reference
        .raw
        .trim()
        .to_ascii_lowercase()
        .starts_with("file:")
    {
        Some(format!("file://{}", percent_encode(&absolute)))
    } else {
        Some(absolute)
    }
}

/// Percent-encodes what a `file://` URL path may not hold as is.
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The ways `s` may be written in a project of `format`, most specific first.
fn encodings(format: Format, s: &str) -> Vec<String> {
    let mut forms = match format {
        Format::Otio | Format::Otioz => {
            let json = serde_json::to_string(s).unwrap_or_default();
            vec![json[1..json.len().saturating_sub(1)].to_string()]
        }
        Format::Edl => vec![],
        _ => vec![
            quick_xml::escape::escape(s).into_owned(),
            quick_xml::escape::partial_escape(s).into_owned(),
            quick_xml::escape::minimal_escape(s).into_owned(),
        ],
    };
    forms.push(s.to_string());
    forms.dedup();
    forms
}

/// `text` with each change made in the form the text holds its old string; the count of
/// replacements.
fn apply(format: Format, text: &str, changes: &[Change]) -> (String, usize) {
    let mut out = text.to_string();
    let mut made = 0;
    for c in changes {
        let (from_forms, to_forms) = (encodings(format, &c.from), encodings(format, &c.to));
        for (from, to) in from_forms.iter().zip(&to_forms) {
            let n = out.matches(from.as_str()).count();
            if n > 0 {
                out = out.replace(from.as_str(), to);
                made += n;
                break;
            }
        }
    }
    (out, made)
}

pub fn relink(path: &str, write: bool, json_out: bool) -> Result<i32> {
    let project = repo_path(path)?;
    let top = git::top_level()?;
    let checkout = top.to_string_lossy().replace('\\', "/");
    let deps = dependencies(&project, &Source::Worktree)?;
    let mut changes = Vec::new();
    for d in &deps {
        let moved = matches!(d.how, Some(How::Rule | How::ProjectRelative | How::ByName));
        if d.status != Status::Tracked || !moved {
            continue;
        }
        if let Some(to) = new_reference(d, &checkout) {
            if to != d.reference.raw && !changes.iter().any(|c: &Change| c.from == d.reference.raw)
            {
                changes.push(Change {
                    from: d.reference.raw.clone(),
                    to,
                });
            }
        }
    }
    let unresolved: Vec<&Dependency> = deps.iter().filter(|d| d.status.is_problem()).collect();
    if json_out {
        print_json(&json!({
            "project": project,
            "written": write && !changes.is_empty(),
            "changes": changes.iter().map(|c| json!({"from": c.from, "to": c.to})).collect::<Vec<_>>(),
            "unresolved": unresolved.iter().map(|d| json!({"raw": d.reference.raw, "status": d.status.as_str()})).collect::<Vec<_>>(),
        }));
    } else {
        for c in &changes {
            println!("{} -> {}", c.from, c.to);
        }
        for d in &unresolved {
            eprintln!(
                "{project}: {} stays as it is ({})",
                d.reference.raw,
                d.status.as_str()
            );
        }
        if changes.is_empty() {
            eprintln!("{project}: nothing to relink");
        }
    }
    if !write || changes.is_empty() {
        return Ok(0);
    }
    let (format, document) = document_of(&project)?;
    if format == Format::Otioz {
        bail!("{project}: relinking inside an .otioz bundle is not supported; unpack it (its media travel inside it anyway)");
    }
    let file = top.join(&document);
    let original = std::fs::read(&file).with_context(|| format!("reading {document}"))?;
    let gzipped = is_gzip(&original);
    let text_bytes = if gzipped {
        inflate_gzip(&original).with_context(|| format!("inflating {document}"))?
    } else {
        original.clone()
    };
    let text = String::from_utf8(text_bytes).with_context(|| format!("{document} is not UTF-8"))?;
    let (new_text, made) = apply(format, &text, &changes);
    if made == 0 {
        bail!("{document}: none of the references were found as written; nothing changed");
    }
    let new_bytes = if gzipped {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(new_text.as_bytes())?;
        gz.finish()?
    } else {
        new_text.into_bytes()
    };
    let backup = backup_path(&file);
    std::fs::write(&backup, &original).with_context(|| format!("writing {}", backup.display()))?;
    let tmp = file.with_extension("dits-relink-tmp");
    std::fs::write(&tmp, &new_bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("replacing {document}"))?;
    if !json_out {
        eprintln!(
            "{document}: {made} references relinked; the old project is {}",
            backup.display()
        );
    }
    Ok(0)
}

/// `NAME.bak`, or the first `NAME.bak.N` not taken.
fn backup_path(file: &std::path::Path) -> std::path::PathBuf {
    let base = format!("{}.bak", file.display());
    let mut candidate = std::path::PathBuf::from(&base);
    let mut n = 2;
    while candidate.exists() {
        candidate = std::path::PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_keep_the_documents_escaping() {
        let changes = [Change {
            from: "/Volumes/SSD A/A & B.mov".into(),
            to: "/home/me/repo/footage/A & B.mov".into(),
        }];
        let xml = "<property name=\"resource\">/Volumes/SSD A/A &amp; B.mov</property>";
        let (out, n) = apply(Format::Mlt, xml, &changes);
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "<property name=\"resource\">/home/me/repo/footage/A &amp; B.mov</property>"
        );
        let json = r#"{"target_url": "/Volumes/SSD A/A & B.mov"}"#;
        assert_eq!(apply(Format::Otio, json, &changes).1, 1);
        assert_eq!(
            percent_encode("/home/me/café 1.mov"),
            "/home/me/caf%C3%A9%201.mov"
        );
    }
}
