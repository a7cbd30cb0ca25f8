// What the store must keep, and taking out the rest. A layer dir stays while an image, a
// container (its overlay lower dirs), a build cache entry or an operation in flight (a lease)
// names its chain; a blob stays while an image (config, manifest, layer blobs), a container (its
// image's config), a build cache entry or a lease names it. Everything else under a final name is garbage: what an interrupted
// removal had yet to delete, what a killed pull had downloaded.
//
// Removal is in two steps, so that the store lock is held only for renames: under the lock the
// garbage layers are detached (renamed to temporary names, short links removed) and garbage
// blobs unlinked; after it, the detached dirs are deleted (inside the user namespace).
import type { Store } from "../store/store.js";
import type { ImageRecord } from "../store/images.js";
import type { ContainerRecord } from "../container/records.js";
import type { InUse } from "../store/leases.js";
import type { BuildCacheEntry } from "../store/build-cache.js";

export interface References {
  layers: Set<string>;
  blobs: Set<string>;
}

/**
 * Everything images, containers, build cache entries and live leases refer to. The build cache
 * keeps its layers (and their blobs) alive like an image does, so a rebuild after `rmi` reuses
 * them; `image prune` and `builder prune` drop cache entries first (image/remove.ts).
 */
export function liveReferences(images: ImageRecord[], containers: ContainerRecord[], inUse: InUse, cache: Iterable<BuildCacheEntry>): References {
  const layers = new Set<string>(inUse.layers);
  const blobs = new Set<string>(inUse.blobs);
  for (const entry of cache) {
    for (const l of entry.layers) {
      layers.add(l.chainId);
      blobs.add(l.digest);
    }
  }
  for (const image of images) {
    blobs.add(image.id);
    blobs.add(image.manifest);
    for (const l of image.layers) {
      layers.add(l.chainId);
      blobs.add(l.digest);
    }
  }
  for (const c of containers) {
    blobs.add(c.image);
    for (const chain of c.layers) layers.add(chain);
  }
  for (const id of inUse.images) blobs.add(id);
  return { layers, blobs };
}

/** Layer dirs and blobs under final names that nothing refers to. */
export function unreferenced(store: Store, refs: References): { layers: string[]; blobs: string[] } {
  return {
    layers: store.layers.list().filter((c) => !refs.layers.has(c)),
    blobs: store.blobs.list().filter((b) => !refs.blobs.has(b)),
  };
}

export interface Detached {
  /** Chain IDs taken out, with their size when known. */
  layers: { chainId: string; size: number }[];
  blobs: string[];
  /** Temporary dirs to delete once the lock is released (Store.removeTrees). */
  dirs: string[];
}

/** Under the lock: takes every unreferenced layer and blob out of the store. */
export function detachGarbage(store: Store, refs: References): Detached {
  const garbage = unreferenced(store, refs);
  const out: Detached = { layers: [], blobs: [], dirs: [] };
  for (const chainId of garbage.layers) {
    let size = 0;
    try {
      size = store.layers.meta(chainId).size;
    } catch {
      // Incomplete: no size recorded.
    }
    const dir = store.layers.detach(chainId);
    if (dir) {
      out.dirs.push(dir);
      out.layers.push({ chainId, size });
    }
  }
  for (const digest of garbage.blobs) {
    store.blobs.remove(digest);
    out.blobs.push(digest);
  }
  return out;
}
