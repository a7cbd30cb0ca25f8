// The confinement flags of `run`/`create` (--cap-add, --cap-drop, --privileged, --security-opt,
// --ulimit, --pids-limit, --memory, --cpus, --userns), checked and turned into the settings a
// container record keeps. Every mistake is refused here, before anything is created.
import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import { TsrunError } from "../../errors.js";
import { containerCapabilities } from "./capabilities.js";
import { parseProfileJson, parseSeccompProfile } from "./seccomp.js";
import type { UsernsMode } from "../../userns.js";

export interface Ulimit {
  Name: string;
  Soft: number;
  Hard: number;
}

export interface Resources {
  /** Docker's PidsLimit; 0 or absent: unlimited. */
  pidsLimit?: number;
  /** Bytes. */
  memory?: number;
  /** CPUs times 1e9, as Docker's NanoCpus. */
  nanoCpus?: number;
  /** --cpu-shares: relative weight (Docker's 2-262144, 1024 the default). */
  cpuShares?: number;
  /** --cpu-period and --cpu-quota, microseconds (CFS). */
  cpuPeriod?: number;
  cpuQuota?: number;
  /** --cpuset-cpus and --cpuset-mems: lists such as 0-3,5. */
  cpusetCpus?: string;
  cpusetMems?: string;
  /** --memory-swap: memory plus swap in bytes, -1 unlimited. */
  memorySwap?: number;
  /** --memory-reservation: the soft limit in bytes. */
  memoryReservation?: number;
}


export interface SecurityConfig {
  privileged: boolean;
  /** As given (Docker shows them so). */
  capAdd: string[];
  capDrop: string[];
  noNewPrivileges: boolean;
  /** Docker's default profile, none, or a custom profile's JSON text. */
  seccomp: { kind: "default" } | { kind: "unconfined" } | { kind: "custom"; profile: string };
  /** Podman's --security-opt mask=/unmask= (unmask may hold "ALL"). */
  mask: string[];
  unmask: string[];
  /** Docker's HostConfig.SecurityOpt (a custom seccomp profile inlined as Docker does). */
  securityOpt: string[];
  ulimits: Ulimit[];
  resources: Resources;
  userns: UsernsMode;
}

export interface SecurityFlags {
  privileged?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  securityOpt?: string[];
  ulimits?: string[];
  pidsLimit?: string | number | undefined;
  memory?: string | undefined;
  cpus?: string | undefined;
  cpuShares?: string | undefined;
  cpuPeriod?: string | undefined;
  cpuQuota?: string | undefined;
  cpusetCpus?: string | undefined;
  cpusetMems?: string | undefined;
  memorySwap?: string | undefined;
  memoryReservation?: string | undefined;
  userns?: string | undefined;
}

/** Docker's --ulimit names and the RLIMIT_* numbers (asm-generic/resource.h). */
export const ULIMIT_RESOURCES: Record<string, number> = {
  cpu: 0,
  fsize: 1,
  data: 2,
  stack: 3,
  core: 4,
  rss: 5,
  nproc: 6,
  nofile: 7,
  memlock: 8,
  as: 9,
  locks: 10,
  sigpending: 11,
  msgqueue: 12,
  nice: 13,
  rtprio: 14,
  rttime: 15,
};

/** The default container: Docker's defaults, a private user namespace. */
export function defaultSecurity(): SecurityConfig {
  return {
    privileged: false,
    capAdd: [],
    capDrop: [],
    noNewPrivileges: false,
    seccomp: { kind: "default" },
    mask: [],
    unmask: [],
    securityOpt: [],
    ulimits: [],
    resources: {},
    userns: { kind: "private" },
  };
}

function parseBool(value: string, what: string): boolean {
  if (/^(1|t|true|T|TRUE|True)$/.test(value)) return true;
  if (/^(0|f|false|F|FALSE|False)$/.test(value)) return false;
  throw new TsrunError(`invalid --security-opt ${what}: "${value}" is not a boolean`);
}

function absolutePaths(value: string, opt: string, allowAll: boolean): string[] {
  const paths = value.split(":").filter((p) => p !== "");
  for (const p of paths) {
    if (!(allowAll && p === "ALL") && !p.startsWith("/")) throw new TsrunError(`invalid --security-opt ${opt}: "${p}" is not an absolute path`);
  }
  return paths;
}

