#!/usr/bin/env bash
# Track-level vs byte-level chunking on one large 1080p H.264 + AAC clip, in one run:
#   - for each edit (faststart, metadata, trim, audio swap, audio removed, second audio,
#     subtitles): the fraction of the edited file's distinct chunk bytes already stored
#     from the original, with dits.splitTracks on (Dits) and off (plain byte-level CDC);
#   - `git add` throughput of the original clip both ways (target: track-level >= 85%
#     of byte-level).
#
# Usage: bench/tracks.sh [SECONDS_OF_VIDEO]   (default 42 s ≈ 430 MB)
# Env:   BENCH_DIR (default target/bench), RUNS (default 3, best add time is reported)
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

cargo build --release -q -p git-dits
DITS=$ROOT/target/release/git-dits

CLIP=$(bench_clip "$SECS")
E=$(bench_edits_dir "$SECS")
for f in faststart metadata trim audio-swap no-audio second-audio subtitles; do bench_edit "$CLIP" "$SECS" "$f" >/dev/null; done

export HOME=$BENCH_DIR/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"
git config --global user.name bench; git config --global user.email bench@dits.invalid
git config --global init.defaultBranch main

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
