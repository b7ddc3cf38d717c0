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