/** Applies one --security-opt to the config. */
function applySecurityOpt(config: SecurityConfig, opt: string): void {
  // Docker accepts "key=value" and the older "key:value".
  let eq = opt.indexOf("=");
  if (eq < 0) eq = opt.indexOf(":");
  const key = eq < 0 ? opt : opt.slice(0, eq);
  const value = eq < 0 ? undefined : opt.slice(eq + 1);
  switch (key) {
    case "no-new-privileges":
      config.noNewPrivileges = value === undefined ? true : parseBool(value, key);
      config.securityOpt.push(opt);
      return;
    case "seccomp": {
      if (!value) throw new TsrunError(`invalid --security-opt "${opt}": expected seccomp=unconfined or seccomp=PROFILE.json`);
      if (value === "unconfined") {
        config.seccomp = { kind: "unconfined" };
        config.securityOpt.push("seccomp=unconfined");
      } else if (value === "builtin" || value === "default") {
        config.seccomp = { kind: "default" };
      } else {
        let text: string;
        try {
          text = readFileSync(value, "utf8");
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          throw new TsrunError(`cannot read seccomp profile ${value}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (err as Error).message}`);
        }
        parseSeccompProfile(text, value);
        // Docker keeps the profile itself, not the file name: the file may change later.
        const compact = JSON.stringify(parseProfileJson(text));
        config.seccomp = { kind: "custom", profile: text };
        config.securityOpt.push(`seccomp=${compact}`);
      }
      return;
    }
    case "mask":
      config.mask.push(...absolutePaths(value ?? "", opt, false));
      config.securityOpt.push(opt);
      return;
    case "unmask":
      config.unmask.push(...absolutePaths(value ?? "", opt, true));
      config.securityOpt.push(opt);
      return;
    case "label":
      // SELinux labels: tsrun applies none, so "disable" is what every container has.
      if (value === "disable" || value === "nested") {
        config.securityOpt.push(opt);
        return;
      }
      throw new TsrunError(`invalid --security-opt "${opt}": SELinux labels are not supported by tsrun (only label=disable)`);
    case "apparmor":
      if (value === "unconfined") {
        config.securityOpt.push(opt);
        return;
      }
      throw new TsrunError(`invalid --security-opt "${opt}": AppArmor profiles are not supported by tsrun (only apparmor=unconfined)`);
    default:
      throw new TsrunError(`invalid --security-opt "${opt}": expected no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json, mask=PATHS, unmask=PATHS, label=disable or apparmor=unconfined`);
  }
}

/** `--ulimit NAME=SOFT[:HARD]` as Docker parses it (-1 is unlimited). */
export function parseUlimit(spec: string): Ulimit {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(spec);
  if (!m) throw new TsrunError(`invalid --ulimit "${spec}": expected NAME=SOFT[:HARD]`);
  const [, name, softText, hardText] = m as unknown as [string, string, string, string | undefined];
  if (!(name in ULIMIT_RESOURCES)) throw new TsrunError(`invalid --ulimit "${spec}": unknown limit "${name}" (${Object.keys(ULIMIT_RESOURCES).join(", ")})`);
  const soft = Number(softText);
  const hard = hardText === undefined ? soft : Number(hardText);
  for (const v of [soft, hard]) if (!Number.isSafeInteger(v) || v < -1) throw new TsrunError(`invalid --ulimit "${spec}": values are -1 (unlimited) or a non-negative integer`);
  const unlimited = (v: number): number => (v === -1 ? Infinity : v);
  if (unlimited(soft) > unlimited(hard)) throw new TsrunError(`invalid --ulimit "${spec}": the soft limit must not exceed the hard limit`);
  return { Name: name, Soft: soft, Hard: hard };
}

