//! CMX3600 EDL: events name their sources in comments, `* FROM CLIP NAME: A001C003.mov`
//! (a name, matched by file name) and `* FROM FILE: /path/A001C003.mov`.

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
        let (value, by_name) = if upper.starts_with("FROM CLIP NAME:") {
            (&comment["FROM CLIP NAME:".len()..], true)
        } else if upper.starts_with("FROM CLIP:") {
            (&comment["FROM CLIP:".len()..], true)
        } else if upper.starts_with("FROM FILE:") {
            (&comment["FROM FILE:".len()..], false)
        } else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let mut r = Reference::new(value, Role::Original);
        r.by_name = by_name;
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
            ("C:\\Footage\\sound.wav", false)
        );
    }
}
