//! MLT XML: Kdenlive `.kdenlive` and Shotcut/melt `.mlt`. Each `<producer>`, `<chain>`,
//! `<filter>` and `<transition>` is a service with `<property name=…>` children; the
//! references are, as Kdenlive's own missing-media check (`documentchecker.cpp`) reads
//! them: a producer's `resource` (a timewarp's `warp_resource`, or its `resource` after
//! the `speed:` prefix), `kdenlive:originalurl` and `kdenlive:proxy`; a title's images
//! (`<content url>` inside `xmldata`); a transition's or filter's luma file (`resource` of
//! luma services, or `luma`); Shotcut's LUT (`av.file`) and the stabilizer's `filename`.
//! Colour and generator producers name no file. Relative paths are relative to the
//! document's `<mlt root=…>`.

use super::xml::{attr, walk, Node};
use super::{path, push_unique, ProjectError, Reference, Role};

/// Producers that generate their picture: their `resource` is not a file.
const GENERATORS: [&str; 12] = [
    "color",
    "colour",
    "count",
    "noise",
    "tone",
    "blipflash",
    "qtext",
    "kdenlivetitle",
    "xml-string",
    "xml-clip",
    "tractor",
    "playlist",
];

/// Luma-wipe services whose `resource` is the wipe's image.
const LUMA_SERVICES: [&str; 4] = ["luma", "composite", "region", "movit.luma_mix"];

struct Service {
    kind: String,
    properties: Vec<(String, String)>,
}

