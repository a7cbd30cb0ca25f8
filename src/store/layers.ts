// Unpacked layers: layers/<chainid-hex>/diff is the overlay lower dir for that chain, shared by
// every image and container that has it. A layer appears under its final name only complete:
// it is unpacked into a temporary dir and renamed.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, readlinkSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { digestHex } from "./digest.js";
import { writeJsonAtomic } from "./atomic.js";

export interface LayerMeta {
  chainId: string;
  diffId: string;
  parent: string | null;
  size: number;
  /** A short name in l/ pointing at diff, so lowerdir lists of deep images fit one page. */
  link: string;
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
    return existsSync(path.join(this.layerDir(chainId), "layer.json"));
  }

  meta(chainId: string): LayerMeta {
    return JSON.parse(readFileSync(path.join(this.layerDir(chainId), "layer.json"), "utf8")) as LayerMeta;
  }

  /** A fresh temporary directory (with an empty diff/) to unpack into. */
  createTemp(): string {
    mkdirSync(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
    mkdirSync(path.join(tmp, "diff"), { recursive: true, mode: 0o755 });
    return tmp;
  }

  /** Moves a completely unpacked temp dir into place and writes its metadata last. */
  commit(tmp: string, meta: Omit<LayerMeta, "link">): LayerMeta {
    mkdirSync(this.linkDir, { recursive: true });
    const link = randomBytes(13).toString("hex").slice(0, 26);
    const full: LayerMeta = { ...meta, link };
    const target = this.layerDir(meta.chainId);
    renameSync(tmp, target);
    symlinkSync(path.join("..", path.basename(this.dir), digestHex(meta.chainId), "diff"), path.join(this.linkDir, link));
    writeJsonAtomic(path.join(target, "layer.json"), full);
    return full;
  }

  /** Leftovers of interrupted unpacks (to delete inside the user namespace). */
  tempDirs(): string[] {
    try {
      return readdirSync(this.dir)
        .filter((n) => n.startsWith(".tmp-"))
        .map((n) => path.join(this.dir, n));
    } catch {
      return [];
    }
  }

  /** Path of the short link for a layer, relative to the store root. */
  linkPath(chainId: string): string {
    const meta = this.meta(chainId);
    const p = path.join(this.linkDir, meta.link);
    // Recreate a missing link (e.g. after a partial copy of the store).
    if (!existsSync(p)) {
      symlinkSync(path.join("..", path.basename(this.dir), digestHex(chainId), "diff"), p);
    } else {
      readlinkSync(p);
    }
    return path.join(path.basename(this.linkDir), meta.link);
  }
}
