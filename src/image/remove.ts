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
// are renamed aside and blobs deleted (gc.ts), and the renamed dirs are deleted after the lock is
// released: an interruption leaves unreferenced files, never an image with holes. An image that
// an operation in flight has leased (a container being created from it, a load that found it)
// counts as used, like one a container uses.
import type { Containers } from "../container/run.js";
import type { ContainerRecord } from "../container/records.js";
import type { Store } from "../store/store.js";
import { assignNames, type ImageRecord } from "../store/images.js";
import type { BuildCacheEntry } from "../store/build-cache.js";
import { digestHex } from "../store/digest.js";
import { tagName } from "./commit.js";
import { familiarName } from "./inspect.js";
import { ReferenceError } from "./reference.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { describeOperation, type InUse, type LeaseRecord } from "../store/leases.js";
import { faultPoint } from "../store/fault.js";
import { pruneFilterOf } from "../container/filters.js";
import { parseTimeArgument } from "../format/duration.js";
import { detachGarbage, liveReferences } from "./gc.js";

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

/** Who keeps an image: the containers created from it, and operations in flight that leased it. */
interface ImageUsers {
  containers: ContainerRecord[];
  operations: LeaseRecord[];
}

function usersOf(image: ImageRecord, containers: ContainerRecord[], inUse: InUse): ImageUsers {
  return { containers: containers.filter((c) => c.image === image.id), operations: inUse.operations.filter((o) => o.images.includes(image.id)) };
}

const isUsed = (u: ImageUsers): boolean => u.containers.length > 0 || u.operations.length > 0;

/** "container 0123456789ab" or "an operation in progress: pull busybox (pid 42)". */
function describeUser(u: ImageUsers, running: ContainerRecord | undefined): string {
  const c = running ?? u.containers[0];
  if (c) return `${running ? "running" : "stopped"} container ${c.id.slice(0, 12)}`;
  return `an operation in progress: ${describeOperation(u.operations[0] as LeaseRecord)}`;
}

/**
 * Removes a store operation's images from the index and everything only they used, under the
 * lock (also what earlier interrupted removals left). Returns Docker's lines for the removed
 * images and the temporary dirs to delete after the lock.
 */
function removeFromIndex(store: Store, removed: ImageRecord[], remaining: ImageRecord[], containers: ContainerRecord[], inUse: InUse): { lines: string[]; reclaimed: number; dirs: string[] } {
  if (removed.length > 0) store.images.save(remaining);
  faultPoint("rmi:index-saved");
  const detached = detachGarbage(store, liveReferences(remaining, containers, inUse, store.buildCache.load().values()));
  const gone = new Map(detached.layers.map((l) => [l.chainId, l.size]));
  const lines: string[] = [];
  let reclaimed = 0;
  for (const image of removed) {
    lines.push(`Deleted: ${image.id}`);
    for (const layer of [...image.layers].reverse()) {
      const size = gone.get(layer.chainId);
      if (size === undefined) continue;
      gone.delete(layer.chainId);
      lines.push(`Deleted: ${layer.chainId}`);
      reclaimed += size;
    }
  }
  return { lines, reclaimed, dirs: detached.dirs };
}

/**
 * Takes build cache entries out of the index: all of them, or those whose state no remaining
 * image or container has (the cache of removed images and of stages that are no image), as
 * Podman's prune removes dangling intermediate images. Either way an entry whose layers a build
 * in progress uses stays (Docker's prune removes only unused build cache). Returns them.
 */
function dropCacheEntries(store: Store, remaining: ImageRecord[], containers: ContainerRecord[], inUse: InUse, all: boolean, eligible: (e: BuildCacheEntry) => boolean = () => true): BuildCacheEntry[] {
  const entries = store.buildCache.load();
  const held = new Set<string>([...remaining.flatMap((i) => i.layers.map((l) => l.chainId)), ...containers.flatMap((c) => c.layers)]);
  const dropped: BuildCacheEntry[] = [];
  for (const [key, entry] of entries) {
    const top = entry.layers.at(-1)?.chainId;
    if (top !== undefined && inUse.layers.has(top)) continue;
    if (!eligible(entry)) continue;
    if (all || top === undefined || !held.has(top)) {
      dropped.push(entry);
      entries.delete(key);
    }
  }
  if (dropped.length > 0) store.buildCache.save(entries);
  return dropped;
}

