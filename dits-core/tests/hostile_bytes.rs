//! Every dits-core parser of outside bytes fed arbitrary bytes and mutated real ones: the
//! MP4/MOV layout (box walker, sample tables, fragments, stream builder, through
//! `media::analyze`), the pointer, the recipe and its in-place view, and the object
//! envelope. The real inputs are ffmpeg's clips and what `clean` made of them. Each
//! property asserts no panic and that what a parser accepts is consistent with the bytes.
//! The short form of the cargo-fuzz targets in `fuzz/` (issue 15), a few seconds each.

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use dits_core::envelope::{self, EnvelopeError};
use dits_core::media::boxes::{children, top_level_boxes};
use dits_core::media::{analyze, LayoutOptions, Region};
use dits_core::recipe::RecipeView;
use dits_core::{ChunkId, ChunkStore, LocalStore, Pointer, Recipe};
use proptest::prelude::*;

/// Real inputs: ffmpeg's clips and, for each, what `clean` stored.
struct Fixtures {
    media: Vec<Vec<u8>>,
    pointers: Vec<Vec<u8>>,
    recipes: Vec<Vec<u8>>,
    /// (id, plain length, envelope as stored).
    envelopes: Vec<(ChunkId, u32, Vec<u8>)>,
}

/// A second of 96x64 video and 8 kHz audio, encoded with `args` into `out`.
fn ffmpeg(out: &Path, args: &[&str]) {
    let mut all = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=12",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=8000",
        "-pix_fmt",
        "yuv420p",
    ];
    all.extend_from_slice(args);
    run_ffmpeg(out, &all);
}

/// `ffmpeg args -t 1 -shortest out`.
fn run_ffmpeg(out: &Path, args: &[&str]) {
    let done = std::process::Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .args(["-t", "1", "-shortest"])
        .arg(out)
        .output()
        .expect("ffmpeg must be installed (scripts/test-deps.sh)");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "4"];
        let clips: [(&str, Vec<&str>); 3] = [
            ("plain.mp4", [&h264[..], &["-c:a", "aac"]].concat()),
            (
                "fragmented.mp4",
                [
                    &h264[..],
                    &["-c:a", "aac", "-movflags", "frag_keyframe+empty_moov"],
                ]
                .concat(),
            ),
            ("pcm.mov", [&h264[..], &["-c:a", "pcm_s16le"]].concat()),
        ];
        let mut store = LocalStore::open(&dir.path().join("store")).unwrap();
        let mut f = Fixtures {
            media: Vec::new(),
            pointers: Vec::new(),
            recipes: Vec::new(),
            envelopes: Vec::new(),
        };
        for (name, args) in clips {
            let path = dir.path().join(name);
            ffmpeg(&path, &args);
            let bytes = std::fs::read(&path).unwrap();
            let outcome =
                dits_core::clean(&bytes[..], None, &mut store, LayoutOptions::default()).unwrap();
            assert!(outcome.fallback_reason.is_none(), "{name} was not parsed");
            let recipe = store.get(&outcome.pointer.recipe).unwrap();
            let ids = Recipe::decode(&recipe)
                .unwrap()
                .unique_objects()
                .map(|e| e.id)
                .take(4)
                .collect::<Vec<_>>();
            for id in [outcome.pointer.recipe].into_iter().chain(ids) {
                let (plain_len, sealed) = store.get_sealed(&id).unwrap();
                f.envelopes.push((id, plain_len, sealed));
            }
            f.pointers.push(outcome.pointer.encode().into_bytes());
            f.recipes.push(recipe);
            f.media.push(bytes);
        }
        f
    })
}

/// One edit of a real input: where (a fraction of its length, or of its structure boxes'
/// bytes for media), what, and a value.
#[derive(Debug, Clone)]
struct Edit {
    at: u32,
    kind: u8,
    value: u32,
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(
        (any::<u32>(), 0u8..5, any::<u32>()).prop_map(|(at, kind, value)| Edit { at, kind, value }),
        1..6,
    )
}

/// Values that make size and count fields lie.
const LIES: [u32; 9] = [
    0,
    1,
    7,
    8,
    16,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fff8,
    u32::MAX,
];

