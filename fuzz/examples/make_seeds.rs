//! Writes the seed corpora of every fuzz target from real media: each MP4/MOV in
//! `MEDIA_DIR` (made by ffmpeg, see `fuzz/seed.sh`) is cleaned into a temporary Dits
//! store by the real `dits_core::clean`, and the seeds are what that produced (the file,
//! its `moov` and `moof` payloads, its pointer, its recipe, stored envelopes as they sit
//! in the pack) plus the protocol conversations that would carry them (filter process,
//! wire frames, remote-helper commands).
//!
//! Usage: make_seeds MEDIA_DIR CORPUS_DIR

use std::collections::BTreeMap;
use std::path::Path;

use dits_core::media::boxes::top_level_boxes;
use dits_core::media::LayoutOptions;
use dits_core::{ChunkId, ChunkStore, LocalStore, Recipe};
use dits_filter::pktline::{write_data, write_flush, write_text};
use dits_wire::wire::*;

/// Seeds larger than this are skipped (the media targets run with -max_len 1 MiB).
const MAX_SEED: usize = 1 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, media_dir, corpus] = &args[..] else {
        return Err("usage: make_seeds MEDIA_DIR CORPUS_DIR".into());
    };
    let corpus = Path::new(corpus);
    let mut seeds = Seeds {
        root: corpus.to_path_buf(),
        count: BTreeMap::new(),
    };
    let mut names: Vec<_> = std::fs::read_dir(media_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let store_dir = tempfile::tempdir()?;
    let mut store = LocalStore::open(store_dir.path())?;
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path)?;
        media_seeds(&mut seeds, &name, &bytes)?;
        let outcome = dits_core::clean(
            &bytes[..],
            None,
            &mut store,
            LayoutOptions { split_tracks: true },
        )?;
        store.flush()?;
        let pointer = outcome.pointer.encode();
        seeds.write("pointer", &name, pointer.as_bytes())?;
        let recipe_bytes = store.get(&outcome.pointer.recipe)?;
        seeds.write("recipe", &name, &recipe_bytes)?;
        let recipe = Recipe::decode(&recipe_bytes)?;
        let mut objects = vec![outcome.pointer.recipe];
        objects.extend(recipe.unique_objects().map(|e| e.id).take(6));
        let mut body = vec![2u8];
        for (i, id) in objects.iter().enumerate() {
            let (plain_len, sealed) = store.get_sealed(id)?;
            if sealed.len() > 64 << 10 {
                continue;
            }
            let mut seed = id.0.to_vec();
            seed.extend_from_slice(&plain_len.to_be_bytes());
            seed.extend_from_slice(&sealed);
            seeds.write("envelope", &format!("{name}.{i}"), &seed)?;
            body.extend_from_slice(&seed[..36]);
            body.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
            body.extend_from_slice(&sealed);
        }
        seeds.write("wire_frames", &format!("objects-{name}"), &body)?;
        wire_seeds(&mut seeds, &name, &objects)?;
        filter_seeds(&mut seeds, &name, &bytes, pointer.as_bytes())?;
    }
    helper_seeds(&mut seeds)?;
    for (target, n) in &seeds.count {
        eprintln!("{target}: {n} seeds");
    }
    Ok(())
}

struct Seeds {
    root: std::path::PathBuf,
    count: BTreeMap<&'static str, usize>,
}

impl Seeds {
    fn write(&mut self, target: &'static str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.len() > MAX_SEED {
            return Ok(());
        }
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        *self.count.entry(target).or_default() += 1;
        Ok(())
    }
}

