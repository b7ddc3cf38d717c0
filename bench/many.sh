#!/usr/bin/env bash
# Many small files, Dits vs Git LFS in one run: 1,000 distinct one-second ~1 MB clips.
#   - `git add .` of all of them (target: Dits >= 2x LFS);
#   - `git status` after the commit, touching nothing (target >= 2x);
#   - `git status` after `touch` of every file (content unchanged, so Git re-runs the clean
#     filter on each; Dits must not re-chunk: content it cleaned before is answered from
#     its pointer cache);
#   - clone + checkout over loopback: Dits from `dits-hub serve`, Git LFS from Giftless
#     (target >= 2x); the first push of both is printed beside it.
# Prints a markdown table; rows also go to $BENCH_ROWS for bench/targets.sh.
#
# Usage: bench/many.sh [FILES]   (default 1000)
# Env:   BENCH_DIR (default target/bench; tmpfs such as /dev/shm/dits-bench measures the
#        tools rather than the disk)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-1000}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"
. "$ROOT/bench/lib.sh"
bench_need ffmpeg git-lfs jq curl
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
export PATH=$ROOT/target/release:$PATH
CLIPS=$(bench_many_clips "$N")
BYTES=$(cat "$CLIPS"/*.mp4 | wc -c)

W=$BENCH_DIR/many
rm -rf "$W"; mkdir -p "$W"
bench_git_home
git config --global credential.helper "store --file=$W/credentials"
(cd "$W" && git-dits install >/dev/null && git lfs install --skip-repo >/dev/null)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
bench_hub "$W/hub" "$W/hub.log"
pids+=("$HUB_PID")
bench_giftless "$W"
pids+=("$GIFTLESS_PID")
git init -q --bare "$W/lfs-remote.git"

declare -A ADD STATUS TOUCHED PUSH CLONE
for tool in dits lfs; do
  git init -q "$W/src-$tool"
  cd "$W/src-$tool"
  if [ $tool = dits ]; then
    git dits track '*.mp4' >/dev/null; git remote add origin "$HUB_URL"
  else
    git lfs track '*.mp4' >/dev/null; git config -f .lfsconfig lfs.url "$GIFTLESS_URL/bench/many"
    git remote add origin "$W/lfs-remote.git"
  fi
  git add .gitattributes .lfsconfig 2>/dev/null || git add .gitattributes
  git commit -qm attrs
  cp "$CLIPS"/*.mp4 .
  cat ./*.mp4 >/dev/null
  # Git's racy-entry check works in whole seconds here: a file written in the second the
  # index is written gets re-cleaned by the next `git status`. Waiting out the second keeps
  # that lottery out of the status row (the touched row below measures re-cleaning).
  sleep 1
  ADD[$tool]=$(bench_secs git add .)
  git commit -qm clips
  STATUS[$tool]=$(bench_secs git status --porcelain)
  [ -z "$(git status --porcelain)" ] || { echo "$tool: tree not clean after commit" >&2; exit 1; }
  touch ./*.mp4
  TOUCHED[$tool]=$(bench_secs git status --porcelain)
  PUSH[$tool]=$(bench_secs git push -q origin main)
  cd "$W"
  if [ $tool = dits ]; then url=$HUB_URL; else url=$W/lfs-remote.git; fi
  CLONE[$tool]=$(bench_secs git clone -q "$url" "clone-$tool")
  cmp <(cat "$W/clone-$tool"/*.mp4) <(cat "$CLIPS"/*.mp4)
done

printf '\n%d clips, %.0f MB in all, in %s (%s); Dits hub (embedded) vs Git LFS (Giftless 0.6.2) on loopback\n\n' \
  "$N" "$(awk -v b="$BYTES" 'BEGIN { print b / 1e6 }')" "$W" "$(df --output=fstype "$W" | tail -1)"
echo '| step | Dits s | LFS s | Dits vs LFS | target |'
echo '|---|---:|---:|---:|---|'
for step in add status touched push clone; do
  case $step in
    add) d=${ADD[dits]}; l=${ADD[lfs]}; label='`git add .`'; min=2 ;;
    status) d=${STATUS[dits]}; l=${STATUS[lfs]}; label='`git status`, nothing touched'; min=2 ;;
    touched) d=${TOUCHED[dits]}; l=${TOUCHED[lfs]}; label='`git status` after `touch` of every file'; min=- ;;
    push) d=${PUSH[dits]}; l=${PUSH[lfs]}; label='first push'; min=- ;;
    clone) d=${CLONE[dits]}; l=${CLONE[lfs]}; label='clone + checkout'; min=2 ;;
  esac
  r=$(awk -v a="$d" -v b="$l" 'BEGIN { printf "%.2f", b / (a > 0 ? a : 0.005) }')
  t=-; met=-; [ "$min" = - ] || { t=">= ${min}x"; met=$(bench_met "$r" "$min"); }
  echo "| $label | $d | $l | ${r}x | $t |"
  bench_row "$N files of ~1 MB" "$label" "$d s" "$l s" "${r}x" "$t" "$met"
done
