// `export`: a container's filesystem as one flat tar stream, no image metadata (that is `save`),
// readable by `import`. The storage worker mounts the container's layers read-only in its own
// mount namespace (the upper dir as the topmost lower layer: no work dir, nothing written) and
// tars the merged tree. Volume contents are not in it: the private mount has no volumes.
import { closeSync, mkdirSync, openSync, renameSync, rmSync } from "node:fs";
import { randomBytes } from "../random.js";
import path from "node:path";
import type { Containers } from "../container/run.js";
import { isRemapped } from "../userns.js";
import { TsrunError } from "../errors.js";
import { tempName } from "../store/atomic.js";

export interface ExportOptions {
  /** Container name, ID or ID prefix. */
  container: string;
  /** A file to write; without it the tar goes to standard output. */
  output?: string | undefined;
}

export async function exportContainer(containers: Containers, opts: ExportOptions): Promise<void> {
  const store = containers.store;
  const record = containers.get(opts.container);
  if (!opts.output && process.stdout.isTTY) {
    throw new TsrunError("cowardly refusing to save to a terminal. Use the -o flag or redirect");
  }
  const work = path.join(store.paths.tmp, `export-${process.pid}-${randomBytes(4).toString("hex")}`);
  const mountDir = path.join(work, "merged");
  mkdirSync(mountDir, { recursive: true });
  const userns = containers.usernsOf(record);
  // Short relative names keep deep lowerdir lists within a page; a container with its own id
  // mapping mounts its own copies of the layers, read in its own mapping.
  const lowers = isRemapped(userns) ? containers.imageLayerDirs(record) : [...record.layers].reverse().map((c) => store.layers.linkPath(c));
  const layers = [path.join(containers.records.containerDir(record.id), "upper"), ...lowers];
  // A read-only overlay needs two lower dirs at least: an image without layers gets an empty one.
  if (layers.length < 2) {
    mkdirSync(path.join(work, "empty"));
    layers.push(path.join(work, "empty"));
  }
  // -o: written beside the target and renamed when complete, so a failure leaves no half file.
  const partial = opts.output ? tempName(path.resolve(opts.output)) : undefined;
  let fd = 1;
  if (partial) {
    try {
      fd = openSync(partial, "wx", 0o644);
    } catch (err) {
      throw new TsrunError(`export: cannot write ${opts.output}: ${(err as Error).message}`);
    }
  }
  try {
    await store.exportTree({ cwd: store.paths.root, layers, mountDir }, fd, userns);
    if (partial && opts.output) renameSync(partial, path.resolve(opts.output));
  } catch (err) {
    if (partial) rmSync(partial, { force: true });
    throw new TsrunError(`export ${opts.container}: ${(err as Error).message}`);
  } finally {
    if (partial) closeSync(fd);
    rmSync(work, { recursive: true, force: true });
  }
}
