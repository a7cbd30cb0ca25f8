// The Tsrun handle: one object per store with a method for every command. Only what `run`
// and the container commands need is loaded with it; the registry, archives, commit, export,
// checks and the builder are imported on first use, so a short command starts without their
// code (and without zlib, tar, the template engine...). src/index.ts re-exports this class.
import { Store } from "./store/store.js";
import { Containers, type CreateOptions } from "./container/run.js";
import type { ImportOptions } from "./image/import.js";
import type { ImageRecord } from "./store/images.js";
import type { ContainerRecord } from "./container/records.js";
import type { ImageConfig } from "./image/types.js";
import { familiarRepository, splitName } from "./image/reference.js";
import type { CommitOptions } from "./image/commit.js";
import type { ExportOptions } from "./image/export.js";
import type { Change } from "./store/pack.js";
import type { ContainerSize } from "./container/size.js";
import type { ContainerStats } from "./container/stats.js";
import type { PullOptions, PullResult } from "./image/registry/pull.js";
import type { PushOptions, PushResult } from "./image/registry/push.js";
import type { SaveOptions } from "./image/archive/save.js";
import type { LoadOptions, LoadResult } from "./image/archive/load.js";
import type { BuildOptions } from "./build/builder.js";
import type { CheckOptions, CheckReport } from "./system/check.js";
import { diskUsage, type DiskUsage } from "./system/df.js";
import { loadRegistriesConfig } from "./image/registry/registries-conf.js";
import { localCandidates } from "./image/registry/short-names.js";
import type { ContainerPruneResult, SystemPruneOptions, SystemPruneResult } from "./system/prune.js";
import type { SystemInfo } from "./system/info.js";
import { versionInfo, type VersionInfo } from "./system/version.js";

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
  /** No tag names the image (Docker's dangling=true): untagged, or known only by repo@digest. */
  dangling: boolean;
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
    // A short name the store lacks under Docker's name may be there under another (an alias,
    // localhost/NAME, a search registry's): registries.conf is read only then.
    this.store.images.alternativeNames = (query) => localCandidates(query, loadRegistriesConfig(process.env, true).shortNames);
    this.containers = new Containers(this.store);
  }

  async importImage(opts: ImportOptions): Promise<ImageRecord> {
    const { importImage } = await import("./image/import.js");
    return importImage(this.store, opts);
  }

  /** Pulls an image from a registry into the store (OCI distribution v2). */
  async pull(opts: PullOptions): Promise<PullResult> {
    const { pullImage } = await import("./image/registry/pull.js");
    return pullImage(this.store, opts);
  }

  /** A repository's tags in its registry (what `pull --all-tags` pulls). */
  async listTags(opts: import("./image/registry/tags.js").ListTagsOptions): Promise<{ repository: string; tags: string[] }> {
    const { listTags } = await import("./image/registry/tags.js");
    return listTags(opts);
  }

  /** Pushes a stored image to a registry, its manifest byte for byte. */
  async push(opts: PushOptions): Promise<PushResult> {
    const { pushImage } = await import("./image/registry/push.js");
    return pushImage(this.store, opts);
  }

  /** Writes images to a docker-archive or oci-archive (a file, or a stream such as stdout). */
  async save(opts: SaveOptions): Promise<void> {
    const { saveImages } = await import("./image/archive/save.js");
    return saveImages(this.store, opts);
  }

  /** Loads every image of a docker-archive or oci-archive (compressed or not) into the store. */
  async load(opts: LoadOptions): Promise<LoadResult> {
    const { loadArchive } = await import("./image/archive/load.js");
    return loadArchive(this.store, opts);
  }

  imageConfig(image: ImageRecord): ImageConfig {
    return JSON.parse(this.store.blobs.read(image.id).toString("utf8")) as ImageConfig;
  }

  /** One row per name (untagged images: one per repository they were pulled from by digest, or <none>), newest first. */
  listImages(): ImageSummary[] {
    const rows: ImageSummary[] = [];
    for (const image of this.store.images.list()) {
      const config = this.imageConfig(image);
      const size = image.layers.reduce((n, l) => n + l.size, 0);
      const created = config.created ?? image.added;
      const labels = config.config?.Labels ?? {};
      const dangling = image.names.length === 0;
      const digestOf = (repository: string): string => image.repoDigests.find((d) => d.startsWith(`${repository}@`))?.slice(repository.length + 1) ?? "<none>";
      for (const name of image.names) {
        const { repository, tag } = splitName(name);
        rows.push({ id: image.id, repository, tag, displayRepository: familiarRepository(repository), digest: digestOf(repository), created, size, labels, dangling });
      }
      // An image known only by digest (pulled by digest, or its tags removed) is listed under
      // the repositories it came from with tag <none>, as Docker and Podman list it. A tagged
      // image gets no such rows: `push IMAGE OTHER/NAME` records where it went (for blob mounts
      // and RepoDigests), which must not look like an untagged copy.
      const digestOnly = dangling ? [...new Set(image.repoDigests.map((d) => d.slice(0, d.indexOf("@"))))].filter((r) => r !== "") : [];
      for (const repository of digestOnly) {
        rows.push({ id: image.id, repository, tag: "<none>", displayRepository: familiarRepository(repository), digest: digestOf(repository), created, size, labels, dangling });
      }
      if (dangling && digestOnly.length === 0) {
        rows.push({ id: image.id, repository: "<none>", tag: "<none>", displayRepository: "<none>", digest: "<none>", created, size, labels, dangling });
      }
    }
    return rows.sort((a, b) => b.created.localeCompare(a.created));
  }

  /** Creates and starts a container under its own monitor; returns once it runs. */
  runDetached(opts: CreateOptions): Promise<ContainerRecord> {
    return this.containers.runDetached(opts);
  }

  /** A new image from a container's changes (`commit`). */
  async commit(opts: CommitOptions): Promise<ImageRecord> {
    const { commitContainer } = await import("./image/commit.js");
    return commitContainer(this.containers, opts);
  }

  /** A container's filesystem as a tar stream, to a file or standard output (`export`). */
  async exportContainer(opts: ExportOptions): Promise<void> {
    const { exportContainer } = await import("./image/export.js");
    return exportContainer(this.containers, opts);
  }

  /** Containers' writable layer and root filesystem sizes, by ID (`ps -s`). */
  async containerSizes(records: ContainerRecord[]): Promise<Map<string, ContainerSize>> {
    const { containerSizes } = await import("./container/size.js");
    return containerSizes(this.containers, records);
  }

  /** Containers' resource usage over intervalMs, read from /proc (`stats`). */
  async containerStats(records: ContainerRecord[], intervalMs = 1000): Promise<ContainerStats[]> {
    const { containerStats } = await import("./container/stats.js");
    const { securityOf } = await import("./container/security/plan.js");
    return containerStats(records, intervalMs, (r) => securityOf(r).resources?.memory);
  }

  /** What a container changed against its image (`diff`). */
  async diff(container: string): Promise<Change[]> {
    const { containerChanges } = await import("./image/diff.js");
    return containerChanges(this.containers, container);
  }

  /** Builds an image from a Dockerfile and a context (`build`). */
  async build(opts: BuildOptions): Promise<ImageRecord> {
    const { buildImage } = await import("./build/builder.js");
    return buildImage(this.containers, opts);
  }

  /** Runs a container in the foreground and returns its exit status. */
  run(opts: CreateOptions): Promise<number> {
    return this.containers.run(opts);
  }

  /** Checks the store's consistency and, with repair, fixes what it can (`system check`). */
  async checkStore(opts: CheckOptions = {}): Promise<CheckReport> {
    const { checkStore } = await import("./system/check.js");
    return checkStore(this.containers, opts);
  }

  /** Disk usage by images, containers, volumes and build cache (`system df`). */
  diskUsage(): DiskUsage {
    return diskUsage(this.containers);
  }

  /** Removes every container that is not running (`container prune`). */
  async pruneContainers(filters: string[] = []): Promise<ContainerPruneResult> {
    const { pruneContainers } = await import("./system/prune.js");
    return pruneContainers(this.containers, filters);
  }

  /** Stopped containers, dangling (or all unused) images, optionally unused anonymous volumes (`system prune`). */
  async pruneSystem(opts: SystemPruneOptions = {}): Promise<SystemPruneResult> {
    const { pruneSystem } = await import("./system/prune.js");
    return pruneSystem(this.containers, opts);
  }

  /** Storage paths, id mapping, network helper and kernel features (`info`). */
  async info(): Promise<SystemInfo> {
    const { systemInfo } = await import("./system/info.js");
    return systemInfo(this.containers);
  }

  /** tsrun's version and platform (`version`). */
  version(): VersionInfo {
    return versionInfo();
  }
}
