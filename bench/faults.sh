#!/bin/bash
# The integrity suite (test/e2e/integrity-*.test.ts) with many more trials than CI runs:
# kill -9 at crash points and random moments of pull, load, import, commit, build, rm, rmi,
# prune, volume rm and run; rounds of concurrent commands (a build among them) on one store; a
# build stopped at a step while rmi and the prunes run; a full tmpfs store at every free-space
# level; hostile archives, layers and registry replies. Appends the counts to
# bench/RESULTS.md under "integrity". Runs as root (the suite mounts a tmpfs and runs tsrun as
# its unprivileged test user).
# Usage: bench/faults.sh [TRIALS_PER_OPERATION] [RACE_ROUNDS]   (default 12 and 4)
# TSRUN_FAULT_SEED=N reproduces a run's picks.
source "$(dirname "$0")/lib.sh"
TRIALS=${1:-12}
ROUNDS=${2:-4}
[ "$(id -u)" = 0 ] || { echo "bench/faults.sh: run as root (the suite mounts a tmpfs and uses its test user)" >&2; exit 1; }
cd "$REPO"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
seed=${TSRUN_FAULT_SEED:-$((RANDOM * 32768 + RANDOM))}
start=$(date +%s)
status=0
TSRUN_INTEGRITY_REPORT=$report TSRUN_FAULT_SEED=$seed TSRUN_FAULT_TRIALS=$TRIALS TSRUN_RACE_ROUNDS=$ROUNDS TSRUN_DISK_LEVELS=6 \
  TSRUN_E2E_BASE=${TSRUN_E2E_BASE:-/tmp/tsrun-faults} bash test/run.sh test/e2e/integrity- || status=$?
seconds=$(( $(date +%s) - start ))

body=$(node - "$report" "$seed" "$TRIALS" "$ROUNDS" "$seconds" "$status" <<'JS'
const [file, seed, trials, rounds, seconds, status] = process.argv.slice(2);
const r = JSON.parse(require("fs").readFileSync(file, "utf8"));
const f = r.faults ?? {}, races = r.races ?? {}, disk = r.disk ?? {}, inputs = r.inputs ?? {};
const ops = Object.keys(f).filter((k) => k.startsWith("injected ")).map((k) => k.slice(9));
const lines = [
  `Measured ${new Date().toISOString().slice(0, 10)} with \`bench/faults.sh ${trials} ${rounds}\` (seed ${seed}; ${seconds} s; suite ${status === "0" ? "passed" : "FAILED"}; 2 cores, ${require("os").release()}; load average ${require("os").loadavg()[0].toFixed(2)} at the end).`,
  "",
  "| what | count |",
  "| --- | --- |",
  `| faults injected: kill -9 of tsrun (${f.atPoint ?? 0} at a named crash point, ${f.afterDelay ?? 0} after a random delay) | ${f.faultsInjected ?? 0} |`,
  `| faults survived: no damage right after the kill, the next command worked, then \`system check\` clean | ${f.faultsSurvived ?? 0} |`,
  `| races run: commands started together on one store (free-for-all rounds) | ${races.racesRun ?? 0} |`,
  `| exact interleavings: an operation stopped at a crash point while deleters ran | ${races.interleavings ?? 0} |`,
  `| full-disk cases (pull, load, import, commit, build on a filled tmpfs) / of which ran out of space: one-line error, store unchanged | ${disk.diskFullCases ?? 0} / ${disk.diskFullErrors ?? 0} |`,
  `| bad inputs tried (archives, layer tarballs, registry replies): refused in one line, store unchanged | ${inputs.badInputs ?? 0} |`,
  "",
  "Faults per operation (injected / survived / crash points the operation passes):",
  "",
  "| operation | injected | survived | crash points |",
  "| --- | --- | --- | --- |",
  ...ops.map((op) => `| ${op} | ${f[`injected ${op}`] ?? 0} | ${f[`survived ${op}`] ?? 0} | ${f[`points ${op}`] ?? 0} |`),
];
console.log(lines.join("\n"));
JS
)
echo "$body"
append_results "integrity: faults, races, full disk, bad inputs" "$body"
exit $status
