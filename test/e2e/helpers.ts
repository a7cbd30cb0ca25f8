// Driving bin/tsrun as a real process, as the unprivileged test user when the suite is root.
import { execa, type Result } from "execa";
import { inject } from "vitest";
import { copyFileSync, existsSync, mkdtempSync, chownSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const env = inject("e2e");

export interface CliOptions {
  input?: string | Buffer;
  /** Extra environment for tsrun. */
  env?: Record<string, string>;
  timeout?: number;
  /** Run through `script` so that stdin/stdout are a terminal. */
  cwd?: string;
}

/** The environment tsrun runs with: the test user's home, the test store, a plain PATH. */
export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  const home = env.user ? env.user.home : (process.env.HOME ?? "/tmp");
  return {
    HOME: home,
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    TSRUN_ROOT: env.storeRoot,
    LANG: "C.UTF-8",
    ...extra,
  };
}

/** Prefix that drops to the test user (setpriv keeps the environment we give it). */
export function asUser(argv: string[]): string[] {
  if (!env.user) return argv;
  return ["setpriv", `--reuid=${env.user.uid}`, `--regid=${env.user.gid}`, "--init-groups", ...argv];
}

export type CliResult = Result<{ reject: false; all: true }>;

/** Runs `tsrun ARGS...` and returns its result without throwing on a non-zero exit. */
export async function tsrun(args: string[], opts: CliOptions = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...rest] = asUser([env.cli, ...args]);
  const r = await execa(cmd as string, rest, {
    reject: false,
    extendEnv: false,
    env: cliEnv(opts.env),
    input: opts.input ?? "",
    timeout: opts.timeout ?? 60_000,
    cwd: opts.cwd ?? env.base,
    stripFinalNewline: false,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Runs `tsrun ARGS...` and returns its stdout; a non-zero exit throws with its stderr (and stdout). */
export async function tsrunOk(args: string[], opts: CliOptions = {}): Promise<string> {
  const r = await tsrun(args, opts);
  if (r.code !== 0) throw new Error(`tsrun ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout ? `\n${r.stdout}` : ""}`);
  return r.stdout;
}

/** Runs a shell command line as the test user (for `script`, pipes, host-side checks). */
export async function shAsUser(line: string, opts: CliOptions = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...rest] = asUser(["sh", "-c", line]);
  const r = await execa(cmd as string, rest, {
    reject: false,
    extendEnv: false,
    env: cliEnv({ TSRUN: env.cli, ...opts.env }),
    input: opts.input ?? "",
    timeout: opts.timeout ?? 60_000,
    cwd: opts.cwd ?? env.base,
    stripFinalNewline: false,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** A scratch directory owned by the test user. */
export function scratchDir(prefix: string): string {
  mkdirSync(env.base, { recursive: true });
  const dir = mkdtempSync(path.join(env.base, `${prefix}-`));
  if (env.user) chownSync(dir, env.user.uid, env.user.gid);
  return dir;
}

/** A scratch directory holding these files (mode 0644, or [content, mode]), all owned by the test user. */
export function filesDir(entries: Record<string, string | [string, number]>, prefix: string): string {
  const dir = scratchDir(prefix);
  for (const [name, value] of Object.entries(entries)) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    const [content, mode] = typeof value === "string" ? [value, 0o644] : value;
    writeFileSync(file, content, { mode });
  }
  if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, dir]);
  return dir;
}

/** Interop tests need Debian's podman and skopeo (CI installs them); without them they are skipped, saying why. */
export const missingInteropTools = ["podman", "skopeo"].filter((tool) => !existsSync(`/usr/bin/${tool}`));
if (missingInteropTools.length > 0) console.warn(`podman/skopeo interop tests skipped: ${missingInteropTools.join(" and ")} not installed (Debian packages of the same names)`);

/**
 * A podman command line (vfs storage, runc) with its own store in dir/root and dir/run. Podman
 * refuses a runroot of 50 characters or more, which a scratch dir under a long TSRUN_E2E_BASE
 * exceeds: the runroot is then reached through a short link in /tmp, named after dir.
 */
export function podmanCli(dir: string): string {
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true });
    if (env.user) chownSync(dir, env.user.uid, env.user.gid);
  }
  let runroot = path.join(dir, "run");
  if (runroot.length >= 50) {
    mkdirSync(runroot, { recursive: true });
    if (env.user) chownSync(runroot, env.user.uid, env.user.gid);
    const link = `/tmp/tsrun-podman-${createHash("sha256").update(runroot).digest("hex").slice(0, 12)}`;
    if (!existsSync(link)) symlinkSync(runroot, link);
    runroot = link;
  }
  return `podman --root ${path.join(dir, "root")} --runroot ${runroot} --storage-driver vfs --runtime runc`;
}

/** A fresh, empty store owned by the test user (archive tests load into it). */
export function emptyStore(): { TSRUN_ROOT: string } {
  return { TSRUN_ROOT: path.join(scratchDir("archive-store"), "store") };
}

/** Everything a load may change: blobs, unpacked layers and their links, the image index, leftovers. */
export function storeSnapshot(root: string): string {
  const list = (dir: string): string[] => (existsSync(path.join(root, dir)) ? readdirSync(path.join(root, dir)).sort() : []);
  const index = existsSync(path.join(root, "images", "index.json")) ? readFileSync(path.join(root, "images", "index.json"), "utf8") : "";
  return JSON.stringify({ blobs: list("blobs/sha256"), layers: list("layers"), links: list("l"), tmp: list("tmp"), index }, null, 1);
}

/** The full IDs of a store's images, sorted. */
export async function imageIds(store: { TSRUN_ROOT: string }): Promise<string[]> {
  const r = await tsrun(["images", "-q", "--no-trunc"], { env: store });
  return r.stdout.trim().split("\n").filter(Boolean).sort();
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls check until it holds; a generous deadline, as the machine may be busy: only a failure waits that long. */
export async function until(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(50);
  }
}

/** A name no other test uses: PREFIX-time-random. */
export const unique = (prefix: string): string => `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;

/** Imports the busybox fixture under a name (idempotent), with optional --change lines. */
export async function importBusybox(name: string, changes: string[] = []): Promise<string> {
  const args = ["import", ...changes.flatMap((c) => ["-c", c]), env.busyboxTar, name];
  const r = await tsrun(args);
  if (r.code !== 0) throw new Error(`import ${name} failed: ${r.stderr}`);
  return r.stdout.trim();
}

export type PtyStep = { expect: string } | { send: string } | { resize: [number, number] } | { sleep: number };

/** Runs a shell line as the test user on a real pty of ROWS x COLS, driven by test/e2e/pty-driver.py. */
export async function onPty(rows: number, cols: number, steps: PtyStep[], line: string): Promise<{ output: string; code: number; failed: unknown }> {
  const driver = path.join(env.base, "pty-driver.py");
  if (!existsSync(driver)) copyFileSync(fileURLToPath(new URL("pty-driver.py", import.meta.url)), driver);
  const [cmd, ...args] = asUser(["python3", driver, String(rows), String(cols), JSON.stringify(steps), "sh", "-c", line]);
  const r = await execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv({ TSRUN: env.cli }), cwd: env.base, timeout: 60_000 });
  return JSON.parse(String(r.stdout)) as { output: string; code: number; failed: unknown };
}
