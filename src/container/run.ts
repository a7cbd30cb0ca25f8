// Creating, starting and running containers: from an image and run options to a record on disk
// and a process in its namespaces.
import { closeSync, existsSync, mkdirSync, read, readFileSync, writeFileSync } from "node:fs";
import { signalNumber } from "../format/signal.js";
import { promisify } from "node:util";
import path from "node:path";
import { Store } from "../store/store.js";
import { ContainerStore, type ContainerRecord } from "./records.js";
import { filesystemPlan, hostsFile, namespaceFlags, resolvConf, type NetworkMode } from "./mounts.js";
import { hostsLine } from "../network/hosts.js";
import { mergeCommand, mergeEnv, readEnvFiles, parseGroup, parsePasswd, parseUserSpec, resolveUser, DEFAULT_PATH, type ResolvedUser } from "./spec.js";
import { readLayeredFile } from "./rootfs-files.js";
import { attachForeground, launchPlan, SignalRelay, type LaunchedProcess } from "./process.js";
import { JsonFileLog, logAttributes, logRotation, copyOutput } from "./output-log.js";
import { currentMapping, isRemapped, keepIdUser, maxContainerId, setGroupsAllowed, type UsernsMode } from "../userns.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { applyNamespaceModes, checkJoinedNetwork, namespaceTargets, parseNamespaceFlags, sharedContainer, sharedHostname, type NamespaceFlags } from "./namespaces.js";
import type { HealthConfig, ImageConfig } from "../image/types.js";
import { parseDuration } from "../format/duration.js";
import { CLONE, MS, type LaunchPlan, type PlanMount } from "../native.js";
import { normaliseName } from "../image/reference.js";
import { parseMountFlag, parseTmpfsFlag, parseVolumeFlag, planMounts, Volumes, type MountSpec, type StagedVolume } from "./volumes.js";
import { containerLeftovers } from "./recovery.js";
import { faultPoint } from "../store/fault.js";
import type { Lease } from "../store/leases.js";
import type { HeldLock } from "../store/atomic.js";
import { randomBytes } from "../random.js";
import { findInitBinary, INIT_TARGET, initArgv } from "./init.js";
import { parseDevice } from "./devices.js";
import { parseSysctls, sysctlWrites } from "./sysctl.js";
import { parsePortSpec, assignHostPorts } from "../network/ports.js";
import { hostGateway } from "../network/pasta.js";
import {
  explainHelperFailure,
  foregroundHelpers,
  forwardedDns,
  helperCommands,
  outboundHelper,
  awaitSlirp4netns,
  cancelSlirp4netns,
  spawnSlirp4netns,
  startSlirp4netns,
  stopNetworkHelpers,
  type SlirpStart,
  SLIRP_HOST,
  type HelperOptions,
  type OutboundHelper,
  type PortHandler,
} from "../network/outbound.js";
import { ContainerNetworks } from "./networking.js";
import { BUILTIN_NETWORKS, type NetworkRecord } from "../network/networks.js";
import { closeHolder, connectHolder, holderForLaunch, holderNetworkNamespace, holderUserNamespace, type HolderConnection } from "../network/holder.js";
import { clearRunFiles, isRestarting, processStartTime, refreshState } from "./state.js";
import { containerProcessPlan } from "./exec.js";
import { encodePlan, monitorPath, native, packageRoot } from "../native.js";
import { idMapFile, idMapSteps } from "../userns.js";
import { copyLayersForMapping, remappedLayerDir } from "./remapped-layers.js";
import { keepIdAccounts } from "./spec.js";
import { homedir, userInfo } from "node:os";
import { parseSecurityFlags, type SecurityFlags } from "./security/options.js";
import { checkResourceLimits, prepareCgroup, removeCgroup } from "./security/cgroups.js";
import { confineFilesystem, processSecurity, securityOf } from "./security/plan.js";
import { removeFile } from "../remove-file.js";

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
  /** private (the default), none, host, or the name of a user-defined network. */
  network?: string;
  /** --network-alias, --link NAME[:ALIAS], --ip: on a user-defined network only. */
  networkAliases?: string[];
  links?: string[];
  ip?: string | undefined;
  /** --network pasta or slirp4netns: this helper for outbound access, not the first installed. */
  networkHelper?: OutboundHelper | undefined;
  /** Who forwards published ports (unset: tsrun-forward, but TCP through pasta when pasta is the helper; see PortHandler). */
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
  /** --dns-search domains ("." for none) and --dns-option resolver options. */
  dnsSearch?: string[];
  dnsOptions?: string[];
  /** --expose PORT[/PROTO] or a range: exposed beside the image's ports (for -P). */
  expose?: string[];
  addHosts?: string[];
  /** --cidfile: the new container's ID is written there (a file that exists is an error, as in Docker). */
  cidFile?: string | undefined;
  /** --stop-signal (else the image's STOPSIGNAL, else SIGTERM) and --stop-timeout seconds. */
  stopSignal?: string | undefined;
  stopTimeout?: number | undefined;
  /** --restart no|always|unless-stopped|on-failure[:N] (detached containers). */
  restart?: string | undefined;
  /** --init: a small init (tini) runs as PID 1 and starts the command. */
  init?: boolean;
  /** --group-add: supplementary groups for the command (and exec), by name or gid. */
  groupAdd?: string[];
  /** --shm-size: the size of /dev/shm in bytes. */
  shmSize?: number;
  /** --log-driver none: no log is kept (`logs` refuses); json-file otherwise. */
  logDriver?: "json-file" | "none";
  /** --log-opt KEY=VALUE of json-file (max-size and max-file rotate the log). */
  logOptions?: Record<string, string>;
  /** --device: HOST[:CONTAINER][:PERMISSIONS] values. */
  devices?: string[];
  /** --sysctl: KEY=VALUE values. */
  sysctls?: string[];
  /** --domainname */
  domainname?: string | undefined;
  /** --oom-score-adj, -1000 to 1000 */
  oomScoreAdj?: number | undefined;
  /** --annotation KEY=VALUE values. */
  annotations?: string[];
  /** --cgroupns host|private */
  cgroupns?: string | undefined;
  /** --cap-add, --cap-drop, --privileged, --security-opt, --ulimit, --pids-limit, --memory, --cpus, --userns. */
  security?: SecurityFlags;
  /** --pid, --ipc, --uts: private (the default), host, or container:NAME. */
  namespaces?: NamespaceFlags;
  /** A build's RUN container (see ContainerRecord.intermediate); use Containers.createIntermediate. */
  intermediate?: boolean;
  /** --health-* flags and --no-healthcheck: change the image's HEALTHCHECK. */
  health?: { cmd?: string | undefined; interval?: string | undefined; timeout?: string | undefined; retries?: number | undefined; startPeriod?: string | undefined; disable?: boolean };
}

