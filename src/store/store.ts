// The store: blobs, unpacked layers, the image index, and the storage work that must run inside
// the user namespace (files there belong to many subordinate uids).
import { closeSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { lazyNet } from "../builtin.js";
import type { Writable } from "node:stream";
import path from "node:path";
import { randomBytes } from "../random.js";
import { BlobStore } from "./blobs.js";
import { ImageIndex } from "./images.js";
import { LayerStore } from "./layers.js";
import { BuildCacheIndex } from "./build-cache.js";
import { storePaths, type StorePaths } from "./paths.js";
import { withLock, type HeldLock } from "./atomic.js";
import { LeaseStore, type Lease, type LeaseRefs, type LeaseScope } from "./leases.js";
import { layerLeftovers, staleTemps, TEMP_DIRS, type Leftover } from "./recovery.js";
import { StoreTransaction } from "./transaction.js";
import { faultPoint } from "./fault.js";
import { native } from "../native.js";
import { currentMapping, maxMappedId, type UsernsMode } from "../userns.js";
import { runInUserNamespace } from "../userns-run.js";
import { withHugePages } from "../huge-pages.js";
import { workerCommand } from "./worker-command.js";
import type { Change, ExportJob, HostOwner, PackJob, PackResult, UpperScanSpec } from "./pack.js";
import { removeFile } from "../remove-file.js";

export interface UnpackJob {
  /** The layer blob as stored (gzip, zstd or plain tar); "-": the helper's standard input. */
  blob: string;
  /** Directory whose diff/ receives the files. */
  dest: string;
  /** The blob's sha256 as the caller computed it writing a private file (unpack.ts, inputDigest). */
  inputDigest?: string;
  /** The stream comes through an UnpackFeed (see UnpackOptions.fromFeed). */
  fromFeed?: boolean;
}

export interface UnpackJobResult {
  diffId: string;
  /** Absent for a layer streamed in (whoever streamed it checked the bytes' digest). */
  compressedDigest?: string;
  size: number;
  entries: number;
  warnings: string[];
}

/** The pipe a streamed layer reaches its unpacker through: 1 MiB (the unprivileged maximum) rather than 64 KiB. */
const UNPACK_PIPE_BYTES = 1 << 20;

/**
 * Finds and removes what killed operations of one scope left (beside the store's own
 * temporaries and layer leftovers, which the store sweeps itself). The container module
 * attaches the one for containers and volumes; it runs under the store lock.
 */
export type LeftoverFinder = () => Leftover[];

export class Store {
  readonly paths: StorePaths;
  readonly blobs: BlobStore;
  readonly layers: LayerStore;
  readonly images: ImageIndex;
  readonly buildCache: BuildCacheIndex;
  readonly leases: LeaseStore;
  private readonly finders = new Map<LeaseScope, LeftoverFinder>();

  constructor(root?: string) {
    this.paths = storePaths(root);
    this.blobs = new BlobStore(this.paths.blobs);
    this.layers = new LayerStore(this.paths.layers, this.paths.layerLinks);
    this.images = new ImageIndex(this.paths.images);
    this.buildCache = new BuildCacheIndex(this.paths.root);
    this.leases = new LeaseStore(this.paths.leases);
    this.finders.set("images", () => layerLeftovers(this.layers));
  }

  /**
   * Serialises changes to shared state (the image index, names, layer creation). A step that
   * may run inside a caller's lock takes the caller's HeldLock as held: see withLock.
   */
  lock<T>(fn: (held: HeldLock) => Promise<T> | T, held?: HeldLock): Promise<T> {
    mkdirSync(this.paths.root, { recursive: true, mode: 0o700 });
    return withLock(this.paths.lockFile, fn, held);
  }

  /** Lets the module that owns a part of the store say what its killed operations leave. */
  attachLeftoverFinder(scope: LeaseScope, finder: LeftoverFinder): void {
    this.finders.set(scope, finder);
  }

  /**
   * Starts a multi-step operation: under the lock, removes what killed operations left, then
   * writes this operation's lease with the references refs() computes (under the same lock, so
   * what it finds cannot be deleted before the lease protects it). Release the lease when done.
   * Never under the lock (it takes no HeldLock): an operation begins on its own.
   */
  begin(operation: string, scope: LeaseScope, refs?: () => LeaseRefs): Promise<Lease> {
    return this.lock(async () => {
      await this.recover(scope);
      return this.leases.create(operation, scope, refs?.() ?? {});
    });
  }

  /**
   * Runs fn under the lock as an operation of its own (rm, rmi, volume rm, ...): after recovery,
   * and with a lease marking it in flight until fn returns and then, outside the lock, until
   * after(result) has finished (deleting what fn renamed aside), so that a kill between any two
   * of its steps leaves a dead lease: the next operation, of whatever kind, sweeps what is left.
   */
  async locked<T>(operation: string, scope: LeaseScope, fn: () => Promise<T> | T, after?: (result: T) => Promise<void>, held?: HeldLock): Promise<T> {
    let lease: Lease | undefined;
    try {
      const result = await this.lock(async () => {
        await this.recover(scope);
        lease = this.leases.create(operation, scope);
        return await fn();
      }, held);
      if (after) await after(result);
      return result;
    } finally {
      lease?.release();
    }
  }

  /**
   * Under the lock: removes stale temporaries (where operations of scope put them; all of them
   * without a scope), and when a lease shows that an operation was killed, also the leftovers
   * only a full scan finds (for the scopes whose finder is attached). Returns what was removed.
   */
  async recover(scope?: LeaseScope): Promise<Leftover[]> {
    const removed = staleTemps(this.paths, scope ? TEMP_DIRS[scope] : undefined);
    const dead = this.leases.dead();
    const scopes = new Set<LeaseScope>();
    for (const lease of dead) {
      if (!lease.record) for (const s of this.finders.keys()) scopes.add(s);
      else if (this.finders.has(lease.record.scope)) scopes.add(lease.record.scope);
    }
    for (const s of scopes) {
      // A killed operation of another scope left its temporaries where this one does not look.
      if (scope && s !== scope) removed.push(...staleTemps(this.paths, TEMP_DIRS[s].filter((d) => !TEMP_DIRS[scope].includes(d))));
      removed.push(...(this.finders.get(s) as LeftoverFinder)());
    }
    await this.removeLeftovers(removed);
    // Removing an incomplete layer dir can leave its short link dangling: a second look.
    if (scopes.has("images")) {
      const again = layerLeftovers(this.layers);
      await this.removeLeftovers(again);
      removed.push(...again);
    }
    for (const lease of dead) {
      if (!lease.record || scopes.has(lease.record.scope)) removeFile(lease.file);
    }
    return removed;
  }

  async removeLeftovers(leftovers: Leftover[]): Promise<void> {
    for (const l of leftovers) if (l.kind === "file") removeFile(l.path);
    await this.removeTrees(leftovers.filter((l) => l.kind === "dir").map((l) => l.path));
  }

  /**
   * Runs fn under the lock with a transaction: what fn adds through it (layers, blobs) is taken
   * out again if fn fails, a full disk included, so a failed operation leaves the store as it was.
   */
  transact<T>(fn: (tx: StoreTransaction) => Promise<T> | T, held?: HeldLock): Promise<T> {
    return this.lock(async () => {
      const tx = new StoreTransaction(this);
      try {
        return await fn(tx);
      } catch (err) {
        await tx.rollback();
        throw err;
      }
    }, held);
  }

  /**
   * Removes a directory tree. Files owned by subordinate uids can only be removed from inside
   * the user namespace, so that is the fallback when the host-side removal is refused.
   */
  async removeTree(dir: string): Promise<void> {
    await this.removeTrees([dir]);
  }

  /** removeTree for several trees, with at most one helper run for all that need it. */
  async removeTrees(dirs: string[]): Promise<void> {
    const refused: string[] = [];
    for (const dir of dirs) {
      if (!existsSync(dir) || removeEmptyDirs(dir)) continue;
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "EACCES" && code !== "EPERM" && code !== "ENOTEMPTY") throw err;
        refused.push(dir);
      }
    }
    if (refused.length === 0) return;
    faultPoint("remove-tree");
    const result = await runInUserNamespace(["rm", "-rf", "--one-file-system", "--", ...refused]);
    if (result.code !== 0) throw new Error(`cannot remove ${refused.join(", ")}: ${result.stderr.trim() || `rm exited ${result.code}`}`);
  }

  /**
   * Unpacks one layer whose bytes are written to `input` as they arrive (a pull streams each
   * layer from the registry straight into its own helper). End `input` when all bytes are
   * written, or destroy it to abandon the unpack; `result` settles when the helper has exited.
   * Write through an UnpackFeed, which inflates gzip on this side: the helper takes a gzip
   * stream as a layer compressed twice.
   */
  unpackStream(dest: string): { input: Writable; result: Promise<UnpackJobResult> } {
    const [readFd, writeFd] = native().pipe(UNPACK_PIPE_BYTES);
    const input = new (lazyNet().Socket)({ fd: writeFd, readable: false, writable: true });
    let result: Promise<UnpackJobResult>;
    try {
      result = this.unpack([{ blob: "-", dest, fromFeed: true }], { stdin: readFd }).then((results) => {
        const first = results[0];
        if (!first) throw new Error("the storage worker returned no result for the layer");
        return first;
      });
    } finally {
      // runInUserNamespace keeps its own copy of the read end until the helper has one. With
      // ours closed, a helper that dies makes writes fail (EPIPE) instead of filling a pipe
      // nobody reads.
      closeSync(readFd);
    }
    return { input, result };
  }

  /** Unpacks layer blobs inside the user namespace (one helper process for all of them). */
  async unpack(jobs: UnpackJob[], opts: { stdin?: number } = {}): Promise<UnpackJobResult[]> {
    mkdirSync(this.paths.tmp, { recursive: true });
    const id = `${process.pid}-${randomBytes(4).toString("hex")}`;
    const jobFile = path.join(this.paths.tmp, `unpack-${id}.json`);
    const resultFile = path.join(this.paths.tmp, `unpack-${id}.result.json`);
    const mapping = currentMapping();
    try {
      // Inside the try: a full disk can fail this write half-way, and the file must go too.
      writeFileSync(jobFile, JSON.stringify({ jobs, resultFile, maxUid: maxMappedId(mapping, "uid"), maxGid: maxMappedId(mapping, "gid") }));
      const run = await runInUserNamespace(workerCommand("unpack", jobFile), withHugePages(process.env), opts.stdin === undefined ? {} : { stdin: opts.stdin });
      if (run.code !== 0) {
        const lines = run.stderr.trim().split("\n");
        throw new Error(lines[lines.length - 1] || `layer unpacking failed (exit ${run.code})`);
      }
      return JSON.parse(readFileSync(resultFile, "utf8")) as UnpackJobResult[];
    } finally {
      removeFile(jobFile);
      removeFile(resultFile);
    }
  }

  /**
   * Runs one storage worker job inside the user namespace: the job goes in a file, the worker
   * writes its result to another. stdout: an fd the worker writes to (export's tar stream).
   */
  async runWorkerJob<Job, Result>(command: string, job: Job, opts: { stdout?: number; userns?: UsernsMode } = {}): Promise<Result | undefined> {
    mkdirSync(this.paths.tmp, { recursive: true });
    const id = `${process.pid}-${randomBytes(4).toString("hex")}`;
    const jobFile = path.join(this.paths.tmp, `${command}-${id}.json`);
    const resultFile = path.join(this.paths.tmp, `${command}-${id}.result.json`);
    try {
      writeFileSync(jobFile, JSON.stringify({ job, resultFile }));
      const run = await runInUserNamespace(workerCommand(command, jobFile), withHugePages(process.env), {
        ...(opts.stdout === undefined ? {} : { stdout: opts.stdout }),
        ...(opts.userns ? { userns: opts.userns } : {}),
      });
      if (run.code !== 0) {
        const lines = run.stderr.trim().split("\n");
        throw new Error(lines[lines.length - 1] || `the storage worker's ${command} failed (exit ${run.code})`);
      }
      // Warnings the worker printed itself (export) go to the user as they are.
      if (run.stderr.trim()) process.stderr.write(run.stderr.endsWith("\n") ? run.stderr : `${run.stderr}\n`);
      return existsSync(resultFile) ? (JSON.parse(readFileSync(resultFile, "utf8")) as Result) : undefined;
    } finally {
      removeFile(jobFile);
      removeFile(resultFile);
    }
  }

  /**
   * Turns a container's upper dir into a layer (commit): an uncompressed tar at job.tarFile and
   * the same content as a layer dir in job.layerDir/diff (unless this store has that layer
   * already: PackJob.parentChainId). Inside the user namespace, unless every changed file belongs
   * to the container's root (the host user; the usual commit): then this process packs it,
   * without the start of a helper process (about half a small commit's time).
   */
  async pack(job: PackJob, userns?: UsernsMode): Promise<PackResult> {
    if (job.layerDir !== undefined) {
      const mapping = currentMapping();
      job = { ...job, store: { layersDir: this.layers.dir, maxUid: maxMappedId(mapping, "uid"), maxGid: maxMappedId(mapping, "gid") } };
    }
    const owner = userns === undefined ? hostOwner() : undefined;
    if (owner) {
      // Loaded here: `run`'s start-up does not need the packer.
      const { NeedsUserNamespace, packLayer } = await import("./pack.js");
      try {
        return await packLayer(job, owner);
      } catch (err) {
        if (!(err instanceof NeedsUserNamespace)) throw err;
        // What this process wrote goes; the helper starts again from nothing.
        removeFile(job.tarFile);
        if (job.layerDir !== undefined) await this.removeTree(job.layerDir);
      }
    }
    const result = await this.runWorkerJob<PackJob, PackResult>("pack", job, userns ? { userns } : {});
    if (!result) throw new Error("the storage worker returned no result for pack");
    return result;
  }

  /** A container's changes against its image (diff), read inside the user namespace. */
  async changes(spec: UpperScanSpec): Promise<Change[]> {
    return (await this.runWorkerJob<UpperScanSpec, Change[]>("changes", spec)) ?? [];
  }

  /** The sizes of dirs as Docker counts a writable layer (see tree-size.ts), read inside the user namespace. */
  async treeSizes(dirs: string[]): Promise<number[]> {
    if (dirs.length === 0) return [];
    return (await this.runWorkerJob<{ dirs: string[] }, number[]>("tree-size", { dirs })) ?? dirs.map(() => 0);
  }

  /** Writes a container's merged root as tar to outFd (export), mounted inside the user namespace. */
  async exportTree(job: ExportJob, outFd: number, userns?: UsernsMode): Promise<void> {
    // A container with its own id mapping (keep-id) is read in that mapping.
    await this.runWorkerJob<ExportJob, never>("export", job, { stdout: outFd, ...(userns ? { userns } : {}) });
  }
}

/**
 * The host ids of a container's root, for packing in this process (see Store.pack). None for
 * root, whose storage work needs no user namespace to begin with and keeps its one path.
 */
function hostOwner(): HostOwner | undefined {
  const m = currentMapping();
  if (m.uid === 0) return undefined;
  return { uid: m.uid, gid: m.gid, containerUid: 0, containerGid: 0 };
}

/**
 * Removes dir if it holds nothing but empty dirs: the temporary layer dir of a build step whose
 * layer the store had already (every step of a cached rebuild that runs again). rmSync's
 * recursive removal loads Node's rimraf first (~1 ms). False, with nothing removed but empty
 * dirs, for anything else.
 */
function removeEmptyDirs(dir: string): boolean {
  try {
    for (const name of readdirSync(dir)) if (!removeEmptyDirs(path.join(dir, name))) return false;
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}
