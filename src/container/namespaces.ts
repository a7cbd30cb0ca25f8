// --pid, --ipc and --uts: whether a container gets namespaces of its own (the default), shares
// the host's, or joins another container's (container:NAME), and what each choice changes in
// its launch plan; --network container:NAME joins the other's network namespace the same way.
//
// Rootless, a namespace of the host belongs to the host's user namespace, where the container
// has no capabilities: a fresh procfs or mqueue mount for it is refused, so the host's /proc,
// /dev/mqueue and /dev/shm are bound instead, as rootless Podman does. Another container's
// namespaces belong to the same user namespace as ours (the network holder's, or the target's,
// which the new container then joins): the launcher joins them before it clones the child.
import { existsSync } from "node:fs";
import { CLONE, MS, type LaunchPlan, type PlanMount } from "../native.js";
import { TsrunError } from "../errors.js";
import type { ContainerRecord } from "./records.js";

export type NamespaceKind = "pid" | "ipc" | "uts";

/** The flags as given: "", private, host, container:NAME (ipc also shareable and none). */
export interface NamespaceFlags {
  pid?: string | undefined;
  ipc?: string | undefined;
  uts?: string | undefined;
}

/**
 * As stored in the record (Docker's HostConfig.PidMode, IpcMode, UTSMode): absent for a
 * namespace of its own, "host", "container:ID", and for ipc "shareable" or "none".
 */
export interface NamespaceModes {
  pidMode?: string;
  ipcMode?: string;
  utsMode?: string;
}

const MODE_KEY = { pid: "pidMode", ipc: "ipcMode", uts: "utsMode" } as const;
const CLONE_FLAG = { pid: CLONE.NEWPID, ipc: CLONE.NEWIPC, uts: CLONE.NEWUTS } as const;

/** The container a mode joins, or undefined. */
export function sharedContainer(mode: string | undefined): string | undefined {
  return mode?.startsWith("container:") ? mode.slice("container:".length) : undefined;
}

/**
 * Checks the flags and resolves container:NAME to the container's ID (find throws for an
 * unknown one). Returns the modes to store.
 */
export function parseNamespaceFlags(flags: NamespaceFlags, find: (name: string) => ContainerRecord): NamespaceModes {
  const modes: NamespaceModes = {};
  for (const kind of ["pid", "ipc", "uts"] as const) {
    const value = flags[kind];
    if (value === undefined || value === "" || value === "private") continue;
    if (value === "host" || (kind === "ipc" && (value === "shareable" || value === "none"))) {
      modes[MODE_KEY[kind]] = value;
      continue;
    }
    const name = sharedContainer(value);
    if (name === undefined || name === "") {
      const expected = kind === "ipc" ? "private, shareable, none, host or container:NAME" : "private, host or container:NAME";
      throw new TsrunError(`invalid --${kind} "${value}": expected ${expected}`);
    }
    modes[MODE_KEY[kind]] = `container:${find(name).id}`;
  }
  return modes;
}

/**
 * The hostname a container sharing a UTS namespace sees (the host's or the other container's);
 * undefined for a namespace of its own. --hostname cannot change a shared one, as in Docker.
 */
export function sharedHostname(modes: NamespaceModes, requested: string | undefined, hostHostname: () => string, find: (id: string) => ContainerRecord): string | undefined {
  if (modes.utsMode === undefined) return undefined;
  if (requested !== undefined) throw new TsrunError("conflicting options: hostname and the UTS mode");
  const other = sharedContainer(modes.utsMode);
  return other === undefined ? hostHostname() : find(other).config.hostname;
}

/** Every container whose namespaces a container's modes (and --network container:ID) join. */
export function namespaceTargets(modes: NamespaceModes & { networkMode?: string }): string[] {
  return [...new Set([modes.pidMode, modes.ipcMode, modes.utsMode, modes.networkMode].map(sharedContainer).filter((id): id is string => id !== undefined))];
}

/**
 * --network container:NAME: what Docker refuses beside it (the network stack, its name, its
 * /etc/hosts and resolv.conf are the other container's), checked before anything is made.
 */
