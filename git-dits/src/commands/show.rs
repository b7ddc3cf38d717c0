//! `git dits show PATH`: a tracked file's structure, chunks and dedup against the
//! previous version; and `git dits textconv`, the same description for `git diff`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use dits_core::inspect::{inspect, shared_bytes, Inspection};
use dits_core::{LocalStore, Pointer};
use serde_json::json;

use crate::output::{human_size, print_json};
use git_remote_dits::git;

/// Reads the pointer stored for `path` at `rev` (or in the index when `rev` is None
/// and the index has one).
fn pointer_at(spec: &str) -> Result<Option<Pointer>> {
    let blobs = git::cat_file_small(&[spec.to_string()], 4096)?;
    let Some(Some(blob)) = blobs.into_iter().next() else {
        return Ok(None);
    };
    if !Pointer::looks_like_pointer(&blob.content) {
        return Ok(None);
    }
    Ok(Some(
        git_remote_dits::keys::load_keyring()?
            .parse_pointer(&blob.content)
            .with_context(|| format!("{spec}: stored pointer"))?,
    ))
}

/// The commit before `rev` that last changed `path`, if any.
fn previous_version(rev: &str, path: &str) -> Option<String> {
    let last = git::try_run(&["log", "--format=%H", "-n", "1", rev, "--", path])?;
    let last = last.trim();
    if last.is_empty() {
        return None;
    }
    let prev = git::try_run(&[
        "log",
        "--format=%H",
        "-n",
        "1",
        &format!("{last}^"),
        "--",
        path,
    ])?;
    let prev = prev.trim();
    (!prev.is_empty()).then(|| prev.to_string())
}

pub fn show(path: &str, rev: &str, json_out: bool) -> Result<()> {
    let spec = format!("{rev}:{path}");
    let pointer = pointer_at(&spec)?
        .with_context(|| format!("{path} is not a Dits-tracked file at {rev} (is it committed and matched by `git dits track`?)"))?;
    let dir = git::store_dir()?;
    let mut store = LocalStore::open(&dir)?;
    let info =
        inspect(&mut store, &pointer).with_context(|| format!("{path}: reading its recipe"))?;
    let previous = previous_version(rev, path).and_then(|c| {
        let p = pointer_at(&format!("{c}:{path}")).ok()??;
        let old = inspect(&mut store, &p).ok()?;
        Some((c, shared_bytes(&old.recipe, &info.recipe)))
    });
    if json_out {
        print_json(&describe_json(path, &info, previous.as_ref()));
    } else {
        print!("{}", describe_text(path, &info));
        match previous {
            Some((commit, (shared, total))) => println!(
                "dedup vs {}: {} of {} shared ({:.2}%), {} new",
                &commit[..12.min(commit.len())],
                human_size(shared),
                human_size(total),
                percent(shared, total),
                human_size(total - shared)
            ),
            None => println!("dedup: no previous version of {path}"),
        }
    }
    Ok(())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

pub fn describe_text(path: &str, info: &Inspection) -> String {
    let p = &info.pointer;
    let mut s = format!(
        "{path}\n  size      {} ({} bytes)\n  blake3    {}\n  media     {}\n",
        human_size(p.size),
        p.size,
        p.oid,
        p.media
    );
    if let Some(movie) = &info.movie {
        s.push_str(&format!("  duration  {:.2}s\n", movie.duration_secs));
        for t in &movie.tracks {
            let dims = if t.width > 0 {
                format!(" {}x{}", t.width, t.height)
            } else {
                String::new()
            };
            // MXF and Matroska list their samples in the media, not in the stored
            // structure `show` reads, so there is no count to print.
            let samples = if t.sample_count > 0 {
                format!(" {} samples {} keyframes", t.sample_count, t.keyframes())
            } else {
                String::new()
            };
            s.push_str(&format!(
                "  track {}   {} {}{} {:.2}s{samples}\n",
                t.track_id, t.handler, t.codec, dims, t.duration_secs,
            ));
        }
    }
    s.push_str(&format!(
        "  objects   {} chunks ({} start at keyframes), {}, boxes: {}\n  stored    {}\n",
        info.chunks,
        info.keyframe_chunks,
        split_description(info),
        if info.boxes.is_empty() {
            "none".into()
        } else {
            info.boxes.join(" ")
        },
        human_size(info.stored_bytes)
    ));
    s
}

fn split_description(info: &Inspection) -> String {
    match info.streams {
        0 => "split by bytes".to_string(),
        n => format!("split by track ({n} sample streams)"),
    }
}

fn describe_json(
    path: &str,
    info: &Inspection,
    previous: Option<&(String, (u64, u64))>,
) -> serde_json::Value {
    let p = &info.pointer;
    let tracks: Vec<_> = info
        .movie
        .iter()
        .flat_map(|m| &m.tracks)
        .map(|t| json!({"id": t.track_id, "handler": t.handler, "codec": t.codec, "width": t.width, "height": t.height,
                        "duration": t.duration_secs, "samples": t.sample_count, "keyframes": t.keyframes()}))
        .collect();
    json!({
        "path": path, "size": p.size, "oid": p.oid.to_hex(), "recipe": p.recipe.to_hex(), "media": p.media,
        "duration": info.movie.as_ref().map(|m| m.duration_secs), "tracks": tracks,
        "chunks": info.chunks, "keyframe_chunks": info.keyframe_chunks, "boxes": info.boxes, "stored_bytes": info.stored_bytes, "streams": info.streams,
        "previous": previous.map(|(c, (shared, total))| json!({"commit": c, "shared_bytes": shared, "total_bytes": total})),
    })
}

/// `diff.dits.textconv`: Git hands us a temp file with the file's content (smudged
/// media, or a pointer when the content is not local); print a description that diffs
/// line by line.
pub fn textconv(file: &Path) -> Result<()> {
    let mut f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let len = f.metadata()?.len();
    let mut store = git::store_dir()
        .ok()
        .and_then(|dir| LocalStore::open(&dir).ok());
    let mut head = Vec::new();
    (&mut f)
        .take(dits_core::pointer::MAX_POINTER_LEN as u64 + 1)
        .read_to_end(&mut head)?;
    let pointer = if Pointer::looks_like_pointer(&head) {
        let keyring = git_remote_dits::keys::load_keyring()?;
        Some(
            keyring
                .parse_pointer(&head)
                .with_context(|| format!("{}: stored pointer", file.display()))?,
        )
    } else {
        // Real content: the store remembers the pointer of every file it cleaned.
        let oid = dits_core::ChunkId::from(
            blake3::Hasher::new()
                .update_reader(std::fs::File::open(file)?)?
                .finalize(),
        );
        let cached = store
            .as_ref()
            .and_then(|s| s.cached_pointer(&oid, len).ok().flatten());
        cached.and_then(|text| Pointer::parse(text.as_bytes()).ok())
    };
    if let (Some(p), Some(s)) = (&pointer, store.as_mut()) {
        if let Ok(info) = inspect(s, p) {
            print!("{}", describe_text("", &info).trim_start_matches('\n'));
            return Ok(());
        }
    }
    if let Some(p) = pointer {
        print!("{}", p.encode());
        println!(
            "(recipe {} is not in the local store: structure unavailable)",
            p.recipe.short()
        );
        return Ok(());
    }
    let layout = dits_core::media::analyze(&mut f, len, Default::default());
    println!(
        "  size      {} ({len} bytes)\n  media     {}",
        human_size(len),
        layout.summary_line()
    );
    Ok(())
}