/// The file for the whole-file targets, its `moov` payload, and `moov` + `moof` pairs.
fn media_seeds(seeds: &mut Seeds, name: &str, file: &[u8]) -> std::io::Result<()> {
    seeds.write("box_walker", name, file)?;
    seeds.write("stream_builder", name, file)?;
    if name.ends_with(".mxf") {
        seeds.write("mxf", name, file)?;
    }
    if name.ends_with(".mkv") || name.ends_with(".webm") {
        seeds.write("matroska", name, file)?;
    }
    let Ok(boxes) = top_level_boxes(&mut std::io::Cursor::new(file), file.len() as u64) else {
        return Ok(());
    };
    let payload =
        |b: &dits_core::media::boxes::BoxSpan| &file[b.payload_offset() as usize..b.end() as usize];
    let Some(moov) = boxes.iter().find(|b| &b.fourcc == b"moov").map(payload) else {
        return Ok(());
    };
    seeds.write("sample_tables", &format!("{name}.moov"), moov)?;
    let moov_part = &moov[..moov.len().min(usize::from(u16::MAX))];
    for (i, moof) in boxes
        .iter()
        .filter(|b| &b.fourcc == b"moof")
        .map(payload)
        .take(3)
        .enumerate()
    {
        let mut seed = (moov_part.len() as u16).to_be_bytes().to_vec();
        seed.extend_from_slice(moov_part);
        seed.extend_from_slice(moof);
        seeds.write("fragments", &format!("{name}.{i}"), &seed)?;
    }
    Ok(())
}

fn frame(mode: u8, value: &impl serde::Serialize) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("wire types serialize");
    let mut out = vec![mode];
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out
}

/// One request of each op and one answer of each typed result, naming real objects.
fn wire_seeds(seeds: &mut Seeds, name: &str, objects: &[ChunkId]) -> std::io::Result<()> {
    let ids = ids_to_hex(objects);
    let oid = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad".to_string();
    let lock = Lock {
        id: "7".into(),
        path: format!("media/{name}"),
        locked_at: "2026-12-01T18:00:00Z".into(),
        owner: LockOwner {
            name: "alice".into(),
        },
        branch: Some("refs/heads/main".into()),
    };
    let ops = [
        Op::Refs,
        Op::Missing { ids: ids.clone() },
        Op::Put,
        Op::Get { ids: ids.clone() },
        Op::PutGitPack,
        Op::GitPacks {
            have: vec![ids[0].clone()],
        },
        Op::GetGitPack { id: ids[0].clone() },
        Op::UpdateRefs {
            updates: vec![RefUpdate {
                name: "refs/heads/main".into(),
                old: ZERO_OID.into(),
                new: oid.clone(),
            }],
            packs: vec![ids[0].clone()],
            recipes: vec![ids[0].clone()],
            atomic: true,
        },
        Op::LockCreate {
            path: lock.path.clone(),
            branch: Some("main".into()),
        },
        Op::LockList {
            path: Some(lock.path.clone()),
            id: None,
            owner: Some("alice".into()),
            cursor: Some("3".into()),
            limit: Some(100),
        },
        Op::LockVerify {
            paths: Some(vec![lock.path.clone()]),
            cursor: None,
            limit: Some(10),
        },
        Op::LockUnlock {
            id: "7".into(),
            force: true,
        },
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let request = Request {
            token: "dits_0123456789abcdef".into(),
            repo: "studio/film".into(),
            op,
        };
        seeds.write(
            "wire_frames",
            &format!("request-{name}.{i}"),
            &frame(0, &request),
        )?;
    }
    let refs = RefsResult {
        refs: [
            ("refs/heads/main".to_string(), oid.clone()),
            ("refs/tags/v1".to_string(), oid.clone()),
        ]
        .into(),
    };
    let answers = [
        Response::ok_with(&refs),
        Response::ok_with(&MissingResult {
            missing: ids.clone(),
        }),
        Response::ok_with(&PutResult {
            stored: 3,
            received: 4,
            bytes: 5000,
        }),
        Response::ok_with(&GetResult { count: 2 }),
        Response::ok_with(&PutGitPackResult {
            id: ids[0].clone(),
            size: 4096,
        }),
        Response::ok_with(&GitPacksResult { packs: ids.clone() }),
        Response::ok_with(&GetGitPackResult { size: 4096 }),
        Response::ok_with(&UpdateRefsResult {
            results: vec![RefResult {
                name: "refs/heads/main".into(),
                ok: false,
                error: Some("fetch first".into()),
            }],
        }),
        Response::ok_with(&LockResult { lock: lock.clone() }),
        Response::ok_with(&LockListResult {
            locks: vec![lock.clone()],
            next_cursor: Some("8".into()),
        }),
        Response::ok_with(&LockVerifyResult {
            ours: vec![lock.clone()],
            theirs: vec![],
            next_cursor: None,
        }),
        Response::ok_with(&UnlockResult {
            lock,
            forced_by: Some("bob".into()),
        }),
        Ok(Response::error(
            ErrorCode::NotFound,
            "no repository studio/film",
        )),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.map_err(std::io::Error::other)?;
        seeds.write(
            "wire_frames",
            &format!("answer-{name}.{i}"),
            &frame(1, &answer),
        )?;
    }
    Ok(())
}

