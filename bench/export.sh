#!/bin/bash
# export: `tsrun export` against `podman export` (Debian's podman, rootless, runc; with native
# overlay and with vfs) of the same container made from the same ~115 MB root filesystem
# (busybox plus this host's /usr/share/{man,perl,vim}, see make-large-rootfs.sh), in one
# hyperfine run. Both write the flattened filesystem to a file with -o.
# Usage: bench/export.sh [RUNS]   (results appended to bench/RESULTS.md)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-10}
ensure_bench_user
have_podman || { echo "podman is needed for the comparison" >&2; exit 1; }

WORK="$BENCH_ROOT/export"
mkdir -p "$WORK"
chown "$BENCH_USER" "$WORK"
STORE_ENV="export TSRUN_ROOT=$WORK/store"
PODMAN_OVERLAY="$PODMAN --storage-driver overlay --root $WORK/podman-overlay --runroot $WORK/podman-overlay-run"
PODMAN_VFS="$PODMAN --storage-driver vfs --root $WORK/podman-vfs --runroot $WORK/podman-vfs-run"

"$REPO/bench/make-large-rootfs.sh" "$WORK/small.tar" "$WORK/large.tar"
for rt in '$TSRUN' "$PODMAN_OVERLAY" "$PODMAN_VFS"; do
  as_user "$STORE_ENV; cd $WORK; $rt rm -f x-large >/dev/null 2>&1; $rt import large.tar bench-large >/dev/null && $rt run --name x-large bench-large sh -c 'echo changed > /etc/motd'"
done

json="$WORK/export.json"
t_cmd="$REPO/bin/tsrun export -o $WORK/tsrun.tar x-large"
po_cmd="$PODMAN_OVERLAY export -o $WORK/podman-overlay.tar x-large"
pv_cmd="$PODMAN_VFS export -o $WORK/podman-vfs.tar x-large"
as_user "$STORE_ENV; hyperfine -N --warmup 2 --runs $RUNS --prepare sync --export-json $json '$t_cmd' '$po_cmd' '$pv_cmd'" >&2
t=$(median_ms "$json" "$t_cmd")
po=$(median_ms "$json" "$po_cmd")
pv=$(median_ms "$json" "$pv_cmd")
size=$(awk -v b="$(stat -c %s "$WORK/tsrun.tar")" 'BEGIN { printf "%.0f", b / 1e6 }')
entries=$(tar -tf "$WORK/tsrun.tar" | wc -l)
table="| command | median (ms) | tsrun / this |
| --- | --- | --- |
| \`tsrun export -o FILE\` | $t | 1.00 |
| \`podman export -o FILE\` (overlay) | $po | $(node -e "console.log(($t/$po).toFixed(2))") |
| \`podman export -o FILE\` (vfs) | $pv | $(node -e "console.log(($t/$pv).toFixed(2))") |"

for rt in '$TSRUN' "$PODMAN_OVERLAY" "$PODMAN_VFS"; do
  as_user "$STORE_ENV; $rt rm -f x-large >/dev/null; $rt rmi bench-large >/dev/null"
done
rm -f "$WORK"/*.tar.tmp "$WORK/tsrun.tar" "$WORK/podman-overlay.tar" "$WORK/podman-vfs.tar"

body="Measured $(date -u +%Y-%m-%d) with \`bench/export.sh $RUNS\` (hyperfine, $RUNS runs after 2 warm-up, \`sync\` before each run so no run pays for the previous one's writeback, medians; $(nproc) cores, $(uname -r)); Podman $(podman --version | awk '{print $3}') with \`--runtime runc\`, rootless, as the same user. The container's root is $size MB of tar in $entries entries. tsrun's storage worker reads the container's upper dir and its image's layer dirs, merged as overlayfs merges them, and tars the result.

$table"
append_results "export" "$body"
echo "$table"
