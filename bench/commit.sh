#!/bin/bash
# commit: `tsrun commit` against `podman commit` (Debian's podman, rootless, runc), same user, same
# root filesystems imported into both, measured interleaved (bench/interleave.mjs: hyperfine runs,
# one of each command per round, so that the machine's drift hits both tools alike). Four cases:
# after changing 1 file and after adding 1,000 files of 4 KiB, each on a small (busybox, 2 MB) and
# a large base image (busybox plus /usr/share/man and /usr/share/perl of this host, about 115 MB).
# A commit should cost what the change costs: the small and the large base should take the same
# time.
# Usage: bench/commit.sh [RUNS]   (results appended to bench/RESULTS.md)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-10}
ensure_bench_user
have_podman || { echo "podman is needed for the comparison" >&2; exit 1; }

# A store and Podman storages of their own, so other benchmarks sharing $BENCH_ROOT and the
# user's own Podman images are neither touched nor measured. Podman runs twice: with native
# rootless overlay (its fast path, what tsrun does too) and with vfs, the driver this machine's
# Podman configuration picks for the user (the issue's reference figures).
WORK="$BENCH_ROOT/commit"
mkdir -p "$WORK"
chown "$BENCH_USER" "$WORK"
STORE_ENV="export TSRUN_ROOT=$WORK/store"
PODMAN_OVERLAY="$PODMAN --storage-driver overlay --root $WORK/podman-overlay --runroot $WORK/podman-overlay-run"
PODMAN_VFS="$PODMAN --storage-driver vfs --root $WORK/podman-vfs --runroot $WORK/podman-vfs-run"

"$REPO/bench/make-large-rootfs.sh" "$WORK/small.tar" "$WORK/large.tar"

FILL='mkdir /many; i=0; while [ $i -lt 1000 ]; do head -c 4096 /dev/urandom > /many/f$i; i=$((i+1)); done'
prepare() { # runtime-command image-prefix
  local rt=$1
  as_user "$STORE_ENV; cd $WORK
    for size in small large; do
      $rt rm -f c-\$size-1 c-\$size-1000 >/dev/null 2>&1
      $rt import \$size.tar bench-\$size >/dev/null
      $rt run --name c-\$size-1 bench-\$size sh -c 'echo changed > /etc/motd'
      $rt run --name c-\$size-1000 bench-\$size sh -c '$FILL'
    done"
}
prepare '$TSRUN'
prepare "$PODMAN_OVERLAY"
prepare "$PODMAN_VFS"

megabytes() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1e6 }'; }

cases=(small-1 large-1 small-1000 large-1000)
cmds=()
for c in "${cases[@]}"; do
  cmds+=("$REPO/bin/tsrun commit c-$c" "$PODMAN_OVERLAY commit c-$c" "$PODMAN_VFS commit c-$c")
done
json="$WORK/commit.json"
quoted=$(printf "'%s' " "${cmds[@]}")
# The preparation wrote ~1 GB (Podman's vfs copies each image whole): let its writeback and the
# kernel's reclaim settle first, or the first command measured (tsrun's) pays for them.
sync
sleep 10
as_user "$STORE_ENV; node $REPO/bench/interleave.mjs --warmup 2 --runs $RUNS --prepare sync --export-json $json $quoted" >&2

# After its first run, each command above commits changes that are stored already: tsrun and
# Podman alike find the layer by its DiffID and reuse it. A commit that makes a new layer every
# time: the changed file gets new content before each run (cp, outside the time measured).
NEW_RT=("$REPO/bin/tsrun" "$PODMAN_OVERLAY" "$PODMAN_VFS")
new_cmds=()
new_prepares=()
for c in 1 1000; do
  for i in "${!NEW_RT[@]}"; do
    new_cmds+=("${NEW_RT[$i]} commit c-small-$c")
    # One file of the change gets new content: the whole change is a new layer.
    target=$([ $c = 1 ] && echo /etc/motd || echo /many/f0)
    new_prepares+=("sh -c 'date +%s%N > $WORK/new-$i && ${NEW_RT[$i]} cp $WORK/new-$i c-small-$c:$target && sync'")
  done
done
new_json="$WORK/commit-new.json"
as_user "$STORE_ENV; node $REPO/bench/interleave.mjs --warmup 2 --runs $RUNS $(printf -- "--prepare \"%s\" " "${new_prepares[@]}") --export-json $new_json $(printf "'%s' " "${new_cmds[@]}")" >&2

table="| change | base image | tsrun (ms) | podman, overlay (ms) | tsrun / podman overlay | podman, vfs (ms) | tsrun / podman vfs |
| --- | --- | --- | --- | --- | --- | --- |"
for c in "${cases[@]}"; do
  t=$(median_ms "$json" "$REPO/bin/tsrun commit c-$c")
  po=$(median_ms "$json" "$PODMAN_OVERLAY commit c-$c")
  pv=$(median_ms "$json" "$PODMAN_VFS commit c-$c")
  change=$([ "${c#*-}" = 1 ] && echo "1 file changed" || echo "1,000 files of 4 KiB added")
  base=$([ "${c%-*}" = small ] && echo "busybox, $(megabytes "$WORK/small.tar") MB" || echo "busybox + /usr/share/{man,perl,vim}, $(megabytes "$WORK/large.tar") MB")
  table="$table
| $change | $base | $t | $po | $(node -e "console.log(($t/$po).toFixed(2))") | $pv | $(node -e "console.log(($t/$pv).toFixed(2))") |"
done
for k in 0 3; do
  t=$(median_ms "$new_json" "${new_cmds[$k]}")
  po=$(median_ms "$new_json" "${new_cmds[$((k + 1))]}")
  pv=$(median_ms "$new_json" "${new_cmds[$((k + 2))]}")
  change=$([ $k = 0 ] && echo "1 file changed" || echo "1,000 files of 4 KiB added")
  table="$table
| $change, one file's content new before each run (a new layer each time) | busybox, $(megabytes "$WORK/small.tar") MB | $t | $po | $(node -e "console.log(($t/$po).toFixed(2))") | $pv | $(node -e "console.log(($t/$pv).toFixed(2))") |"
done

# Leave no images behind: every hyperfine run made one.
as_user "$STORE_ENV; \$TSRUN rm -f c-small-1 c-small-1000 c-large-1 c-large-1000 >/dev/null; \$TSRUN image prune -a -f >/dev/null"
for p in "$PODMAN_OVERLAY" "$PODMAN_VFS"; do
  as_user "$p rm -f c-small-1 c-small-1000 c-large-1 c-large-1000 >/dev/null; $p image prune -a -f >/dev/null"
done

body="Measured $(date -u +%Y-%m-%d) with \`bench/commit.sh $RUNS\` ($RUNS interleaved rounds of hyperfine runs after 2 warm-up rounds (bench/interleave.mjs), \`sync\` before each run so no run pays for the previous one's writeback, medians; $(nproc) cores, $(uname -r)); Podman $(podman --version | awk '{print $3}') with \`--runtime runc\`, rootless, as the same user, once with native overlay and once with vfs (the driver this machine's Podman uses by default for the test user). Each run commits the same stopped container again (a new image each time): after the first run, tsrun and Podman both find the change's layer stored (same DiffID) and reuse it, so these rows measure reading the change, writing and hashing its tar, and recording the image. The last two rows make a new layer every run (one file of the change gets new content before each run, outside the time measured). The large base image shows that a commit costs what the change costs: only the container's upper dir is read.

$table"
append_results "commit" "$body"
echo "$table"
