// The store: blobs, unpacked layers, the image index, and the storage work that must run inside
// the user namespace (files there belong to many subordinate uids).
import { closeSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Socket } from "node:net";
import type { Writable } from "node:stream";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { BlobStore } from "./blobs.js";
import { ImageIndex } from "./images.js";
import { LayerStore } from "./layers.js";
import { storePaths, type StorePaths } from "./paths.js";
import { withLock } from "./atomic.js";
import { native, packageRoot } from "../native.js";
import { runInUserNamespace, currentMapping, maxMappedId } from "../userns.js";
import type { Change, ExportJob, PackJob, PackResult, UpperScanSpec } from "./pack.js";

export interface UnpackJob {
  /** The layer blob as stored (gzip, zstd or plain tar); "-": the helper's standard input. */
  blob: string;
  /** Directory whose diff/ receives the files. */
  dest: string;
}

export interface UnpackJobResult {
  diffId: string;
  /** Absent for a layer streamed in (whoever streamed it checked the bytes' digest). */
  compressedDigest?: string;
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

  constructor(root?: string) {
    this.paths = storePaths(root);
    this.blobs = new BlobStore(this.paths.blobs);
    this.layers = new LayerStore(this.paths.layers, this.paths.layerLinks);
    this.images = new ImageIndex(this.paths.images);
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

  /**
   * Unpacks one layer whose bytes are written to `input` as they arrive (a pull streams each
   * layer from the registry straight into its own helper). End `input` when all bytes are
   * written, or destroy it to abandon the unpack; `result` settles when the helper has exited.
   */
  unpackStream(dest: string): { input: Writable; result: Promise<UnpackJobResult> } {
    const [readFd, writeFd] = native().pipe();
    const input = new Socket({ fd: writeFd, readable: false, writable: true });
    let result: Promise<UnpackJobResult>;
    try {
      result = this.unpack([{ blob: "-", dest }], { stdin: readFd }).then((results) => {
        const first = results[0];
        if (!first) throw new Error("the storage worker returned no result for the layer");
        return first;
      });
    } finally {
      // unpack() starts the helper before its first await, so it already holds its copy of
      // the read end. With ours closed, a helper that dies makes writes fail (EPIPE)
      // instead of filling a pipe nobody reads.
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
    writeFileSync(
      jobFile,
      JSON.stringify({ jobs, resultFile, maxUid: maxMappedId(mapping, "uid"), maxGid: maxMappedId(mapping, "gid") }),
    );
    try {
      const run = await runInUserNamespace([process.execPath, workerScript(), "unpack", jobFile], process.env, opts.stdin === undefined ? {} : { stdin: opts.stdin });
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
  private async runWorkerJob<Job, Result>(command: string, job: Job, opts: { stdout?: number } = {}): Promise<Result | undefined> {
    mkdirSync(this.paths.tmp, { recursive: true });
    const id = `${process.pid}-${randomBytes(4).toString("hex")}`;
    const jobFile = path.join(this.paths.tmp, `${command}-${id}.json`);
    const resultFile = path.join(this.paths.tmp, `${command}-${id}.result.json`);
    writeFileSync(jobFile, JSON.stringify({ job, resultFile }));
    try {
      const run = await runInUserNamespace([process.execPath, workerScript(), command, jobFile], process.env, opts.stdout === undefined ? {} : { stdout: opts.stdout });
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
  async pack(job: PackJob): Promise<PackResult> {
    const result = await this.runWorkerJob<PackJob, PackResult>("pack", job);
    if (!result) throw new Error("the storage worker returned no result for pack");
    return result;
  }

  /** A container's changes against its image (diff), read inside the user namespace. */
  async changes(spec: UpperScanSpec): Promise<Change[]> {
    return (await this.runWorkerJob<UpperScanSpec, Change[]>("changes", spec)) ?? [];
  }

  /** Writes a container's merged root as tar to outFd (export), mounted inside the user namespace. */
  async exportTree(job: ExportJob, outFd: number): Promise<void> {
    await this.runWorkerJob<ExportJob, never>("export", job, { stdout: outFd });
  }
}
