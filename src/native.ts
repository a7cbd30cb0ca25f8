// The one typed wrapper around the C++ addon (native/). Every syscall tsrun makes outside
// Node's own fs/net goes through here, and the launch plan's wire format is written here.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { existsSync } from "node:fs";

export interface SpawnHandle {
  pid: number;
  pidfd: number;
  syncFd: number;
  errorFd: number;
  socketFd: number;
}

export interface ChildFailure {
  errno: number;
  /** 0: setup failed (exit 125), 1: command not found (127), 2: command cannot be invoked (126). */
  kind: 0 | 1 | 2;
  step: string;
  message: string;
}

export interface ResumeResult {
  ptyFd: number;
  /** The command's pid (for an exec into a container, not the spawned intermediate). */
  pid: number;
  error?: ChildFailure;
}

export interface ExitStatus {
  code: number;
  signal: number;
}

/** [mode, uid, gid, size, mtimeSec, mtimeNsec, rdevMajor, rdevMinor, nlink, ino, dev] */
export type RawStat = [number, number, number, number, number, number, number, number, number, number, number];

interface NativeAddon {
  spawn(plan: Buffer): SpawnHandle;
  /** Lets the child go (syncFd -1: it was closed, the start is cancelled) and reads how its exec went. */
  resume(syncFd: number, errorFd: number, socketFd: number, tty: boolean): ResumeResult;
  waitPid(pid: number): Promise<ExitStatus>;
  setWinsize(fd: number, rows: number, cols: number): void;
  strerror(errno: number): string;
  /** [readFd, writeFd], close-on-exec; grown to capacity bytes where the kernel allows. */
  pipe(capacity?: number): [number, number];
  /** A close-on-exec duplicate of fd. */
  dup(fd: number): number;
  flock(fd: number, exclusive: boolean, wait: boolean): boolean;
  /** Runs the commands concurrently (posix_spawn, PATH lookup) and waits for all of them. */
  runTools(commands: string[][]): { code: number; signal: number; error?: string; stderr: string }[];
  /**
   * Starts a program detached (own session, /dev/null stdio, fd3 as its fd 3 and fd4 as its fd 4
   * when >= 0) and returns its pid; nothing waits for it. The container monitor (its ready pipe,
   * the connection to the network holder), a foreground run's slirp4netns (ready and exit pipes).
   */
  spawnDetached(path: string, args: string[], fd3: number, fd4?: number): number;
  /** Waits until fd is readable (or all its writers closed it): true, or false after timeoutMs. */
  pollIn(fd: number, timeoutMs: number): boolean;
  /** Connects to tsrun-netns; throws with code ENOENT/ECONNREFUSED (none listens) or ECONNRESET (exiting). */
  netnsConnect(socketPath: string): { fd: number; pid: number };
  /** One request to tsrun-netns; the reply is "ok" or "err MESSAGE". */
  netnsRequest(fd: number, line: string): string;
  /** A new network namespace owned by the holder's user namespace, as an fd (close-on-exec). */
  netnsNewNetwork(fd: number): number;
  openInRoot(rootFd: number, relPath: string, flags: number, mode: number): number;
  openAt(dirFd: number, name: string, flags: number, mode: number): number;
  mkdirAt(dirFd: number, name: string, mode: number): void;
  symlinkAt(target: string, dirFd: number, name: string): void;
  linkAt(existingFd: number, dirFd: number, name: string): void;
  mknodAt(dirFd: number, name: string, mode: number, major: number, minor: number): void;
  chownAt(dirFd: number, name: string, uid: number, gid: number): void;
  chmodFd(fd: number, mode: number): void;
  setXattrFd(fd: number, name: string, value: Buffer): void;
  getXattrs(fd: number): Record<string, Buffer>;
  utimesAt(dirFd: number, name: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  /** Times of an fd open for reading or writing (not O_PATH). */
  futimens(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  unlinkAt(dirFd: number, name: string, isDir: boolean): void;
  renameAt(fromDirFd: number, from: string, toDirFd: number, to: string): void;
  readlinkAt(dirFd: number, name: string): string;
  /** sync_file_range(SYNC_FILE_RANGE_WRITE) of the whole file: writeback starts, nothing waits. */
  startWriteback(fd: number): void;
  /** read(2) into buffer[offset, offset + length); 0 at the end of the file. Throws with code/errno. */
  readInto(fd: number, buffer: Buffer, offset: number, length: number): number;
  lstatAt(dirFd: number, name: string): RawStat;
  /** mount(2); for the storage worker inside its own user+mount namespace. Throws with code/errno. */
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  /** Compiles a resolved seccomp filter to classic BPF (libseccomp); unknown syscalls are skipped. */
  compileSeccomp(filter: {
    defaultAction: number;
    arches: string[];
    rules: { name: string; action: number; args: [number, number, string, string][] }[];
  }): { program: Buffer; unknown: string[] };
  /** libseccomp's version, "major.minor.micro". */
  seccompVersion(): string;
  /** bin/tsrun's loader (native/loader.cc): a file mapped into memory as Latin-1 text, not read. */
  mapText(file: string): string;
  /** The same as an ArrayBuffer over the read-only mapping. */
  mapBytes(file: string): ArrayBuffer;
  /** _exit(2), once Node's exit handlers have run. */
  exitNow(code: number): never;
}

/**
 * The CLI bundle's own path, set by scripts/bundle.mjs (its __filename); undefined where src is
 * compiled by tsc alone (the library), which uses import.meta.url. Turning import.meta.url into
 * a path (URL parsing, and a require made from a URL) cost ~1.5 ms of every command's start.
 */
declare const __TSRUN_BUNDLE_FILE__: string | undefined;

let root: string | undefined;
let loaded: NativeAddon | undefined;

/**
 * The package's root directory (with build/ and dist/). The code runs both as tsc output
 * (dist/<dir>/file.js) and as the CLI bundle (dist/tsrun.cjs), so look for package.json upward.
 */
export function packageRoot(): string {
  if (root === undefined) root = findPackageRoot(path.dirname(typeof __TSRUN_BUNDLE_FILE__ === "string" ? __TSRUN_BUNDLE_FILE__ : fileURLToPath(import.meta.url)));
  return root;
}

function findPackageRoot(here: string): string {
  let dir = here;
  for (let i = 0; i < 4; i++) {
    if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "binding.gyp"))) return dir;
    dir = path.dirname(dir);
  }
  return path.dirname(here);
}

