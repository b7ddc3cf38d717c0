#!/usr/bin/env bash
# Track-level vs byte-level chunking on one large 1080p H.264 + AAC clip, in one run:
#   - for each edit (faststart, metadata, trim, audio swap, audio removed, second audio,
#     subtitles): the fraction of the edited file's distinct chunk bytes already stored
#     from the original, with dits.splitTracks on (Dits) and off (plain byte-level CDC);
#   - `git add` throughput of the original clip both ways (target: track-level >= 85%
#     of byte-level).
#
#   - the same kinds of edit (metadata remux, audio swap, audio removed, head trim) on
#     MP4, MXF, Matroska and WebM versions of one 720p source: store growth per edit.
#
# Usage: bench/tracks.sh [SECONDS_OF_VIDEO]   (default 42 s ≈ 430 MB)
# Env:   BENCH_DIR (default target/bench), RUNS (default 3, best add time is reported),
#        ONLY=containers (just the container table), CSECS (its source's seconds, 20),
#        PROFILE (release, or debug to reuse the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-42}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
# The work directories sit inside this checkout: keep Git (and `git dits install`) from
# finding it above them.
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg jq

if [ "${PROFILE:-release}" = release ]; then
  cargo build --release -q -p git-dits
else
  # PROFILE=debug: the workspace's dev profile is optimized too; spares a release build.
  cargo build -q -p git-dits
fi
DITS=$ROOT/target/${PROFILE:-release}/git-dits
# The repositories' hooks call `git dits`.
export PATH=$ROOT/target/${PROFILE:-release}:$PATH

export HOME=$BENCH_DIR/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"
git config --global user.name bench; git config --global user.email bench@dits.invalid
git config --global init.defaultBranch main

if [ "${ONLY:-all}" != containers ]; then
CLIP=$(bench_clip "$SECS")
E=$(bench_edits_dir "$SECS")
for f in faststart metadata trim audio-swap no-audio second-audio subtitles; do bench_edit "$CLIP" "$SECS" "$f" >/dev/null; done

setup() { # $1 = tracks|bytes, $2 = repo dir
  rm -rf "$2"; git init -q "$2"; cd "$2"
  git config filter.dits.process "$DITS filter-process"; git config filter.dits.required true
  git config dits.splitTracks "$([ "$1" = tracks ] && echo true || echo false)"
  echo '*.mp4 filter=dits diff=dits merge=binary -text' > .gitattributes
  git add .gitattributes; git commit -qm attrs
  cp "$CLIP" clip.mp4; cat clip.mp4 > /dev/null
  cd "$ROOT"
}

SIZE=$(stat -c %s "$CLIP")
printf 'clip: %s (%.1f MB)\n\n' "$(basename "$CLIP")" "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')"
declare -A T
for mode in tracks bytes; do
  best=999999
  for _ in $(seq "$RUNS"); do
    setup "$mode" "$BENCH_DIR/repo-$mode"
    t=$( { cd "$BENCH_DIR/repo-$mode" && /usr/bin/time -f "%e" git add clip.mp4; } 2>&1 | tail -1)
    if awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
  done
  T[$mode]=$best
  (cd "$BENCH_DIR/repo-$mode" && git commit -qm base && git tag -f base >/dev/null)
done
printf 'git add of the original (best of %s):\n' "$RUNS"
for mode in tracks bytes; do
  printf '  %-7s %6.2f s  %7.1f MB/s\n' "$mode" "${T[$mode]}" "$(awk -v s="$SIZE" -v t="${T[$mode]}" 'BEGIN { print s / 1e6 / t }')"
done
awk -v a="${T[tracks]}" -v b="${T[bytes]}" 'BEGIN { printf "  track-level throughput = %.0f%% of byte-level (target >= 85%%)\n\n", b / a * 100 }'

printf '%-18s %12s %14s %14s\n' edit "size MB" "shared tracks" "shared bytes"
for f in faststart.mp4 metadata.mp4 trim.mp4 audio-swap.mp4 no-audio.mp4 second-audio.mp4 subtitles.mp4; do
  row=()
  for mode in tracks bytes; do
    repo=$BENCH_DIR/repo-$mode
    json=$(cd "$repo" && git checkout -q -B "e-$f" base && cp "$E/$f" clip.mp4 && git add clip.mp4 \
      && git commit -qm "$f" && "$DITS" show --json clip.mp4)
    row+=("$(echo "$json" | jq -r '.previous | "\(.shared_bytes * 100 / .total_bytes)"')")
  done
  printf '%-18s %12.1f %13.2f%% %13.2f%%\n' "$f" "$(awk -v s="$(stat -c %s "$E/$f")" 'BEGIN { print s / 1e6 }')" "${row[0]}" "${row[1]}"
