// `container prune` and `system prune`: what Docker's do, minus networks (tsrun has no
// user-defined networks). Each part is an operation of its own, as in Docker: containers first
// (so their images become unused), then volumes, then images, then the build cache (dangling
// entries, as `builder prune`; with -a all of it, as `builder prune -a`).
import type { Containers } from "../container/run.js";
import { pruneBuildCache, pruneImages } from "../image/remove.js";
import { treeSize } from "./df.js";
import { pruneFilter } from "../container/filters.js";
import path from "node:path";
import { TsrunError } from "../errors.js";

export interface ContainerPruneResult {
  /** IDs of the containers removed. */
  removed: string[];
  /** Bytes of their writable layers. */
  reclaimed: number;
}

/**
 * Removes every container that is not running (created or exited), except those a command has
 * just created and not yet started (leased). All are taken out in one lock hold (renamed aside,
 * names released), then their files deleted.
 */
export async function pruneContainers(containers: Containers, filters: string[] = []): Promise<ContainerPruneResult> {
  const selected = pruneFilter(filters);
  const store = containers.store;
  const doomed = await store.locked(
    "container prune",
    "containers",
    () => {
      const leased = store.leases.inUse().containers;
      const out: { id: string; size: number; dir: string }[] = [];
      for (const record of containers.list()) {
        if (record.state.status === "running" || leased.has(record.id) || !selected(record)) continue;
        const size = treeSize(path.join(containers.records.containerDir(record.id), "upper"));
        out.push({ id: record.id, size, dir: containers.records.detach(record.id) });
        containers.records.releaseName(record.name, record.id);
      }
      return out;
    },
    (out) => store.removeTrees(out.map((d) => d.dir)),
  );
  return { removed: doomed.map((d) => d.id), reclaimed: doomed.reduce((n, d) => n + d.size, 0) };
}

export interface SystemPruneOptions {
  /** Every image no container uses, not only dangling ones. */
  all?: boolean;
  /** Also anonymous volumes no container uses (Docker 23 and later). */
  volumes?: boolean;
  /**
   * Docker's prune filters (until=, label=, label!=) for containers, images, volumes (label
   * only) and the build cache (until only: a label filter leaves it alone, its entries have none).
   */
  filters?: string[];
}

export interface SystemPruneResult {
  containers: string[];
  volumes: string[];
  /** Docker's image lines: "untagged: NAME", "deleted: sha256:..." */
  images: string[];
  /** Layers only the build cache held, deleted with it (chain IDs). */
  buildCache: string[];
  reclaimed: number;
}

export async function pruneSystem(containers: Containers, opts: SystemPruneOptions = {}): Promise<SystemPruneResult> {
  const filters = opts.filters ?? [];
  // Docker's rule, checked before anything is removed.
  if (opts.volumes && filters.some((f) => f.startsWith("until="))) throw new TsrunError('the "until" filter is not supported with "--volumes"');
  pruneFilter(filters);
  const pruned = await pruneContainers(containers, filters);
  let reclaimed = pruned.reclaimed;
  let volumes: string[] = [];
  if (opts.volumes) {
    const sizes = new Map(containers.volumes.list().map((v) => [v.Name, treeSize(containers.volumes.dataDir(v.Name))]));
    volumes = await containers.volumes.prune(false, (v) => containers.volumeUsers(v), filters);
    for (const v of volumes) reclaimed += sizes.get(v) ?? 0;
  }
  const images = await pruneImages(containers, opts.all ?? false, filters);
  reclaimed += images.reclaimed;
  // The build cache has creation times but no labels: until= applies to it, a label filter leaves it alone.
  const untilOnly = filters.filter((f) => f.startsWith("until="));
  const cache = untilOnly.length === filters.length ? await pruneBuildCache(containers, opts.all ?? false, untilOnly) : { lines: [], reclaimed: 0 };
  reclaimed += cache.reclaimed;
  return { containers: pruned.removed, volumes, images: images.lines, buildCache: cache.lines.map((l) => l.replace(/^deleted: /, "")), reclaimed };
}
