#!/usr/bin/env bash
# Runs the deployment's images together and pushes and clones through them: PostgreSQL,
# Redis and S3 (moto) containers, two hub containers on them and a worker container;
# a clip pushed through hub A, cloned through hub B byte-identical, and its proxy (made
# by the worker container's FFmpeg) fetched through hub B.
#
# The containers share the host's network (this sandbox has no container networking),
# so the services listen on spare ports: PostgreSQL 15432, Redis 16379, S3 15000, hubs
# 17443 and 17444. Needs deploy/build-images.sh first, and git-dits / git-remote-dits on
# PATH (cargo build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runtime=${RUNTIME:-runc}
ulimits=${ULIMITS:---ulimit nofile=1024:1024 --ulimit nproc=4096:4096}
run() { podman --runtime "$runtime" run -d --network host $ulimits "$@" >/dev/null; }
names=(dits-postgres dits-redis dits-s3 dits-hub-a dits-hub-b dits-worker)
cleanup() { podman rm -f "${names[@]}" >/dev/null 2>&1 || true; }
cleanup
trap cleanup EXIT

run --name dits-postgres -e PGPORT=15432 localhost/dits-postgres:dev
run --name dits-redis localhost/dits-redis:dev redis-server --port 16379 --save "" --appendonly no
run --name dits-s3 localhost/dits-s3:dev sh -c '/opt/moto/bin/moto_server -H 127.0.0.1 -p 15000 & for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:15000/ && break; sleep 0.1; done; curl -s -X PUT http://127.0.0.1:15000/dits-objects >/dev/null; wait'
env=(-e DITS_HUB_METADATA=postgres://dits@127.0.0.1:15432/dits -e DITS_HUB_LOCKS=redis://127.0.0.1:16379
     -e DITS_HUB_OBJECTS=s3://dits-objects -e AWS_ENDPOINT_URL=http://127.0.0.1:15000 -e AWS_ALLOW_HTTP=true
     -e AWS_ACCESS_KEY_ID=dits -e AWS_SECRET_ACCESS_KEY=dits-secret -e AWS_REGION=us-east-1
     -e DITS_HUB_TLS_CERT=/etc/dits/tls/cert.pem -e DITS_HUB_TLS_KEY=/etc/dits/tls/key.pem
     -v "$here/tls:/etc/dits/tls:ro")
for _ in $(seq 100); do podman exec dits-postgres psql -p 15432 -U dits -d dits -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
run --name dits-hub-a "${env[@]}" -e DITS_HUB_LISTEN=127.0.0.1:17443 localhost/dits-hub:dev serve --workers 0 --transcode
run --name dits-hub-b "${env[@]}" -e DITS_HUB_LISTEN=127.0.0.1:17444 localhost/dits-hub:dev serve --workers 0 --transcode
run --name dits-worker "${env[@]}" localhost/dits-worker:dev worker --lease 30s
for port in 17443 17444; do
  for i in $(seq 150); do
    curl -skf "https://127.0.0.1:$port/readyz" >/dev/null && break
    [ "$i" = 150 ] && { podman logs dits-hub-a 2>&1 | tail -20; echo "hub on $port never ready" >&2; exit 1; }
    sleep 0.2
  done
done
echo "== both hubs ready: $(curl -sk https://127.0.0.1:17444/readyz)"

token=$(podman exec dits-hub-a dits-hub user add alice)
podman exec dits-hub-a dits-hub repo create alice/film >/dev/null
work=$(mktemp -d)
export HOME=$work GIT_CONFIG_NOSYSTEM=1 GIT_DITS_TRUST_ON_FIRST_USE=1
git config --global user.name smoke && git config --global user.email smoke@dits.invalid
git config --global credential.helper store
printf 'dits://alice:%s@127.0.0.1:17443\ndits://alice:%s@127.0.0.1:17444\n' "$token" "$token" > "$HOME/.git-credentials"
git init -q -b main "$work/a"
cd "$work/a"
git dits install >/dev/null
git dits track '*.mp4' >/dev/null
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine -t 4 \
  -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest clip.mp4
git add . && git commit -qm clip
git remote add origin dits://127.0.0.1:17443/alice/film
git push -q origin main
echo "== pushed through hub A"
git clone -q dits://127.0.0.1:17444/alice/film "$work/b"
cmp clip.mp4 "$work/b/clip.mp4"
echo "== cloned through hub B, byte-identical"
for i in $(seq 300); do
  podman exec dits-hub-a dits-hub jobs | grep -q 'transcode.*done' && break
  [ "$i" = 300 ] && { podman exec dits-hub-a dits-hub jobs; podman logs dits-worker 2>&1 | tail; exit 1; }
  sleep 0.5
done
cd "$work/b"
git dits proxy clip.mp4 --into proxies
ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height -of csv=p=0 proxies/clip.mp4
echo "== proxy made by the worker container, fetched through hub B"
echo "smoke ok"
