// `tsrun run` and `tsrun create`: the container flags they share, and run itself.
import { Option, type Command } from "commander";
import { Tsrun } from "../tsrun.js";
import type { CreateOptions } from "../container/run.js";
import { logAttributes, logRotation } from "../container/output-log.js";
import { TsrunError } from "../errors.js";
import { hostPlatform } from "../image/types.js";
import { isHostPlatform } from "../image/platform-spec.js";
import { addResourceOptions, collect, parseBoolFlag, terminalSelect } from "./util.js";
import { parseMemory } from "../container/security/options.js";
import { readLabelFiles } from "../container/spec.js";
import { writeOut } from "./stdout.js";

export interface CreateFlags {
  interactive: boolean;
  tty: boolean;
  name?: string;
  env: string[];
  envFile: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  readOnly: boolean;
  pid?: string;
  ipc?: string;
  uts?: string;
  network: string;
  net?: string;
  networkAlias: string[];
  link: string[];
  ip?: string;
  publish: string[];
  publishAll: boolean;
  dns: string[];
  dnsSearch: string[];
  dnsOption: string[];
  expose: string[];
  labelFile: string[];
  addHost: string[];
  label: string[];
  volume: string[];
  mount: string[];
  tmpfs: string[];
  volumesFrom: string[];
  rm: boolean;
  restart?: string;
  init: boolean;
  groupAdd: string[];
  shmSize?: string;
  device: string[];
  sysctl: string[];
  domainname?: string;
  oomScoreAdj?: string;
  annotation: string[];
  cgroupns?: string;
  healthCmd?: string;
  healthInterval?: string;
  healthTimeout?: string;
  healthRetries?: string;
  healthStartPeriod?: string;
  healthcheck: boolean;
  pull: "missing" | "always" | "never";
  quiet: boolean;
  tlsVerify?: string;
  capAdd: string[];
  capDrop: string[];
  privileged: boolean;
  securityOpt: string[];
  ulimit: string[];
  pidsLimit?: string;
  memory?: string;
  cpus?: string;
  cpuShares?: string;
  cpuPeriod?: string;
  cpuQuota?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  memorySwap?: string;
  memoryReservation?: string;
  userns?: string;
  platform?: string;
  cidfile?: string;
  stopSignal?: string;
  stopTimeout?: string;
  logDriver?: string;
  logOpt: string[];
  disableContentTrust?: string | boolean;
  memorySwappiness?: string;
  oomKillDisable?: boolean;
  kernelMemory?: string;
  runtime?: string;
  volumeDriver?: string;
}

/** json-file's options (Docker's names); compress and tag are taken but not applied. */
const JSON_FILE_LOG_OPTS = ["max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag"];

/**
 * --log-driver and --log-opt: containers log to Docker's json-file log (also under Podman's
 * k8s-file name for it), or, with `none`, keep no log at all. max-size and max-file rotate it as
 * Docker does, labels, labels-regex, env and env-regex add attributes to its records; compress
 * and tag are not applied, which is said once rather than failing scripts that pass them.
 */
function checkLogFlags(o: CreateFlags): { driver: "json-file" | "none"; options: Record<string, string> } {
  if (o.logDriver !== undefined && !["json-file", "k8s-file", "none"].includes(o.logDriver)) {
    throw new TsrunError(`--log-driver ${o.logDriver} is not supported: containers log to a json-file log (tsrun logs reads it), or none`);
  }
  if (o.logDriver === "none") {
    if (o.logOpt.length > 0) throw new TsrunError(`invalid --log-opt "${o.logOpt[0]}": the none log driver takes no options`);
    return { driver: "none", options: {} };
  }
  const options: Record<string, string> = {};
  const ignored: string[] = [];
  for (const opt of o.logOpt) {
    const key = opt.split("=", 1)[0] as string;
    if (!opt.includes("=") || !JSON_FILE_LOG_OPTS.includes(key)) throw new TsrunError(`invalid --log-opt "${opt}": json-file takes ${JSON_FILE_LOG_OPTS.join(", ")} (KEY=VALUE)`);
    options[key] = opt.slice(key.length + 1);
    if (key === "compress" || key === "tag") ignored.push(key);
  }
  // Their errors now, not at start.
  logRotation(options);
  logAttributes(options, {}, []);
  if (ignored.length > 0) process.stderr.write(`tsrun: warning: --log-opt ${ignored.join(", ")} not applied: the log is rotated (max-size, max-file) but not compressed or tagged\n`);
  return { driver: "json-file", options };
}

