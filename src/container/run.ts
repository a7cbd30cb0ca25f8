// Creating, starting and running containers: from an image and run options to a record on disk
// and a process in its namespaces.
import { closeSync, existsSync, mkdirSync, read, readFileSync, rmSync, writeFileSync } from "node:fs";
import { signalNumber } from "./lifecycle.js";
import { promisify } from "node:util";
import path from "node:path";
import { Store } from "../store/store.js";
import { ContainerStore, type ContainerRecord } from "./records.js";
import { filesystemPlan, hostsFile, namespaceFlags, resolvConf, type NetworkMode } from "./mounts.js";
import { mergeCommand, mergeEnv, parseEnvFile, parseGroup, parsePasswd, parseUserSpec, resolveUser, DEFAULT_PATH, type ResolvedUser } from "./spec.js";
import { readLayeredFile } from "./rootfs-files.js";
import { attachForeground, launchPlan, SignalRelay, type LaunchedProcess } from "./process.js";
import { currentMapping, isRemapped, keepIdUser, maxContainerId, setGroupsAllowed, type UsernsMode } from "../userns.js";
import { NotFoundError, TsrunError } from "../errors.js";
import type { HealthConfig, ImageConfig } from "../image/types.js";
import { parseDuration } from "../image/config-changes.js";
import { CLONE, type LaunchPlan, type PlanMount } from "../native.js";
import { normaliseName } from "../image/reference.js";
import { parseMountFlag, parseTmpfsFlag, parseVolumeFlag, planMounts, Volumes, type MountSpec } from "./volumes.js";
import { parsePortSpec, assignHostPorts } from "../network/ports.js";
import { explainPastaFailure, hostGateway, networkHelper, pastaArgs, PASTA_DNS } from "../network/pasta.js";
import { clearRunFiles, isAlive, processStartTime, refreshState } from "./state.js";
import { containerProcessPlan } from "./exec.js";
import { encodePlan, monitorPath, native, packageRoot } from "../native.js";
import { idMapFile, idMapSteps } from "../userns.js";
import { copyLayersForMapping, remappedLayerDir } from "./remapped-layers.js";
import { keepIdAccounts } from "./spec.js";
import { homedir, userInfo } from "node:os";
import { parseSecurityFlags, type SecurityFlags } from "./security/options.js";
import { checkResourceLimits, prepareCgroup, removeCgroup } from "./security/cgroups.js";
import { confineFilesystem, processSecurity, securityOf } from "./security/plan.js";