/// A filter-process conversation as Git holds it (gitattributes(5)): the handshake, a
/// clean of the file's first bytes, a smudge of its pointer that may be delayed, the
/// delayed list, and the second ask for the delayed path.
fn filter_seeds(seeds: &mut Seeds, name: &str, file: &[u8], pointer: &[u8]) -> std::io::Result<()> {
    let mut w = Vec::new();
    write_text(&mut w, "git-filter-client")?;
    write_text(&mut w, "version=2")?;
    write_flush(&mut w)?;
    for cap in ["clean", "smudge", "delay"] {
        write_text(&mut w, &format!("capability={cap}"))?;
    }
    write_flush(&mut w)?;
    let handshake = w.clone();
    write_text(&mut w, "command=clean")?;
    write_text(&mut w, &format!("pathname=media/{name}"))?;
    write_flush(&mut w)?;
    for piece in file[..file.len().min(20_000)].chunks(8192) {
        write_data(&mut w, piece)?;
    }
    write_flush(&mut w)?;
    for can_delay in ["1", "0"] {
        write_text(&mut w, "command=smudge")?;
        write_text(&mut w, &format!("pathname=media/{name}"))?;
        write_text(&mut w, &format!("can-delay={can_delay}"))?;
        write_flush(&mut w)?;
        write_data(&mut w, pointer)?;
        write_flush(&mut w)?;
    }
    write_text(&mut w, "command=list_available_blobs")?;
    write_flush(&mut w)?;
    write_text(&mut w, "command=smudge")?;
    write_text(&mut w, &format!("pathname=media/{name}"))?;
    write_flush(&mut w)?;
    write_flush(&mut w)?;
    seeds.write("pkt_line", &format!("session-{name}"), &w)?;
    let mut short = handshake;
    write_text(&mut short, "command=smudge")?;
    write_text(&mut short, "pathname=a.mp4")?;
    write_flush(&mut short)?;
    write_data(&mut short, pointer)?;
    write_flush(&mut short)?;
    seeds.write("pkt_line", &format!("smudge-{name}"), &short)
}

/// Remote-helper conversations as Git holds them (gitremote-helpers(7)): a clone, a
/// fetch, a push, an atomic push with a delete and a force.
fn helper_seeds(seeds: &mut Seeds) -> std::io::Result<()> {
    let a = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad";
    let b = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
    let sessions = [
        ("clone", format!("capabilities\noption progress true\noption verbosity 1\nlist\nfetch {a} refs/heads/main\nfetch {b} refs/tags/v1\n\n\n")),
        ("fetch", format!("capabilities\noption verbosity 2\noption followtags true\nlist\nfetch {a} refs/heads/main\n\n\n")),
        ("push", "capabilities\noption progress false\nlist for-push\npush refs/heads/main:refs/heads/main\n\n\n".to_string()),
        ("push-atomic", "capabilities\r\noption atomic true\noption progress true\nlist for-push\npush +refs/heads/topic:refs/heads/topic\npush :refs/heads/old\npush HEAD:refs/heads/main\n\n\n".to_string()),
    ];
    for (name, text) in sessions {
        seeds.write("helper_commands", name, text.as_bytes())?;
    }
    Ok(())
}
