#!/usr/bin/env bash
# git dits mount on a clip that is not local (a GIT_DITS_SKIP_SMUDGE=1 clone), loopback hub:
#   - time to first byte of the clip through the mount (target < 50 ms);
#   - ffprobe through the mount: time, and bytes fetched from the hub as a share of the
#     file (target <= 2%);
#   - cold sequential read through the mount (everything from the hub) vs `git dits
#     pull-media`'s transfer of the same file from the same hub, in MB/s of the file
#     (target: mount >= 50% of pull-media); pull-media's transfer is timed by the command
#     itself (connect, fetch, close: its `transfer_ms` debug line), without writing the
#     file out and refreshing the index afterwards;
#   - for context: warm sequential read (chunks now in the local store) and reading the
#     hydrated file; page cache dropped before each read where the kernel lets us;
#   - peak RSS of the mount process (dits.mountCacheSize = 256 MiB).
#
# Usage: bench/mount.sh [SECONDS_OF_VIDEO]   (default 40 s ≈ 400 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-40}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
# The work directories sit inside this checkout: keep Git (and `git dits install`) from
# finding it above them.
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg jq curl fusermount3:fuse3
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
export PATH=$ROOT/target/release:$PATH
CLIP=$(bench_clip "$SECS")
SIZE=$(stat -c %s "$CLIP")

W=$BENCH_DIR/mount
fusermount3 -u -z "$W/m" 2>/dev/null || true
bench_work_home "$W" m
(cd "$W" && git-dits install >/dev/null 2>&1)
pids=()
trap 'fusermount3 -u -z "$W/m" 2>/dev/null || true; kill "${pids[@]}" 2>/dev/null || true' EXIT

bench_hub "$W/hub" "$W/hub.log"
pids+=("$HUB_PID")
PORT=$HUB_PORT URL=$HUB_URL
out_bytes() { curl -sk "https://127.0.0.1:$PORT/api/v1/stats" | jq '.object_bytes_out'; }
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo "not dropped"; }

git init -q "$W/src" && cd "$W/src" && git dits track '*.mp4' >/dev/null
cp "$CLIP" clip.mp4 && git add . && git commit -qm clip && git remote add origin "$URL" && git push -q origin main
cd "$W" && GIT_DITS_SKIP_SMUDGE=1 git clone -q "$URL" clone

mount_it() {
  (cd "$W/clone" && exec git-dits mount "$W/m") 2>"$W/mount.log" &
  MPID=$!
  for _ in $(seq 500); do [ -e "$W/m/clip.mp4" ] && break; sleep 0.01; done
}
unmount_it() { kill -TERM "$MPID"; wait "$MPID" || true; }

printf 'clip: %s (%.1f MB), hub on loopback, clone holds pointers only\n' "$(basename "$CLIP")" "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')"
mount_it
b0=$(out_bytes); t0=$(now)
head -c 1 "$W/m/clip.mp4" >/dev/null
t1=$(now)
TTFB=$(ms "$t0" "$t1")
echo "time to first byte: $TTFB ms (target < 50 ms)"
t0=$(now)
ffprobe -v error -show_entries format=duration -of csv=p=0 "$W/m/clip.mp4" >/dev/null
t1=$(now); b1=$(out_bytes)
awk -v b=$((b1 - b0)) -v s="$SIZE" -v t="$(ms "$t0" "$t1")" 'BEGIN { printf "ffprobe through the mount: %s ms, fetched %d bytes = %.3f%% of the file (target <= 2%%)\n", t, b, b * 100 / s }'
unmount_it

# Cold sequential read: a fresh pointers-only clone, everything comes from the hub.
rm -rf "$W/clone" && (cd "$W" && GIT_DITS_SKIP_SMUDGE=1 git clone -q "$URL" clone)
mount_it
echo "page cache: $(drop_caches)"
t0=$(now); cat "$W/m/clip.mp4" >/dev/null; t1=$(now)
COLD=$(ms "$t0" "$t1")
echo "page cache: $(drop_caches)"
t0=$(now); cat "$W/m/clip.mp4" >/dev/null; t1=$(now)
WARM=$(ms "$t0" "$t1")
RSS=$(awk '/VmHWM/ { print $2 }' /proc/$(pgrep -f "git-dits mount $W/m" | head -1)/status)
unmount_it

# pull-media of the same file from the same hub into another fresh pointers-only clone.
rm -rf "$W/pulled" && (cd "$W" && GIT_DITS_SKIP_SMUDGE=1 git clone -q "$URL" pulled)
t0=$(now)
(cd "$W/pulled" && GIT_DITS_LOG=git_dits=debug git dits pull-media -q) 2>"$W/pull.log"
t1=$(now)
PULL_ALL=$(ms "$t0" "$t1")
PULL=$(sed 's/\x1b\[[0-9;]*m//g' "$W/pull.log" | sed -n 's/.*transfer_ms=\([0-9.]*\).*/\1/p' | tail -1)
[ -n "$PULL" ] || { echo "no transfer_ms line from pull-media:" >&2; cat "$W/pull.log" >&2; exit 1; }
echo "page cache: $(drop_caches)"
t0=$(now); cat "$W/pulled/clip.mp4" >/dev/null; t1=$(now)
HYD=$(ms "$t0" "$t1")
mbs() { awk -v s="$SIZE" -v m="$1" 'BEGIN { printf "%.1f", s / 1e6 / (m / 1000) }'; }
printf "git dits pull-media, transfer:                         %s MB/s (%.0f ms; whole command %.0f ms)\n" "$(mbs "$PULL")" "$PULL" "$PULL_ALL"
echo "sequential read through the mount, cold (from the hub): $(mbs "$COLD") MB/s"
echo "sequential read through the mount, warm (local store):  $(mbs "$WARM") MB/s"
echo "reading the hydrated file:                             $(mbs "$HYD") MB/s"
awk -v c="$COLD" -v w="$WARM" -v h="$HYD" 'BEGIN { printf "mount / hydrated file (context): cold %.0f%%, warm %.0f%%\n", h / c * 100, h / w * 100 }'
awk -v c="$COLD" -v p="$PULL" 'BEGIN { printf "mount cold / pull-media transfer: %.0f%% (target >= 50%%)\n", p / c * 100 }'
echo "time to first byte: $TTFB ms (target < 50 ms)"
echo "peak RSS of the mount process: $((RSS / 1024)) MiB (RAM cache bound 256 MiB)"
MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.0f", s / 1e6 }')
r=$(awk -v c="$COLD" -v p="$PULL" 'BEGIN { printf "%.0f", p / c * 100 }')
bench_row "\`git dits mount\`, $MB MB clip, loopback hub" "cold sequential read, MB/s (peer: pull-media's transfer)" \
  "$(mbs "$COLD")" "$(mbs "$PULL")" "$r%" ">= 50%" "$(bench_met "$r" 50)"
bench_row "\`git dits mount\`, $MB MB clip, loopback hub" "time to first byte" "$TTFB ms" - - "< 50 ms" \
  "$(awk -v t="$TTFB" 'BEGIN { print (t < 50) ? "yes" : "no" }')"
