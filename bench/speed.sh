#!/usr/bin/env bash
# `git add` speed of one large 1080p H.264 + AAC clip, three ways in the same run:
#   dits  - git-dits filter-process (compare with the working file + hash + track split +
#           chunk + store, fsync'd)
#   lfs   - Git LFS
#   null  - a long-running filter that reads the content and answers a constant: the
#           ceiling for anything that goes through Git's filter pipe.
# Two adds per contender: the first add of the clip into an empty repository, then
# (after a commit) the re-add of the same clip with a metadata edit (ffmpeg stream copy).
# Prints a markdown table: seconds, MB/s, Dits/null and Dits/LFS speed ratios, peak RSS
# (largest process), and the load average beside it (the numbers are wall-clock).
#
# On a disk (not tmpfs) it also prints what the disk itself sustains with a flush at the
# end (`dd conv=fdatasync` of the clip), the bound for an add that makes its packs durable.
# Rows also go to $BENCH_ROWS for bench/targets.sh (targets: on tmpfs, first add >= 40% of
# null and >= 4x LFS, re-add >= 60% of null, peak RSS <= 64 MiB; on disk, first add >= 2x LFS).
#
# Usage: bench/speed.sh [SECONDS_OF_VIDEO]   (default 24 s ≈ 250 MB; 100 s ≈ 1 GB)
# Env:   BENCH_DIR (default target/bench; put it on tmpfs, e.g. /dev/shm/dits-bench, to
#        measure Dits rather than the disk), RUNS (default 3, best run is reported),
#        DITS_BIN (a git-dits binary to time instead of this checkout's, e.g. an older
#        build kept for a before/after comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-24}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
export GIT_CEILING_DIRECTORIES=$BENCH_DIR
mkdir -p "$BENCH_DIR"

. "$ROOT/bench/lib.sh"
bench_need ffmpeg git-lfs /usr/bin/time:time

cargo build --release -q -p git-dits -p dits-null-filter
DITS=${DITS_BIN:-$ROOT/target/release/git-dits}
NULL=$ROOT/target/release/dits-null-filter

CLIP=$(bench_clip "$SECS")
EDIT=$(bench_edit "$CLIP" "$SECS" metadata)
SIZE=$(stat -c %s "$CLIP")

bench_git_home
setup() { bench_filter_repo "$1" "$2" "$EDIT"; } # $1 = kind, $2 = repo dir

timed_add() { # $1 = repo -> "seconds peak_kib"
  ( cd "$1" && /usr/bin/time -f "%e %M" git add clip.mp4 ) 2>&1 | tail -1
}

# One run of a contender: first add, commit, re-add of the edit -> "t1 rss1 t2 rss2".
run_once() {
  local repo=$BENCH_DIR/repo-$1 first second
  setup "$1" "$repo"
  first=$(timed_add "$repo")
  ( cd "$repo" && git commit -qm v1 && cp "$EDIT" clip.mp4 )
  second=$(timed_add "$repo")
  echo "$first $second"
}

declare -A T1 R1 T2 R2
for kind in null dits lfs; do
  T1[$kind]=999999; T2[$kind]=999999; R1[$kind]=0; R2[$kind]=0
  for _ in $(seq "$RUNS"); do
    read -r t1 r1 t2 r2 < <(run_once "$kind")
    if awk -v a="$t1" -v b="${T1[$kind]}" 'BEGIN { exit !(a < b) }'; then T1[$kind]=$t1; R1[$kind]=$r1; fi
    if awk -v a="$t2" -v b="${T2[$kind]}" 'BEGIN { exit !(a < b) }'; then T2[$kind]=$t2; R2[$kind]=$r2; fi
  done
done

mbs() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.0f", s / 1e6 / t }'; }
pct() { awk -v n="$1" -v d="$2" 'BEGIN { printf "%.0f%%", n / d * 100 }'; }
ratio() { awk -v l="$1" -v d="$2" 'BEGIN { printf "%.2fx", l / d }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }

printf '\n`git add` of %s (%.1f MB) and its metadata edit, best of %s runs, in %s (%s)\n' \
  "$(basename "$CLIP")" "$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')" "$RUNS" "$BENCH_DIR" \
  "$(df --output=fstype "$BENCH_DIR" | tail -1)"
printf 'load average at the end: %s\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
echo '| contender | add | seconds | MB/s | vs null | Dits vs LFS | peak RSS |'
echo '|---|---|---:|---:|---:|---:|---:|'
for kind in dits lfs null; do
  for add in first re-add; do
    if [ "$add" = first ]; then t=${T1[$kind]}; r=${R1[$kind]}; tl=${T1[lfs]}; tn=${T1[null]}
    else t=${T2[$kind]}; r=${R2[$kind]}; tl=${T2[lfs]}; tn=${T2[null]}; fi
    vs_lfs=-; [ "$kind" = dits ] && vs_lfs=$(ratio "$tl" "$t")
    printf '| %s | %s | %.2f | %s | %s | %s | %s |\n' "$kind" "$add" "$t" "$(mbs "$t")" \
      "$(pct "$tn" "$t")" "$vs_lfs" "$(mib "$r")"
  done
done

FS=$(df --output=fstype "$BENCH_DIR" | tail -1)
MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.0f", s / 1e6 }')
SECTION="\`git add\`, $MB MB clip, $FS"
r_lfs=$(awk -v l="${T1[lfs]}" -v d="${T1[dits]}" 'BEGIN { printf "%.2f", l / d }')
if [ "$FS" = tmpfs ]; then
  for add in first re-add; do
    if [ $add = first ]; then t=${T1[dits]}; n=${T1[null]}; min=40; else t=${T2[dits]}; n=${T2[null]}; min=60; fi
    p=$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", n / t * 100 }')
    bench_row "$SECTION" "$add, MB/s (null filter's MB/s)" "$(mbs "$t")" "$(mbs "$n") (null)" "$p%" ">= $min% of null" "$(bench_met "$p" "$min")"
  done
  bench_row "$SECTION" "first add vs Git LFS, seconds" "${T1[dits]} s" "${T1[lfs]} s" "${r_lfs}x" ">= 4x" "$(bench_met "$r_lfs" 4)"
else
  # What the disk sustains for a write of the clip made durable once at the end.
  dd_s=$(bench_secs dd if="$CLIP" of="$BENCH_DIR/dd.out" bs=1M conv=fdatasync)
  rm -f "$BENCH_DIR/dd.out"
  printf '\n`dd conv=fdatasync` of the clip on this disk: %s s, %s MB/s\n' "$dd_s" "$(mbs "$dd_s")"
  bench_row "$SECTION" "first add vs Git LFS, seconds (dd conv=fdatasync: $(mbs "$dd_s") MB/s)" "${T1[dits]} s" "${T1[lfs]} s" "${r_lfs}x" ">= 2x" "$(bench_met "$r_lfs" 2)"
fi
rss=$(( (R1[dits] > R2[dits] ? R1[dits] : R2[dits]) / 1024 ))
bench_row "$SECTION" "peak RSS of the add" "$rss MiB" "$(( R1[lfs] / 1024 )) MiB" - "<= 64 MiB" "$( [ "$rss" -le 64 ] && echo yes || echo no)"
# For bench/targets.sh's comparison of MB/s across file sizes.
[ -z "${SPEED_MBS:-}" ] || echo "$FS $SIZE $(mbs "${T1[dits]}")" >>"$SPEED_MBS"