export interface CreateOptions {
  image: string;
  /**
   * Layers and config to run on instead of a stored image's (the builder's intermediate states;
   * `image` is then only the name shown). id: the image the layers come from.
   */
  base?: { id: string; layers: string[]; config: ImageConfig };
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
  network?: NetworkMode;
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
  /** --cidfile: the new container's ID is written there (a file that exists is an error, as in Docker). */
  cidFile?: string | undefined;
  /** --stop-signal (else the image's STOPSIGNAL, else SIGTERM) and --stop-timeout seconds. */
  stopSignal?: string | undefined;
  stopTimeout?: number | undefined;
  /** --restart no|always|unless-stopped|on-failure[:N] (detached containers). */
  restart?: string | undefined;
  /** --cap-add, --cap-drop, --privileged, --security-opt, --ulimit, --pids-limit, --memory, --cpus, --userns. */
  security?: SecurityFlags;
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
  /** cgroups of containers this process runs in the foreground, removed after their exit. */
  private readonly cgroups = new Map<string, string>();
  constructor(readonly store: Store) {
    this.records = new ContainerStore(store.paths.containers);
    this.volumes = new Volumes(store);
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

  /** Layer roots of a container, topmost first: its upper dir, then the image's layers (for reading files). */
  private layerRoots(record: ContainerRecord): string[] {
    const upper = path.join(this.records.containerDir(record.id), "upper");
    return [upper, ...[...record.layers].reverse().map((c) => this.store.layers.diffDir(c))];
  }

  /**
   * The image layer dirs a container mounts, topmost first: the store's, or for a container
   * with its own id mapping (keep-id, nomap) its own copies (see remapped-layers.ts).
   */
  imageLayerDirs(record: ContainerRecord): string[] {
    const mode = this.usernsOf(record);
    if (!isRemapped(mode)) return [...record.layers].reverse().map((c) => this.store.layers.diffDir(c));
    const dir = this.records.containerDir(record.id);
    return record.layers.map((_, i) => remappedLayerDir(dir, i)).reverse();
  }

  usernsOf(record: ContainerRecord): UsernsMode {
    return securityOf(record).userns;
  }

  /** /etc/passwd and /etc/group as the container sees them: keep-id adds the user if missing. */
  private accounts(record: ContainerRecord): { passwd: string; group: string; changed: { passwd?: string; group?: string } } {
    const roots = this.layerRoots(record);
    const passwd = readLayeredFile(roots, "etc/passwd") ?? "";
    const group = readLayeredFile(roots, "etc/group") ?? "";
    const keep = keepIdUser(this.usernsOf(record));
    if (!keep) return { passwd, group, changed: {} };
    let name = "user";
    let home = "/";
    try {
      name = userInfo().username;
      home = homedir();
    } catch {
      // No passwd entry for the caller: a plain name and / as home.
    }
    const extra = keepIdAccounts(passwd, group, { ...keep, name, home });
    return { passwd: extra.passwd ?? passwd, group: extra.group ?? group, changed: extra };
  }

  /** The ids of the container's user, or of `user` (exec -u), from its passwd and group files. */
  resolveUserFor(record: ContainerRecord, user?: string): ResolvedUser {
    const mapping = currentMapping();
    const mode = this.usernsOf(record);
    const { passwd, group } = this.accounts(record);
    const spec = parseUserSpec(user ?? (record.config.user === "" ? "0" : record.config.user));
    return resolveUser(spec, parsePasswd(passwd), parseGroup(group), { maxUid: maxContainerId(mapping, "uid", mode), maxGid: maxContainerId(mapping, "gid", mode) });
  }

  /** Creates a container record and its directories; nothing runs yet. */
  async create(opts: CreateOptions): Promise<ContainerRecord> {
    let image = opts.base;
    let imageName = opts.image;
    if (!image) {
      const stored = this.store.images.find(opts.image);
      if (!stored) throw new NotFoundError(`${displayName(opts.image)}: image not known`);
      image = { id: stored.id, layers: stored.layers.map((l) => l.chainId), config: this.imageConfig(stored.id) };
      imageName = stored.names[0] ?? stored.id;
    }
    const config = image.config;
    const c = config.config ?? {};
    const tty = opts.tty ?? false;
    const entrypointGiven = opts.entrypoint !== undefined;
    // Validate everything that can be wrong before anything is written.
    const argv = mergeCommand(c, { entrypoint: opts.entrypoint, args: opts.args });
    const security = parseSecurityFlags(opts.security ?? {});
    checkResourceLimits(security.resources);
    // keep-id and nomap need subordinate ids: this refuses them early when there are none.
    maxContainerId(currentMapping(), "uid", security.userns);
    // A profile libseccomp refuses (an architecture it does not know, conflicting rules) fails
    // here rather than at start; the compiled program is cached for the start.
    processSecurity(security, 0);
    const keep = keepIdUser(security.userns);
    if (opts.stopSignal !== undefined) signalNumber(opts.stopSignal);
    if (opts.cidFile !== undefined && existsSync(opts.cidFile)) {
      throw new TsrunError(`container ID file found, make sure the other container isn't running or delete ${opts.cidFile}`);
    }
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
    const network = opts.network ?? "private";
    if (network === "private") networkHelper();
    const requested = (opts.publish ?? []).flatMap(parsePortSpec);
    if (opts.publishAll) {
      for (const key of Object.keys(c.ExposedPorts ?? {})) {
        const [p, proto] = key.split("/") as [string, string | undefined];
        if (!requested.some((r) => r.containerPort === Number(p) && r.protocol === (proto ?? "tcp")))
          requested.push({ hostIp: "", hostPort: 0, containerPort: Number(p), protocol: proto === "udp" ? "udp" : "tcp" });
      }
    }
    if (requested.length > 0 && network !== "private") throw new TsrunError(`published ports need the private network, not --network ${network}`);
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
      imageName,
      layers: image.layers,
      path: argv[0] as string,
      args: argv.slice(1),
      config: {
        env: [],
        // keep-id runs as the caller's own ids unless told otherwise (as Podman does).
        user: opts.user ?? (c.User || (keep ? `${keep.uid}:${keep.gid}` : "")),
        workingDir,
        hostname,
        tty,
        openStdin: opts.interactive ?? false,
        entrypoint: entrypointGiven ? (opts.entrypoint ? [opts.entrypoint] : null) : (c.Entrypoint ?? null),
        cmd: opts.args.length > 0 ? opts.args : entrypointGiven ? null : (c.Cmd ?? null),
        labels: { ...(c.Labels ?? {}), ...(opts.labels ?? {}) },
        stopSignal: opts.stopSignal ?? c.StopSignal ?? "SIGTERM",
        ...(opts.stopTimeout !== undefined ? { stopTimeout: opts.stopTimeout } : {}),
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
        security,
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
      writeFileSync(path.join(dir, "hosts"), hostsFile(hostname) + extraHosts.map((l) => `${l}\n`).join(""));
      writeFileSync(path.join(dir, "hostname"), hostname + "\n");
      // Bound over the image's files at start (see plan), like /etc/hosts.
      if (keep) for (const [file, text] of Object.entries(this.accounts(record).changed)) writeFileSync(path.join(dir, file), text);
      if (isRemapped(security.userns)) {
        await copyLayersForMapping(record.layers.map((l) => this.store.layers.diffDir(l)), dir, security.userns);
      }
      const resolv = resolvConf(readOr("/etc/resolv.conf", ""), network, opts.dns ?? []);
      // No resolver reachable from the namespace (only loopback ones on the host): pasta answers
      // at its DNS address and forwards to the host's resolver.
      record.hostConfig.dnsForward = network === "private" && !/^\s*nameserver\s/m.test(resolv);
      writeFileSync(path.join(dir, "resolv.conf"), record.hostConfig.dnsForward ? `${resolv}nameserver ${PASTA_DNS}\n` : resolv);
      this.records.save(record);
      if (opts.cidFile !== undefined) {
        try {
          writeFileSync(opts.cidFile, id, { flag: "wx" });
        } catch (err) {
          throw new TsrunError(`cannot write the container ID file ${opts.cidFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      }
    } catch (err) {
      this.records.releaseName(record.name);
      await this.store.removeTree(this.records.containerDir(id));
      throw err;
    }
    return record;
  }

  /**
   * The container's cgroup with its resource limits, made before each start; the plan then
   * defers the cgroup namespace until the child is in it.
   */
  private prepareLimits(record: ContainerRecord, plan: LaunchPlan): string | undefined {
    const cgroup = prepareCgroup(record.id, securityOf(record).resources);
    if (cgroup) {
      plan.cloneFlags &= ~CLONE.NEWCGROUP;
      plan.unshareCgroup = true;
    }
    return cgroup;
  }

  /** The launch plan for a created container. */
  plan(record: ContainerRecord, io: { tty?: { rows: number; cols: number }; stdinNull: boolean; stdio?: [number, number, number] }): LaunchPlan {
    const mapping = currentMapping();
    const mode = this.usernsOf(record);
    const dir = this.records.containerDir(record.id);
    const user = this.resolveUserFor(record);
    const network = record.hostConfig.networkMode as NetworkMode;
    const lowerDirs = isRemapped(mode)
      ? this.imageLayerDirs(record).map((d) => path.relative(this.store.paths.root, d))
      : [...record.layers].reverse().map((c) => this.store.layers.linkPath(c));
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
      ttyGroupMapped: maxContainerId(mapping, "gid", mode) >= 5,
      extraMounts: [
        // keep-id's generated /etc/passwd and /etc/group, when the image lacks the user.
        ...["passwd", "group"]
          .filter((f) => existsSync(path.join(dir, f)))
          .map((f): PlanMount => ({ kind: "bind", source: path.join(dir, f), target: `/etc/${f}`, flags: 0, create: "file", recursive: false })),
        ...planMounts(record.hostConfig.mounts ?? [], this.volumes),
      ],
    });
    const security = securityOf(record);
    confineFilesystem(fs, security);
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
      loopbackUp: network !== "host",
      dieWithParent: true,
      ...processSecurity(security, user.uid),
    };
    if (io.tty) plan.tty = io.tty;
    if (io.stdio) plan.stdio = io.stdio;
    return plan;
  }

  /** Starts a created container attached to this process's terminal or streams (or to stdio: fds for 0, 1, 2). */
  async start(record: ContainerRecord, stdio?: [number, number, number]): Promise<LaunchedProcess> {
    const tty = record.config.tty
      ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 }
      : undefined;
    const io = tty ? { tty, stdinNull: false } : { stdinNull: !record.config.openStdin, ...(stdio ? { stdio } : {}) };
    const plan = this.plan(record, io);
    const cgroup = this.prepareLimits(record, plan);
    let proc: LaunchedProcess;
    try {
      proc = await launchPlan(plan, this.usernsOf(record), (pid) => {
        if (cgroup) {
          this.cgroups.set(record.id, cgroup);
          writeFileSync(path.join(cgroup, "cgroup.procs"), `${pid}\n`);
        }
        this.startNetwork(record, pid);
      });
    } catch (err) {
      removeCgroup(cgroup);
      throw err;
    }
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

  /** pasta's command line for a container with the private network (the child's pid goes first). */
  private networkCommand(record: ContainerRecord): string[] | undefined {
    if (record.hostConfig.networkMode !== "private") return undefined;
    const pidFile = path.join(this.records.containerDir(record.id), "pasta.pid");
    return [networkHelper(), ...pastaArgs(record.hostConfig.portBindings ?? [], pidFile, record.hostConfig.dnsForward ?? false)];
  }

  /** Connects a waiting child's network namespace (foreground runs; the monitor does its own). */
  private startNetwork(record: ContainerRecord, pid: number): void {
    const cmd = this.networkCommand(record);
    if (!cmd) return;
    const [result] = native().runTools([[cmd[0] as string, String(pid), ...cmd.slice(1)]]);
    if (!result || result.error) throw new TsrunError(result?.error ?? "pasta did not run");
    if (result.code !== 0) throw new TsrunError(explainPastaFailure(result.stderr, record.hostConfig.portBindings ?? []));
  }

  /** Stops the network helper of a foreground run once the container has exited. */
  stopNetwork(record: ContainerRecord): void {
    const file = path.join(this.records.containerDir(record.id), "pasta.pid");
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

  /**
   * Starts a created (or exited) container under a tsrun-monitor that outlives this process:
   * the monitor holds the output, writes ctr.log and the exit file. Resolves once the command
   * runs, or fails with 125/126/127 like a foreground start.
   */
  async startDetached(record: ContainerRecord, opts: { beforeStart?: () => Promise<void> } = {}): Promise<ContainerRecord> {
    const dir = this.records.containerDir(record.id);
    const tty = record.config.tty ? { rows: 24, cols: 80 } : undefined;
    // The monitor sets up stdio itself (pipes, or the pty); without stdin-null (run -i) it keeps
    // the container's stdin open for `attach`.
    const plan = this.plan(record, { ...(tty ? { tty } : {}), stdinNull: !record.config.openStdin });
    const cgroup = this.prepareLimits(record, plan);
    writeFileSync(path.join(dir, "plan.bin"), encodePlan(plan));
    const net = this.networkCommand(record);
    writeFileSync(path.join(dir, "prestart"), idMapFile(idMapSteps(currentMapping(), this.usernsOf(record))) + (cgroup ? `cgroup ${cgroup}\n` : "") + (net ? `tool ${net.join(" ")}\n` : ""));
    clearRunFiles(dir);
    // start -a: the monitor waits for the attach client before it starts the container.
    if (opts.beforeStart) writeFileSync(path.join(dir, "attach-wait"), "");
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
      monitorPid = addon.spawnMonitor(monitorPath(), [dir], readyWrite);
    } finally {
      closeSync(readyWrite);
    }
    // The monitor answers within milliseconds: "ok PID" or "err KIND ERRNO STEP", after
    // "attach" when it waits for an attach client first.
    let reply = "";
    try {
      const readChunk = promisify(read);
      const buf = Buffer.alloc(4096);
      let beforeStart = opts.beforeStart;
      for (;;) {
        const { bytesRead } = await readChunk(readyRead, buf, 0, buf.length, null);
        if (bytesRead <= 0) break;
        reply += buf.subarray(0, bytesRead).toString();
        if (beforeStart && reply.startsWith("attach\n")) {
          reply = reply.slice("attach\n".length);
          await beforeStart();
          beforeStart = undefined;
        }
      }
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
    await this.store.removeTree(this.records.containerDir(record.id));
    this.records.releaseName(record.name);
    if (opts.volumes) {
      for (const m of record.hostConfig.mounts ?? []) {
        if (m.type === "volume" && m.anonymous && this.volumes.exists(m.source)) await this.volumes.remove(m.source, this.volumeUsers(m.source));
      }
    }
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
      removeCgroup(this.cgroups.get(record.id));
      this.cgroups.delete(record.id);
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
