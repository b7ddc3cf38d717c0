#!/usr/bin/env bash
# Every test, then the hub and lock end-to-end tests a second time against the scale-out
# backends: PostgreSQL and Redis on this machine, and moto's S3 server on loopback (from
# target/moto-venv). scripts/test-deps.sh installs and starts what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh

cargo test --workspace

echo "== deployment files against the dits-hub they run"
python3 deploy/check.py target/debug/dits-hub

moto=target/moto-venv/bin/moto_server
[ -x "$moto" ] || moto=moto_server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$moto" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
drop_test_databases() {
  psql -h 127.0.0.1 -U root -d postgres -tAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'dits\_t\_%'" |
    while read -r db; do psql -h 127.0.0.1 -U root -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done
}
trap 'kill $moto_pid 2>/dev/null || true; drop_test_databases' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
drop_test_databases

echo "== hub, lock, key, lifecycle, worker, project-index, pages and Git-host tests again, on PostgreSQL + Redis + S3 (moto on port $port)"
DITS_TEST_BACKENDS=scale DITS_TEST_S3_ENDPOINT="http://127.0.0.1:$port" \
  cargo test -p dits-tests --test e2e -- hub:: locks:: encryption::a_member \
    encryption::after_a_revocation encryption::repositories_in_one_key_group lifecycle:: \
    workers:: projects::a_clone_elsewhere web:: adoption::
