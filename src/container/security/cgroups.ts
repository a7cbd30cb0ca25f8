// Resource limits (--pids-limit, --memory, --cpus, --cpu-shares, --cpuset-*, ...) through cgroup v2. A rootless runtime can only
// set them in a cgroup delegated to its user (systemd's user@.service does that); on cgroup v1
// or without delegation they cannot be enforced, and tsrun refuses them rather than pretend.
import { accessSync, constants, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { TsrunError } from "../../errors.js";
import type { Resources } from "./options.js";

const CGROUP_ROOT = "/sys/fs/cgroup";

export type CgroupSupport = { delegated: true; parent: string } | { delegated: false; reason: string };

/** Controllers each limit needs. */
function neededControllers(r: Resources): string[] {
  const memory = r.memory || r.memoryReservation || r.memorySwap;
  const cpu = r.nanoCpus || r.cpuShares || r.cpuQuota || r.cpuPeriod;
  const cpuset = r.cpusetCpus || r.cpusetMems;
  return [...(r.pidsLimit ? ["pids"] : []), ...(memory ? ["memory"] : []), ...(cpu ? ["cpu"] : []), ...(cpuset ? ["cpuset"] : [])];
}

/** The flags that set limits, as the user wrote them (for messages). */
function limitFlags(r: Resources): string[] {
  const flags: [unknown, string][] = [
    [r.pidsLimit, "--pids-limit"],
    [r.memory, "--memory"],
    [r.memorySwap, "--memory-swap"],
    [r.memoryReservation, "--memory-reservation"],
    [r.nanoCpus, "--cpus"],
    [r.cpuShares, "--cpu-shares"],
    [r.cpuPeriod, "--cpu-period"],
    [r.cpuQuota, "--cpu-quota"],
    [r.cpusetCpus, "--cpuset-cpus"],
    [r.cpusetMems, "--cpuset-mems"],
  ];
  return flags.filter(([v]) => v).map(([, f]) => f);
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return fallback;
  }
}

/**
 * Where containers' cgroups can be made: the parent of this process's cgroup on a unified
 * (v2) hierarchy, if this user may create cgroups there and the controllers are available.
 * mountinfo and cgroup text are parameters so the decision can be checked without such a host.
 */
export function cgroupSupport(
  controllers: string[],
  sources: { mountinfo?: string; selfCgroup?: string; root?: string; writable?: (p: string) => boolean } = {},
): CgroupSupport {
  const root = sources.root ?? CGROUP_ROOT;
  const mountinfo = sources.mountinfo ?? readOr("/proc/self/mountinfo", "");
  // Fields: id parent major:minor root mountpoint options ... - fstype source superoptions
  const types = new Map<string, string>();
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash > 4 && fields[4] !== undefined) types.set(fields[4], fields[dash + 1] ?? "");
  }
  const type = types.get(CGROUP_ROOT);
  if (type !== "cgroup2") {
    const hybrid = [...types].some(([, t]) => t === "cgroup");
    return { delegated: false, reason: `this host has cgroup ${hybrid ? "v1" : "v2 missing"} at ${CGROUP_ROOT}, not a unified cgroup v2 hierarchy` };
  }
  const self = (sources.selfCgroup ?? readOr("/proc/self/cgroup", "")).split("\n").find((l) => l.startsWith("0::"));
  if (!self) return { delegated: false, reason: "this process has no cgroup v2 path" };
  const own = path.join(root, self.slice(3).trim());
  const parent = path.dirname(own);
  const writable =
    sources.writable ??
    ((p: string): boolean => {
      try {
        accessSync(p, constants.W_OK);
        return true;
      } catch {
        return false;
      }
    });
  if (parent === root || !writable(parent) || !writable(path.join(parent, "cgroup.procs")))
    return { delegated: false, reason: `no cgroup is delegated to uid ${process.getuid?.() ?? "?"} (${parent} is not writable; systemd's user session delegates one)` };
  const available = readOr(path.join(parent, "cgroup.controllers"), "").trim().split(/\s+/);
  const missing = controllers.filter((c) => !available.includes(c));
  if (missing.length > 0) return { delegated: false, reason: `the delegated cgroup ${parent} lacks the ${missing.join(", ")} controller(s)` };
  return { delegated: true, parent };
}