export interface RunFlags extends CreateFlags {
  detach: boolean;
  attach: string[];
  sigProxy: boolean;
  detachKeys: string;
}

/** -a/--attach STDIN|STDOUT|STDERR (any case), as docker/cli validates it. */
function attachedStreams(list: string[]): { stdout: boolean; stderr: boolean } | undefined {
  if (list.length === 0) return undefined;
  const names = list.map((s) => s.toLowerCase());
  for (const [i, n] of names.entries()) {
    if (!["stdin", "stdout", "stderr"].includes(n)) throw new TsrunError(`invalid argument "${list[i]}" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR`);
  }
  return { stdout: names.includes("stdout"), stderr: names.includes("stderr") };
}

export function parseLabels(list: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const l of list) {
    const eq = l.indexOf("=");
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? "" : l.slice(eq + 1);
  }
  return labels;
}

/** The flags `run` and `create` share, with Docker's names. */
export function addContainerOptions(cmd: Command): Command {
  // The cgroup limits come first in help: update shares them (cli/util.ts).
  return addResourceOptions(cmd)
    .helpOption("--help")
    .option("-i, --interactive", "keep standard input open", false)
    .option("-t, --tty", "allocate a pseudo-terminal", false)
    .option("--rm", "remove the container (and its anonymous volumes) when it exits", false)
    .option("--name <name>", "assign a name to the container")
    .option("-e, --env <KEY=VALUE>", "set an environment variable (KEY alone takes the host's)", collect, [])
    .option("--env-file <file>", "read environment variables from a file", collect, [])
    .option("-w, --workdir <dir>", "working directory inside the container")
    .option("-u, --user <user[:group]>", "user name or uid, optionally with group")
    .option("--entrypoint <command>", "override the image's ENTRYPOINT")
    .option("-h, --hostname <name>", "container host name")
    .option("--read-only", "mount the root filesystem read-only", false)
    .addOption(
      new Option("--network <mode>", "private (default: own namespace with outbound access), none, host, or a network's name").default("private"),
    )
    .addOption(new Option("--net <mode>", "same as --network").hideHelp())
    .option("--network-alias <alias>", "another name for the container on its network", collect, [])
    .option("--link <name[:alias]>", "add another container of the network to /etc/hosts under an alias", collect, [])
    .option("--ip <address>", "the container's IPv4 address on its network")
    .option("-p, --publish <[ip:][hostPort:]containerPort[/proto]>", "publish a container port on the host", collect, [])
    .option("-P, --publish-all", "publish every EXPOSEd port on a free host port", false)
    .option("--dns <ip>", "DNS server for the container", collect, [])
    .option("--dns-search <domain>", "DNS search domain (\".\" for none)", collect, [])
    .option("--dns-option <option>", "resolver option (resolv.conf's options line)", collect, [])
    .option("--expose <port>", "expose a port or a range (PORT[/PROTO]) without publishing it; -P publishes it", collect, [])
    .option("--add-host <name:ip>", "add a line to /etc/hosts: NAME:IP or NAME=IP (ip may be host-gateway)", collect, [])
    .option("-l, --label <KEY=VALUE>", "set a label", collect, [])
    .option("--label-file <file>", "read labels from a file of KEY=VALUE lines", collect, [])
    .option("-v, --volume <spec>", "bind mount HOST:CTR[:ro], named volume NAME:CTR, or anonymous /CTR", collect, [])
    .option("--mount <spec>", "type=bind|volume|tmpfs,source=...,target=...[,readonly]", collect, [])
    .option("--tmpfs <spec>", "tmpfs mount /path[:options]", collect, [])
    .option("--volumes-from <container[:ro|rw]>", "mount the volumes of another container", collect, [])
    .option("--restart <policy>", "restart policy: no, always, unless-stopped, on-failure[:N]")
    .option("--init", "run an init (tini) as PID 1 that reaps zombies and passes signals on", false)
    .option("--group-add <group>", "add a supplementary group (a name from the container's /etc/group, or a gid)", collect, [])
    .option("--pid <mode>", "pid namespace: private, host, or container:NAME")
    .option("--ipc <mode>", "IPC namespace: private, shareable, none, host, or container:NAME")
    .option("--uts <mode>", "UTS namespace: private, host, or container:NAME")
    .option("--shm-size <size>", "size of /dev/shm, e.g. 256m (64m by default)")
    .option("--device <HOST[:CONTAINER][:PERMS]>", "bind a host device node (or every node in a directory) into the container", collect, [])
    .option("--sysctl <KEY=VALUE>", "set a kernel parameter of the container's namespaces (net.*, kernel.shm*, ...)", collect, [])
    .option("--domainname <name>", "the container's NIS domain name")
    .option("--oom-score-adj <n>", "the container's OOM score adjustment, -1000 to 1000 (rootless: only above the user's own)")
    .option("--annotation <KEY=VALUE>", "add an annotation to the container", collect, [])
    .option("--cgroupns <mode>", "cgroup namespace: private (default) or host")
    .option("--health-cmd <command>", "command to run to check health")
    .option("--health-interval <duration>", "time between health checks (e.g. 30s)")
    .option("--health-timeout <duration>", "maximum time a check may run")
    .option("--health-retries <n>", "consecutive failures needed to report unhealthy")
    .option("--health-start-period <duration>", "start period during which failures do not count")
    .option("--no-healthcheck", "disable any container-specified HEALTHCHECK")
    // Flags of docker run that have no effect here, taken so that Docker command lines run:
    // content trust is not checked (Docker's default), cgroup v2 has no swappiness, OOM-kill
    // switch or kernel-memory limit (Docker ignores them there too, with a warning), tsrun is its
    // own runtime, and volumes are local.
    .addOption(new Option("--disable-content-trust", "accepted: image signatures are not verified").hideHelp())
    .addOption(new Option("--memory-swappiness <n>", "accepted, not applied (cgroup v2 has none)").hideHelp())
    .addOption(new Option("--oom-kill-disable", "accepted, not applied (cgroup v2 has none)").hideHelp())
    .addOption(new Option("--kernel-memory <bytes>", "accepted, not applied (deprecated by Docker)").hideHelp())
    .addOption(new Option("--runtime <name>", "accepted, not applied: tsrun runs containers itself").hideHelp())
    .addOption(new Option("--volume-driver <driver>", "volume driver: local only").hideHelp())
    .option("--cap-add <capability>", "add a Linux capability (or ALL)", collect, [])
    .option("--cap-drop <capability>", "drop a Linux capability (or ALL)", collect, [])
    .option("--privileged", "every capability, no seccomp filter, no masked paths, the host's devices", false)
    .option("--security-opt <option>", "no-new-privileges, seccomp=unconfined|PROFILE.json, mask=PATHS, unmask=PATHS", collect, [])
    .option("--ulimit <name=soft[:hard]>", "set a resource limit (nofile, nproc, core, ...)", collect, [])
    .option("--userns <mode>", "user namespace: private (default), host, nomap, keep-id[:uid=N,gid=N]")
    .addOption(new Option("--pull <policy>", "pull the image: missing, always or never").choices(["missing", "always", "never"]).default("missing"))
    .option("-q, --quiet", "suppress the pull output", false)
    .option("--tls-verify <bool>", "verify the registry's TLS certificate when pulling (true or false)")
    .option("--platform <os/arch>", "the image's platform (only the host's)")
    .option("--cidfile <file>", "write the container ID to this file")
    .option("--stop-signal <signal>", "signal to stop the container (default: the image's STOPSIGNAL, else SIGTERM)")
    .option("--stop-timeout <seconds>", "seconds stop waits before SIGKILL (default 10)")
    .option("--log-driver <driver>", "json-file, the only one (the log tsrun logs reads)")
    .option("--log-opt <KEY=VALUE>", "json-file options: max-size, max-file, labels, labels-regex, env, env-regex (compress, tag: accepted, not applied)", collect, [])
    .passThroughOptions();
}

