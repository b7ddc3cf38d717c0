//! The fuzz harnesses: one function per parser of outside bytes, each feeding the bytes to
//! the parser's public entry point and checking what a parser of hostile input must
//! guarantee: no panic, no allocation sized by a claim, and (where the parser accepts the
//! input) an answer that is consistent with the bytes. `fuzz_targets/*.rs` are one line
//! each over these; `examples/make_seeds.rs` writes their seed corpora from real ffmpeg
//! output. See README.md for how to run them.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};

use dits_core::envelope::{self, CompressionHint, EnvelopeError};
use dits_core::media::boxes::{children, find_child, parse_header, top_level_boxes};
use dits_core::media::fragments::{fragment_samples, track_defaults, FragmentSamples};
use dits_core::media::sample_table::{
    parse_moov, SampleBudget, MAX_SAMPLES_PER_FILE as MAX_SAMPLES,
};
use dits_core::media::{analyze, LayoutOptions, Region};
use dits_core::pointer::MAX_POINTER_LEN;
use dits_core::recipe::RecipeView;
use dits_core::{ChunkId, Pointer, Recipe};

/// An error message is a sentence for a person: it must not echo a whole hostile input.
const MAX_MESSAGE: usize = 1024;

fn bounded_message(e: &dyn std::fmt::Display) {
    let m = e.to_string();
    assert!(m.len() <= MAX_MESSAGE, "error message of {} bytes", m.len());
}

// ---------------------------------------------------------------------------------------
// Media: the box walker, sample tables, fragments and the stream builder.

/// `top_level_boxes` over a whole file, and `children` over every payload it finds,
/// nested: what the walk accepts must tile the bytes exactly.
pub fn box_walker(data: &[u8]) {
    let len = data.len() as u64;
    if let Ok(span) = parse_header(data, 0, len) {
        assert!(span.header_len == 8 || span.header_len == 16);
        assert!(span.len >= span.header_len && span.len <= len);
    }
    match top_level_boxes(&mut Cursor::new(data), len) {
        Ok(boxes) => {
            let mut at = 0u64;
            for b in &boxes {
                assert_eq!(b.offset, at, "top-level boxes leave a gap or overlap");
                assert!(b.len >= b.header_len);
                at = b.end();
                let payload = &data[b.payload_offset() as usize..b.end() as usize];
                walk(payload, b.payload_offset(), 0);
            }
            assert_eq!(at, len, "top-level boxes do not reach the end of the file");
        }
        Err(e) => bounded_message(&e),
    }
    let _ = find_child(data, b"moov");
}

fn walk(payload: &[u8], base: u64, depth: u32) {
    if depth > 8 {
        return;
    }
    match children(payload, base) {
        Ok(kids) => {
            let mut at = base;
            for (span, inner) in kids {
                assert_eq!(span.offset, at, "child boxes leave a gap or overlap");
                assert_eq!(inner.len() as u64, span.payload_len());
                at = span.end();
                walk(inner, span.payload_offset(), depth + 1);
            }
            assert!(base + payload.len() as u64 - at < 8, "children stop early");
        }
        Err(e) => bounded_message(&e),
    }
}

/// The file a `moov` or `moof` payload is taken to be part of, for the samples' byte
/// allowance: the media targets run with -max_len of at most 1 MiB.
const AS_IF_FILE_LEN: u64 = 1 << 20;

/// `parse_moov` and `track_defaults` over a `moov` payload.
pub fn sample_tables(data: &[u8]) {
    let movie = parse_moov(data, AS_IF_FILE_LEN);
    assert!(movie.duration_secs.is_finite() && movie.duration_secs >= 0.0);
    let mut total = 0u64;
    for t in &movie.tracks {
        assert!(t.duration_secs.is_finite() && t.duration_secs >= 0.0);
        total += t.samples.len() as u64;
        if t.samples_error.is_none() && !t.samples.is_empty() {
            assert_eq!(t.samples.len() as u64, t.sample_count);
        }
        for s in &t.samples {
            assert!(s.offset.checked_add(u64::from(s.size)).is_some());
        }
    }
    assert!(
        total <= MAX_SAMPLES,
        "{total} samples listed for the movie, more than {MAX_SAMPLES}"
    );
    let _ = track_defaults(data);
}

