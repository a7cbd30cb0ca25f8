// Volumes and mounts: `-v`, `--mount`, `--tmpfs`, `--volumes-from`, and the named volumes under
// the store (volumes/<name>/_data). A new named volume is filled from the image's content at
// its path on first use, as Docker does. Every target is resolved inside the container's root by
// the launcher (openat2 RESOLVE_IN_ROOT), never on the host.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "../random.js";
import { writeJsonAtomic, type HeldLock } from "../store/atomic.js";
import { tempPath } from "../store/temps.js";
import { faultPoint } from "../store/fault.js";
import { describeOperation } from "../store/leases.js";
import type { Store } from "../store/store.js";
import { runInUserNamespace } from "../userns-run.js";
import { MS, type PlanMount } from "../native.js";
import { pruneFilterOf } from "./filters.js";
import { TsrunError, NotFoundError } from "../errors.js";

export interface MountSpec {
  type: "bind" | "volume" | "tmpfs";
  /** Host path (bind) or volume name (volume); empty for tmpfs. */
  source: string;
  target: string;
  readOnly: boolean;
  /** volume: do not copy the image's content into a new volume. */
  noCopy?: boolean;
  /** tmpfs: mount options (size=, mode=). */
  tmpfsOptions?: string;
  /** volume created for this container without a name (removed by rm -v). */
  anonymous?: boolean;
  /** --mount volume-opt=KEY=VALUE and volume-label=KEY=VALUE: for a volume this mount creates. */
  volumeOptions?: Record<string, string>;
  volumeLabels?: Record<string, string>;
}

export interface StagedVolume {
  record: VolumeRecord;
  /** The temporary volume dir, and its _data. */
  dir: string;
  dataDir: string;
}

export interface VolumeRecord {
  Name: string;
  Driver: "local";
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Scope: "local";
  Options: Record<string, string>;
  Anonymous: boolean;
}

const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/**
 * A bind source written relative to the working directory (`.`, `..`, `./x`, `../x`) made
 * absolute, as docker/cli does since 23.0 (`../` since 28.2). No volume name starts with a dot,
 * so nothing else is taken for a path; other relative sources stay as they are.
 */
function absoluteBindSource(source: string): string {
  return /^\.\.?(\/|$)/.test(source) ? path.resolve(source) : source;
}

function checkTarget(target: string, what: string): string {
  if (!target.startsWith("/")) throw new TsrunError(`invalid ${what} "${target}": the container path must be absolute`);
  const clean = path.posix.normalize(target);
  if (clean === "/") throw new TsrunError(`invalid ${what} "${target}": cannot mount over /`);
  return clean;
}

/** Parses `-v SRC:DST[:ro|rw|z|Z]`, `-v NAME:DST`, `-v /DST` (anonymous). */
export function parseVolumeFlag(spec: string): MountSpec {
  const parts = spec.split(":");
  if (parts.length > 3 || parts.some((p) => p === "")) throw new TsrunError(`invalid volume specification "${spec}"`);
  let readOnly = false;
  if (parts.length === 3 || (parts.length === 2 && /^(ro|rw|z|Z|ro,.*|rw,.*)$/.test(parts[1] as string) && !(parts[1] as string).startsWith("/"))) {
    const opts = (parts.pop() as string).split(",");
    for (const o of opts) {
      if (o === "ro") readOnly = true;
      else if (o !== "rw" && o !== "z" && o !== "Z") throw new TsrunError(`invalid volume specification "${spec}": unknown option "${o}"`);
    }
  }
  if (parts.length === 1) return { type: "volume", source: "", target: checkTarget(parts[0] as string, "volume"), readOnly, anonymous: true };
  const [written, target] = parts as [string, string];
  const source = absoluteBindSource(written);
  if (source.startsWith("/")) return { type: "bind", source: path.normalize(source), target: checkTarget(target, "volume"), readOnly };
  if (!VOLUME_NAME.test(source)) throw new TsrunError(`invalid volume name "${source}": use [a-zA-Z0-9][a-zA-Z0-9_.-]+ or an absolute host path`);
  return { type: "volume", source, target: checkTarget(target, "volume"), readOnly };
}

