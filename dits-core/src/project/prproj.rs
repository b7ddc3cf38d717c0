//! Premiere Pro `.prproj`: gzip-compressed XML whose `<Media>` elements name their file
//! as `ActualMediaFilePath` (or `FilePath`), with a `RelativePath` from the project.
//! Preview renders and caches (`.PRV/` folders, `.pek` and `.cfa` files) are not media the
//! project needs. Decompression is bounded (a gzip bomb is an error).

use super::xml::{walk, Node};
use super::{inflate_gzip, is_gzip, push_unique, ProjectError, Reference, Role};

pub fn references(bytes: &[u8]) -> Result<Vec<Reference>, ProjectError> {
    let xml = if is_gzip(bytes) {
        inflate_gzip(bytes)?
    } else {
        // Saved uncompressed (or already inflated): plain XML.
        bytes.to_vec()
    };
    let mut refs = Vec::new();
    // Inside a <Media>: its paths so far, and the element whose text is being read.
    let mut media: Option<[Option<String>; 3]> = None;
    let mut field: Option<usize> = None;
    let mut text = String::new();
    walk(&xml, |node| {
        match node {
            Node::Start { name, .. } => match name {
                "Media" => media = Some([None, None, None]),
                "ActualMediaFilePath" => field = Some(0),
                "FilePath" => field = Some(1),
                "RelativePath" => field = Some(2),
                _ => {}
            },
            Node::Text(t) if field.is_some() => text.push_str(t),
            Node::Text(_) => {}
            Node::End { name } => match name {
                "ActualMediaFilePath" | "FilePath" | "RelativePath" => {
                    if let (Some(m), Some(i)) = (media.as_mut(), field.take()) {
                        let t = std::mem::take(&mut text);
                        if !t.trim().is_empty() && m[i].is_none() {
                            m[i] = Some(t);
                        }
                    }
                    text.clear();
                }
                "Media" => {
                    if let Some([actual, file, relative]) = media.take() {
                        if let Some(p) = actual.or(file).filter(|p| !is_cache(p)) {
                            let mut r = Reference::new(&p, Role::Original);
                            r.relative = relative.map(|rel| super::path::decode(&rel));
                            push_unique(&mut refs, r)?;
                        }
                    }
                }
                _ => {}
            },
        }
        Ok(())
    })?;
    Ok(refs)
}

fn is_cache(path: &str) -> bool {
    let p = super::path::with_slashes(path).to_ascii_lowercase();
    p.contains(".prv/") || p.ends_with(".pek") || p.ends_with(".cfa")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn media_paths_from_gzipped_xml_and_bombs_refused() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" ?>
<PremiereData Version="3"><Media ObjectUID="a"><FilePath>C:\Footage\A001.mov</FilePath>
<ActualMediaFilePath>C:\Footage\A001.mov</ActualMediaFilePath><RelativePath>..\Footage\A001.mov</RelativePath></Media>
<Media ObjectUID="b"><FilePath>/Users/e/Job.PRV/Rendered - 1.mxf</FilePath></Media>
<Media ObjectUID="c"><FilePath>/Users/e/audio.cfa</FilePath></Media></PremiereData>"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(xml.as_bytes()).unwrap();
        let refs = references(&gz.finish().unwrap()).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].path, "C:\\Footage\\A001.mov");
        assert_eq!(refs[0].relative.as_deref(), Some("..\\Footage\\A001.mov"));

        // 300 MB of zeros inflates past the bound.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..300 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(references(&bomb), Err(ProjectError::TooLarge)));
    }
}
