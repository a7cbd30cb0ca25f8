// Linux capabilities of a container process: Docker's default set, --cap-add/--cap-drop,
// --privileged, and the five sets as runc applies them.
import { readFileSync } from "node:fs";
import { TsrunError } from "../../errors.js";

/** Capability names by number (include/uapi/linux/capability.h), without the CAP_ prefix. */
export const CAPABILITY_NAMES = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
  "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
  "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
  "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
  "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
  "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
] as const;

/** Docker's default capabilities (moby's oci defaults), in Docker's CAP_ form. */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
  "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/** The capabilities this kernel knows (all of them is what --privileged grants). */
export function allCapabilities(): string[] {
  let last = CAPABILITY_NAMES.length - 1;
  try {
    last = Math.min(last, Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8").trim()));
  } catch {
    // No /proc: assume the capabilities this table knows.
  }
  return CAPABILITY_NAMES.slice(0, last + 1).map((n) => `CAP_${n}`);
}

/**
 * "net_admin", "NET_ADMIN", "cap_net_admin" become "CAP_NET_ADMIN" (as Docker accepts them);
 * "ALL" stays "ALL". Unknown names are an error naming the flag.
 */
export function normaliseCapability(name: string, flag: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === "ALL") return "ALL";
  const bare = upper.startsWith("CAP_") ? upper.slice(4) : upper;
  if (!(CAPABILITY_NAMES as readonly string[]).includes(bare)) throw new TsrunError(`invalid ${flag} "${name}": unknown capability`);
  return `CAP_${bare}`;
}

/**
 * The container's capability list (its bounding set), as moby's TweakCapabilities computes it:
 * --cap-add ALL is everything but the drops; --cap-drop ALL keeps only the adds; otherwise the
 * defaults minus the drops plus the adds.
 */
export function containerCapabilities(opts: { privileged: boolean; capAdd: string[]; capDrop: string[] }): string[] {
  if (opts.privileged) return allCapabilities();
  // The default set needs no look at the kernel (every start takes this path).
  if (opts.capAdd.length === 0 && opts.capDrop.length === 0) return [...DEFAULT_CAPABILITIES];
  const all = allCapabilities();
  const add = opts.capAdd.map((c) => normaliseCapability(c, "--cap-add"));
  const drop = opts.capDrop.map((c) => normaliseCapability(c, "--cap-drop"));
  let caps: string[];
  if (add.includes("ALL")) caps = all.filter((c) => !drop.includes(c));
  else if (drop.includes("ALL")) caps = add;
  else caps = [...DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c)), ...add];
  caps = [...new Set(caps)];
  // A capability this kernel does not have cannot be granted (runc refuses it).
  const unknown = caps.filter((c) => !all.includes(c));
  if (unknown.length > 0) throw new TsrunError(`${unknown.join(", ")}: not supported by this kernel`);
  return caps;
}

export interface ProcessCapabilities {
  bounding: bigint;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
}

export function capabilityMask(names: string[]): bigint {
  let mask = 0n;
  for (const n of names) {
    const i = (CAPABILITY_NAMES as readonly string[]).indexOf(n.replace(/^CAP_/, ""));
    if (i >= 0) mask |= 1n << BigInt(i);
  }
  return mask;
}

/**
 * The five sets for a process running as uid. Root gets the whole list as effective and
 * permitted (inheritable stays empty, as moby has it since CVE-2022-24769). Another user gets
 * an empty effective set, except for capabilities explicitly added with --cap-add (or all,
 * with --cap-add ALL), which become ambient so that they survive the exec, as Podman does.
 */
export function processCapabilities(caps: string[], uid: number, explicitlyAdded: string[]): ProcessCapabilities {
  const bounding = capabilityMask(caps);
  if (uid === 0) return { bounding, effective: bounding, permitted: bounding, inheritable: 0n, ambient: 0n };
  const added = explicitlyAdded.map((c) => normaliseCapability(c, "--cap-add"));
  const ambient = added.includes("ALL") ? bounding : capabilityMask(added) & bounding;
  return { bounding, effective: ambient, permitted: ambient, inheritable: ambient, ambient };
}
