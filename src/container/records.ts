// Container records on disk: containers/<id>/container.json, plus names/<name> symlinks whose
// atomic creation makes names unique. Names are claimed and released under the store lock, in
// the same lock hold that saves or removes the record: so a name link whose container has no
// record (or a record with another name) is a leftover of a killed tsrun, and is reclaimed.
// A container leaves the store at once: its dir is renamed to a temporary name, then deleted.
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "../random.js";
import { writeFileAtomic, writeJsonAtomic } from "../store/atomic.js";
import { tempPath } from "../store/temps.js";
import { TsrunError, NotFoundError } from "../errors.js";
import type { MountSpec } from "./volumes.js";
import type { HealthConfig } from "../image/types.js";
import type { PortMapping } from "../network/ports.js";
import type { SecurityConfig } from "./security/options.js";
import type { Endpoint } from "../network/networks.js";
import type { OutboundHelper, PortHandler } from "../network/outbound.js";
import type { DeviceMapping } from "./devices.js";
import { removeFile } from "../remove-file.js";

export type ContainerStatus = "created" | "running" | "exited";

export interface ContainerState {
  status: ContainerStatus;
  /** The container's init, as seen from the host. */
  pid: number;
  /** Who waits for it: the tsrun-monitor of a detached container, or the foreground CLI. */
  monitorPid: number;
  /** /proc/PID/stat start time of the monitor, so a reused pid is not taken for it. */
  monitorStartTime: number;
  /** Its processes are stopped by `pause` (still counted as running, as Docker does). */
  paused?: boolean;
  /** Times the monitor restarted the container under its restart policy. */
  restartCount?: number;
  /** Between two runs under its restart policy (Docker's "restarting"): exitCode and finishedAt are the last run's. */
  restarting?: boolean;
  /** Docker's State.Health, when the container has a health check. */
  health?: { Status: string; FailingStreak: number; Log: { Start: string; End: string; ExitCode: number; Output: string }[] };
  exitCode: number;
  startedAt: string;
  finishedAt: string;
  error: string;
}

export interface ContainerRecord {
  id: string;
  name: string;
  created: string;
  /** Image ID and the name it was asked for by. */
  image: string;
  imageName: string;
  /** Chain IDs of the image's layers, bottom first: the overlay lower dirs. */
  layers: string[];
  path: string;
  args: string[];
  config: {
    env: string[];
    user: string;
    /**
     * The home directory of the container's user when it was created (the image's passwd): the
     * HOME that `run` adds unless the image sets one, and that commit leaves out of the image, as
     * Docker does. Absent in the records of older tsrun versions.
     */
    home?: string;
    workingDir: string;
    hostname: string;
    /** --domainname: the NIS domain name of its UTS namespace. */
    domainname?: string;
    tty: boolean;
    openStdin: boolean;
    entrypoint: string[] | null;
    cmd: string[] | null;
    labels: Record<string, string>;
    stopSignal: string;
    /** --stop-timeout: seconds `stop` waits before SIGKILL when not told otherwise (Docker: 10). */
    stopTimeout?: number;
    /** The health check in effect (the image's, changed by --health-* flags). */
    healthcheck?: HealthConfig;
    /** --expose: ports ("80/tcp") exposed beside the image's, for -P and inspect. */
    exposedPorts?: string[];
  };
  hostConfig: {
    autoRemove: boolean;
    readOnly: boolean;
    networkMode: string;
    /** Binds, volumes and tmpfs mounts, volumes already created. */
    mounts: MountSpec[];
    restartPolicy?: { name: "no" | "always" | "unless-stopped" | "on-failure"; maximumRetryCount: number };
    /** Published ports, host ports assigned. */
    portBindings?: PortMapping[];
    /** resolv.conf points at the helper's DNS forwarder. */
    dnsForward?: boolean;
    /** Capabilities, seccomp, no-new-privileges, limits, user namespace mode (absent: defaults). */
    security?: SecurityConfig;
    /** Outbound access (private and user-defined networks): pasta when unset (older records). */
    networkHelper?: OutboundHelper;
    /** Who forwards the published ports, when the user chose (--network MODE:port_handler=). */
    portHandler?: PortHandler;
    /** User-defined networks the container is on, by network name (the first is eth0). */
    networks?: Record<string, Endpoint>;
    /** --init: the host's init binary, bound at /sbin/docker-init and run as PID 1. */
    init?: string;
    /** --group-add: more supplementary groups (names from the container's /etc/group, or gids). */
    groupAdd?: string[];
    /** --shm-size: the size of /dev/shm in bytes (Docker's default, 64 MiB, when unset). */
    shmSize?: number;
    /** --log-driver none: the output is kept nowhere (json-file when unset). */
    logDriver?: "none";
    /** --log-opt KEY=VALUE as given (json-file's; max-size and max-file rotate the log). */
    logOptions?: Record<string, string>;
    /** --device: host device nodes bound into the container. */
    devices?: DeviceMapping[];
    /** --sysctl: settings of the container's namespaces, as Docker's HostConfig.Sysctls. */
    sysctls?: Record<string, string>;
    /** --oom-score-adj: the container's init's oom_score_adj (rootless: only raised). */
    oomScoreAdj?: number;
    /** --annotation KEY=VALUE, as Docker's HostConfig.Annotations. */
    annotations?: Record<string, string>;
    /** --cgroupns host: no cgroup namespace of its own (private when unset). */
    cgroupnsMode?: "host";
    /** --dns, --dns-search, --dns-option as given (resolv.conf is written at create). */
    dns?: string[];
    dnsSearch?: string[];
    dnsOptions?: string[];
    /** --pid, --ipc, --uts: absent for namespaces of its own (see namespaces.ts). */
    pidMode?: string;
    ipcMode?: string;
    utsMode?: string;
  };
  state: ContainerState;
  /**
   * Made by a build for one RUN step: the build removes it when the step ends, and holds a lease
   * on it until then. One that no live lease names belongs to a build that was killed: a
   * leftover, which the store's sweep removes (see recovery.ts).
   */
  intermediate?: boolean;
}

