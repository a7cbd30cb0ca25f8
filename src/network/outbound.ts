// What connects a container's own network namespace to the host: outbound access through pasta
// (package passt, preferred) or slirp4netns, and published ports through tsrun-forward or pasta.
// Each is a helper process started once the container's namespaces exist (before it runs), as
// a command whose first argument is the container's pid.
import { accessSync, constants, existsSync } from "node:fs";
import path from "node:path";
import type { PortMapping } from "./ports.js";
import { pastaArgs, PASTA_DNS, explainPastaFailure } from "./pasta.js";
import { helperPath } from "../native.js";
import { TsrunError } from "../errors.js";

export type OutboundHelper = "pasta" | "slirp4netns";
/**
 * Who forwards published ports when the user chooses: tsrun's own forwarder (splice) or pasta.
 * Unchosen, TCP goes through pasta and UDP through tsrun-forward: the two measured alike for
 * TCP (bench/RESULTS.md), and pasta loses UDP replies to clients on the host's loopback.
 */
export type PortHandler = "tsrun" | "pasta";

/** slirp4netns answers DNS here and forwards to the host's resolver. */
export const SLIRP_DNS = "10.0.2.3";

export function findProgram(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(":").concat(["/usr/bin", "/usr/sbin", "/bin", "/sbin"])) {
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * The helper for outbound access: the one asked for, else pasta, else slirp4netns; or a clear
 * error naming the package to install. Both need /dev/net/tun.
 */
export function outboundHelper(wanted?: OutboundHelper, find: (name: string) => string | undefined = findProgram, tun = "/dev/net/tun"): { kind: OutboundHelper; path: string } {
  const pasta = wanted === "slirp4netns" ? undefined : find("pasta");
  const slirp = wanted === "pasta" ? undefined : find("slirp4netns");
  if (wanted === "pasta" && !pasta) throw new TsrunError('--network pasta: pasta is not installed (package "passt")');
  if (wanted === "slirp4netns" && !slirp) throw new TsrunError('--network slirp4netns: slirp4netns is not installed (package "slirp4netns")');
  if (!pasta && !slirp) throw new TsrunError('no network helper: install the "passt" package (pasta) or "slirp4netns", or use --network none or host');
  try {
    // Only the permission: reading a tun device would wait for packets.
    accessSync(tun, constants.R_OK | constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new TsrunError(`${tun} does not exist: the private network needs the tun module (as root: modprobe tun), or use --network none or host`);
    if (code === "EACCES" || code === "EPERM")
      throw new TsrunError(`${tun} is not usable by this user: as root, chmod 0666 ${tun}, as distributions ship it; or use --network none or host`);
  }
  return pasta ? { kind: "pasta", path: pasta } : { kind: "slirp4netns", path: slirp as string };
}

/** The address resolv.conf names when the host's resolvers are unreachable from a namespace. */
export function forwardedDns(helper: OutboundHelper): string {
  return helper === "pasta" ? PASTA_DNS : SLIRP_DNS;
}

export interface HelperOptions {
  helper: OutboundHelper;
  ports: PortMapping[];
  portHandler: PortHandler | undefined;
  dnsForward: boolean;
  /** The container directory: pasta.pid and forward.pid go there. */
  dir: string;
  /** pasta's interface when eth0 is taken (user-defined networks). */
  ifname?: string | undefined;
}

/**
 * The helper commands, the container's pid to be inserted after each program. The forwarder
 * comes first: it is the one that fails on a taken port, and it exits by itself with the
 * container, so nothing is left running when a later step fails.
 */
export function helperCommands(o: HelperOptions): string[][] {
  const found = outboundHelper(o.helper);
  const specs = (ports: PortMapping[]): string[] =>
    ports.flatMap((m) => [m.protocol === "udp" ? "-u" : "-t", `${m.hostIp ? `${m.hostIp}/` : ""}${m.hostPort}:${m.containerPort}`]);
  const forward = [helperPath("tsrun-forward"), "--pid-file", path.join(o.dir, "forward.pid")];
  if (found.kind === "slirp4netns") return [[...forward, "--slirp4netns", found.path, ...specs(o.ports)]];
  const viaPasta = (m: PortMapping): boolean => o.portHandler === "pasta" || (o.portHandler === undefined && m.protocol === "tcp");
  const ours = o.ports.filter((m) => !viaPasta(m));
  const cmds = ours.length > 0 ? [[...forward, ...specs(ours)]] : [];
  cmds.push([found.path, ...pastaArgs(o.ports.filter(viaPasta), path.join(o.dir, "pasta.pid"), o.dnsForward, o.ifname)]);
  return cmds;
}

/** One line for a helper that failed: its own message (tsrun-forward's are one line already). */
export function explainHelperFailure(program: string, stderr: string): string {
  if (path.basename(program) === "pasta") return explainPastaFailure(stderr);
  const lines = stderr.split("\n").filter((l) => l.trim());
  return lines[lines.length - 1] ?? `${path.basename(program)} failed`;
}