/// `fragment_samples` over a `moof` payload, with the `trex` defaults of a `moov` payload.
/// Input: a big-endian u16 `k`, then `k` bytes of `moov` payload, then the `moof` payload.
/// The `moof` is read twice, as two fragments of one file are.
pub fn fragments(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let k = usize::from(u16::from_be_bytes(*head)).min(rest.len());
    let (moov, moof) = rest.split_at(k);
    let defaults = track_defaults(moov);
    let mut by_track = HashMap::new();
    let mut budget = SampleBudget::for_file(AS_IF_FILE_LEN);
    for moof_offset in [0u64, 1 << 40] {
        let mut out = FragmentSamples {
            by_track: &mut by_track,
            budget: &mut budget,
        };
        match fragment_samples(moof, moof_offset, &defaults, &mut out) {
            Ok(()) => {}
            Err(e) => {
                bounded_message(&e);
                break;
            }
        }
        let total: u64 = by_track.values().map(|v| v.len() as u64).sum();
        assert!(
            total <= MAX_SAMPLES,
            "{total} fragment samples, more than {MAX_SAMPLES}"
        );
    }
    for samples in by_track.values() {
        for s in samples {
            assert!(s.offset.checked_add(u64::from(s.size)).is_some());
        }
    }
}

/// `analyze` over a whole file: the box walk, sample tables, fragments and the stream
/// builder together. Its regions must tile the file; the streams' runs must tile the
/// `mdat` payloads they replace, and each stream's runs must add up to its length.
pub fn stream_builder(data: &[u8]) {
    let len = data.len() as u64;
    let layout = analyze(
        &mut Cursor::new(data),
        len,
        LayoutOptions { split_tracks: true },
    );
    let summary = layout.summary_line();
    assert!(summary.bytes().all(|b| (b' '..=b'~').contains(&b)));
    if let Some(reason) = &layout.fallback_reason {
        assert!(reason.len() <= MAX_MESSAGE);
    }
    let mut at = 0u64;
    let mut streamed = Vec::new();
    for region in &layout.regions {
        let (offset, region_len) = match region {
            Region::Object { offset, len, .. } => (*offset, *len),
            Region::Payload { offset, len, cuts } => {
                assert!(cuts.windows(2).all(|w| w[0] < w[1]), "cuts out of order");
                assert!(cuts.iter().all(|c| (*offset..offset + len).contains(c)));
                (*offset, *len)
            }
            Region::Streamed { offset, len } => {
                streamed.push((*offset, *len));
                (*offset, *len)
            }
        };
        assert_eq!(offset, at, "regions leave a gap or overlap");
        at = offset + region_len;
    }
    assert_eq!(at, len, "regions do not reach the end of the file");
    assert_eq!(streamed.is_empty(), layout.streams.is_empty());

    let mut runs = Vec::new();
    for stream in &layout.streams {
        let mut stream_at = 0u64;
        for run in &stream.runs {
            assert!(run.len > 0);
            assert_eq!(run.stream_offset, stream_at, "stream {} runs", stream.id);
            stream_at += run.len;
            runs.push((run.file_offset, run.len));
        }
        assert_eq!(stream_at, stream.len);
        assert!(stream.cuts.windows(2).all(|w| w[0] < w[1]));
        assert!(stream.cuts.iter().all(|&c| c > 0 && c < stream.len));
    }
    runs.sort_unstable();
    let mut runs = runs.into_iter().peekable();
    for (start, payload_len) in streamed {
        let mut pos = start;
        while pos < start + payload_len {
            let (offset, run_len) = runs.next().expect("an mdat byte no run covers");
            assert_eq!(offset, pos, "runs leave a gap or overlap in an mdat");
            pos += run_len;
        }
        assert_eq!(
            pos,
            start + payload_len,
            "a run crosses the end of its mdat"
        );
    }
    assert!(runs.peek().is_none(), "a run outside every mdat");
}

/// MXF: `media::analyze` over a whole file (the KLV walk, index tables, header
/// metadata, streams), with the layout checks of [`stream_builder`]; and the header
/// metadata reader `git dits show` runs over a stored `hmet` object.
pub fn mxf(data: &[u8]) {
    stream_builder(data);
    let movie = dits_core::media::mxf::movie_from_header_metadata(data);
    assert!(movie.tracks.len() <= 1024);
    assert!(movie.tracks.iter().all(|t| t.samples.is_empty()));
}

