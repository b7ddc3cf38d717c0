//! What a hostile hub or repository can make a client do, with real processes: a member
//! pushes crafted objects to a real `dits-hub serve` through the client library (exactly
//! what the wire allows anyone with write access to send), commits pointers naming them
//! with the real `git`, and another user clones. Also a hostile media file meeting
//! `git add`, and a CA-signed hub whose certificate is reissued. The client's peak memory
//! is read from `/usr/bin/time` wrapped around the filter process Git starts.

use std::path::{Path, PathBuf};
use std::process::Output;

use dits_core::envelope::{seal, CompressionHint};
use dits_core::recipe::{Entry, EntryKind, Recipe};
use dits_core::{ChunkId, ChunkStore, LocalStore, Pointer};
use dits_tests::{media, same_bytes, HubProcess, TestEnv};

/// The largest object the wire carries.
const OBJECT: usize = 64 << 20;

/// Peak RSS (MiB) the filter process may reach in these tests: the client's constants
/// (128 MiB of plaintext being verified, 64 MiB queued, 64 MiB kept by smudge, one object
/// being read) plus slack. Without them, the clone of 24 compressible 64 MiB objects held
/// all of them at once (≥ 1.5 GiB, in the download and again in smudge) and the hostile
/// sample tables asked for 50 × 12 M samples (> 9 GB). Measured: 75 MiB and 11 MiB;
/// with the download of before (and smudge already bounded) the clone peaked at 1,548 MiB.
const FILTER_RSS_LIMIT_MIB: u64 = 400;

/// Peak RSS (MiB) for refusing the recipe bomb: its 64 MiB recipe is read, but only its
/// header is decoded (decoding its million entries would add another ~70 MiB). Measured:
/// 77 MiB.
const BOMB_RSS_LIMIT_MIB: u64 = 128;

/// A 64 MiB object of zeros but for its first eight bytes: a few KiB once compressed.
fn compressible(tag: u64) -> Vec<u8> {
    let mut object = vec![0u8; OBJECT];
    object[..8].copy_from_slice(&tag.to_be_bytes());
    object
}

/// Uploads the objects `make` returns (as alice, on alice/film) the way any client with
/// write access can: one `put` stream, each object sealed as the client would seal it.
fn plant(hub: &HubProcess, token: &str, count: usize, make: impl Fn(usize) -> Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = crate::hub_client(hub, "alice/film", token).await;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let send = async move {
            for i in 0..count {
                let plain = make(i);
                let sealed = seal(&plain, CompressionHint::Try);
                let id = ChunkId::of(&plain);
                tx.send((id, plain.len() as u32, sealed)).await.unwrap();
            }
        };
        let (put, ()) = tokio::join!(client.put_object_stream(rx), send);
        put.unwrap();
        client.close().await;
    });
}

/// Commits `pointer` as `name` in a fresh repository and pushes it to alice/film: the
/// clean filter keeps a valid pointer as it is, and the hub accepts it because every
/// object its recipe names is there.
fn push_pointer(env: &TestEnv, hub: &HubProcess, name: &str, pointer: &Pointer) -> PathBuf {
    let repo = env.repo("pusher");
    std::fs::write(repo.join(name), pointer.encode()).unwrap();
    env.git(&repo, &["add", name]);
    env.git(&repo, &["commit", "-q", "-m", &format!("add {name}")]);
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "-u", "origin", "main"]);
    repo
}

