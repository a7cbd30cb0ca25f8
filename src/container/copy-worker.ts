// Both ends of `cp`. The container side runs in the storage worker inside the container's user
// namespace: the container's root is an fd (its /proc/PID/root, or a private overlay mount for a
// stopped container); every path in it is resolved with openat2(RESOLVE_IN_ROOT), so a symlink
// in the container can never lead to a host file (CVE-2019-10152, CVE-2018-15664 class).
// Nothing of the container is executed or loaded (CVE-2019-14271 class): this is tsrun's own
// Node code. The host side (container/copy.ts) runs the same code as the user, with the host's
// "/" as the root. File names keep their bytes both ways (store/file-names.ts).
import { closeSync, constants, openSync, readSync } from "node:fs";
import { randomBytes } from "../random.js";
import path from "node:path";
import { native, type RawStat } from "../native.js";
import { listDirectory } from "../store/file-names.js";
import { entryHeaderBlocks, HardlinkTracker, type TarEntry } from "../store/pack.js";
import { removeEntry, unpackLayer, type UnpackNaming } from "../store/unpack.js";

const O_PATH = 0o10000000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const TYPES: Record<number, "file" | "directory" | "symlink" | "fifo"> = {
  0o100000: "file",
  0o040000: "directory",
  0o120000: "symlink",
  0o010000: "fifo",
};

interface Sink {
  write(chunk: Buffer): Promise<void>;
}

/** One entry's headers (names keep their bytes, as in a commit or an export). */
async function writeHeader(out: Sink, entry: TarEntry): Promise<void> {
  await out.write(entryHeaderBlocks(entry));
}

/**
 * Writes one entry (and, for a directory, everything below it) as tar, reading through fds. A
 * file with several names in the tree is written once, its other names as hardlinks to it.
 */
async function packEntry(dirFd: number, name: string, tarPath: string, out: Sink, follow: boolean, links: HardlinkTracker): Promise<void> {
  const addon = native();
  const st = follow ? addon.lstatAt(dirFd, "") : addon.lstatAt(dirFd, name);
  const type = TYPES[st[0] & S_IFMT];
  if (!type) return; // sockets and devices are not copied
  const common = { mode: st[0] & 0o7777, uid: st[1], gid: st[2], mtime: st[4] };
  if (type === "symlink") {
    await writeHeader(out, { ...common, path: tarPath, size: 0, type, linkpath: addon.readlinkAt(dirFd, name) });
    return;
  }
  if (type === "fifo") {
    await writeHeader(out, { ...common, path: tarPath, size: 0, type });
    return;
  }
  const first = type === "file" ? links.earlier(st, tarPath) : undefined;
  if (first !== undefined) {
    await writeHeader(out, { ...common, path: tarPath, size: 0, type: "hardlink", linkpath: first });
    return;
  }
  // With -L the entry is the fd itself (O_PATH): a file is reopened for reading through it.
  const fd = follow
    ? type === "directory"
      ? dirFd
      : openSync(`/proc/self/fd/${dirFd}`, constants.O_RDONLY)
    : addon.openAt(dirFd, name, (type === "directory" ? O_PATH | constants.O_DIRECTORY : constants.O_RDONLY) | constants.O_NOFOLLOW, 0);
  try {
    if (type === "directory") {
      await writeHeader(out, { ...common, path: `${tarPath}/`, size: 0, type });
      // Listing through our own fd reads exactly that directory, following nothing.
      for (const child of listDirectory(fd).sort()) await packEntry(fd, child, `${tarPath}/${child}`, out, false, links);
      return;
    }
    await writeHeader(out, { ...common, path: tarPath, size: st[3], type });
    const buf = Buffer.alloc(1 << 16);
    let left = st[3];
    while (left > 0) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, left), null);
      if (n <= 0) break;
      await out.write(Buffer.from(buf.subarray(0, n)));
      left -= n;
    }
    // A file that shrank while we read it is padded, keeping the archive well formed.
    if (left > 0) await out.write(Buffer.alloc(left));
    const pad = (512 - (st[3] % 512)) % 512;
    if (pad) await out.write(Buffer.alloc(pad));
  } finally {
    if (fd !== dirFd) closeSync(fd);
  }
}

/**
 * Writes SRC (resolved inside the root) as a tar stream. The top entry is named after SRC's
 * last component, or "." when SRC ends in "/." (its contents, as `docker cp` does). A symlink
 * is written as a symlink, unless -L, or SRC ends with "/" (Docker resolves the path then).
 */
export async function copyOut(rootFd: number, src: string, follow: boolean, out: Sink, place = " in the container"): Promise<void> {
  const addon = native();
  const contentsOnly = /\/\.$/.test(src);
  const clean = path.posix.normalize(`/${src}`).replace(/(.)\/$/, "$1");
  const base = clean === "/" ? "." : path.posix.basename(clean);
  const parent = path.posix.dirname(clean);
  const open = (p: string, flags: number): number => {
    try {
      return addon.openInRoot(rootFd, p, flags, 0);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new Error(`${src}: no such file or directory${place}`);
      if (code === "ENOTDIR") throw new Error(`${src}: not a directory`);
      throw err;
    }
  };
  if (follow || clean === "/" || /\/\.?$/.test(src)) {
    // The source itself may be a symlink: it is followed, still inside the root.
    const fd = open(clean, O_PATH | (/\/\.?$/.test(src) ? constants.O_DIRECTORY : 0));
    try {
      await packEntry(fd, "", contentsOnly ? "." : base, out, true, new HardlinkTracker());
    } finally {
      closeSync(fd);
    }
  } else {
    const parentFd = open(parent, O_PATH | constants.O_DIRECTORY);
    try {
      try {
        addon.lstatAt(parentFd, base);
      } catch {
        throw new Error(`${src}: no such file or directory${place}`);
      }
      await packEntry(parentFd, base, base, out, false, new HardlinkTracker());
    } finally {
      closeSync(parentFd);
    }
  }
  await out.write(Buffer.alloc(1024));
}

