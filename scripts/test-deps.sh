#!/usr/bin/env bash
# What the tests need, installed or started idempotently (a second run changes nothing):
# Debian packages (ffmpeg, git, git-lfs, curl, fuse3, melt, chromium, the PostgreSQL client), this machine's Redis
# and PostgreSQL started if they have stopped, and moto's S3 server from PyPI in
# target/moto-venv. scripts/test.sh runs this first, so a fresh Debian machine with Rust
# needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
# MLT's melt writes the project fixtures (and renders them) in the project-file tests.
command -v melt >/dev/null 2>&1 || missing+=(melt)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# deploy/check.py reads the compose file and Kubernetes manifests.
python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The pages are tested in Debian's Chromium, driven by playwright-core (npm, below).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# The migration tests build their history with the real Git LFS.
command -v git-lfs >/dev/null 2>&1 || missing+=(git-lfs)
fresh_postgres=no
if [ ! -d /etc/postgresql ]; then missing+=(postgresql); fresh_postgres=yes; fi
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
# The hub's Redis lock backend is tested against this machine's Redis; start it if it
# has stopped (the command this machine's services are started with).
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
# A PostgreSQL installed just now: the tests connect as root with trust auth on loopback,
# as on the machines CI runs on.
if [ "$fresh_postgres" = yes ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf)
  sed -i 's/^\(host.*127.0.0.1\/32 *\)[a-z0-9-]*$/\1trust/' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main reload
  su postgres -c "createuser -s root" 2>/dev/null || true
  su postgres -c "createdb -O root root" 2>/dev/null || true
  su postgres -c "createdb -O root test" 2>/dev/null || true
fi
# The scale-out tests use this machine's PostgreSQL (and start private clusters of it with
# its initdb); start the server if it has stopped, with the command it was started with.
if ! pg_isready -h 127.0.0.1 -q >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -q && break; sleep 0.2; done
fi
# A real S3-compatible server for the hub's S3 tests: moto's server, from PyPI.
if [ ! -x target/moto-venv/bin/moto_server ]; then
  mkdir -p target
  rm -rf target/moto-venv
  if ! python3 -m venv target/moto-venv >/dev/null 2>&1; then
    # Debian splits venv (ensurepip) into its own package.
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
    rm -rf target/moto-venv
    python3 -m venv target/moto-venv
  fi
  target/moto-venv/bin/pip install -q 'moto[server]'
fi
# OpenTimelineIO (PyPI) with its CMX 3600 and FCPXML adapters writes the project-file
# fixtures (.otio, .edl, .fcpxml) in the project tests.
if ! target/otio-venv/bin/python -c 'import opentimelineio, otio_cmx3600_adapter, otio_fcpx_xml_adapter' >/dev/null 2>&1; then
  rm -rf target/otio-venv
  python3 -m venv target/otio-venv
  target/otio-venv/bin/pip install -q opentimelineio otio-cmx3600-adapter otio-fcpx-xml-adapter
fi
# playwright-core drives /usr/bin/chromium in the browser tests (it downloads no browser).
if [ ! -f target/browser/node_modules/playwright-core/package.json ]; then
  mkdir -p target/browser
  (cd target/browser && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
fi
