//! OpenTimelineIO `.otio` (JSON) and `.otioz` bundles (a zip holding `content.otio` and
//! the media under `media/`). References are `ExternalReference.target_url` and
//! `ImageSequenceReference` (base, prefix, zero padding and suffix), found under a clip's
//! `media_reference` (Clip.1) or `media_references` (Clip.2, where a key naming a proxy
//! makes the reference one) anywhere in the document.

use serde_json::Value;

use super::{push_unique, read_bounded, ProjectError, Reference, Role};

pub fn references(bytes: &[u8]) -> Result<Vec<Reference>, ProjectError> {
    // serde_json refuses nesting deeper than 128 levels, so depth is bounded.
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| ProjectError::Json(super::short(&e.to_string())))?;
    let mut refs = Vec::new();
    visit(&doc, Role::Original, &mut refs)?;
    Ok(refs)
}

/// The references of an `.otioz` bundle's `content.otio`, less those naming a file the
/// bundle itself holds (OpenTimelineIO's writer copies each clip to `media/NAME` and
/// points there): those travel with the project and are no dependency of it.
pub fn bundle_references(bytes: &[u8]) -> Result<Vec<Reference>, ProjectError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ProjectError::Zip(super::short(&e.to_string())))?;
    let inside: std::collections::HashSet<String> = zip.file_names().map(str::to_string).collect();
    let entry = zip
        .by_name("content.otio")
        .map_err(|_| ProjectError::MissingEntry("content.otio"))?;
    let content = read_bounded(entry, ProjectError::Zip)?;
    let mut refs = references(&content)?;
    refs.retain(|r| !inside.contains(r.path.trim_start_matches("./")));
    Ok(refs)
}

fn visit(v: &Value, role: Role, refs: &mut Vec<Reference>) -> Result<(), ProjectError> {
    match v {
        Value::Object(map) => {
            let schema = map.get("OTIO_SCHEMA").and_then(Value::as_str).unwrap_or("");
            if schema.starts_with("ExternalReference.") {
                if let Some(url) = map.get("target_url").and_then(Value::as_str) {
                    push_unique(refs, Reference::new(url, role))?;
                }
                return Ok(());
            }
            if schema.starts_with("ImageSequenceReference.") {
                if let Some(r) = sequence_reference(map, role) {
                    push_unique(refs, r)?;
                }
                return Ok(());
            }
            for (key, child) in map {
                let child_role = if key == "media_references" {
                    // Keys name the alternatives; visit each with its role.
                    if let Value::Object(alternatives) = child {
                        for (name, reference) in alternatives {
                            let r = if name.to_ascii_lowercase().contains("proxy") {
                                Role::Proxy
                            } else {
                                Role::Original
                            };
                            visit(reference, r, refs)?;
                        }
                    }
                    continue;
                } else {
                    role
                };
                visit(child, child_role, refs)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|i| visit(i, role, refs)),
        _ => Ok(()),
    }
}

/// `target_url_base` + `name_prefix` + `%0Nd` + `name_suffix`: the base is a URL
/// (decoded as one), the pattern after it is not.
fn sequence_reference(map: &serde_json::Map<String, Value>, role: Role) -> Option<Reference> {
    let base = map.get("target_url_base").and_then(Value::as_str)?;
    let prefix = map.get("name_prefix").and_then(Value::as_str).unwrap_or("");
    let suffix = map.get("name_suffix").and_then(Value::as_str).unwrap_or("");
    let padding = map
        .get("frame_zero_padding")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(16);
    let sep = if base.is_empty() || base.ends_with('/') {
        ""
    } else {
        "/"
    };
    let pattern = format!("{sep}{prefix}%0{padding}d{suffix}");
    let mut r = Reference::new(
        base,
        if role == Role::Proxy {
            role
        } else {
            Role::Sequence
        },
    );
    r.raw = format!("{base}{pattern}");
    r.path = format!("{}{pattern}", r.path);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip1_clip2_and_sequences() {
        let doc = r#"{"OTIO_SCHEMA": "Timeline.1", "tracks": {"OTIO_SCHEMA": "Stack.1", "children": [
          {"OTIO_SCHEMA": "Track.1", "children": [
            {"OTIO_SCHEMA": "Clip.1", "media_reference": {"OTIO_SCHEMA": "ExternalReference.1", "target_url": "file:///C:/Footage/a%20b.mov"}},
            {"OTIO_SCHEMA": "Clip.2", "active_media_reference_key": "DEFAULT_MEDIA", "media_references": {
               "DEFAULT_MEDIA": {"OTIO_SCHEMA": "ExternalReference.1", "target_url": "media/b.mp4"},
               "proxy_low": {"OTIO_SCHEMA": "ExternalReference.1", "target_url": "proxies/b.mp4"}}},
            {"OTIO_SCHEMA": "Clip.2", "media_references": {"DEFAULT_MEDIA": {"OTIO_SCHEMA": "ImageSequenceReference.1",
               "target_url_base": "file:///render/shot/", "name_prefix": "sh010.", "name_suffix": ".exr", "frame_zero_padding": 4}}},
            {"OTIO_SCHEMA": "Clip.2", "media_references": {"DEFAULT_MEDIA": {"OTIO_SCHEMA": "MissingReference.1"}}},
            {"OTIO_SCHEMA": "Clip.1", "media_reference": {"OTIO_SCHEMA": "GeneratorReference.1", "generator_kind": "SMPTEBars"}}
          ]}]}}"#;
        let refs = references(doc.as_bytes()).unwrap();
        let got: Vec<(&str, Role)> = refs.iter().map(|r| (r.path.as_str(), r.role)).collect();
        assert_eq!(
            got,
            vec![
                ("C:/Footage/a b.mov", Role::Original),
                ("media/b.mp4", Role::Original),
                ("proxies/b.mp4", Role::Proxy),
                ("/render/shot/sh010.%04d.exr", Role::Sequence),
            ]
        );
        assert!(references(b"{\"a\": [").is_err());
        let deep = "[".repeat(10_000);
        assert!(references(deep.as_bytes()).is_err());
    }
}
