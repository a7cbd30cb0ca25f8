// `update`: changes a container's restart policy and resource limits after its creation, as
// `docker update` does. The record takes the new values (they hold from the next start on); a
// running container's monitor reads its restart policy again at each exit, and its cgroup (when
// it was started with limits) takes the new limits at once.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Containers } from "./run.js";
import { parseRestart } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { TsrunError } from "../errors.js";
import { parseSecurityFlags, type Resources } from "./security/options.js";
import { checkResourceLimits, LIMIT_FILE_DEFAULTS, limitFiles } from "./security/cgroups.js";
import { securityOf } from "./security/plan.js";

/** The resource flags `update` takes, as `run` takes them, and the limit each sets. */
const RESOURCE_FLAGS = {
  memory: "memory",
  cpus: "nanoCpus",
  pidsLimit: "pidsLimit",
  cpuShares: "cpuShares",
  cpuPeriod: "cpuPeriod",
  cpuQuota: "cpuQuota",
  cpusetCpus: "cpusetCpus",
  cpusetMems: "cpusetMems",
  memorySwap: "memorySwap",
  memoryReservation: "memoryReservation",
} as const satisfies Record<string, keyof Resources>;

type ResourceFlag = keyof typeof RESOURCE_FLAGS;

export type UpdateOptions = {
  /** --restart no|always|unless-stopped|on-failure[:N] */
  restart?: string | undefined;
} & { [flag in ResourceFlag]?: string | undefined };

/** Whether the options change any resource limit. */
function limitsGiven(opts: UpdateOptions): boolean {
  return (Object.keys(RESOURCE_FLAGS) as ResourceFlag[]).some((flag) => opts[flag] !== undefined);
}

/**
 * The resource limits the flags set, over the container's current ones: checked as `run` checks
 * them, and a value that means none (0, -1 for the pids limit, "" for a cpuset) lifts the limit.
 */
function updatedResources(current: Resources, opts: UpdateOptions): Resources {
  const flags: Record<string, string | undefined> = Object.fromEntries((Object.keys(RESOURCE_FLAGS) as ResourceFlag[]).map((flag) => [flag, opts[flag]]));
  // --memory-swap alone goes with the memory limit the container has (docker update takes it so).
  if (flags.memorySwap !== undefined && flags.memory === undefined && current.memory) flags.memory = String(current.memory);
  const given = parseSecurityFlags(flags).resources;
  const next: Record<string, unknown> = { ...current };
  for (const [flag, key] of Object.entries(RESOURCE_FLAGS) as [ResourceFlag, keyof Resources][]) {
    if (opts[flag] === undefined) continue;
    if (given[key] !== undefined) next[key] = given[key];
    else delete next[key];
  }
  return next as Resources;
}

/** The cgroup a running container's monitor put it in (its prestart file names it), if any. */
function runningCgroup(containers: Containers, record: ContainerRecord): string | undefined {
  try {
    const prestart = readFileSync(path.join(containers.records.containerDir(record.id), "prestart"), "utf8");
    const line = prestart.split("\n").find((l) => l.startsWith("cgroup "));
    const dir = line?.slice("cgroup ".length);
    return dir && existsSync(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Updates one container (found by name or ID prefix); returns its record as saved. */
export async function updateContainer(containers: Containers, query: string, opts: UpdateOptions): Promise<ContainerRecord> {
  const policy = opts.restart !== undefined ? parseRestart(opts.restart) : undefined;
  const limits = limitsGiven(opts);
  return containers.store.locked(`update ${query}`, "containers", () => {
    const record = containers.get(query);
    // Docker's words.
    if (policy && policy.name !== "no" && record.hostConfig.autoRemove) {
      throw new TsrunError(`Restart policy cannot be updated because AutoRemove is enabled for the container`);
    }
    const security = securityOf(record);
    const resources = limits ? updatedResources(security.resources, opts) : security.resources;
    let cgroup: string | undefined;
    if (limits) {
      checkResourceLimits(resources);
      if (record.state.status === "running") {
        cgroup = runningCgroup(containers, record);
        if (!cgroup) throw new TsrunError(`cannot change the limits of running container ${record.name}: it was started without a cgroup of its own (stop it, update it, start it)`);
      }
    }
    if (policy) record.hostConfig.restartPolicy = policy;
    if (limits) record.hostConfig.security = { ...security, resources };
    containers.records.save(record);
    const dir = containers.records.containerDir(record.id);
    // The monitor of a running container reads its policy again at each exit.
    if (policy && record.state.status === "running") writeFileSync(path.join(dir, "restart"), `${policy.name} ${policy.maximumRetryCount}\n`);
    if (cgroup) {
      // A lifted limit is written as the kernel's own default.
      const wanted = new Map(limitFiles(resources));
      for (const [file, unlimited] of LIMIT_FILE_DEFAULTS) {
        const value = wanted.get(file);
        try {
          writeFileSync(path.join(cgroup, file), value ?? unlimited);
        } catch (err) {
          // No swap accounting, or a controller the container's cgroup was made without: only
          // an error for a limit this update asks for.
          if (value === undefined || file === "memory.swap.max") continue;
          const missing = !existsSync(path.join(cgroup, file));
          throw new TsrunError(
            missing
              ? `cannot set ${file} of running container ${record.name}: its cgroup was made without that controller (stop it, update it, start it)`
              : `cannot set ${file} in ${cgroup}: ${(err as Error).message}`,
          );
        }
      }
    }
    return record;
  });
}
