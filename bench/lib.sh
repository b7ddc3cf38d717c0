# Shared by the bench scripts: the large test clip, made once per length and cached.
# bench_clip SECS -> prints the path of a 1080p H.264 (80 Mb/s) + AAC clip of SECS seconds.
bench_clip() {
  local clip=$BENCH_DIR/clip-1080p-${1}s.mp4
  if [ ! -f "$clip" ]; then
    echo "generating $clip (1080p H.264 + AAC, ${1}s) ..." >&2
    ffmpeg -y -loglevel error \
      -f lavfi -i "testsrc2=size=1920x1080:rate=25,noise=alls=12:allf=t" \
      -f lavfi -i "sine=frequency=440:sample_rate=48000" \
      -t "$1" -c:v libx264 -preset ultrafast -b:v 80M -maxrate 80M -bufsize 160M -g 50 -pix_fmt yuv420p \
      -c:a aac -b:a 192k -shortest "$clip.tmp.mp4"
    mv "$clip.tmp.mp4" "$clip"
  fi
  echo "$clip"
}

# bench_edits_dir SECS -> the directory holding the edits of that clip.
bench_edits_dir() {
  local dir=$BENCH_DIR/edits-${1}s
  mkdir -p "$dir"
  echo "$dir"
}

# bench_edit CLIP SECS NAME -> makes (once) and prints the path of an ffmpeg edit of CLIP:
# faststart, metadata, trim, audio-swap, no-audio, second-audio or subtitles (.mp4).
bench_edit() {
  local clip=$1 secs=$2 name=$3 dir out
  dir=$(bench_edits_dir "$secs")
  out=$dir/$name.mp4
  if [ ! -f "$out" ]; then
    local tone=(-f lavfi -i "sine=frequency=880:sample_rate=48000:duration=$secs")
    local args
    case $name in
      faststart) args=(-i "$clip" -c copy -movflags +faststart) ;;
      metadata) args=(-i "$clip" -c copy -metadata title="Director's cut") ;;
      trim) args=(-ss 10 -i "$clip" -c copy) ;;
      audio-swap) args=(-i "$clip" "${tone[@]}" -map 0:v -map 1:a -c:v copy -c:a aac -b:a 192k) ;;
      no-audio) args=(-i "$clip" -an -c:v copy) ;;
      second-audio) args=(-i "$clip" "${tone[@]}" -map 0:v -map 0:a -map 1:a -c:v copy -c:a:0 copy -c:a:1 aac -b:a:1 192k) ;;
      subtitles)
        printf '1\n00:00:01,000 --> 00:00:05,000\nHello\n\n2\n00:00:10,000 --> 00:00:20,000\nWorld\n' > "$dir/subs.srt"
        args=(-i "$clip" -i "$dir/subs.srt" -map 0 -map 1 -c copy -c:s mov_text) ;;
      *) echo "bench_edit: unknown edit $name" >&2; return 1 ;;
    esac
    ffmpeg -y -loglevel error "${args[@]}" -f mp4 "$out.tmp"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# bench_hub DATA LOG [SERVE ARGS...]: starts `dits-hub serve` on a free loopback port in the
