#!/usr/bin/env bash
# Encrypted vs unencrypted repositories on one hub, in one run, on the same clip:
#   - add (git add of the clip): target unchanged (sealing happens at the wire, not in add);
#   - first push: target >= 85% of the unencrypted throughput;
#   - clone + checkout: target >= 85%;
#   - bytes the hub stores for the clip and for a metadata edit (padding's cost).
# Each step runs RUNS times (default 4), plain and encrypted in turn (which goes first
# alternates); the best time of each counts. Dits hub: `dits-hub serve` (embedded default: SQLite + local directory).
#
# Usage: bench/encrypted.sh [SECONDS_OF_VIDEO]   (default 40 s ≈ 400 MB)
# Env:   BENCH_DIR (default target/bench), RUNS, WORK (where repositories and the hub live;
#        default $BENCH_DIR/encrypted; a tmpfs such as /dev/shm/dits-enc takes the disk's
#        noise out and leaves the CPU cost, encryption's worst case)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-40}
RUNS=${RUNS:-4}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg jq curl
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
export PATH=$ROOT/target/release:$PATH

CLIP=$(bench_clip "$SECS")
bench_edit "$CLIP" "$SECS" metadata >/dev/null
E=$(bench_edits_dir "$SECS")
SIZE=$(stat -c %s "$CLIP")

W=${WORK:-$BENCH_DIR/encrypted}
bench_work_home "$W"
(cd "$W" && git-dits install >/dev/null)

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
bench_hub "$W/hub" "$W/hub.log"
pids+=("$HUB_PID")
hub_media_in() { curl -sk "https://127.0.0.1:$HUB_PORT/api/v1/stats" | jq '.object_bytes_in'; }
BASE_URL=${HUB_URL%/bench/film}

secs() { bench_secs "$@"; }
mbps() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.1f", s / 1e6 / t }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }

declare -A ADD PUSH CLONE STORED EDIT
for run in $(seq "$RUNS"); do
  # Which goes first alternates, so neither always follows the other's writes.
  kinds="plain sealed"; [ $((run % 2)) = 0 ] && kinds="sealed plain"
  for kind in $kinds; do
    repo=bench/$kind-$run
    if [ "$kind" = sealed ]; then
      dits-hub --data "$W/hub" repo create "$repo" --encrypted >/dev/null
    else
      dits-hub --data "$W/hub" repo create "$repo" >/dev/null
    fi
    src=$W/src-$kind-$run
    git init -q "$src"
    (cd "$src" && git dits track '*.mp4' >/dev/null && git remote add origin "$BASE_URL/$repo" \
      && git add .gitattributes && git commit -qm attrs)
    [ "$kind" = sealed ] && (cd "$src" && git dits key init >/dev/null)
    cp "$CLIP" "$src/clip.mp4"
    cat "$src/clip.mp4" >/dev/null
    a=$(cd "$src" && secs git add clip.mp4)
    (cd "$src" && git commit -qm base)
    m0=$(hub_media_in)
    p=$(cd "$src" && secs git push -q origin main)
    STORED[$kind]=$(( $(hub_media_in) - m0 ))
    c=$(cd "$W" && secs git clone -q "$BASE_URL/$repo" "clone-$kind-$run")
    printf 'run %s %-7s add %5s s  push %5s s  clone %5s s\n' "$run" "$kind" "$a" "$p" "$c"
    ADD[$kind]=$(min "$a" "${ADD[$kind]:-}")
    PUSH[$kind]=$(min "$p" "${PUSH[$kind]:-}")
    CLONE[$kind]=$(min "$c" "${CLONE[$kind]:-}")
    cmp "$W/clone-$kind-$run/clip.mp4" "$CLIP"
    (cd "$src" && cp "$E/metadata.mp4" clip.mp4 && git add clip.mp4 && git commit -qm metadata)
    m0=$(hub_media_in)
    (cd "$src" && git push -q origin main 2>"$W/last.log")
    EDIT[$kind]=$(( $(hub_media_in) - m0 ))
    rm -rf "$W/clone-$kind-$run" "$src"
  done
done

MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.0f", s / 1e6 }')
printf '\nclip: %s (%.1f MB), loopback, one Dits hub (embedded), best of %s runs\n\n' "$(basename "$CLIP")" "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')" "$RUNS"
printf '%-18s %9s %10s %11s %12s %8s %8s\n' "" "plain s" "plain MB/s" "encrypted s" "encr. MB/s" "share" "target"
for what in add push clone; do
  case $what in
    add) p=${ADD[plain]}; s=${ADD[sealed]}; label="add"; target=0.95 ;;
    push) p=${PUSH[plain]}; s=${PUSH[sealed]}; label="first push"; target=0.85 ;;
    clone) p=${CLONE[plain]}; s=${CLONE[sealed]}; label="clone + checkout"; target=0.85 ;;
  esac
  r=$(awk -v a="$p" -v b="$s" 'BEGIN { printf "%.2f", a / b }')
  printf '%-18s %9s %10s %11s %12s %7.0f%% %7s\n' "$label" "$p" "$(mbps "$p")" "$s" "$(mbps "$s")" "$(awk -v r="$r" 'BEGIN { print r * 100 }')" ">= $(awk -v t="$target" 'BEGIN { print t * 100 }')%"
  bench_row "encryption, $MB MB clip, loopback" "$label, encrypted vs plain throughput" "$s s" "$p s" "${r}x" ">= ${target}x" "$(bench_met "$r" "$target")"
done
printf '(share = encrypted throughput / unencrypted throughput)\n\n'
printf '%-22s %14s %14s %8s\n' "hub received" "plain bytes" "encrypted" "cost"
for what in clip metadata; do
  case $what in clip) p=${STORED[plain]}; s=${STORED[sealed]} ;; metadata) p=${EDIT[plain]}; s=${EDIT[sealed]} ;; esac
  printf '%-22s %14d %14d %7.1f%%\n' "$what" "$p" "$s" "$(awk -v a="$p" -v b="$s" 'BEGIN { print (b - a) * 100 / a }')"
done
printf '(metadata: the push of a metadata edit on top of the clip; target <= 1%% of the file: %.2f%%)\n' \
  "$(awk -v a="${EDIT[sealed]}" -v s="$(stat -c %s "$E/metadata.mp4")" 'BEGIN { print a * 100 / s }')"
