#!/usr/bin/env bash
# The hub's pages on a big repository: 10,000 commits and 100,000 assets in the commit
# index (synthetic, recorded by dits-page-seed: no media is pushed), signed in through the
# sign-in form as a browser would. Prints the best of 5 render times per page against the
# target of < 200 ms. (Git LFS has no pages to compare with.)
#
# Usage: bench/pages.sh [COMMITS] [ASSETS_PER_COMMIT]   (default 10000 10)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMITS=${1:-10000}
PER=${2:-10}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
cargo build --release -q -p dits-hub -p dits-page-seed
export PATH=$ROOT/target/release:$PATH
W=$BENCH_DIR/pages
bench_work_home "$W"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

data=$W/hub
token=$(dits-hub --data "$data" user add bench)
dits-hub --data "$data" repo create bench/film >/dev/null
t0=$(date +%s.%N)
recipe=$(dits-page-seed "$data" bench/film "$COMMITS" "$PER")
printf 'seeded %s commits x %s assets in %.1f s\n' "$COMMITS" "$PER" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
dits-hub --data "$data" serve --listen 127.0.0.1:0 >"$W/hub.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$W/hub.log" && break; sleep 0.1; done
port=$(sed -n 's/^dits-hub: listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$W/hub.log")
base=https://127.0.0.1:$port
jar=$W/cookies
form=$(curl -sk -c "$jar" "$base/ui/login")
csrf=$(printf '%s' "$form" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
curl -sk -b "$jar" -c "$jar" -o /dev/null --data-urlencode "token=$token" --data-urlencode "csrf=$csrf" "$base/ui/login"

best() { # path -> best of 5 seconds, and the status
  local best=999 code t
  for _ in 1 2 3 4 5; do
    read -r code t < <(curl -sk -b "$jar" -o /dev/null -w '%{http_code} %{time_total}\n' "$base$1")
    best=$(awk -v a="$t" -v b="$best" 'BEGIN { print (a < b) ? a : b }')
  done
  echo "$code $best"
}
printf '%-48s %6s %9s\n' page status ms
worst=0
for path in /ui/repos /ui/r/bench/film "/ui/r/bench/film?page=100" "/ui/r/bench/film?page=$(( (COMMITS + 49) / 50 ))" "/ui/r/bench/film/asset/$recipe" \
    /ui/r/bench/film/locks /ui/r/bench/film/storage; do
  read -r code secs < <(best "$path")
  ms=$(awk -v s="$secs" 'BEGIN { printf "%.1f", s * 1000 }')
  printf '%-48s %6s %9s\n' "${path:0:48}" "$code" "$ms"
  worst=$(awk -v a="$ms" -v b="$worst" 'BEGIN { print (a > b) ? a : b }')
done
printf 'slowest page: %s ms (target < 200 ms)\n' "$worst"
