#!/usr/bin/env bash
# Times `git add` of one large 1080p H.264 clip three ways in the same run:
#   dits  - git-dits filter-process (chunk + hash + store, packs fsync'd)
#   lfs   - Git LFS (installed here from Debian's packages if missing)
#   null  - a long-running filter that reads the content and answers a constant:
#           the ceiling for anything that goes through Git's filter pipe.
# Prints MB/s, the ratios Dits/LFS and Dits/null, and peak RSS (largest process).
#
# Usage: bench/add.sh [SECONDS_OF_VIDEO]   (default 40 s ≈ 400 MB)
# Env:   BENCH_DIR (default target/bench), RUNS (default 3, best run is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-40}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
# The work directories sit inside this checkout: keep Git (and `git dits install`) from
# finding it above them.
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"

. "$ROOT/bench/lib.sh"
bench_need ffmpeg git-lfs /usr/bin/time:time

cargo build --release -q -p git-dits -p dits-null-filter
DITS=$ROOT/target/release/git-dits
NULL=$ROOT/target/release/dits-null-filter

CLIP=$(bench_clip "$SECS")
EDIT=$BENCH_DIR/clip-1080p-${SECS}s-retitled.mp4
[ -f "$EDIT" ] || ffmpeg -y -loglevel error -i "$CLIP" -c copy -metadata title="Director's cut" "$EDIT"
SIZE=$(stat -c %s "$CLIP")
MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.1f", s / 1e6 }')

bench_git_home
setup() { bench_filter_repo "$1" "$2"; } # $1 = kind, $2 = repo dir

best_secs=(); best_rss=()
measure() { # $1 = kind -> prints "seconds peak_kib"
  local best=999999 rss=0
  for _ in $(seq "$RUNS"); do
    setup "$1" "$BENCH_DIR/repo-$1"
    local out
    out=$( { cd "$BENCH_DIR/repo-$1" && /usr/bin/time -f "%e %M" git add clip.mp4; } 2>&1 | tail -1)
    local t=${out% *} m=${out#* }
    if awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; rss=$m; fi
  done
  echo "$best $rss"
}

printf 'git add of %s (%s MB), best of %s runs\n' "$(basename "$CLIP")" "$MB" "$RUNS"
declare -A T R
for kind in dits lfs null; do
  read -r t m < <(measure "$kind")
  T[$kind]=$t; R[$kind]=$m
  printf '%-5s %7.2f s  %8.1f MB/s  peak RSS %6.1f MiB\n' "$kind" "$t" "$(awk -v s="$SIZE" -v t="$t" 'BEGIN { print s / 1e6 / t }')" "$(awk -v m="$m" 'BEGIN { print m / 1024 }')"
done
awk -v d="${T[dits]}" -v l="${T[lfs]}" -v n="${T[null]}" 'BEGIN {
  printf "Dits/LFS speed ratio:  %.2fx  (target >= 5x)\n", l / d
  printf "Dits/null speed ratio: %.0f%%   (target >= 80%%)\n", n / d * 100 }'

# Second version: the same clip with a metadata edit (ffmpeg stream copy). LFS stores a
# whole new object; Dits stores the new boxes and the chunks that changed.
store_of() { case $1 in dits) echo "$BENCH_DIR/repo-$1/.git/dits";; lfs) echo "$BENCH_DIR/repo-$1/.git/lfs";; esac; }
echo "second add: metadata-edited version of the same clip"
for kind in dits lfs; do
  repo=$BENCH_DIR/repo-$kind
  ( cd "$repo" && git commit -qm v1 && cp "$EDIT" clip.mp4 && cat clip.mp4 > /dev/null )
  before=$(du -sb "$(store_of $kind)" | cut -f1)
  out=$( { cd "$repo" && /usr/bin/time -f "%e" git add clip.mp4; } 2>&1 | tail -1)
  after=$(du -sb "$(store_of $kind)" | cut -f1)
  printf '%-5s %7.2f s  store grew %10s bytes (%.3f%% of the file)\n' "$kind" "$out" "$((after - before))" \
    "$(awk -v g="$((after - before))" -v s="$SIZE" 'BEGIN { print g * 100 / s }')"
done
du -sh "$(store_of dits)" "$(store_of lfs)" | sed 's/^/store: /'
