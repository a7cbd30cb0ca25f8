// The public library API: everything the CLI does, as typed functions other Node programs can
// import. The CLI (src/cli) is a thin layer over this module.
import { Store } from "./store/store.js";
import { Containers, type CreateOptions } from "./container/run.js";
import { importImage, type ImportOptions } from "./image/import.js";
import type { ImageRecord } from "./store/images.js";
import type { ContainerRecord } from "./container/records.js";
import type { ImageConfig } from "./image/types.js";
import { familiarRepository, splitName } from "./image/reference.js";

export { Store } from "./store/store.js";
export { Containers, type CreateOptions } from "./container/run.js";
export type { ContainerRecord, ContainerState, ContainerStatus } from "./container/records.js";
export type { ImageRecord, LayerRecord } from "./store/images.js";
export type { ImageConfig, ContainerConfig, Manifest, Descriptor } from "./image/types.js";
export { parseReference, normaliseName, formatReference, familiarRepository, ReferenceError } from "./image/reference.js";
export { mergeCommand, mergeEnv, parseUserSpec, resolveUser } from "./container/spec.js";
export { TsrunError, NotFoundError } from "./errors.js";
export { stopContainer, killContainer, removeContainer, waitContainer, readLogs, signalNumber, type LogRecord, type LogOptions } from "./container/lifecycle.js";

export interface ImageSummary {
  id: string;
  repository: string;
  tag: string;
  /** The familiar form Docker prints ("busybox" for docker.io/library/busybox). */
  displayRepository: string;
  digest: string;
  created: string;
  /** Uncompressed size of all layers, bytes. */
  size: number;
}

export interface TsrunOptions {
  /** Store root; default $TSRUN_ROOT or $XDG_DATA_HOME/tsrun. */
  root?: string;
}

/** One handle on a store: images and containers. */
export class Tsrun {
  readonly store: Store;
  readonly containers: Containers;

  constructor(opts: TsrunOptions = {}) {
    this.store = new Store(opts.root);
    this.containers = new Containers(this.store);
  }

  importImage(opts: ImportOptions): Promise<ImageRecord> {
    return importImage(this.store, opts);
  }

  imageConfig(image: ImageRecord): ImageConfig {
    return JSON.parse(this.store.blobs.read(image.id).toString("utf8")) as ImageConfig;
  }

  /** One row per name (untagged images get one row with <none>), newest first. */
  listImages(): ImageSummary[] {
    const rows: ImageSummary[] = [];
    for (const image of this.store.images.list()) {
      const config = this.imageConfig(image);
      const size = image.layers.reduce((n, l) => n + l.size, 0);
      const created = config.created ?? image.added;
      const names = image.names.length > 0 ? image.names : [""];
      for (const name of names) {
        const { repository, tag } = name ? splitName(name) : { repository: "<none>", tag: "<none>" };
        const digest = image.repoDigests.find((d) => d.startsWith(`${repository}@`))?.split("@")[1] ?? "<none>";
        rows.push({ id: image.id, repository, tag, displayRepository: name ? familiarRepository(repository) : "<none>", digest, created, size });
      }
    }
    return rows.sort((a, b) => b.created.localeCompare(a.created));
  }

  /** Creates and starts a container under its own monitor; returns once it runs. */
  async runDetached(opts: CreateOptions): Promise<ContainerRecord> {
    const record = await this.containers.create(opts);
    try {
      return await this.containers.startDetached(record);
    } catch (err) {
      await this.containers.remove(record);
      throw err;
    }
  }

  /** Runs a container in the foreground and returns its exit status. */
  run(opts: CreateOptions): Promise<number> {
    return this.containers.run(opts);
  }
}
