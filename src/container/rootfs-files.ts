// Reads small files (/etc/passwd, /etc/group) from a container's layered root without mounting
// it: the topmost layer that has the path wins, a whiteout hides it. Every lookup resolves
// inside the layer (openat2 RESOLVE_IN_ROOT), never following a link onto the host.
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { native } from "../native.js";

const O_PATH = 0o10000000;
const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
const S_IFREG = 0o100000;

/** dirs: layer roots, topmost first (a container's upper dir comes before the image layers). */
export function readLayeredFile(dirs: string[], file: string, maxBytes = 4 * 1024 * 1024): string | undefined {
  const addon = native();
  for (const dir of dirs) {
    let rootFd: number;
    try {
      // The layer dir itself is the store's own path: trusted, opened normally.
      rootFd = openSync(dir, O_PATH | constants.O_DIRECTORY);
    } catch {
      continue;
    }
    try {
      let st;
      try {
        const fd = addon.openInRoot(rootFd, file, O_PATH, 0);
        st = addon.lstatAt(fd, "");
        const type = st[0] & S_IFMT;
        closeSync(fd);
        if (type === S_IFCHR && st[6] === 0 && st[7] === 0) return undefined; // whiteout
        if (type !== S_IFREG) return undefined;
        if (st[3] > maxBytes) throw new Error(`${file} in the image is larger than ${maxBytes} bytes`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") continue;
        throw err;
      }
      const fd = addon.openInRoot(rootFd, file, constants.O_RDONLY | constants.O_NOFOLLOW, 0);
      try {
        return readFileSync(fd, "utf8");
      } finally {
        closeSync(fd);
      }
    } finally {
      closeSync(rootFd);
    }
  }
  return undefined;
}
