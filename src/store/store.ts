// The store: blobs, unpacked layers, the image index, and the storage work that must run inside
// the user namespace (files there belong to many subordinate uids).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { BlobStore } from "./blobs.js";
import { ImageIndex } from "./images.js";
import { LayerStore } from "./layers.js";
import { BuildCacheIndex } from "./build-cache.js";
import { storePaths, type StorePaths } from "./paths.js";
import { withLock } from "./atomic.js";
import { packageRoot } from "../native.js";
import { runInUserNamespace, currentMapping, maxMappedId, type UsernsMode } from "../userns.js";
import type { Change, ExportJob, PackJob, PackResult, UpperScanSpec } from "./pack.js";

export interface UnpackJob {
  /** The layer blob as stored (gzip, zstd or plain tar). */
  blob: string;
  /** Directory whose diff/ receives the files. */
  dest: string;
}

export interface UnpackJobResult {
  diffId: string;
  compressedDigest: string;
  size: number;
  entries: number;
  warnings: string[];
}

// Bundled (dist/worker.cjs) so that it starts fast and needs no node_modules at run time.
const workerScript = (): string => path.join(packageRoot(), "dist", "worker.cjs");

export class Store {
  readonly paths: StorePaths;
  readonly blobs: BlobStore;
  readonly layers: LayerStore;
  readonly images: ImageIndex;
  readonly buildCache: BuildCacheIndex;

  constructor(root?: string) {
    this.paths = storePaths(root);
    this.blobs = new BlobStore(this.paths.blobs);
    this.layers = new LayerStore(this.paths.layers, this.paths.layerLinks);
    this.images = new ImageIndex(this.paths.images);
    this.buildCache = new BuildCacheIndex(this.paths.root);
  }

  /** Serialises changes to shared state (the image index, names, layer creation). */
  lock<T>(fn: () => Promise<T> | T): Promise<T> {
    mkdirSync(this.paths.root, { recursive: true, mode: 0o700 });
    return withLock(this.paths.lockFile, fn);
  }

  /**
   * Removes a directory tree. Files owned by subordinate uids can only be removed from inside
   * the user namespace, so that is the fallback when the host-side removal is refused.
   */
  async removeTree(dir: string): Promise<void> {
    if (!existsSync(dir)) return;
    try {
      rmSync(dir, { recursive: true, force: true });
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EACCES" && code !== "EPERM" && code !== "ENOTEMPTY") throw err;
    }
    const result = await runInUserNamespace(["rm", "-rf", "--one-file-system", "--", dir]);
    if (result.code !== 0) throw new Error(`cannot remove ${dir}: ${result.stderr.trim() || `rm exited ${result.code}`}`);
  }

  /** Unpacks layer blobs inside the user namespace (one helper process for all of them). */
  async unpack(jobs: UnpackJob[]): Promise<UnpackJobResult[]> {
    mkdirSync(this.paths.tmp, { recursive: true });
    const id = `${process.pid}-${randomBytes(4).toString("hex")}`;
    const jobFile = path.join(this.paths.tmp, `unpack-${id}.json`);
    const resultFile = path.join(this.paths.tmp, `unpack-${id}.result.json`);
    const mapping = currentMapping();
    writeFileSync(
      jobFile,
      JSON.stringify({ jobs, resultFile, maxUid: maxMappedId(mapping, "uid"), maxGid: maxMappedId(mapping, "gid") }),
    );
    try {
      const run = await runInUserNamespace([process.execPath, workerScript(), "unpack", jobFile]);
      if (run.code !== 0) {
        const lines = run.stderr.trim().split("\n");
        throw new Error(lines[lines.length - 1] || `layer unpacking failed (exit ${run.code})`);
      }
      return JSON.parse(readFileSync(resultFile, "utf8")) as UnpackJobResult[];
    } finally {
      rmSync(jobFile, { force: true });
      rmSync(resultFile, { force: true });
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
    writeFileSync(jobFile, JSON.stringify({ job, resultFile }));
    try {
      const run = await runInUserNamespace([process.execPath, workerScript(), command, jobFile], process.env, {
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
      rmSync(jobFile, { force: true });
      rmSync(resultFile, { force: true });
    }
  }

  /**
   * Turns a container's upper dir into a layer (commit): an uncompressed tar at job.tarFile and
   * the same content as a layer dir in job.layerDir/diff, both inside the user namespace.
   */
  async pack(job: PackJob, userns?: UsernsMode): Promise<PackResult> {
    const result = await this.runWorkerJob<PackJob, PackResult>("pack", job, userns ? { userns } : {});
    if (!result) throw new Error("the storage worker returned no result for pack");
    return result;
  }

  /** A container's changes against its image (diff), read inside the user namespace. */
  async changes(spec: UpperScanSpec): Promise<Change[]> {
    return (await this.runWorkerJob<UpperScanSpec, Change[]>("changes", spec)) ?? [];
  }

  /** Writes a container's merged root as tar to outFd (export), mounted inside the user namespace. */
  async exportTree(job: ExportJob, outFd: number, userns?: UsernsMode): Promise<void> {
    // A container with its own id mapping (keep-id) is read in that mapping.
    await this.runWorkerJob<ExportJob, never>("export", job, { stdout: outFd, ...(userns ? { userns } : {}) });
  }
}
