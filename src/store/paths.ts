// Where tsrun keeps its state. Persistent data under $XDG_DATA_HOME/tsrun (images, layers,
// containers, volumes); runtime state under $XDG_RUNTIME_DIR/tsrun or /tmp/tsrun-UID.
import os from "node:os";
import path from "node:path";

export interface StorePaths {
  root: string;
  blobs: string;
  layers: string;
  /** Short names for layer dirs, so overlay's lowerdir list fits in one page for deep images. */
  layerLinks: string;
  images: string;
  containers: string;
  volumes: string;
  tmp: string;
  /** Records of operations in flight (leases.ts). */
  leases: string;
  lockFile: string;
  runRoot: string;
}

export function storePaths(root?: string): StorePaths {
  const base =
    root ??
    process.env.TSRUN_ROOT ??
    path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share"), "tsrun");
  const uid = process.getuid?.() ?? 0;
  const runRoot =
    process.env.TSRUN_RUNROOT ??
    (process.env.XDG_RUNTIME_DIR ? path.join(process.env.XDG_RUNTIME_DIR, "tsrun") : `/tmp/tsrun-${uid}`);
  return {
    root: base,
    blobs: path.join(base, "blobs", "sha256"),
    layers: path.join(base, "layers"),
    layerLinks: path.join(base, "l"),
    images: path.join(base, "images"),
    containers: path.join(base, "containers"),
    volumes: path.join(base, "volumes"),
    tmp: path.join(base, "tmp"),
    leases: path.join(base, "leases"),
    lockFile: path.join(base, "lock"),
    runRoot,
  };
}
