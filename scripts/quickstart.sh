#!/usr/bin/env bash
# The main job, end to end on this machine: build and install git-dits, make a sample clip
# with ffmpeg, track it in a fresh repository, commit, delete it, check it out again
# byte-identical, and show what Dits stored. Everything happens in a temp directory.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ffmpeg >/dev/null || { echo "installing ffmpeg" >&2; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; }
cargo install --quiet --path git-dits --root "${DITS_PREFIX:-$HOME/.local}"
export PATH="${DITS_PREFIX:-$HOME/.local}/bin:$PATH"

# A fresh machine may have no Git identity; commits here need one.
if [ -z "$(git config user.name || true)" ]; then
  export GIT_AUTHOR_NAME="Dits quickstart" GIT_COMMITTER_NAME="Dits quickstart"
  export GIT_AUTHOR_EMAIL=quickstart@dits.invalid GIT_COMMITTER_EMAIL=quickstart@dits.invalid
fi

work=$(mktemp -d)
echo "working in $work"
ffmpeg -y -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440 \
  -t 10 -c:v libx264 -preset veryfast -g 25 -pix_fmt yuv420p -c:a aac -shortest "$work/clip.mp4"
ffmpeg -y -loglevel error -i "$work/clip.mp4" -c copy -metadata title="Director's cut" "$work/clip-retitled.mp4"

git init -q -b main "$work/film" && cd "$work/film"
git dits install --local
git dits track '*.mp4' '*.mov'
cp "$work/clip.mp4" clip.mp4
git add .gitattributes clip.mp4 && git commit -q -m "first cut"
echo "--- what Git stores for clip.mp4:"; git cat-file -p HEAD:clip.mp4
cp "$work/clip-retitled.mp4" clip.mp4
git add clip.mp4 && git commit -q -m "retitle"
echo "--- git dits show clip.mp4:"; git dits show clip.mp4
rm clip.mp4 && git checkout -- clip.mp4
cmp clip.mp4 "$work/clip-retitled.mp4" && echo "--- checkout is byte-identical"
git dits fsck
