// `tag`, `rmi`, `image prune` and `builder prune`: names on and off images, and deleting what
// nothing uses.
//
// Reference counting: a layer dir stays while any image, any container (of any state: its
// overlay lower dirs) or any build cache entry has its ChainID; a blob stays while any image or
// cache entry refers to it. So `rmi` of a built image keeps the layers its rebuild would reuse;
// `image prune` drops the cache entries no remaining image or container holds (the cache of
// removed images, and of stages that became no image), `builder prune -a` all of them. An image that a
// container still uses is never deleted, only untagged (with -f): its record keeps the layer list
// and config a later `commit` of that container needs. Docker deletes the image of a stopped
// container on `rmi -f`; keeping it dangling here costs no disk (the layers stay either way) and
// `image prune` removes it once the container is gone.
//
// Every change happens under the store lock. The index is saved first, then unused layer dirs
// and blobs are deleted: an interruption leaves unreferenced files, never an image with holes.
import { existsSync, readlinkSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Containers } from "../container/run.js";
import type { ContainerRecord } from "../container/records.js";
import type { Store } from "../store/store.js";
import type { ImageRecord, LayerRecord } from "../store/images.js";
import type { BuildCacheEntry } from "../store/build-cache.js";
import { digestHex } from "../store/digest.js";
import { assignNames } from "./import.js";
import { tagName } from "./commit.js";
import { familiarName } from "./inspect.js";
import { normaliseName, ReferenceError } from "./reference.js";
import { NotFoundError, TsrunError } from "../errors.js";

function shortImageId(id: string): string {
  return digestHex(id).slice(0, 12);
}

/** Finds an image by name or ID; a malformed name or an unknown image is the user's error. */
export function findImage(store: Store, query: string, images = store.images.list()): ImageRecord {
  let image: ImageRecord | undefined;
  try {
    image = store.images.find(query, images);
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(err.message);
    if (err instanceof Error) throw new TsrunError(err.message);
    throw err;
  }
  if (!image) throw new NotFoundError(`No such image: ${query}`);
  return image;
}

/** Whether the query named the image by ID (then every name goes), not by one of its names. */
function isIdQuery(image: ImageRecord, query: string): boolean {
  const hex = query.startsWith("sha256:") ? query.slice(7) : query;
  return /^[a-f0-9]{3,64}$/.test(hex) && digestHex(image.id).startsWith(hex);
}

/** `tag SOURCE TARGET`: TARGET now names SOURCE's image (and no other). */
export async function tagImage(store: Store, source: string, target: string): Promise<void> {
  const name = tagName(target);
  findImage(store, source);
  await store.lock(() => {
    const images = store.images.list();
    const image = findImage(store, source, images);
    assignNames(images, image, [name]);
    store.images.save(images);
  });
}

/**
 * Deletes the images (already out of `remaining`'s list) and whatever only they used; `dropped`:
 * build cache entries already taken out of the index, whose layers go too when nothing else
 * holds them. The build cache keeps its layers (and their blobs) alive like an image does.
 */
