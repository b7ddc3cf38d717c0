#!/usr/bin/env bash
# Push and clone of one clip through a lossy, delayed UDP link (issue 22), in one run:
# ../shared/tools/lossy-udp.py (or $LOSSY_RELAY) sits between the client and `dits-hub
# serve` on loopback, dropping a share of the datagrams each way and delaying each by half
# the round trip. Each link gets a fresh repository on the hub, so every push sends the
# whole clip; the clone then fetches it back through the same link and is compared.
#
# Prints, for each link: push and clone seconds and MB/s, and the share of the loss-free
# run at the same round trip (targets: >= 50% at 0.5% and 2% loss, >= 25% at 5%).
#
# Usage: bench/lossy.sh [SECONDS_OF_VIDEO]    (default 7 s of the 80 Mb/s clip, ~70 MB)
# Env:   BENCH_DIR (default target/bench), LINKS (default below: "LOSS:RTT_MS ..." or
#        "direct", straight to the hub with no relay; a link
#        may be listed more than once, to see the spread; shares are of the last loss-free
#        run at that RTT listed before it),
#        DITS_QUIC_CONGESTION (bbr, cubic or newreno: both ends' controller; compare runs),
#        STEP_TIMEOUT (seconds a push or clone may take before it is recorded as not
#        finished; default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-7}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
LINKS=${LINKS:-"0:0 0:100 0.005:100 0:40 0.02:40 0:80 0.05:80"}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
RELAY=${LOSSY_RELAY:-$ROOT/../shared/tools/lossy-udp.py}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg git python3 curl
[ -f "$RELAY" ] || { echo "no relay at $RELAY (set LOSSY_RELAY)" >&2; exit 1; }
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
export PATH=$ROOT/target/release:$PATH

CLIP=$(bench_clip "$SECS")
SIZE=$(stat -c %s "$CLIP")
W=$BENCH_DIR/lossy
rm -rf "$W"; mkdir -p "$W"
BENCH_DIR=$W bench_git_home
git config --global credential.helper "store --file=$W/credentials"
(cd "$W" && git-dits install >/dev/null)

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
bench_hub "$W/hub" "$W/hub.log"
pids+=("$HUB_PID")

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mbps() { awk -v s="$SIZE" -v t="$1" 'BEGIN { if (t == "-") print "-"; else printf "%.2f", s / 1e6 / t }'; }
# timed CMD...: seconds CMD took, or "-" when it failed or ran past STEP_TIMEOUT.
timed() {
  local start end
  start=$(date +%s.%N)
  if timeout "$STEP_TIMEOUT" "$@" >>"$W/steps.log" 2>&1; then
    end=$(date +%s.%N); awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
  else
    echo "-"
  fi
}

declare -A PUSH CLONE BASE
n=0
for link in $LINKS; do
  n=$((n + 1))
  loss=${link%%:*} rtt=${link##*:}
  if [ "$link" = direct ]; then
    # Straight to the hub on loopback, no relay: the transport's own ceiling.
    port=$HUB_PORT relay=
  else
    port=$(free_port)
    python3 "$RELAY" "$port" "$HUB_PORT" "$loss" "$((rtt / 2))" >"$W/relay-$n.log" 2>&1 &
    relay=$!
  fi
  # The relay's address is another hub to Git: trust and credentials for it too.
  git config --global "dits.dits://127.0.0.1:$port.fingerprint" "$HUB_FP"
  printf 'protocol=dits\nhost=127.0.0.1:%s\nusername=bench\npassword=%s\n\n' "$port" "$HUB_TOKEN" \
    | git credential approve
  dits-hub --data "$W/hub" repo create "bench/link-$n" >/dev/null
  src=$W/src-$n
  git init -q "$src"
  (cd "$src" && git dits track '*.mp4' >/dev/null && cp "$CLIP" clip.mp4 && git add . \
    && git commit -qm clip && git remote add origin "dits://127.0.0.1:$port/bench/link-$n")
  echo "== link $n: loss $loss, rtt ${rtt} ms" >>"$W/steps.log"
  PUSH[$n]=$(cd "$src" && GIT_DITS_LOG=${GIT_DITS_LOG:-} timed git push -q origin main)
  CLONE[$n]=$(cd "$W" && timed git clone -q "dits://127.0.0.1:$port/bench/link-$n" "clone-$n")
  if [ "${CLONE[$n]}" != "-" ] && ! cmp -s "$W/clone-$n/clip.mp4" "$CLIP"; then
    CLONE[$n]="-"; echo "clone $n: bytes differ" >>"$W/steps.log"
  fi
  [ "$loss" = 0 ] && BASE[$rtt]=$n
  [ -z "$relay" ] || kill "$relay" 2>/dev/null || true
  rm -rf "$W/clone-$n"
done

share() { # SECONDS BASE_SECONDS -> BASE/SECONDS as a percentage
  awk -v t="$1" -v b="$2" 'BEGIN { if (t == "-" || b == "-" || b == "") print "-"; else printf "%.0f%%", 100 * b / t }'
}
printf 'clip: %s (%.1f MB); relay: %s; congestion: %s\n\n' "$(basename "$CLIP")" \
  "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')" "$(basename "$RELAY")" "${DITS_QUIC_CONGESTION:-default}"
printf '%-8s %-8s %9s %9s %8s %9s %9s %8s\n' loss "rtt ms" "push s" "push MB/s" "of 0%" "clone s" "clone MB/s" "of 0%"
n=0
for link in $LINKS; do
  n=$((n + 1))
  loss=${link%%:*} rtt=${link##*:}
  base=${BASE[$rtt]:-none}
  printf '%-8s %-8s %9s %9s %8s %9s %9s %8s\n' "$loss" "$rtt" \
    "${PUSH[$n]}" "$(mbps "${PUSH[$n]}")" "$(share "${PUSH[$n]}" "${PUSH[$base]:-}")" \
    "${CLONE[$n]}" "$(mbps "${CLONE[$n]}")" "$(share "${CLONE[$n]}" "${CLONE[$base]:-}")"
done