/// Runs `git ARGS` with Git's filter process under `/usr/bin/time`; returns the outcome
/// and the filter's peak RSS in MiB (the largest over every filter process Git started).
fn git_measuring_filter(env: &TestEnv, cwd: &Path, args: &[&str]) -> (Output, u64) {
    let record = env
        .dir
        .path()
        .join(format!("filter-rss-{}", std::process::id()));
    let _ = std::fs::remove_file(&record);
    let process = format!(
        "filter.dits.process=/usr/bin/time -a -f %M -o {} git-dits filter-process",
        record.display()
    );
    let mut full = vec!["-c", process.as_str()];
    full.extend_from_slice(args);
    let out = env.git_output(cwd, &full);
    let peak_kib = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .expect("the filter process ran under /usr/bin/time");
    (out, peak_kib / 1024)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A recipe a million entries long, each standing for all of one compressible 64 MiB
/// object (planted on alice/film with it): 64 TiB of file. Returns the object's id, the
/// recipe's id and the size it describes.
fn plant_recipe_bomb(hub: &HubProcess, token: &str) -> (ChunkId, ChunkId, u64) {
    let object = compressible(1);
    let object_id = ChunkId::of(&object);
    drop(object);
    // As many entries as fit in one 64 MiB recipe object.
    let count = (OBJECT - 1024) / dits_core::recipe::ENTRY_LEN;
    let entries: Vec<Entry> = (0..count as u64)
        .map(|i| {
            Entry::whole(
                object_id,
                i * OBJECT as u64,
                OBJECT as u32,
                4096,
                EntryKind::Chunk,
            )
        })
        .collect();
    let file_size = count as u64 * OBJECT as u64;
    let bomb = Recipe {
        file_size,
        entries,
        dependencies: Vec::new(),
    }
    .encode();
    let recipe_id = ChunkId::of(&bomb);
    plant(hub, token, 2, |i| match i {
        0 => compressible(1),
        _ => bomb.clone(),
    });
    (object_id, recipe_id, file_size)
}

/// A pointer saying its file is 1,000 bytes, whose recipe says 64 TiB: a million entries
/// that each stand for all of one compressible 64 MiB object. Expanding it would write
/// 64 TiB before the whole-file hash could fail. The clone refuses it from the recipe's
/// header, naming the file and the recipe, and never fetches the object.
#[test]
fn a_recipe_bomb_fails_the_clone_clearly_without_fetching_what_it_names() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let (object_id, recipe_id, file_size) = plant_recipe_bomb(&hub, &token);
    let pointer = Pointer {
        media: "binary".into(),
        oid: ChunkId::of(b"anything"),
        recipe: recipe_id,
        size: 1000,
    };
    push_pointer(&env, &hub, "bomb.bin", &pointer);

    let (out, rss_mib) = git_measuring_filter(
        &env,
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "b"],
    );
    let text = stderr(&out);
    eprintln!("recipe bomb clone: filter peak RSS {rss_mib} MiB");
    assert!(!out.status.success(), "the clone took the bomb: {text}");
    assert!(
        text.contains("bomb.bin")
            && text.contains(&recipe_id.to_string())
            && text.contains(&format!(
                "describes a file of {file_size} bytes but the pointer says 1000"
            )),
        "no clear error: {text}"
    );
    let store = LocalStore::open(&env.dir.path().join("b/.git/dits")).unwrap();
    assert!(
        !store.contains(&object_id).unwrap(),
        "the object the bomb names was fetched"
    );
    assert!(
        rss_mib < BOMB_RSS_LIMIT_MIB,
        "filter peak RSS {rss_mib} MiB"
    );
}

/// The same 64 TiB recipe behind a pointer that agrees with it: consistent, so only the
/// whole-file hash at the very end could fail it, after 64 TiB had been written. The
/// clone refuses it at once, naming the file, its size and the free space, and fetches
/// neither the recipe nor the object.
#[test]
fn a_pointer_bigger_than_the_disk_fails_the_clone_before_anything_is_fetched() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let (object_id, recipe_id, file_size) = plant_recipe_bomb(&hub, &token);
    let pointer = Pointer {
        media: "binary".into(),
        oid: ChunkId::of(b"anything"),
        recipe: recipe_id,
        size: file_size,
    };
    push_pointer(&env, &hub, "huge.bin", &pointer);

    let out = env.clone_with(&hub.url("alice/film"), "b", &[]);
    let text = stderr(&out);
    assert!(!out.status.success(), "the clone took the file: {text}");
    assert!(
        text.contains("huge.bin")
            && text.contains(&format!("the file is {file_size} bytes"))
            && text.contains("bytes free; nothing was fetched"),
        "no clear error: {text}"
    );
    let store = LocalStore::open(&env.dir.path().join("b/.git/dits")).unwrap();
    for (what, id) in [("recipe", recipe_id), ("object", object_id)] {
        assert!(!store.contains(&id).unwrap(), "the {what} was fetched");
    }
}