/** The fields of a --mount value: comma-separated, a field in double quotes may hold commas (Docker reads it as CSV). */
function mountFields(spec: string): string[] {
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i] as string;
    if (c === '"') {
      if (quoted && spec[i + 1] === '"') {
        field += '"';
        i++;
      } else quoted = !quoted;
    } else if (c === "," && !quoted) {
      fields.push(field);
      field = "";
    } else field += c;
  }
  if (quoted) throw new TsrunError(`invalid --mount "${spec}": a quote is not closed`);
  fields.push(field);
  return fields;
}

/** Parses `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...`. */
export function parseMountFlag(spec: string): MountSpec {
  const kv = new Map<string, string>();
  const volumeOptions: Record<string, string> = {};
  const volumeLabels: Record<string, string> = {};
  for (const field of mountFields(spec)) {
    const eq = field.indexOf("=");
    const key = eq < 0 ? field : field.slice(0, eq);
    const value = eq < 0 ? "true" : field.slice(eq + 1);
    if (key === "volume-opt" || key === "volume-label") {
      // Repeatable, KEY=VALUE each.
      const at = value.indexOf("=");
      if (at <= 0) throw new TsrunError(`invalid --mount "${spec}": ${key} takes KEY=VALUE`);
      (key === "volume-opt" ? volumeOptions : volumeLabels)[value.slice(0, at)] = value.slice(at + 1);
      continue;
    }
    kv.set(key, value);
  }
  const type = kv.get("type") ?? "volume";
  const target = kv.get("target") ?? kv.get("destination") ?? kv.get("dst") ?? kv.get("dest");
  if (!target) throw new TsrunError(`invalid --mount "${spec}": target is required`);
  const written = kv.get("source") ?? kv.get("src") ?? "";
  const source = type === "bind" ? absoluteBindSource(written) : written;
  const ro = kv.get("readonly") ?? kv.get("ro");
  const readOnly = ro === "true" || ro === "1";
  const known = new Set(["type", "target", "destination", "dst", "dest", "source", "src", "readonly", "ro", "volume-nocopy", "volume-driver", "tmpfs-size", "tmpfs-mode", "bind-propagation", "consistency"]);
  for (const k of kv.keys()) if (!known.has(k)) throw new TsrunError(`invalid --mount "${spec}": unknown field "${k}"`);
  const driver = kv.get("volume-driver");
  if (driver !== undefined && driver !== "local") throw new TsrunError(`invalid --mount "${spec}": volume driver ${driver} is not supported: volumes are local`);
  const volumeFields = Object.keys(volumeOptions).length + Object.keys(volumeLabels).length + (driver !== undefined ? 1 : 0);
  if (type !== "volume" && volumeFields > 0) throw new TsrunError(`invalid --mount "${spec}": volume-opt, volume-label and volume-driver are for type=volume`);
  switch (type) {
    case "bind":
      if (!source.startsWith("/")) throw new TsrunError(`invalid --mount "${spec}": a bind source must be an absolute path`);
      if (!existsSync(source)) throw new TsrunError(`invalid --mount "${spec}": bind source path does not exist: ${source}`);
      return { type, source: path.normalize(source), target: checkTarget(target, "mount"), readOnly };
    case "volume":
      if (source && !VOLUME_NAME.test(source)) throw new TsrunError(`invalid --mount "${spec}": bad volume name "${source}"`);
      if (Object.keys(volumeOptions).length > 0) checkLocalOptions(volumeOptions);
      return {
        type,
        source,
        target: checkTarget(target, "mount"),
        readOnly,
        noCopy: kv.has("volume-nocopy"),
        anonymous: source === "",
        ...(Object.keys(volumeOptions).length > 0 ? { volumeOptions } : {}),
        ...(Object.keys(volumeLabels).length > 0 ? { volumeLabels } : {}),
      };
    case "tmpfs": {
      const opts: string[] = [];
      const size = kv.get("tmpfs-size");
      const mode = kv.get("tmpfs-mode");
      if (size) opts.push(`size=${size}`);
      if (mode) opts.push(`mode=${mode}`);
      return { type, source: "", target: checkTarget(target, "mount"), readOnly, tmpfsOptions: opts.join(",") };
    }
    default:
      throw new TsrunError(`invalid --mount "${spec}": unknown type "${type}"`);
  }
}

