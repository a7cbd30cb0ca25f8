// pasta (package passt): carries a private network namespace's traffic to the host's network,
// rootless, and can forward the published ports (-p), splicing loopback connections. It maps the
// namespace's gateway address to the host's loopback, so a container reaches a server on the
// host's 127.0.0.1 at the gateway address.
import { readFileSync } from "node:fs";
import type { PortMapping } from "./ports.js";

/** DNS queries to this address are forwarded by pasta to the host's first resolver. */
export const PASTA_DNS = "169.254.1.1";

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
export function explainPastaFailure(stderr: string): string {
  const m = /Failed to bind any port for '-[tu] ([^']+)'/.exec(stderr);
  if (m) return `cannot publish port ${m[1]}: the host port is already in use`;
  const lines = stderr.split("\n").filter((l) => l && !l.includes("syslog"));
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