# background, creates user `bench` owning bench/film, pins the hub's certificate and stores
# the token in Git's credential helper (HOME and credential.helper must be set already).
# Sets HUB_PID, HUB_PORT, HUB_FP, HUB_TOKEN and HUB_URL (dits://…/bench/film).
bench_hub() {
  local data=$1 log=$2
  shift 2
  dits-hub --data "$data" serve --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  HUB_PID=$!
  for _ in $(seq 100); do grep -q "packs in" "$log" && break; sleep 0.1; done
  HUB_PORT=$(sed -n 's/^dits-hub: listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  HUB_FP=$(sed -n 's/^dits-hub: certificate fingerprint //p' "$log")
  git config --global "dits.dits://127.0.0.1:$HUB_PORT.fingerprint" "$HUB_FP"
  HUB_TOKEN=$(dits-hub --data "$data" user add bench)
  dits-hub --data "$data" repo create bench/film >/dev/null
  printf 'protocol=dits\nhost=127.0.0.1:%s\nusername=bench\npassword=%s\n\n' "$HUB_PORT" "$HUB_TOKEN" \
    | git credential approve
  HUB_URL=dits://127.0.0.1:$HUB_PORT/bench/film
}

# bench_work_home W [DIR...]: a fresh work directory W (and W/DIR...) with a HOME of its
# own inside: a Git identity, credentials stored in W/credentials, nothing of the user's
# or the system's config.
bench_work_home() {
  local w=$1
  shift
  rm -rf "$w"; mkdir -p "$w/home"
  for d in "$@"; do mkdir -p "$w/$d"; done
  export HOME=$w/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
  git config --global user.name bench; git config --global user.email bench@dits.invalid
  git config --global init.defaultBranch main
  git config --global credential.helper "store --file=$w/credentials"
}

# bench_git_home: a HOME of the benchmark's own under $BENCH_DIR, with a Git identity and
# nothing of the user's or the system's config.
bench_git_home() {
  export HOME=$BENCH_DIR/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
  mkdir -p "$HOME"
  git config --global user.name bench; git config --global user.email bench@dits.invalid
  git config --global init.defaultBranch main
}

# bench_filter_repo KIND DIR [FILE...]: a fresh repository at DIR whose *.mp4 go through
# KIND's filter (dits: $DITS filter-process; lfs: Git LFS; null: $NULL), with $CLIP copied
# in as clip.mp4 (not added). clip.mp4 and FILE... are read once so every contender starts
# from the same warm page cache.
bench_filter_repo() {
  local kind=$1 dir=$2
  shift 2
  rm -rf "$dir"; git init -q "$dir"; cd "$dir"
  case $kind in
    dits) git config filter.dits.process "$DITS filter-process"; git config filter.dits.required true
          echo '*.mp4 filter=dits diff=dits merge=binary -text' > .gitattributes ;;
    lfs)  git lfs install --local >/dev/null; git lfs track '*.mp4' >/dev/null ;;
    null) git config filter.null.process "$NULL"; git config filter.null.required true
          echo '*.mp4 filter=null -text' > .gitattributes ;;
  esac
  git add .gitattributes; git commit -qm attrs
  cp "$CLIP" clip.mp4
  cat clip.mp4 "$@" > /dev/null
  cd "$ROOT"
}

# bench_row SECTION MEASURE DITS PEER RATIO TARGET MET: one row of the summary table that
# bench/targets.sh prints, appended to $BENCH_ROWS when it is set (a no-op otherwise, so
# each script also runs alone). MET is yes, no or - (no target for that row).
bench_row() {
  [ -n "${BENCH_ROWS:-}" ] || return 0
  local IFS='|'
  echo "$*" >>"$BENCH_ROWS"
}

# bench_met RATIO MIN -> yes when RATIO >= MIN, else no.
bench_met() { awk -v r="$1" -v m="$2" 'BEGIN { print (r + 0 >= m + 0) ? "yes" : "no" }'; }

