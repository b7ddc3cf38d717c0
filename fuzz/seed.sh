#!/usr/bin/env bash
# Makes the seed corpora of every fuzz target (fuzz/corpus/<target>/, not committed) from
# real ffmpeg output: small low-resolution clips in the containers Dits parses (MP4 with
# moov first and last, fragmented MP4, MOV with PCM audio, audio-only M4A, a video-only
# MP4 with B-frames, MXF OP1a and OP-Atom, Matroska, WebM), then `make_seeds`, which cleans each clip into a temporary Dits store
# with the real dits-core and writes what that produced (moov/moof payloads, pointer,
# recipe, stored envelopes) plus the filter, wire and remote-helper conversations that
# carry them. Needs ffmpeg (scripts/test-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")"
media=corpus/media
mkdir -p "$media"
ff() { ffmpeg -y -loglevel error "$@"; }
video=(-f lavfi -i "testsrc2=size=96x64:rate=12")
audio=(-f lavfi -i "sine=frequency=440:sample_rate=8000")
x264=(-c:v libx264 -preset ultrafast -g 6 -pix_fmt yuv420p)
ff "${video[@]}" "${audio[@]}" -t 2 "${x264[@]}" -c:a aac -b:a 16k -shortest "$media/plain.mp4"
ff "${video[@]}" "${audio[@]}" -t 2 "${x264[@]}" -c:a aac -b:a 16k -shortest \
  -movflags +faststart "$media/faststart.mp4"
ff "${video[@]}" "${audio[@]}" -t 2 "${x264[@]}" -c:a aac -b:a 16k -shortest \
  -movflags frag_keyframe+empty_moov "$media/fragmented.mp4"
ff "${video[@]}" "${audio[@]}" -t 2 "${x264[@]}" -c:a aac -b:a 16k -shortest \
  -movflags frag_keyframe+empty_moov+default_base_moof -frag_duration 250000 "$media/fragmented-cmaf.mp4"
ff "${video[@]}" "${audio[@]}" -t 1 "${x264[@]}" -c:a pcm_s16le -shortest "$media/pcm.mov"
ff "${audio[@]}" -t 2 -c:a aac -b:a 16k "$media/audio.m4a"
ff "${video[@]}" -t 2 -c:v libx264 -preset medium -bf 2 -g 12 -pix_fmt yuv420p "$media/bframes.mp4"
ff "${video[@]}" -t 1 -c:v mjpeg -q:v 10 "$media/mjpeg.mov"
# MXF wants 48 kHz PCM and MPEG-2 sizes in multiples of 16; OP-Atom holds one track.
audio48=(-f lavfi -i "sine=frequency=440:sample_rate=48000")
ff -f lavfi -i "testsrc2=size=96x64:rate=25" "${audio48[@]}" -t 1 -c:v mpeg2video -g 6 \
  -c:a pcm_s16le -shortest -f mxf "$media/op1a.mxf"
ff "${audio48[@]}" -t 1 -c:a pcm_s16le -f mxf_opatom "$media/opatom-audio.mxf"
ff "${video[@]}" "${audio[@]}" -t 2 "${x264[@]}" -c:a aac -b:a 16k -shortest "$media/clip.mkv"
ff "${video[@]}" "${audio48[@]}" -t 1 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 6 \
  -c:a libopus -b:a 16k -shortest "$media/clip.webm"
ls -l "$media"
cargo run --quiet --release --example make_seeds -- "$media" corpus
# The committed reproducers of what the targets found, so a run starts from them too.
for dir in seeds/*/; do
  mkdir -p "corpus/$(basename "$dir")"
  cp "$dir"* "corpus/$(basename "$dir")/"
done
