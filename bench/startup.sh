#!/bin/bash
# Container start-up: `tsrun run --rm busybox true` against `podman run --rm busybox true`
# (Debian's podman, rootless, same user, same image) and `node -e 0`, measured interleaved
# (bench/interleave.mjs: one hyperfine run of each command per round, so that the machine's drift
# hits every command alike).
# Usage: bench/startup.sh [RUNS]   (results appended to bench/RESULTS.md)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-30}
ensure_bench_user
bench_busybox
as_user '$TSRUN run --rm busybox true'
cmds=("node -e 0" "$REPO/bin/tsrun run --rm busybox true" "$REPO/bin/tsrun run --rm --network none busybox true" "$REPO/bin/tsrun run --rm --network pasta busybox true")
if have_podman; then
  as_user "$PODMAN import busybox.tar busybox >/dev/null && $PODMAN run --rm busybox true"
  cmds+=("$PODMAN run --rm busybox true" "$PODMAN run --rm --network none busybox true")
fi
json="$BENCH_ROOT/startup.json"
quoted=$(printf "'%s' " "${cmds[@]}")
as_user "node $REPO/bench/interleave.mjs --warmup 3 --runs $RUNS --export-json $json $quoted" >&2
node_ms=$(median_ms "$json" "node -e 0")
tsrun_ms=$(median_ms "$json" "$REPO/bin/tsrun run --rm busybox true")
tsrun_none_ms=$(median_ms "$json" "$REPO/bin/tsrun run --rm --network none busybox true")
tsrun_pasta_ms=$(median_ms "$json" "$REPO/bin/tsrun run --rm --network pasta busybox true")
table="| command | median (ms) | ratio |
| --- | --- | --- |
| \`node -e 0\` | $node_ms | 1.00 |
| \`tsrun run --rm busybox true\` | $tsrun_ms | $(node -e "console.log(($tsrun_ms/$node_ms).toFixed(2))") × node |
| \`tsrun run --rm --network none busybox true\` | $tsrun_none_ms | $(node -e "console.log(($tsrun_none_ms/$node_ms).toFixed(2))") × node |
| \`tsrun run --rm --network pasta busybox true\` | $tsrun_pasta_ms | |"
if have_podman; then
  podman_ms=$(median_ms "$json" "$PODMAN run --rm busybox true")
  podman_none_ms=$(median_ms "$json" "$PODMAN run --rm --network none busybox true")
  table="$table
| \`podman run --rm busybox true\` (runc, slirp4netns) | $podman_ms | tsrun = $(node -e "console.log(($tsrun_ms/$podman_ms).toFixed(2))") × podman |
| \`podman run --rm --network none busybox true\` | $podman_none_ms | tsrun = $(node -e "console.log(($tsrun_none_ms/$podman_none_ms).toFixed(2))") × podman |"
fi
body="Measured $(date -u +%Y-%m-%d) with \`bench/startup.sh $RUNS\` ($RUNS interleaved rounds, 3 warm-up rounds, $(nproc) cores, $(uname -r)); load average $(cut -d' ' -f1 /proc/loadavg) at the end. Both runtimes' default networks: a private namespace with outbound access through slirp4netns (tsrun: \`--network pasta\` for pasta); \`--network none\`: only lo.

$table"
append_results "startup: run --rm busybox true" "$body"
echo "$table"
