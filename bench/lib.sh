# Shared setup for the benchmarks: run as a non-root user with subordinate id ranges (the
# test suite's tsrun-test user when started as root), a private tsrun store, podman if present.
set -euo pipefail
BENCH_ROOT=${BENCH_ROOT:-/tmp/tsrun-bench}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_USER=${BENCH_USER:-tsrun-test}

ensure_bench_user() {
  if [ "$(id -u)" != 0 ]; then BENCH_USER=$(id -un); return; fi
  id -u "$BENCH_USER" >/dev/null 2>&1 || useradd -m -s /bin/sh "$BENCH_USER"
  for f in /etc/subuid /etc/subgid; do
    grep -q "^$BENCH_USER:" "$f" 2>/dev/null || echo "$BENCH_USER:300000:65536" >> "$f"
  done
  # podman's default network (slirp4netns) needs /dev/net/tun usable, as on a normal distribution.
  [ -e /dev/net/tun ] && chmod 666 /dev/net/tun || true
  mkdir -p "$BENCH_ROOT"
  chown "$BENCH_USER" "$BENCH_ROOT"
  chmod 755 "$BENCH_ROOT"
}

# Runs a command line as the bench user, in the bench environment.
as_user() {
  local home
  home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid="$BENCH_USER" --regid="$(id -g "$BENCH_USER")" --init-groups \
      env -i HOME="$home" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin TSRUN_ROOT="$BENCH_ROOT/store" \
      TSRUN="$REPO/bin/tsrun" BENCH_ROOT="$BENCH_ROOT" bash -c "cd $BENCH_ROOT && $1"
  else
    TSRUN_ROOT="$BENCH_ROOT/store" TSRUN="$REPO/bin/tsrun" bash -c "cd $BENCH_ROOT && $1"
  fi
}

have_podman() { command -v podman >/dev/null 2>&1; }

# Builds $BENCH_ROOT/busybox.tar (the tests' rootfs from Debian's busybox-static, readable by the
# bench user) and imports it into the bench store as busybox. Sets tar to its path.
bench_busybox() {
  tar="$BENCH_ROOT/busybox.tar"
  "$REPO/scripts/make-busybox-rootfs.sh" "$tar"
  chmod 644 "$tar"
  as_user '$TSRUN import busybox.tar busybox >/dev/null'
}

# podman on this host: crun refuses hybrid cgroups, runc works.
PODMAN="podman --runtime runc"

# Median (ms) of one command from a hyperfine JSON export.
median_ms() {
  node -e 'const r=require(process.argv[1]).results.find(x=>x.command===process.argv[2]); console.log((r.median*1000).toFixed(1))' "$1" "$2"
}

# Mean CPU time (user + system, ms) of one command from a hyperfine JSON export: on a machine
# shared with other work, wall times mostly measure the share of CPU each tool got.
cpu_ms() {
  node -e 'const r=require(process.argv[1]).results.find(x=>x.command===process.argv[2]); console.log(((r.user+r.system)*1000).toFixed(0))' "$1" "$2"
}

append_results() {
  local heading=$1 body=$2
  local file="$REPO/bench/RESULTS.md"
  [ -f "$file" ] || printf '# Benchmark results\n\nMedians from hyperfine on this project'"'"'s CI machine kind (2 cores, Debian 12). Noisy machines: compare ratios.\n' > "$file"
  printf '\n## %s\n\n%s\n' "$heading" "$body" >> "$file"
}

# Writes DIR/as-user (runs a command as the bench user, also when hyperfine runs as root) and
# DIR/reset.sh DIRS... (removes DIRS inside the user namespace, as layer files belong to
# subordinate ids; then `sync`; as root, drops the kernel's caches and reads back into the page
# cache what each run should find there: the paths given as WARM..., and both programs, so
# neither tool starts cold). On this VM every extraction gets slower as the page cache fills
# (GNU tar of a 100 MB rootfs drifts from 0.4 s to 1.8 s over four runs without the drop, stays
# at 0.4 s with it; dropping only dentries and inodes does not help), which would favour
# whichever tool runs first. Sets BENCH_CACHES to say which happened.
# Usage: bench_reset_scripts DIR WARM...
bench_reset_scripts() {
  local dir=$1 home
  shift
  home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
  cat > "$dir/as-user" <<WRAP
#!/bin/sh
# Runs a command as the bench user (hyperfine itself runs as root to drop caches).
if [ "\$(id -u)" = 0 ]; then
  exec setpriv --reuid=$BENCH_USER --regid=$(id -g "$BENCH_USER") --init-groups env -i HOME=$home PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "\$@"
fi
exec "\$@"
WRAP
  cat > "$dir/reset.sh" <<RESET
#!/bin/sh
$dir/as-user podman unshare rm -rf "\$@" || exit 1
sync
if [ "\$(id -u)" = 0 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
for warm in $*; do find "\$warm" -type f -exec cat {} + > /dev/null; done
$dir/as-user $REPO/bin/tsrun --version > /dev/null
$dir/as-user podman --version > /dev/null
RESET
  chmod 755 "$dir/as-user" "$dir/reset.sh"
  if [ "$(id -u)" = 0 ]; then BENCH_CACHES="dropped"; else BENCH_CACHES="not dropped (not root)"; fi
}