# bench_giftless DIR [S3_ENDPOINT BUCKET PREFIX]: installs Giftless (a real Git LFS server,
# from PyPI) into a venv under $BENCH_DIR once, starts it on a free loopback port with 8
# waitress threads and sets GIFTLESS_PID and GIFTLESS_URL (http://127.0.0.1:PORT, LFS URL
# root; append OWNER/REPO). Storage: a local directory, DIR/lfs-store; or, given an S3
# endpoint, the bucket through Giftless's basic_external adapter, which hands the LFS
# client presigned S3 URLs (the AWS_* credentials come from the environment).
bench_giftless() {
  local dir=$1 venv=$BENCH_DIR/giftless-venv port
  # Giftless declares no dependencies in its wheel; these are the ones it imports. PyJWT
  # 2.10 rejects the null subject Giftless puts in its pre-authorised upload tokens.
  if [ ! -x "$venv/bin/waitress-serve" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q giftless==0.6.2 waitress flask figcan pyyaml python-dotenv webargs \
      flask-marshmallow flask-classful 'pyjwt<2.10' cachetools python-dateutil marshmallow-enum typing-extensions
  fi
  if [ $# -ge 4 ] && ! "$venv/bin/python" -c 'import boto3' 2>/dev/null; then
    "$venv/bin/pip" install -q boto3
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local transfer
  if [ $# -ge 4 ]; then
    transfer="factory: giftless.transfer.basic_external:factory
    options:
      storage_class: giftless.storage.amazon_s3:AmazonS3Storage
      storage_options: {bucket_name: $3, path_prefix: $4, endpoint: \"$2\"}"
  else
    transfer="factory: giftless.transfer.basic_streaming:factory
    options:
      storage_class: giftless.storage.local_storage:LocalStorage
      storage_options:
        path: $dir/lfs-store"
  fi
  cat >"$dir/giftless.yaml" <<YAML
AUTH_PROVIDERS:
  - factory: giftless.auth.jwt:factory
    options: {algorithm: HS256, private_key: bench-only-secret-bench-only-secret}
  - giftless.auth.allow_anon:read_write
PRE_AUTHORIZED_ACTION_PROVIDER:
  factory: giftless.auth.jwt:factory
  options: {algorithm: HS256, private_key: bench-only-secret-bench-only-secret}
TRANSFER_ADAPTERS:
  basic:
    $transfer
YAML
  (cd "$dir" && GIFTLESS_CONFIG_FILE=$dir/giftless.yaml exec "$venv/bin/waitress-serve" \
    --listen="127.0.0.1:$port" --threads=8 giftless.wsgi_entrypoint:app) >"$dir/giftless.log" 2>&1 &
  GIFTLESS_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  GIFTLESS_URL=http://127.0.0.1:$port
}

# bench_secs CMD...: runs CMD (output to $BENCH_DIR/last.log, shown if it fails) after
# `sync`, so no step pays for an earlier one's dirty-page writeback; prints its seconds.
bench_secs() {
  sync
  local s
  s=$(date +%s.%N)
  "$@" >"$BENCH_DIR/last.log" 2>&1 || { cat "$BENCH_DIR/last.log" >&2; return 1; }
  awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}

# bench_many_clips N -> prints a directory holding N distinct ~1 MB MP4 clips (640x360
# H.264 at 8 Mb/s with a keyframe each second, cut into one-second files), made once.
bench_many_clips() {
  local dir=$BENCH_DIR/many-$1
  if [ ! -f "$dir/.done" ]; then
    echo "generating $1 one-second clips in $dir ..." >&2
    rm -rf "$dir"; mkdir -p "$dir"
    ffmpeg -y -loglevel error \
      -f lavfi -i "testsrc2=size=640x360:rate=25,noise=alls=20:allf=t" \
      -f lavfi -i "sine=frequency=440:sample_rate=48000" \
      -t "$1" -c:v libx264 -preset ultrafast -b:v 8M -maxrate 8M -bufsize 8M -g 25 -keyint_min 25 \
      -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k -shortest \
      -f segment -segment_time 1 -reset_timestamps 1 "$dir/clip-%04d.mp4"
    touch "$dir/.done"
  fi
  echo "$dir"
}

# bench_need CMD[:PACKAGE]...: installs, in one apt run, the Debian packages of the commands
# not on PATH (PACKAGE defaults to CMD; CMD may be a path such as /usr/bin/time).
bench_need() {
  local want=() c
  for c in "$@"; do command -v "${c%%:*}" >/dev/null 2>&1 || want+=("${c#*:}"); done
  [ ${#want[@]} -eq 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null; }
}