/**
 * --network MODE[:port_handler=tsrun|pasta]. Docker's "bridge" is the private network through
 * whichever helper is installed (slirp4netns first); Podman's "pasta" and "slirp4netns" are the
 * private network through that helper. Anything else names a user-defined network.
 */
function networkMode(spec: string): Pick<CreateOptions, "network" | "networkHelper" | "portHandler"> {
  if (spec.startsWith("ns:")) throw new TsrunError(`--network ${spec} is not supported`);
  // Resolved to the container's ID at create.
  if (spec.startsWith("container:")) return { network: spec };
  const colon = spec.indexOf(":");
  const mode = colon < 0 ? spec : spec.slice(0, colon);
  let portHandler: "tsrun" | "pasta" | undefined;
  for (const opt of colon < 0 ? [] : spec.slice(colon + 1).split(",")) {
    const m = /^port_handler=(tsrun|pasta)$/.exec(opt);
    if (!m) throw new TsrunError(`invalid --network option "${opt}": expected port_handler=tsrun or port_handler=pasta`);
    portHandler = m[1] as "tsrun" | "pasta";
  }
  if (mode === "") throw new TsrunError(`invalid --network "${spec}"`);
  if (mode === "pasta" || mode === "slirp4netns") return { network: "private", networkHelper: mode, portHandler };
  if (mode === "bridge" || mode === "default") return { network: "private", portHandler };
  return { network: mode, portHandler };
}

