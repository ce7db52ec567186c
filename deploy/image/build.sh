#!/usr/bin/env bash
# Build the alpha image without a Docker engine and check it from inside.
#
#   deploy/image/build.sh [IMAGE]          default IMAGE: localhost/alpha:<version>
#
# 1. a Debian bookworm rootfs from debootstrap (minbase + python3, python3-venv, ca-certificates),
#    imported once as the base image localhost/alpha-base:bookworm (FROM scratch + ADD rootfs.tar);
# 2. `buildah bud --isolation chroot` of ./Dockerfile on that base; pip gets the machine's CA
#    bundle as the build secret `pipcert` (package traffic may pass a TLS-intercepting proxy);
# 3. `buildah run --isolation chroot` inside the image, as its non-root user: `alpha --version`,
#    `alpha check` on the bundled demo strategy and on the image's default strategy.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt), ALPHA_IMAGE_WORK (scratch dir, default var/image),
# REBUILD_BASE=1 to remake the base image. Needs root (debootstrap, buildah storage).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/alpha/__init__.py")"
IMAGE="${1:-localhost/alpha:${VERSION}}"
BASE_IMAGE="localhost/alpha-base:bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
WORK="${ALPHA_IMAGE_WORK:-$ROOT/var/image}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "${REBUILD_BASE:-0}" = 1 ] || ! $SUDO buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    step "debootstrap bookworm into $WORK/rootfs"
    $SUDO rm -rf "$WORK/rootfs" "$WORK/base"
    mkdir -p "$WORK/base"
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR"
    $SUDO rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    step "importing the rootfs as $BASE_IMAGE"
    $SUDO tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/base/rootfs.tar" .
    printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' > "$WORK/base/Containerfile"
    $SUDO buildah bud --isolation chroot --layers=false -t "$BASE_IMAGE" \
        -f "$WORK/base/Containerfile" "$WORK/base"
    $SUDO rm -rf "$WORK/rootfs" "$WORK/base"
fi

step "buildah bud $IMAGE (base $BASE_IMAGE)"
$SUDO buildah bud --isolation chroot --pull=never --format docker \
    --secret "id=pipcert,src=$CA_BUNDLE" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT"

step "checking inside $IMAGE"
ctr="$($SUDO buildah from --pull=never "$IMAGE")"
trap '$SUDO buildah rm "$ctr" >/dev/null' EXIT
in_image() { $SUDO buildah run --isolation chroot "$ctr" -- "$@"; }
in_image id
in_image alpha --version
in_image alpha check /app/config/demo.yaml
in_image alpha check /etc/alpha/strategy.yaml
# The demo itself, as the image's user, the way the container runs it: a few seconds of the
# accelerated clock, the HEALTHCHECK command while it runs, then a clean stop. uid 10001 can write
# only to /var/lib/alpha and /tmp, so files it owns anywhere else would break a read-only root.
in_image sh -c '
    alpha run --config /etc/alpha/strategy.yaml --for 10h --log-format json > /tmp/run.log 2>&1 &
    pid=$!; sleep 5
    python3 -c "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ[\"ALPHA_HEALTHZ_URL\"], timeout=4).status == 200 else 1)"
    health=$?; wait $pid; rc=$?
    tail -n 3 /tmp/run.log
    echo "healthcheck exit $health, alpha run exit $rc"
    ls -l /var/lib/alpha
    stray=$(find / -xdev -user "$(id -u)" -not -path "/var/lib/alpha*" -not -path "/tmp*" -not -path "/proc*" 2>/dev/null)
    [ -z "$stray" ] || { echo "written outside the volume and /tmp: $stray"; exit 1; }
    [ "$health" = 0 ] && [ "$rc" = 0 ] && [ -s /var/lib/alpha/demo.db ]'
user="$($SUDO buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")"
[ "${user%%:*}" != 0 ] && [ -n "$user" ] || { echo "image runs as root ($user)" >&2; exit 1; }
$SUDO buildah images "$IMAGE"
step "done: $IMAGE"
