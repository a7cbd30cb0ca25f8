// Container records on disk: containers/<id>/container.json, plus names/<name> symlinks whose
// atomic creation makes names unique without a global lock.
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { writeJsonAtomic } from "../store/atomic.js";
import { TsrunError, NotFoundError } from "../errors.js";
import type { MountSpec } from "./volumes.js";
import type { HealthConfig } from "../image/types.js";
import type { PortMapping } from "../network/ports.js";
import type { SecurityConfig } from "./security/options.js";

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
    workingDir: string;
    hostname: string;
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
    /** resolv.conf points at pasta's DNS forwarder. */
    dnsForward?: boolean;
    /** Capabilities, seccomp, no-new-privileges, limits, user namespace mode (absent: defaults). */
    security?: SecurityConfig;
  };
  state: ContainerState;
}

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

  /** Claims a name for id; a taken name is an error (Docker's wording). */
  claimName(name: string | undefined, id: string): string {
    mkdirSync(this.names, { recursive: true });
    if (name !== undefined) {
      if (!NAME.test(name)) throw new TsrunError(`invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
      try {
        symlinkSync(id, path.join(this.names, name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST") {
          const owner = this.idForName(name);
          throw new TsrunError(`the container name "${name}" is already in use by container "${owner ?? "?"}". You have to remove (or rename) that container to be able to reuse that name.`);
        }
        throw err;
      }
      return name;
    }
    for (let i = 0; ; i++) {
      const pick = (a: string[]): string => a[randomBytes(1)[0]! % a.length]!;
      const candidate = `${pick(ADJECTIVES)}_${pick(NOUNS)}${i > 3 ? String(i) : ""}`;
      try {
        symlinkSync(id, path.join(this.names, candidate));
        return candidate;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
    }
  }

  releaseName(name: string): void {
    rmSync(path.join(this.names, name), { force: true });
  }

  idForName(name: string): string | undefined {
    try {
      return readlinkSync(path.join(this.names, name));
    } catch {
      return undefined;
    }
  }

  save(record: ContainerRecord): void {
    writeJsonAtomic(path.join(this.containerDir(record.id), "container.json"), record, 0o644, false);
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
