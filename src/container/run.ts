// Creating, starting and running containers: from an image and run options to a record on disk
// and a process in its namespaces.
import { closeSync, existsSync, mkdirSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Store } from "../store/store.js";
import { ContainerStore, type ContainerRecord } from "./records.js";
import { filesystemPlan, hostsFile, namespaceFlags, resolvConf } from "./mounts.js";
import { mergeCommand, mergeEnv, parseEnvFile, parseGroup, parsePasswd, parseUserSpec, resolveUser, DEFAULT_PATH, type ResolvedUser } from "./spec.js";
import { readLayeredFile } from "./rootfs-files.js";
import { attachForeground, launchPlan, SignalRelay, type LaunchedProcess } from "./process.js";
import { currentMapping, maxMappedId, setGroupsAllowed } from "../userns.js";
import { NotFoundError, TsrunError } from "../errors.js";
import type { HealthConfig, ImageConfig } from "../image/types.js";
import { parseDuration } from "../image/config-changes.js";
import type { LaunchPlan } from "../native.js";
import { normaliseName } from "../image/reference.js";
import { parseMountFlag, parseTmpfsFlag, parseVolumeFlag, planMounts, Volumes, type MountSpec } from "./volumes.js";
import { parsePortSpec, assignHostPorts } from "../network/ports.js";
import { hostGateway } from "../network/pasta.js";
import { explainHelperFailure, forwardedDns, helperCommands, outboundHelper, type OutboundHelper, type PortHandler } from "../network/outbound.js";
import { clearRunFiles, isAlive, processStartTime, refreshState } from "./state.js";
import { containerProcessPlan } from "./exec.js";
import { encodePlan, monitorPath, native, packageRoot } from "../native.js";
import { idMapFile, idMapSteps } from "../userns.js";
import { ContainerNetworks } from "./networking.js";
import { BUILTIN_NETWORKS, type NetworkRecord } from "../network/networks.js";
import { closeHolder, connectHolder, nestedIdMaps, type HolderConnection } from "../network/holder.js";

export interface CreateOptions {
  image: string;
  /** Arguments after the image: replace CMD. */
  args: string[];
  name?: string | undefined;
  env?: string[];
  envFiles?: string[];
  workdir?: string | undefined;
  user?: string | undefined;
  entrypoint?: string | undefined;
  hostname?: string | undefined;
  readOnly?: boolean;
  autoRemove?: boolean;
  detach?: boolean;
  tty?: boolean;
  interactive?: boolean;
  /** private (the default), none, host, or the name of a user-defined network. */
  network?: string;
  /** --network-alias, --link NAME[:ALIAS], --ip: on a user-defined network only. */
  networkAliases?: string[];
  links?: string[];
  ip?: string | undefined;
  /** --network pasta or slirp4netns: this helper for outbound access, not the first installed. */
  networkHelper?: OutboundHelper | undefined;
  /** Who forwards published ports (unset: pasta for TCP, tsrun-forward for UDP; see PortHandler). */
  portHandler?: PortHandler | undefined;
  labels?: Record<string, string>;
  /** -v specs, --mount specs, --tmpfs specs, --volumes-from containers. */
  volumes?: string[];
  mounts?: string[];
  tmpfs?: string[];
  volumesFrom?: string[];
  /** -p specs, -P (every EXPOSEd port to a free host port), --dns servers, --add-host NAME:IP. */
  publish?: string[];
  publishAll?: boolean;
  dns?: string[];
  addHosts?: string[];
  /** --restart no|always|unless-stopped|on-failure[:N] (detached containers). */
  restart?: string | undefined;
  /** --health-* flags and --no-healthcheck: change the image's HEALTHCHECK. */
  health?: { cmd?: string | undefined; interval?: string | undefined; timeout?: string | undefined; retries?: number | undefined; startPeriod?: string | undefined; disable?: boolean };
}

function parseRestart(spec: string | undefined): NonNullable<ContainerRecord["hostConfig"]["restartPolicy"]> {
  if (!spec || spec === "no") return { name: "no", maximumRetryCount: 0 };
  const m = /^(always|unless-stopped|on-failure)(?::(\d+))?$/.exec(spec);
  if (!m || (m[2] !== undefined && m[1] !== "on-failure")) throw new TsrunError(`invalid restart policy "${spec}": expected no, always, unless-stopped or on-failure[:N]`);
  return { name: m[1] as "always" | "unless-stopped" | "on-failure", maximumRetryCount: m[2] ? Number(m[2]) : 0 };
}

