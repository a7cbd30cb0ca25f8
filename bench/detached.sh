#!/bin/bash
# Detached containers: host memory kept per container (PSS of everything left running for it)
# and the time to start 50 containers, list them and remove them, against Podman.
# Usage: bench/detached.sh [N]   (results appended to bench/RESULTS.md)
source "$(dirname "$0")/lib.sh"
N=${1:-50}
ensure_bench_user
bench_busybox
have_podman && as_user "$PODMAN import busybox.tar busybox >/dev/null"

# Sum of PSS (kB) over processes whose command line matches a pattern, for the bench user.
pss_of() {
  local total=0 pid kb
  for pid in $(pgrep -u "$BENCH_USER" -f "$1"); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

now_ms() { date +%s%3N; }

measure() { # name, run-cmd, ps-cmd, rm-all-cmd, pattern
  local name=$1 run=$2 ps=$3 rmall=$4 pattern=$5
  local t0 t1 t2 t3 pss
  t0=$(now_ms)
  as_user "for i in \$(seq 1 $N); do $run >/dev/null || exit 1; done"
  t1=$(now_ms)
  as_user "$ps >/dev/null"
  t2=$(now_ms)
  sleep 1
  pss=$(pss_of "$pattern")
  as_user "$rmall"
  t3=$(now_ms)
  echo "| $name | $((t1 - t0)) | $((t2 - t1)) | $((t3 - t2 - 1000)) | $((pss / N)) |"
}

header="| runtime | start $N (ms) | ps -a (ms) | rm -f all (ms) | PSS per container (kB) |
| --- | --- | --- | --- | --- |"
rows="$(measure 'tsrun (slirp4netns): tsrun-monitor + tsrun-forward + slirp4netns' '$TSRUN run -d busybox sleep 600' '$TSRUN ps -a' '$TSRUN rm -f $($TSRUN ps -a -q) >/dev/null' 'tsrun-monitor|tsrun-forward|slirp4netns')
$(measure 'tsrun --network pasta: tsrun-monitor + pasta' '$TSRUN run -d --network pasta busybox sleep 600' '$TSRUN ps -a' '$TSRUN rm -f $($TSRUN ps -a -q) >/dev/null' 'tsrun-monitor|pasta|passt')
$(measure 'tsrun --network none: tsrun-monitor' '$TSRUN run -d --network none busybox sleep 600' '$TSRUN ps -a' '$TSRUN rm -f $($TSRUN ps -a -q) >/dev/null' 'tsrun-monitor')"
if have_podman; then
  rows="$rows
$(measure 'podman (runc, slirp4netns): conmon + slirp4netns' "$PODMAN run -d busybox sleep 600" "$PODMAN ps -a" "$PODMAN rm -f -t 0 -a >/dev/null" 'conmon|slirp4netns')
$(measure 'podman --network none: conmon' "$PODMAN run -d --network none busybox sleep 600" "$PODMAN ps -a" "$PODMAN rm -f -t 0 -a >/dev/null" 'conmon')"
fi
body="Measured $(date -u +%Y-%m-%d) with \`bench/detached.sh $N\` ($(nproc) cores). PSS summed over every per-container process the runtime leaves running (tsrun: tsrun-monitor, and tsrun-forward with slirp4netns or pasta for its default network; Podman: conmon, and slirp4netns for its default network), read as root, divided by $N. Start times are for $N sequential \`run -d busybox sleep 600\`.

$header
$rows"
append_results "detached containers: memory and 50 starts" "$body"
echo "$header"
echo "$rows"