impl Service {
    fn get(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

pub fn references(bytes: &[u8]) -> Result<Vec<Reference>, ProjectError> {
    let mut refs = Vec::new();
    let mut root: Option<String> = None;
    let mut services: Vec<Service> = Vec::new();
    // The property whose text is being read: its name.
    let mut property: Option<String> = None;
    let mut text = String::new();
    walk(bytes, |node| {
        match node {
            Node::Start { name, attrs } => match name {
                "mlt" => root = attr(attrs, "root").map(str::to_string),
                "producer" | "chain" | "filter" | "transition" | "link" => {
                    let mut properties = Vec::new();
                    // melt's own XML may put the resource in an attribute.
                    if let Some(r) = attr(attrs, "resource") {
                        properties.push(("resource".to_string(), r.to_string()));
                    }
                    services.push(Service {
                        kind: name.to_string(),
                        properties,
                    });
                }
                "property" => {
                    property = attr(attrs, "name").map(str::to_string);
                    text.clear();
                }
                _ => {}
            },
            Node::Text(t) => {
                if property.is_some() {
                    text.push_str(t);
                }
            }
            Node::End { name } => match name {
                "property" => {
                    if let (Some(p), Some(s)) = (property.take(), services.last_mut()) {
                        s.properties.push((p, std::mem::take(&mut text)));
                    }
                }
                "producer" | "chain" | "filter" | "transition" | "link" => {
                    if let Some(s) = services.pop() {
                        service_references(&s, root.as_deref(), &mut refs)?;
                    }
                }
                _ => {}
            },
        }
        Ok(())
    })?;
    Ok(refs)
}

fn service_references(
    s: &Service,
    root: Option<&str>,
    refs: &mut Vec<Reference>,
) -> Result<(), ProjectError> {
    let service = s.get("mlt_service").unwrap_or("").trim();
    let add = |raw: &str, role: Role, refs: &mut Vec<Reference>| {
        let mut r = Reference::new(raw, role);
        if path::is_sequence(&r.path) && role == Role::Original {
            r.role = Role::Sequence;
        }
        r.base = root.map(str::to_string);
        if role == Role::Original {
            r.fingerprint = s.get("kdenlive:file_hash").map(str::to_string);
            r.size = s
                .get("kdenlive:file_size")
                .and_then(|v| v.trim().parse().ok());
        }
        push_unique(refs, r)
    };
    match s.kind.as_str() {
        "producer" | "chain" => {
            if service == "kdenlivetitle" {
                if let Some(xml) = s.get("xmldata") {
                    for url in title_images(xml)? {
                        add(&url, Role::TitleImage, refs)?;
                    }
                }
                return Ok(());
            }
            if GENERATORS.contains(&service) || service.starts_with("frei0r.") {
                return Ok(());
            }
            let resource = if service == "timewarp" {
                s.get("warp_resource")
                    .map(str::to_string)
                    .or_else(|| s.get("resource").map(strip_speed))
            } else {
                s.get("resource").map(str::to_string)
            };
            if let Some(r) = resource.filter(|r| names_a_file(r)) {
                add(&r, Role::Original, refs)?;
            }
            if let Some(r) = s.get("kdenlive:originalurl").filter(|r| names_a_file(r)) {
                add(r, Role::Original, refs)?;
            }
            if let Some(r) = s.get("kdenlive:proxy").filter(|r| names_a_file(r)) {
                add(r, Role::Proxy, refs)?;
            }
        }
        _ => {
            if LUMA_SERVICES.contains(&service) {
                if let Some(r) = s.get("resource").filter(|r| names_a_file(r)) {
                    add(r, Role::Luma, refs)?;
                }
            }
            if let Some(r) = s.get("luma").filter(|r| names_a_file(r)) {
                add(r, Role::Luma, refs)?;
            }
            if let Some(r) = s.get("av.file").filter(|r| names_a_file(r)) {
                add(r, Role::Lut, refs)?;
            }
            if service.starts_with("vidstab") {
                if let Some(r) = s.get("filename").filter(|r| names_a_file(r)) {
                    add(r, Role::Data, refs)?;
                }
            }
        }
    }
    Ok(())
}

/// A timewarp producer's `resource` is `SPEED:PATH`.
fn strip_speed(resource: &str) -> String {
    match resource.split_once(':') {
        Some((speed, rest)) if speed.parse::<f64>().is_ok() => rest.to_string(),
        _ => resource.to_string(),
    }
}

/// Not a colour (`0xff0000ff`, `#ff0000`, `black`), an embedded document (`<producer>`) or
/// "none" (`-`).
fn names_a_file(r: &str) -> bool {
    let r = r.trim();
    !(r.is_empty()
        || r == "-"
        || r.starts_with('<')
        || r.starts_with('#')
        || (r.starts_with("0x") && r.len() == 10 && r[2..].chars().all(|c| c.is_ascii_hexdigit()))
        || ["black", "white", "red", "green", "blue", "transparent"].contains(&r))
}

/// The images a Kdenlive title's XML places (`<content url=…>`).
fn title_images(xml: &str) -> Result<Vec<String>, ProjectError> {
    let mut urls = Vec::new();
    walk(xml.as_bytes(), |node| {
        if let Node::Start {
            name: "content",
            attrs,
        } = node
        {
            if let Some(url) = attr(attrs, "url").filter(|u| !u.trim().is_empty()) {
                urls.push(url.to_string());
            }
        }
        Ok(())
    })?;
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdenlive_producers_proxies_luts_lumas_and_titles() {
        let doc = r#"<?xml version="1.0" encoding="utf-8"?>
<mlt LC_NUMERIC="C" root="/home/ed/Job42" version="7.22.0">
 <producer id="p0"><property name="resource">footage/A001 &amp; B.mov</property>
  <property name="mlt_service">avformat</property>
  <property name="kdenlive:proxy">/home/ed/Job42/proxy/A001.mkv</property>
  <property name="kdenlive:originalurl">footage/A001 &amp; B.mov</property>
  <property name="kdenlive:file_hash">0123abcd</property>
  <property name="kdenlive:file_size">2736707</property></producer>
 <producer id="p1"><property name="resource">0xff0000ff</property><property name="mlt_service">color</property></producer>
 <chain id="c0"><property name="resource">file:///Volumes/SSD%20A/caf%C3%A9.mp4</property><property name="mlt_service">avformat-novalidate</property>
  <filter id="f0"><property name="mlt_service">avfilter.lut3d</property><property name="av.file">luts/look.cube</property></filter>
  <filter id="f1"><property name="mlt_service">vidstab</property><property name="filename">stab/c0.trf</property></filter></chain>
 <producer id="p2"><property name="mlt_service">timewarp</property><property name="resource">0.5:footage/slow.mov</property></producer>
 <producer id="p3"><property name="mlt_service">kdenlivetitle</property><property name="xmldata">&lt;kdenlivetitle&gt;&lt;item type="QGraphicsPixmapItem"&gt;&lt;content url="/home/ed/logo.png"/&gt;&lt;/item&gt;&lt;/kdenlivetitle&gt;</property></producer>
 <producer id="p4"><property name="resource">frames/img_%05d.png</property><property name="mlt_service">pixbuf</property></producer>
 <transition id="t0"><property name="mlt_service">luma</property><property name="resource">/usr/share/kdenlive/lumas/HD/spiral.pgm</property></transition>
 <tractor id="main"/>
</mlt>"#;
        let refs = references(doc.as_bytes()).unwrap();
        let got: Vec<(&str, Role)> = refs.iter().map(|r| (r.path.as_str(), r.role)).collect();
        assert_eq!(
            got,
            vec![
                ("footage/A001 & B.mov", Role::Original),
                ("/home/ed/Job42/proxy/A001.mkv", Role::Proxy),
                ("luts/look.cube", Role::Lut),
                ("stab/c0.trf", Role::Data),
                ("/Volumes/SSD A/café.mp4", Role::Original),
                ("footage/slow.mov", Role::Original),
                ("/home/ed/logo.png", Role::TitleImage),
                ("frames/img_%05d.png", Role::Sequence),
                ("/usr/share/kdenlive/lumas/HD/spiral.pgm", Role::Luma),
            ]
        );
        assert_eq!(refs[0].base.as_deref(), Some("/home/ed/Job42"));
        assert_eq!(refs[0].fingerprint.as_deref(), Some("0123abcd"));
        assert_eq!(refs[0].size, Some(2_736_707));
        assert_eq!(refs[4].raw, "file:///Volumes/SSD%20A/caf%C3%A9.mp4");
    }

    #[test]
    fn hostile_documents_are_errors() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
<mlt><producer><property name="resource">&lol2;</property></producer></mlt>"#;
        assert!(matches!(
            references(bomb.as_bytes()),
            Err(ProjectError::UnknownEntity(_))
        ));
        let deep = "<a>".repeat(100_000);
        assert!(matches!(
            references(deep.as_bytes()),
            Err(ProjectError::TooDeep)
        ));
        assert!(references(
            b"<mlt><producer><property name=\"resource\">\xff\xfe</property></producer></mlt>"
        )
        .is_err());
        assert!(references(b"<mlt><producer></mlt>").is_err());
        // Parser messages quote the document; a hostile one must not make them huge
        // (found by the project_files fuzz target).
        let long = format!("<mlt><{0}></{1}></mlt>", "a".repeat(5000), "b".repeat(5000));
        let message = references(long.as_bytes()).unwrap_err().to_string();
        assert!(message.len() < 1024, "{} bytes", message.len());
        let entity = format!("<mlt>&{};</mlt>", "e".repeat(5000));
        assert!(references(entity.as_bytes()).unwrap_err().to_string().len() < 1024);
    }
}
