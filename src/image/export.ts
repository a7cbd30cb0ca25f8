// `export`: a container's filesystem as one flat tar stream, no image metadata (that is `save`),
// readable by `import`. The storage worker reads the container's upper dir and its image's layer
// dirs, merged as overlayfs merges them (store/pack.ts), and tars the result. Volume contents are
// not in it: volumes are mounted, never part of the layers.
import { closeSync, openSync, renameSync } from "node:fs";
import path from "node:path";
import type { Containers } from "../container/run.js";
import { TsrunError } from "../errors.js";
import { tempName } from "../store/atomic.js";
import { removeFile } from "../remove-file.js";

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
  // The upper dir over the image's layers (a container with its own id mapping has its own
  // copies of them, read in its own mapping).
  const layers = [path.join(containers.records.containerDir(record.id), "upper"), ...containers.imageLayerDirs(record)];
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
    await store.exportTree({ layers }, fd, containers.usernsOf(record));
    if (partial && opts.output) renameSync(partial, path.resolve(opts.output));
  } catch (err) {
    if (partial) removeFile(partial);
    throw new TsrunError(`export ${opts.container}: ${(err as Error).message}`);
  } finally {
    if (partial) closeSync(fd);
  }
}
