// A container's confinement as launch-plan fields: what every process started in it (its init,
// `exec`, health checks) gets, from the settings its record keeps.
import { MS, type LaunchPlan, type PlanMount } from "../../native.js";
import { MASKED_PATHS, READONLY_PATHS } from "../mounts.js";
import { allCapabilities, containerCapabilities, processCapabilities } from "./capabilities.js";
import { accessibleHostDevices } from "./devices.js";
import { defaultSeccompProfile } from "./default-seccomp.js";
import { defaultSecurity, ULIMIT_RESOURCES, type SecurityConfig } from "./options.js";
import { parseSeccompProfile, seccompProgram, type SeccompProfile } from "./seccomp.js";

/** The settings of a record; containers created before tsrun confined them get the defaults. */
export function securityOf(record: { hostConfig: { security?: SecurityConfig } }): SecurityConfig {
  return record.hostConfig.security ?? defaultSecurity();
}

/** The seccomp profile in force, or undefined for none (privileged or unconfined). */
function seccompProfile(sec: SecurityConfig): SeccompProfile | undefined {
  // Docker: --privileged runs without a filter, whatever --security-opt says.
  if (sec.privileged || sec.seccomp.kind === "unconfined") return undefined;
  if (sec.seccomp.kind === "default") return defaultSeccompProfile();
  return parseSeccompProfile(sec.seccomp.profile, "stored with the container");
}

/**
 * Capabilities, limits, no_new_privs and the seccomp program for a process running as uid.
 * `exec --privileged` grants every capability to that process; the filter stays the
 * container's, as with Docker.
 */
export function processSecurity(sec: SecurityConfig, uid: number, opts: { privilegedExec?: boolean } = {}): Pick<LaunchPlan, "capabilities" | "rlimits" | "seccomp" | "noNewPrivileges"> {
  const containerCaps = containerCapabilities(sec);
  const caps = opts.privilegedExec ? allCapabilities() : containerCaps;
  const out: Pick<LaunchPlan, "capabilities" | "rlimits" | "seccomp" | "noNewPrivileges"> = {
    capabilities: processCapabilities(caps, uid, sec.capAdd),
    rlimits: sec.ulimits.map((u) => ({ resource: ULIMIT_RESOURCES[u.Name] as number, soft: u.Soft, hard: u.Hard })),
    noNewPrivileges: sec.noNewPrivileges,
  };
  const profile = seccompProfile(sec);
  if (profile) out.seccomp = seccompProgram(profile, { caps: containerCaps });
  return out;
}

/** runc's masked and read-only paths, none when privileged, changed by mask=/unmask=. */
export function maskedAndReadOnlyPaths(sec: SecurityConfig): { maskedPaths: string[]; readOnlyPaths: string[] } {
  const unmaskAll = sec.unmask.includes("ALL");
  const keep = (p: string): boolean => !sec.privileged && !unmaskAll && !sec.unmask.includes(p);
  return { maskedPaths: [...MASKED_PATHS.filter(keep), ...sec.mask], readOnlyPaths: READONLY_PATHS.filter(keep) };
}

/**
 * The filesystem side: masked and read-only paths (none when privileged, changed by Podman's
 * mask/unmask options), a writable /sys and the host's devices when privileged.
 */
export function confineFilesystem(fs: Pick<LaunchPlan, "mounts" | "maskedPaths" | "readOnlyPaths">, sec: SecurityConfig): void {
  Object.assign(fs, maskedAndReadOnlyPaths(sec));
  if (!sec.privileged) return;
  for (const m of fs.mounts) {
    if (m.kind === "mount" && m.target === "/sys") m.flags &= ~MS.RDONLY;
    if (m.kind === "bind" && m.target === "/sys") m.flags &= ~MS.RDONLY;
  }
  // The host's devices go in right after the other /dev nodes, so that -v mounts still win.
  const devices = accessibleHostDevices().map((d): PlanMount => ({ kind: "bind", source: d, target: d, flags: 0, create: "file", recursive: false }));
  const at = fs.mounts.findIndex((m) => m.kind === "mount" && m.target === "/dev/pts");
  fs.mounts.splice(at < 0 ? fs.mounts.length : at, 0, ...devices);
}