/** `--tmpfs /path[:opts]`. */
export function parseTmpfsFlag(spec: string): MountSpec {
  const colon = spec.indexOf(":");
  const target = colon < 0 ? spec : spec.slice(0, colon);
  const opts = colon < 0 ? "" : spec.slice(colon + 1);
  if (!/^[a-z0-9=,.-]*$/i.test(opts)) throw new TsrunError(`invalid --tmpfs options "${opts}"`);
  return { type: "tmpfs", source: "", target: checkTarget(target, "tmpfs"), readOnly: false, tmpfsOptions: opts };
}

export class Volumes {
  readonly dir: string;
  constructor(private readonly store: Store) {
    this.dir = store.paths.volumes;
  }

  dataDir(name: string): string {
    return path.join(this.dir, name, "_data");
  }

  exists(name: string): boolean {
    return existsSync(path.join(this.dir, name, "volume.json"));
  }

  inspect(name: string): VolumeRecord {
    try {
      return JSON.parse(readFileSync(path.join(this.dir, name, "volume.json"), "utf8")) as VolumeRecord;
    } catch {
      throw new NotFoundError(`no such volume: ${name}`);
    }
  }

  /** Names of the volumes (dirs with a volume.json), sorted. */
  names(): string[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir)
      .filter((n) => VOLUME_NAME.test(n) && existsSync(path.join(this.dir, n, "volume.json")))
      .sort();
  }

  /** Every volume whose record can be read (`system check` reports the others). */
  list(): VolumeRecord[] {
    return this.names().flatMap((n) => {
      try {
        return [this.inspect(n)];
      } catch {
        return [];
      }
    });
  }

  /**
   * A new volume, complete but under a temporary name: its _data (to fill) and volume.json. It
   * becomes the volume only through publish (under the store lock), so a volume is never seen
   * half made, and a killed tsrun leaves a temporary that the next command removes.
   */
  stage(name: string | undefined, labels: Record<string, string> = {}, anonymous = false, options: Record<string, string> = {}): StagedVolume {
    const volumeName = name ?? randomBytes(32).toString("hex");
    if (!VOLUME_NAME.test(volumeName)) throw new TsrunError(`invalid volume name "${volumeName}"`);
    mkdirSync(this.dir, { recursive: true });
    const dir = tempPath(this.dir, "volume");
    mkdirSync(path.join(dir, "_data"), { recursive: true, mode: 0o755 });
    const record: VolumeRecord = {
      Name: volumeName,
      Driver: "local",
      Mountpoint: this.dataDir(volumeName),
      CreatedAt: new Date().toISOString(),
      Labels: labels,
      Scope: "local",
      Options: options,
      Anonymous: anonymous,
    };
    writeJsonAtomic(path.join(dir, "volume.json"), record);
    return { record, dir, dataDir: path.join(dir, "_data") };
  }

  /** Under the store lock: the staged volume takes its name, unless that name exists (kept, and the staged one dropped). */
  async publish(staged: StagedVolume): Promise<VolumeRecord> {
    if (this.exists(staged.record.Name)) {
      await this.store.removeTree(staged.dir);
      return this.inspect(staged.record.Name);
    }
    // A dir under that name without volume.json (an older tsrun killed while creating it).
    if (existsSync(path.join(this.dir, staged.record.Name))) await this.store.removeTree(this.detach(staged.record.Name));
    faultPoint("volume-publish");
    renameSync(staged.dir, path.join(this.dir, staged.record.Name));
    return staged.record;
  }

  /** `volume create`: a new empty volume (idempotent for an existing name); returns true when it is new. */
  async create(name: string | undefined, labels: Record<string, string> = {}, anonymous = false, options: Record<string, string> = {}): Promise<{ record: VolumeRecord; created: boolean }> {
    if (name !== undefined && !VOLUME_NAME.test(name)) throw new TsrunError(`invalid volume name "${name}"`);
    checkLocalOptions(options);
    return this.store.locked(`volume create ${name ?? ""}`.trim(), "containers", async () => {
      if (name !== undefined && this.exists(name)) return { record: this.inspect(name), created: false };
      return { record: await this.publish(this.stage(name, labels, anonymous, options)), created: true };
    });
  }

  /** Renames a volume dir aside (under the lock); returns where it went. */
  private detach(name: string): string {
    const doomed = tempPath(this.dir, "rm");
    renameSync(path.join(this.dir, name), doomed);
    return doomed;
  }

  /** Why a volume cannot go: a container mounts it, or an operation in flight is about to. */
  private inUse(name: string, users: (volume: string) => string[]): string | undefined {
    // Leases first: a container being created keeps its lease until its record is saved.
    const op = this.store.leases.inUse().operations.find((o) => o.volumes.includes(name));
    const user = users(name)[0];
    if (user !== undefined) return `container ${user}`;
    if (op) return `an operation in progress: ${describeOperation(op)}`;
    return undefined;
  }

  /**
   * `volume rm`: refused while a container uses it (users: the containers mounting a volume,
   * read under the lock). The volume disappears at once (renamed aside), then is deleted.
   * held: the caller's store lock, when it runs under one (see withLock).
   */
  async remove(name: string, users: (volume: string) => string[], held?: HeldLock): Promise<void> {
    await this.store.locked(
      `volume rm ${name}`,
      "containers",
      () => {
        this.inspect(name);
        const by = this.inUse(name, users);
        if (by) throw new TsrunError(`volume ${name} is in use by ${by}`);
        return this.detach(name);
      },
      async (doomed) => {
        faultPoint("volume-detached");
        await this.store.removeTree(doomed);
      },
      held,
    );
  }

  /** `volume prune`: every unused anonymous volume (all: named ones too). Returns the names removed. */
  async prune(all: boolean, users: (volume: string) => string[], filters: string[] = []): Promise<string[]> {
    // Docker's volume prune filters: label=, label!= and all=true|false (as -a).
    const allFilter = filters.filter((f) => f.startsWith("all="));
    for (const f of allFilter) {
      if (f !== "all=true" && f !== "all=false" && f !== "all=1" && f !== "all=0") throw new TsrunError(`invalid filter '${f}': all takes true or false`);
      if (f === "all=true" || f === "all=1") all = true;
    }
    const selected = pruneFilterOf<VolumeRecord>(filters.filter((f) => !f.startsWith("all=")), { labels: (v) => v.Labels ?? {} });
    const doomed = await this.store.locked(
      "volume prune",
      "containers",
      () =>
        this.list()
          .filter((v) => (all || v.Anonymous) && this.inUse(v.Name, users) === undefined && selected(v))
          .map((v) => ({ name: v.Name, dir: this.detach(v.Name) })),
      async (out) => {
        faultPoint("volume-detached");
        await this.store.removeTrees(out.map((d) => d.dir));
      },
    );
    return doomed.map((d) => d.name);
  }

  /**
   * Copies the image's content at target into an empty new volume, preserving owners and
   * modes: inside the user namespace, through a read-only overlay of the image's layers.
   */
  async copyUp(volumeName: string, data: string, layerDirs: string[], target: string): Promise<void> {
    if (readdirSync(data).length > 0 || layerDirs.length === 0) return;
    const sub = target.replace(/^\/+/, "");
    const copy = 'if [ -d "$SRC/$3" ]; then cp -a "$SRC/$3/." "$4/" || exit 1; ' + 'chown --reference="$SRC/$3" "$4" && chmod --reference="$SRC/$3" "$4"; fi';
    if (layerDirs.length === 1) {
      // One layer has nothing to merge (its whiteouts only hide lower content): copy from it.
      const r = await runInUserNamespace(["sh", "-c", `SRC="$1"; ${copy}`, "copy-up", layerDirs[0] as string, "", sub, data]);
      if (r.code !== 0) throw new TsrunError(`filling volume ${volumeName} from the image at ${target}: ${r.stderr.trim() || `exit ${r.code}`}`);
      return;
    }
    const mnt = path.join(this.store.paths.tmp, `copyup-${process.pid}-${randomBytes(4).toString("hex")}`);
    faultPoint("volume-copy-up");
    mkdirSync(mnt, { recursive: true });
    const esc = (p: string): string => p.replace(/([\\,:])/g, "\\$1");
    // A read-only overlay of the image's layers (no upper dir), inside the helper's mount namespace.
    const script = 'mount -n -t overlay overlay -o "lowerdir=$1,userxattr" "$2" || exit 1; SRC="$2"; ' + copy;
    try {
      const r = await runInUserNamespace(["sh", "-c", script, "copy-up", layerDirs.map(esc).join(":"), mnt, sub, data]);
      if (r.code !== 0) throw new TsrunError(`filling volume ${volumeName} from the image at ${target}: ${r.stderr.trim() || `exit ${r.code}`}`);
    } finally {
      // The overlay lived in the helper's mount namespace only: mnt is an empty dir again.
      await this.store.removeTree(mnt);
    }
  }
}

