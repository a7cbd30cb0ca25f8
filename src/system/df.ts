// `system df`: disk usage by images, containers, local volumes and build cache, with Docker's
// meaning of each column:
//  - Images: SIZE counts every layer once however many images share it; ACTIVE images are
//    those a container uses; RECLAIMABLE is what no active image needs (`image prune -a` frees it).
//  - Containers: SIZE is their writable layers (upper dirs); ACTIVE ones run; the others'
//    writable layers are reclaimable (`container prune`).
//  - Local Volumes: ACTIVE ones are mounted by a container; the others are reclaimable.
//  - Build Cache: BuildKit's records are, here, the layers the cache index holds and the RUN
//    --mount=type=cache dirs. A layer an image or container also has is SHARED and counts in
//    neither SIZE nor RECLAIMABLE (pruning the cache would not free it); ACTIVE records are
//    used by a build in progress (leased), and are not reclaimable.
import { lstatSync, readdirSync } from "node:fs";
import path from "node:path";
import type { Containers } from "../container/run.js";
import type { ContainerRecord } from "../container/records.js";
import type { ImageRecord } from "../store/images.js";
import type { VolumeRecord } from "../container/volumes.js";

/** Bytes of the regular files and symlinks under dir (hardlinks once); unreadable parts are skipped. */
export function treeSize(dir: string): number {
  let total = 0;
  const seen = new Set<string>();
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop() as string;
    let names: string[];
    try {
      names = readdirSync(current);
    } catch {
      continue;
    }
    for (const name of names) {
      const file = path.join(current, name);
      let st;
      try {
        st = lstatSync(file, { bigint: false });
      } catch {
        continue;
      }
      if (st.isDirectory()) stack.push(file);
      else if (st.isFile() || st.isSymbolicLink()) {
        const key = `${st.dev}:${st.ino}`;
        if (st.nlink > 1) {
          if (seen.has(key)) continue;
          seen.add(key);
        }
        total += st.size;
      }
    }
  }
  return total;
}

export interface ImageUsage {
  image: ImageRecord;
  /** All its layers. */
  size: number;
  /** Of which layers other images have too. */
  sharedSize: number;
  containers: number;
}

export interface ContainerUsage {
  container: ContainerRecord;
  /** The writable layer. */
  size: number;
  /** Volumes it mounts. */
  volumes: number;
}

export interface VolumeUsage {
  volume: VolumeRecord;
  size: number;
  /** Containers that mount it. */
  links: number;
}

export interface BuildCacheUsage {
  /** Chain ID of a layer, or the cache mount dir's name. */
  id: string;
  /** BuildKit's record types: "regular" (a layer), "exec.cachemount" (RUN --mount=type=cache). */
  type: "regular" | "exec.cachemount";
  size: number;
  /** The first build step that made it (empty for cache mounts). */
  created: string;
  /** Cache entries that end with it (steps whose result it is). */
  usage: number;
  /** An image or container has it too. */
  shared: boolean;
  /** A build in progress uses it. */
  inUse: boolean;
}

export interface UsageRow {
  type: "Images" | "Containers" | "Local Volumes" | "Build Cache";
  total: number;
  active: number;
  size: number;
  reclaimable: number;
}

export interface DiskUsage {
  rows: UsageRow[];
  images: ImageUsage[];
  containers: ContainerUsage[];
  volumes: VolumeUsage[];
  buildCache: BuildCacheUsage[];
}