/// Applies `edits` to `base`; `targets` are the byte ranges edits prefer (the boxes that
/// describe a file rather than its media payload), half of the time.
fn mutate(base: &[u8], edits: &[Edit], targets: &[(usize, usize)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for e in edits {
        if out.is_empty() {
            break;
        }
        let target_len: usize = targets.iter().map(|(s, e)| e - s).sum();
        let at = if e.at % 2 == 0 && target_len > 0 {
            let mut i = (e.at / 2) as usize % target_len;
            let mut at = 0;
            for (s, t) in targets {
                if i < t - s {
                    at = s + i;
                    break;
                }
                i -= t - s;
            }
            at.min(out.len() - 1)
        } else {
            e.at as usize % out.len()
        };
        let put = |out: &mut Vec<u8>, v: u32| {
            for (i, b) in v.to_be_bytes().into_iter().enumerate() {
                if let Some(slot) = out.get_mut(at + i) {
                    *slot = b;
                }
            }
        };
        match e.kind {
            0 => out[at] ^= (e.value as u8) | 1,
            1 => put(&mut out, e.value),
            2 => put(&mut out, LIES[e.value as usize % LIES.len()]),
            3 => {
                let end = (at + (e.value as usize % 64)).min(out.len());
                out.drain(at..end);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// The byte ranges of a file's boxes other than `mdat`.
fn structure(file: &[u8]) -> Vec<(usize, usize)> {
    top_level_boxes(&mut Cursor::new(file), file.len() as u64)
        .map(|boxes| {
            boxes
                .iter()
                .filter(|b| &b.fourcc != b"mdat")
                .map(|b| (b.offset as usize, b.end() as usize))
                .collect()
        })
        .unwrap_or_default()
}

/// `analyze`'s promises for any bytes: regions tile the file; the streams' runs tile the
/// `mdat` payloads they replace; each stream's runs add up to its length.
fn check_layout(file: &[u8]) -> Result<(), TestCaseError> {
    let len = file.len() as u64;
    let layout = analyze(&mut Cursor::new(file), len, LayoutOptions::default());
    prop_assert!(layout
        .summary_line()
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b)));
    let mut at = 0;
    let mut streamed = Vec::new();
    for region in &layout.regions {
        let (offset, region_len) = match region {
            Region::Object { offset, len, .. } => (*offset, *len),
            Region::Payload { offset, len, cuts } => {
                prop_assert!(cuts.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(cuts.iter().all(|c| (*offset..offset + len).contains(c)));
                (*offset, *len)
            }
            Region::Streamed { offset, len } => {
                streamed.push((*offset, *len));
                (*offset, *len)
            }
        };
        prop_assert_eq!(offset, at, "regions leave a gap or overlap");
        at = offset + region_len;
    }
    prop_assert_eq!(at, len, "regions stop short of the end of the file");
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for stream in &layout.streams {
        let mut stream_at = 0;
        for run in &stream.runs {
            prop_assert_eq!(run.stream_offset, stream_at);
            stream_at += run.len;
            runs.push((run.file_offset, run.len));
        }
        prop_assert_eq!(stream_at, stream.len);
    }
    runs.sort_unstable();
    let mut runs = runs.into_iter();
    for (start, payload_len) in streamed {
        let mut pos = start;
        while pos < start + payload_len {
            let (offset, run_len) = runs.next().expect("an mdat byte no run covers");
            prop_assert_eq!(offset, pos, "runs leave a gap or overlap in an mdat");
            pos += run_len;
        }
        prop_assert_eq!(
            pos,
            start + payload_len,
            "a run crosses the end of its mdat"
        );
    }
    prop_assert!(runs.next().is_none(), "a run outside every mdat");
    Ok(())
}

/// The box walker's promise: what it accepts tiles the bytes, at every depth.
fn check_boxes(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(boxes) = top_level_boxes(&mut Cursor::new(bytes), bytes.len() as u64) {
        let mut at = 0;
        for b in &boxes {
            prop_assert_eq!(b.offset, at);
            at = b.end();
            let mut stack = vec![(
                b.payload_offset(),
                &bytes[b.payload_offset() as usize..at as usize],
            )];
            while let Some((base, payload)) = stack.pop() {
                let Ok(kids) = children(payload, base) else {
                    continue;
                };
                let mut child_at = base;
                for (span, inner) in kids {
                    prop_assert_eq!(span.offset, child_at);
                    child_at = span.end();
                    stack.push((span.payload_offset(), inner));
                }
            }
        }
        prop_assert_eq!(at, bytes.len() as u64);
    }
    Ok(())
}

fn message_is_a_sentence(e: &dyn std::fmt::Display) -> Result<(), TestCaseError> {
    let m = e.to_string();
    prop_assert!(!m.is_empty() && m.len() <= 1024, "error message {m:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_media_is_laid_out_without_panicking(which in 0usize..3, edits in edits()) {
        let base = &fixtures().media[which];
        let file = mutate(base, &edits, &structure(base));
        check_boxes(&file)?;
        check_layout(&file)?;
    }

    #[test]
    fn arbitrary_bytes_are_laid_out_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        boxed in any::<bool>(),
    ) {
        // Half the time behind a valid ftyp, so the walk goes past the first box.
        let mut file = if boxed { b"\0\0\0\x10ftypisom\0\0\0\0".to_vec() } else { Vec::new() };
        file.extend(bytes);
        check_boxes(&file)?;
        check_layout(&file)?;
    }

    #[test]
    fn mutated_real_pointers_parse_or_say_why(which in 0usize..3, edits in edits()) {
        let bytes = mutate(&fixtures().pointers[which], &edits, &[]);
        match Pointer::parse(&bytes) {
            Ok(p) => prop_assert_eq!(Pointer::parse(p.encode().as_bytes()), Ok(p)),
            Err(e) => message_is_a_sentence(&e)?,
        }
    }

    #[test]
    fn mutated_real_recipes_decode_or_say_why(
        which in 0usize..3,
        edits in edits(),
        start in any::<u64>(),
        span in any::<u64>(),
    ) {
        let bytes = mutate(&fixtures().recipes[which], &edits, &[(0, 24)]);
        let decoded = Recipe::decode(&bytes);
        match &decoded {
            // Reserved bits are ignored, so only the meaning must survive a round trip.
            Ok(r) => prop_assert_eq!(&Recipe::decode(&r.encode()).unwrap(), r),
            Err(e) => message_is_a_sentence(e)?,
        }
        if let Ok(view) = RecipeView::new(&bytes) {
            let start = start % view.file_size.saturating_add(10).max(1);
            let end = start.saturating_add(span % (1 << 20));
            match view.entries_in(start, end) {
                Ok(found) => {
                    prop_assert!(found.len() <= view.len());
                    if let Ok(r) = &decoded {
                        let expected: Vec<_> = r
                            .entries
                            .iter()
                            .filter(|e| e.end() > start && e.offset < end)
                            .copied()
                            .collect();
                        prop_assert_eq!(found, expected);
                    }
                }
                Err(e) => message_is_a_sentence(&e)?,
            }
        }
    }

    #[test]
    fn mutated_real_envelopes_open_only_as_what_they_hold(which in 0usize..15, edits in edits()) {
        let all = &fixtures().envelopes;
        let (id, plain_len, sealed) = &all[which % all.len()];
        let bytes = mutate(sealed, &edits, &[(0, 4)]);
        let plain_len = u64::from(*plain_len);
        let opened = envelope::open(id, &bytes, plain_len);
        prop_assert_eq!(opened.is_ok(), envelope::verify(id, &bytes, plain_len).is_ok());
        match opened {
            Ok(plain) => prop_assert_eq!(ChunkId::of(&plain), *id),
            Err(EnvelopeError::HashMismatch { actual, .. }) => {
                let plain = envelope::open(&actual, &bytes, plain_len);
                prop_assert!(plain.is_ok(), "the id a mismatch names does not open the bytes");
            }
            Err(e) => message_is_a_sentence(&e)?,
        }
    }
}

/// Real MXF (OP1a with MPEG-2 + PCM, OP-Atom PCM), Matroska (H.264 + AAC) and WebM (VP9 +
/// Opus) files from ffmpeg, each parsed by its structure-aware layout.
fn container_fixtures() -> &'static Vec<Vec<u8>> {
    static FIXTURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let video = ["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25"];
        let audio = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"];
        let clips: [(&str, Vec<&str>); 4] = [
            (
                "op1a.mxf",
                [
                    &video[..],
                    &audio,
                    &[
                        "-c:v",
                        "mpeg2video",
                        "-g",
                        "6",
                        "-c:a",
                        "pcm_s16le",
                        "-f",
                        "mxf",
                    ],
                ]
                .concat(),
            ),
            (
                "opatom.mxf",
                [&audio[..], &["-c:a", "pcm_s16le", "-f", "mxf_opatom"]].concat(),
            ),
            (
                "clip.mkv",
                [
                    &video[..],
                    &audio,
                    &[
                        "-c:v",
                        "libx264",
                        "-preset",
                        "ultrafast",
                        "-g",
                        "6",
                        "-c:a",
                        "aac",
                    ],
                ]
                .concat(),
            ),
            (
                "clip.webm",
                [
                    &video[..],
                    &audio,
                    &[
                        "-c:v",
                        "libvpx-vp9",
                        "-deadline",
                        "realtime",
                        "-cpu-used",
                        "8",
                        "-g",
                        "6",
                        "-c:a",
                        "libopus",
                    ],
                ]
                .concat(),
            ),
        ];
        clips
            .into_iter()
            .map(|(name, args)| {
                let path = dir.path().join(name);
                run_ffmpeg(&path, &args);
                let bytes = std::fs::read(&path).unwrap();
                let layout = analyze(
                    &mut Cursor::new(&bytes[..]),
                    bytes.len() as u64,
                    LayoutOptions::default(),
                );
                assert!(layout.fallback_reason.is_none(), "{name} was not parsed");
                assert!(!layout.streams.is_empty(), "{name} was not split by track");
                bytes
            })
            .collect()
    })
}