async function deleteUnused(
  store: Store,
  removed: ImageRecord[],
  remaining: ImageRecord[],
  containers: ContainerRecord[],
  dropped: BuildCacheEntry[] = [],
): Promise<{ lines: string[]; reclaimed: number }> {
  store.images.save(remaining);
  const cached = [...store.buildCache.load().values()].flatMap((e) => e.layers);
  const usedLayers = new Set<string>([...remaining.flatMap((i) => i.layers.map((l) => l.chainId)), ...containers.flatMap((c) => c.layers), ...cached.map((l) => l.chainId)]);
  const usedBlobs = new Set<string>([...remaining.flatMap((i) => [i.id, i.manifest, ...i.layers.map((l) => l.digest)]), ...containers.map((c) => c.image), ...cached.map((l) => l.digest)]);
  const lines: string[] = [];
  let reclaimed = 0;
  const gone = new Set<string>();
  const removeLayers = async (layers: LayerRecord[]): Promise<void> => {
    for (const layer of [...layers].reverse()) {
      if (usedLayers.has(layer.chainId) || gone.has(layer.chainId)) continue;
      gone.add(layer.chainId);
      if (await removeLayer(store, layer.chainId)) {
        lines.push(`Deleted: ${layer.chainId}`);
        reclaimed += layer.size;
      }
    }
    for (const layer of layers) {
      if (!usedBlobs.has(layer.digest) && store.blobs.has(layer.digest)) store.blobs.remove(layer.digest);
    }
  };
  for (const image of removed) {
    lines.push(`Deleted: ${image.id}`);
    await removeLayers(image.layers);
    for (const digest of [image.id, image.manifest]) {
      if (!usedBlobs.has(digest) && store.blobs.has(digest)) store.blobs.remove(digest);
    }
  }
  for (const entry of dropped) await removeLayers(entry.layers);
  return { lines, reclaimed };
}

/**
 * Takes build cache entries out of the index: all of them, or those whose state no remaining
 * image or container has (the cache of removed images and of stages that are no image), as
 * Podman's prune removes dangling intermediate images. Returns them.
 */
function dropCacheEntries(store: Store, remaining: ImageRecord[], containers: ContainerRecord[], all: boolean): BuildCacheEntry[] {
  const entries = store.buildCache.load();
  const held = new Set<string>([...remaining.flatMap((i) => i.layers.map((l) => l.chainId)), ...containers.flatMap((c) => c.layers)]);
  const dropped: BuildCacheEntry[] = [];
  for (const [key, entry] of entries) {
    const top = entry.layers.at(-1)?.chainId;
    if (all || top === undefined || !held.has(top)) {
      dropped.push(entry);
      entries.delete(key);
    }
  }
  if (dropped.length > 0) store.buildCache.save(entries);
  return dropped;
}

/** Removes one layer dir and its short link; false when it was not there. */
async function removeLayer(store: Store, chainId: string): Promise<boolean> {
  const dir = store.layers.layerDir(chainId);
  if (!existsSync(dir)) return false;
  let link: string | undefined;
  try {
    link = store.layers.meta(chainId).link;
  } catch {
    // No metadata: an incomplete layer; the dir goes anyway.
  }
  // Renamed to a temporary name first: the layer stops existing at once, even if deleting its
  // files (inside the user namespace) is interrupted.
  const doomed = path.join(store.layers.dir, `.tmp-rm-${process.pid}-${randomBytes(6).toString("hex")}`);
  renameSync(dir, doomed);
  if (link) {
    const linkPath = path.join(store.layers.linkDir, link);
    try {
      if (readlinkSync(linkPath).includes(digestHex(chainId))) rmSync(linkPath, { force: true });
    } catch {
      // Already gone.
    }
  }
  await store.removeTree(doomed);
  return true;
}

function usersOf(image: ImageRecord, containers: ContainerRecord[]): ContainerRecord[] {
  return containers.filter((c) => c.image === image.id);
}

/**
 * `rmi [-f] IMAGE`: by name, removes that name, and the image with its last name; by ID, every
 * name and the image. Returns Docker's output lines ("Untagged: ...", "Deleted: ...").
 */
