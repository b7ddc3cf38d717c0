//! Final Cut Pro XML: `<asset src=…>` (FCPXML 1.8 and earlier) and `<media-rep kind=…
//! src=…>` (1.9 and later; `proxy-media` is a proxy). Sources are absolute `file://`
//! URLs, percent-encoded. An `.fcpxmld` bundle's document is its `Info.fcpxml`.

use super::xml::{attr, walk, Node};
use super::{push_unique, ProjectError, Reference, Role};

pub fn references(bytes: &[u8]) -> Result<Vec<Reference>, ProjectError> {
    let mut refs = Vec::new();
    walk(bytes, |node| {
        if let Node::Start { name, attrs } = node {
            let role = match name {
                "asset" => Role::Original,
                "media-rep" if attr(attrs, "kind") == Some("proxy-media") => Role::Proxy,
                "media-rep" => Role::Original,
                _ => return Ok(()),
            };
            if let Some(src) = attr(attrs, "src").filter(|s| !s.trim().is_empty()) {
                push_unique(&mut refs, Reference::new(src, role))?;
            }
        }
        Ok(())
    })?;
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_and_media_reps() {
        let v18 = r#"<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE fcpxml>
<fcpxml version="1.8"><resources>
 <asset id="r2" name="A" src="file:///Volumes/SSD_A/Job42/A%20001.mov" start="0s" duration="8s" hasVideo="1"/>
</resources></fcpxml>"#;
        let refs = references(v18.as_bytes()).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].path, "/Volumes/SSD_A/Job42/A 001.mov");
        let v110 = r#"<fcpxml version="1.10"><resources>
 <asset id="r2" name="B"><media-rep kind="original-media" src="file://localhost/Users/e/%E6%98%A0%E5%83%8F.mov"/>
 <media-rep kind="proxy-media" src="file:///Users/e/Proxy/b.mov"/></asset></resources></fcpxml>"#;
        let refs = references(v110.as_bytes()).unwrap();
        let got: Vec<(&str, Role)> = refs.iter().map(|r| (r.path.as_str(), r.role)).collect();
        assert_eq!(
            got,
            vec![
                ("/Users/e/映像.mov", Role::Original),
                ("/Users/e/Proxy/b.mov", Role::Proxy)
            ]
        );
    }
}