export function createOptions(image: string, command: string[], o: CreateFlags): CreateOptions {
  if (o.name === "") throw new TsrunError('invalid container name ""');
  if (o.platform !== undefined) {
    const host = hostPlatform();
    let ok: boolean;
    try {
      ok = isHostPlatform(o.platform);
    } catch (err) {
      throw new TsrunError(`--platform ${o.platform}: ${(err as Error).message}`);
    }
    if (!ok) throw new TsrunError(`--platform ${o.platform}: only the host's platform (${host.os}/${host.architecture}) can run here`);
  }
  const log = checkLogFlags(o);
  checkIgnoredFlags(o);
  if (o.stopTimeout !== undefined && !/^-?\d+$/.test(o.stopTimeout)) throw new TsrunError(`invalid --stop-timeout "${o.stopTimeout}": a number of seconds`);
  return {
    image,
    args: command,
    name: o.name,
    env: o.env,
    envFiles: o.envFile,
    workdir: o.workdir,
    user: o.user,
    entrypoint: o.entrypoint,
    hostname: o.hostname,
    readOnly: o.readOnly,
    autoRemove: o.rm,
    ...(log.driver === "none" ? { logDriver: log.driver } : {}),
    ...(Object.keys(log.options).length > 0 ? { logOptions: log.options } : {}),
    tty: o.tty,
    interactive: o.interactive,
    ...networkMode(o.net ?? o.network),
    namespaces: { pid: o.pid, ipc: o.ipc, uts: o.uts },
    networkAliases: o.networkAlias,
    links: o.link,
    ip: o.ip,
    publish: o.publish,
    publishAll: o.publishAll,
    dns: o.dns,
    dnsSearch: o.dnsSearch,
    dnsOptions: o.dnsOption,
    expose: o.expose,
    addHosts: o.addHost,
    labels: parseLabels([...readLabelFiles(o.labelFile), ...o.label]),
    volumes: o.volume,
    mounts: o.mount,
    tmpfs: o.tmpfs,
    volumesFrom: o.volumesFrom,
    restart: o.restart,
    init: o.init,
    groupAdd: o.groupAdd,
    devices: o.device,
    sysctls: o.sysctl,
    domainname: o.domainname,
    oomScoreAdj: parseOomScoreAdj(o.oomScoreAdj),
    annotations: o.annotation,
    cgroupns: o.cgroupns,
    ...(o.shmSize !== undefined ? { shmSize: parseShmSize(o.shmSize) } : {}),
    cidFile: o.cidfile,
    stopSignal: o.stopSignal,
    stopTimeout: o.stopTimeout === undefined ? undefined : Number(o.stopTimeout),
    security: {
      capAdd: o.capAdd,
      capDrop: o.capDrop,
      privileged: o.privileged,
      securityOpt: o.securityOpt,
      ulimits: o.ulimit,
      pidsLimit: o.pidsLimit,
      memory: o.memory,
      cpus: o.cpus,
      cpuShares: o.cpuShares,
      cpuPeriod: o.cpuPeriod,
      cpuQuota: o.cpuQuota,
      cpusetCpus: o.cpusetCpus,
      cpusetMems: o.cpusetMems,
      memorySwap: o.memorySwap,
      memoryReservation: o.memoryReservation,
      userns: o.userns,
    },
    health: {
      cmd: o.healthCmd,
      interval: o.healthInterval,
      timeout: o.healthTimeout,
      retries: o.healthRetries === undefined ? undefined : Number(o.healthRetries),
      startPeriod: o.healthStartPeriod,
      disable: !o.healthcheck,
    },
  };
}

