// `system df`: disk usage by images, containers, local volumes and build cache, with Docker's
// meaning of each column:
//  - Images: SIZE counts every layer once however many images share it; ACTIVE images are
//    those a container uses; RECLAIMABLE is what no active image needs (`image prune -a` frees it).
//  - Containers: SIZE is their writable layers (upper dirs); ACTIVE ones run; the others'
//    writable layers are reclaimable (`container prune`).
//  - Local Volumes: ACTIVE ones are mounted by a container; the others are reclaimable.
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

  return {
    rows: [
      { type: "Images", total: images.length, active: images.filter((i) => usedImages.has(i.id)).length, size: totalLayers, reclaimable: totalLayers - activeSize },
      { type: "Containers", total: all.length, active: running.length, size: sum(containerUsage), reclaimable: sum(containerUsage) - sum(running) },
      { type: "Local Volumes", total: volumeUsage.length, active: volumeUsage.filter((v) => v.links > 0).length, size: sum(volumeUsage), reclaimable: sum(volumeUsage.filter((v) => v.links === 0)) },
      // tsrun keeps no build cache yet.
      { type: "Build Cache", total: 0, active: 0, size: 0, reclaimable: 0 },
    ],
    images: imageUsage,
    containers: containerUsage,
    volumes: volumeUsage,
  };
}
