#!/usr/bin/env bash
# Push and clone over loopback, Dits vs Git LFS, in one run on the same files:
#   - first push of a ~400 MB 1080p clip: seconds and MB/s (target: Dits >= 1.5x LFS);
#   - clone + checkout of that commit elsewhere: seconds and MB/s, against Giftless (target:
#     >= 8x LFS) and against Git LFS's standalone file transfer from a local bare repository
#     (its ceiling with no server at all; target >= 2x);
#   - bytes sent for each later version (metadata edit, trim, audio swap), each pushed on
#     top of the previous one (target: metadata-edit push <= 1% of the file).
#
# Dits pushes to `dits-hub serve` (embedded default: SQLite + local directory). Git LFS
# pushes to Giftless (target: Dits >= 1.5x) (a real Git LFS server, from PyPI, local-storage backend, served by
# waitress with 8 threads) with the Git objects in a bare repository on the same disk.
#
# Bytes sent: Dits = media bytes the hub received (its /api/v1/stats counter) plus the Git
# pack; LFS = bytes the LFS server stored (LFS sends every new object whole) plus the Git
# pack (counted the same way for both: `git count-objects` growth is not used).
#
# Usage: bench/push.sh [SECONDS_OF_VIDEO]   (default 40 s ≈ 400 MB)
# Env:   BENCH_DIR (default target/bench)
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
bench_need ffmpeg git-lfs jq curl
cargo build --release -q -p git-dits -p git-remote-dits -p dits-hub
export PATH=$ROOT/target/release:$PATH

CLIP=$(bench_clip "$SECS")
VERSIONS=(metadata trim audio-swap)
for v in "${VERSIONS[@]}"; do bench_edit "$CLIP" "$SECS" "$v" >/dev/null; done
E=$(bench_edits_dir "$SECS")
SIZE=$(stat -c %s "$CLIP")

W=$BENCH_DIR/push
bench_work_home "$W"
# Global filter config only, run outside any repository so no hooks land anywhere.
(cd "$W" && git-dits install >/dev/null && git lfs install --skip-repo >/dev/null)

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# --- servers
bench_hub "$W/hub" "$W/hub.log"
pids+=("$HUB_PID")
DITS_URL=$HUB_URL
hub_media_in() { curl -sk "https://127.0.0.1:$HUB_PORT/api/v1/stats" | jq '.object_bytes_in'; }
hub_git_in() { curl -sk "https://127.0.0.1:$HUB_PORT/api/v1/stats" | jq '.git_bytes_in'; }

bench_giftless "$W"
pids+=("$GIFTLESS_PID")
git init -q --bare "$W/lfs-remote.git"
lfs_stored() { du -sb "$W/lfs-store" 2>/dev/null | cut -f1 || echo 0; }
git_pack_bytes() { # bare repo dir -> bytes in its packs + loose objects
  du -sb "$1/objects" | cut -f1
}

# --- source repositories
git init -q "$W/src-dits"
(cd "$W/src-dits" && git dits track '*.mp4' >/dev/null && git remote add origin "$DITS_URL" \
  && git add .gitattributes && git commit -qm attrs)
git init -q "$W/src-lfs"
(cd "$W/src-lfs" && git lfs track '*.mp4' >/dev/null && git config -f .lfsconfig lfs.url "$GIFTLESS_URL/bench/film" \
  && git remote add origin "$W/lfs-remote.git" && git add .gitattributes .lfsconfig && git commit -qm attrs)

# Each timed step starts after `sync` (bench_secs), so neither tool pays for the other's
# (or the setup's) dirty-page writeback: the hub fsyncs what it stores, Giftless does not.
secs() { bench_secs "$@"; }
mbps() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.1f", s / 1e6 / t }'; }

for tool in dits lfs; do (cd "$W/src-$tool" && cp "$CLIP" clip.mp4 && git add clip.mp4 && git commit -qm base); done

declare -A PUSH CLONE SENT
m0=$(hub_media_in); g0=$(hub_git_in)
PUSH[dits]=$(cd "$W/src-dits" && secs git push -q origin main)
SENT[dits,base]=$(( $(hub_media_in) - m0 + $(hub_git_in) - g0 ))
l0=$(lfs_stored); p0=$(git_pack_bytes "$W/lfs-remote.git")
PUSH[lfs]=$(cd "$W/src-lfs" && secs git push -q origin main)
SENT[lfs,base]=$(( $(lfs_stored) - l0 + $(git_pack_bytes "$W/lfs-remote.git") - p0 ))

