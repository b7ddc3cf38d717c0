//! A streaming walk over an XML project for the format parsers: elements with their
//! unescaped attributes, and text (with character references and the five predefined
//! entities resolved; any entity a document declares is refused, so an entity bomb is an
//! error, not an expansion). Nesting is bounded by [`MAX_DEPTH`].

use quick_xml::escape::EscapeError;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::{ProjectError, MAX_DEPTH};

pub(crate) enum Node<'n> {
    Start {
        name: &'n str,
        attrs: &'n [(String, String)],
    },
    End {
        name: &'n str,
    },
    /// The text between two tags, whole.
    Text(&'n str),
}

fn xml_error(reader: &Reader<&[u8]>, e: impl std::fmt::Display) -> ProjectError {
    ProjectError::Xml {
        position: reader.buffer_position(),
        reason: super::short(&e.to_string()),
    }
}

/// Calls `visit` for each element start and end and each run of text of `bytes`.
pub(crate) fn walk(
    bytes: &[u8],
    mut visit: impl FnMut(Node<'_>) -> Result<(), ProjectError>,
) -> Result<(), ProjectError> {
    let mut reader = Reader::from_reader(bytes);
    let mut buf = Vec::new();
    let mut text = String::new();
    let mut depth = 0usize;
    let mut attrs: Vec<(String, String)> = Vec::new();
    loop {
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| xml_error(&reader, e))?;
        match &event {
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {}
            _ if !text.is_empty() => {
                visit(Node::Text(&text))?;
                text.clear();
            }
            _ => {}
        }
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let self_closing = matches!(event, Event::Empty(_));
                let name = std::str::from_utf8(e.name().as_ref())
                    .map_err(|_| ProjectError::NotUtf8)?
                    .to_string();
                attrs.clear();
                for a in e.attributes() {
                    let a = a.map_err(|err| xml_error(&reader, err))?;
                    let key = std::str::from_utf8(a.key.as_ref())
                        .map_err(|_| ProjectError::NotUtf8)?
                        .to_string();
                    let value = a.unescape_value().map_err(|err| match err {
                        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
                            ProjectError::UnknownEntity(super::short(&name))
                        }
                        other => xml_error(&reader, other),
                    })?;
                    attrs.push((key, value.into_owned()));
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ProjectError::TooDeep);
                }
                visit(Node::Start {
                    name: &name,
                    attrs: &attrs,
                })?;
                if self_closing {
                    depth -= 1;
                    visit(Node::End { name: &name })?;
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                let name = std::str::from_utf8(e.name().as_ref())
                    .map_err(|_| ProjectError::NotUtf8)?
                    .to_string();
                visit(Node::End { name: &name })?;
            }
            Event::Text(e) => text.push_str(&e.xml_content().map_err(|_| ProjectError::NotUtf8)?),
            Event::CData(e) => text.push_str(&e.decode().map_err(|_| ProjectError::NotUtf8)?),
            Event::GeneralRef(e) => {
                if e.is_char_ref() {
                    match e
                        .resolve_char_ref()
                        .map_err(|err| xml_error(&reader, err))?
                    {
                        Some(c) => text.push(c),
                        None => return Err(xml_error(&reader, "a character reference to nothing")),
                    }
                } else {
                    let name = e.decode().map_err(|_| ProjectError::NotUtf8)?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => text.push_str(s),
                        None => return Err(ProjectError::UnknownEntity(super::short(&name))),
                    }
                }
                if text.len() as u64 > super::MAX_PROJECT_BYTES {
                    return Err(ProjectError::TooLarge);
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The value of attribute `key`.
pub(crate) fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