/** The addon, loaded on first use so commands that need no syscalls start faster. */
export function native(): NativeAddon {
  if (!loaded) {
    const file = path.join(packageRoot(), "build", "Release", "tsrun_native.node");
    try {
      // (A require made from the absolute path: the addon loads as Node's require loads it.)
      loaded = createRequire(file)(file) as NativeAddon;
    } catch (err) {
      throw new Error(`cannot load the native addon ${file} (run "npm install"): ${(err as Error).message}`);
    }
  }
  return loaded;
}

/** The helper executables built beside the addon. */
export function helperPath(name: "tsrun-monitor" | "tsrun-netns" | "tsrun-forward"): string {
  return path.join(packageRoot(), "build", "Release", name);
}

/** The container monitor executable. */
export function monitorPath(): string {
  return helperPath("tsrun-monitor");
}

// Linux clone flags (include/uapi/linux/sched.h).
export const CLONE = {
  NEWNS: 0x00020000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
} as const;

// mount(2) flags (include/uapi/linux/mount.h).
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  REMOUNT: 32,
  BIND: 4096,
  REC: 16384,
  STRICTATIME: 1 << 24,
} as const;

/** One step of the child's setup before pivot_root; targets are paths inside the new root. */
export type PlanMount =
  | { kind: "mount"; source: string; target: string; fstype: string; flags: number; data: string; create: "dir" | "file" | "none" }
  | { kind: "bind"; source: string; target: string; flags: number; create: "dir" | "file"; recursive: boolean }
  /**
   * A mount of another mount namespace (nsPath, /proc/PID/ns/mnt), by its path there, cloned
   * onto target: a bind mount cannot cross mount namespaces.
   */
  | { kind: "bind-from-ns"; nsPath: string; source: string; target: string }
  | { kind: "symlink"; linkTarget: string; path: string }
  | { kind: "mkdir"; path: string; mode: number };

