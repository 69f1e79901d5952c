#!/usr/bin/env bash
# Build a Debian bookworm base image with python3 and python3-venv, without any registry:
# debootstrap from the machine's Debian mirror, then `docker import`. Needs root.
#   build/offline_base_image.sh [IMAGE_NAME]     (default iris-base:bookworm)
# Then: make images BASE_IMAGE=iris-base:bookworm
set -euo pipefail
name=${1:-iris-base:bookworm}
docker=${DOCKER:-docker}
if "$docker" image inspect "$name" >/dev/null 2>&1; then
  echo "$name already exists"; exit 0
fi
# The Debian mirror this machine's apt uses (deb822 "URIs:" or one-line "deb URL suite").
apt_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE '^(URIs:[[:space:]]*|deb[[:space:]]+)https?://[^[:space:]]+' \
    | grep -oE 'https?://[^[:space:]]+' | grep -v security | grep debian | head -n1 || true
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$docker" import - "$name" >/dev/null
echo "built $name"
