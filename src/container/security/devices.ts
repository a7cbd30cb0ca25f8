// Host devices for --privileged. A rootless runtime cannot create device nodes (mknod of a real
// device needs CAP_MKNOD on the host), so, like rootless Podman, it binds the host's nodes into
// the container's /dev; only those this user can open are useful, so only those are bound.
import { accessSync, constants, lstatSync, readdirSync } from "node:fs";
import path from "node:path";

/** Already in every container's /dev, or not meant to be shared with one. */
const SKIP = new Set(["null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts", "shm", "mqueue", "fd", "core", "stdin", "stdout", "stderr"]);

/** Character and block devices under /dev (two levels deep) the calling user can open. */
export function accessibleHostDevices(root = "/dev", limit = 512): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (out.length >= limit) return;
      if (depth === 0 && SKIP.has(name)) continue;
      const p = path.join(dir, name);
      let st;
      try {
        st = lstatSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory() && depth < 2) walk(p, depth + 1);
      if (!st.isCharacterDevice() && !st.isBlockDevice()) continue;
      try {
        accessSync(p, constants.R_OK);
        out.push(p);
      } catch {
        try {
          accessSync(p, constants.W_OK);
          out.push(p);
        } catch {
          // Not this user's to open.
        }
      }
    }
  };
  walk(root, 0);
  return out;
}