CLONE[dits]=$(cd "$W" && secs git clone -q "$DITS_URL" clone-dits)
cmp "$W/clone-dits/clip.mp4" "$CLIP"
CLONE[lfs]=$(cd "$W" && secs git clone -q "$W/lfs-remote.git" clone-lfs)
cmp "$W/clone-lfs/clip.mp4" "$CLIP"
# Git LFS's standalone file transfer: a file:// remote whose LFS objects sit in the bare
# repository itself; `git clone` copies them with no server in between.
git init -q --bare "$W/lfs-file.git"
(cd "$W/src-lfs" && git -c lfs.url="file://$W/lfs-file.git" push -q "file://$W/lfs-file.git" main 2>"$W/last.log")
CLONE[lfs-file]=$(cd "$W" && GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=lfs.url GIT_CONFIG_VALUE_0="file://$W/lfs-file.git" \
  secs git clone -q "file://$W/lfs-file.git" clone-lfs-file)
cmp "$W/clone-lfs-file/clip.mp4" "$CLIP"

for v in "${VERSIONS[@]}"; do
  for tool in dits lfs; do (cd "$W/src-$tool" && cp "$E/$v.mp4" clip.mp4 && git add clip.mp4 && git commit -qm "$v"); done
  m0=$(hub_media_in); g0=$(hub_git_in)
  (cd "$W/src-dits" && git push -q origin main 2>"$W/last.log")
  SENT[dits,$v]=$(( $(hub_media_in) - m0 + $(hub_git_in) - g0 ))
  l0=$(lfs_stored); p0=$(git_pack_bytes "$W/lfs-remote.git")
  (cd "$W/src-lfs" && git push -q origin main 2>"$W/last.log")
  SENT[lfs,$v]=$(( $(lfs_stored) - l0 + $(git_pack_bytes "$W/lfs-remote.git") - p0 ))
done

printf 'clip: %s (%.1f MB), loopback, Dits hub (embedded) vs Git LFS (Giftless 0.6.2)\n\n' "$(basename "$CLIP")" "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')"
printf '%-22s %10s %10s %10s %10s %8s %8s\n' "" "Dits s" "Dits MB/s" "LFS s" "LFS MB/s" "ratio" "target"
MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.0f", s / 1e6 }')
for what in push clone clone-file; do
  case $what in
    push) d=${PUSH[dits]}; l=${PUSH[lfs]}; label="first push"; min=1.5; peer=Giftless ;;
    clone) d=${CLONE[dits]}; l=${CLONE[lfs]}; label="clone + checkout"; min=8; peer=Giftless ;;
    clone-file) d=${CLONE[dits]}; l=${CLONE[lfs-file]}; label="clone vs LFS file://"; min=2; peer="standalone file transfer" ;;
  esac
  r=$(awk -v a="$d" -v b="$l" 'BEGIN { printf "%.2f", b / a }')
  printf '%-22s %10s %10s %10s %10s %7sx %8s\n' "$label" "$d" "$(mbps "$d")" "$l" "$(mbps "$l")" "$r" ">= ${min}x"
  bench_row "transfer, $MB MB clip, loopback" "$label (LFS: $peer)" "$d s" "$l s" "${r}x" ">= ${min}x" "$(bench_met "$r" "$min")"
done
printf '(ratio = LFS time / Dits time)\n\n'
printf '%-12s %12s %14s %9s %14s %9s\n' version "size MB" "Dits sent" "% file" "LFS sent" "% file"
for v in base "${VERSIONS[@]}"; do
  f=$CLIP; [ "$v" = base ] || f=$E/$v.mp4
  fs=$(stat -c %s "$f")
  printf '%-12s %12.1f %14d %8.2f%% %14d %8.2f%%\n' "$v" "$(awk -v s="$fs" 'BEGIN { print s / 1e6 }')" \
    "${SENT[dits,$v]}" "$(awk -v a="${SENT[dits,$v]}" -v s="$fs" 'BEGIN { print a * 100 / s }')" \
    "${SENT[lfs,$v]}" "$(awk -v a="${SENT[lfs,$v]}" -v s="$fs" 'BEGIN { print a * 100 / s }')"
done
printf '(each version pushed on top of the previous; target: metadata <= 1%% of the file for Dits)\n'
pct=$(awk -v a="${SENT[dits,metadata]}" -v s="$(stat -c %s "$E/metadata.mp4")" 'BEGIN { printf "%.2f", a * 100 / s }')
bench_row "transfer, $MB MB clip, loopback" "push of a metadata edit, bytes sent (% of file)" "$pct%" \
  "$(awk -v a="${SENT[lfs,metadata]}" -v s="$(stat -c %s "$E/metadata.mp4")" 'BEGIN { printf "%.2f%%", a * 100 / s }')" - "<= 1%" \
  "$(awk -v p="$pct" 'BEGIN { print (p <= 1) ? "yes" : "no" }')"
