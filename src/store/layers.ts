// Unpacked layers: layers/<chainid-hex>/diff is the overlay lower dir for that chain, shared by
// every image and container that has it. A layer appears under its final name only complete:
// it is unpacked into a temporary dir, gets its layer.json there, and is renamed into place.
// It leaves the same way: renamed to a temporary name first, then deleted.
import { existsSync, mkdirSync, readFileSync, readlinkSync, renameSync, symlinkSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "../random.js";
import { digestHex, digestNamedEntries } from "./digest.js";
import { writeJsonAtomic } from "./atomic.js";
import { faultPoint } from "./fault.js";
import { tempPath } from "./temps.js";
import { removeFile } from "../remove-file.js";

export interface LayerMeta {
  chainId: string;
  diffId: string;
  parent: string | null;
  size: number;
  /** A short name in l/ pointing at diff, so lowerdir lists of deep images fit one page. */
  link: string;
}

/** A complete layer for chainId is in the layers dir (only a complete one has its layer.json). */
export function layerStored(layersDir: string, chainId: string): boolean {
  return existsSync(path.join(layersDir, digestHex(chainId), "layer.json"));
}

export class LayerStore {
  constructor(
    readonly dir: string,
    readonly linkDir: string,
  ) {}

  layerDir(chainId: string): string {
    return path.join(this.dir, digestHex(chainId));
  }

  diffDir(chainId: string): string {
    return path.join(this.layerDir(chainId), "diff");
  }

  has(chainId: string): boolean {
    return layerStored(this.dir, chainId);
  }

  meta(chainId: string): LayerMeta {
    return JSON.parse(readFileSync(path.join(this.layerDir(chainId), "layer.json"), "utf8")) as LayerMeta;
  }

  /** Chain IDs of the layer dirs under their final names (complete or not). */
  list(): string[] {
    return digestNamedEntries(this.dir);
  }

  /** A fresh temporary directory (with an empty diff/) to unpack into. */
  createTemp(): string {
    return makeLayerTemp(this.tempName());
  }

  /**
   * The name of a temporary layer directory, not yet made: for a commit, which makes it only
   * when the store does not have its layer (makeLayerTemp), so that committing the same change
   * again creates and deletes no directories.
   */
  tempName(): string {
    mkdirSync(this.dir, { recursive: true });
    return tempPath(this.dir, "layer");
  }

  /** What a short link in l/ holds for a layer (relative, so the store can move). */
  linkTarget(chainId: string): string {
    return path.join("..", path.basename(this.dir), digestHex(chainId), "diff");
  }

  /**
   * Moves a completely unpacked temp dir into place. Its layer.json is written inside it first
   * and its short link made before the rename (dangling until then): the rename is the one step
   * that makes the layer exist, complete. The final name must be free (the caller checks, under
   * the store lock).
   */
  commit(tmp: string, meta: Omit<LayerMeta, "link">): LayerMeta {
    mkdirSync(this.linkDir, { recursive: true });
    const link = randomBytes(13).toString("hex").slice(0, 26);
    const full: LayerMeta = { ...meta, link };
    writeJsonAtomic(path.join(tmp, "layer.json"), full);
    symlinkSync(this.linkTarget(meta.chainId), path.join(this.linkDir, link));
    faultPoint("layer-commit");
    renameSync(tmp, this.layerDir(meta.chainId));
    return full;
  }

  /**
   * Takes a layer dir out of the store at once (renamed to a temporary name, its short link
   * removed) and returns where it went, for the caller to delete (inside the user namespace,
   * possibly after releasing the store lock). Undefined when there is no such dir.
   */
  detach(chainId: string): string | undefined {
    const dir = this.layerDir(chainId);
    let link: string | undefined;
    try {
      link = this.meta(chainId).link;
    } catch {
      // No metadata: an incomplete layer; the dir goes anyway.
    }
    const doomed = tempPath(this.dir, "rm");
    try {
      renameSync(dir, doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    faultPoint("layer-detach");
    if (link) {
      const linkPath = path.join(this.linkDir, link);
      try {
        if (readlinkSync(linkPath) === this.linkTarget(chainId)) removeFile(linkPath);
      } catch {
        // Already gone.
      }
    }
    return doomed;
  }

  /** Path of the short link for a layer, relative to the store root. */
  linkPath(chainId: string): string {
    const meta = this.meta(chainId);
    const p = path.join(this.linkDir, meta.link);
    // Recreate a missing link (a partial copy of the store); two runs may race to do it.
    if (!existsSync(p)) {
      try {
        mkdirSync(this.linkDir, { recursive: true });
        symlinkSync(this.linkTarget(chainId), p);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
    }
    return path.join(path.basename(this.linkDir), meta.link);
  }
}

/** Makes a temporary layer dir (and its empty diff/) if it is not there yet; returns it. */
export function makeLayerTemp(dir: string): string {
  mkdirSync(path.join(dir, "diff"), { recursive: true, mode: 0o755 });
  return dir;
}