/** --pull: fetch the image first when asked to, or when it is missing (as Docker does). */
export async function pullIfNeeded(image: string, o: CreateFlags): Promise<void> {
  const t = new Tsrun();
  if (o.pull === "never") return;
  if (o.pull === "missing" && t.store.images.find(image)) return;
  if (o.tlsVerify !== undefined && o.tlsVerify !== "true" && o.tlsVerify !== "false") throw new TsrunError(`invalid --tls-verify "${o.tlsVerify}": true or false`);
  // The progress printer comes with the registry client: loaded only when there is a pull.
  const { printer } = await import("./registry.js");
  const progress = printer(o.quiet);
  try {
    await t.pull({
      reference: image,
      tlsVerify: o.tlsVerify === undefined ? undefined : o.tlsVerify === "true",
      listener: progress,
      selectCandidate: terminalSelect(),
      // A host spelling other than the default (amd64/v2, x86_64...) picks an index entry as pull --platform does.
      ...(o.platform !== undefined ? { platform: o.platform } : {}),
    });
  } catch (err) {
    const reason = (err as Error).message;
    // One line: what was asked for, and why it could not be had.
    throw new TsrunError(o.pull === "missing" ? `${image}: image not known locally, and pulling it failed: ${reason}` : reason);
  } finally {
    progress.finish();
  }
}

/** docker run's flags without effect here: a warning for those that ask for something. */
function checkIgnoredFlags(o: CreateFlags): void {
  if (o.volumeDriver !== undefined && o.volumeDriver !== "local") throw new TsrunError(`--volume-driver ${o.volumeDriver} is not supported: volumes are local`);
  if (o.memorySwappiness !== undefined && !/^(-1|\d{1,2}|100)$/.test(o.memorySwappiness)) throw new TsrunError(`invalid --memory-swappiness "${o.memorySwappiness}": -1 or 0 to 100`);
  const ignored = [
    ...(o.memorySwappiness !== undefined && o.memorySwappiness !== "-1" ? ["--memory-swappiness"] : []),
    ...(o.oomKillDisable ? ["--oom-kill-disable"] : []),
    ...(o.kernelMemory !== undefined ? ["--kernel-memory"] : []),
    ...(o.runtime !== undefined ? ["--runtime"] : []),
  ];
  if (ignored.length > 0) process.stderr.write(`tsrun: warning: ${ignored.join(", ")} not applied: cgroup v2 has no swappiness, OOM-kill switch or kernel-memory limit, and tsrun is its own runtime\n`);
}

