// The default network: a private network namespace whose traffic pasta (package passt) carries
// to the host's network, rootless. pasta also forwards the published ports (-p), splicing
// loopback connections. It maps the namespace's gateway address to the host's loopback, so a
// container reaches a server on the host's 127.0.0.1 at the gateway address.
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { PortMapping } from "./ports.js";
import { TsrunError } from "../errors.js";

/** DNS queries to this address are forwarded by pasta to the host's first resolver. */
export const PASTA_DNS = "169.254.1.1";

export function findProgram(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(":").concat(["/usr/bin", "/usr/sbin", "/bin", "/sbin"])) {
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** The helper for private networks, or a clear error naming the package to install. */
export function networkHelper(): string {
  const pasta = findProgram("pasta");
  if (!pasta) throw new TsrunError('no network helper: install the "passt" package (pasta), or use --network none or host');
  try {
    // Only the permission: reading a tun device would wait for packets.
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM")
      throw new TsrunError("/dev/net/tun is not usable by this user (mode 0600): as root, chmod 0666 /dev/net/tun, as distributions ship it");
  }
  return pasta;
}

/**
 * pasta's arguments, the target pid first (the monitor inserts it; the CLI prepends it): all
 * forwarding off unless ports are published.
 */
export function pastaArgs(ports: PortMapping[], pidFile: string, dnsForward: boolean, ifname?: string): string[] {
  // IPv4 only, like Docker's default bridge: configuring IPv6 costs pasta about 7 ms a start.
  const args = ["--config-net", "--quiet", "-4", "--pid", pidFile];
  if (ifname) args.push("--ns-ifname", ifname);
  const tcp = ports.filter((p) => p.protocol === "tcp");
  const udp = ports.filter((p) => p.protocol === "udp");
  const spec = (m: PortMapping): string => `${m.hostIp ? `${m.hostIp}/` : ""}${m.hostPort}:${m.containerPort}`;
  if (tcp.length === 0) args.push("-t", "none");
  for (const m of tcp) args.push("-t", spec(m));
  if (udp.length === 0) args.push("-u", "none");
  for (const m of udp) args.push("-u", spec(m));
  args.push("-T", "none", "-U", "none");
  if (dnsForward) args.push("--dns-forward", PASTA_DNS);
  return args;
}

/** Turns pasta's complaint about a taken port into Docker's kind of message. */
export function explainPastaFailure(stderr: string, ports: PortMapping[]): string {
  const m = /Failed to bind any port for '-[tu] ([^']+)'/.exec(stderr);
  if (m) return `cannot publish port ${m[1]}: the host port is already in use`;
  const lines = stderr.split("\n").filter((l) => l && !l.includes("syslog"));
  void ports;
  return `pasta failed: ${lines[lines.length - 1] ?? "unknown error"}`;
}

/** The host's default gateway (for --add-host NAME:host-gateway), from /proc/net/route. */
export function hostGateway(): string | undefined {
  try {
    for (const line of readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === "00000000" && f[2]) {
        const hex = f[2];
        return [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join(".");
      }
    }
  } catch {
    // no /proc/net/route
  }
  return undefined;
}