/** This process's hard limits from /proc/self/limits (Infinity for unlimited), by RLIMIT_* name order. */
function currentHardLimits(): Map<string, number> {
  const rows: [string, string][] = [
    ["Max cpu time", "cpu"], ["Max file size", "fsize"], ["Max data size", "data"], ["Max stack size", "stack"],
    ["Max core file size", "core"], ["Max resident set", "rss"], ["Max processes", "nproc"], ["Max open files", "nofile"],
    ["Max locked memory", "memlock"], ["Max address space", "as"], ["Max file locks", "locks"], ["Max pending signals", "sigpending"],
    ["Max msgqueue size", "msgqueue"], ["Max nice priority", "nice"], ["Max realtime priority", "rtprio"], ["Max realtime timeout", "rttime"],
  ];
  const out = new Map<string, number>();
  let text = "";
  try {
    text = readFileSync("/proc/self/limits", "utf8");
  } catch {
    return out;
  }
  for (const [label, name] of rows) {
    const line = text.split("\n").find((l) => l.startsWith(label));
    const hard = line?.slice(label.length).trim().split(/\s+/)[1];
    if (hard !== undefined) out.set(name, hard === "unlimited" ? Infinity : Number(hard));
  }
  return out;
}

/** Docker's RAMInBytes: "512", "100k", "64m", "1.5g" (binary multiples). */
/** The other cgroup flags of `docker run`, checked as Docker checks them. */
function parseCgroupFlags(flags: SecurityFlags, r: Resources): void {
  const integer = (text: string, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const n = Number(text);
    if (!/^-?\d+$/.test(text.trim()) || n < min || n > max) throw new TsrunError(`invalid ${flag} "${text}": an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : " up"}`);
    return n;
  };
  if (flags.cpuShares !== undefined) {
    const n = integer(flags.cpuShares, "--cpu-shares", 0, 262144);
    if (n > 0) r.cpuShares = Math.max(n, 2);
  }
  if (flags.cpuPeriod !== undefined) {
    const n = integer(flags.cpuPeriod, "--cpu-period", 0, 1000000);
    if (n > 0 && n < 1000) throw new TsrunError(`invalid --cpu-period "${flags.cpuPeriod}": the minimum is 1000 microseconds`);
    if (n > 0) r.cpuPeriod = n;
  }
  if (flags.cpuQuota !== undefined) {
    const n = integer(flags.cpuQuota, "--cpu-quota", -1);
    if (n > 0 && n < 1000) throw new TsrunError(`invalid --cpu-quota "${flags.cpuQuota}": the minimum is 1000 microseconds`);
    if (n > 0) r.cpuQuota = n;
  }
  // Docker's words.
  if (r.nanoCpus && (r.cpuPeriod || r.cpuQuota)) throw new TsrunError(r.cpuPeriod ? "Conflicting options: Nano CPUs and CPU Period cannot both be set" : "Conflicting options: Nano CPUs and CPU Quota cannot both be set");
  const cpuList = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;
  for (const [flag, value, key] of [["--cpuset-cpus", flags.cpusetCpus, "cpusetCpus"], ["--cpuset-mems", flags.cpusetMems, "cpusetMems"]] as const) {
    if (value === undefined || value === "") continue;
    if (!cpuList.test(value)) throw new TsrunError(`invalid ${flag} "${value}": a list such as 0-3,5`);
    r[key] = value;
  }
  if (flags.memoryReservation !== undefined) {
    const bytes = parseMemory(flags.memoryReservation, "--memory-reservation");
    if (bytes > 0 && bytes < 6 * 1024 * 1024) throw new TsrunError(`invalid --memory-reservation "${flags.memoryReservation}": the minimum is 6m`);
    if (r.memory && bytes > r.memory) throw new TsrunError("Minimum memory limit can not be less than memory reservation limit, see usage");
    if (bytes > 0) r.memoryReservation = bytes;
  }
  if (flags.memorySwap !== undefined) {
    const swap = flags.memorySwap.trim() === "-1" ? -1 : parseMemory(flags.memorySwap, "--memory-swap");
    if (swap !== 0) {
      if (!r.memory) throw new TsrunError("You should always set the Memory limit when using Memoryswap limit, see usage");
      if (swap !== -1 && swap < r.memory) throw new TsrunError("Minimum memoryswap limit should be larger than memory limit, see usage");
      r.memorySwap = swap;
    }
  }
}

export function parseMemory(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgtp]?)b?$/i.exec(text.trim());
  if (!m) throw new TsrunError(`invalid ${flag} "${text}": expected a size such as 512m or 2g`);
  const mult: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  return Math.floor(Number(m[1]) * (mult[(m[2] ?? "").toLowerCase()] ?? 1));
}