/** --oom-score-adj: an integer from -1000 to 1000, as Docker checks it. */
function parseOomScoreAdj(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^-?\d+$/.test(text) || n < -1000 || n > 1000) throw new TsrunError(`invalid --oom-score-adj "${text}": an integer from -1000 to 1000`);
  return n;
}

/** --shm-size: a size as Docker takes it (512m, 1g, bytes without a unit), more than 0. */
export function parseShmSize(text: string): number {
  const bytes = parseMemory(text, "--shm-size");
  if (bytes <= 0) throw new TsrunError(`invalid --shm-size "${text}": must be greater than 0`);
  return bytes;
}

export async function runCommand(image: string, command: string[], o: RunFlags): Promise<number> {
  const opts = createOptions(image, command, o);
  await pullIfNeeded(image, o);
  if (o.rm && o.restart && o.restart !== "no") throw new TsrunError("conflicting options: --restart and --rm");
  const streams = attachedStreams(o.attach);
  if (o.detach && streams) throw new TsrunError("conflicting options: -a and -d");
  const restarts = o.restart !== undefined && o.restart !== "no";
  if (!o.detach && (streams || !o.sigProxy || restarts)) {
    // Only some streams shown, signals not passed on, or a restart policy: the container runs
    // under its monitor (the streams not shown still reach its log) and outlives this process,
    // as with Docker. With a restart policy this process ends with the first exit, as Docker's
    // attached `run` does, and the monitor restarts the container as the policy says.
    if (opts.tty && opts.interactive && !process.stdin.isTTY) throw new TsrunError("the input device is not a TTY", 1);
    // The attach client (node:net) is loaded only here: a plain `run` does not need it.
    const { startAttached } = await import("../container/attach.js");
    const t = new Tsrun();
    const record = await t.containers.create(opts);
    const status = await startAttached(t.containers, record, { stdin: o.interactive, detachKeys: o.detachKeys, sigProxy: o.sigProxy, closeStdinOnEnd: true, ...(streams ? { streams } : {}) });
    return status === "detached" ? 0 : status;
  }
  if (o.detach) {
    const record = await new Tsrun().runDetached(opts);
    writeOut(`${record.id}\n`);
    return 0;
  }
  return new Tsrun().run(opts);
}

export function registerRun(program: Command): void {
  addContainerOptions(
    program
      .command("run")
      .description("Run a command in a new container")
      .argument("<image>")
      .argument("[command...]")
      .option("-d, --detach", "run in the background and print the container ID", false)
      .option("-a, --attach <stream>", "show only these streams: STDOUT, STDERR (STDIN with -i); the others go to the log", collect, [])
      .option("--sig-proxy [bool]", "pass the signals tsrun receives on to the container (false: the container runs on when tsrun ends)", parseBoolFlag, true)
      .option("--detach-keys <keys>", "the key sequence that detaches (with -a or --sig-proxy=false)", "ctrl-p,ctrl-q"),
  ).action(async (image: string, command: string[], o: RunFlags) => {
    process.exit(await runCommand(image, command, o));
  });

  addContainerOptions(
    program.command("create").description("Create a container without starting it").argument("<image>").argument("[command...]"),
  ).action(async (image: string, command: string[], o: CreateFlags) => {
    // The flags are checked before anything is pulled.
    const opts = createOptions(image, command, o);
    await pullIfNeeded(image, o);
    const record = await new Tsrun().containers.create(opts);
    writeOut(`${record.id}\n`);
  });
}
