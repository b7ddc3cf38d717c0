//! Media made by the real `ffmpeg`, once per target directory (cached so re-runs don't
//! re-encode), and independent measurements of it (`ffprobe`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed (see .ci/run)");
    assert!(
        out.status.success(),
        "ffmpeg {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The media every test shares, made once per target directory.
pub struct Media {
    pub dir: PathBuf,
}

impl Media {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A directory `name` under the target's temporary directory, and a maker of named ffmpeg
/// outputs in it: each is written under a temporary name then renamed, and skipped when
/// it exists, so re-runs don't re-encode.
fn media_cache(name: &str) -> (PathBuf, impl Fn(&str, &[&str])) {
    let dir = crate::bins::target_tmp().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let at = dir.clone();
    let make = move |name: &str, args: &[&str]| {
        if !at.join(name).exists() {
            let tmp = at
                .join(format!("tmp-{name}"))
                .to_string_lossy()
                .into_owned();
            let mut full: Vec<&str> = args.to_vec();
            full.push(&tmp);
            ffmpeg(&full);
            std::fs::rename(&tmp, at.join(name)).unwrap();
        }
    };
    (dir, make)
}

pub fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let (dir, make) = media_cache("dits-media-v1");
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        // 8 s of 640x360 H.264 + AAC, a keyframe every second, moov at the end.
        let base = p("base.mp4");
        make(
            "base.mp4",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
                "-t",
                "8",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-b:v",
                "3M",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-shortest",
                "-f",
                "mp4",
            ],
        );
        make(
            "faststart.mp4",
            &[
                "-i",
                &base,
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
        );
        make(
            "metadata.mp4",
            &[
                "-i",
                &base,
                "-c",
                "copy",
                "-metadata",
                "title=Director's cut",
                "-f",
                "mp4",
            ],
        );
        make(
            "trim.mp4",
            &["-ss", "2", "-i", &base, "-c", "copy", "-f", "mp4"],
        );
        make("rewrap.mov", &["-i", &base, "-c", "copy", "-f", "mov"]);
        make(
            "fragmented.mp4",
            &[
                "-i",
                &base,
                "-c",
                "copy",
                "-movflags",
                "+frag_keyframe+empty_moov+default_base_moof",
                "-f",
                "mp4",
            ],
        );
        // 8 s of 640x360 H.264 at 24 Mb/s (~25 MB) drawn over moving noise, so little of it
        // dedups: enough distinct chunks to stream through a mount's read-ahead.
        make(
            "noise.mp4",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25,noise=alls=20:allf=t",
                "-t",
                "8",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-b:v",
                "24M",
                "-maxrate",
                "24M",
                "-bufsize",
                "48M",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
                "-f",
                "mp4",
            ],
        );
        make_track_edits(&dir, &base, &make);
        Media { dir }
    })
}

/// Track-level edits of `base` (audio swapped, removed, added; subtitles added) as MP4,
/// fragmented MP4 and MOV: the edits track-level splitting must keep video shared through.
fn make_track_edits(dir: &Path, base: &str, make: &dyn Fn(&str, &[&str])) {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let tone = [
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880:sample_rate=44100:duration=8",
    ];
    let with_tone = |name: &str, tail: &[&str]| {
        let mut args = vec!["-i", base];
        args.extend_from_slice(&tone);
        args.extend_from_slice(tail);
        make(name, &args);
    };
    let aac = ["-c:a", "aac", "-b:a", "96k"];
    let swap: Vec<&str> = ["-map", "0:v", "-map", "1:a", "-c:v", "copy"]
        .iter()
        .chain(aac.iter())
        .copied()
        .collect();
    with_tone("audio-swap.mp4", &[&swap[..], &["-f", "mp4"]].concat());
    make(
        "no-audio.mp4",
        &["-i", base, "-an", "-c:v", "copy", "-f", "mp4"],
    );
    with_tone(
        "second-audio.mp4",
        &[
            "-map", "0:v", "-map", "0:a", "-map", "1:a", "-c:v", "copy", "-c:a:0", "copy",
            "-c:a:1", "aac", "-b:a:1", "96k", "-f", "mp4",
        ],
    );
    let srt = dir.join("subs.srt");
    if !srt.exists() {
        std::fs::write(
            &srt,
            "1\n00:00:00,500 --> 00:00:03,000\nFirst line\n\n2\n00:00:04,000 --> 00:00:07,500\nSecond line\n",
        )
        .unwrap();
    }
    let srt = srt.to_string_lossy().into_owned();
    make(
        "subtitles.mp4",
        &[
            "-i", base, "-i", &srt, "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text",
            "-f", "mp4",
        ],
    );
    let frag = [
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-f",
        "mp4",
    ];
    let fragmented = p("fragmented.mp4");
    make(
        "fragmented-no-audio.mp4",
        &[&["-i", &fragmented, "-an", "-c:v", "copy"][..], &frag].concat(),
    );
    let mut frag_swap = vec!["-i", fragmented.as_str()];
    frag_swap.extend_from_slice(&tone);
    frag_swap.extend_from_slice(&swap);
    frag_swap.extend_from_slice(&frag);
    make("fragmented-audio-swap.mp4", &frag_swap);
    let mov = p("rewrap.mov");
    let mut mov_swap = vec!["-i", mov.as_str()];
    mov_swap.extend_from_slice(&tone);
    mov_swap.extend_from_slice(&swap);
    mov_swap.extend_from_slice(&["-f", "mov"]);
    make("audio-swap.mov", &mov_swap);
}