/** Refuses limits that cannot be enforced here, with one line naming the flags and why. */
export function checkResourceLimits(r: Resources): void {
  const flags = limitFlags(r);
  if (flags.length === 0) return;
  const support = cgroupSupport(neededControllers(r));
  if (!support.delegated) throw new TsrunError(`${flags.join(", ")}: resource limits need a cgroup v2 hierarchy delegated to your user; ${support.reason}`);
}

/** The limit files of a container's cgroup, as runc writes them from Docker's settings. */
/**
 * Every file limitFiles writes, and what it holds with no limit (the kernel's defaults; an empty
 * cpuset means the parent's): what `update` writes when it lifts a running container's limit.
 */
export const LIMIT_FILE_DEFAULTS: [file: string, unlimited: string][] = [
  ["memory.max", "max"],
  ["memory.swap.max", "max"],
  ["memory.low", "0"],
  ["cpu.max", "max 100000"],
  ["cpu.weight", "100"],
  ["pids.max", "max"],
  ["cpuset.cpus", "\n"],
  ["cpuset.mems", "\n"],
];

export function limitFiles(r: Resources): [string, string][] {
  const files: [string, string][] = [];
  if (r.pidsLimit) files.push(["pids.max", String(r.pidsLimit)]);
  if (r.memory) {
    files.push(["memory.max", String(r.memory)]);
    // --memory-swap is memory plus swap (-1: unlimited); Docker's default is twice --memory: as
    // much swap as memory. cgroup v2 counts swap alone.
    const swap = r.memorySwap === -1 ? "max" : String(r.memorySwap !== undefined ? r.memorySwap - r.memory : r.memory);
    files.push(["memory.swap.max", swap]);
  }
  if (r.memoryReservation) files.push(["memory.low", String(r.memoryReservation)]);
  if (r.nanoCpus) files.push(["cpu.max", `${Math.round((r.nanoCpus / 1e9) * 100000)} 100000`]);
  else if (r.cpuQuota || r.cpuPeriod) files.push(["cpu.max", `${r.cpuQuota ?? "max"} ${r.cpuPeriod ?? 100000}`]);
  // runc's conversion of cgroup v1 shares (2-262144) to v2 weight (1-10000).
  if (r.cpuShares) files.push(["cpu.weight", String(Math.floor(1 + ((r.cpuShares - 2) * 9999) / 262142))]);
  if (r.cpusetCpus) files.push(["cpuset.cpus", r.cpusetCpus]);
  if (r.cpusetMems) files.push(["cpuset.mems", r.cpusetMems]);
  return files;
}

/**
 * Creates the container's cgroup with its limits; returns its directory (the child is moved in
 * before it runs), or undefined when the container has no limits.
 */
export function prepareCgroup(containerId: string, r: Resources): string | undefined {
  const controllers = neededControllers(r);
  if (controllers.length === 0) return undefined;
  const support = cgroupSupport(controllers);
  if (!support.delegated) throw new TsrunError(`resource limits need a cgroup v2 hierarchy delegated to your user; ${support.reason}`);
  const enabled = readOr(path.join(support.parent, "cgroup.subtree_control"), "").trim().split(/\s+/);
  const missing = controllers.filter((c) => !enabled.includes(c));
  try {
    if (missing.length > 0) writeFileSync(path.join(support.parent, "cgroup.subtree_control"), missing.map((c) => `+${c}`).join(" "));
  } catch (err) {
    throw new TsrunError(`cannot enable the ${missing.join(", ")} controller(s) in ${support.parent}: ${(err as Error).message}`);
  }
  const dir = path.join(support.parent, `tsrun-${containerId.slice(0, 12)}`);
  removeCgroup(dir);
  mkdirSync(dir, { recursive: true });
  for (const [file, value] of limitFiles(r)) {
    try {
      writeFileSync(path.join(dir, file), value);
    } catch (err) {
      // memory.swap.max is missing without swap accounting: the memory limit still holds.
      if (file === "memory.swap.max") continue;
      throw new TsrunError(`cannot set ${file} in ${dir}: ${(err as Error).message}`);
    }
  }
  return dir;
}

/** Removes a container's cgroup once it is empty. */
export function removeCgroup(dir: string | undefined): void {
  if (!dir) return;
  try {
    rmdirSync(dir);
  } catch {
    // Not there, or processes still in it.
  }
}
