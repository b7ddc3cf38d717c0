#!/usr/bin/env bash
# Builds the Dits images locally, with no registry: a Debian bookworm base made with
# debootstrap and imported into podman, then dits-hub, dits-worker (with FFmpeg) and the
# compose stack's PostgreSQL, Redis and S3 (moto) images on top of it.
#
#   deploy/build-images.sh            # all images, tagged localhost/dits-*:dev
#
# Set RUNTIME (default runc) and ULIMITS for sandboxes where crun cannot set rlimits or
# runs on hybrid cgroups (see deploy/README.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rootfs=${DITS_BASE_ROOTFS:-$root/target/images/bookworm}
runtime=${RUNTIME:-runc}
ulimits=${ULIMITS:---ulimit nofile=1024:1024 --ulimit nproc=4096:4096}
podman_build() { podman --runtime "$runtime" build --network host $ulimits "$@"; }

if ! podman image exists localhost/dits-base:bookworm; then
  if [ ! -x "$rootfs/bin/sh" ]; then
    mkdir -p "$(dirname "$rootfs")"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian
  fi
  tar -C "$rootfs" -c . | podman import - localhost/dits-base:bookworm
fi

cargo build --release -p dits-hub --manifest-path "$root/Cargo.toml"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$root/target/release/dits-hub" "$context/"
# The release profile keeps debug info for profiling; the image does not need it.
strip --strip-debug "$context/dits-hub"
podman_build -f "$here/Containerfile.hub" -t localhost/dits-hub:dev "$context"
podman_build -f "$here/Containerfile.worker" -t localhost/dits-worker:dev "$context"
# The build host's extra CAs (an egress proxy's), for the one image that uses PyPI.
rm -rf "$here/services/ca" && mkdir -p "$here/services/ca"
cp /usr/local/share/ca-certificates/*.crt "$here/services/ca/" 2>/dev/null || true
for service in postgres redis s3; do
  podman_build -f "$here/services/Containerfile.$service" -t "localhost/dits-$service:dev" "$here/services"
done

# One certificate for both hubs of the compose stack (clients pin one fingerprint).
if [ ! -f "$here/tls/cert.pem" ]; then
  mkdir -p "$here/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=dits-hub" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$here/tls/key.pem" -out "$here/tls/cert.pem" 2>/dev/null
  chmod 644 "$here/tls/key.pem"
fi
podman images --filter reference='localhost/dits-*'
