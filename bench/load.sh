#!/bin/bash
# `tsrun load` against `podman load` of the same docker-archive, each into an empty store, as
# the unprivileged bench user. The image is Debian-like (about 100 MB, a few thousand files)
# and built offline from the host's /usr; `tsrun save` writes the archive (the `docker save`
# layout, uncompressed layer), which both tools then load; and the same image as an OCI layout
# directory (`tsrun save --format oci-archive`, unpacked: what `podman save --format oci-dir`
# writes), which both load with `load -i DIR`.
# Usage: bench/load.sh [RUNS]   (default 5; results appended to bench/RESULTS.md under "load")
source "$(dirname "$0")/lib.sh"
RUNS=${1:-5}
ensure_bench_user
have_podman || { echo "bench/load.sh: podman is not installed" >&2; exit 1; }

dir="$BENCH_ROOT/load"
rm -rf "$dir" 2>/dev/null || as_user "podman unshare rm -rf $dir"
mkdir -p "$dir"
# Python's standard library and site packages plus the time zone database: ~100 MB of
# mostly small files, like a Debian base image (~9,000 files, ~120 MB).
tar -C / -cf "$dir/rootfs.tar" usr/lib/python3.11 usr/lib/python3 usr/share/zoneinfo
chmod 644 "$dir/rootfs.tar"
[ "$(id -u)" = 0 ] && chown -R "$BENCH_USER" "$dir"
rootfs_mb=$(( $(stat -c %s "$dir/rootfs.tar") / 1000000 ))
entries=$(tar -tf "$dir/rootfs.tar" | wc -l)

# The archive: imported into a scratch store, then saved.
as_user "TSRUN_ROOT=$dir/src-store \$TSRUN import $dir/rootfs.tar debianish >/dev/null && TSRUN_ROOT=$dir/src-store \$TSRUN save -o $dir/load.tar debianish"
archive_mb=$(( $(stat -c %s "$dir/load.tar") / 1000000 ))
as_user "TSRUN_ROOT=$dir/src-store \$TSRUN save --format oci-archive -o $dir/oci.tar debianish && mkdir $dir/oci-dir && tar -xf $dir/oci.tar -C $dir/oci-dir && rm $dir/oci.tar"

# Each run starts from an empty store; before each measured run, outside its time, the store is
# removed, caches dropped and the archive and both programs read back (bench_reset_scripts).
bench_reset_scripts "$dir" "$dir/load.tar" "$dir/oci-dir"
caches=$BENCH_CACHES
tsrun_cmd="$dir/as-user env TSRUN_ROOT=$dir/tsrun-store $REPO/bin/tsrun load -q -i $dir/load.tar"
overlay_cmd="$dir/as-user podman --root $dir/podman-overlay --runroot $dir/podman-overlay-run --storage-driver overlay load -q -i $dir/load.tar"
vfs_cmd="$dir/as-user podman --root $dir/podman-vfs --runroot $dir/podman-vfs-run --storage-driver vfs load -q -i $dir/load.tar"
tsrun_dir_cmd="$dir/as-user env TSRUN_ROOT=$dir/tsrun-dir-store $REPO/bin/tsrun load -q -i $dir/oci-dir"
overlay_dir_cmd="$dir/as-user podman --root $dir/podman-dir --runroot $dir/podman-dir-run --storage-driver overlay load -q -i $dir/oci-dir"
reset() { echo "$dir/reset.sh $dir/$1 $dir/$1-run"; }
loadavg=$(cut -d" " -f1-3 /proc/loadavg)  # other work on the machine shows here
json="$dir/load.json"
(cd "$dir" && hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$json" \
  --prepare "$(reset tsrun-store)" "$tsrun_cmd" \
  --prepare "$(reset podman-overlay)" "$overlay_cmd" \
  --prepare "$(reset podman-vfs)" "$vfs_cmd" \
  --prepare "$(reset tsrun-dir-store)" "$tsrun_dir_cmd" \
  --prepare "$(reset podman-dir)" "$overlay_dir_cmd") >&2

# What was loaded must be there: both stores list the image.
as_user "TSRUN_ROOT=$dir/tsrun-store \$TSRUN images | grep -q debianish && TSRUN_ROOT=$dir/tsrun-dir-store \$TSRUN images | grep -q debianish" ||
  { echo "bench/load.sh: tsrun did not load the image" >&2; exit 1; }
as_user "podman --root $dir/podman-overlay --runroot $dir/podman-overlay-run --storage-driver overlay images | grep -q debianish" ||
  { echo "bench/load.sh: podman did not load the image" >&2; exit 1; }

tsrun_ms=$(median_ms "$json" "$tsrun_cmd")
overlay_ms=$(median_ms "$json" "$overlay_cmd")
vfs_ms=$(median_ms "$json" "$vfs_cmd")
tsrun_dir_ms=$(median_ms "$json" "$tsrun_dir_cmd")
overlay_dir_ms=$(median_ms "$json" "$overlay_dir_cmd")
ratio() { node -e "console.log(($1/$2).toFixed(2))"; }
table="| command | median (ms) | tsrun / this | CPU (ms, user+sys) |
| --- | --- | --- | --- |
| \`tsrun load -i load.tar\` | $tsrun_ms | 1.00 | $(cpu_ms "$json" "$tsrun_cmd") |
| \`podman load -i load.tar\` (overlay, native rootless) | $overlay_ms | $(ratio "$tsrun_ms" "$overlay_ms") | $(cpu_ms "$json" "$overlay_cmd") |
| \`podman load -i load.tar\` (vfs) | $vfs_ms | $(ratio "$tsrun_ms" "$vfs_ms") | $(cpu_ms "$json" "$vfs_cmd") |
| \`tsrun load -i oci-dir\` | $tsrun_dir_ms | 1.00 | $(cpu_ms "$json" "$tsrun_dir_cmd") |
| \`podman load -i oci-dir\` (overlay, native rootless) | $overlay_dir_ms | $(ratio "$tsrun_dir_ms" "$overlay_dir_ms") | $(cpu_ms "$json" "$overlay_dir_cmd") |"
body="Measured $(date -u +%Y-%m-%d) with \`bench/load.sh $RUNS\` (hyperfine median of $RUNS runs after 1 warm-up, $(nproc) cores, $(uname -r), load average $loadavg at the start). The archive: a docker-archive written by \`tsrun save\` of a one-layer image of ${rootfs_mb} MB and ${entries} entries (the host's Python library and zoneinfo), ${archive_mb} MB; each run loads it (or the same image as an OCI layout directory) into an empty store (before each measured run, outside its time: the store removed, \`sync\`, kernel caches $caches, the archive and both programs read back into the page cache). Target: tsrun ≤ 0.6 × podman.

$table"
append_results "load" "$body"
echo "$table"
