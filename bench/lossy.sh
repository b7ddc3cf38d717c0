#!/usr/bin/env bash
# Push and clone of one clip through a lossy, delayed UDP link (issue 22), in one run: a
# relay sits between the client and `dits-hub serve` on loopback (target/release/
# lossy-relay, the e2e tests' LossyLink as a program; LOSSY_RELAY=../shared/tools/
# lossy-udp.py picks the Python one, which tops out near 20-38 MB/s here), dropping a share of the datagrams each way and delaying each by half
# the round trip. Each link gets a fresh repository on the hub, so every push sends the
# whole clip; the clone then fetches it back through the same link and is compared.
#
# Prints, for each link: push and clone seconds and MB/s, the share of the loss-free run
# at the same round trip (targets: >= 50% at 0.5% and 2% loss, >= 25% at 5%), and how
# many bytes crossed the relay toward the hub (push) and the client (clone) as a multiple
# of the media objects the transfer needed: about 1.03-1.08 is QUIC's headers,
# retransmissions and the Git pack; well above that after an outage would be media sent
# again. (With no relay report, direct or the Python relay, the hub's object byte
# counters stand in; the hub counts what it wrote into its QUIC send buffers, so a
# clone's figure then includes what was in flight when a link died.)
#
# A link "LOSS:RTT:BLACKOUT" also drops everything for BLACKOUT seconds, once half the
# clip has crossed in the push and again in the clone (each step gets a relay of its own
# on one port; the Python relay: 1.5 s into each step).
# The default list ends with 10 s and 60 s blackouts at 100 ms; the 60 s one outlasts
# the 60 s idle timeout, so the connection dies and the client must reconnect.
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
LINKS=${LINKS:-"0:0 0:100 0.005:100 0:40 0.02:40 0:80 0.05:80 0:100:10 0:100:60"}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
RELAY=${LOSSY_RELAY:-$ROOT/target/release/lossy-relay}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg git python3 curl
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub -p dits-tests --bin git-dits \
  --bin git-remote-dits --bin dits-hub --bin lossy-relay
[ -f "$RELAY" ] || { echo "no relay at $RELAY (set LOSSY_RELAY)" >&2; exit 1; }
# The Python relay runs under python3 and blacks out at a time (1.5 s into the step); the
# Rust one (the default) runs on its own and blacks out once half the clip has passed, so
# the outage always falls in the middle of the media.
case $RELAY in
  *.py) RUN_RELAY=(python3 "$RELAY") BLACKOUT_AT=1.5 ;;
  *) RUN_RELAY=("$RELAY") BLACKOUT_AT=half ;;
esac
export PATH=$ROOT/target/release:$PATH