/** The launch-plan mounts for a container's mount specs (volumes must exist already). */
/**
 * The local driver's options (`volume create -o`) a rootless runtime can honour, checked as the
 * volume is created: type=tmpfs (o: tmpfs's mount options, such as size=64m,uid=1000) and o=bind
 * with device=/host/dir (type=none). Other types (nfs, cifs, a block device) need root to mount.
 */
export function checkLocalOptions(options: Record<string, string>): void {
  for (const key of Object.keys(options)) {
    if (!["type", "device", "o"].includes(key)) throw new TsrunError(`invalid option key: "${key}" (the local driver takes type, device and o)`);
  }
  if (Object.keys(options).length === 0) return;
  const bind = (options.o ?? "").split(",").includes("bind");
  if (options.type === "tmpfs" && !bind) return;
  if (bind) {
    const device = options.device ?? "";
    if (!device.startsWith("/")) throw new TsrunError(`a bind volume needs device=/absolute/host/path (got "${device}")`);
    return;
  }
  if (options.type === undefined) throw new TsrunError("missing option: type (the local driver takes type=tmpfs, or o=bind with device=PATH)");
  throw new TsrunError(`volume type "${options.type}" needs root to mount; rootless, the local driver takes type=tmpfs, or o=bind with device=PATH`);
}