/// Matroska/WebM: `media::analyze` over a whole file (the EBML walk, clusters, blocks,
/// Info and Tracks), with the layout checks of [`stream_builder`]; and the Info/Tracks
/// reader `git dits show` runs over stored `info` and `trks` objects.
pub fn matroska(data: &[u8]) {
    stream_builder(data);
    let half = data.len() / 2;
    let movie = dits_core::media::matroska::movie_from_elements(Some(&data[..half]), &data[half..]);
    assert!(movie.tracks.len() <= 1024);
    assert!(movie.duration_secs.is_finite());
}

/// Project files: the first byte picks the format (MLT, OTIO, OTIOZ, FCPXML, Premiere,
/// EDL), the rest is the document. Accepted documents give at most the reference limit,
/// each with a decoded path; refused ones a bounded message. Also the path decoder and
/// the `.ditsrelink` parser over the same bytes.
pub fn project_files(data: &[u8]) {
    use dits_core::project::{self, Format};
    let Some((&which, doc)) = data.split_first() else {
        return;
    };
    let format = [
        Format::Mlt,
        Format::Otio,
        Format::Otioz,
        Format::Fcpxml,
        Format::Prproj,
        Format::Edl,
    ][usize::from(which) % 6];
    match project::references(format, doc) {
        Ok(refs) => {
            assert!(refs.len() <= project::MAX_REFERENCES);
            for r in &refs {
                assert!(!r.path.is_empty());
            }
        }
        Err(e) => bounded_message(&e),
    }
    let text = String::from_utf8_lossy(doc);
    let _ = project::path::decode(&text);
    let rules = project::resolve::Rules::parse(&text);
    let _ = rules.is_external(&text);
}

// ---------------------------------------------------------------------------------------
// Formats at rest: pointer, recipe, envelope.

/// `Pointer::parse`: what it accepts encodes back to a pointer that parses the same.
pub fn pointer(data: &[u8]) {
    match Pointer::parse(data) {
        Ok(p) => {
            let text = p.encode();
            assert!(text.len() <= MAX_POINTER_LEN);
            assert_eq!(Pointer::parse(text.as_bytes()).as_ref(), Ok(&p));
        }
        Err(e) => bounded_message(&e),
    }
}

/// `Recipe::decode`, and `RecipeView::entries_in` for ranges taken from the bytes: a
/// recipe that decodes encodes back to the same bytes, and the view finds the same
/// entries as the decoded list.
pub fn recipe(data: &[u8]) {
    let decoded = Recipe::decode(data);
    match &decoded {
        // Reserved bits and bytes are ignored, so only the meaning must survive a round
        // trip, not every byte.
        Ok(r) => assert_eq!(Recipe::decode(&r.encode()).as_ref(), Ok(r)),
        Err(e) => bounded_message(&e),
    }
    let Ok(view) = RecipeView::new(data) else {
        return;
    };
    let size = view.file_size;
    let tail = |at: usize| {
        data.len()
            .checked_sub(at)
            .and_then(|i| data.get(i..i + 8))
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
            .unwrap_or(0)
    };
    let ranges = [
        (0, u64::MAX),
        (size / 3, size / 3 + size / 5 + 1),
        (size.saturating_sub(1), size),
        (tail(8), tail(16)),
        (tail(8) % size.max(1), u64::MAX),
    ];
    for (start, end) in ranges {
        match view.entries_in(start, end) {
            Ok(found) => {
                assert!(found.len() <= view.len());
                if let Ok(r) = &decoded {
                    let end = end.min(r.file_size);
                    let expected: Vec<_> = r
                        .entries
                        .iter()
                        .filter(|e| e.end() > start && e.offset < end)
                        .copied()
                        .collect();
                    assert_eq!(found, expected, "entries_in({start}, {end})");
                }
            }
            Err(e) => bounded_message(&e),
        }
    }
}

/// The largest plaintext any caller asks `envelope::open` for (a wire object; the local
/// store's lengths come from objects it verified on the way in).
const MAX_PLAIN_LEN: u32 = dits_wire::wire::MAX_OBJECT;

