#!/usr/bin/env bash
# Hub garbage collection on a generated history: hundreds of versions of a clip across
# branches (metadata edits, and every 10th version a fresh encode), pushed; then half the
# branches are deleted and one is forced back to an older version, and `dits-hub gc` runs.
# Prints stored bytes before and after against what the live refs need (a fresh hub given
# only the surviving refs), object store requests per GB collected and gc time per million
# objects. Target: after gc, stored bytes <= 1.05x what live refs need.
#
# Git LFS is not run: it has no server-side collection (git-lfs issue #5049), so its
# server keeps every version whole; the script prints that figure (the versions' logical
# bytes) beside ours.
#
# Usage: bench/gc.sh [SECONDS_OF_VIDEO]   (default 10)
# Env:   BENCH_DIR (default target/bench), BRANCHES (default 4), VERSIONS per branch
#        (default 50), PROFILE (release, or debug to reuse the test build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-10}
BRANCHES=${BRANCHES:-4}
VERSIONS=${VERSIONS:-50}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg jq
if [ "${PROFILE:-release}" = release ]; then
  cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
  export PATH=$ROOT/target/release:$PATH
else
  # PROFILE=debug: the workspace's dev profile is optimized too; spares a release build.
  cargo build -q -p git-dits -p git-remote-dits -p dits-hub
  export PATH=$ROOT/target/debug:$PATH
fi

W=$BENCH_DIR/gc
bench_work_home "$W" clips
(cd "$W" && git-dits install >/dev/null)

# encode SEED OUT: SECS seconds of 640x360 H.264 + AAC, distinct per seed.
encode() {
  ffmpeg -y -loglevel error -f lavfi -i "testsrc2=size=640x360:rate=25,noise=alls=$((($1 % 7) + 3)):allf=t,hue=h=$(($1 % 360))" \
    -f lavfi -i "sine=frequency=$((200 + $1 % 800)):sample_rate=44100" -t "$SECS" \
    -c:v libx264 -preset ultrafast -g 25 -c:a aac -f mp4 "$2"
}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
bench_hub "$W/hub" "$W/hub.log"
pids+=("$HUB_PID")
URL=$HUB_URL

src=$W/src
git init -q "$src"
cd "$src"
git dits track '*.mp4' >/dev/null
git remote add origin "$URL"
encode 0 clip.mp4
git add .gitattributes clip.mp4 && git commit -qm base
versions=1
for b in $(seq "$BRANCHES"); do
  git checkout -q -b "b$b" main
  cur=$W/clips/b$b.mp4
  cp clip.mp4 "$cur"
  for i in $(seq "$VERSIONS"); do
    if [ $((i % 10)) = 0 ]; then
      encode $((b * 1000 + i)) "$cur"
    fi
    ffmpeg -y -loglevel error -i "$cur" -c copy -metadata title="b$b v$i" -f mp4 clip.mp4
    git add clip.mp4 && git commit -qm "b$b v$i"
    versions=$((versions + 1))
    [ "$i" = $((VERSIONS / 2)) ] && git tag -f "half$b" >/dev/null
  done
done
git checkout -q main
t0=$(date +%s.%N)
git push -q origin main $(for b in $(seq "$BRANCHES"); do echo "b$b"; done)
echo "pushed $versions versions on $((BRANCHES + 1)) branches in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
logical=$(dits-hub --data "$W/hub" repo stats bench/film --json | jq .logical_bytes)

# Half the branches go; the next is forced back to its middle version.
keep=$((BRANCHES / 2 + 1))
git push -q origin $(for b in $(seq $((BRANCHES / 2))); do echo ":b$b"; done)
git push -q -f origin "half$keep:refs/heads/b$keep"
sleep 1.1
objects_before=$(sqlite3 "$W/hub/hub.sqlite" 'SELECT COUNT(*) FROM objects' 2>/dev/null || echo 0)
report=$(dits-hub --data "$W/hub" gc --json --gc-grace 0s)

# What the live refs need: a fresh hub given only them.
bench_hub "$W/fresh" "$W/fresh.log"
pids+=("$HUB_PID")
git branch -f "b$keep" "half$keep"
live_refs="main $(for b in $(seq "$keep" "$BRANCHES"); do echo "b$b"; done)"
git push -q "$HUB_URL" $live_refs
need=$(du -sb "$W/fresh/objects/chunks" | cut -f1)
after=$(du -sb "$W/hub/objects/chunks" | cut -f1)

echo "$report" | jq -c '{objects_deleted, object_bytes_deleted, packs_rewritten, bytes_copied, blobs_deleted, blob_bytes_deleted, storage_requests, seconds}'
before=$(echo "$report" | jq .stored_bytes_before)
freed=$(echo "$report" | jq .blob_bytes_deleted)
requests=$(echo "$report" | jq .storage_requests)
seconds=$(echo "$report" | jq .seconds)
awk -v before="$before" -v after="$after" -v need="$need" -v logical="$logical" \
  -v freed="$freed" -v req="$requests" -v s="$seconds" -v n="$objects_before" 'BEGIN {
  printf "stored before gc   %12d B\n", before
  printf "stored after gc    %12d B (chunk packs)\n", after
  printf "live refs need     %12d B (fresh hub, surviving refs only)\n", need
  printf "after / need       %12.3f   (target <= 1.05)\n", after / need
  printf "Git LFS server     %12d B (every version whole, never collected): %.1fx ours after gc\n", logical, logical / after
  printf "requests per GB collected  %.1f\n", (freed > 0) ? req / (freed / 1e9) : 0
  printf "gc time per million objects  %.1f s (%d objects, %.2f s)\n", (n > 0) ? s / (n / 1e6) : 0, n, s
}'
