// Leases: the store's record of operations in flight. Every multi-step operation (pull, load,
// import, commit, rmi, prune, creating or removing a container, ...) writes one under the store
// lock before its first step and deletes it after its last, listing what it relies on that no
// image or container refers to yet: the blobs a pull is downloading, the layers a load found in
// the store and will not unpack again, the image and volumes a container is being created from.
//
// Two uses:
//  - deleters (rmi, prune, volume rm, system prune, system check --repair) read the live leases
//    under the lock and keep what they name: nothing is deleted under an operation's feet;
//  - a lease whose process is gone marks an operation that was killed: the next operation that
//    takes the lock sweeps the store for what such an operation can leave (see recovery.ts).
//
// A lease is live while its process runs: same pid, same start time, same boot. Leases are not
// fsynced: a power failure ends every process anyway, and the boot id then declares them dead.
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "../random.js";
import { writeJsonAtomic } from "./atomic.js";
import { bootId, isAlive, processStartTime } from "./liveness.js";
import { removeFile } from "../remove-file.js";

/** Which part of the store an operation's leftovers are in: the sweep that clears them. */
export type LeaseScope = "images" | "containers";

export interface LeaseRefs {
  /** Image IDs (config digests). */
  images?: string[];
  blobs?: string[];
  /** Layer chain IDs. */
  layers?: string[];
  volumes?: string[];
  /** Container IDs (created, not yet started: `container prune` leaves them). */
  containers?: string[];
}

export interface LeaseRecord {
  operation: string;
  scope: LeaseScope;
  pid: number;
  startTime: number;
  boot: string;
  created: string;
  images: string[];
  blobs: string[];
  layers: string[];
  volumes: string[];
  containers: string[];
}

export interface LeaseFile {
  file: string;
  /** Undefined when the file cannot be read as a lease. */
  record?: LeaseRecord;
}

/** Everything live leases refer to. */
export interface InUse {
  images: Set<string>;
  blobs: Set<string>;
  layers: Set<string>;
  volumes: Set<string>;
  containers: Set<string>;
  /** The operations holding them, for messages ("pull busybox (pid 123)"). */
  operations: LeaseRecord[];
}

const LEASE_FILE = /^\d+-[0-9a-f]+\.json$/;

export function isLive(record: LeaseRecord): boolean {
  return record.boot === bootId() && isAlive(record.pid, record.startTime);
}

export class Lease {
  private released = false;
  constructor(
    private readonly file: string,
    readonly record: LeaseRecord,
  ) {}

  /** Adds references. Call under the store lock: deleters read the leases under it. */
  add(refs: LeaseRefs): void {
    if (this.released) throw new Error(`lease of "${this.record.operation}" used after its release`);
    for (const key of ["images", "blobs", "layers", "volumes", "containers"] as const) {
      for (const ref of refs[key] ?? []) if (!this.record[key].includes(ref)) this.record[key].push(ref);
    }
    writeJsonAtomic(this.file, this.record, { durable: false });
  }

  /** Ends the operation: what it created is referenced by the store's records by now. */
  release(): void {
    if (this.released) return;
    this.released = true;
    removeFile(this.file);
  }
}

export class LeaseStore {
  constructor(readonly dir: string) {}

  /** Writes a new lease. Call under the store lock. */
  create(operation: string, scope: LeaseScope, refs: LeaseRefs = {}): Lease {
    mkdirSync(this.dir, { recursive: true });
    const record: LeaseRecord = {
      operation,
      scope,
      pid: process.pid,
      startTime: processStartTime(process.pid),
      boot: bootId(),
      created: new Date().toISOString(),
      images: [...new Set(refs.images ?? [])],
      blobs: [...new Set(refs.blobs ?? [])],
      layers: [...new Set(refs.layers ?? [])],
      volumes: [...new Set(refs.volumes ?? [])],
      containers: [...new Set(refs.containers ?? [])],
    };
    const file = path.join(this.dir, `${process.pid}-${randomBytes(6).toString("hex")}.json`);
    writeJsonAtomic(file, record, { durable: false });
    return new Lease(file, record);
  }

  list(): LeaseFile[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: LeaseFile[] = [];
    for (const name of names) {
      if (!LEASE_FILE.test(name)) continue;
      const file = path.join(this.dir, name);
      try {
        const record = JSON.parse(readFileSync(file, "utf8")) as LeaseRecord;
        const valid = typeof record.pid === "number" && Array.isArray(record.blobs) && Array.isArray(record.layers) && Array.isArray(record.images) && Array.isArray(record.volumes);
        if (valid && !Array.isArray(record.containers)) record.containers = [];
        out.push(valid ? { file, record } : { file });
      } catch (err) {
        // Released between readdir and read: not a lease any more.
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") out.push({ file });
      }
    }
    return out;
  }

  /** Leases of processes that are gone (or unreadable ones): operations that were killed. */
  dead(): LeaseFile[] {
    return this.list().filter((l) => !l.record || !isLive(l.record));
  }

  inUse(): InUse {
    const use: InUse = { images: new Set(), blobs: new Set(), layers: new Set(), volumes: new Set(), containers: new Set(), operations: [] };
    for (const { record } of this.list()) {
      if (!record || !isLive(record)) continue;
      use.operations.push(record);
      for (const i of record.images) use.images.add(i);
      for (const b of record.blobs) use.blobs.add(b);
      for (const l of record.layers) use.layers.add(l);
      for (const v of record.volumes) use.volumes.add(v);
      for (const c of record.containers) use.containers.add(c);
    }
    return use;
  }
}

/** "pull busybox (pid 123)" */
export function describeOperation(record: LeaseRecord): string {
  return `${record.operation} (pid ${record.pid})`;
}
