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
import { checkResourceLimits, limitFiles } from "./security/cgroups.js";
import { securityOf } from "./security/plan.js";

export interface UpdateOptions {
  /** --restart no|always|unless-stopped|on-failure[:N] */
  restart?: string | undefined;
  /** -m/--memory, --cpus, --pids-limit as `run` takes them. */
  memory?: string | undefined;
  cpus?: string | undefined;
  pidsLimit?: string | undefined;
}

/** The resource limits the flags set, over the container's current ones (0 or -1 lifts one). */
function updatedResources(current: Resources, opts: UpdateOptions): Resources {
  const given = parseSecurityFlags({ memory: opts.memory, cpus: opts.cpus, pidsLimit: opts.pidsLimit }).resources;
  const next: Resources = { ...current };
  if (opts.memory !== undefined) {
    if (given.memory) next.memory = given.memory;
    else delete next.memory;
  }
  if (opts.cpus !== undefined) {
    if (given.nanoCpus) next.nanoCpus = given.nanoCpus;
    else delete next.nanoCpus;
  }
  if (opts.pidsLimit !== undefined) {
    if (given.pidsLimit) next.pidsLimit = given.pidsLimit;
    else delete next.pidsLimit;
  }
  return next;
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
  const limits = opts.memory !== undefined || opts.cpus !== undefined || opts.pidsLimit !== undefined;
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
      // A lifted limit is written as "max", as the kernel's own default.
      const wanted = new Map(limitFiles(resources));
      for (const file of ["memory.max", "memory.swap.max", "cpu.max", "pids.max"]) {
        const value = wanted.get(file) ?? (file === "cpu.max" ? "max 100000" : "max");
        try {
          writeFileSync(path.join(cgroup, file), value);
        } catch (err) {
          if (file === "memory.swap.max" || !existsSync(path.join(cgroup, file))) continue;
          throw new TsrunError(`cannot set ${file} in ${cgroup}: ${(err as Error).message}`);
        }
      }
    }
    return record;
  });
}
