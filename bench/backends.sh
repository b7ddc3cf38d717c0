#!/usr/bin/env bash
# The hub on its three backend configurations, in one run on the same clip:
#   embedded          SQLite + the data directory (the default)
#   s3+redis          SQLite metadata, objects in S3 (moto's server on loopback), Redis locks
#   pg+redis+s3       PostgreSQL metadata (this machine's server, a fresh database), Redis
#                     locks, S3 objects: the scale-out deployment
# For each: push throughput of the clip, S3 write requests per GB pushed (target <= 32),
# and lock latency (dits-lock-bench: lock+unlock p50/p99 with 1 and 16 clients).
#
# Usage: bench/backends.sh [SECONDS_OF_VIDEO] [LOCK_ROUNDS]   (default 40 s ≈ 400 MB, 300)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-40}
ROUNDS=${2:-300}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
# The work directories sit inside this checkout: keep Git (and `git dits install`) from
# finding it above them.
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub -p dits-lock-bench
export PATH=$ROOT/target/release:$PATH
MOTO=${MOTO:-$ROOT/target/moto-venv/bin/moto_server}
[ -x "$MOTO" ] || { echo "moto_server not found: run .ci/run (it installs target/moto-venv)" >&2; exit 2; }
. "$ROOT/bench/lib.sh"
CLIP=$(bench_clip "$SECS")
SIZE=$(stat -c %s "$CLIP")

W=$BENCH_DIR/backends
bench_work_home "$W"
(cd "$W" && git-dits install >/dev/null 2>&1)
pids=()
DB=dits_bench_$$
trap 'kill "${pids[@]}" 2>/dev/null || true; psql -h 127.0.0.1 -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null || true' EXIT
psql -h 127.0.0.1 -d postgres -qc "CREATE DATABASE $DB"
S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MOTO" -H 127.0.0.1 -p "$S3PORT" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null -X PUT "http://127.0.0.1:$S3PORT/bench" && break; sleep 0.1; done
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3PORT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench

git init -q "$W/src" && cd "$W/src" && git dits track '*.mp4' >/dev/null
cp "$CLIP" clip.mp4 && git add . && git commit -qm clip
printf 'clip: %s (%.1f MB), loopback\n' "$(basename "$CLIP")" "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')"
for backend in embedded s3+redis pg+redis+s3; do
  data=$W/hub-$backend
  args=()
  unset DITS_HUB_METADATA
  case $backend in
    s3+redis) args=(--objects "s3://bench/$backend" --locks redis://127.0.0.1:6379) ;;
    pg+redis+s3)
      args=(--objects "s3://bench/$backend" --locks redis://127.0.0.1:6379)
      export DITS_HUB_METADATA=postgres://root@127.0.0.1:5432/$DB ;;
  esac
  bench_hub "$data" "$W/$backend.log" "${args[@]}"
  pids+=("$HUB_PID")
  sync
  t0=$(date +%s.%N)
  git push -q "$HUB_URL" main
  t1=$(date +%s.%N)
  writes=$(curl -sk "https://127.0.0.1:$HUB_PORT/api/v1/stats" | jq '.s3_write_requests')
  awk -v a="$t0" -v b="$t1" -v s="$SIZE" -v w="$writes" -v n="$backend" 'BEGIN {
    t = b - a; printf "%-12s push %6.2f s  %7.1f MB/s", n, t, s / 1e6 / t
    if (n != "embedded") printf "  S3 write requests %d = %.1f per GB pushed (target <= 32)", w, w / (s / 1e9)
    printf "\n" }'
  for clients in 1 16; do
    printf '%-12s locks: ' "$backend"
    dits-lock-bench "$HUB_URL" "$HUB_TOKEN" "$HUB_FP" "$clients" "$ROUNDS"
  done
  kill "$HUB_PID" 2>/dev/null || true
done