/**
 * An image removal: under the lock (with the leftovers of killed operations removed first and a
 * lease marking it in flight), fn changes the index; the layer dirs it detached are deleted after
 * the lock is released.
 */
async function removal<T extends { dirs: string[] }>(containers: Containers, operation: string, fn: (images: ImageRecord[], all: ContainerRecord[], inUse: InUse) => Promise<T> | T): Promise<T> {
  const store = containers.store;
  return store.locked(
    operation,
    "images",
    () => {
      // Leases first, then containers: a container being created holds its lease until its
      // record is saved, so it is seen in one of the two.
      const inUse = store.leases.inUse();
      return fn(store.images.list(), containers.list(), inUse);
    },
    async (result) => {
      faultPoint("rmi:detached");
      await store.removeTrees(result.dirs);
    },
  );
}

/**
 * `rmi [-f] IMAGE`: by name, removes that name, and the image with its last name; by ID, every
 * name and the image. Returns Docker's output lines ("Untagged: ...", "Deleted: ...").
 */
export async function removeImage(containers: Containers, query: string, force: boolean): Promise<string[]> {
  const store = containers.store;
  findImage(store, query);
  const result = await removal(containers, `rmi ${query}`, (images, all, inUse) => {
    const image = findImage(store, query, images);
    const users = usersOf(image, all, inUse);
    const running = users.containers.find((c) => c.state.status === "running");
    const short = shortImageId(image.id);
    const lines: string[] = [];
    const keep = (): { lines: string[]; dirs: string[] } => {
      store.images.save(images);
      return { lines, dirs: [] };
    };
    if (!isIdQuery(image, query)) {
      const name = store.images.findName(query, images).name;
      if (name.includes("@")) {
        // A digest reference: that digest is forgotten; the image goes with its last reference.
        image.repoDigests = image.repoDigests.filter((d) => d !== name);
        lines.push(`Untagged: ${familiarName(name)}`);
        if (image.names.length > 0 || image.repoDigests.length > 0 || isUsed(users)) return keep();
        const removed = removeFromIndex(store, [image], images.filter((i) => i !== image), all, inUse);
        return { lines: [...lines, ...removed.lines], dirs: removed.dirs };
      }
      const last = image.names.length <= 1;
      if (last && isUsed(users) && !force) {
        const by = users.containers[0] ? `container ${users.containers[0].id.slice(0, 12)}` : describeUser(users, undefined);
        throw new TsrunError(`conflict: unable to remove repository reference "${query}" (must force) - ${by} is using its referenced image ${short}`);
      }
      image.names = image.names.filter((n) => n !== name);
      lines.push(`Untagged: ${familiarName(name)}`);
      if (!last || isUsed(users)) return keep();
    } else {
      if (image.names.length > 1 && !force) throw new TsrunError(`conflict: unable to delete ${short} (must be forced) - image is referenced in multiple repositories`);
      if (isUsed(users)) {
        const user = describeUser(users, running);
        if (!force) throw new TsrunError(`conflict: unable to delete ${short} (must be forced) - image is being used by ${user}`);
        if (image.names.length === 0) {
          throw new TsrunError(`conflict: unable to delete ${short} (cannot be forced) - image is being used by ${user}; remove the container first`);
        }
        // Forced: the names go, the image stays for the container (see the top of this file).
        for (const n of image.names) lines.push(`Untagged: ${familiarName(n)}`);
        image.names = [];
        return keep();
      }
      for (const n of image.names) lines.push(`Untagged: ${familiarName(n)}`);
    }
    const removed = removeFromIndex(store, [image], images.filter((i) => i !== image), all, inUse);
    return { lines: [...lines, ...removed.lines], dirs: removed.dirs };
  });
  return result.lines;
}

