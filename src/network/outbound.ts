// What connects a container's own network namespace to the host: outbound access through
// slirp4netns (preferred) or pasta (package passt), and published ports through tsrun-forward or
// pasta.
// Each is a helper process started once the container's namespaces exist (before it runs), as
// a command whose first argument is the container's pid.
import { accessSync, closeSync, constants, existsSync, readFileSync, readSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { PortMapping } from "./ports.js";
import { pastaArgs, PASTA_DNS, explainPastaFailure } from "./pasta.js";
import { helperPath, native } from "../native.js";
import { TsrunError } from "../errors.js";
import { isAlive } from "../store/liveness.js";
import { sleepSync } from "../sleep-sync.js";
import { removeFile } from "../remove-file.js";

export type OutboundHelper = "pasta" | "slirp4netns";
/**
 * Who forwards published ports when the user chooses: tsrun's own forwarder (splice) or pasta.
 * Unchosen: tsrun-forward (the only one with slirp4netns); with pasta as the helper, TCP goes
 * through pasta and UDP through tsrun-forward: the two measured alike for TCP
 * (bench/RESULTS.md), and pasta loses UDP replies to clients on the host's loopback.
 */
export type PortHandler = "tsrun" | "pasta";

/** slirp4netns answers DNS here and forwards to the host's resolver. */
export const SLIRP_DNS = "10.0.2.3";
/** slirp4netns's gateway: the host's loopback, as seen from the container. */
export const SLIRP_HOST = "10.0.2.2";

export function findProgram(name: string): string | undefined {
  const searchPath = process.env.PATH ?? "/usr/bin:/bin";
  // A run looks its network helper up more than once (creating, then starting the container):
  // each lookup is up to a dozen stats. Only what was found is kept: a program installed later
  // is found by a long-lived process (a library user) on its next lookup.
  const key = `${name}\0${searchPath}`;
  const known = programs.get(key);
  if (known !== undefined) return known;
  for (const dir of searchPath.split(":").concat(["/usr/bin", "/usr/sbin", "/bin", "/sbin"])) {
    const p = path.join(dir, name);
    if (existsSync(p)) {
      programs.set(key, p);
      return p;
    }
  }
  return undefined;
}
const programs = new Map<string, string>();

/**
 * The helper for outbound access: the one asked for, else slirp4netns, else pasta; or a clear
 * error naming the package to install. Both need /dev/net/tun. slirp4netns comes first because
 * it starts faster: on the 2026-11-29 machines `run --rm busybox true` took ~20 ms more than with
 * --network none through slirp4netns and ~80 ms more through pasta (Debian 12's pasta spends that
 * setting itself up); with -p, slirp4netns plus tsrun-forward started ~110 ms sooner than pasta.
 * Published ports then go through tsrun-forward, which measured at least as fast as pasta's
 * forwarding (bench/RESULTS.md). Outbound bulk throughput is lower (about 1.7 Gbit/s against
 * pasta's 1-4), far above what an outbound connection needs; --network pasta picks pasta.
 */
export function outboundHelper(wanted?: OutboundHelper, find: (name: string) => string | undefined = findProgram, tun = "/dev/net/tun"): { kind: OutboundHelper; path: string } {
  const slirp = wanted === "pasta" ? undefined : find("slirp4netns");
  // pasta only when asked for, or when it is the only one.
  const pasta = wanted === "slirp4netns" || (wanted === undefined && slirp) ? undefined : find("pasta");
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
  return slirp ? { kind: "slirp4netns", path: slirp } : { kind: "pasta", path: pasta as string };
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
  /** The helper's interface when eth0 is taken (user-defined networks); eth0 otherwise. */
  ifname?: string | undefined;
}

/**
 * The helper commands, the container's pid to be inserted after each program. The forwarder
 * comes first: it is the one that fails on a taken port, and it exits by itself with the
 * container, so nothing is left running when a later step fails.
 */
export function helperCommands(o: HelperOptions, found = outboundHelper(o.helper)): string[][] {
  const specs = (ports: PortMapping[]): string[] =>
    ports.flatMap((m) => [m.protocol === "udp" ? "-u" : "-t", `${m.hostIp ? `${m.hostIp}/` : ""}${m.hostPort}:${m.containerPort}`]);
  const forward = [helperPath("tsrun-forward"), "--pid-file", path.join(o.dir, "forward.pid")];
  if (found.kind === "slirp4netns") return [[...forward, "--slirp4netns", found.path, "--ifname", o.ifname ?? "eth0", ...specs(o.ports)]];
  const viaPasta = (m: PortMapping): boolean => o.portHandler === "pasta" || (o.portHandler === undefined && m.protocol === "tcp");
  const ours = o.ports.filter((m) => !viaPasta(m));
  const cmds = ours.length > 0 ? [[...forward, ...specs(ours)]] : [];
  cmds.push([found.path, ...pastaArgs(o.ports.filter(viaPasta), path.join(o.dir, "pasta.pid"), o.dnsForward, o.ifname)]);
  return cmds;
}

/**
 * A foreground run's helpers: the slirp4netns it starts itself (startSlirp4netns) when there are
 * no published ports (tsrun-forward would have nothing to forward), else the helper commands.
 */
export function foregroundHelpers(o: HelperOptions): { commands: string[][]; slirp?: { path: string; ifname: string } } {
  const found = outboundHelper(o.helper);
  if (o.ports.length === 0 && found.kind === "slirp4netns") return { commands: [], slirp: { path: found.path, ifname: o.ifname ?? "eth0" } };
  return { commands: helperCommands(o, found) };
}

/** How long slirp4netns may take to configure the container's network (tsrun-forward waits as long). */
const SLIRP_READY_MS = 10_000;

/** A slirp4netns process starting: its pid, the fd whose closing stops it, its ready pipe. */
export interface SlirpStart {
  pid: number;
  /** Its --exit-fd's other end (close-on-exec, so no other child holds it; closed by the kernel if this process dies). */
  exitFd: number;
  /** Gets one byte once the network is configured, end of file if slirp4netns exits first. */
  readyFd: number;
}

/**
 * Where slirp4netns configures the network: a waiting container's namespaces (its pid), or a
 * network namespace made before the container (a path to it, and the user namespace that owns
 * it), which the container then joins.
 */
export type SlirpTarget = { containerPid: number } | { netnsPath: string; usernsPath: string };

/** Starts slirp4netns without waiting for it (awaitSlirp4netns does). */
export function spawnSlirp4netns(program: string, ifname: string, target: SlirpTarget): SlirpStart {
  const addon = native();
  const [readyRead, readyWrite] = addon.pipe();
  const [exitRead, exitWrite] = addon.pipe();
  const where =
    "containerPid" in target
      ? [`--userns-path=/proc/${target.containerPid}/ns/user`, String(target.containerPid)]
      : [`--userns-path=${target.usernsPath}`, "--netns-type=path", target.netnsPath];
  let pid: number;
  try {
    pid = addon.spawnDetached(program, ["--configure", "--mtu=65520", "--ready-fd=3", "--exit-fd=4", ...where, ifname], readyWrite, exitRead);
  } catch (err) {
    for (const fd of [readyRead, readyWrite, exitRead, exitWrite]) closeSync(fd);
    throw new TsrunError(`slirp4netns: ${(err as Error).message}`);
  }
  closeSync(readyWrite);
  closeSync(exitRead);
  return { pid, exitFd: exitWrite, readyFd: readyRead };
}

/**
 * Waits until a started slirp4netns has configured the network (bounded), and records its pid
 * in slirp4netns.pid in the container's dir for stopNetworkHelpers. On failure it is stopped.
 */
export function awaitSlirp4netns(slirp: SlirpStart, dir: string): { exitFd: number; pid: number } {
  const addon = native();
  try {
    writeFileSync(path.join(dir, "slirp4netns.pid"), `${slirp.pid}\n`);
    const ready = addon.pollIn(slirp.readyFd, SLIRP_READY_MS) && readSync(slirp.readyFd, Buffer.alloc(1)) === 1;
    if (!ready) throw new TsrunError("slirp4netns failed to configure the container's network");
  } catch (err) {
    cancelSlirp4netns(slirp);
    stopNetworkHelpers(dir);
    throw err;
  }
  closeSync(slirp.readyFd);
  return { exitFd: slirp.exitFd, pid: slirp.pid };
}

/** Stops a started slirp4netns that is no longer wanted: both pipes closed, the process reaped. */
export function cancelSlirp4netns(slirp: SlirpStart): void {
  closeSync(slirp.readyFd);
  closeSync(slirp.exitFd);
  void native().waitPid(slirp.pid).catch(() => undefined);
}

/**
 * Starts slirp4netns for a waiting container's network namespace and returns once it has
 * configured it. What tsrun-forward does before it forwards ports, without starting
 * tsrun-forward first: a foreground run's network is ready a process start and a fork sooner.
 */
export function startSlirp4netns(program: string, ifname: string, containerPid: number, dir: string): { exitFd: number; pid: number } {
  return awaitSlirp4netns(spawnSlirp4netns(program, ifname, { containerPid }), dir);
}

/** One line for a helper that failed: its own message (tsrun-forward's are one line already). */
export function explainHelperFailure(program: string, stderr: string): string {
  if (path.basename(program) === "pasta") return explainPastaFailure(stderr);
  const lines = stderr.split("\n").filter((l) => l.trim());
  return lines[lines.length - 1] ?? `${path.basename(program)} failed`;
}

/** The pid files of a container's network helpers, in its directory. */
const HELPER_PID_FILES = ["pasta.pid", "forward.pid", "slirp4netns.pid"];
/** What /proc/PID/comm says for each helper (pasta runs as passt or passt.avx2). */
const HELPER_COMMANDS = /^(pasta|passt(\.avx2)?|tsrun-forward|slirp4netns)$/;

/**
 * Stops a container's network helpers (pasta, tsrun-forward, a foreground run's slirp4netns) from their pid files, and removes
 * the files. A pid is signalled only while /proc says it is still one of those programs: after
 * a crash or a reboot the number may belong to anything. With waitMs, waits (bounded) until
 * they are gone, so that published ports are free when this returns.
 */
export function stopNetworkHelpers(containerDir: string, waitMs = 0): void {
  for (const name of HELPER_PID_FILES) {
    const file = path.join(containerDir, name);
    let pid = 0;
    try {
      pid = Number(readFileSync(file, "utf8").trim());
    } catch {
      continue; // never started
    }
    if (pid > 1 && helperComm(pid)) {
      try {
        process.kill(pid, "SIGTERM");
        const deadline = Date.now() + waitMs;
        while (Date.now() < deadline && isAlive(pid, 0)) sleepSync(5);
      } catch {
        // Gone already.
      }
    }
    removeFile(file);
  }
}

function helperComm(pid: number): boolean {
  try {
    return HELPER_COMMANDS.test(readFileSync(`/proc/${pid}/comm`, "utf8").trim());
  } catch {
    return false;
  }
}
