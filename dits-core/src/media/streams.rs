//! Track-level splitting: the `mdat` payloads of a file described as per-track sample
//! streams (each track's samples in decode order, concatenated) plus one stream of the
//! bytes no sample covers. A run is a stretch of the file that is a contiguous stretch of
//! one stream; the runs of all streams tile the `mdat` payloads exactly. Chunking each
//! stream on its own means an audio swap leaves every video chunk unchanged, however the
//! muxer interleaved the two.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::sample_table::TrackInfo;

/// Stream number of the bytes inside `mdat` that no sample covers.
pub const GAP_STREAM: u16 = 1;
/// Stream number of the first track; 0 means "not a stream" in recipes.
const FIRST_TRACK_STREAM: u16 = 2;

/// Why a file's sample tables can't be trusted to describe its `mdat`s as streams. Never
/// fatal: the file is then chunked by bytes, cut at keyframes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("too many tracks")]
    TooManyTracks,
    /// The track's sample table could not be read (`TrackInfo::samples_error`).
    #[error("track {track_id}: {reason}")]
    UnreadableSamples { track_id: u32, reason: String },
    #[error("track {track_id}: sample offset overflows")]
    OffsetOverflow { track_id: u32 },
    #[error("no samples")]
    NoSamples,
    #[error("a sample at {offset} lies outside every mdat")]
    OutsideMdat { offset: u64 },
    #[error("samples overlap at {offset}")]
    Overlap { offset: u64 },
    #[error("a sample at {offset} runs past the end of its mdat")]
    PastMdatEnd { offset: u64 },
}

/// `len` bytes at `file_offset` are the stream's bytes at `stream_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub file_offset: u64,
    pub stream_offset: u64,
    pub len: u64,
}

/// One stream: its runs in stream order, and where chunks must start (stream offsets of
/// video keyframes, ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleStream {
    pub id: u16,
    /// A video track (chunked with bigger chunks, cut at keyframes).
    pub video: bool,
    pub runs: Vec<Run>,
    pub cuts: Vec<u64>,
    pub len: u64,
}

/// Describes `payloads` (the `mdat` payload ranges, `(offset, len)` in file order) as
/// streams, or says why the tracks' tables can't be trusted to.
pub fn build_streams(
    tracks: &[TrackInfo],
    payloads: &[(u64, u64)],
) -> Result<Vec<SampleStream>, StreamError> {
    if tracks.len() > usize::from(u16::MAX - FIRST_TRACK_STREAM) {
        return Err(StreamError::TooManyTracks);
    }
    if let Some((track_id, reason)) = tracks
        .iter()
        .find_map(|t| Some((t.track_id, t.samples_error.as_ref()?)))
    {
        return Err(StreamError::UnreadableSamples {
            track_id,
            reason: reason.clone(),
        });
    }
    let mut streams = Vec::with_capacity(tracks.len() + 1);
    for (i, track) in tracks.iter().enumerate() {
        streams.push(track_stream(FIRST_TRACK_STREAM + i as u16, track)?);
    }
    if streams.iter().all(|s| s.runs.is_empty()) {
        return Err(StreamError::NoSamples);
    }

    // Every run must sit inside one mdat payload and no two may overlap.
    let mut placed: Vec<(u64, u64)> = streams
        .iter()
        .flat_map(|s| s.runs.iter().map(|r| (r.file_offset, r.len)))
        .collect();
    placed.sort_unstable();
    let mut gaps = SampleStream {
        id: GAP_STREAM,
        video: false,
        runs: Vec::new(),
        cuts: Vec::new(),
        len: 0,
    };
    let mut next = placed.iter().peekable();
    for &(start, len) in payloads {
        let end = start + len;
        let mut pos = start;
        while let Some(&&(offset, run_len)) = next.peek() {
            if offset >= end {
                break;
            }
            if offset < pos {
                return Err(if offset < start {
                    StreamError::OutsideMdat { offset }
                } else {
                    StreamError::Overlap { offset }
                });
            }
            if offset + run_len > end {
                return Err(StreamError::PastMdatEnd { offset });
            }
            if offset > pos {
                gaps.push(pos, offset - pos);
            }
            pos = offset + run_len;
            next.next();
        }
        if end > pos {
            gaps.push(pos, end - pos);
        }
    }
    if let Some(&(offset, _)) = next.next() {
        return Err(StreamError::OutsideMdat { offset });
    }
    if !gaps.runs.is_empty() {
        streams.push(gaps);
    }
    streams.retain(|s| !s.runs.is_empty());
    Ok(streams)
}

