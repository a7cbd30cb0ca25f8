#!/bin/bash
# From a fresh Debian 12 checkout to a shell in a container: system packages, the npm build,
# a busybox image made from Debian's busybox-static, then `tsrun run --rm -it busybox sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  uidmap busybox-static xz-utils zstd slirp4netns passt tini g++ make python3 libseccomp-dev >/dev/null
# The private network (slirp4netns, or pasta) needs /dev/net/tun as distributions ship it.
[ -e /dev/net/tun ] && $sudo chmod 0666 /dev/net/tun
if [ "$(id -u)" != 0 ] && ! grep -q "^$(id -un):" /etc/subuid 2>/dev/null; then
  echo "tsrun: $(id -un) has no /etc/subuid range; adding 65536 ids (needs sudo)" >&2
  $sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "$(id -un)"
fi
npm install --no-audit --no-fund
tar=$(mktemp --suffix=.tar)
scripts/make-busybox-rootfs.sh "$tar"
./bin/tsrun import "$tar" busybox >/dev/null
rm -f "$tar"
exec ./bin/tsrun run --rm -it busybox sh
