#!/bin/sh
# A Debian bookworm root filesystem with Python 3, as a tarball for `podman import`: the test
# stand-in for python:3.11-slim (Docker Hub is not reachable here). What the repository's Dockerfile
# uses is where python:3.11-slim has it: `python3` (with venv and ensurepip) and `useradd` on PATH,
# ca-certificates, LANG=C.UTF-8 (set by the importer).
#
#   sh tests/deployer/e2e/base-image.sh    prints the tarball's path (builds it when not cached)
#
# Cached under $KAMAL_PROXY_IMAGE_CACHE (default /var/cache/kamal-proxy-py), keyed on the release and
# RECIPE (bump it when the package list or the clean-up changes). Nothing depends on the cache: when it
# is missing or not writable the tarball is built in a temporary directory. Needs root and debootstrap.
set -eu

RELEASE=bookworm
RECIPE=1
PACKAGES=python3,python3-venv,ca-certificates
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${KAMAL_PROXY_IMAGE_CACHE:-/var/cache/kamal-proxy-py}
NAME=$RELEASE-python-r$RECIPE.tar

if [ -s "$CACHE/$NAME" ]; then
    echo "$CACHE/$NAME"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "base-image.sh: must run as root (debootstrap)" >&2
    exit 1
fi
command -v debootstrap >/dev/null 2>&1 || {
    echo "base-image.sh: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
}

if mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ]; then
    out=$CACHE
else
    out=${TMPDIR:-/tmp}
fi
work=$(mktemp -d "$out/.base-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# minbase: only Essential and required packages (no apt recommends), plus Python and its venv module
debootstrap --variant=minbase --include=$PACKAGES "$RELEASE" "$work/rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -30 "$work/debootstrap.log" >&2
    exit 1
}
root=$work/rootfs
# what a container image does not need (python:3.11-slim drops the same): package caches and lists,
# docs, man pages, locales; the host's resolver config is none of the image's business
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/* "$root"/tmp/*
: >"$root/etc/resolv.conf"
echo "$RELEASE" >"$root/etc/hostname"

tar --numeric-owner -C "$root" -cf "$work/$NAME" .
mv "$work/$NAME" "$out/$NAME"
echo "$out/$NAME"
