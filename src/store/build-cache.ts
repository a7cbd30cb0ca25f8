// The build cache index: what each build step produced, by cache key (see build/cache-keys.ts).
// One JSON file, replaced atomically under the store lock like the image index.
//
// An entry holds the whole layer list of the state after its step, so a hit needs nothing else
// to be usable, and reference counting (image/remove.ts) knows every layer and blob the cache
// keeps alive. `created` is the time the step first ran: a fully cached build writes the very
// same history, so the same config and image ID.
import { readFileSync } from "node:fs";
import path from "node:path";
import { writeJsonAtomic } from "./atomic.js";
import type { LayerRecord } from "./images.js";

export interface BuildCacheEntry {
  /** When the step ran (the history entry's `created`). */
  created: string;
  /** The layers after the step, bottom first; the step's own layer, if it made one, is last. */
  layers: LayerRecord[];
  /** The step added no layer (config instructions, a RUN that changed nothing). */
  emptyLayer: boolean;
}

interface CacheFile {
  entries: Record<string, BuildCacheEntry>;
}

export class BuildCacheIndex {
  readonly file: string;
  /** Where RUN --mount=type=cache directories live (build cache too: `builder prune -a` empties it). */
  readonly mountsDir: string;

  constructor(root: string) {
    this.file = path.join(root, "build-cache.json");
    this.mountsDir = path.join(root, "build-mounts");
  }

  /** Every entry by key (empty when no build ran yet). */
  load(): Map<string, BuildCacheEntry> {
    try {
      const parsed = JSON.parse(readFileSync(this.file, "utf8")) as CacheFile;
      return new Map(Object.entries(parsed.entries ?? {}));
    } catch {
      // Missing (no build ran yet) or damaged: a damaged cache costs a rebuild, never a failed build.
      return new Map();
    }
  }

  /**
   * Replaces the whole index (call under the store lock). Not fsynced: after a power failure an
   * older index costs a rebuild of some steps, never a wrong result (every hit is checked).
   */
  save(entries: ReadonlyMap<string, BuildCacheEntry>): void {
    const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    writeJsonAtomic(this.file, { entries: Object.fromEntries(sorted) } satisfies CacheFile, 0o644, false);
  }

  /** Adds entries to what is on disk (call under the store lock: other builds add theirs too). */
  add(entries: ReadonlyMap<string, BuildCacheEntry>): void {
    if (entries.size === 0) return;
    const all = this.load();
    for (const [key, entry] of entries) all.set(key, entry);
    this.save(all);
  }
}