/** A volume with local driver options: what to mount instead of its data dir. */
function localOptionsMount(record: VolumeRecord | undefined, target: string, readOnly: boolean): PlanMount | undefined {
  const o = record?.Options ?? {};
  if (Object.keys(o).length === 0) return undefined;
  const opts = (o.o ?? "").split(",").filter((x) => x !== "");
  if (opts.includes("bind")) {
    const device = o.device as string;
    let isDir = true;
    try {
      isDir = statSync(device).isDirectory();
    } catch {
      throw new TsrunError(`volume ${record?.Name ?? ""}: its device ${device} does not exist`);
    }
    const ro = readOnly || opts.includes("ro");
    return { kind: "bind", source: device, target, flags: ro ? MS.RDONLY : 0, create: isDir ? "dir" : "file", recursive: opts.includes("rbind") };
  }
  // type=tmpfs: a fresh tmpfs at each mount, as Docker's local driver mounts it.
  return { kind: "mount", source: "tmpfs", target, fstype: "tmpfs", flags: MS.NOSUID | MS.NODEV | (readOnly ? MS.RDONLY : 0), data: opts.join(","), create: "dir" };
}

export function planMounts(specs: MountSpec[], volumes: Volumes): PlanMount[] {
  return specs.map((m): PlanMount => {
    if (m.type === "volume") {
      const special = localOptionsMount(volumes.exists(m.source) ? volumes.inspect(m.source) : undefined, m.target, m.readOnly);
      if (special) return special;
    }
    switch (m.type) {
      case "bind":
      case "volume": {
        const source = m.type === "bind" ? m.source : volumes.dataDir(m.source);
        let isDir = true;
        try {
          isDir = statSync(source).isDirectory();
        } catch {
          throw new TsrunError(`mount source ${source} does not exist`);
        }
        return { kind: "bind", source, target: m.target, flags: m.readOnly ? MS.RDONLY : 0, create: isDir ? "dir" : "file", recursive: true };
      }
      case "tmpfs":
        return {
          kind: "mount",
          source: "tmpfs",
          target: m.target,
          fstype: "tmpfs",
          flags: MS.NOSUID | MS.NODEV | (m.readOnly ? MS.RDONLY : 0),
          data: m.tmpfsOptions || "mode=1777",
          create: "dir",
        };
    }
  });
}