/** Everything the child needs, decided in TypeScript before the clone. */
export interface LaunchPlan {
  cloneFlags: number;
  /** The new root: mounted (overlay) or bound onto itself at path. cwd: where relative lowerdirs start. */
  root?: { path: string; source: string; fstype: string; data: string; flags: number; readOnly: boolean; cwd?: string };
  hostname?: string;
  /** setdomainname(2) in its UTS namespace (--domainname, --sysctl kernel.domainname). */
  domainname?: string;
  mounts: PlanMount[];
  maskedPaths: string[];
  readOnlyPaths: string[];
  /** /proc/sys files and values, written after the pivot, before the read-only paths. */
  sysctls?: Array<[string, string]>;
  argv: string[];
  env: string[];
  /** PATH searched for argv[0]; taken from env by the caller. */
  searchPath: string;
  cwd?: { path: string; create: boolean };
  user?: { uid: number; gid: number; groups: number[] };
  setGroupsAllowed: boolean;
  tty?: { rows: number; cols: number };
  stdio?: [number, number, number];
  stdinNull: boolean;
  noNewPrivileges: boolean;
  /** Bring lo up (with a new network namespace). */
  loopbackUp?: boolean;
  /**
   * After the first go (a byte on the sync pipe), the child sets up its root and stdio, then
   * waits for a second byte before it runs the command: the parent connects its network
   * meanwhile (see launchPlan's whileSettingUp).
   */
  holdBeforeExec?: boolean;
  /** exec into a running container: its /proc/PID/ns/* files, user namespace first. */
  joinNamespaces?: string[];
  /** Kill the child when the spawning thread dies (foreground runs, storage helpers). */
  dieWithParent: boolean;
  /** Capability sets (bit N = capability N); absent: left as the user namespace gives them. */
  capabilities?: { bounding: bigint; effective: bigint; permitted: bigint; inheritable: bigint; ambient: bigint };
  /** setrlimit(2) in the child: resource number (RLIMIT_*), soft, hard (-1: unlimited). */
  rlimits?: { resource: number; soft: number; hard: number }[];
  /** A compiled seccomp filter (classic BPF) and seccomp(2) flags, installed last. */
  seccomp?: { program: Buffer; flags: number };
  /** Enter a new cgroup namespace once resumed (after the parent moved the child to its cgroup). */
  unshareCgroup?: boolean;
  /**
   * User-defined networks: create the child's user namespace inside this one (the network
   * holder's /proc/PID/ns/user) with these id maps, written by the launcher itself.
   */
  nest?: { userns: string };
  /**
   * Namespace files of a running container (/proc/PID/ns/pid, ipc, uts) the nested launcher
   * joins before it clones the child (--pid/--ipc/--uts container:NAME); needs nest, and the
   * matching CLONE flags left out.
   */
  share?: string[];
}

/** Encodes a plan into the addon's wire format: key, count, fields, each NUL-terminated. */
export function encodePlan(plan: LaunchPlan): Buffer {
  const parts: string[] = [];
  const rec = (key: string, ...fields: (string | number)[]): void => {
    for (const f of fields) {
      if (String(f).includes("\0")) throw new Error(`${key}: value contains a NUL byte`);
    }
    parts.push(key, String(fields.length), ...fields.map(String));
  };
  rec("clone", plan.cloneFlags);
  if (plan.root) {
    const r = plan.root;
    rec("root", r.path, r.source, r.fstype, r.data, r.flags);
    if (r.cwd) rec("root-cwd", r.cwd);
    if (r.readOnly) rec("root-readonly");
  }
  if (plan.hostname) rec("hostname", plan.hostname);
  if (plan.domainname) rec("domainname", plan.domainname);
  for (const m of plan.mounts) {
    switch (m.kind) {
      case "mount":
        rec("mount", m.source, m.target, m.fstype, m.flags, m.data, m.create);
        break;
      case "bind":
        rec("bind", m.source, m.target, m.flags, m.create, m.recursive ? "1" : "0");
        break;
      case "bind-from-ns":
        rec("bind-from-ns", m.nsPath, m.source, m.target);
        break;
      case "symlink":
        rec("symlink", m.linkTarget, m.path);
        break;
      case "mkdir":
        rec("mkdir", m.path, m.mode.toString(8));
        break;
    }
  }
  for (const [p, v] of plan.sysctls ?? []) rec("sysctl", p, v);
  for (const p of plan.maskedPaths) rec("mask", p);
  for (const p of plan.readOnlyPaths) rec("readonly", p);
  rec("argv", ...plan.argv);
  rec("env", ...plan.env);
  rec("path", plan.searchPath);
  if (plan.cwd) rec("cwd", plan.cwd.path, plan.cwd.create ? "1" : "0");
  if (plan.user) rec("user", plan.user.uid, plan.user.gid, ...plan.user.groups);
  if (!plan.setGroupsAllowed) rec("no-setgroups");
  if (plan.tty) rec("tty", plan.tty.rows, plan.tty.cols);
  if (plan.stdio) rec("stdio", ...plan.stdio);
  if (plan.stdinNull) rec("stdin-null");
  if (plan.noNewPrivileges) rec("no-new-privs");
  if (plan.loopbackUp) rec("loopback-up");
  if (plan.holdBeforeExec) rec("hold-before-exec");
  if (plan.joinNamespaces) rec("join", ...plan.joinNamespaces);
  if (!plan.dieWithParent) rec("keep-with-parent");
  if (plan.capabilities) {
    const c = plan.capabilities;
    rec("caps", ...[c.bounding, c.effective, c.permitted, c.inheritable, c.ambient].map((m) => m.toString(16)));
  }
  for (const r of plan.rlimits ?? []) rec("rlimit", r.resource, r.soft, r.hard);
  if (plan.seccomp) rec("seccomp", plan.seccomp.flags, plan.seccomp.program.toString("hex"));
  if (plan.unshareCgroup) rec("unshare-cgroup");
  if (plan.nest) rec("nest", plan.nest.userns);
  if (plan.share && plan.share.length > 0) rec("share", ...plan.share);
  return Buffer.from(parts.join("\0") + "\0", "utf8");
}