/// `envelope::open` and `envelope::verify`. Input: id [32] | plain length u32 | sealed.
/// They must agree; a hash mismatch names the actual id, with which the same bytes open;
/// and `seal` of the sealed bytes opens back to them.
pub fn envelope(data: &[u8]) {
    let Some((id, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((plain_len, sealed)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let id = ChunkId(*id);
    let plain_len = u64::from(u32::from_be_bytes(*plain_len).min(MAX_PLAIN_LEN));
    let opened = envelope::open(&id, sealed, plain_len);
    let verified = envelope::verify(&id, sealed, plain_len);
    assert_eq!(opened.is_ok(), verified.is_ok(), "open and verify disagree");
    match opened {
        Ok(plain) => assert_eq!(plain.len() as u64, plain_len),
        Err(EnvelopeError::HashMismatch { actual, .. }) => {
            let plain = envelope::open(&actual, sealed, plain_len)
                .expect("the id a mismatch names opens the same bytes");
            assert_eq!(ChunkId::of(&plain), actual);
            assert!(envelope::verify(&actual, sealed, plain_len).is_ok());
        }
        Err(e) => bounded_message(&e),
    }
    let plain = sealed;
    for hint in [CompressionHint::Try, CompressionHint::Probe] {
        let again = envelope::seal(plain, hint);
        let opened = envelope::open(&ChunkId::of(plain), &again, plain.len() as u64);
        assert!(
            matches!(opened.as_deref(), Ok(p) if p == plain),
            "seal does not round-trip"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Protocols: pkt-line and the filter process, wire frames, remote-helper commands.

/// A filter that does nothing with content but read it, so the protocol is what is
/// fuzzed: clean answers the content's length, smudge copies, and delays when the content's
/// first byte is even.
struct NullFilter;

impl dits_filter::Filter for NullFilter {
    type Error = std::io::Error;

    fn clean(&mut self, _path: &str, content: &mut dyn Read) -> Result<Vec<u8>, Self::Error> {
        let n = std::io::copy(content, &mut std::io::sink())?;
        Ok(n.to_string().into_bytes())
    }

    fn smudge(
        &mut self,
        _path: &str,
        content: &mut dyn Read,
        out: &mut dyn Write,
    ) -> Result<(), Self::Error> {
        std::io::copy(content, out).map(drop)
    }

    fn wants_delay(&mut self, _path: &str, content: &[u8]) -> bool {
        content.first().is_some_and(|b| b % 2 == 0)
    }
}

/// Git's long-running filter protocol (`dits_filter::serve`) over the bytes as Git's side
/// of the pipe, then the bare pkt-line readers over them. Everything the filter writes
/// back must itself be well-formed pkt-lines.
pub fn pkt_line(data: &[u8]) {
    use dits_filter::pktline::{read_packet, ContentReader};
    let mut out = Vec::new();
    if let Err(e) = dits_filter::serve(&mut &data[..], &mut out, &mut NullFilter) {
        bounded_message(&e);
    }
    let mut written = &out[..];
    let mut buf = Vec::new();
    loop {
        match read_packet(&mut written, &mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("the filter wrote a malformed packet: {e}"),
        }
    }

    let mut input = data;
    for _ in 0..100_000 {
        match read_packet(&mut input, &mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                bounded_message(&e);
                break;
            }
        }
    }
    let mut content = Vec::new();
    let mut input = data;
    let mut reader = ContentReader::new(&mut input);
    if reader.read_to_end(&mut content).is_ok() {
        assert!(content.len() <= data.len());
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
}

/// The hub's wire protocol. The first byte picks what reads the rest: a request header
/// frame (as the hub reads one), an answer header frame and every typed result (as the
/// client reads one), or a body of objects (as the hub reads a `put`).
pub fn wire_frames(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    RUNTIME.with(|rt| {
        rt.block_on(async {
            match mode % 3 {
                0 => wire_request(rest).await,
                1 => wire_answer(rest).await,
                _ => wire_objects(rest).await,
            }
        })
    });
}

async fn wire_request(mut bytes: &[u8]) {
    use dits_wire::refs::{valid_oid, valid_ref_name};
    use dits_wire::wire::{ids_from_hex, read_frame, write_frame, Op, Request};
    let request: Request = match read_frame(&mut bytes).await {
        Ok(r) => r,
        Err(e) => return bounded_message(&e),
    };
    let mut frame = Vec::new();
    write_frame(&mut frame, &request)
        .await
        .expect("a request read from a frame writes back");
    let again: Request = read_frame(&mut &frame[..])
        .await
        .expect("a request written as a frame reads back");
    assert_eq!(
        serde_json::to_value(&again).ok(),
        serde_json::to_value(&request).ok()
    );
    match &request.op {
        Op::Missing { ids } | Op::Get { ids } => {
            if let Err(e) = ids_from_hex(ids) {
                bounded_message(&e);
            }
        }
        Op::UpdateRefs { updates, .. } => {
            for u in updates {
                valid_ref_name(&u.name);
                valid_oid(&u.old);
                valid_oid(&u.new);
            }
        }
        _ => {}
    }
}

async fn wire_answer(mut bytes: &[u8]) {
    use dits_wire::refs::{valid_oid, valid_ref_name};
    use dits_wire::wire::*;
    let response: Response = match read_frame(&mut bytes).await {
        Ok(r) => r,
        Err(e) => return bounded_message(&e),
    };
    fn typed<T: OpResult>(r: &Response) -> Option<T> {
        r.clone().result_as::<T>().ok()
    }
    if let Some(refs) = typed::<RefsResult>(&response) {
        for (name, oid) in &refs.refs {
            valid_ref_name(name);
            valid_oid(oid);
        }
    }
    if let Some(missing) = typed::<MissingResult>(&response) {
        let _ = ids_from_hex(&missing.missing);
    }
    let _ = typed::<PutResult>(&response);
    let _ = typed::<GetResult>(&response);
    let _ = typed::<PutGitPackResult>(&response);
    let _ = typed::<GitPacksResult>(&response);
    let _ = typed::<GetGitPackResult>(&response);
    let _ = typed::<UpdateRefsResult>(&response);
    let _ = typed::<LockResult>(&response);
    let _ = typed::<LockListResult>(&response);
    let _ = typed::<LockVerifyResult>(&response);
    let _ = typed::<UnlockResult>(&response);
}

async fn wire_objects(mut bytes: &[u8]) {
    use dits_wire::wire::read_object;
    for _ in 0..1024 {
        match read_object(&mut bytes).await {
            Ok(Some(object)) => {
                let opened = object.open();
                assert_eq!(opened.is_ok(), object.verify().is_ok());
                if let Err(e) = opened {
                    bounded_message(&e);
                }
            }
            Ok(None) => break,
            Err(e) => {
                bounded_message(&e);
                break;
            }
        }
    }
}

/// Git's remote-helper commands (`Conversation::next_request`) over the bytes as Git's
/// side of the pipe, and `PushSpec::parse` over each line. What the helper answers on its
/// own must be the protocol's words, and every request it yields well-formed.
pub fn helper_commands(data: &[u8]) {
    use git_remote_dits::protocol::{Conversation, PushSpec, Request};
    let mut conversation = Conversation::default();
    let mut input = data;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match conversation.next_request(&mut input, &mut out) {
            Ok(Some(Request::Fetch(batch))) => {
                assert!(!batch.is_empty());
                for f in batch {
                    assert!(matches!(f.oid.len(), 40 | 64));
                    assert!(f.oid.bytes().all(|b| b.is_ascii_hexdigit()));
                    assert!(!f.name.is_empty() && !f.name.contains('\n'));
                }
            }
            Ok(Some(Request::Push(batch))) => {
                assert!(!batch.is_empty());
                for p in batch {
                    assert!(!p.dst.is_empty() && !p.dst.contains('\n'));
                    assert!(p.src.as_deref() != Some(""));
                }
            }
            Ok(Some(Request::List { .. })) => {}
            Ok(None) if input.is_empty() => break,
            Ok(None) => {}
            // Its errors quote Git's line whole: Git is not hostile, and the user needs it.
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    let answers = String::from_utf8(out).expect("the helper's answers are text");
    for line in answers.lines() {
        assert!(
            matches!(
                line,
                "" | "ok" | "unsupported" | "option" | "fetch" | "push"
            ),
            "unexpected answer line {line:?}"
        );
    }
    for line in String::from_utf8_lossy(data).lines() {
        if let Ok(spec) = PushSpec::parse(line) {
            assert!(!spec.dst.is_empty());
        }
    }
}
