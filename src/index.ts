// The public library API: everything the CLI does, as typed functions other Node programs can
// import. The CLI (src/cli) is a thin layer over this module.
import { Store } from "./store/store.js";
import { Containers, type CreateOptions } from "./container/run.js";
import { importImage, type ImportOptions } from "./image/import.js";
import type { ImageRecord } from "./store/images.js";
import type { ContainerRecord } from "./container/records.js";
import type { ImageConfig } from "./image/types.js";
import { familiarRepository, splitName } from "./image/reference.js";
import { commitContainer, type CommitOptions } from "./image/commit.js";
import { exportContainer, type ExportOptions } from "./image/export.js";
import { containerChanges } from "./image/diff.js";
import type { Change } from "./store/pack.js";
import { pullImage, type PullOptions, type PullResult } from "./image/registry/pull.js";
import { pushImage, type PushOptions, type PushResult } from "./image/registry/push.js";
import { saveImages, type SaveOptions } from "./image/archive/save.js";
import { loadArchive, type LoadOptions, type LoadResult } from "./image/archive/load.js";
import type { BuildOptions } from "./build/builder.js";
import { checkStore, type CheckOptions, type CheckReport } from "./system/check.js";
import { diskUsage, type DiskUsage } from "./system/df.js";
import { pruneContainers, pruneSystem, type ContainerPruneResult, type SystemPruneOptions, type SystemPruneResult } from "./system/prune.js";
import { systemInfo, type SystemInfo } from "./system/info.js";
import { versionInfo, type VersionInfo } from "./system/version.js";

export { Store } from "./store/store.js";
export { Containers, type CreateOptions } from "./container/run.js";
export type { SecurityFlags, SecurityConfig, Ulimit, Resources } from "./container/security/options.js";
export type { UsernsMode } from "./userns.js";
export type { ContainerRecord, ContainerState, ContainerStatus } from "./container/records.js";
export type { ImageRecord, LayerRecord } from "./store/images.js";
export type { ImageConfig, ContainerConfig, Manifest, Descriptor } from "./image/types.js";
export { parseReference, normaliseName, formatReference, familiarRepository, ReferenceError } from "./image/reference.js";
export { mergeCommand, mergeEnv, parseUserSpec, resolveUser } from "./container/spec.js";
export { TsrunError, NotFoundError } from "./errors.js";
export type { CommitOptions } from "./image/commit.js";
export type { ExportOptions } from "./image/export.js";
export type { Change, ChangeKind } from "./store/pack.js";
export { login, logout, type LoginOptions } from "./image/registry/login.js";
export type { PullOptions, PullResult } from "./image/registry/pull.js";
export type { PushOptions, PushResult } from "./image/registry/push.js";
export type { TransferListener, BlobOutcome } from "./image/registry/progress.js";
export { RegistryError } from "./image/registry/client.js";
export type { SaveOptions, ArchiveFormat } from "./image/archive/save.js";
export type { LoadOptions, LoadResult, LoadedImage } from "./image/archive/load.js";
export type { BuildOptions } from "./build/builder.js";
export { BuildError, BuildCancelledError } from "./build/errors.js";
export type { CheckOptions, CheckReport, Finding, FindingKind } from "./system/check.js";
export type { DiskUsage, UsageRow, ImageUsage, ContainerUsage, VolumeUsage } from "./system/df.js";
export type { ContainerPruneResult, SystemPruneOptions, SystemPruneResult } from "./system/prune.js";
export type { SystemInfo, IdMap } from "./system/info.js";
export type { VersionInfo } from "./system/version.js";
export { stopContainer, killContainer, pauseContainer, unpauseContainer, removeContainer, renameContainer, waitContainer, readLogs, signalNumber, type LogRecord, type LogOptions } from "./container/lifecycle.js";

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
  /** The image config's labels. */
  labels: Record<string, string>;
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

  /** Pulls an image from a registry into the store (OCI distribution v2). */
  pull(opts: PullOptions): Promise<PullResult> {
    return pullImage(this.store, opts);
  }

  /** Pushes a stored image to a registry, its manifest byte for byte. */
  push(opts: PushOptions): Promise<PushResult> {
    return pushImage(this.store, opts);
  }

  /** Writes images to a docker-archive or oci-archive (a file, or a stream such as stdout). */
  save(opts: SaveOptions): Promise<void> {
    return saveImages(this.store, opts);
  }

  /** Loads every image of a docker-archive or oci-archive (compressed or not) into the store. */
  load(opts: LoadOptions): Promise<LoadResult> {
    return loadArchive(this.store, opts);
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
        rows.push({ id: image.id, repository, tag, displayRepository: name ? familiarRepository(repository) : "<none>", digest, created, size, labels: config.config?.Labels ?? {} });
      }
    }
    return rows.sort((a, b) => b.created.localeCompare(a.created));
  }

  /** Creates and starts a container under its own monitor; returns once it runs. */
  runDetached(opts: CreateOptions): Promise<ContainerRecord> {
    return this.containers.runDetached(opts);
  }

  /** A new image from a container's changes (`commit`). */
  commit(opts: CommitOptions): Promise<ImageRecord> {
    return commitContainer(this.containers, opts);
  }

  /** A container's filesystem as a tar stream, to a file or standard output (`export`). */
  exportContainer(opts: ExportOptions): Promise<void> {
    return exportContainer(this.containers, opts);
  }

  /** What a container changed against its image (`diff`). */
  diff(container: string): Promise<Change[]> {
    return containerChanges(this.containers, container);
  }

  /** Builds an image from a Dockerfile and a context (`build`). */
  async build(opts: BuildOptions): Promise<ImageRecord> {
    // Loaded on use: every other command starts without the builder's code.
    const { buildImage } = await import("./build/builder.js");
    return buildImage(this.containers, opts);
  }

  /** Runs a container in the foreground and returns its exit status. */
  run(opts: CreateOptions): Promise<number> {
    return this.containers.run(opts);
  }

  /** Checks the store's consistency and, with repair, fixes what it can (`system check`). */
  checkStore(opts: CheckOptions = {}): Promise<CheckReport> {
    return checkStore(this.containers, opts);
  }

  /** Disk usage by images, containers, volumes and build cache (`system df`). */
  diskUsage(): DiskUsage {
    return diskUsage(this.containers);
  }

  /** Removes every container that is not running (`container prune`). */
  pruneContainers(): Promise<ContainerPruneResult> {
    return pruneContainers(this.containers);
  }

  /** Stopped containers, dangling (or all unused) images, optionally unused anonymous volumes (`system prune`). */
  pruneSystem(opts: SystemPruneOptions = {}): Promise<SystemPruneResult> {
    return pruneSystem(this.containers, opts);
  }

  /** Storage paths, id mapping, network helper and kernel features (`info`). */
  info(): Promise<SystemInfo> {
    return systemInfo(this.containers);
  }

  /** tsrun's version and platform (`version`). */
  version(): VersionInfo {
    return versionInfo();
  }
}
