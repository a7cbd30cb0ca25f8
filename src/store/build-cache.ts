// The build cache index: what each build step produced, by cache key (see build/cache-keys.ts).
// One JSON file, replaced atomically under the store lock like the image index.
//
// An entry holds the whole layer list of the state after its step, so a hit needs nothing else
// to be usable, and reference counting (image/remove.ts) knows every layer and blob the cache
// keeps alive. `created` is the time the step first ran: a fully cached build writes the very
// same history, so the same config and image ID.
import { existsSync, readFileSync } from "node:fs";
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

/** Whether an entry read from disk has the fields the builder and the store rely on. */
export function isWellFormed(entry: unknown): entry is BuildCacheEntry {
  if (typeof entry !== "object" || entry === null) return false;
  const e = entry as Partial<BuildCacheEntry>;
  const str = (v: unknown): boolean => typeof v === "string";
  return str(e.created) && typeof e.emptyLayer === "boolean" && Array.isArray(e.layers) && e.layers.every((l) => typeof l === "object" && l !== null && str(l.chainId) && str(l.digest) && str(l.diffId) && typeof l.size === "number");
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
    // Missing (no build ran yet) or damaged: a damaged cache costs a rebuild, never a failed build.
    const entries = this.read().entries;
    for (const [key, entry] of entries) if (!isWellFormed(entry)) entries.delete(key);
    return entries;
  }

  /**
   * The entries, and what is wrong with the file when it exists but is no index (for `system
   * check`). An entry is returned as it is on disk: the caller checks its fields.
   */
  read(): { entries: Map<string, BuildCacheEntry>; error?: string } {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (err) {
      if (!existsSync(this.file)) return { entries: new Map() };
      return { entries: new Map(), error: `cannot read ${path.basename(this.file)}: ${(err as Error).message}` };
    }
    try {
      const parsed = JSON.parse(text) as CacheFile;
      if (typeof parsed !== "object" || parsed === null || typeof parsed.entries !== "object" || parsed.entries === null || Array.isArray(parsed.entries)) {
        throw new Error("no entries object");
      }
      return { entries: new Map(Object.entries(parsed.entries)) };
    } catch (err) {
      return { entries: new Map(), error: `${path.basename(this.file)} is not a build cache index (${(err as Error).message})` };
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