/** KEY=VALUE values of a repeatable flag (--annotation, volume create -o, ...): a key is needed. */
export function parseKeyValues(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    if (eq <= 0) throw new TsrunError(`invalid ${flag} "${value}": expected KEY=VALUE`);
    out[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return out;
}

/** --cgroupns: private (a cgroup namespace of its own, the default on cgroup v2) or host. */
function parseCgroupns(mode: string | undefined): "private" | "host" {
  if (mode === undefined || mode === "" || mode === "private") return "private";
  if (mode === "host") return "host";
  throw new TsrunError(`invalid --cgroupns "${mode}": private or host`);
}

export function parseRestart(spec: string | undefined): NonNullable<ContainerRecord["hostConfig"]["restartPolicy"]> {
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

/** How Docker's messages name the namespace a container cannot join. */
const JOINED_WORD = { network: "network", pid: "PID", ipc: "IPC", uts: "UTS" } as const;

/** Names that reach the host from a container with outbound access (Podman's, then Docker Desktop's). */
const HOST_NAMES = ["host.containers.internal", "host.docker.internal"];

/** --cidfile: the new container's ID, in a file that must not exist yet (as in Docker). */
function writeCidFile(file: string, id: string): void {
  try {
    writeFileSync(file, id, { flag: "wx" });
  } catch (err) {
    throw new TsrunError(`cannot write the container ID file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export class Containers {
  readonly records: ContainerStore;
  readonly volumes: Volumes;
  /** cgroups of containers this process runs in the foreground, removed after their exit. */
  private readonly cgroups = new Map<string, string>();
  readonly networking: ContainerNetworks;
  /** Connections to the network holder of foreground runs, held until they exit. */
  private readonly holds = new Map<string, HolderConnection>();
  /** The slirp4netns processes of this process's foreground runs (startSlirp4netns): its children. */
  private readonly slirps = new Map<string, { exitFd: number; pid: number }>();
  constructor(readonly store: Store) {
    this.records = new ContainerStore(store.paths.containers);
    this.volumes = new Volumes(store);
    this.networking = new ContainerNetworks(store, this.records);
    store.attachLeftoverFinder("containers", () => containerLeftovers(this.records, this.volumes.dir, store.leases.inUse().containers));
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

  /**
   * The volumes a container needs that do not exist yet, staged under temporary names and
   * filled from the image (create publishes them with the record); bind dirs are made.
   */
  private async stageVolumes(specs: MountSpec[], layerDirs: string[], staged: StagedVolume[]): Promise<void> {
    for (const m of specs) {
      if (m.type === "bind" && !existsSync(m.source)) mkdirSync(m.source, { recursive: true });
      if (m.type !== "volume" || this.volumes.exists(m.source)) continue;
      const volume = this.volumes.stage(m.source, m.volumeLabels ?? {}, m.anonymous ?? false, m.volumeOptions ?? {});
      staged.push(volume);
      // A tmpfs or bind volume (volume-opt) is mounted from elsewhere: its data dir stays unused.
      if (!m.noCopy && !m.volumeOptions) await this.volumes.copyUp(volume.record.Name, volume.dataDir, layerDirs, m.target);
    }
  }

  /** The config of a container's image, or undefined once the image is gone (a build's step container). */
  imageConfigOf(record: ContainerRecord): ImageConfig | undefined {
    return this.store.blobs.has(record.image) ? this.imageConfig(record.image) : undefined;
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
    const groups = parseGroup(group);
    const maxGid = maxContainerId(mapping, "gid", mode);
    const resolved = resolveUser(spec, parsePasswd(passwd), groups, { maxUid: maxContainerId(mapping, "uid", mode), maxGid });
    const extra = (record.hostConfig.groupAdd ?? []).map((g) => addedGroup(g, groups, maxGid));
    return extra.length === 0 ? resolved : { ...resolved, groups: [...new Set([...resolved.groups, ...extra])] };
  }

  /** Creates a container record and its directories; nothing runs yet. */
  async create(opts: CreateOptions): Promise<ContainerRecord> {
    const { record, lease } = await this.createLeased(opts);
    lease.release();
    return record;
  }

  /**
   * A build step's container: created like any other, marked intermediate, and returned with
   * its lease, which the caller releases only after removing the container. Killed before
   * that, the build leaves a container no live lease names: the next sweep removes it.
   */
  createIntermediate(opts: CreateOptions): Promise<{ record: ContainerRecord; lease: Lease }> {
    return this.createLeased({ ...opts, intermediate: true });
  }

  /**
   * create, keeping the lease on the new container: `container prune` and `system prune` leave
   * a container alone while the command that created it has not started it yet.
   */
  private async createLeased(opts: CreateOptions, beforeStore?: (record: ContainerRecord) => Promise<void>): Promise<{ record: ContainerRecord; lease: Lease }> {
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
    const namespaceModes = parseNamespaceFlags(opts.namespaces ?? {}, (name) => this.get(name));
    if (opts.stopSignal !== undefined) signalNumber(opts.stopSignal);
    if (opts.cidFile !== undefined && existsSync(opts.cidFile)) {
      throw new TsrunError(`container ID file found, make sure the other container isn't running or delete ${opts.cidFile}`);
    }
    const workingDir = opts.workdir ?? (c.WorkingDir || "/");
    if (!workingDir.startsWith("/")) throw new TsrunError(`the working directory "${workingDir}" is invalid: it needs to be an absolute path`);
    const envFromFiles = readEnvFiles(opts.envFiles ?? []);
    let network = opts.network ?? "private";
    let userNetwork: NetworkRecord | undefined;
    const networkContainer = sharedContainer(network);
    if (networkContainer !== undefined) {
      if (networkContainer === "") throw new TsrunError(`invalid --network "${network}": expected container:NAME`);
      checkJoinedNetwork(opts);
      network = `container:${this.get(networkContainer).id}`;
    } else if (!["private", "none", "host"].includes(network)) {
      if (BUILTIN_NETWORKS.includes(network)) throw new TsrunError(`unknown network mode "${network}"`);
      userNetwork = this.networking.networks.find(network);
      network = userNetwork.Name;
    }
    for (const target of namespaceTargets({ ...namespaceModes, networkMode: network })) {
      // Its namespaces belong to its user namespace, which the new container joins.
      const other = this.records.load(target);
      if (JSON.stringify(this.usernsOf(other)) !== JSON.stringify(security.userns))
        throw new TsrunError(`cannot join the namespaces of container ${other.name}: it has a different --userns mode`);
    }
    if (!userNetwork && (opts.networkAliases ?? []).length > 0) throw new TsrunError("--network-alias needs a user-defined network (--network NAME)");
    if (!userNetwork && (opts.links ?? []).length > 0) throw new TsrunError("--link needs a user-defined network that both containers are on (--network NAME)");
    if (!userNetwork && opts.ip) throw new TsrunError("--ip needs a user-defined network (--network NAME)");
    // A user namespace of its own (keep-id, nomap) cannot be the network holder's.
    if (userNetwork && isRemapped(security.userns)) throw new TsrunError(`--userns ${security.userns.kind} cannot be combined with a user-defined network yet`);
    const outbound = network === "private" || (userNetwork !== undefined && !userNetwork.Internal);
    // port_handler=pasta without a helper named means pasta.
    const helper = outbound ? outboundHelper(opts.networkHelper ?? (opts.portHandler === "pasta" ? "pasta" : undefined)).kind : undefined;
    if (opts.portHandler === "pasta" && helper !== "pasta") throw new TsrunError("port_handler=pasta needs pasta as the network helper");
    const exposed = (opts.expose ?? []).flatMap(parseExpose);
    const requested = (opts.publish ?? []).flatMap(parsePortSpec);
    if (opts.publishAll) {
      for (const key of new Set([...Object.keys(c.ExposedPorts ?? {}), ...exposed])) {
        const [p, proto] = key.split("/") as [string, string | undefined];
        if (!requested.some((r) => r.containerPort === Number(p) && r.protocol === (proto ?? "tcp")))
          requested.push({ hostIp: "", hostPort: 0, containerPort: Number(p), protocol: proto === "udp" ? "udp" : "tcp" });
      }
    }
    if (requested.length > 0 && !outbound) throw new TsrunError(`published ports need a network with outbound access, not --network ${network}`);
    const ports = await assignHostPorts(requested);
    // The address where the container reaches the host: slirp4netns's fixed one, or the host's
    // own gateway, which pasta gives the container.
    const hostAddress = helper === undefined ? undefined : helper === "slirp4netns" ? SLIRP_HOST : hostGateway();
    const extraHosts = (opts.addHosts ?? []).map((h) => {
      // NAME=IP (docker/cli 25+) or NAME:IP; an IPv6 address may come in brackets.
      const sep = h.includes("=") ? h.indexOf("=") : h.indexOf(":");
      const hostName = sep > 0 ? h.slice(0, sep) : "";
      let ip = sep > 0 ? h.slice(sep + 1).replace(/^\[(.+)\]$/, "$1") : "";
      if (ip === "host-gateway") ip = hostAddress ?? hostGateway() ?? "";
      if (!hostName || !ip || !/^[a-zA-Z0-9.-]+$/.test(hostName) || !/^[0-9a-fA-F.:]+$/.test(ip)) throw new TsrunError(`invalid --add-host "${h}": expected NAME:IP or NAME=IP`);
      return `${ip}\t${hostName}`;
    });
    for (const d of opts.dns ?? []) if (!/^[0-9a-fA-F.:]+$/.test(d)) throw new TsrunError(`invalid --dns address "${d}"`);
    for (const d of opts.dnsSearch ?? []) if (!/^[^\s#;]+$/.test(d) || d.length > 253) throw new TsrunError(`invalid --dns-search domain "${d}"`);
    for (const o of opts.dnsOptions ?? []) if (!/^[^\s#;]+$/.test(o)) throw new TsrunError(`invalid --dns-option "${o}"`);
    const id = this.records.newId();
    const hostname =
      sharedHostname(namespaceModes, opts.hostname, readHostname, (other) => this.records.load(other)) ??
      opts.hostname ??
      // Docker: a container on another's network has that one's name.
      (networkContainer !== undefined ? this.records.load(sharedContainer(network) as string).config.hostname : undefined) ??
      (network === "host" ? readHostname() : id.slice(0, 12));
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
        ...(opts.domainname ? { domainname: opts.domainname } : {}),
        tty,
        openStdin: opts.interactive ?? false,
        entrypoint: entrypointGiven ? (opts.entrypoint ? [opts.entrypoint] : null) : (c.Entrypoint ?? null),
        cmd: opts.args.length > 0 ? opts.args : entrypointGiven ? null : (c.Cmd ?? null),
        labels: { ...(c.Labels ?? {}), ...(opts.labels ?? {}) },
        ...(exposed.length > 0 ? { exposedPorts: exposed } : {}),
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
        ...(helper ? { networkHelper: helper } : {}),
        ...(opts.portHandler ? { portHandler: opts.portHandler } : {}),
        ...(opts.init ? { init: findInitBinary() } : {}),
        ...(opts.groupAdd && opts.groupAdd.length > 0 ? { groupAdd: opts.groupAdd } : {}),
        ...(opts.shmSize !== undefined ? { shmSize: opts.shmSize } : {}),
        ...(opts.logDriver === "none" ? { logDriver: "none" as const } : {}),
        ...(opts.logOptions ? { logOptions: opts.logOptions } : {}),
        ...(opts.devices && opts.devices.length > 0 ? { devices: opts.devices.flatMap(parseDevice) } : {}),
        ...(opts.sysctls && opts.sysctls.length > 0 ? { sysctls: parseSysctls(opts.sysctls, network) } : {}),
        ...(opts.oomScoreAdj !== undefined && opts.oomScoreAdj !== 0 ? { oomScoreAdj: opts.oomScoreAdj } : {}),
        ...(opts.annotations && opts.annotations.length > 0 ? { annotations: parseKeyValues(opts.annotations, "--annotation") } : {}),
        ...(parseCgroupns(opts.cgroupns) === "host" ? { cgroupnsMode: "host" as const } : {}),
        ...(opts.dns && opts.dns.length > 0 ? { dns: opts.dns } : {}),
        ...(opts.dnsSearch && opts.dnsSearch.length > 0 ? { dnsSearch: opts.dnsSearch } : {}),
        ...(opts.dnsOptions && opts.dnsOptions.length > 0 ? { dnsOptions: opts.dnsOptions } : {}),
        ...namespaceModes,
      },
      state: { status: "created", pid: 0, monitorPid: 0, monitorStartTime: 0, exitCode: 0, startedAt: "", finishedAt: "", error: "" },
      ...(opts.intermediate ? { intermediate: true } : {}),
    };
    if (opts.name !== undefined) {
      // The usual mistakes fail before any work; the name is claimed for good under the lock below.
      ContainerStore.checkName(opts.name);
      if (this.records.idForName(opts.name) !== undefined && !this.records.isStaleName(opts.name)) throw this.records.nameInUse(opts.name);
    }
    // Volumes get their names now (anonymous ones too), so that the lease can name them.
    for (const m of record.hostConfig.mounts) if (m.type === "volume" && !m.source) m.source = randomBytes(32).toString("hex");
    const volumes = record.hostConfig.mounts.filter((m) => m.type === "volume").map((m) => m.source);
    // The image (or a build's layers) and the volumes it will mount are leased: no rmi, prune
    // or volume rm running meanwhile deletes them before the record that refers to them exists.
    const base = opts.base;
    const imageId = image.id;
    const operation = opts.intermediate ? `build step container ${id.slice(0, 12)}` : `create ${opts.name ?? id.slice(0, 12)}`;
    // The record says all the container will be: a foreground run starts its network helper
    // here (run()), to work while the record is stored.
    await beforeStore?.(record);
    const lease = await this.store.begin(operation, "containers", () => {
      if (base) return { layers: base.layers, volumes, containers: [id] };
      if (!this.store.images.list().some((i) => i.id === imageId)) throw new NotFoundError(`${displayName(opts.image)}: image not known`);
      return { images: [imageId], volumes, containers: [id] };
    });
    const staged: StagedVolume[] = [];
    try {
      const user = this.resolveUserFor(record);
      record.config.env = mergeEnv(c.Env, [...envFromFiles, ...(opts.env ?? [])], { hostname, tty, home: user.home });
      record.config.home = user.home;
      await this.stageVolumes(record.hostConfig.mounts, [...record.layers].reverse().map((l) => this.store.layers.diffDir(l)), staged);
      faultPoint("create:prepared");
      await this.store.lock(async () => {
        for (const v of staged.splice(0)) await this.volumes.publish(v);
        for (const v of volumes) if (!this.volumes.exists(v)) throw new TsrunError(`volume ${v} was removed while the container was being created`);
        record.name = this.records.claimName(opts.name, id);
        faultPoint("create:named");
        try {
          const join = userNetwork ? { network: userNetwork, aliases: opts.networkAliases ?? [], links: opts.links ?? [], ip: opts.ip } : undefined;
          // As Podman (and Docker Desktop) do: the host by name, unless --add-host names it.
          const hostNames = HOST_NAMES.filter((n) => !extraHosts.some((l) => l.split("\t")[1] === n));
          const implicitHosts = hostAddress && hostNames.length > 0 ? [hostsLine(hostAddress, hostNames)] : [];
          await this.writeContainerDir(record, { extraHosts: [...extraHosts, ...implicitHosts], dns: opts.dns ?? [], keepId: keep !== undefined, join });
          if (opts.cidFile !== undefined) writeCidFile(opts.cidFile, id);
        } catch (err) {
          this.records.releaseName(record.name, id);
          await this.store.removeTree(this.records.containerDir(id));
          throw err;
        }
      });
    } catch (err) {
      lease.release();
      throw err;
    } finally {
      await this.store.removeTrees(staged.map((v) => v.dir)).catch(() => undefined);
    }
    return { record, lease };
  }

  /**
   * The container's dir: upper, work, rootfs, its /etc files, and the record last (under the
   * store lock). On a user-defined network its address is chosen and its peers learn its name.
   */
  private async writeContainerDir(
    record: ContainerRecord,
    opts: { extraHosts: string[]; dns: string[]; keepId: boolean; join: { network: NetworkRecord; aliases: string[]; links: string[]; ip: string | undefined } | undefined },
  ): Promise<void> {
    const dir = this.records.containerDir(record.id);
    const hostname = record.config.hostname;
    const network = record.hostConfig.networkMode;
    const helper = record.hostConfig.networkHelper;
    for (const sub of ["upper", "work", "rootfs"]) mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o755 });
    writeFileSync(path.join(dir, "hostname"), hostname + "\n");
    // Bound over the image's files at start (see plan), like /etc/hosts.
    if (opts.keepId) for (const [file, text] of Object.entries(this.accounts(record).changed)) writeFileSync(path.join(dir, file), text);
    const userns = securityOf(record).userns;
    // (A copy of the image's layers: only keep-id and nomap containers, not run often.)
    if (isRemapped(userns)) await copyLayersForMapping(record.layers.map((l) => this.store.layers.diffDir(l)), dir, userns);
    const resolv = resolvConf(readOr("/etc/resolv.conf", ""), network as NetworkMode, opts.dns, record.hostConfig.dnsSearch, record.hostConfig.dnsOptions);
    // No resolver reachable from the namespace (only loopback ones on the host): the network
    // helper answers at its DNS address and forwards to the host's resolver.
    record.hostConfig.dnsForward = helper !== undefined && !/^\s*nameserver\s/m.test(resolv);
    writeFileSync(path.join(dir, "resolv.conf"), helper && record.hostConfig.dnsForward ? `${resolv}nameserver ${forwardedDns(helper)}\n` : resolv);
    const writeHosts = (ip?: string): void => writeFileSync(path.join(dir, "hosts"), hostsFile(hostname, ip) + opts.extraHosts.map((l) => `${l}\n`).join(""));
    if (opts.join) {
      const endpoint = this.networking.endpoint(record, opts.join);
      record.hostConfig.networks = { [opts.join.network.Name]: endpoint };
      writeHosts(endpoint.ipAddress);
      faultPoint("create:dir-made");
      this.records.save(record);
      this.networking.announce(record);
    } else {
      writeHosts();
      faultPoint("create:dir-made");
      this.records.save(record);
    }
  }

  /**
   * The container's cgroup with its resource limits, made before each start; the plan then
   * defers the cgroup namespace until the child is in it.
   */
  private prepareLimits(record: ContainerRecord, plan: LaunchPlan): string | undefined {
    const cgroup = prepareCgroup(record.id, securityOf(record).resources);
    if (cgroup) {
      plan.cloneFlags &= ~CLONE.NEWCGROUP;
      // Into its cgroup first, then a namespace of its own there (none with --cgroupns host).
      plan.unshareCgroup = record.hostConfig.cgroupnsMode !== "host";
    }
    return cgroup;
  }

  /** The generated /etc files a container gets: its own, or those of the container whose network it joins (as Docker). */
  private etcFiles(record: ContainerRecord): { hosts: string; resolvConf: string; hostname: string } {
    const dir = this.records.containerDir(sharedContainer(record.hostConfig.networkMode) ?? record.id);
    return { hosts: path.join(dir, "hosts"), resolvConf: path.join(dir, "resolv.conf"), hostname: path.join(dir, "hostname") };
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
      etcFiles: this.etcFiles(record),
      ttyGroupMapped: maxContainerId(mapping, "gid", mode) >= 5,
      ...(record.hostConfig.shmSize !== undefined ? { shmSize: record.hostConfig.shmSize } : {}),
      extraMounts: [
        // keep-id's generated /etc/passwd and /etc/group, when the image lacks the user.
        ...["passwd", "group"]
          .filter((f) => existsSync(path.join(dir, f)))
          .map((f): PlanMount => ({ kind: "bind", source: path.join(dir, f), target: `/etc/${f}`, flags: 0, create: "file", recursive: false })),
        ...planMounts(record.hostConfig.mounts ?? [], this.volumes),
        ...(record.hostConfig.init
          ? [{ kind: "bind", source: record.hostConfig.init, target: INIT_TARGET, flags: MS.RDONLY, create: "file", recursive: false } satisfies PlanMount]
          : []),
        ...(record.hostConfig.devices ?? []).map(
          (d): PlanMount => ({ kind: "bind", source: d.pathOnHost, target: d.pathInContainer, flags: 0, create: "file", recursive: false }),
        ),
      ],
    });
    const security = securityOf(record);
    confineFilesystem(fs, security);
    const envPath = record.config.env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
    const plan: LaunchPlan = {
      cloneFlags: namespaceFlags(network),
      hostname: record.config.hostname,
      ...fs,
      argv: record.hostConfig.init ? initArgv([record.path, ...record.args]) : [record.path, ...record.args],
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
    if (record.hostConfig.sysctls) {
      // kernel.domainname is set by setdomainname(2): its /proc/sys file is the host root's.
      const { domainname: sysctlDomain, ...others } = Object.fromEntries(Object.entries(record.hostConfig.sysctls).map(([k, v]) => [k.replace(/\//g, ".") === "kernel.domainname" ? "domainname" : k, v]));
      plan.sysctls = sysctlWrites(others);
      if (sysctlDomain !== undefined) plan.domainname = sysctlDomain;
    }
    if (record.config.domainname) plan.domainname = record.config.domainname;
    // --oom-score-adj: the child's own, inherited by the command it becomes.
    if (record.hostConfig.oomScoreAdj !== undefined) plan.sysctls = [...(plan.sysctls ?? []), ["/proc/self/oom_score_adj", String(record.hostConfig.oomScoreAdj)]];
    if (record.hostConfig.cgroupnsMode === "host") plan.cloneFlags &= ~CLONE.NEWCGROUP;
    applyNamespaceModes(plan, record.hostConfig, (id, kind) => {
      const other = this.get(id);
      // Docker's words (scripts look for them): "cannot join network of a non running container: NAME".
      const notRunning = (): TsrunError => new TsrunError(`cannot join ${JOINED_WORD[kind]} of a non running container: ${other.name}`);
      if (other.state.status !== "running" || other.state.pid <= 0) throw notRunning();
      // Its init has ended and its monitor has not recorded it yet, or starts the next one.
      if (!existsSync(`/proc/${other.state.pid}/ns/${kind === "network" ? "net" : kind}`)) {
        if ((other.hostConfig.restartPolicy?.name ?? "no") !== "no") throw new TsrunError(`container ${other.name} is restarting, wait until the container is running`);
        throw notRunning();
      }
      return other.state.pid;
    });
    return plan;
  }

  /**
   * Starts a created container attached to this process's terminal or streams (or to stdio: fds
   * for 0, 1, 2), in the network run() prepared for it if any (startEarlyNetwork), which this
   * call takes over: closed or handed to stopNetwork whatever happens.
   */
  async start(record: ContainerRecord, stdio?: [number, number, number], early?: EarlyNetwork): Promise<LaunchedProcess> {
    const tty = record.config.tty
      ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 }
      : undefined;
    const io = tty ? { tty, stdinNull: false } : { stdinNull: !record.config.openStdin, ...(stdio ? { stdio } : {}) };
    let pendingSlirp = early?.slirp;
    let plan: LaunchPlan;
    let cgroup: string | undefined;
    let conn: HolderConnection | undefined;
    let pairs: ReturnType<ContainerNetworks["networksOf"]>;
    try {
      plan = this.plan(record, io);
      cgroup = this.prepareLimits(record, plan);
      if (early) {
        // The holder's user namespace, and the network namespace slirp4netns is configuring.
        conn = early.conn;
        pairs = [];
        plan.nest = holderUserNamespace(conn);
        plan.cloneFlags &= ~(CLONE.NEWUSER | CLONE.NEWNET);
        plan.share = [...(plan.share ?? []), `/proc/${process.pid}/fd/${early.netFd}`];
      } else {
        ({ conn, pairs } = await this.holdNetworks(record, plan));
      }
    } catch (err) {
      if (early) cancelEarlyNetwork(early);
      throw err;
    }
    let proc: LaunchedProcess;
    // The network helpers (slirp4netns, pasta, tsrun-forward: ~20 ms) and a user-defined
    // network's link start while the child sets up its root; the command waits for both. Only
    // in the holder's user namespace: in one of its own the child becomes root there first,
    // which makes its /proc/PID/ns files unreadable to helpers running as the user.
    const network = early ? { commands: [] } : this.foregroundNetwork(record);
    if (plan.nest && (network.commands.length > 0 || network.slirp || pairs.length > 0 || early)) plan.holdBeforeExec = true;
    try {
      proc = await launchPlan(
        plan,
        this.usernsOf(record),
        (pid) => {
          if (cgroup) {
            this.cgroups.set(record.id, cgroup);
            writeFileSync(path.join(cgroup, "cgroup.procs"), `${pid}\n`);
          }
        },
        (pid) => {
          if (conn) ContainerNetworks.attach(conn, pid, pairs);
          this.startNetwork(network.commands, pid);
          if (network.slirp) {
            this.slirps.set(record.id, startSlirp4netns(network.slirp.path, network.slirp.ifname, pid, this.records.containerDir(record.id)));
          }
          if (pendingSlirp) {
            // Started before the record was written: usually ready by now.
            const slirp = pendingSlirp;
            pendingSlirp = undefined;
            this.slirps.set(record.id, awaitSlirp4netns(slirp, this.records.containerDir(record.id)));
          }
        },
      );
    } catch (err) {
      if (pendingSlirp) cancelSlirp4netns(pendingSlirp);
      removeCgroup(cgroup);
      closeHolder(conn);
      throw err;
    } finally {
      // The container's processes hold its network namespace now (or it never started).
      if (early) closeSync(early.netFd);
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
   * A connection to the holder (kept while the container lives) whose user namespace the
   * container is started in, and its user-defined networks, which the holder connects. None for
   * a user namespace of the container's own (root, a single id, keep-id, nomap).
   */
  private async holdNetworks(record: ContainerRecord, plan: LaunchPlan): Promise<{ conn?: HolderConnection; pairs: ReturnType<ContainerNetworks["networksOf"]> }> {
    const pairs = this.networking.networksOf(record);
    const conn = pairs.length > 0 ? await connectHolder(this.store.paths.runRoot) : await holderForLaunch(this.usernsOf(record), this.store.paths.runRoot);
    if (conn) {
      plan.nest = holderUserNamespace(conn);
      plan.cloneFlags &= ~CLONE.NEWUSER;
    }
    return { conn, pairs };
  }

  /**
   * A foreground run's network helpers: slirp4netns started directly when it has no ports to
   * publish (startSlirp4netns), else the helper commands as the monitor runs them.
   */
  private foregroundNetwork(record: ContainerRecord): { commands: string[][]; slirp?: { path: string; ifname: string } } {
    const options = this.helperOptions(record);
    return options ? foregroundHelpers(options) : { commands: [] };
  }

  /**
   * The helper commands of a container with outbound access or published ports (the child's pid
   * goes after each program). On user-defined networks eth0 is the network's: the helper's interface
   * is tap0, with the default route.
   */
  private networkCommands(record: ContainerRecord): string[][] {
    const options = this.helperOptions(record);
    return options ? helperCommands(options) : [];
  }

  /** What the network helpers of a container need, or undefined when it has none. */
  private helperOptions(record: ContainerRecord): HelperOptions | undefined {
    const h = record.hostConfig;
    const userNetworks = Object.keys(h.networks ?? {}).length > 0;
    if (h.networkMode !== "private" && !(userNetworks && this.networking.outbound(record))) return undefined;
    return {
      helper: h.networkHelper ?? "pasta",
      ports: h.portBindings ?? [],
      portHandler: h.portHandler,
      dnsForward: h.dnsForward ?? false,
      dir: this.records.containerDir(record.id),
      ifname: userNetworks ? "tap0" : undefined,
    };
  }

  /** Connects a waiting child's network namespace (foreground runs; the monitor does its own). */
  private startNetwork(commands: string[][], pid: number): void {
    // One after the other, in order: a failure stops the start before the next one runs.
    for (const [program, ...args] of commands) {
      const [r] = native().runTools([[program as string, String(pid), ...args]]);
      if (!r || r.error) throw new TsrunError(r?.error ?? `${program} did not run`);
      if (r.code !== 0 || r.signal !== 0) throw new TsrunError(explainHelperFailure(program as string, r.stderr));
    }
  }

  /**
   * A foreground run's network, begun before its record is written: a network namespace from
   * the holder and slirp4netns configuring it (~10 ms) while the record is written and the
   * container set up; start() has the container join it. Only for the default private network
   * without published ports, in the holder's user namespace, sharing no namespace of another
   * container; undefined otherwise (start() then does it all, as for `start`).
   */
  private async startEarlyNetwork(record: ContainerRecord): Promise<EarlyNetwork | undefined> {
    const h = record.hostConfig;
    if (h.networkMode !== "private" || Object.keys(h.networks ?? {}).length > 0) return undefined;
    if ([h.pidMode, h.ipcMode, h.utsMode].some((mode) => sharedContainer(mode) !== undefined)) return undefined;
    const network = this.foregroundNetwork(record);
    if (!network.slirp || network.commands.length > 0) return undefined;
    const conn = await holderForLaunch(this.usernsOf(record), this.store.paths.runRoot);
    if (!conn) return undefined;
    let netFd: number | undefined;
    try {
      netFd = holderNetworkNamespace(conn);
      if (netFd === undefined) {
        closeHolder(conn);
        return undefined;
      }
      const slirp = spawnSlirp4netns(network.slirp.path, network.slirp.ifname, { netnsPath: `/proc/${process.pid}/fd/${netFd}`, usernsPath: `/proc/${conn.pid}/ns/user` });
      return { conn, netFd, slirp };
    } catch (err) {
      if (netFd !== undefined) closeSync(netFd);
      closeHolder(conn);
      throw err;
    }
  }

  /** Stops the network helpers of a foreground run once the container has exited. */
  stopNetwork(record: ContainerRecord): void {
    closeHolder(this.holds.get(record.id));
    this.holds.delete(record.id);
    const slirp = this.slirps.get(record.id);
    if (slirp) {
      // Its exit pipe closed, it ends; reaped, so that a program running many containers
      // through the library collects no zombies.
      closeSync(slirp.exitFd);
      void native().waitPid(slirp.pid).catch(() => undefined);
      this.slirps.delete(record.id);
    }
    // With published ports, a bounded wait until they are gone, so the ports are free when we return.
    stopNetworkHelpers(this.records.containerDir(record.id), (record.hostConfig.portBindings ?? []).length > 0 ? 1000 : 0);
  }

  /**
   * Starts a created (or exited) container under a tsrun-monitor that outlives this process:
   * the monitor holds the output, writes ctr.log and the exit file. Resolves once the command
   * runs, or fails with 125/126/127 like a foreground start.
   */
  async startDetached(record: ContainerRecord, opts: { beforeStart?: () => Promise<void> } = {}): Promise<ContainerRecord> {
    const tty = record.config.tty ? { rows: 24, cols: 80 } : undefined;
    // The monitor sets up stdio itself (pipes, or the pty); without stdin-null (run -i) it keeps
    // the container's stdin open for `attach`.
    const plan = this.plan(record, { ...(tty ? { tty } : {}), stdinNull: !record.config.openStdin });
    const cgroup = this.prepareLimits(record, plan);
    const { conn, pairs } = await this.holdNetworks(record, plan);
    try {
      return await this.spawnMonitor(record, plan, { cgroup, conn, pairs, beforeStart: opts.beforeStart });
    } finally {
      // The monitor has its own copy of the connection.
      closeHolder(conn);
    }
  }

  private async spawnMonitor(
    record: ContainerRecord,
    plan: LaunchPlan,
    opts: { cgroup: string | undefined; conn: HolderConnection | undefined; pairs: ReturnType<ContainerNetworks["networksOf"]>; beforeStart: (() => Promise<void>) | undefined },
  ): Promise<ContainerRecord> {
    const dir = this.records.containerDir(record.id);
    writeFileSync(path.join(dir, "plan.bin"), encodePlan(plan));
    // In the holder's user namespace there are no id maps to write.
    const prestart = [
      plan.nest ? "" : idMapFile(idMapSteps(currentMapping(), this.usernsOf(record))),
      opts.cgroup ? `cgroup ${opts.cgroup}\n` : "",
      ...ContainerNetworks.attachRequests(opts.pairs).map((r) => `netns ${r}\n`),
      ...this.networkCommands(record).map((cmd) => `tool ${cmd.join(" ")}\n`),
    ];
    writeFileSync(path.join(dir, "prestart"), prestart.join(""));
    clearRunFiles(dir);
    // --log-driver none: the monitor still reads the output (attach shows it) but keeps no log.
    if (record.hostConfig.logDriver === "none") writeFileSync(path.join(dir, "log-none"), "");
    const rotation = logRotation(record.hostConfig.logOptions ?? {});
    if (rotation) writeFileSync(path.join(dir, "log-rotate"), `${rotation.maxSize} ${rotation.maxFile}\n`);
    // --log-opt labels/env: the attributes every record carries, as JSON the monitor inserts.
    const attrs = logAttributes(record.hostConfig.logOptions ?? {}, record.config.labels, record.config.env);
    if (attrs) writeFileSync(path.join(dir, "log-attrs"), attrs);
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
      removeFile(path.join(dir, "health.bin"));
    }
    if (record.hostConfig.autoRemove) {
      const cli = path.join(packageRoot(), "bin", "tsrun");
      writeFileSync(path.join(dir, "autoremove"), [process.execPath, cli, "rm", "--force", "--volumes", record.id].join("\n") + "\n");
    }
    const addon = native();
    const [readyRead, readyWrite] = addon.pipe();
    let monitorPid: number;
    try {
      monitorPid = addon.spawnDetached(monitorPath(), [dir], readyWrite, opts.conn?.fd ?? -1);
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
    this.refresh(record);
    return record;
  }

  /** Every container, states up to date. */
  list(): ContainerRecord[] {
    return this.records.list().filter((r) => this.refresh(r));
  }

  /** Brings a record's state up to date and saves it; false when the container was removed meanwhile. */
  private refresh(record: ContainerRecord): boolean {
    if (!refreshState(record, this.records.containerDir(record.id))) return true;
    try {
      this.records.save(record);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
  }

  /**
   * Removes a container: under the lock its dir is renamed aside and its name released, so it
   * is gone at once even if deleting its files (inside the user namespace) is interrupted; then
   * the files, and with volumes, its anonymous volumes.
   */
  async remove(record: ContainerRecord, opts: { volumes?: boolean; underLease?: Lease; held?: HeldLock } = {}): Promise<void> {
    const takeOut = (): string => {
      // Its peers forget its name first: its address is free once the record is gone.
      if (Object.keys(record.hostConfig.networks ?? {}).length > 0) this.networking.withdraw(record);
      // Those who wait for it (`wait`, `attach`, `stop`) may not look before it is gone.
      if (record.state.status === "exited" && !record.intermediate && existsSync(this.records.containerDir(record.id))) this.records.rememberExit(record);
      const dir = this.records.detach(record.id);
      faultPoint("rm:detached");
      this.records.releaseName(record.name, record.id);
      return dir;
    };
    // underLease: the caller's live lease names the container (an intermediate one), so a kill
    // mid-removal is swept like any other; no lease of its own means nothing to write, so even
    // a full disk cannot keep the container.
    const removeFiles = (doomed: string): Promise<void> => this.store.removeTree(doomed);
    // held: the caller's store lock (system check --repair), which this runs under.
    if (opts.underLease) await removeFiles(await this.store.lock(takeOut, opts.held));
    else await this.store.locked(`rm ${record.name}`, "containers", takeOut, removeFiles, opts.held);
    if (opts.volumes) {
      for (const m of record.hostConfig.mounts ?? []) {
        if (m.type === "volume" && m.anonymous && this.volumes.exists(m.source)) await this.volumes.remove(m.source, (v) => this.volumeUsers(v), opts.held);
      }
    }
  }

  /** Creates and starts a container under its own monitor; returns once it runs. */
  async runDetached(opts: CreateOptions): Promise<ContainerRecord> {
    const { record, lease } = await this.createLeased(opts);
    try {
      return await this.startDetached(record);
    } catch (err) {
      await this.remove(record);
      throw err;
    } finally {
      lease.release();
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
    let early: EarlyNetwork | undefined;
    let created: { record: ContainerRecord; lease: Lease };
    try {
      created = await this.createLeased(opts, async (r) => {
        early = await this.startEarlyNetwork(r);
      });
    } catch (err) {
      if (early) cancelEarlyNetwork(early);
      throw err;
    }
    const { record, lease } = created;
    const relay = new SignalRelay();
    // Every container keeps what it prints for `tsrun logs` (and `attach` from elsewhere, which
    // follows it), as Docker's does, --rm ones too while they run: its output passes through us
    // (pipes, or the pty we relay anyway). Copying costs a --rm run no module load (copyOutput).
    const logOptions = record.hostConfig.logOptions ?? {};
    const log =
      record.hostConfig.logDriver === "none"
        ? undefined
        : new JsonFileLog(path.join(this.records.containerDir(record.id), "ctr.log"), logRotation(logOptions), logAttributes(logOptions, record.config.labels, record.config.env));
    const pipes = log && !record.config.tty ? { out: native().pipe(), err: native().pipe() } : undefined;
    let proc: LaunchedProcess;
    try {
      proc = await this.start(record, pipes ? [0, pipes.out[1], pipes.err[1]] : undefined, early);
    } catch (err) {
      relay.dispose();
      if (pipes) for (const [r] of [pipes.out, pipes.err]) closeSync(r);
      log?.close();
      // A container that never started leaves nothing behind.
      this.stopNetwork(record);
      await this.remove(record);
      throw err;
    } finally {
      if (pipes) for (const [, w] of [pipes.out, pipes.err]) closeSync(w);
      lease.release();
    }
    const tees = pipes && log ? [copyOutput(pipes.out[0], 1, "stdout", log), copyOutput(pipes.err[0], 2, "stderr", log)] : [];
    let status: number;
    try {
      status = await attachForeground(proc, { interactive: opts.interactive ?? false, relay, ...(log ? { log } : {}) });
      // What the container wrote before it exited; bounded, as for the pty: a process that
      // escaped the container's pid namespace with a copy of the pipe must not hang us.
      await Promise.race([Promise.all(tees.map((t) => t.ended)), new Promise((r) => setTimeout(r, 2000).unref())]);
    } finally {
      for (const t of tees) t.stop();
      log?.close();
      this.stopNetwork(record);
      removeCgroup(this.cgroups.get(record.id));
      this.cgroups.delete(record.id);
    }
    record.state = { ...record.state, status: "exited", pid: 0, exitCode: status, finishedAt: new Date().toISOString() };
    if (record.hostConfig.autoRemove && !isRestarting(this.records.containerDir(record.id))) {
      await this.remove(record, { volumes: true }).catch((err: unknown) => {
        // Removed meanwhile (`rm -f` from elsewhere): nothing left to do.
        if (!(err instanceof NotFoundError)) throw err;
      });
    } else {
      try {
        this.records.save(record);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    return status;
  }

}

/** What startEarlyNetwork prepared for a foreground run; start() takes it over. */
interface EarlyNetwork {
  /** The holder connection the container is started through (kept for its life, as holdNetworks' is). */
  conn: HolderConnection;
  /** The network namespace (close-on-exec), joined by the container at its start. */
  netFd: number;
  slirp: SlirpStart;
}

/** Undoes startEarlyNetwork for a container that was never created. */
function cancelEarlyNetwork(early: EarlyNetwork): void {
  cancelSlirp4netns(early.slirp);
  closeSync(early.netFd);
  closeHolder(early.conn);
}

/** One --expose value: PORT, PORT/PROTO or FIRST-LAST[/PROTO], as "PORT/PROTO" keys. */
function parseExpose(spec: string): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(spec);
  const first = Number(m?.[1]);
  const last = m?.[2] === undefined ? first : Number(m[2]);
  if (!m || first < 1 || last > 65535 || last < first) throw new TsrunError(`invalid --expose "${spec}": expected PORT[/PROTO] or a range FIRST-LAST[/PROTO]`);
  const proto = m[3] ?? "tcp";
  const out: string[] = [];
  for (let p = first; p <= last; p++) out.push(`${p}/${proto}`);
  return out;
}

/** One --group-add value: a gid, or a name from the container's /etc/group (as Docker resolves it). */
function addedGroup(value: string, groups: ReturnType<typeof parseGroup>, maxGid: number): number {
  let gid: number;
  if (/^\d+$/.test(value)) {
    gid = Number(value);
  } else {
    const entry = groups.find((g) => g.name === value);
    if (!entry) throw new TsrunError(`unable to find group ${value}: no matching entries in group file`);
    gid = entry.gid;
  }
  if (gid > maxGid) throw new TsrunError(`--group-add ${value}: gid ${gid} is not mapped in the container's user namespace (ids up to ${maxGid})`);
  return gid;
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