/// Total bytes of the packets of the streams `selector` picks (ffprobe's `-select_streams`
/// syntax: `v`, `a:1`, `s`), measured by ffprobe, independent of Dits.
/// Seconds of media in `file`, as ffprobe reads its container (0 if it cannot).
pub fn duration_secs(file: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("running ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

pub fn stream_bytes(file: &Path, selector: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", selector])
        .args(["-show_entries", "packet=size", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe must be installed (it comes with ffmpeg)");
    assert!(out.status.success(), "ffprobe {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<u64>().ok())
        .sum()
}

/// Deterministic non-media bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// MXF and Matroska media and their edits, made once per target directory: for each of
/// `op1a.mxf` (MPEG-2 + PCM), `mkv.mkv` (H.264 + AAC) and `webm.webm` (VP9 + Opus), a
/// base and its metadata remux (`-meta`), audio swap (`-swap`), audio removal
/// (`-noaudio`) and head trim by stream copy (`-trim`); plus `atom.mxf`, a clip-wrapped
/// OP-Atom DNxHD file, its metadata remux `atom-meta.mxf` and head trim `atom-trim.mxf`.
pub fn containers() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let (dir, make) = media_cache("dits-media-containers-v2");
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        let source = |rate: &'static str| -> Vec<&'static str> {
            vec![
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
                "-f",
                "lavfi",
                "-i",
                rate,
                "-t",
                "8",
            ]
        };
        let tone = "sine=frequency=880:sample_rate=48000:duration=8";
        let formats: [(&str, &str, Vec<&str>, Vec<&str>); 3] = [
            (
                "op1a",
                "mxf",
                vec![
                    "-c:v",
                    "mpeg2video",
                    "-b:v",
                    "5M",
                    "-g",
                    "12",
                    "-c:a",
                    "pcm_s16le",
                ],
                vec!["-c:a", "pcm_s16le"],
            ),
            (
                "mkv",
                "matroska",
                vec![
                    "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M", "-g", "25", "-pix_fmt",
                    "yuv420p", "-c:a", "aac", "-b:a", "128k",
                ],
                vec!["-c:a", "aac", "-b:a", "96k"],
            ),
            (
                "webm",
                "webm",
                vec![
                    "-c:v",
                    "libvpx-vp9",
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-b:v",
                    "3M",
                    "-g",
                    "25",
                    "-c:a",
                    "libopus",
                    "-b:a",
                    "128k",
                ],
                vec!["-c:a", "libopus", "-b:a", "96k"],
            ),
        ];
        for (stem, muxer, codecs, new_audio) in formats {
            let ext = if stem == "op1a" { "mxf" } else { stem };
            let base = p(&format!("{stem}.{ext}"));
            let mut args = source("sine=frequency=440:sample_rate=48000");
            args.extend_from_slice(&codecs);
            args.extend_from_slice(&["-shortest", "-f", muxer]);
            make(&format!("{stem}.{ext}"), &args);
            make(
                &format!("{stem}-meta.{ext}"),
                &[
                    "-i",
                    &base,
                    "-map",
                    "0",
                    "-c",
                    "copy",
                    "-metadata",
                    "title=Director's cut",
                    "-f",
                    muxer,
                ],
            );
            let mut swap = vec![
                "-i", &base, "-f", "lavfi", "-i", tone, "-map", "0:v", "-map", "1:a", "-c:v",
                "copy",
            ];
            swap.extend_from_slice(&new_audio);
            swap.extend_from_slice(&["-shortest", "-f", muxer]);
            make(&format!("{stem}-swap.{ext}"), &swap);
            make(
                &format!("{stem}-noaudio.{ext}"),
                &["-i", &base, "-map", "0:v", "-c", "copy", "-f", muxer],
            );
            make(
                &format!("{stem}-trim.{ext}"),
                &[
                    "-ss", "2", "-i", &base, "-map", "0", "-c", "copy", "-f", muxer,
                ],
            );
        }
        make(
            "atom.mxf",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=25",
                "-t",
                "1",
                "-c:v",
                "dnxhd",
                "-b:v",
                "60M",
                "-pix_fmt",
                "yuv422p",
                "-f",
                "mxf_opatom",
            ],
        );
        let atom = p("atom.mxf");
        make(
            "atom-meta.mxf",
            &[
                "-i",
                &atom,
                "-c",
                "copy",
                "-metadata",
                "title=Director's cut",
                "-f",
                "mxf_opatom",
            ],
        );
        make(
            "atom-trim.mxf",
            &["-ss", "0.4", "-i", &atom, "-c", "copy", "-f", "mxf_opatom"],
        );
        Media { dir }
    })
}

/// `melt CLIPS… -consumer xml:OUT` run in `dir`: MLT's own XML writer (the project-file
/// fixtures), with `root` set to `dir` and paths relative to it where they lie under it.
pub fn melt(dir: &Path, clips: &[&str], out: &str) {
    let mut args: Vec<String> = clips.iter().map(|c| c.to_string()).collect();
    args.push("-consumer".into());
    args.push(format!("xml:{out}"));
    let done = Command::new("melt")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("melt must be installed (scripts/test-deps.sh)");
    assert!(
        done.status.success() && dir.join(out).exists(),
        "melt: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}