/// Plants 24 distinct compressible 64 MiB objects and pushes `dense.bin`, a 24-byte file
/// made of one byte of each (each in its own stream); returns the file's content.
pub(crate) fn push_dense_file(env: &TestEnv, hub: &HubProcess, token: &str) -> Vec<u8> {
    const OBJECTS: usize = 24;
    let ids: Vec<ChunkId> = (0..OBJECTS)
        .map(|i| ChunkId::of(&compressible(100 + i as u64)))
        .collect();
    let entries: Vec<Entry> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Entry {
            chunk_offset: 4096,
            chunk_len: OBJECT as u32,
            stream: 2 + i as u16,
            ..Entry::whole(*id, i as u64, 1, 4096, EntryKind::Chunk)
        })
        .collect();
    let recipe = Recipe {
        file_size: OBJECTS as u64,
        entries,
        dependencies: Vec::new(),
    }
    .encode();
    let recipe_id = ChunkId::of(&recipe);
    plant(hub, token, OBJECTS + 1, |i| {
        if i < OBJECTS {
            compressible(100 + i as u64)
        } else {
            recipe.clone()
        }
    });
    let content = vec![0u8; OBJECTS];
    let pointer = Pointer {
        media: "binary".into(),
        oid: ChunkId::of(&content),
        recipe: recipe_id,
        size: OBJECTS as u64,
    };
    push_pointer(env, hub, "dense.bin", &pointer);
    content
}

/// 24 distinct 64 MiB objects that compress to almost nothing (so the hub sends 1.5 GiB of
/// plaintext in a few hundred KiB), one byte of each used, each in its own stream: the
/// file is 24 bytes. Downloading and smudging it must hold a bounded amount whatever the
/// objects expand to: the clone checks the file out and the filter's peak RSS stays under
/// the limit (before the bounds it held all 24 at once, twice).
#[test]
fn compressible_64_mib_objects_clone_in_bounded_memory() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let content = push_dense_file(&env, &hub, &token);

    let (out, rss_mib) = git_measuring_filter(
        &env,
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "b"],
    );
    eprintln!("24 × 64 MiB compressible objects clone: filter peak RSS {rss_mib} MiB");
    assert!(out.status.success(), "clone: {}", stderr(&out));
    assert_eq!(
        std::fs::read(env.dir.path().join("b/dense.bin")).unwrap(),
        content
    );
    assert!(
        rss_mib < FILTER_RSS_LIMIT_MIB,
        "filter peak RSS {rss_mib} MiB"
    );
}

/// Appends `boxes` to the `moov` of an MP4 whose `moov` is its last box, fixing its size.
fn with_more_in_moov(mp4: &[u8], boxes: &[u8]) -> Vec<u8> {
    let mut at = 0usize;
    loop {
        let size = u32::from_be_bytes(mp4[at..at + 4].try_into().unwrap()) as usize;
        if &mp4[at + 4..at + 8] == b"moov" {
            assert_eq!(at + size, mp4.len(), "moov must be the last box");
            let mut out = mp4.to_vec();
            out.extend_from_slice(boxes);
            out[at..at + 4].copy_from_slice(&((size + boxes.len()) as u32).to_be_bytes());
            return out;
        }
        at += size;
    }
}

