// Leftovers of interrupted operations, found by name and shape. A killed tsrun can leave:
//  - temporaries (".tmp-KIND-PID-..." beside final names, "KIND-PID-..." in tmp/) of a pid
//    that no longer exists: partial downloads, half-unpacked layers, layers and containers
//    renamed aside for deletion, files written for an atomic rename;
//  - a short link in l/ made for a layer whose rename never happened (dangling);
//  - leases of dead processes.
// Stores written by older tsrun versions can also hold layer dirs under their final name
// without layer.json. This module finds them; the store's recovery removes them (under the
// lock, where no operation is between two steps) and `system check` reports them.
import { lstatSync, readdirSync, readlinkSync, statSync } from "node:fs";
import path from "node:path";
import type { StorePaths } from "./paths.js";
import type { LayerStore } from "./layers.js";
import { isStaleTemp } from "./temps.js";

export interface Leftover {
  path: string;
  kind: "dir" | "file";
  /** What it is, for `system check`: "partial blob download", "layer being deleted", ... */
  what: string;
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function kindOf(file: string): "dir" | "file" | undefined {
  try {
    return lstatSync(file).isDirectory() ? "dir" : "file";
  } catch {
    return undefined;
  }
}

function describeTemp(dir: keyof StorePaths, name: string): string {
  if (dir === "tmp") return "scratch files of an interrupted operation";
  if (name.startsWith(".tmp-rm-")) return `${dir === "layers" ? "layer" : dir === "containers" ? "container" : "volume"} whose deletion was interrupted`;
  if (dir === "blobs") return name.startsWith(".tmp-stream-") ? "partial blob (download, import or load cut short)" : "blob being written when its writer stopped";
  if (dir === "layers") return "layer being unpacked when its writer stopped";
  if (dir === "volumes") return "volume being created when its writer stopped";
  return "file being written when its writer stopped";
}

/** The directories where each scope's operations put temporaries. */
export const TEMP_DIRS: Record<"images" | "containers", (keyof StorePaths)[]> = {
  images: ["root", "blobs", "layers", "layerLinks", "images", "leases", "tmp"],
  containers: ["root", "containers", "volumes", "leases", "tmp"],
};

/** Temporaries whose process is gone, in the given directories of the store (default: all). */
export function staleTemps(paths: StorePaths, dirs: (keyof StorePaths)[] = [...new Set([...TEMP_DIRS.images, ...TEMP_DIRS.containers])]): Leftover[] {
  const out: Leftover[] = [];
  for (const key of dirs) {
    const dir = paths[key];
    for (const name of entries(dir)) {
      if (!isStaleTemp(name, key === "tmp")) continue;
      const file = path.join(dir, name);
      const kind = kindOf(file);
      if (kind) out.push({ path: file, kind, what: describeTemp(key, name) });
    }
  }
  return out;
}

/** Layer dirs without layer.json under a final name, and short links that lead to no layer. */
export function layerLeftovers(layers: LayerStore): Leftover[] {
  const out: Leftover[] = [];
  for (const chainId of layers.list()) {
    if (!layers.has(chainId)) out.push({ path: layers.layerDir(chainId), kind: "dir", what: `incomplete layer ${chainId} (no layer.json)` });
  }
  for (const name of entries(layers.linkDir)) {
    if (name.startsWith(".tmp-")) continue; // staleTemps' business
    const link = path.join(layers.linkDir, name);
    let target: string;
    try {
      target = readlinkSync(link);
    } catch {
      out.push({ path: link, kind: kindOf(link) ?? "file", what: "foreign file among the layer short links" });
      continue;
    }
    try {
      statSync(path.join(layers.linkDir, target));
    } catch {
      out.push({ path: link, kind: "file", what: `short link to a missing layer (${target})` });
    }
  }
  return out;
}
