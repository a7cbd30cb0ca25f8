#!/bin/bash
# The floor under `tsrun run --rm busybox true` in this design (Node + the C++ addon): what Node,
# the addon and the kernel's work cost with no tsrun code at all, against `node -e 0` and tsrun.
# bench/floor/prepare.mjs keeps the launch plan tsrun encodes for the container (mounts,
# namespaces, user, seccomp, the holder's user namespace); bench/floor/replay.cjs replays it as
# launchPlan does (spawn, slirp4netns ready, resume, wait, _exit). Also measured: commander alone
# parsing a command line of `run`'s size (bench/floor/commander-flags.cjs through a code cache),
# and loading tsrun's `run` code and parsing its flags (`tsrun run` with an unknown flag, which
# exits 125 there).
# Usage: bench/startup-floor.sh [RUNS]   (results appended to bench/RESULTS.md)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-30}
ensure_bench_user
bench_busybox
as_user '$TSRUN run --rm busybox true'
as_user '$TSRUN rm -f floor-default floor-none >/dev/null 2>&1; true'
as_user "node $REPO/bench/floor/prepare.mjs floor-default.json floor-default busybox && node $REPO/bench/floor/prepare.mjs floor-none.json floor-none busybox none"
# The commander floor: commander alone parsing a run command line with 110 options, bundled and
# run through a V8 code cache as tsrun's CLI is (bench/floor/commander-flags.cjs).
node -e 'require(process.argv[1]).build({ entryPoints: [process.argv[2]], bundle: true, platform: "node", format: "cjs", target: "node20", minify: true, outfile: process.argv[3], logLevel: "warning" })' \
  "$REPO/node_modules/esbuild" "$REPO/bench/floor/commander-flags.cjs" "$BENCH_ROOT/commander-flags.cjs"
chmod 644 "$BENCH_ROOT/commander-flags.cjs"
rm -f "$BENCH_ROOT/commander-flags.cjs.v8cache"
commander="node $REPO/bench/floor/cached.cjs commander-flags.cjs"
as_user "$commander"
replay="node $REPO/bench/floor/replay.cjs"
cmds=("node -e 0" "$replay floor-none.json" "$replay floor-default.json" "$commander" "$REPO/bin/tsrun run --rm --network none busybox true" "$REPO/bin/tsrun run --rm busybox true")
json="$BENCH_ROOT/startup-floor.json"
quoted=$(printf "'%s' " "${cmds[@]}")
as_user "node $REPO/bench/interleave.mjs --warmup 3 --runs $RUNS --export-json $json $quoted" >&2
# Exits 125 by design: measured on its own with --ignore-failure.
load_cmd="$REPO/bin/tsrun run --no-such-flag busybox true"
load_json="$BENCH_ROOT/startup-floor-load.json"
as_user "node $REPO/bench/interleave.mjs -i --warmup 3 --runs $RUNS --export-json $load_json 'node -e 0' '$load_cmd'" >&2
as_user '$TSRUN rm -f floor-default floor-none >/dev/null'

ratio() { node -e "console.log(($1/$2).toFixed(2))"; }
node_ms=$(median_ms "$json" "node -e 0")
floor_none=$(median_ms "$json" "$replay floor-none.json")
floor_default=$(median_ms "$json" "$replay floor-default.json")
commander_ms=$(median_ms "$json" "$commander")
tsrun_none=$(median_ms "$json" "$REPO/bin/tsrun run --rm --network none busybox true")
tsrun_default=$(median_ms "$json" "$REPO/bin/tsrun run --rm busybox true")
load_node=$(median_ms "$load_json" "node -e 0")
load_ms=$(median_ms "$load_json" "$load_cmd")
table="| command | median (ms) | × node -e 0 |
| --- | --- | --- |
| \`node -e 0\` | $node_ms | 1.00 |
| floor, \`--network none\` (replay.cjs: Node + addon + kernel) | $floor_none | $(ratio "$floor_none" "$node_ms") |
| floor, default network (the same + slirp4netns) | $floor_default | $(ratio "$floor_default" "$node_ms") |
| commander alone: 110 options, one parse (cached.cjs, commander-flags.cjs) | $commander_ms | $(ratio "$commander_ms" "$node_ms") |
| \`tsrun run --rm --network none busybox true\` | $tsrun_none | $(ratio "$tsrun_none" "$node_ms") |
| \`tsrun run --rm busybox true\` | $tsrun_default | $(ratio "$tsrun_default" "$node_ms") |
| \`tsrun run --no-such-flag ...\` (load run's code, parse, refuse; separate run) | $load_ms | $(ratio "$load_ms" "$load_node") (node -e 0: $load_node) |"
body="Measured $(date -u +%Y-%m-%d) with \`bench/startup-floor.sh $RUNS\` ($RUNS interleaved rounds (bench/interleave.mjs), 3 warm-up rounds, $(nproc) cores, $(uname -r)); load average $(cut -d' ' -f1 /proc/loadavg) at the end. Floor (default network) plus commander alone: $(ratio "$(node -e "console.log($floor_default + $commander_ms - $node_ms)")" "$node_ms") × node -e 0. Above the floor, tsrun spends: $(node -e "console.log(($tsrun_default-$floor_default).toFixed(1))") ms (default network), $(node -e "console.log(($tsrun_none-$floor_none).toFixed(1))") ms (\`--network none\`); loading and parsing alone: $(node -e "console.log(($load_ms-$load_node).toFixed(1))") ms.

$table"
append_results "startup floor: run --rm busybox true without tsrun's code" "$body"
echo "$table"