export interface PruneResult {
  /** Docker's lines: "untagged: NAME", "deleted: sha256:..." */
  lines: string[];
  /** Bytes of layer data deleted. */
  reclaimed: number;
}

/** `image prune`: images without names (with all: every image) that no container uses. */
export async function pruneImages(containers: Containers, all: boolean, filters: string[] = []): Promise<PruneResult> {
  // until= is the image's creation time and label= its config's labels, as Docker's filters.
  type Config = { created?: string; config?: { Labels?: Record<string, string> | null } };
  // Read once per image: until= and label= both look at it.
  const configs = new Map<string, Config>();
  const configOf = (i: ImageRecord): Config => {
    let config = configs.get(i.id);
    if (!config) {
      try {
        config = JSON.parse(containers.store.blobs.read(i.id).toString("utf8")) as Config;
      } catch {
        config = {};
      }
      configs.set(i.id, config);
    }
    return config;
  };
  const selected = filters.length === 0 ? () => true : pruneFilterOf<ImageRecord>(filters, { created: (i) => configOf(i).created ?? i.added, labels: (i) => configOf(i).config?.Labels ?? {} });
  const result = await removal(containers, "image prune", (images, used, inUse) => {
    const doomed = images.filter((i) => (all || i.names.length === 0) && !isUsed(usersOf(i, used, inUse)) && selected(i));
    const untagged = doomed.flatMap((i) => i.names.map((n) => `untagged: ${familiarName(n)}`));
    // The cache of what is going (and of stages that are no image) goes too.
    dropCacheEntries(containers.store, images.filter((i) => !doomed.includes(i)), used, inUse, false);
    // Even with nothing to prune, what interrupted removals left is taken out.
    const removed = removeFromIndex(containers.store, doomed, images.filter((i) => !doomed.includes(i)), used, inUse);
    return { lines: [...untagged, ...removed.lines.map((l) => l.replace(/^Deleted:/, "deleted:"))], reclaimed: removed.reclaimed, dirs: removed.dirs };
  });
  return { lines: result.lines, reclaimed: result.reclaimed };
}

/**
 * `builder prune`: the build cache, and the layers only it kept. Without all, only the entries
 * no image or container holds (as `image prune` drops them); with all, every entry.
 */
export async function pruneBuildCache(containers: Containers, all: boolean, filters: string[] = []): Promise<PruneResult> {
  const store = containers.store;
  // Docker's builder prune filter until=TIME: entries made before it (the others it takes,
  // id, parent, type..., name BuildKit records tsrun does not keep).
  let until: number | undefined;
  for (const f of filters) {
    const m = /^until=(.+)$/s.exec(f);
    if (!m) throw new TsrunError(`invalid filter '${f.split("=")[0] ?? f}': builder prune takes until=TIME`);
    until = parseTimeArgument(m[1] as string, "until filter").getTime();
  }
  const eligible = until === undefined ? undefined : (e: BuildCacheEntry): boolean => Date.parse(e.created) < (until as number);
  const result = await removal(containers, "builder prune", (images, used, inUse) => {
    dropCacheEntries(store, images, used, inUse, all, eligible);
    const detached = detachGarbage(store, liveReferences(images, used, inUse, store.buildCache.load().values()));
    return {
      lines: detached.layers.map((l) => `deleted: ${l.chainId}`),
      reclaimed: detached.layers.reduce((n, l) => n + l.size, 0),
      dirs: detached.dirs,
    };
  });
  // RUN --mount=type=cache directories are build cache too (their files may belong to any uid).
  if (all && until === undefined) await store.removeTree(store.buildCache.mountsDir);
  return { lines: result.lines, reclaimed: result.reclaimed };
}