export function checkJoinedNetwork(opts: { hostname?: string | undefined; publish?: string[] | undefined; publishAll?: boolean | undefined; expose?: string[] | undefined; dns?: string[] | undefined; dnsSearch?: string[] | undefined; dnsOptions?: string[] | undefined; addHosts?: string[] | undefined; links?: string[] | undefined }): void {
  const given = (v: string[] | undefined): boolean => (v ?? []).length > 0;
  if (opts.hostname !== undefined) throw new TsrunError("conflicting options: hostname and the network mode");
  if (given(opts.publish) || opts.publishAll) throw new TsrunError("conflicting options: port publishing and the container type network mode");
  if (given(opts.expose)) throw new TsrunError("conflicting options: port exposing and the container type network mode");
  if (given(opts.dns) || given(opts.dnsSearch) || given(opts.dnsOptions)) throw new TsrunError("conflicting options: dns and the network mode");
  if (given(opts.addHosts)) throw new TsrunError("conflicting options: custom host-to-IP mapping and the network mode");
  if (given(opts.links)) throw new TsrunError("conflicting options: container type network can't be used with links");
}

function replaceMount(plan: LaunchPlan, target: string, by: PlanMount | undefined): void {
  const i = plan.mounts.findIndex((m) => (m.kind === "mount" || m.kind === "bind") && m.target === target);
  if (i < 0) return;
  if (by) plan.mounts[i] = by;
  else plan.mounts.splice(i, 1);
}

const NOSUID_NODEV_NOEXEC = MS.NOSUID | MS.NODEV | MS.NOEXEC;

/**
 * Changes a container's launch plan for its namespace modes. runningPid gives the init of a
 * container whose namespaces are joined (it throws when that one is not running).
 */
export function applyNamespaceModes(plan: LaunchPlan, modes: NamespaceModes & { networkMode?: string }, runningPid: (id: string, kind: NamespaceKind | "network") => number): void {
  const share: string[] = [];
  let userns: string | undefined;
  const network = sharedContainer(modes.networkMode);
  if (network !== undefined) {
    // Its lo is up already, and its helpers (slirp4netns, pasta, ports) are its own.
    const pid = runningPid(network, "network");
    plan.cloneFlags &= ~CLONE.NEWNET;
    plan.loopbackUp = false;
    share.push(`/proc/${pid}/ns/net`);
    userns = `/proc/${pid}/ns/user`;
  }
  for (const kind of ["pid", "ipc", "uts"] as const) {
    const mode = modes[MODE_KEY[kind]];
    if (mode === undefined || mode === "shareable" || mode === "none") continue;
    plan.cloneFlags &= ~CLONE_FLAG[kind];
    const other = sharedContainer(mode);
    if (other !== undefined) {
      const pid = runningPid(other, kind);
      share.push(`/proc/${pid}/ns/${kind}`);
      userns ??= `/proc/${pid}/ns/user`;
      // POSIX shared memory lives in files of /dev/shm: the other container's, as with Docker.
      if (kind === "ipc") replaceMount(plan, "/dev/shm", { kind: "bind-from-ns", nsPath: `/proc/${pid}/ns/mnt`, source: "/dev/shm", target: "/dev/shm" });
      continue;
    }
    if (kind === "pid") {
      replaceMount(plan, "/proc", { kind: "bind", source: "/proc", target: "/proc", flags: NOSUID_NODEV_NOEXEC, create: "dir", recursive: true });
    } else if (kind === "ipc") {
      replaceMount(plan, "/dev/mqueue", existsSync("/dev/mqueue") ? { kind: "bind", source: "/dev/mqueue", target: "/dev/mqueue", flags: NOSUID_NODEV_NOEXEC, create: "dir", recursive: false } : undefined);
      replaceMount(plan, "/dev/shm", existsSync("/dev/shm") ? { kind: "bind", source: "/dev/shm", target: "/dev/shm", flags: NOSUID_NODEV_NOEXEC, create: "dir", recursive: false } : undefined);
    }
  }
  if (modes.ipcMode === "none") replaceMount(plan, "/dev/shm", undefined);
  if (share.length > 0 && userns !== undefined) {
    // The other container's user namespace owns the namespaces joined: the launcher enters it
    // (the network holder's for most containers, so nothing changes for them).
    plan.nest = { userns };
    plan.cloneFlags &= ~CLONE.NEWUSER;
    plan.share = share;
  }
}

/** Docker's inspect fields for the modes. */
export function inspectModes(modes: NamespaceModes): { PidMode: string; IpcMode: string; UTSMode: string } {
  return { PidMode: modes.pidMode ?? "", IpcMode: modes.ipcMode ?? "private", UTSMode: modes.utsMode ?? "" };
}
