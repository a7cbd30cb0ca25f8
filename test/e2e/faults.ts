// The fault-injection harness of the integrity tests: runs bin/tsrun (as the test user) in its
// own process group and kills it with SIGKILL at a named crash point (TSRUN_FAULT, see
// src/store/fault.ts) or after a delay, waits until every process it started is gone, and reads
// `system check --format json`. Seeded, so that a failure names the seed that reproduces it.
import { execa } from "execa";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { asUser, cliEnv, env, scratchDir, tsrun } from "./helpers.js";
import { startRegistry, type Registry } from "./registry-server.js";

/** mulberry32: small, fast, good enough to pick crash points reproducibly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** TSRUN_FAULT_SEED when given (to reproduce a failure), else a fresh one. */
export function suiteSeed(): number {
  const given = process.env.TSRUN_FAULT_SEED;
  return given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
}

/** An environment variable as a count, with a default. */
export function countFromEnv(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v >= 0 ? v : fallback;
}

export interface Outcome {
  code: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Whether any process is still in process group pgid. */
function groupAlive(pgid: number): boolean {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields after the name: state, ppid, pgrp.
      if (Number(fields[2]) === pgid && fields[0] !== "Z") return true;
    } catch {
      // Gone while we looked.
    }
  }
  return false;
}

async function waitGroupGone(pgid: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) throw new Error(`processes of group ${pgid} still run ${timeoutMs} ms after the kill`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Fault {
  /** TSRUN_FAULT value: "NAME[@N]". */
  point?: string;
  /** Kill after this many milliseconds instead. */
  delayMs?: number;
}

export function describeFault(f: Fault): string {
  return f.point ? `at point ${f.point}` : `after ${f.delayMs} ms`;
}

/** Runs tsrun ARGS (extra environment: store, fault) in its own process group; kills it as the fault says. */
export async function runWithFault(args: string[], extraEnv: Record<string, string>, fault: Fault = {}, input = ""): Promise<Outcome & { killed: boolean }> {
  const [cmd, ...rest] = asUser([env.cli, ...args]);
  const started = Date.now();
  const child = execa(cmd as string, rest, {
    reject: false,
    extendEnv: false,
    env: cliEnv({ ...extraEnv, ...(fault.point ? { TSRUN_FAULT: fault.point } : {}) }),
    input,
    cwd: env.base,
    detached: true,
    timeout: 120_000,
    stripFinalNewline: false,
  });
  const pid = child.pid as number;
  let timer: NodeJS.Timeout | undefined;
  if (fault.delayMs !== undefined) {
    timer = setTimeout(() => {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Finished already.
      }
    }, fault.delayMs);
  }
  const r = await child;
  if (timer) clearTimeout(timer);
  const killed = r.signal === "SIGKILL";
  // Helpers it started die with it (PR_SET_PDEATHSIG) or on their own; wait for all of them.
  await waitGroupGone(pid);
  return { code: r.exitCode, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr), ms: Date.now() - started, killed };
}

/** The crash points an operation passes (in order, repeated ones as NAME@N) and how long it takes. */
export async function tracePoints(args: string[], extraEnv: Record<string, string>): Promise<{ points: string[]; outcome: Outcome }> {
  const dir = scratchDir("trace");
  const file = path.join(dir, "points");
  const outcome = await runWithFault(args, { ...extraEnv, TSRUN_FAULT_TRACE: file });
  const seen = new Map<string, number>();
  const points = existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((name) => {
          const n = (seen.get(name) ?? 0) + 1;
          seen.set(name, n);
          return n === 1 ? name : `${name}@${n}`;
        })
    : [];
  rmSync(dir, { recursive: true, force: true });
  return { points, outcome };
}

export interface CheckFinding {
  kind: "damaged" | "leftover";
  subject: string;
  problem: string;
  repaired?: string;
  unrepaired?: string;
}

export interface CheckResult {
  code: number;
  ok: boolean;
  findings: CheckFinding[];
  reclaimable: { blobs: number; layers: number; bytes: number };
  raw: string;
}

/** `system check --format json` on a store (extra flags: --repair, --quick, ...). */
export async function checkStore(extraEnv: Record<string, string>, flags: string[] = []): Promise<CheckResult> {
  const r = await tsrun(["system", "check", "--format", "json", ...flags], { env: extraEnv });
  let report: { ok: boolean; findings: CheckFinding[]; reclaimable: CheckResult["reclaimable"] };
  try {
    report = JSON.parse(r.stdout) as typeof report;
  } catch {
    throw new Error(`system check printed no report (exit ${r.code}): ${r.stderr}`);
  }
  return { code: r.code, ok: report.ok, findings: report.findings, reclaimable: report.reclaimable, raw: r.stdout };
}

export const damaged = (c: CheckResult): CheckFinding[] => c.findings.filter((f) => f.kind === "damaged");

