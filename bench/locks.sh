#!/usr/bin/env bash
# Lock latency on loopback against the embedded hub (SQLite, synchronous=FULL):
#   - dits-lock-bench: lock+unlock round trips per second and per-operation p50/p99 with 1
#     and 16 concurrent clients, each on its own QUIC connection (target: p99 < 20 ms);
#   - the CLI end to end (`git dits lock` then `git dits unlock`, new process and
#     connection each time), the number comparable with Git LFS's 1.5–5.5 s per lock
#     reported in git-lfs issue #2978.
#
# Usage: bench/locks.sh [ROUNDS]   (default 500 per client)
#        DITS_HUB_LOCKS=redis://127.0.0.1:6379 bench/locks.sh   (the Redis backend)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-500}
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub -p dits-lock-bench
export PATH=$ROOT/target/release:$PATH
W=$(mktemp -d)
trap 'kill $hub 2>/dev/null || true; rm -rf "$W"' EXIT
export HOME=$W/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"
git config --global user.name bench; git config --global user.email bench@dits.invalid
git config --global init.defaultBranch main
git config --global credential.helper "store --file=$W/credentials"
(cd "$W" && git-dits install >/dev/null 2>&1)

. "$ROOT/bench/lib.sh"
bench_hub "$W/hub" "$W/hub.log"
hub=$HUB_PID URL=$HUB_URL TOKEN=$HUB_TOKEN FP=$HUB_FP

echo "hub locks: ${DITS_HUB_LOCKS:-embedded SQLite (WAL, synchronous=FULL)}, loopback"
for clients in 1 16; do
  dits-lock-bench "$URL" "$TOKEN" "$FP" "$clients" "$ROUNDS"
done

# The CLI, end to end, in a real repository (the hub is pinned and the token stored).
git init -q "$W/repo" && cd "$W/repo"
git dits track --lockable '*.mov' >/dev/null
head -c 1000000 /dev/urandom > clip.mov
git add . && git commit -qm clip && git remote add origin "$URL"
N=20
start=$(date +%s.%N)
for _ in $(seq $N); do git dits lock clip.mov >/dev/null; git dits unlock clip.mov >/dev/null; done
awk -v s="$start" -v e="$(date +%s.%N)" -v n=$N 'BEGIN { printf "CLI: git dits lock + git dits unlock, %d pairs: %.1f ms per command (new process, connection and credential lookup each)\n", n, (e - s) * 1000 / (2 * n) }'