impl SampleStream {
    /// Appends `len` file bytes at `file_offset` to the stream, merging with the last run
    /// when they are contiguous in the file too.
    fn push(&mut self, file_offset: u64, len: u64) {
        match self.runs.last_mut() {
            Some(last) if last.file_offset + last.len == file_offset => last.len += len,
            _ => self.runs.push(Run {
                file_offset,
                stream_offset: self.len,
                len,
            }),
        }
        self.len += len;
    }

    /// Index of the run holding stream byte `offset`.
    fn run_at(&self, offset: u64) -> usize {
        self.runs
            .partition_point(|r| r.stream_offset + r.len <= offset)
    }
}

fn track_stream(id: u16, track: &TrackInfo) -> Result<SampleStream, StreamError> {
    let video = track.is_video();
    let mut stream = SampleStream {
        id,
        video,
        runs: Vec::new(),
        cuts: Vec::new(),
        len: 0,
    };
    for s in track.samples.iter().filter(|s| s.size > 0) {
        s.offset
            .checked_add(u64::from(s.size))
            .ok_or(StreamError::OffsetOverflow {
                track_id: track.track_id,
            })?;
        if video && s.sync && stream.len > 0 {
            stream.cuts.push(stream.len);
        }
        stream.push(s.offset, u64::from(s.size));
    }
    Ok(stream)
}

/// How much of the file one refill of a [`StreamReader`]'s window reads at most.
const WINDOW: u64 = 4 << 20;
/// The widest stretch of other streams' bytes a refill reads through to reach this
/// stream's next run.
const MAX_GAP: u64 = 64 << 10;

/// Reads a stream's bytes out of the file, in stream order, through a window of file
/// bytes: a track's runs are a sample or a few long and interleaved with the other
/// tracks', so reading run by run cost a `pread` per sample (thousands per file).
/// A refill reads from the wanted run's start to the end of the last run of this stream
/// that fits in [`WINDOW`], so a sparse stream (audio between long video runs) reads
/// little that it skips, and a dense one reads in multi-MiB blocks.
pub struct StreamReader<'a> {
    file: &'a File,
    stream: &'a SampleStream,
    pos: u64,
    window: Vec<u8>,
    /// File offset of `window[0]`.
    window_start: u64,
}

impl<'a> StreamReader<'a> {
    pub fn new(file: &'a File, stream: &'a SampleStream) -> Self {
        StreamReader {
            file,
            stream,
            pos: 0,
            window: Vec::new(),
            window_start: 0,
        }
    }

    /// Reads file bytes from `runs[run]`'s byte at `from` on into the window.
    fn refill(&mut self, run: usize, from: u64) -> io::Result<()> {
        let limit = from.saturating_add(WINDOW);
        let first = self.stream.runs[run];
        let mut end = (first.file_offset + first.len).min(limit);
        if end < limit {
            for r in &self.stream.runs[run + 1..] {
                // Past a wide gap (other tracks' bytes) a second pread is cheaper than
                // copying the gap.
                if r.file_offset < end || r.file_offset >= limit || r.file_offset - end > MAX_GAP {
                    break;
                }
                end = (r.file_offset + r.len).min(limit);
            }
        }
        self.window.resize((end - from) as usize, 0);
        self.window_start = from;
        self.file
            .read_exact_at(&mut self.window, from)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "file ended inside a sample")
                }
                _ => e,
            })
    }
}

impl Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() && self.pos < self.stream.len {
            let run_index = self.stream.run_at(self.pos);
            let run = self.stream.runs[run_index];
            let within = self.pos - run.stream_offset;
            let at = run.file_offset + within;
            let want = (run.len - within).min((buf.len() - filled) as u64);
            let window_end = self.window_start + self.window.len() as u64;
            if at < self.window_start || at >= window_end {
                self.refill(run_index, at)?;
            }
            let skip = (at - self.window_start) as usize;
            let n = (want as usize).min(self.window.len() - skip);
            buf[filled..filled + n].copy_from_slice(&self.window[skip..skip + n]);
            filled += n;
            self.pos += n as u64;
        }
        Ok(filled)
    }
}

