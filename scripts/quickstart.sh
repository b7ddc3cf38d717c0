#!/usr/bin/env bash
# The main job, end to end on this machine, on the embedded hub: build and install git-dits
# and dits-hub, start a hub (SQLite + a local directory), create a user and a repository,
# make a clip with ffmpeg, track it, commit, push, clone elsewhere (media fetched on
# checkout), check out byte-identical, push an edit that sends only new chunks.
# Everything happens in a temp directory; the hub is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ffmpeg >/dev/null || { echo "installing ffmpeg" >&2; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; }
# The client (git-dits, git-remote-dits) and the hub are separate packages: a client
# install compiles none of the server crates.
for package in git-dits git-remote-dits dits-hub; do
  cargo install --quiet --locked --path "$package" --root "${DITS_PREFIX:-$HOME/.local}"
done
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

echo "--- starting the embedded hub"
hub_log="$work/hub.log"
dits-hub --data "$work/hub-data" serve --listen 127.0.0.1:0 >"$hub_log" 2>&1 &
hub_pid=$!
trap 'kill $hub_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q fingerprint "$hub_log" && break; sleep 0.1; done
cat "$hub_log"
port=$(sed -n 's/^dits-hub: listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$hub_log")
fingerprint=$(sed -n 's/^dits-hub: certificate fingerprint //p' "$hub_log")
token=$(dits-hub --data "$work/hub-data" user add editor)
dits-hub --data "$work/hub-data" repo create editor/film
url="dits://127.0.0.1:$port/editor/film"
# Trust the hub's certificate and keep the token where Git keeps credentials (this repo only).
git config "dits.dits://127.0.0.1:$port.fingerprint" "$fingerprint"
git config credential.helper "store --file=$work/credentials"
printf 'protocol=dits\nhost=127.0.0.1:%s\nusername=editor\npassword=%s\n\n' "$port" "$token" \
  | git -c credential.helper="store --file=$work/credentials" credential approve
git remote add origin "$url"
echo "--- git push origin main"; git push -u origin main

cd "$work"
echo "--- git clone $url (elsewhere)"
git -c "dits.dits://127.0.0.1:$port.fingerprint=$fingerprint" \
    -c credential.helper="store --file=$work/credentials" clone -q --no-checkout "$url" film-clone
cd film-clone
git config "dits.dits://127.0.0.1:$port.fingerprint" "$fingerprint"
git config credential.helper "store --file=$work/credentials"
# With a global `git dits install` this step is not needed; the quickstart leaves your
# global config alone.
git dits install --local && git checkout -q main
cmp clip.mp4 "$work/clip-retitled.mp4" && echo "--- clone checked out byte-identical"
ffmpeg -y -loglevel error -i clip.mp4 -c copy -movflags +faststart "$work/clip-faststart.mp4"
cp "$work/clip-faststart.mp4" clip.mp4 && git add clip.mp4 && git commit -q -m faststart
echo "--- pushing a faststart remux sends only new chunks:"; git push
