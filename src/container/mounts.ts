// The container's filesystem setup as a launch plan: overlay root, /proc, /dev, /sys, the
// generated /etc files, and the paths runc masks or makes read-only by default.
import { CLONE, MS, type LaunchPlan, type PlanMount } from "../native.js";

/** runc's default masked paths (tolerant of missing ones: they differ per kernel). */
export const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/interrupts",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];

export const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const HOST_DEVICES = ["null", "zero", "full", "random", "urandom", "tty"];

/** private, none, host, or the name of a user-defined network. */
export type NetworkMode = string;

export interface FilesystemOptions {
  /** Mount point for the root (an empty directory of the container's). */
  rootfs: string;
  /** Overlay: lower dirs top first, relative to lowerBase; upper and work dirs absolute. */
  lowerDirs: string[];
  lowerBase: string;
  upperDir: string;
  workDir: string;
  readOnly: boolean;
  network: NetworkMode;
  /** Generated files bound read-write over /etc/hosts, /etc/resolv.conf, /etc/hostname. */
  etcFiles: { hosts: string; resolvConf: string; hostname: string };
  /** gid 5 (tty) must be mapped for devpts' gid=5 option. */
  ttyGroupMapped: boolean;
  /** /dev/shm's size in bytes (64 MiB when unset, as Docker's). */
  shmSize?: number;
  extraMounts: PlanMount[];
}

export function namespaceFlags(network: NetworkMode): number {
  let flags = CLONE.NEWUSER | CLONE.NEWNS | CLONE.NEWPID | CLONE.NEWUTS | CLONE.NEWIPC | CLONE.NEWCGROUP;
  if (network !== "host") flags |= CLONE.NEWNET;
  return flags;
}

/** Escapes a path for overlay's comma- and colon-separated options. */
function overlayPath(p: string): string {
  return p.replace(/\\/g, "\\\\").replace(/,/g, "\\,").replace(/:/g, "\\:");
}

export function filesystemPlan(o: FilesystemOptions): Pick<LaunchPlan, "root" | "mounts" | "maskedPaths" | "readOnlyPaths"> {
  const data = [
    `lowerdir=${o.lowerDirs.map(overlayPath).join(":")}`,
    `upperdir=${overlayPath(o.upperDir)}`,
    `workdir=${overlayPath(o.workDir)}`,
    // Rootless overlay stores whiteouts and opaque markers in user.* xattrs; never combine
    // with metacopy or redirect_dir (DESIGN.md).
    "userxattr",
  ].join(",");
  const nosuidNodevNoexec = MS.NOSUID | MS.NODEV | MS.NOEXEC;
  const mounts: PlanMount[] = [
    { kind: "mount", source: "proc", target: "/proc", fstype: "proc", flags: nosuidNodevNoexec, data: "", create: "dir" },
    { kind: "mount", source: "tmpfs", target: "/dev", fstype: "tmpfs", flags: MS.NOSUID | MS.STRICTATIME, data: "mode=755,size=65536k", create: "dir" },
    ...HOST_DEVICES.map(
      (d): PlanMount => ({ kind: "bind", source: `/dev/${d}`, target: `/dev/${d}`, flags: 0, create: "file", recursive: false }),
    ),
    {
      kind: "mount",
      source: "devpts",
      target: "/dev/pts",
      fstype: "devpts",
      flags: MS.NOSUID | MS.NOEXEC,
      data: `newinstance,ptmxmode=0666,mode=0620${o.ttyGroupMapped ? ",gid=5" : ""}`,
      create: "dir",
    },
    { kind: "mount", source: "shm", target: "/dev/shm", fstype: "tmpfs", flags: nosuidNodevNoexec, data: `mode=1777,size=${Math.max(1, Math.ceil((o.shmSize ?? 64 * 1024 * 1024) / 1024))}k`, create: "dir" },
    { kind: "mount", source: "mqueue", target: "/dev/mqueue", fstype: "mqueue", flags: nosuidNodevNoexec, data: "", create: "dir" },
    { kind: "symlink", linkTarget: "pts/ptmx", path: "/dev/ptmx" },
    { kind: "symlink", linkTarget: "/proc/self/fd", path: "/dev/fd" },
    { kind: "symlink", linkTarget: "/proc/self/fd/0", path: "/dev/stdin" },
    { kind: "symlink", linkTarget: "/proc/self/fd/1", path: "/dev/stdout" },
    { kind: "symlink", linkTarget: "/proc/self/fd/2", path: "/dev/stderr" },
    o.network === "host"
      ? { kind: "bind", source: "/sys", target: "/sys", flags: MS.RDONLY | nosuidNodevNoexec, create: "dir", recursive: true }
      : { kind: "mount", source: "sysfs", target: "/sys", fstype: "sysfs", flags: MS.RDONLY | nosuidNodevNoexec, data: "", create: "dir" },
    { kind: "bind", source: o.etcFiles.hosts, target: "/etc/hosts", flags: 0, create: "file", recursive: false },
    { kind: "bind", source: o.etcFiles.resolvConf, target: "/etc/resolv.conf", flags: 0, create: "file", recursive: false },
    { kind: "bind", source: o.etcFiles.hostname, target: "/etc/hostname", flags: 0, create: "file", recursive: false },
    ...o.extraMounts,
  ];
  return {
    root: { path: o.rootfs, source: "overlay", fstype: "overlay", data, flags: 0, readOnly: o.readOnly, cwd: o.lowerBase },
    mounts,
    maskedPaths: MASKED_PATHS,
    readOnlyPaths: READONLY_PATHS,
  };
}

/**
 * /etc/hosts as Docker writes it for a container: its own name at 127.0.1.1, or at its address
 * on a user-defined network.
 */
export function hostsFile(hostname: string, ip = "127.0.1.1"): string {
  return [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
    `${ip}\t${hostname}`,
    "",
  ].join("\n");
}

/**
 * The host's resolv.conf without loopback resolvers (unreachable from a namespace), or with
 * --dns servers instead of the host's.
 */
export function resolvConf(hostText: string, network: NetworkMode, dns: string[] = [], search: string[] = [], options: string[] = []): string {
  let lines = hostText.split("\n");
  if (dns.length > 0) lines = [...lines.filter((l) => !/^\s*nameserver\s/.test(l)), ...dns.map((d) => `nameserver ${d}`)];
  else if (network !== "host") lines = lines.filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  // --dns-search replaces the host's search list ("." alone: none); --dns-option its options.
  if (search.length > 0) {
    lines = lines.filter((l) => !/^\s*(search|domain)\s/.test(l));
    const domains = search.filter((d) => d !== ".");
    if (domains.length > 0) lines.push(`search ${domains.join(" ")}`);
  }
  if (options.length > 0) lines = [...lines.filter((l) => !/^\s*options\s/.test(l)), `options ${options.join(" ")}`];
  const text = lines.join("\n").trim();
  return text ? `${text}\n` : "";
}