function mergeHealth(image: HealthConfig | undefined, flags: CreateOptions["health"]): HealthConfig | undefined {
  if (flags?.disable) return { Test: ["NONE"] };
  const hc: HealthConfig = { ...(image ?? {}) };
  if (flags?.cmd) hc.Test = ["CMD-SHELL", flags.cmd];
  if (flags?.interval) hc.Interval = parseDuration(flags.interval);
  if (flags?.timeout) hc.Timeout = parseDuration(flags.timeout);
  if (flags?.startPeriod) hc.StartPeriod = parseDuration(flags.startPeriod);
  if (flags?.retries !== undefined) {
    if (!Number.isInteger(flags.retries) || flags.retries < 0) throw new TsrunError(`invalid --health-retries "${flags.retries}"`);
    hc.Retries = flags.retries;
  }
  return hc.Test ? hc : undefined;
}

export class Containers {
  readonly records: ContainerStore;
  readonly volumes: Volumes;
  readonly networking: ContainerNetworks;
  /** Connections to the network holder of foreground runs, held until they exit. */
  private readonly holds = new Map<string, HolderConnection>();
  constructor(readonly store: Store) {
    this.records = new ContainerStore(store.paths.containers);
    this.volumes = new Volumes(store);
    this.networking = new ContainerNetworks(store, this.records);
  }

  /** The container's mounts from its flags and the image's VOLUME entries (parsed, checked). */
  private mountSpecs(opts: CreateOptions, imageVolumes: string[]): MountSpec[] {
    const specs: MountSpec[] = [
      ...(opts.volumes ?? []).map(parseVolumeFlag),
      ...(opts.mounts ?? []).map(parseMountFlag),
      ...(opts.tmpfs ?? []).map(parseTmpfsFlag),
    ];
    for (const from of opts.volumesFrom ?? []) {
      const [name, mode] = from.split(":") as [string, string | undefined];
      if (mode !== undefined && mode !== "ro" && mode !== "rw") throw new TsrunError(`invalid --volumes-from "${from}"`);
      const other = this.get(name);
      for (const m of other.hostConfig.mounts ?? []) {
        if (m.type === "tmpfs") continue;
        specs.push({ ...m, anonymous: false, readOnly: mode === "ro" ? true : mode === "rw" ? false : m.readOnly });
      }
    }
    const targets = new Set<string>();
    for (const m of specs) {
      if (targets.has(m.target)) throw new TsrunError(`duplicate mount point: ${m.target}`);
      targets.add(m.target);
    }
    for (const v of imageVolumes) {
      const target = path.posix.normalize(v);
      if (!targets.has(target)) specs.push({ type: "volume", source: "", target, readOnly: false, anonymous: true });
    }
    return specs;
  }

  /** Creates the volumes a container needs (filling new ones from the image) and bind dirs. */
  private async prepareMounts(specs: MountSpec[], layerDirs: string[]): Promise<void> {
    for (const m of specs) {
      if (m.type === "bind" && !existsSync(m.source)) mkdirSync(m.source, { recursive: true });
      if (m.type !== "volume") continue;
      const { record, created } = this.volumes.create(m.source || undefined, {}, m.anonymous ?? false);
      m.source = record.Name;
      if (!created || m.noCopy) continue;
      try {
        await this.volumes.copyUp(record.Name, layerDirs, m.target);
      } catch (err) {
        // A volume that could not be filled is not left behind half made.
        await this.volumes.remove(record.Name, []);
        throw err;
      }
    }
  }

  private imageConfig(configDigest: string): ImageConfig {
    return JSON.parse(this.store.blobs.read(configDigest).toString("utf8")) as ImageConfig;
  }

  /** Layer roots of a container, topmost first: its upper dir, then the image's layers. */
  private layerRoots(record: ContainerRecord): string[] {
    const upper = path.join(this.records.containerDir(record.id), "upper");
    return [upper, ...[...record.layers].reverse().map((c) => this.store.layers.diffDir(c))];
  }

