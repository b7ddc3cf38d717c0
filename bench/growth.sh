#!/usr/bin/env bash
# How Dits' cost grows with file size: `git add` (first add into an empty repository),
# first push and clone + checkout over loopback from `dits-hub serve`, for 1080p clips of
# about 0.25, 1 and 4 GB. The target is linear growth: seconds per GB about constant.
# Prints a markdown table; rows also go to $BENCH_ROWS for bench/targets.sh.
#
# Usage: bench/growth.sh [SECONDS...]   (default 24 100 400: 80 Mb/s, so ~0.25/1/4 GB)
# Env:   BENCH_DIR (default target/bench, on disk: the 4 GB case needs ~25 GB free, more
#        than tmpfs usually has). The clips are generated once and kept (the 4 GB one takes
#        minutes to encode).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
[ $# -gt 0 ] || set -- 24 100 400
. "$ROOT/bench/lib.sh"
bench_need ffmpeg jq curl /usr/bin/time:time
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
export PATH=$ROOT/target/release:$PATH

W=$BENCH_DIR/growth
rm -rf "$W"; mkdir -p "$W"
bench_git_home
git config --global credential.helper "store --file=$W/credentials"
(cd "$W" && git-dits install >/dev/null)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

rows=()
for secs in "$@"; do
  clip=$(bench_clip "$secs")
  size=$(stat -c %s "$clip")
  bench_hub "$W/hub-$secs" "$W/hub-$secs.log"
  pids+=("$HUB_PID")
  git init -q "$W/src" && cd "$W/src"
  git dits track '*.mp4' >/dev/null && git add .gitattributes && git commit -qm attrs
  git remote add origin "$HUB_URL"
  cp "$clip" clip.mp4 && cat clip.mp4 >/dev/null
  sync
  read -r add rss < <( (/usr/bin/time -f "%e %M" git add clip.mp4) 2>&1 | tail -1)
  git commit -qm clip
  push=$(bench_secs git push -q origin main)
  cd "$W"
  clone=$(bench_secs git clone -q "$HUB_URL" clone)
  cmp "$W/clone/clip.mp4" "$clip"
  rows+=("$secs $size $add $rss $push $clone")
  kill "$HUB_PID"; wait "$HUB_PID" 2>/dev/null || true
  rm -rf "$W/src" "$W/clone" "$W/hub-$secs"
  cd "$ROOT"
done

printf '\nDits on %s (%s), loopback hub (embedded default)\n\n' "$W" "$(df --output=fstype "$W" | tail -1)"
echo '| file | GB | add s | add s/GB | add peak RSS | push s | push s/GB | clone s | clone s/GB |'
echo '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
base_add='' base_clone=''
for r in "${rows[@]}"; do
  read -r secs size add rss push clone <<<"$r"
  gb=$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1e9 }')
  per() { awk -v t="$1" -v g="$gb" 'BEGIN { printf "%.2f", t / g }'; }
  printf '| %ss 1080p | %s | %s | %s | %d MiB | %s | %s | %s | %s |\n' "$secs" "$gb" "$add" "$(per "$add")" \
    $((rss / 1024)) "$push" "$(per "$push")" "$clone" "$(per "$clone")"
  [ -n "$base_add" ] || { base_add=$(per "$add"); base_clone=$(per "$clone"); base_gb=$gb; }
  ga=$(awk -v a="$(per "$add")" -v b="$base_add" 'BEGIN { printf "%.2f", a / b }')
  gc=$(awk -v a="$(per "$clone")" -v b="$base_clone" 'BEGIN { printf "%.2f", a / b }')
  bench_row "growth, disk" "$gb GB: add / clone seconds per GB vs the $base_gb GB file" \
    "$(per "$add") / $(per "$clone") s/GB" - "${ga}x / ${gc}x" "about 1x (linear)" \
    "$(awk -v a="$ga" -v c="$gc" 'BEGIN { print (a <= 1.25 && c <= 1.25) ? "yes" : "no" }')"
done
echo '(s/GB about constant down the column = linear growth)'