/** How long the exit status of a removed container is kept (Podman's five minutes). */
const EXIT_KEPT_SECONDS = 300;

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ADJECTIVES = ["brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nifty", "proud", "quirky", "silly", "witty", "zen"];
const NOUNS = ["turing", "hopper", "lovelace", "curie", "darwin", "euler", "gauss", "noether", "ritchie", "thompson", "torvalds", "wozniak", "knuth", "dijkstra", "shannon", "babbage"];

export class ContainerStore {
  private readonly names: string;
  constructor(readonly dir: string) {
    this.names = path.join(dir, "names");
  }

  containerDir(id: string): string {
    return path.join(this.dir, id);
  }

  newId(): string {
    return randomBytes(32).toString("hex");
  }

  static checkName(name: string): void {
    if (!NAME.test(name)) throw new TsrunError(`invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  }

  /** The error for a name another container has (Docker's wording). */
  nameInUse(name: string): TsrunError {
    return new TsrunError(`the container name "${name}" is already in use by container "${this.idForName(name) ?? "?"}". You have to remove (or rename) that container to be able to reuse that name.`);
  }

  /** Links name to id; false when the name is taken. A stale link (see the top) is reclaimed. */
  private link(name: string, id: string): boolean {
    const file = path.join(this.names, name);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        symlinkSync(id, file);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      if (!this.isStaleName(name)) return false;
      removeFile(file);
    }
    return false;
  }

  /** A name link whose container has no record, or a record under another name. */
  isStaleName(name: string): boolean {
    const owner = this.idForName(name);
    if (owner === undefined) return false;
    try {
      return this.load(owner).name !== name;
    } catch {
      return true;
    }
  }

  /** Claims a name for id (under the store lock); a taken name is an error (Docker's wording). */
  claimName(name: string | undefined, id: string): string {
    mkdirSync(this.names, { recursive: true });
    if (name !== undefined) {
      ContainerStore.checkName(name);
      if (!this.link(name, id)) throw this.nameInUse(name);
      return name;
    }
    for (let i = 0; ; i++) {
      const pick = (a: string[]): string => a[randomBytes(1)[0]! % a.length]!;
      const candidate = `${pick(ADJECTIVES)}_${pick(NOUNS)}${i > 3 ? String(i) : ""}`;
      if (this.link(candidate, id)) return candidate;
    }
  }

  /** Removes a name link, if it is still id's (under the store lock). */
  releaseName(name: string, id: string): void {
    if (this.idForName(name) === id) removeFile(path.join(this.names, name));
  }

  /** Name links, name -> id. */
  nameLinks(): Map<string, string> {
    const out = new Map<string, string>();
    let names: string[];
    try {
      names = readdirSync(this.names);
    } catch {
      return out;
    }
    for (const n of names) {
      const id = this.idForName(n);
      if (id !== undefined) out.set(n, id);
    }
    return out;
  }

  /**
   * Takes a container's dir out of the store at once (renamed to a temporary name) and returns
   * where it went, for the caller to delete. Not found when it is gone already.
   */
  detach(id: string): string {
    const doomed = tempPath(this.dir, "rm");
    try {
      renameSync(this.containerDir(id), doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new NotFoundError(`no such container: ${id}`);
      throw err;
    }
    return doomed;
  }

  /**
   * Keeps the exit status of a container being removed for a few minutes, as Podman does, so
   * that `wait` (or `attach`, `stop`) of a --rm container that is removed as it exits still gets
   * it. Files exits/ID-SECONDS ("CODE FINISHED-AT"); older ones are dropped here.
   */
  rememberExit(record: ContainerRecord): void {
    const dir = path.join(this.dir, "exits");
    const now = Math.floor(Date.now() / 1000);
    let old: string[] = [];
    try {
      old = readdirSync(dir);
    } catch {
      mkdirSync(dir, { recursive: true });
    }
    for (const f of old) if (now - Number(f.slice(65)) > EXIT_KEPT_SECONDS) removeFile(path.join(dir, f));
    writeFileAtomic(path.join(dir, `${record.id}-${now}`), `${record.state.exitCode} ${record.state.finishedAt}\n`, { durable: false, tempDir: this.dir });
  }

  /** The exit status of a container removed in the last minutes (see rememberExit). */
  removedExit(id: string): { exitCode: number; finishedAt: string } | undefined {
    try {
      const dir = path.join(this.dir, "exits");
      const file = readdirSync(dir).find((f) => f.startsWith(`${id}-`));
      if (!file) return undefined;
      const [code, finishedAt] = readFileSync(path.join(dir, file), "utf8").trim().split(" ");
      return { exitCode: Number(code), finishedAt: finishedAt ?? "" };
    } catch {
      return undefined;
    }
  }

  idForName(name: string): string | undefined {
    try {
      return readlinkSync(path.join(this.names, name));
    } catch {
      return undefined;
    }
  }

  /**
   * Writes a container's record. The container's dir is not created: a record saved for a
   * container removed meanwhile (`ps` refreshing its state while `rm` runs) fails with ENOENT
   * instead of bringing back a dir without its files.
   */
  save(record: ContainerRecord): void {
    writeJsonAtomic(path.join(this.containerDir(record.id), "container.json"), record, { durable: false, tempDir: this.dir });
  }

  load(id: string): ContainerRecord {
    return JSON.parse(readFileSync(path.join(this.containerDir(id), "container.json"), "utf8")) as ContainerRecord;
  }

  ids(): string[] {
    try {
      return readdirSync(this.dir).filter((n) => /^[a-f0-9]{64}$/.test(n) && existsSync(path.join(this.dir, n, "container.json")));
    } catch {
      return [];
    }
  }

  list(): ContainerRecord[] {
    const out: ContainerRecord[] = [];
    for (const id of this.ids()) {
      try {
        out.push(this.load(id));
      } catch {
        // Removed while we listed it.
      }
    }
    return out;
  }

  /** By full ID, name, or unique ID prefix (as Docker resolves them). */
  find(query: string): ContainerRecord {
    const byName = this.idForName(query);
    if (byName && existsSync(path.join(this.dir, byName, "container.json"))) return this.load(byName);
    if (/^[a-f0-9]+$/.test(query)) {
      const matches = this.ids().filter((id) => id.startsWith(query));
      if (matches.length === 1) return this.load(matches[0]!);
      if (matches.length > 1) throw new TsrunError(`container ID prefix "${query}" is ambiguous`);
    }
    throw new NotFoundError(`no such container: ${query}`);
  }
}
