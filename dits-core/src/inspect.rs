//! What `git dits show` and the diff textconv tell people about a stored file: its
//! structure (from the stored `moov` box), its chunks, and how much it shares with
//! another version.

use std::collections::HashSet;

use crate::chunk_id::ChunkId;
use crate::media::sample_table::{parse_moov, MovieInfo};
use crate::media::{matroska, mxf};
use crate::pointer::Pointer;
use crate::recipe::{EntryKind, Recipe};
use crate::smudge::{load_recipe, SmudgeError};
use crate::store::ChunkStore;

#[derive(Debug, Clone)]
pub struct Inspection {
    pub pointer: Pointer,
    pub recipe: Recipe,
    pub movie: Option<MovieInfo>,
    pub chunks: usize,
    pub keyframe_chunks: usize,
    pub boxes: Vec<String>,
    pub stored_bytes: u64,
    /// Sample streams the payload was split into (0: chunked as raw bytes).
    pub streams: usize,
}

pub fn inspect<S: ChunkStore>(store: &mut S, pointer: &Pointer) -> Result<Inspection, SmudgeError> {
    let recipe = load_recipe(store, pointer)?;
    let mut boxes = Vec::new();
    let mut movie = None;
    let mut matroska_info = None;
    // Which structure objects describe the tracks depends on the container.
    let container = pointer.media.split(' ').next().unwrap_or("");
    let matroska = matches!(container, "mkv" | "webm");
    for e in &recipe.entries {
        if let EntryKind::Box { fourcc } = e.kind {
            boxes.push(crate::media::boxes::fourcc_str(&fourcc));
            if movie.is_some() {
                continue;
            }
            // Each object is the whole structure element, header included.
            match &fourcc {
                b"moov" if !matroska && container != "mxf" => {
                    if let Ok(bytes) = store.get(&e.id) {
                        let span = crate::media::boxes::parse_header(&bytes, 0, bytes.len() as u64);
                        movie = span
                            .ok()
                            .and_then(|h| bytes.get(h.header_len as usize..))
                            .map(|moov| parse_moov(moov, pointer.size));
                    }
                }
                b"hmet" if container == "mxf" => {
                    movie = store
                        .get(&e.id)
                        .ok()
                        .map(|b| mxf::movie_from_header_metadata(&b))
                }
                // Info comes before Tracks in the files muxers write.
                b"info" if matroska && matroska_info.is_none() => {
                    matroska_info = store.get(&e.id).ok()
                }
                b"trks" if matroska => {
                    movie = store
                        .get(&e.id)
                        .ok()
                        .map(|b| matroska::movie_from_elements(matroska_info.as_deref(), &b))
                }
                _ => {}
            }
        }
    }
    let chunks = recipe
        .unique_objects()
        .filter(|e| e.kind == EntryKind::Chunk)
        .count();
    let keyframe_chunks = recipe.unique_objects().filter(|e| e.keyframe).count();
    let stored_bytes = recipe
        .unique_objects()
        .map(|e| u64::from(e.stored_len))
        .sum();
    let streams = recipe
        .entries
        .iter()
        .filter(|e| e.stream != 0)
        .map(|e| e.stream)
        .collect::<HashSet<_>>()
        .len();
    Ok(Inspection {
        streams,
        pointer: pointer.clone(),
        recipe,
        movie,
        chunks,
        keyframe_chunks,
        boxes,
        stored_bytes,
    })
}

/// Bytes of `new` (counted once per distinct object) that `old` already has, and the
/// total distinct bytes of `new`.
pub fn shared_bytes(old: &Recipe, new: &Recipe) -> (u64, u64) {
    let old_ids: HashSet<ChunkId> = old.entries.iter().map(|e| e.id).collect();
    let (mut shared, mut total) = (0u64, 0u64);
    for e in new.unique_objects() {
        total += u64::from(e.chunk_len);
        if old_ids.contains(&e.id) {
            shared += u64::from(e.chunk_len);
        }
    }
    (shared, total)
}