  private resolveUserFor(record: ContainerRecord): ResolvedUser {
    const mapping = currentMapping();
    const roots = this.layerRoots(record);
    const passwd = parsePasswd(readLayeredFile(roots, "etc/passwd") ?? "");
    const groups = parseGroup(readLayeredFile(roots, "etc/group") ?? "");
    const spec = parseUserSpec(record.config.user === "" ? "0" : record.config.user);
    return resolveUser(spec, passwd, groups, { maxUid: maxMappedId(mapping, "uid"), maxGid: maxMappedId(mapping, "gid") });
  }

  /** Creates a container record and its directories; nothing runs yet. */
  async create(opts: CreateOptions): Promise<ContainerRecord> {
    const image = this.store.images.find(opts.image);
    if (!image) throw new NotFoundError(`${displayName(opts.image)}: image not known`);
    const config = this.imageConfig(image.id);
    const c = config.config ?? {};
    const tty = opts.tty ?? false;
    const entrypointGiven = opts.entrypoint !== undefined;
    // Validate everything that can be wrong before anything is written.
    const argv = mergeCommand(c, { entrypoint: opts.entrypoint, args: opts.args });
    const workingDir = opts.workdir ?? (c.WorkingDir || "/");
    if (!workingDir.startsWith("/")) throw new TsrunError(`the working directory "${workingDir}" is invalid: it needs to be an absolute path`);
    const envFromFiles = (opts.envFiles ?? []).flatMap((f) => {
      let text: string;
      try {
        text = readFileSync(f, "utf8");
      } catch (err) {
        throw new TsrunError(`cannot read env file ${f}: ${(err as Error).message}`);
      }
      return parseEnvFile(text, f);
    });
    let network = opts.network ?? "private";
    let userNetwork: NetworkRecord | undefined;
    if (!["private", "none", "host"].includes(network)) {
      if (BUILTIN_NETWORKS.includes(network)) throw new TsrunError(`unknown network mode "${network}"`);
      userNetwork = this.networking.networks.find(network);
      network = userNetwork.Name;
    }
    if (!userNetwork && (opts.networkAliases ?? []).length > 0) throw new TsrunError("--network-alias needs a user-defined network (--network NAME)");
    if (!userNetwork && (opts.links ?? []).length > 0) throw new TsrunError("--link needs a user-defined network that both containers are on (--network NAME)");
    if (!userNetwork && opts.ip) throw new TsrunError("--ip needs a user-defined network (--network NAME)");
    const outbound = network === "private" || (userNetwork !== undefined && !userNetwork.Internal);
    const helper = outbound ? outboundHelper(opts.networkHelper).kind : undefined;
    if (opts.portHandler === "pasta" && helper !== "pasta") throw new TsrunError("port_handler=pasta needs pasta as the network helper");
    const requested = (opts.publish ?? []).flatMap(parsePortSpec);
    if (opts.publishAll) {
      for (const key of Object.keys(c.ExposedPorts ?? {})) {
        const [p, proto] = key.split("/") as [string, string | undefined];
        if (!requested.some((r) => r.containerPort === Number(p) && r.protocol === (proto ?? "tcp")))
          requested.push({ hostIp: "", hostPort: 0, containerPort: Number(p), protocol: proto === "udp" ? "udp" : "tcp" });
      }
    }
    if (requested.length > 0 && !outbound) throw new TsrunError(`published ports need a network with outbound access, not --network ${network}`);
    const ports = await assignHostPorts(requested);
    const extraHosts = (opts.addHosts ?? []).map((h) => {
      const colon = h.indexOf(":");
      const hostName = h.slice(0, colon);
      let ip = colon > 0 ? h.slice(colon + 1) : "";
      if (ip === "host-gateway") ip = hostGateway() ?? "";
      if (!hostName || !ip || !/^[a-zA-Z0-9.-]+$/.test(hostName) || !/^[0-9a-fA-F.:]+$/.test(ip)) throw new TsrunError(`invalid --add-host "${h}": expected NAME:IP`);
      return `${ip}\t${hostName}`;
    });
    for (const d of opts.dns ?? []) if (!/^[0-9a-fA-F.:]+$/.test(d)) throw new TsrunError(`invalid --dns address "${d}"`);
    const id = this.records.newId();
    const hostname = opts.hostname ?? (network === "host" ? readHostname() : id.slice(0, 12));
    if (!/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$/.test(hostname)) throw new TsrunError(`invalid hostname "${hostname}"`);
    const record: ContainerRecord = {
      id,
      name: "",
      created: new Date().toISOString(),
      image: image.id,
      imageName: image.names[0] ?? image.id,
      layers: image.layers.map((l) => l.chainId),
      path: argv[0] as string,
      args: argv.slice(1),
      config: {
        env: [],
        user: opts.user ?? c.User ?? "",
        workingDir,
        hostname,
        tty,
        openStdin: opts.interactive ?? false,
        entrypoint: entrypointGiven ? (opts.entrypoint ? [opts.entrypoint] : null) : (c.Entrypoint ?? null),
        cmd: opts.args.length > 0 ? opts.args : entrypointGiven ? null : (c.Cmd ?? null),
        labels: { ...(c.Labels ?? {}), ...(opts.labels ?? {}) },
        stopSignal: c.StopSignal ?? "SIGTERM",
        ...(() => {
          const hc = mergeHealth(c.Healthcheck, opts.health);
          return hc ? { healthcheck: hc } : {};
        })(),
      },
      hostConfig: {
        autoRemove: opts.autoRemove ?? false,
        readOnly: opts.readOnly ?? false,
        networkMode: network,
        mounts: this.mountSpecs(opts, Object.keys(c.Volumes ?? {})),
        restartPolicy: parseRestart(opts.restart),
        portBindings: ports,
        dnsForward: false,
        ...(helper ? { networkHelper: helper } : {}),
        ...(opts.portHandler ? { portHandler: opts.portHandler } : {}),
      },
      state: { status: "created", pid: 0, monitorPid: 0, monitorStartTime: 0, exitCode: 0, startedAt: "", finishedAt: "", error: "" },
    };
    const user = this.resolveUserFor(record);
    await this.prepareMounts(record.hostConfig.mounts, [...record.layers].reverse().map((l) => this.store.layers.diffDir(l)));
    record.config.env = mergeEnv(c.Env, [...envFromFiles, ...(opts.env ?? [])], { hostname, tty, home: user.home });
    record.name = this.records.claimName(opts.name, id);
    try {
      const dir = this.records.containerDir(id);
      for (const sub of ["upper", "work", "rootfs"]) mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o755 });
      writeFileSync(path.join(dir, "hostname"), hostname + "\n");
      const resolv = resolvConf(readOr("/etc/resolv.conf", ""), network, opts.dns ?? []);
      // No resolver reachable from the namespace (only loopback ones on the host): pasta answers
      // at its DNS address and forwards to the host's resolver.
      record.hostConfig.dnsForward = helper !== undefined && !/^\s*nameserver\s/m.test(resolv);
      writeFileSync(path.join(dir, "resolv.conf"), helper && record.hostConfig.dnsForward ? `${resolv}nameserver ${forwardedDns(helper)}\n` : resolv);
      const writeHosts = (ip?: string): void =>
        writeFileSync(path.join(dir, "hosts"), hostsFile(hostname, ip) + extraHosts.map((l) => `${l}\n`).join(""));
      if (userNetwork) {
        const joined = userNetwork;
        // The address is chosen, and the peers learn the name, under the store lock.
        await this.store.lock(() => {
          const endpoint = this.networking.endpoint(record, { network: joined, aliases: opts.networkAliases ?? [], links: opts.links ?? [], ip: opts.ip });
          record.hostConfig.networks = { [joined.Name]: endpoint };
          writeHosts(endpoint.ipAddress);
          this.records.save(record);
          this.networking.announce(record);
        });
      } else {
        writeHosts();
        this.records.save(record);
      }
    } catch (err) {
      this.records.releaseName(record.name);
      await this.store.removeTree(this.records.containerDir(id));
      throw err;
    }
    return record;
  }

  /** The launch plan for a created container. */
  plan(record: ContainerRecord, io: { tty?: { rows: number; cols: number }; stdinNull: boolean }): LaunchPlan {
    const mapping = currentMapping();
    const dir = this.records.containerDir(record.id);
    const user = this.resolveUserFor(record);
    const network = record.hostConfig.networkMode;
    const lowerDirs = [...record.layers].reverse().map((c) => this.store.layers.linkPath(c));
    if (lowerDirs.length === 0) {
      // overlay needs a lower dir: an image without layers gets an empty one.
      mkdirSync(path.join(dir, "empty"), { recursive: true });
      lowerDirs.push(path.relative(this.store.paths.root, path.join(dir, "empty")));
    }
    const fs = filesystemPlan({
      rootfs: path.join(dir, "rootfs"),
      lowerDirs,
      lowerBase: this.store.paths.root,
      upperDir: path.join(dir, "upper"),
      workDir: path.join(dir, "work"),
      readOnly: record.hostConfig.readOnly,
      network,
      etcFiles: { hosts: path.join(dir, "hosts"), resolvConf: path.join(dir, "resolv.conf"), hostname: path.join(dir, "hostname") },
      ttyGroupMapped: maxMappedId(mapping, "gid") >= 5,
      extraMounts: planMounts(record.hostConfig.mounts ?? [], this.volumes),
    });
    const envPath = record.config.env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
    const plan: LaunchPlan = {
      cloneFlags: namespaceFlags(network),
      hostname: record.config.hostname,
      ...fs,
      argv: [record.path, ...record.args],
      env: record.config.env,
      searchPath: envPath,
      cwd: { path: record.config.workingDir, create: true },
      user: { uid: user.uid, gid: user.gid, groups: user.groups },
      setGroupsAllowed: setGroupsAllowed(mapping),
      stdinNull: io.stdinNull,
      noNewPrivileges: false,
      loopbackUp: network !== "host",
      dieWithParent: true,
    };
    if (io.tty) plan.tty = io.tty;
    return plan;
  }

  /** Starts a created container attached to this process's terminal or streams. */
  async start(record: ContainerRecord): Promise<LaunchedProcess> {
    const tty = record.config.tty
      ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 }
      : undefined;
    const io = tty ? { tty, stdinNull: false } : { stdinNull: !record.config.openStdin };
    const plan = this.plan(record, io);
    const { conn, pairs } = await this.holdNetworks(record, plan);
    let proc: LaunchedProcess;
    try {
      proc = await launchPlan(plan, (pid) => {
        if (conn) ContainerNetworks.attach(conn, pid, pairs);
        this.startNetwork(record, pid);
      });
    } catch (err) {
      closeHolder(conn);
      throw err;
    }
    if (conn) this.holds.set(record.id, conn);
    record.state = {
      ...record.state,
      status: "running",
      pid: proc.pid,
      monitorPid: process.pid,
      monitorStartTime: processStartTime(process.pid),
      startedAt: new Date().toISOString(),
      finishedAt: "",
      error: "",
    };
    this.records.save(record);
    return proc;
  }

  /**
   * A container on user-defined networks: a connection to the network holder (kept while the
   * container lives), its user namespace nested in the holder's, and its networks.
   */
  private async holdNetworks(record: ContainerRecord, plan: LaunchPlan): Promise<{ conn?: HolderConnection; pairs: ReturnType<ContainerNetworks["networksOf"]> }> {
    const pairs = this.networking.networksOf(record);
    if (pairs.length === 0) return { pairs };
    const conn = await connectHolder(this.store.paths.runRoot);
    plan.nest = { userns: `/proc/${conn.pid}/ns/user`, ...nestedIdMaps() };
    return { conn, pairs };
  }

  /**
   * The helper commands of a container with outbound access or published ports (the child's pid
   * goes after each program). On user-defined networks eth0 is the network's: pasta's interface
   * is tap0, with the default route.
   */
  private networkCommands(record: ContainerRecord): string[][] {
    const h = record.hostConfig;
    const userNetworks = Object.keys(h.networks ?? {}).length > 0;
    if (h.networkMode !== "private" && !(userNetworks && this.networking.outbound(record))) return [];
    return helperCommands({
      helper: h.networkHelper ?? "pasta",
      ports: h.portBindings ?? [],
      portHandler: h.portHandler,
      dnsForward: h.dnsForward ?? false,
      dir: this.records.containerDir(record.id),
      ifname: userNetworks ? "tap0" : undefined,
    });
  }

  /** Connects a waiting child's network namespace (foreground runs; the monitor does its own). */
  private startNetwork(record: ContainerRecord, pid: number): void {
    // One after the other, in order: a failure stops the start before the next one runs.
    for (const [program, ...args] of this.networkCommands(record)) {
      const [r] = native().runTools([[program as string, String(pid), ...args]]);
      if (!r || r.error) throw new TsrunError(r?.error ?? `${program} did not run`);
      if (r.code !== 0 || r.signal !== 0) throw new TsrunError(explainHelperFailure(program as string, r.stderr));
    }
  }

  /** Stops the network helpers of a foreground run once the container has exited. */
  stopNetwork(record: ContainerRecord): void {
    closeHolder(this.holds.get(record.id));
    this.holds.delete(record.id);
    for (const name of ["pasta.pid", "forward.pid"]) {
      const file = path.join(this.records.containerDir(record.id), name);
      try {
        const pid = Number(readFileSync(file, "utf8").trim());
        if (pid > 1) {
          process.kill(pid, "SIGTERM");
          // With published ports, a bounded wait until it is gone, so they are free when we return.
          const waitFor = (record.hostConfig.portBindings ?? []).length > 0;
          const deadline = Date.now() + 1000;
          while (waitFor && Date.now() < deadline && isAlive(pid, 0)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        }
      } catch {
        // Never started, or gone already.
      }
      rmSync(file, { force: true });
    }
  }

  /**
   * Starts a created (or exited) container under a tsrun-monitor that outlives this process:
   * the monitor holds the output, writes ctr.log and the exit file. Resolves once the command
   * runs, or fails with 125/126/127 like a foreground start.
   */
  async startDetached(record: ContainerRecord): Promise<ContainerRecord> {
    const tty = record.config.tty ? { rows: 24, cols: 80 } : undefined;
    // The monitor sets up stdio itself (pipes, or the pty).
    const plan = this.plan(record, tty ? { tty, stdinNull: false } : { stdinNull: true });
    const { conn, pairs } = await this.holdNetworks(record, plan);
    try {
      return await this.spawnMonitor(record, plan, conn, pairs);
    } finally {
      // The monitor has its own copy of the connection.
      closeHolder(conn);
    }
  }

  private async spawnMonitor(record: ContainerRecord, plan: LaunchPlan, conn: HolderConnection | undefined, pairs: ReturnType<ContainerNetworks["networksOf"]>): Promise<ContainerRecord> {
    const dir = this.records.containerDir(record.id);
    writeFileSync(path.join(dir, "plan.bin"), encodePlan(plan));
    // A nested user namespace gets its id maps from the launcher itself.
    const prestart = [
      conn ? "" : idMapFile(idMapSteps()),
      ...ContainerNetworks.attachRequests(pairs).map((r) => `netns ${r}\n`),
      ...this.networkCommands(record).map((cmd) => `tool ${cmd.join(" ")}\n`),
    ];
    writeFileSync(path.join(dir, "prestart"), prestart.join(""));
    clearRunFiles(dir);
    const policy = record.hostConfig.restartPolicy ?? { name: "no", maximumRetryCount: 0 };
    writeFileSync(path.join(dir, "restart"), `${policy.name} ${policy.maximumRetryCount}\n`);
    const hc = record.config.healthcheck;
    if (hc?.Test && hc.Test.length > 0 && hc.Test[0] !== "NONE") {
      const command = hc.Test[0] === "CMD-SHELL" ? ["/bin/sh", "-c", hc.Test.slice(1).join(" ")] : hc.Test.slice(1);
      writeFileSync(path.join(dir, "health.bin"), encodePlan(containerProcessPlan(this, record, { command })));
      const ms = (ns: number | undefined, fallback: number): number => (ns ? Math.max(1, Math.round(ns / 1e6)) : fallback);
      writeFileSync(path.join(dir, "health.conf"), `${ms(hc.Interval, 30000)} ${ms(hc.Timeout, 30000)} ${ms(hc.StartPeriod, 0)} ${hc.Retries || 3}\n`);
    } else {
      rmSync(path.join(dir, "health.bin"), { force: true });
    }
    if (record.hostConfig.autoRemove) {
      const cli = path.join(packageRoot(), "bin", "tsrun");
      writeFileSync(path.join(dir, "autoremove"), [process.execPath, cli, "rm", "--force", "--volumes", record.id].join("\n") + "\n");
    }
    const addon = native();
    const [readyRead, readyWrite] = addon.pipe();
    let monitorPid: number;
    try {
      monitorPid = addon.spawnMonitor(monitorPath(), [dir], readyWrite, conn?.fd ?? -1);
    } finally {
      closeSync(readyWrite);
    }
    // The monitor answers within milliseconds: "ok PID" or "err KIND ERRNO STEP".
    let reply = "";
    try {
      const buf = Buffer.alloc(4096);
      for (let n = readSync(readyRead, buf); n > 0; n = readSync(readyRead, buf)) reply += buf.subarray(0, n).toString();
    } finally {
      closeSync(readyRead);
    }
    const ok = /^ok (\d+)/.exec(reply);
    if (!ok) {
      const m = /^err (\d+) (\d+) (.*)/.exec(reply.trim());
      if (!m) throw new TsrunError(`container monitor failed to start${reply ? `: ${reply.trim()}` : ""}`);
      const [, kind, errno, step] = m as unknown as [string, string, string, string];
      const message = Number(errno) ? `${step}: ${addon.strerror(Number(errno))}` : step;
      throw new TsrunError(message, kind === "1" ? 127 : kind === "2" ? 126 : 125);
    }
    record.state = {
      ...record.state,
      status: "running",
      pid: Number(ok[1]),
      monitorPid,
      monitorStartTime: processStartTime(monitorPid),
      exitCode: 0,
      startedAt: new Date().toISOString(),
      finishedAt: "",
      error: "",
    };
    this.records.save(record);
    return record;
  }

  /** Finds a container by name, ID or ID prefix, with its state brought up to date. */
  get(query: string): ContainerRecord {
    const record = this.records.find(query);
    if (refreshState(record, this.records.containerDir(record.id))) this.records.save(record);
    return record;
  }

  /** Every container, states up to date. */
  list(): ContainerRecord[] {
    return this.records.list().map((r) => {
      if (refreshState(r, this.records.containerDir(r.id))) this.records.save(r);
      return r;
    });
  }

  /** Removes a container's record, name and directories (and with volumes, its anonymous volumes). */
  async remove(record: ContainerRecord, opts: { volumes?: boolean } = {}): Promise<void> {
    // Its peers forget its name first: its address is free once the record is gone.
    if (Object.keys(record.hostConfig.networks ?? {}).length > 0) await this.store.lock(() => this.networking.withdraw(record));
    await this.store.removeTree(this.records.containerDir(record.id));
    this.records.releaseName(record.name);
    if (opts.volumes) {
      for (const m of record.hostConfig.mounts ?? []) {
        if (m.type === "volume" && m.anonymous && this.volumes.exists(m.source)) await this.volumes.remove(m.source, this.volumeUsers(m.source));
      }
    }
  }

  /** Renames a container; its peers on user-defined networks learn the new name. */
  async rename(query: string, newName: string): Promise<void> {
    const record = this.get(query);
    this.records.claimName(newName, record.id);
    const old = record.name;
    const networked = Object.keys(record.hostConfig.networks ?? {}).length > 0;
    await this.store.lock(() => {
      if (networked) this.networking.withdraw(record);
      record.name = newName;
      this.records.save(record);
      if (networked) this.networking.announce(record);
    });
    this.records.releaseName(old);
  }

  /** Names of containers that mount a volume. */
  volumeUsers(volume: string): string[] {
    return this.records
      .list()
      .filter((r) => (r.hostConfig.mounts ?? []).some((m) => m.type === "volume" && m.source === volume))
      .map((r) => r.name);
  }

  /** `run` in the foreground: create, start, wait; returns the container's exit status. */
  async run(opts: CreateOptions): Promise<number> {
    if (opts.tty && opts.interactive && !process.stdin.isTTY) throw new TsrunError("the input device is not a TTY", 1);
    const record = await this.create(opts);
    const relay = new SignalRelay();
    let proc: LaunchedProcess;
    try {
      proc = await this.start(record);
    } catch (err) {
      relay.dispose();
      // A container that never started leaves nothing behind.
      this.stopNetwork(record);
      await this.remove(record);
      throw err;
    }
    let status: number;
    try {
      status = await attachForeground(proc, { interactive: opts.interactive ?? false, relay });
    } finally {
      this.stopNetwork(record);
    }
    if (record.hostConfig.autoRemove) {
      await this.remove(record, { volumes: true });
    } else {
      record.state = { ...record.state, status: "exited", pid: 0, exitCode: status, finishedAt: new Date().toISOString() };
      this.records.save(record);
    }
    return status;
  }
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return fallback;
  }
}

function readHostname(): string {
  return existsSync("/etc/hostname") ? readOr("/etc/hostname", "localhost").trim() : "localhost";
}

function displayName(input: string): string {
  try {
    return normaliseName(input);
  } catch {
    return input;
  }
}
