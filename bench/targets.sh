#!/usr/bin/env bash
# Every speed target of the project in one run, Dits beside its peers (Git LFS, a null
# filter, Giftless, `dd`) on the same files, printed as one markdown table of ratios.
# It runs the focused scripts, each of which also runs alone and prints its own detail:
#   speed.sh   `git add`: 0.25 GB and 1 GB clips on tmpfs, 0.25 GB on disk
#   many.sh    1,000 one-megabyte clips: add, status, clone
#   push.sh    first push and clone + checkout over loopback
#   mount.sh   `git dits mount`: time to first byte, cold sequential read vs pull-media
#   growth.sh  add / push / clone seconds per GB for 0.25, 1 and 4 GB (on disk)
# Wall-clock numbers: run it on an otherwise idle machine (the load average is printed).
#
# Usage: bench/targets.sh
# Env:   TMPFS_DIR (default /dev/shm/dits-bench), DISK_DIR (default target/bench),
#        GROWTH_SECS (default "24 100 400"; "24 100" skips the 4 GB clip), RUNS (speed.sh,
#        default 3). Each script's full output goes to $DISK_DIR/targets.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TMPFS_DIR=${TMPFS_DIR:-/dev/shm/dits-bench}
DISK_DIR=${DISK_DIR:-$ROOT/target/bench}
mkdir -p "$TMPFS_DIR" "$DISK_DIR"
LOG=$DISK_DIR/targets.log
: >"$LOG"
export BENCH_ROWS=$DISK_DIR/targets.rows SPEED_MBS=$DISK_DIR/targets.mbs
: >"$BENCH_ROWS"; : >"$SPEED_MBS"
. "$ROOT/bench/lib.sh"

step() { # DIR SCRIPT ARGS...: runs one script with BENCH_DIR=DIR, output to the log
  local dir=$1
  shift
  echo "== $* (in $dir)" | tee -a "$LOG" >&2
  if ! BENCH_DIR=$dir "$@" >>"$LOG" 2>&1; then
    echo "   failed: see $LOG" >&2
    bench_row "$*" "the script failed (see targets.log)" - - - - no
  fi
  # Work trees and stores of a step can take gigabytes of RAM on tmpfs; the clips stay.
  rm -rf "$TMPFS_DIR"/{many,push,mount,repo-dits,repo-lfs,repo-null} "$DISK_DIR"/{repo-dits,repo-lfs,repo-null}
}
START=$(date +%s)
step "$TMPFS_DIR" bench/speed.sh 24
step "$TMPFS_DIR" bench/speed.sh 100
# The 1 GB file must add at no lower MB/s than the 0.25 GB one.
read -r small big < <(awk '$1 == "tmpfs" { m[NR] = $3 } END { printf "%s %s\n", m[1], m[2] }' "$SPEED_MBS")
if [ -n "$small" ] && [ -n "$big" ]; then
  r=$(awk -v b="$big" -v s="$small" 'BEGIN { printf "%.2f", b / s }')
  bench_row '`git add`, tmpfs' "first add MB/s, 1 GB clip vs 0.25 GB clip" "$big vs $small MB/s" - "${r}x" ">= 1x" "$(bench_met "$r" 1)"
fi
step "$DISK_DIR" bench/speed.sh 24
step "$TMPFS_DIR" bench/many.sh 1000
step "$TMPFS_DIR" bench/push.sh 24
step "$TMPFS_DIR" bench/mount.sh 24
# shellcheck disable=SC2086 # a list of lengths
step "$DISK_DIR" bench/growth.sh ${GROWTH_SECS:-24 100 400}

printf '\n## Dits speed targets, %s, commit %s\n\n' "$(date -u +%Y-%m-%d)" "$(git rev-parse --short HEAD)"
printf '%s cores, %s GiB RAM; load average at the end: %s; took %d min\n\n' "$(nproc)" \
  "$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" "$(cut -d' ' -f1-3 /proc/loadavg)" $(( ($(date +%s) - START) / 60 ))
echo '| where | measure | Dits | peer | ratio | target | met |'
echo '|---|---|---:|---:|---:|---|---|'
awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$BENCH_ROWS"