export async function removeImage(containers: Containers, query: string, force: boolean): Promise<string[]> {
  const store = containers.store;
  findImage(store, query);
  return store.lock(async () => {
    const images = store.images.list();
    const image = findImage(store, query, images);
    const all = containers.list();
    const users = usersOf(image, all);
    const running = users.find((c) => c.state.status === "running");
    const short = shortImageId(image.id);
    const lines: string[] = [];
    if (!isIdQuery(image, query)) {
      const name = normaliseName(query);
      if (name.includes("@")) {
        // A digest reference: that digest is forgotten; the image goes with its last reference.
        image.repoDigests = image.repoDigests.filter((d) => d !== name);
        lines.push(`Untagged: ${familiarName(name)}`);
        if (image.names.length > 0 || image.repoDigests.length > 0 || users.length > 0) {
          store.images.save(images);
          return lines;
        }
        const remaining = images.filter((i) => i !== image);
        return [...lines, ...(await deleteUnused(store, [image], remaining, all)).lines];
      }
      const last = image.names.length <= 1;
      if (last && users.length > 0 && !force) {
        throw new TsrunError(`conflict: unable to remove repository reference "${query}" (must force) - container ${users[0]!.id.slice(0, 12)} is using its referenced image ${short}`);
      }
      image.names = image.names.filter((n) => n !== name);
      lines.push(`Untagged: ${familiarName(name)}`);
      if (!last || users.length > 0) {
        store.images.save(images);
        return lines;
      }
    } else {
      if (image.names.length > 1 && !force) throw new TsrunError(`conflict: unable to delete ${short} (must be forced) - image is referenced in multiple repositories`);
      if (users.length > 0) {
        const user = running ?? users[0]!;
        const state = running ? "running" : "stopped";
        if (!force) throw new TsrunError(`conflict: unable to delete ${short} (must be forced) - image is being used by ${state} container ${user.id.slice(0, 12)}`);
        if (image.names.length === 0) {
          throw new TsrunError(`conflict: unable to delete ${short} (cannot be forced) - image is being used by ${state} container ${user.id.slice(0, 12)}; remove the container first`);
        }
        // Forced: the names go, the image stays for the container (see the top of this file).
        for (const n of image.names) lines.push(`Untagged: ${familiarName(n)}`);
        image.names = [];
        store.images.save(images);
        return lines;
      }
      for (const n of image.names) lines.push(`Untagged: ${familiarName(n)}`);
    }
    const remaining = images.filter((i) => i !== image);
    const deleted = await deleteUnused(store, [image], remaining, all);
    return [...lines, ...deleted.lines];
  });
}

export interface PruneResult {
  /** Docker's lines: "untagged: NAME", "deleted: sha256:..." */
  lines: string[];
  /** Bytes of layer data deleted. */
  reclaimed: number;
}

/** `image prune`: images without names (with all: every image) that no container uses. */
export async function pruneImages(containers: Containers, all: boolean): Promise<PruneResult> {
  const store = containers.store;
  return store.lock(async () => {
    const images = store.images.list();
    const used = containers.list();
    const doomed = images.filter((i) => (all || i.names.length === 0) && usersOf(i, used).length === 0);
    const untagged = doomed.flatMap((i) => i.names.map((n) => `untagged: ${familiarName(n)}`));
    const remaining = images.filter((i) => !doomed.includes(i));
    const dropped = dropCacheEntries(store, remaining, used, false);
    const deleted = await deleteUnused(store, doomed, remaining, used, dropped);
    return { lines: [...untagged, ...deleted.lines.map((l) => l.replace(/^Deleted:/, "deleted:"))], reclaimed: deleted.reclaimed };
  });
}


/**
 * `builder prune`: the build cache, and the layers only it kept. Without all, only the entries
 * no image or container holds (as `image prune` drops them); with all, every entry.
 */
export async function pruneBuildCache(containers: Containers, all: boolean): Promise<PruneResult> {
  const store = containers.store;
  return store.lock(async () => {
    const images = store.images.list();
    const used = containers.list();
    const dropped = dropCacheEntries(store, images, used, all);
    const deleted = await deleteUnused(store, [], images, used, dropped);
    // RUN --mount=type=cache directories are build cache too (their files may belong to any uid).
    if (all) await store.removeTree(store.buildCache.mountsDir);
    return { lines: deleted.lines.map((l) => l.replace(/^Deleted:/, "deleted:")), reclaimed: deleted.reclaimed };
  });
}