/** `--userns`: "", private, host, nomap, keep-id[:uid=N,gid=N] (Podman's modes). */
export function parseUserns(spec: string | undefined): UsernsMode {
  if (spec === undefined || spec === "" || spec === "private") return { kind: "private" };
  if (spec === "host") return { kind: "host" };
  if (spec === "nomap") return { kind: "nomap" };
  if (spec === "keep-id" || spec.startsWith("keep-id:")) {
    const mode: UsernsMode = { kind: "keep-id" };
    for (const opt of spec.slice("keep-id:".length).split(",").filter((o) => o !== "")) {
      const m = /^(uid|gid)=(\d+)$/.exec(opt);
      if (!m) throw new TsrunError(`invalid --userns "${spec}": keep-id takes uid=N and gid=N`);
      mode[m[1] as "uid" | "gid"] = Number(m[2]);
    }
    return mode;
  }
  if (spec === "auto" || spec.startsWith("auto:") || spec.startsWith("ns:") || spec.startsWith("container:"))
    throw new TsrunError(`--userns ${spec.split(":")[0]} is not supported by tsrun (private, host, nomap, keep-id are)`);
  throw new TsrunError(`invalid --userns "${spec}": expected private, host, nomap or keep-id[:uid=N,gid=N]`);
}

export function usernsText(mode: UsernsMode): string {
  if (mode.kind === "private") return "";
  if (mode.kind !== "keep-id") return mode.kind;
  const opts = [mode.uid !== undefined ? `uid=${mode.uid}` : "", mode.gid !== undefined ? `gid=${mode.gid}` : ""].filter((o) => o);
  return opts.length > 0 ? `keep-id:${opts.join(",")}` : "keep-id";
}

/** Checks every confinement flag and returns the container's settings. */
export function parseSecurityFlags(flags: SecurityFlags): SecurityConfig {
  const config = defaultSecurity();
  config.privileged = flags.privileged ?? false;
  config.capAdd = flags.capAdd ?? [];
  config.capDrop = flags.capDrop ?? [];
  // Names are checked here, so a typo fails at create time rather than at start.
  containerCapabilities({ privileged: false, capAdd: config.capAdd, capDrop: config.capDrop });
  for (const opt of flags.securityOpt ?? []) applySecurityOpt(config, opt);
  const hardLimits = (flags.ulimits ?? []).length > 0 ? currentHardLimits() : new Map<string, number>();
  for (const spec of flags.ulimits ?? []) {
    const u = parseUlimit(spec);
    const current = hardLimits.get(u.Name);
    const wanted = u.Hard === -1 ? Infinity : u.Hard;
    // Raising a hard limit needs CAP_SYS_RESOURCE on the host, which a rootless runtime lacks.
    if (current !== undefined && wanted > current && process.getuid?.() !== 0)
      throw new TsrunError(`--ulimit ${spec}: the hard limit cannot exceed this user's (${current}); raising it needs root`);
    config.ulimits = config.ulimits.filter((x) => x.Name !== u.Name);
    config.ulimits.push(u);
  }
  if (flags.pidsLimit !== undefined) {
    const n = Number(flags.pidsLimit);
    if (!Number.isSafeInteger(n) || n < -1) throw new TsrunError(`invalid --pids-limit "${flags.pidsLimit}": expected a number (-1 or 0: unlimited)`);
    if (n > 0) config.resources.pidsLimit = n;
  }
  if (flags.memory !== undefined) {
    const bytes = parseMemory(flags.memory, "--memory");
    // Docker's minimum: a smaller limit only kills the container's first process.
    if (bytes > 0 && bytes < 6 * 1024 * 1024) throw new TsrunError(`invalid --memory "${flags.memory}": the minimum is 6m`);
    if (bytes > 0) config.resources.memory = bytes;
  }
  if (flags.cpus !== undefined) {
    const cpus = Number(flags.cpus);
    const max = availableParallelism();
    if (!/^\d+(\.\d+)?$/.test(flags.cpus) || !(cpus >= 0) || cpus > max)
      throw new TsrunError(`invalid --cpus "${flags.cpus}": the range is 0.01 to ${max}.00 on this machine`);
    if (cpus > 0) config.resources.nanoCpus = Math.round(cpus * 1e9);
  }
  parseCgroupFlags(flags, config.resources);
  config.userns = parseUserns(flags.userns);
  return config;
}
