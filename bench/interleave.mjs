// Several commands measured interleaved, a stand-in for `hyperfine -N`: round r runs every command
// once, forward on even rounds and reversed on odd ones (A B C, C B A, ...). hyperfine runs all
// runs of one command, then all of the next; this machine's speed drifts by up to a third within
// minutes, so commands measured minutes apart are compared at different speeds. Interleaved,
// drift hits every command alike, and the alternating order balances a steady drift and
// whichever command runs after which. Warm-up rounds (untimed) are interleaved too.
// Each round is one `hyperfine -N --runs 1` over the commands in that round's order, so every
// run is timed as hyperfine times it (timing here with Node's spawnSync added ~7 ms per run:
// Node clones its whole process to start a child). --prepare runs before every run of its
// command, outside the time measured: once for all commands or once per command, in order, as
// hyperfine takes it; like the commands, without a shell (hyperfine -N): `sh -c '...'` for
// shell syntax. A command or preparation that fails stops the measurement (exit 1), unless
// -i/--ignore-failure (passed on to hyperfine) says a failing command is what is measured.
// --export-json writes hyperfine's shape (results[].command, mean, stddev, median, min, max,
// user, system, times, in seconds) for median_ms and cpu_ms in bench/lib.sh; a summary goes to
// stderr.
// Usage: node bench/interleave.mjs [-i] [--warmup N] [--runs N] [--prepare CMD]... [--export-json FILE] CMD...
//        (defaults: no warm-up, 10 runs; exit 0 ok, 1 a command failed, 2 bad usage)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

function usage(problem) {
  process.stderr.write(`interleave: ${problem}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { warmup: 0, runs: 10, prepares: [], exportJson: null, ignoreFailure: false, commands: [] };
  const count = (name, value, min) => {
    if (!/^\d+$/.test(value) || Number(value) < min) {
      usage(`${name} needs a ${min > 0 ? "positive" : "non-negative"} integer, got '${value}'`);
    }
    return Number(value);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("-")) {
      opts.commands.push(arg);
      continue;
    }
    if (arg === "-i" || arg === "--ignore-failure") {
      opts.ignoreFailure = true;
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (!["--warmup", "--runs", "--prepare", "--export-json"].includes(name)) usage(`unknown option ${arg}`);
    let value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) usage(`${name} needs a value`);
    if (name === "--warmup") opts.warmup = count(name, value, 0);
    else if (name === "--runs") opts.runs = count(name, value, 1);
    else if (name === "--prepare") opts.prepares.push(value);
    else opts.exportJson = value;
  }
  if (opts.commands.length === 0) usage("no command given");
  for (const command of opts.commands) {
    if (command.trim() === "") usage("empty command");
  }
  const n = opts.commands.length;
  if (opts.prepares.length > 1 && opts.prepares.length !== n) {
    usage(`${opts.prepares.length} --prepare for ${n} commands (give one, or one per command)`);
  }
  return opts;
}

const scratch = mkdtempSync(path.join(tmpdir(), "interleave-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

// Runs round roundIndex: every command once (after its preparation), forward on even rounds,
// reversed on odd ones, in one hyperfine; calls record(i, seconds, user, system) for each.
function round(commands, prepares, roundIndex, record, ignoreFailure) {
  const order = commands.map((_, i) => i);
  if (roundIndex % 2 === 1) order.reverse();
  const json = path.join(scratch, "round.json");
  const args = ["-N", "--runs", "1", "--style", "none", "--export-json", json, ...(ignoreFailure ? ["-i"] : [])];
  if (prepares.length === 1) args.push("--prepare", prepares[0]);
  else for (const i of order) if (prepares.length > 0) args.push("--prepare", prepares[i]);
  for (const i of order) args.push(commands[i]);
  const result = spawnSync("hyperfine", args, { stdio: ["ignore", "ignore", "pipe"], maxBuffer: 256 * 1024 * 1024 });
  if (result.error !== undefined || result.status !== 0) {
    const status = result.error ? `could not run hyperfine (${result.error.code ?? result.error.message})` : `exit status ${result.status}`;
    const lines = (result.stderr ?? "").toString().trimEnd().split("\n");
    process.stderr.write(`interleave: round ${roundIndex + 1} failed: ${status}\n  ${lines.slice(-3).join("\n  ")}\n`);
    process.exit(1);
  }
  const { results } = JSON.parse(readFileSync(json, "utf8"));
  order.forEach((i, k) => record(i, results[k].times[0], results[k].user, results[k].system));
}

function stats(command, times, cpu) {
  const n = times.length;
  const sorted = [...times].sort((a, b) => a - b);
  const mean = times.reduce((s, t) => s + t, 0) / n;
  // Sample standard deviation, as hyperfine's (null for a single run, as its export).
  const stddev = n > 1 ? Math.sqrt(times.reduce((s, t) => s + (t - mean) ** 2, 0) / (n - 1)) : null;
  const median = n % 2 === 1 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  const user = cpu.reduce((sum, c) => sum + c.user, 0) / n;
  const system = cpu.reduce((sum, c) => sum + c.system, 0) / n;
  return { command, mean, stddev, median, min: sorted[0], max: sorted[n - 1], user, system, times };
}

const opts = parseArgs(process.argv.slice(2));
const times = opts.commands.map(() => []);
const cpu = opts.commands.map(() => []);
for (let r = 0; r < opts.warmup; r++) round(opts.commands, opts.prepares, r, () => {}, opts.ignoreFailure);
for (let r = 0; r < opts.runs; r++) round(opts.commands, opts.prepares, r, (i, s, user, system) => {
    times[i].push(s);
    cpu[i].push({ user, system });
  }, opts.ignoreFailure);
const results = opts.commands.map((command, i) => stats(command, times[i], cpu[i]));
if (opts.exportJson !== null) writeFileSync(opts.exportJson, JSON.stringify({ results }, null, 2) + "\n");

const ms = (s) => (s * 1000).toFixed(1);
process.stderr.write(`${opts.runs} interleaved rounds after ${opts.warmup} warm-up:\n`);
for (const r of results) {
  const spread = r.stddev === null ? "" : ` ± ${ms(r.stddev)}`;
  let line = `  ${r.command}\n    median ${ms(r.median)} ms, mean ${ms(r.mean)}${spread} ms`;
  if (r !== results[0]) line += `, median ${(r.median / results[0].median).toFixed(2)} × the first`;
  process.stderr.write(line + "\n");
}
