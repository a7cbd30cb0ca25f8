#!/bin/bash
# What the default confinement (Docker's capabilities and seccomp profile) costs at start-up:
# `tsrun run --rm --network none busybox true` confined (the default), with the filter lifted
# (--security-opt seccomp=unconfined) and, when given, from another checkout built before
# confinement existed (BASE: a directory with bin/, dist/ and build/ of that commit).
# Usage: [BASE_LABEL=...] bench/confinement.sh [RUNS] [BASE]   (results appended to bench/RESULTS.md)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-30}
BASE=${2:-}
ensure_bench_user
bench_busybox
# The first confined run compiles the filter and caches it in ~/.cache/tsrun, as any user's would.
as_user '$TSRUN run --rm busybox true'
confined="$REPO/bin/tsrun run --rm --network none busybox true"
unconfined="$REPO/bin/tsrun run --rm --network none --security-opt seccomp=unconfined busybox true"
cmds=("$confined" "$unconfined")
[ -n "$BASE" ] && cmds+=("$BASE/bin/tsrun run --rm --network none busybox true")
json="$BENCH_ROOT/confinement.json"
quoted=$(printf "'%s' " "${cmds[@]}")
as_user "hyperfine -N --warmup 3 --runs $RUNS --export-json $json $quoted" >&2
# CPU time (user + system, mean) as well as the wall-clock median: on a shared, loaded machine
# the wall clock mostly measures the neighbours.
cpu_ms() {
  node -e 'const r=require(process.argv[1]).results.find(x=>x.command===process.argv[2]); console.log(((r.user+r.system)*1000).toFixed(1))' "$1" "$2"
}
row() { # label command
  local med cpu
  med=$(median_ms "$json" "$2")
  cpu=$(cpu_ms "$json" "$2")
  echo "| $1 | $med | $(node -e "console.log(($med/$confined_med).toFixed(2))") | $cpu |"
}
confined_med=$(median_ms "$json" "$confined")
table="| command | median (ms) | ratio | CPU user+sys (ms) |
| --- | --- | --- | --- |
$(row '`tsrun run --rm --network none busybox true` (default: capabilities + seccomp)' "$confined")
$(row '`... --security-opt seccomp=unconfined`' "$unconfined")"
if [ -n "$BASE" ]; then
  table="$table
$(row "the same from ${BASE_LABEL:-$(basename "$BASE")}, before confinement" "$BASE/bin/tsrun run --rm --network none busybox true")"
fi
body="Measured $(date -u +%Y-%m-%d) with \`bench/confinement.sh $RUNS${BASE:+ BASE}\` ($RUNS runs, 3 warm-up, $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1 /proc/loadavg) at the end).

$table"
append_results "confinement: start-up cost of the default capabilities and seccomp filter" "$body"
echo "$table"
