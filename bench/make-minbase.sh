#!/bin/bash
# A Debian 12 minbase root filesystem as a tarball, like the official debian:bookworm image's
# single layer: `debootstrap --variant=minbase bookworm` from Debian's mirror, then what the
# official image build (debuerreotype) leaves out: apt lists and caches, logs, device nodes.
# About 128 MB in 6,700 entries; 49 MB with gzip -6. Kept in CACHE between runs (debootstrap
# takes a minute or two and needs the network).
# Usage: bench/make-minbase.sh OUT.tar   (as root; exits 1 when debootstrap cannot run here)
set -euo pipefail
out=${1:?usage: make-minbase.sh OUT.tar}
cache=${MINBASE_CACHE:-/var/cache/tsrun-bench}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ ! -f "$cache/minbase.tar" ]; then
  [ "$(id -u)" = 0 ] || { echo "make-minbase.sh: debootstrap needs root" >&2; exit 1; }
  command -v debootstrap >/dev/null || { echo "make-minbase.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  mkdir -p "$cache"
  dir=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  if ! debootstrap --variant=minbase bookworm "$dir" "$mirror" > "$cache/debootstrap.log" 2>&1; then
    echo "make-minbase.sh: debootstrap failed (see $cache/debootstrap.log)" >&2
    exit 1
  fi
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log "$dir"/var/log/apt/*
  find "$dir/dev" -mindepth 1 \( -type c -o -type b \) -delete
  tar --numeric-owner --xattrs -C "$dir" -cf "$cache/minbase.tar.tmp" .
  mv "$cache/minbase.tar.tmp" "$cache/minbase.tar"
  chmod 644 "$cache/minbase.tar"
fi
cp "$cache/minbase.tar" "$out"
chmod 644 "$out"