CLIP=$(bench_clip "$SECS")
SIZE=$(stat -c %s "$CLIP")
[ "$BLACKOUT_AT" != half ] || BLACKOUT_AT=$((SIZE / 2))b
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
# metric NAME: a counter from the hub's /metrics.
metric() { curl -sk "https://127.0.0.1:$HUB_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# relay_for_step STEP: a fresh relay on $port for one step (the blackout, if any, counts
# from the step's first datagram), logging to $RELAY_LOG.
relay_for_step() {
  [ "$link" = direct ] && return
  [ -z "$relay" ] || { kill "$relay" 2>/dev/null || true; wait "$relay" 2>/dev/null || true; }
  RELAY_LOG=$W/relay-$n-$1.log
  if [ -n "$blackout" ]; then
    "${RUN_RELAY[@]}" "$port" "$HUB_PORT" "$loss" "$((rtt / 2))" "$BLACKOUT_AT" "$blackout" >"$RELAY_LOG" 2>&1 &
  else
    "${RUN_RELAY[@]}" "$port" "$HUB_PORT" "$loss" "$((rtt / 2))" >"$RELAY_LOG" 2>&1 &
  fi
  relay=$!
  pids+=("$relay")
}
# wire_bytes WAY FALLBACK: the bytes the relay passed WAY (to_clients, to_service) in this
# step, from its once-a-second report; FALLBACK (the hub's count) with no report (a direct
# link, or the Python relay).
wire_bytes() {
  local got=
  if [ "$link" != direct ]; then
    sleep 1.2
    got=$(grep -o "$1 [0-9]*" "$RELAY_LOG" 2>/dev/null | tail -1 | cut -d' ' -f2)
  fi
  echo "${got:-$2}"
}
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

# parse_link LINK: sets loss, rtt and blackout (empty for none).
parse_link() {
  local rest
  loss=${1%%:*} rest=${1#*:}
  rtt=${rest%%:*} blackout=
  [ "$rest" = "$rtt" ] || blackout=${rest#*:}
}

declare -A PUSH CLONE BASE PUSH_SENT CLONE_SENT
n=0
for link in $LINKS; do
  n=$((n + 1))
  parse_link "$link"
  relay=
  if [ "$link" = direct ]; then
    # Straight to the hub on loopback, no relay: the transport's own ceiling.
    port=$HUB_PORT
  else
    port=$(free_port)
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
  echo "== link $n: loss $loss, rtt ${rtt} ms, blackout ${blackout:-none}" >>"$W/steps.log"
  relay_for_step push
  in0=$(metric dits_object_bytes_in_total)
  PUSH[$n]=$(cd "$src" && GIT_DITS_LOG=${GIT_DITS_LOG:-} timed git push -q origin main)
  # What each step had to move: the bytes of the objects the first push stored. Later
  # pushes (fresh repositories) store the same objects again, in packs of the same
  # content-derived names, so the pack total stops growing.
  if [ -z "${NEED:-}" ]; then
    NEED=$(du -cb "$W/hub/objects/chunks"/*.pack 2>/dev/null | tail -1 | cut -f1)
  fi
  need=$NEED
  PUSH_SENT[$n]=$(ratio "$(wire_bytes to_service "$(( $(metric dits_object_bytes_in_total) - in0 ))")" "$need")
  relay_for_step clone
  out0=$(metric dits_object_bytes_out_total)
  CLONE[$n]=$(cd "$W" && GIT_DITS_LOG=${GIT_DITS_LOG:-} timed git clone -q "dits://127.0.0.1:$port/bench/link-$n" "clone-$n")
  CLONE_SENT[$n]=$(ratio "$(wire_bytes to_clients "$(( $(metric dits_object_bytes_out_total) - out0 ))")" "$need")
  if [ "${CLONE[$n]}" != "-" ] && ! cmp -s "$W/clone-$n/clip.mp4" "$CLIP"; then
    CLONE[$n]="-"; echo "clone $n: bytes differ" >>"$W/steps.log"
  fi
  [ "$loss" = 0 ] && [ -z "$blackout" ] && BASE[$rtt]=$n
  [ -z "$relay" ] || kill "$relay" 2>/dev/null || true
  rm -rf "$W/clone-$n"
done

share() { # SECONDS BASE_SECONDS -> BASE/SECONDS as a percentage
  awk -v t="$1" -v b="$2" 'BEGIN { if (t == "-" || b == "-" || b == "") print "-"; else printf "%.0f%%", 100 * b / t }'
}
printf 'clip: %s (%.1f MB); relay: %s; congestion: %s\n\n' "$(basename "$CLIP")" \
  "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')" "$(basename "$RELAY")" "${DITS_QUIC_CONGESTION:-default}"
printf '%-8s %-6s %-8s %8s %9s %6s %5s %8s %10s %6s %5s\n' loss "rtt" "outage" "push s" "push MB/s" "of 0%" sent \
  "clone s" "clone MB/s" "of 0%" sent
n=0
for link in $LINKS; do
  n=$((n + 1))
  parse_link "$link"
  base=${BASE[$rtt]:-none}
  printf '%-8s %-6s %-8s %8s %9s %6s %5s %8s %10s %6s %5s\n' "$loss" "$rtt" "${blackout:--}" \
    "${PUSH[$n]}" "$(mbps "${PUSH[$n]}")" "$(share "${PUSH[$n]}" "${PUSH[$base]:-}")" "${PUSH_SENT[$n]}" \
    "${CLONE[$n]}" "$(mbps "${CLONE[$n]}")" "$(share "${CLONE[$n]}" "${CLONE[$base]:-}")" "${CLONE_SENT[$n]}"
done