/**
 * What `cp` copies in: a file (or symlink), a directory, a tar stream from standard input, or
 * "either" (a file or a directory: what the stream's top entry turns out to be).
 */
export type CopyInKind = "file" | "directory" | "stream" | "either";

export interface CopyInOptions {
  /** Highest ids the root's user namespace has (owners kept from the stream must fit). */
  maxUid: number;
  maxGid: number;
  /** Every entry gets this owner (docker cp without -a: the container's root; on the host: the user); absent: the stream's owners. */
  owner?: { uid: number; gid: number };
  /** Where the root is, for messages: " in the container", or "" on the host. */
  place?: string;
  /** DEST as the user gave it (relative, say), for messages; default: dest. */
  shown?: string;
}

/**
 * Extracts a tar stream whose top entry is named `top` ("." for a directory's contents) at DEST
 * (resolved inside the root), with Docker's rules: into DEST when it is a directory (a symlink to
 * one included); as DEST itself when it does not exist (its parent must) or when a file replaces
 * a file, through a temporary directory beside it and a rename. A directory never replaces a
 * file, a file never makes a missing "DEST/", a stream needs a directory. A failed copy leaves
 * nothing behind. Names like ".wh.x" are plain names here, as in docker cp: only layers have
 * whiteouts.
 */
export async function copyIn(rootFd: number, dest: string, top: string, kind: CopyInKind, input: NodeJS.ReadableStream, options: CopyInOptions): Promise<void> {
  const addon = native();
  const place = options.place ?? " in the container";
  const shown = (options.shown ?? dest).replace(/(.)\/+\.?$/, "$1");
  // Messages name where each entry was going, as the user named it: "/dst/a/b in the container".
  const naming = (intoDestination: boolean): UnpackNaming => ({
    stream: "tar archive",
    root: `${shown}${place}`,
    top: `${shown}${place}`,
    entry: (entryPath) => {
      const parts = entryPath.split("/").filter((c) => c !== "" && c !== ".");
      if (parts.includes("..")) return `archive entry ${JSON.stringify(entryPath)} (copying to ${shown}${place})`;
      // Into a directory DEST, entries keep their names; as DEST, the top entry is DEST itself.
      const below = intoDestination || top === "." ? parts : parts.slice(1);
      return `${path.posix.join(shown, ...below)}${place}`;
    },
  });
  const unpack = (fd: number, intoDestination: boolean): Promise<unknown> =>
    // The unpacker opens its destination by path: /proc/self/fd/N is exactly this directory.
    unpackLayer(input, `/proc/self/fd/${fd}`, {
      maxUid: options.maxUid,
      maxGid: options.maxGid,
      onWarning: (m) => process.stderr.write(`tsrun: warning: ${m}\n`),
      whiteouts: false,
      naming: naming(intoDestination),
      // As docker cp: a directory at the destination is never deleted to make room for a file.
      noOverwriteDirNonDir: true,
      ...(options.owner ? { forceOwner: options.owner } : {}),
    });
  const clean = path.posix.normalize(`/${dest}`).replace(/(.)\/$/, "$1");
  let destSt: RawStat | undefined;
  try {
    const fd = addon.openInRoot(rootFd, clean, O_PATH, 0);
    try {
      destSt = addon.lstatAt(fd, "");
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") throw err;
  }
  if (destSt !== undefined && (destSt[0] & S_IFMT) === S_IFDIR) {
    const destFd = addon.openInRoot(rootFd, clean, O_PATH | constants.O_DIRECTORY, 0);
    try {
      await unpack(destFd, true);
    } finally {
      closeSync(destFd);
    }
    return;
  }
  if (kind === "stream") throw new Error(`destination ${dest} must be a directory`);
  const checkKind = (what: CopyInKind): void => {
    if (destSt !== undefined && what === "directory") throw new Error(`cannot copy a directory to a file (${dest})`);
    if (destSt === undefined && what === "file" && /\/\.?$/.test(dest)) throw new Error(`${dest}: no such directory`);
  };
  checkKind(kind);
  if (clean === "/") throw new Error(`cannot replace the root directory${place}`);
  let parentFd: number;
  try {
    parentFd = addon.openInRoot(rootFd, path.posix.dirname(clean), O_PATH | constants.O_DIRECTORY, 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new Error(`${path.posix.dirname(clean)}: no such directory${place}`);
    throw err;
  }
  const tmpName = `.tsrun-cp-${randomBytes(6).toString("hex")}`;
  let made = false;
  try {
    addon.mkdirAt(parentFd, tmpName, 0o700);
    made = true;
    const tmpFd = addon.openAt(parentFd, tmpName, O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW, 0);
    try {
      await unpack(tmpFd, false);
      if (kind === "either") checkKind(top === "." || (addon.lstatAt(tmpFd, top)[0] & S_IFMT) === S_IFDIR ? "directory" : "file");
      if (top === ".") {
        // The directory's own entry gave the temporary directory its mode, owner and times.
        addon.renameAt(parentFd, tmpName, parentFd, path.posix.basename(clean));
        made = false;
      } else {
        addon.renameAt(tmpFd, top, parentFd, path.posix.basename(clean));
      }
    } finally {
      closeSync(tmpFd);
    }
  } finally {
    try {
      if (made) removeEntry(parentFd, tmpName);
    } finally {
      closeSync(parentFd);
    }
  }
}
