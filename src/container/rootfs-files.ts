// Reads small files (/etc/passwd, /etc/group) from a container's layered root without mounting
// it: the topmost layer that has the path wins, a whiteout hides it. Every lookup resolves
// inside the layer (openat2 RESOLVE_IN_ROOT), never following a link onto the host.
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { native } from "../native.js";

const O_PATH = 0o10000000;
const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

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

/**
 * Whether a directory exists at `dir` in a layered root (dirs: layer roots, topmost first),
 * read as overlay would show it: whiteouts hide, an opaque directory or a non-directory hides
 * the layers below it. undefined when the layers cannot tell without a mounted view (a symlink
 * on the way, a directory the caller may not read).
 */
export function layeredDirectoryExists(dirs: string[], dir: string): boolean | undefined {
  const components = dir.split("/").filter((c) => c !== "" && c !== ".");
  if (components.includes("..")) return undefined;
  const addon = native();
  const roots: number[] = [];
  try {
    for (const d of dirs) roots.push(openSync(d, O_PATH | constants.O_DIRECTORY));
    // How many of the topmost layers still merge at the current depth.
    let visible = roots.length;
    for (let depth = 1; depth <= components.length; depth++) {
      const prefix = components.slice(0, depth).join("/");
      let found = false;
      for (let l = 0; l < visible; l++) {
        let st;
        try {
          const fd = addon.openInRoot(roots[l] as number, prefix, O_PATH | constants.O_NOFOLLOW, 0);
          st = addon.lstatAt(fd, "");
          closeSync(fd);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "ENOENT" || code === "ENOTDIR") continue;
          if (code === "EACCES") return undefined;
          throw err;
        }
        const type = st[0] & S_IFMT;
        if (type !== S_IFDIR) {
          if (found) {
            visible = l;
            break;
          }
          if (type === S_IFLNK) return undefined;
          return false; // a whiteout or a file
        }
        found = true;
        let opaque: boolean;
        try {
          const fd = addon.openInRoot(roots[l] as number, prefix, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW, 0);
          try {
            opaque = addon.getXattrs(fd)["user.overlay.opaque"]?.toString() === "y";
          } finally {
            closeSync(fd);
          }
        } catch {
          return undefined;
        }
        if (opaque) {
          visible = l + 1;
          break;
        }
      }
      if (!found) return false;
    }
    return true;
  } finally {
    for (const fd of roots) closeSync(fd);
  }
}