fn boxed(name: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = (8 + body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(name);
    out.extend_from_slice(body);
    out
}

/// A video `trak` of 12 M one-byte samples in one chunk at offset 0: 150 bytes whose
/// sample table, listed, is 192 MB.
fn hostile_trak(track_id: u32) -> Vec<u8> {
    let mut tkhd = vec![0u8; 12];
    tkhd.extend_from_slice(&track_id.to_be_bytes());
    tkhd.extend_from_slice(&[0u8; 68]);
    let mut hdlr = vec![0u8; 8];
    hdlr.extend_from_slice(b"vide");
    hdlr.extend_from_slice(&[0u8; 13]);
    let samples: u32 = 12_000_000;
    let mut stsz = vec![0u8; 4];
    stsz.extend_from_slice(&1u32.to_be_bytes());
    stsz.extend_from_slice(&samples.to_be_bytes());
    let mut stsc = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    stsc.extend_from_slice(&samples.to_be_bytes());
    stsc.extend_from_slice(&1u32.to_be_bytes());
    let stco = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    let stbl = [
        boxed(b"stsz", &stsz),
        boxed(b"stsc", &stsc),
        boxed(b"stco", &stco),
    ]
    .concat();
    let minf = boxed(b"minf", &boxed(b"stbl", &stbl));
    let mdia = [boxed(b"hdlr", &hdlr), minf].concat();
    boxed(
        b"trak",
        &[boxed(b"tkhd", &tkhd), boxed(b"mdia", &mdia)].concat(),
    )
}

/// An ffmpeg MP4 with 50 extra tracks that each claim 12 M samples (a few hundred bytes
/// of tables): listing them all is 600 M samples, > 9 GB. `git add` takes the file in
/// bounded memory (its samples are refused from the bytes and the per-file allowance,
/// and it is chunked by bytes), and it checks out byte for byte.
#[test]
fn hostile_sample_tables_are_added_in_bounded_memory() {
    let env = TestEnv::new();
    let repo = env.repo("a");
    let base = std::fs::read(media().path("base.mp4")).unwrap();
    let traks: Vec<u8> = (0..50).flat_map(|i| hostile_trak(100 + i)).collect();
    let hostile = with_more_in_moov(&base, &traks);
    std::fs::write(repo.join("tracks.mp4"), &hostile).unwrap();

    let (out, rss_mib) = git_measuring_filter(&env, &repo, &["add", "tracks.mp4"]);
    eprintln!("50 hostile tracks: git add filter peak RSS {rss_mib} MiB");
    assert!(out.status.success(), "add: {}", stderr(&out));
    assert!(
        stderr(&out).contains("tracks.mp4: its samples claim more bytes than the file's"),
        "no warning naming the file: {}",
        stderr(&out)
    );
    assert!(
        rss_mib < FILTER_RSS_LIMIT_MIB,
        "filter peak RSS {rss_mib} MiB"
    );
    env.git(&repo, &["commit", "-q", "-m", "hostile tracks"]);
    std::fs::remove_file(repo.join("tracks.mp4")).unwrap();
    env.git(&repo, &["checkout", "--", "tracks.mp4"]);
    assert_eq!(std::fs::read(repo.join("tracks.mp4")).unwrap(), hostile);
}

/// A hub whose CA-signed certificate is reissued (new key, same CA) keeps working for a
/// client that trusts the CA: the first contact pins nothing, so the push after the
/// reissue is checked against the CA again and succeeds.
#[test]
fn a_ca_signed_hub_whose_certificate_is_reissued_still_takes_pushes() {
    let env = TestEnv::new();
    let dir = env.dir.path();
    let ca = dits_tests::test_ca(dir);
    env.git(
        dir,
        &[
            "config",
            "--global",
            "dits.caInfo",
            dir.join("ca.pem").to_str().unwrap(),
        ],
    );

    let first = dits_tests::ca_signed(dir, &ca, "first");
    let args: Vec<&str> = first.iter().map(String::as_str).collect();
    let hub = HubProcess::start_with(&dir.join("hub-data"), 0, &args);
    let token = hub.admin(&["user", "add", "alice"]);
    hub.admin(&["repo", "create", "alice/film"]);
    env.set_token(&hub, "alice", &token);
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    let out = env.git_output(&repo, &["push", "origin", "main"]);
    assert!(out.status.success(), "first push: {}", stderr(&out));
    let pin = format!("dits.{}.fingerprint", hub.base());
    // Any scope: the helper pins in the repository's own config.
    let pinned = env.git_output(&repo, &["config", "--get", &pin]);
    assert!(
        !pinned.status.success(),
        "a CA-verified hub was pinned: {}",
        String::from_utf8_lossy(&pinned.stdout)
    );

    let (port, old_fingerprint) = (hub.port, hub.fingerprint.clone());
    hub.kill();
    let second = dits_tests::ca_signed(dir, &ca, "second");
    let args: Vec<&str> = second.iter().map(String::as_str).collect();
    let hub = HubProcess::start_with(&dir.join("hub-data"), port, &args);
    assert_ne!(
        hub.fingerprint, old_fingerprint,
        "the certificate was reissued"
    );
    env.commit_file(&repo, &media().path("trim.mp4"), "clip.mp4");
    let out = env.git_output(&repo, &["push", "origin", "main"]);
    assert!(out.status.success(), "push after reissue: {}", stderr(&out));
    env.git(dir, &["clone", "-q", &hub.url("alice/film"), "b"]);
    assert!(same_bytes(
        &dir.join("b/clip.mp4"),
        &media().path("trim.mp4")
    ));
}