impl Seek for StreamReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.stream.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::other("seek before stream start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sample_table::Sample;

    fn track(id: u32, video: bool, samples: &[(u64, u32, bool)]) -> TrackInfo {
        TrackInfo {
            track_id: id,
            handler: if video { "vide" } else { "soun" }.into(),
            samples: samples
                .iter()
                .map(|&(offset, size, sync)| Sample { offset, size, sync })
                .collect(),
            ..TrackInfo::default()
        }
    }

    #[test]
    fn interleaved_tracks_become_streams_and_gaps() {
        // mdat payload [100, 200): video 100..130, audio 130..140, video 140..170, gap.
        let v = track(
            1,
            true,
            &[(100, 20, true), (120, 10, false), (140, 30, true)],
        );
        let a = track(2, false, &[(130, 10, true)]);
        let streams = build_streams(&[v, a], &[(100, 100)]).unwrap();
        assert_eq!(streams.len(), 3);
        assert_eq!(streams[0].len, 60);
        assert_eq!(streams[0].cuts, vec![30]);
        assert_eq!(
            streams[0].runs,
            vec![
                Run {
                    file_offset: 100,
                    stream_offset: 0,
                    len: 30
                },
                Run {
                    file_offset: 140,
                    stream_offset: 30,
                    len: 30
                }
            ]
        );
        assert_eq!(streams[2].id, GAP_STREAM);
        assert_eq!(
            streams[2].runs,
            vec![Run {
                file_offset: 170,
                stream_offset: 0,
                len: 30
            }]
        );
    }

    #[test]
    fn hostile_tables_are_refused() {
        let payload = [(100, 100)];
        let overlap = track(1, true, &[(100, 20, true), (110, 20, false)]);
        assert_eq!(
            build_streams(&[overlap], &payload),
            Err(StreamError::Overlap { offset: 110 })
        );
        let outside = track(1, true, &[(500, 20, true)]);
        assert_eq!(
            build_streams(&[outside], &payload),
            Err(StreamError::OutsideMdat { offset: 500 })
        );
        let past_end = track(1, true, &[(190, 20, true)]);
        assert_eq!(
            build_streams(&[past_end], &payload),
            Err(StreamError::PastMdatEnd { offset: 190 })
        );
        let overflow = track(1, true, &[(u64::MAX - 5, 20, true)]);
        assert_eq!(
            build_streams(&[overflow], &payload),
            Err(StreamError::OffsetOverflow { track_id: 1 })
        );
        let before = track(1, true, &[(50, 20, true)]);
        assert_eq!(
            build_streams(&[before], &payload),
            Err(StreamError::OutsideMdat { offset: 50 })
        );
    }

    #[test]
    fn reader_follows_runs() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789abcdef").unwrap();
        let stream = SampleStream {
            id: 2,
            video: false,
            runs: vec![
                Run {
                    file_offset: 10,
                    stream_offset: 0,
                    len: 3,
                },
                Run {
                    file_offset: 2,
                    stream_offset: 3,
                    len: 4,
                },
            ],
            cuts: vec![],
            len: 7,
        };
        let mut out = String::new();
        StreamReader::new(&f, &stream)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "abc2345");
    }

    #[test]
    fn reader_serves_interleaved_runs_from_its_window_in_any_read_size() {
        use std::io::Write;
        // Stream A owns every other 1000-byte block of 40 blocks; B the ones between.
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let runs: Vec<Run> = (0..20u64)
            .map(|i| Run {
                file_offset: i * 2000,
                stream_offset: i * 1000,
                len: 1000,
            })
            .collect();
        let stream = SampleStream {
            id: 2,
            video: true,
            runs,
            cuts: vec![],
            len: 20_000,
        };
        let expected: Vec<u8> = (0..20)
            .flat_map(|i| data[i * 2000..i * 2000 + 1000].iter().copied())
            .collect();
        for size in [1, 999, 1000, 4096, 65_536] {
            let mut reader = StreamReader::new(&f, &stream);
            reader.seek(SeekFrom::Start(0)).unwrap();
            let mut out = Vec::new();
            let mut buf = vec![0u8; size];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, expected, "read size {size}");
        }
        let mut reader = StreamReader::new(&f, &stream);
        reader.seek(SeekFrom::Start(1500)).unwrap();
        let mut two = [0u8; 2];
        reader.read_exact(&mut two).unwrap();
        assert_eq!(two, [expected[1500], expected[1501]]);
    }

    #[test]
    fn reader_reports_a_truncated_file() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123").unwrap();
        let stream = SampleStream {
            id: 2,
            video: false,
            runs: vec![Run {
                file_offset: 2,
                stream_offset: 0,
                len: 10,
            }],
            cuts: vec![],
            len: 10,
        };
        let mut out = Vec::new();
        let err = StreamReader::new(&f, &stream)
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
