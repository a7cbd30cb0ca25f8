// Prepares the end-to-end environment once per test run.
//
// Rootless is the product: when the suite runs as root it creates an unprivileged user with
// /etc/subuid and /etc/subgid ranges and every e2e test drives bin/tsrun as that user. The
// package is copied where that user can read it (a CI checkout may sit under /root).
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, appendFileSync, chmodSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// TSRUN_E2E_BASE lets several checkouts run their suites side by side.
export const E2E_BASE = process.env.TSRUN_E2E_BASE ?? "/tmp/tsrun-e2e";
const TEST_USER = "tsrun-test";

function nextFreeRange(file: string): number {
  let end = 100000;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const [, start, count] = line.split(":");
    if (start && count) end = Math.max(end, Number(start) + Number(count));
  }
  return end;
}

function ensureUser(): { uid: number; gid: number; home: string } {
  try {
    execFileSync("id", ["-u", TEST_USER], { stdio: "ignore" });
  } catch {
    execFileSync("useradd", ["-m", "-s", "/bin/sh", TEST_USER]);
  }
  for (const file of ["/etc/subuid", "/etc/subgid"]) {
    if (!existsSync(file)) writeFileSync(file, "");
    const has = readFileSync(file, "utf8").split("\n").some((l) => l.startsWith(`${TEST_USER}:`));
    if (!has) appendFileSync(file, `${TEST_USER}:${nextFreeRange(file)}:65536\n`);
  }
  const uid = Number(execFileSync("id", ["-u", TEST_USER]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", TEST_USER]).toString().trim());
  const home = execFileSync("sh", ["-c", `getent passwd ${TEST_USER} | cut -d: -f6`]).toString().trim();
  return { uid, gid, home };
}

/** What the e2e helpers need, passed through vitest's provide/inject. */
export interface E2eEnvironment {
  cli: string;
  user: { uid: number; gid: number; home: string } | null;
  storeRoot: string;
  busyboxTar: string;
  base: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    e2e: E2eEnvironment;
  }
}

/**
 * Detaches what a killed earlier run left mounted under the base dir (the full-disk tests mount
 * tmpfs there): removing the dir would fail with EBUSY. Deepest first; needs root.
 */
function unmountLeftovers(base: string): void {
  const points = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) => (line.split(" ")[1] ?? "").replace(/\\040/g, " "))
    .filter((point) => point.startsWith(`${base}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of points) execFileSync("umount", ["-l", point]);
}

export default function setup(project: TestProject): void {
  const isRoot = process.getuid?.() === 0;
  if (!existsSync(path.join(repo, "dist", "tsrun.cjs"))) throw new Error("dist/tsrun.cjs missing: run npm run build first");
  if (isRoot) unmountLeftovers(E2E_BASE);
  rmSync(E2E_BASE, { recursive: true, force: true, maxRetries: 2 });
  mkdirSync(E2E_BASE, { recursive: true });
  chmodSync(E2E_BASE, 0o755);
  const busyboxTar = path.join(E2E_BASE, "busybox.tar");
  execFileSync(path.join(repo, "scripts", "make-busybox-rootfs.sh"), [busyboxTar]);
  chmodSync(busyboxTar, 0o644);
  let cli = path.join(repo, "bin", "tsrun");
  let user: E2eEnvironment["user"] = null;
  if (isRoot) {
    user = ensureUser();
    const pkg = path.join(E2E_BASE, "pkg");
    // What an installed package has: the runtime dependencies too, so that a Node program of
    // the test user can import the library (dist/index.js).
    const runtimeDeps = execFileSync("npm", ["ls", "--omit=dev", "--parseable", "--all"], { cwd: repo })
      .toString()
      .split("\n")
      .map((dir) => path.relative(repo, dir.trim()))
      .filter((rel) => rel.startsWith("node_modules"));
    const executables = ["tsrun_native.node", "tsrun-monitor", "tsrun-netns", "tsrun-forward"].map((f) => `build/Release/${f}`);
    for (const part of ["bin", "dist", ...executables, "package.json", "binding.gyp", ...runtimeDeps]) {
      cpSync(path.join(repo, part), path.join(pkg, part), { recursive: true, dereference: false });
    }
    execFileSync("chmod", ["-R", "a+rX", pkg]);
    cli = path.join(pkg, "bin", "tsrun");
  }
  const storeRoot = path.join(E2E_BASE, "store");
  const env: E2eEnvironment = { cli, user, storeRoot, busyboxTar, base: E2E_BASE };
  if (user) {
    // The store, and a scratch dir per test file, belong to the test user.
    mkdirSync(storeRoot, { recursive: true });
    execFileSync("chown", [`${user.uid}:${user.gid}`, storeRoot, E2E_BASE]);
  }
  project.provide("e2e", env);
}
