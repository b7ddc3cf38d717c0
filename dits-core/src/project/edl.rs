//! CMX3600 EDL: events name their sources in comments, `* FROM CLIP NAME: A001C003.mov`,
//! `* FROM CLIP: …` and `* FROM FILE: /path/A001C003.mov`. All are matched by file name
//! (writers disagree on what the lines hold: OpenTimelineIO puts a URL in `FROM CLIP`),
//! and one event's lines naming the same file are one reference.

use super::{push_unique, ProjectError, Reference, Role};

pub fn references(bytes: &[u8]) -> Result<Vec<Reference>, ProjectError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ProjectError::NotUtf8)?;
    let mut refs = Vec::new();
    for line in text.lines() {
        let Some(comment) = line.trim_start().strip_prefix('*') else {
            continue;
        };
        let comment = comment.trim_start();
        let upper = comment.to_ascii_uppercase();
        let Some(prefix) = ["FROM CLIP NAME:", "FROM CLIP:", "FROM FILE:"]
            .into_iter()
            .find(|p| upper.starts_with(p))
        else {
            continue;
        };
        let value = &comment[prefix.len()..];
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let mut r = Reference::new(value, Role::Original);
        r.by_name = true;
        let name = super::path::file_name(&r.path).to_string();
        if refs
            .iter()
            .any(|o: &Reference| super::path::file_name(&o.path) == name)
        {
            continue;
        }
        push_unique(&mut refs, r)?;
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_names_and_files() {
        let edl = "TITLE: Job42\nFCM: NON-DROP FRAME\n\n001  AX       V     C        00:00:00:00 00:00:04:00 01:00:00:00 01:00:04:00\n* FROM CLIP NAME: A001 C003.mov\n002  AX       AA    C        00:00:01:00 00:00:02:00 01:00:04:00 01:00:05:00\n* FROM FILE: C:\\Footage\\sound.wav\n*FROM CLIP NAME:  A001 C003.mov\n";
        let refs = references(edl.as_bytes()).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(
            (refs[0].path.as_str(), refs[0].by_name),
            ("A001 C003.mov", true)
        );
        assert_eq!(
            (refs[1].path.as_str(), refs[1].by_name),
            ("C:\\Footage\\sound.wav", true)
        );
    }
}