/**
 * Counts for bench/RESULTS.md: each test file adds its own under a key of the JSON file named by
 * TSRUN_INTEGRITY_REPORT (bench/faults.sh sets it).
 */
export function reportCounts(key: string, counts: Record<string, number>): void {
  const file = process.env.TSRUN_INTEGRITY_REPORT;
  if (!file) return;
  let all: Record<string, Record<string, number>> = {};
  try {
    all = JSON.parse(readFileSync(file, "utf8")) as typeof all;
  } catch {
    // First writer.
  }
  const mine = all[key] ?? {};
  for (const [k, v] of Object.entries(counts)) mine[k] = (mine[k] ?? 0) + v;
  all[key] = mine;
  writeFileSync(file, JSON.stringify(all, null, 2) + "\n");
}

function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

export interface Paused {
  pid: number;
  /** Lets it go on (SIGCONT) and waits for its end. */
  resume(): Promise<Outcome>;
}

/**
 * Starts tsrun ARGS and lets it run until it stops itself at crash point `point` (TSRUN_FAULT
 * with ":stop"): other commands can then run at exactly that point of the operation.
 */
export async function startPausedAt(args: string[], extraEnv: Record<string, string>, point: string): Promise<Paused> {
  const [cmd, ...rest] = asUser([env.cli, ...args]);
  const started = Date.now();
  const child = execa(cmd as string, rest, {
    reject: false,
    extendEnv: false,
    env: cliEnv({ ...extraEnv, TSRUN_FAULT: `${point}:stop` }),
    input: "",
    cwd: env.base,
    detached: true,
    timeout: 120_000,
    stripFinalNewline: false,
  });
  const pid = child.pid as number;
  let ended = false;
  const done = child.then((r) => {
    ended = true;
    return r;
  });
  const deadline = Date.now() + 60_000;
  while (processState(pid) !== "T") {
    if (ended) {
      const r = await done;
      throw new Error(`tsrun ${args.join(" ")} ended (exit ${r.exitCode}) before reaching point ${point}: ${String(r.stderr)}`);
    }
    if (Date.now() > deadline) throw new Error(`tsrun ${args.join(" ")} did not reach point ${point}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return {
    pid,
    resume: async () => {
      process.kill(pid, "SIGCONT");
      const r = await done;
      await waitGroupGone(pid);
      return { code: r.exitCode, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr), ms: Date.now() - started };
    },
  };
}

type Env = Record<string, string>;

/** Runs tsrun ARGS in a store; throws with its stderr unless it succeeds. Returns stdout. */
export async function must(args: string[], store: Env, what = args.join(" ")): Promise<string> {
  const r = await tsrun(args, { env: store });
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export async function exists(kind: "image" | "container" | "volume", name: string, store: Env): Promise<boolean> {
  const args = kind === "image" ? ["image", "inspect", name] : kind === "container" ? ["inspect", "--type", "container", name] : ["volume", "inspect", name];
  return (await tsrun(args, { env: store })).code === 0;
}

/** A rootfs tarball: busybox plus a file of random bytes, so that its layer is new to a store. */
export function busyboxPlusRandom(label: string, bytes: number): string {
  const dir = scratchDir(`rootfs-${label}`);
  const root = path.join(dir, "root");
  mkdirSync(root);
  execFileSync("tar", ["-C", root, "-xf", env.busyboxTar]);
  writeFileSync(path.join(root, `random-${label}`), randomBytes(bytes));
  const tar = path.join(dir, "rootfs.tar");
  execFileSync("tar", ["-C", root, "-cf", tar, "."]);
  chmodSync(tar, 0o644);
  return tar;
}

export interface Fixtures {
  registry: Registry;
  /** In the registry: "layered:1", busybox plus a layer with /random.bin (bytes of random data). */
  pullRef: string;
  /** The same image as a docker-archive, named layered:1. */
  archive: string;
  /** busybox plus a random file, as a rootfs tarball. */
  importTar: string;
}

/** Starts a registry and makes the images and files the integrity tests work with. */
export async function makeFixtures(label: string, randomBytesInLayer = 300_000): Promise<Fixtures> {
  const work = scratchDir(label);
  const registry = await startRegistry(work, "registry");
  const base: Env = { TSRUN_ROOT: scratchDir(`store-${label}-base`) };
  await must(["import", env.busyboxTar, "bb"], base);
  await must(["run", "--name", "mk", "--network", "none", "bb", "sh", "-c", `head -c ${randomBytesInLayer} /dev/urandom > /random.bin`], base);
  await must(["commit", "mk", "layered:1"], base);
  const pullRef = `${registry.host}/${label}/layered:1`;
  await must(["push", "layered:1", pullRef], base);
  const archive = path.join(scratchDir(`archive-${label}`), "layered.tar");
  await must(["save", "-o", archive, "layered:1"], base);
  return { registry, pullRef, archive, importTar: busyboxPlusRandom(label, randomBytesInLayer) };
}
