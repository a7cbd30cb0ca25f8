#!/bin/bash
# Root filesystems for the commit and export benchmarks: SMALL is the busybox rootfs the tests
# use (2 MB); LARGE is the same plus this host's /usr/share/man, /usr/share/perl and
# /usr/share/vim (about 115 MB in some 28,000 files, the size of a Debian minbase). Both are
# kept between runs.
# Usage: bench/make-large-rootfs.sh SMALL.tar LARGE.tar   (as root, for the owners)
set -euo pipefail
small=${1:?usage: make-large-rootfs.sh SMALL.tar LARGE.tar}
large=${2:?usage: make-large-rootfs.sh SMALL.tar LARGE.tar}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$small" ] || "$repo/scripts/make-busybox-rootfs.sh" "$small"
if [ ! -f "$large" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  chmod 755 "$dir"
  tar -C "$dir" -xf "$small"
  mkdir -p "$dir/usr/share"
  cp -a /usr/share/man /usr/share/perl /usr/share/vim "$dir/usr/share/"
  tar --numeric-owner --sort=name -C "$dir" -cf "$large.tmp" .
  mv "$large.tmp" "$large"
fi
chmod 644 "$small" "$large"
