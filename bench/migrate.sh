#!/usr/bin/env bash
# Importing existing history: the same history of versions of a 1080p clip (the edits
# bench_edit makes, one commit each, on two branches with a merge), stored by Git as plain
# blobs, is imported by `git lfs migrate import` and by `git dits migrate import` in the
# same run; then the history Git LFS wrote is imported by `git dits migrate import` (LFS
# objects to Dits). Prints throughput over the history's bytes, the ratio, and what each
# store holds afterwards.
#
# Usage: bench/migrate.sh [SECS]   (clip length, default 20: ~200 MB a version, 7 versions)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-20}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg git-lfs
cargo build --release -q -p git-dits -p git-remote-dits
export PATH=$ROOT/target/release:$PATH
CLIP=$(bench_clip "$SECS")
EDITS=(metadata trim audio-swap no-audio second-audio subtitles)
for e in "${EDITS[@]}"; do bench_edit "$CLIP" "$SECS" "$e" >/dev/null; done
W=$BENCH_DIR/migrate
bench_work_home "$W"

# The history: main gets the clip and three edits; a branch gets three more and is merged.
src=$W/plain
git init -q "$src"; cd "$src"
echo "notes" > notes.txt
cp "$CLIP" clip.mp4; git add .; git commit -qm "v0 original"
bytes=$(stat -c %s "$CLIP")
n=0
for e in "${EDITS[@]}"; do
  n=$((n + 1))
  [ "$n" = 4 ] && git checkout -qb grade
  cp "$(bench_edit "$CLIP" "$SECS" "$e")" clip.mp4
  git commit -qam "v$n $e"
  bytes=$((bytes + $(stat -c %s clip.mp4)))
done
git checkout -q main; git merge -q --no-edit -m "merge grade" grade -X theirs
cd "$ROOT"
versions=$((n + 1))
printf 'history: %s versions, %.1f MB in all\n' "$versions" "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')"

rate() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }
size() { du -sb "$1" 2>/dev/null | cut -f1; }

cp -a "$src" "$W/lfs"
(cd "$W/lfs" && git lfs install --local >/dev/null)
t_lfs=$(bench_secs bash -c "cd '$W/lfs' && git lfs migrate import --everything --include='*.mp4'")

cp -a "$src" "$W/dits"
(cd "$W/dits" && git dits install --local >/dev/null)
t_dits=$(bench_secs bash -c "cd '$W/dits' && git dits migrate import --everything --include='*.mp4'")

cp -a "$W/lfs" "$W/lfs-to-dits"
(cd "$W/lfs-to-dits" && git dits install --local >/dev/null)
t_from_lfs=$(bench_secs bash -c "cd '$W/lfs-to-dits' && git dits migrate import --everything --include='*.mp4'")

printf '%-44s %8s %8s\n' import seconds MB/s
printf '%-44s %8s %8s\n' "git lfs migrate import (plain blobs)" "$t_lfs" "$(rate "$t_lfs")"
printf '%-44s %8s %8s\n' "git dits migrate import (plain blobs)" "$t_dits" "$(rate "$t_dits")"
printf '%-44s %8s %8s\n' "git dits migrate import (Git LFS history)" "$t_from_lfs" "$(rate "$t_from_lfs")"
printf 'throughput ratio, Dits / Git LFS (plain blobs): %s\n' "$(awk -v a="$t_lfs" -v b="$t_dits" 'BEGIN { printf "%.2f", a / b }')"
lfs_store=$(size "$W/lfs/.git/lfs/objects")
dits_store=$(size "$W/dits/.git/dits")
printf 'stored: Git LFS .git/lfs/objects %.1f MB, Dits .git/dits %.1f MB (%.0f%% of LFS)\n' \
  "$(awk -v b="$lfs_store" 'BEGIN { print b / 1e6 }')" "$(awk -v b="$dits_store" 'BEGIN { print b / 1e6 }')" \
  "$(awk -v a="$dits_store" -v b="$lfs_store" 'BEGIN { print a * 100 / b }')"
same=$(cd "$W/dits" && git rev-parse main); again=$(cd "$W/lfs-to-dits" && git rev-parse main)
echo "same commits from plain blobs and from LFS history: $([ "$same" = "$again" ] && echo yes || echo no)"
