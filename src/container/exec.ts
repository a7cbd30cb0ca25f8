// `exec`: a new process inside a running container, joining all of its namespaces (user first,
// so that no id maps are needed), as the container's user unless told otherwise.
import { closeSync, openSync } from "node:fs";
import type { Containers } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { attachForeground, childFailureError, SignalRelay } from "./process.js";
import { encodePlan, native, type LaunchPlan } from "../native.js";
import { currentMapping, setGroupsAllowed } from "../userns.js";
import { DEFAULT_PATH, readEnvFiles, splitEnv } from "./spec.js";
import { TsrunError } from "../errors.js";
import { processSecurity, securityOf } from "./security/plan.js";

export interface ExecOptions {
  command: string[];
  tty?: boolean;
  interactive?: boolean;
  detach?: boolean;
  env?: string[];
  /** --env-file files, read before `env` (which wins), as Docker does. */
  envFiles?: string[];
  workdir?: string | undefined;
  user?: string | undefined;
  /** Every capability for this process (Docker's exec --privileged). */
  privileged?: boolean;
}

const NAMESPACES = ["user", "mnt", "pid", "uts", "ipc", "net", "cgroup"];

/**
 * The plan of a process inside a container (exec, health checks): the container's env, user and
 * working directory unless overridden. joinPid: whose namespaces to join (omitted for a plan the
 * monitor completes itself).
 */
export function containerProcessPlan(containers: Containers, record: ContainerRecord, opts: ExecOptions, joinPid?: number): LaunchPlan {
  const mapping = currentMapping();
  const user = containers.resolveUserFor(record, opts.user);
  const env = new Map(record.config.env.map((e) => splitEnv(e) as [string, string]));
  for (const e of [...readEnvFiles(opts.envFiles ?? []), ...(opts.env ?? [])]) {
    const [k, v] = splitEnv(e);
    if (v !== undefined) env.set(k, v);
    else if (process.env[k] !== undefined) env.set(k, process.env[k] as string);
  }
  if (opts.tty) env.set("TERM", "xterm");
  const envList = [...env].map(([k, v]) => `${k}=${v}`);
  const plan: LaunchPlan = {
    cloneFlags: 0,
    mounts: [],
    maskedPaths: [],
    readOnlyPaths: [],
    argv: opts.command,
    env: envList,
    searchPath: env.get("PATH") ?? DEFAULT_PATH,
    cwd: { path: opts.workdir ?? record.config.workingDir, create: false },
    user: { uid: user.uid, gid: user.gid, groups: user.groups },
    setGroupsAllowed: setGroupsAllowed(mapping),
    stdinNull: !opts.interactive && !opts.tty,
    dieWithParent: !opts.detach,
    ...processSecurity(securityOf(record), user.uid, { privilegedExec: opts.privileged ?? false }),
  };
  if (joinPid !== undefined) {
    plan.joinNamespaces = NAMESPACES.filter((ns) => ns !== "net" || record.hostConfig.networkMode !== "host").map((ns) => `/proc/${joinPid}/ns/${ns}`);
  }
  return plan;
}

export async function execInContainer(containers: Containers, query: string, opts: ExecOptions): Promise<number> {
  const record = containers.get(query);
  if (record.state.status !== "running") throw new TsrunError(`container ${query} is not running`);
  if (record.state.paused) throw new TsrunError(`container ${query} is paused, unpause the container before exec`);
  if (opts.command.length === 0) throw new TsrunError("exec: no command given");
  if (opts.tty && opts.interactive && !process.stdin.isTTY && !opts.detach) throw new TsrunError("the input device is not a TTY", 1);
  const plan = containerProcessPlan(containers, record, opts, record.state.pid);
  const devNull = opts.detach ? openSync("/dev/null", "r+") : -1;
  if (opts.detach) plan.stdio = [devNull, devNull, devNull];
  if (opts.tty && !opts.detach) plan.tty = { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 };
  const addon = native();
  // Signals that arrive while the command starts are held for it, not fatal to tsrun.
  const relay = opts.detach ? undefined : new SignalRelay();
  let handle;
  try {
    handle = addon.spawn(encodePlan(plan));
  } catch (err) {
    relay?.dispose();
    throw err;
  } finally {
    if (devNull >= 0) closeSync(devNull);
  }
  // Joining an existing user namespace needs no id maps: let the child go on at once.
  const resumed = addon.resume(handle.syncFd, handle.errorFd, handle.socketFd, plan.tty !== undefined);
  await addon.waitPid(handle.pid); // the short-lived joiner
  closeSync(handle.pidfd);
  if (resumed.error) {
    relay?.dispose();
    if (resumed.pid !== handle.pid && resumed.pid > 0) await addon.waitPid(resumed.pid);
    throw childFailureError(resumed.error);
  }
  if (opts.detach) return 0;
  return attachForeground({ pid: resumed.pid, pidfd: -1, ptyFd: resumed.ptyFd }, { interactive: opts.interactive ?? false, relay });
}