done
echo "(shared = distinct chunk bytes of the edited file already stored from the original)"
fi

# ---------------------------------------------------------------------------------------
# Containers: the same kinds of edit on MP4, MXF (MPEG-2 + PCM, OP1a), Matroska (H.264 +
# AAC) and WebM (VP9 + Opus) versions of one 720p source. For each, the store growth of the
# edited file after the original, as a share of the edited file, with track-level
# splitting on (Dits) and off (structure objects, payload chunked as bytes).
# Env: CSECS (default 20) seconds of the container source.
CSECS=${CSECS:-20}
C=$BENCH_DIR/containers-${CSECS}s
mkdir -p "$C"
ff() { [ -f "$1" ] || { ffmpeg -y -loglevel error "${@:2}" "$1.tmp" && mv "$1.tmp" "$1"; }; }
src=(-f lavfi -i "testsrc2=size=1280x720:rate=25,noise=alls=8:allf=t" -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$CSECS")
tone=(-f lavfi -i "sine=frequency=880:sample_rate=48000:duration=$CSECS")
declare -A MUX=([mp4]=mp4 [mxf]=mxf [mkv]=matroska [webm]=webm)
declare -A ENC=(
  [mp4]="-c:v libx264 -preset veryfast -b:v 12M -g 50 -pix_fmt yuv420p -c:a aac -b:a 192k"
  [mxf]="-c:v mpeg2video -b:v 25M -g 12 -c:a pcm_s16le"
  [mkv]="-c:v libx264 -preset veryfast -b:v 12M -g 50 -pix_fmt yuv420p -c:a aac -b:a 192k"
  [webm]="-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 12M -g 50 -c:a libopus -b:a 192k")
declare -A AUDIO=([mp4]="-c:a aac -b:a 192k" [mxf]="-c:a pcm_s16le" [mkv]="-c:a aac -b:a 192k" [webm]="-c:a libopus -b:a 192k")
echo
echo "containers: ${CSECS} s of 1280x720 + 48 kHz audio"
printf '%-6s %-12s %10s %16s %16s\n' container edit "size MB" "stores (tracks)" "stores (bytes)"
for x in mp4 mxf mkv webm; do
  base=$C/base.$x
  # shellcheck disable=SC2086
  ff "$base" "${src[@]}" ${ENC[$x]} -shortest -f "${MUX[$x]}"
  ff "$C/metadata.$x" -i "$base" -map 0 -c copy -metadata "title=Director's cut" -f "${MUX[$x]}"
  # shellcheck disable=SC2086
  ff "$C/audio-swap.$x" -i "$base" "${tone[@]}" -map 0:v -map 1:a -c:v copy ${AUDIO[$x]} -shortest -f "${MUX[$x]}"
  ff "$C/no-audio.$x" -i "$base" -map 0:v -c copy -f "${MUX[$x]}"
  ff "$C/trim.$x" -ss $((CSECS / 4)) -i "$base" -map 0 -c copy -f "${MUX[$x]}"
  for e in metadata audio-swap no-audio trim; do
    row=()
    for mode in tracks bytes; do
      repo=$BENCH_DIR/repo-c-$mode
      rm -rf "$repo"; git init -q "$repo"
      (cd "$repo"
        git config filter.dits.process "$DITS filter-process"; git config filter.dits.required true
        git config dits.splitTracks "$([ "$mode" = tracks ] && echo true || echo false)"
        echo "*.$x filter=dits diff=dits merge=binary -text" > .gitattributes
        git add .gitattributes; git commit -qm attrs
        cp "$base" "clip.$x"; git add "clip.$x"; git commit -qm base)
      before=$(du -sb "$repo/.git/dits/packs" | cut -f1)
      (cd "$repo" && cp "$C/$e.$x" "clip.$x" && git add "clip.$x" && git commit -qm "$e")
      after=$(du -sb "$repo/.git/dits/packs" | cut -f1)
      row+=("$(awk -v a="$after" -v b="$before" -v s="$(stat -c %s "$C/$e.$x")" 'BEGIN { print (a - b) * 100 / s }')")
    done
    printf '%-6s %-12s %10.1f %15.2f%% %15.2f%%\n' "$x" "$e" "$(awk -v s="$(stat -c %s "$C/$e.$x")" 'BEGIN { print s / 1e6 }')" "${row[0]}" "${row[1]}"
  done
done
echo "(stores = store growth from committing the edit after the original, over the edit's size;"
echo " audio-swap includes the new audio track itself)"