/// The byte ranges a container's layout keeps as structure objects, where edits hurt most.
fn structure_objects(file: &[u8]) -> Vec<(usize, usize)> {
    analyze(
        &mut Cursor::new(file),
        file.len() as u64,
        LayoutOptions::default(),
    )
    .regions
    .iter()
    .filter_map(|r| match r {
        Region::Object { offset, len, .. } => Some((*offset as usize, (*offset + *len) as usize)),
        _ => None,
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_mxf_and_matroska_are_laid_out_without_panicking(
        which in 0usize..4,
        edits in edits(),
    ) {
        let base = &container_fixtures()[which];
        let file = mutate(base, &edits, &structure_objects(base));
        check_layout(&file)?;
        let _ = dits_core::media::mxf::movie_from_header_metadata(&file);
        let half = file.len() / 2;
        let _ = dits_core::media::matroska::movie_from_elements(Some(&file[..half]), &file[half..]);
    }

    #[test]
    fn arbitrary_bytes_behind_mxf_and_ebml_magic_are_laid_out_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        mxf in any::<bool>(),
    ) {
        let mut file = if mxf {
            // A header partition pack key.
            vec![0x06, 0x0e, 0x2b, 0x34, 0x02, 0x05, 0x01, 0x01, 0x0d, 0x01, 0x02, 0x01, 0x01, 0x02, 0x04, 0x00]
        } else {
            vec![0x1a, 0x45, 0xdf, 0xa3]
        };
        file.extend(bytes);
        check_layout(&file)?;
    }
}

/// A KLV or EBML element claiming more than the file holds, or a huge count of tiny
/// elements, is refused or bounded: the layout stays consistent and the add can't be made
/// to allocate by a claim.
#[test]
fn lying_lengths_fall_back_without_allocating_what_they_claim() {
    // An MXF header partition pack claiming 2^56 bytes.
    let mut mxf = vec![
        0x06, 0x0e, 0x2b, 0x34, 0x02, 0x05, 0x01, 0x01, 0x0d, 0x01, 0x02, 0x01, 0x01, 0x02, 0x04,
        0x00, 0x88,
    ];
    mxf.extend_from_slice(&(1u64 << 56).to_be_bytes());
    mxf.extend_from_slice(&[0u8; 64]);
    let layout = analyze(
        &mut Cursor::new(&mxf[..]),
        mxf.len() as u64,
        LayoutOptions::default(),
    );
    assert!(layout.fallback_reason.is_some(), "{layout:?}");
    // An EBML header, then a Segment of unknown size holding a Cluster claiming 2^50 bytes.
    let mut mkv = vec![0x1a, 0x45, 0xdf, 0xa3, 0x80];
    mkv.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    mkv.extend_from_slice(&[0x1f, 0x43, 0xb6, 0x75, 0x01, 0x04, 0, 0, 0, 0, 0, 0]);
    mkv.extend_from_slice(&[0u8; 64]);
    let layout = analyze(
        &mut Cursor::new(&mkv[..]),
        mkv.len() as u64,
        LayoutOptions::default(),
    );
    check_layout(&mkv).unwrap();
    assert!(layout.streams.is_empty());
    assert!(layout
        .regions
        .iter()
        .any(|r| matches!(r, Region::Payload { len, .. } if *len > 64)));
}