function buildCacheUsage(containers: Containers, images: ImageRecord[], all: ContainerRecord[]): BuildCacheUsage[] {
  const store = containers.store;
  const held = new Set([...images.flatMap((i) => i.layers.map((l) => l.chainId)), ...all.flatMap((c) => c.layers)]);
  const leased = store.leases.inUse().layers;
  const records = new Map<string, BuildCacheUsage>();
  for (const entry of store.buildCache.load().values()) {
    const top = entry.layers.at(-1)?.chainId;
    for (const l of entry.layers) {
      let r = records.get(l.chainId);
      if (!r) {
        r = { id: l.chainId, type: "regular", size: l.size, created: entry.created, usage: 0, shared: held.has(l.chainId), inUse: leased.has(l.chainId) };
        records.set(l.chainId, r);
      }
      if (entry.created < r.created) r.created = entry.created;
      if (l.chainId === top && !entry.emptyLayer) r.usage++;
    }
  }
  const mounts = path.join(store.buildCache.mountsDir, "cache");
  let names: string[] = [];
  try {
    names = readdirSync(mounts);
  } catch {
    // No RUN --mount=type=cache yet.
  }
  const out = [...records.values()];
  for (const name of names) out.push({ id: name, type: "exec.cachemount", size: treeSize(path.join(mounts, name)), created: "", usage: 0, shared: false, inUse: false });
  return out;
}

export function diskUsage(containers: Containers): DiskUsage {
  const store = containers.store;
  const images = store.images.list();
  const all = containers.list();

  const layerSize = new Map<string, number>();
  const layerImages = new Map<string, number>();
  for (const image of images) {
    for (const l of new Set(image.layers.map((x) => x.chainId))) layerImages.set(l, (layerImages.get(l) ?? 0) + 1);
    for (const l of image.layers) layerSize.set(l.chainId, l.size);
  }
  const usedImages = new Set(all.map((c) => c.image));
  const imageUsage = images.map((image): ImageUsage => {
    const chains = [...new Set(image.layers.map((l) => l.chainId))];
    return {
      image,
      size: chains.reduce((n, c) => n + (layerSize.get(c) ?? 0), 0),
      sharedSize: chains.filter((c) => (layerImages.get(c) ?? 0) > 1).reduce((n, c) => n + (layerSize.get(c) ?? 0), 0),
      containers: all.filter((c) => c.image === image.id).length,
    };
  });
  const totalLayers = [...layerSize.values()].reduce((a, b) => a + b, 0);
  const activeLayers = new Set(images.filter((i) => usedImages.has(i.id)).flatMap((i) => i.layers.map((l) => l.chainId)));
  const activeSize = [...activeLayers].reduce((n, c) => n + (layerSize.get(c) ?? 0), 0);

  const containerUsage = all.map((c): ContainerUsage => ({
    container: c,
    size: treeSize(path.join(containers.records.containerDir(c.id), "upper")),
    volumes: (c.hostConfig.mounts ?? []).filter((m) => m.type === "volume").length,
  }));
  const running = containerUsage.filter((c) => c.container.state.status === "running");

  const volumeUsage = containers.volumes.list().map((v): VolumeUsage => ({
    volume: v,
    size: treeSize(containers.volumes.dataDir(v.Name)),
    links: all.filter((c) => (c.hostConfig.mounts ?? []).some((m) => m.type === "volume" && m.source === v.Name)).length,
  }));
  const sum = (xs: { size: number }[]): number => xs.reduce((n, x) => n + x.size, 0);
  const cache = buildCacheUsage(containers, images, all);
  const cacheOwn = cache.filter((r) => !r.shared);

  return {
    rows: [
      { type: "Images", total: images.length, active: images.filter((i) => usedImages.has(i.id)).length, size: totalLayers, reclaimable: totalLayers - activeSize },
      { type: "Containers", total: all.length, active: running.length, size: sum(containerUsage), reclaimable: sum(containerUsage) - sum(running) },
      { type: "Local Volumes", total: volumeUsage.length, active: volumeUsage.filter((v) => v.links > 0).length, size: sum(volumeUsage), reclaimable: sum(volumeUsage.filter((v) => v.links === 0)) },
      { type: "Build Cache", total: cache.length, active: cache.filter((r) => r.inUse).length, size: sum(cacheOwn), reclaimable: sum(cacheOwn.filter((r) => !r.inUse)) },
    ],
    images: imageUsage,
    containers: containerUsage,
    volumes: volumeUsage,
    buildCache: cache,
  };
}
