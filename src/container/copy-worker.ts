// The container side of `cp`, run by the storage worker inside the container's user namespace.
// The container's root is an fd (its /proc/PID/root, or a private overlay mount for a stopped
// container); every path in it is resolved with openat2(RESOLVE_IN_ROOT), so a symlink in the
// container can never lead to a host file (CVE-2019-10152, CVE-2018-15664 class). Nothing of
// the container is executed or loaded (CVE-2019-14271 class): this is tsrun's own Node code.
import { closeSync, constants, openSync, readdirSync, readSync } from "node:fs";
import { randomBytes } from "../random.js";
import path from "node:path";
import { Header, Pax } from "tar";
import { native } from "../native.js";
import { removeEntry, unpackLayer } from "../store/unpack.js";

const O_PATH = 0o10000000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const TYPES: Record<number, "File" | "Directory" | "SymbolicLink" | "FIFO"> = {
  0o100000: "File",
  0o040000: "Directory",
  0o120000: "SymbolicLink",
  0o010000: "FIFO",
};

interface Sink {
  write(chunk: Buffer): Promise<void>;
}

async function writeHeader(out: Sink, fields: { path: string; mode: number; uid: number; gid: number; size: number; mtime: Date; type: string; linkpath?: string }): Promise<void> {
  const header = new Header({ ...fields, linkpath: fields.linkpath ?? "" } as ConstructorParameters<typeof Header>[0]);
  const block = Buffer.alloc(512);
  header.encode(block, 0);
  if (header.needPax) {
    const pax = new Pax({ path: fields.path, linkpath: fields.linkpath ?? "", mtime: fields.mtime } as ConstructorParameters<typeof Pax>[0]);
    await out.write(pax.encode());
    header.encode(block, 0);
  }
  await out.write(block);
}

/** Writes one entry (and, for a directory, everything below it) as tar, reading through fds. */
async function packEntry(dirFd: number, name: string, tarPath: string, out: Sink, follow: boolean): Promise<void> {
  const addon = native();
  const st = follow ? addon.lstatAt(dirFd, "") : addon.lstatAt(dirFd, name);
  const type = TYPES[st[0] & S_IFMT];
  if (!type) return; // sockets and devices are not copied
  const common = { mode: st[0] & 0o7777, uid: st[1], gid: st[2], mtime: new Date(st[4] * 1000) };
  if (type === "SymbolicLink") {
    await writeHeader(out, { ...common, path: tarPath, size: 0, type, linkpath: addon.readlinkAt(dirFd, name) });
    return;
  }
  if (type === "FIFO") {
    await writeHeader(out, { ...common, path: tarPath, size: 0, type });
    return;
  }
  // With -L the entry is the fd itself (O_PATH): a file is reopened for reading through it.
  const fd = follow
    ? type === "Directory"
      ? dirFd
      : openSync(`/proc/self/fd/${dirFd}`, constants.O_RDONLY)
    : addon.openAt(dirFd, name, (type === "Directory" ? O_PATH | constants.O_DIRECTORY : constants.O_RDONLY) | constants.O_NOFOLLOW, 0);
  try {
    if (type === "Directory") {
      await writeHeader(out, { ...common, path: `${tarPath}/`, size: 0, type });
      // Listing through our own fd reads exactly that directory, following nothing.
      for (const child of readdirSync(`/proc/self/fd/${fd}`).sort()) await packEntry(fd, child, `${tarPath}/${child}`, out, false);
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
export async function copyOut(rootFd: number, src: string, follow: boolean, out: Sink): Promise<void> {
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
      if (code === "ENOENT") throw new Error(`${src}: no such file or directory in the container`);
      if (code === "ENOTDIR") throw new Error(`${src}: not a directory`);
      throw err;
    }
  };
  if (follow || clean === "/" || /\/\.?$/.test(src)) {
    // The source itself may be a symlink: it is followed, still inside the root.
    const fd = open(clean, O_PATH | (/\/\.?$/.test(src) ? constants.O_DIRECTORY : 0));
    try {
      await packEntry(fd, "", contentsOnly ? "." : base, out, true);
    } finally {
      closeSync(fd);
    }
  } else {
    const parentFd = open(parent, O_PATH | constants.O_DIRECTORY);
    try {
      try {
        addon.lstatAt(parentFd, base);
      } catch {
        throw new Error(`${src}: no such file or directory in the container`);
      }
      await packEntry(parentFd, base, base, out, false);
    } finally {
      closeSync(parentFd);
    }
  }
  await out.write(Buffer.alloc(1024));
}

/** What `cp` copies in: a file (or symlink), a directory, or a tar stream from standard input. */
export type CopyInKind = "file" | "directory" | "stream";

/**
 * Extracts a tar stream whose top entry is named `top` ("." for a directory's contents) at DEST
 * (resolved inside the root), with Docker's rules: into DEST when it is a directory (a symlink to
 * one included); as DEST itself when it does not exist (its parent must) or when a file replaces
 * a file, through a temporary directory beside it and a rename. A directory never replaces a
 * file, a file never makes a missing "DEST/", a stream needs a directory. A failed copy leaves
 * nothing behind.
 */
export async function copyIn(
  rootFd: number,
  dest: string,
  top: string,
  kind: CopyInKind,
  input: NodeJS.ReadableStream,
  limits: { maxUid: number; maxGid: number; keepOwners: boolean },
): Promise<void> {
  const addon = native();
  const unpack = (fd: number): Promise<unknown> =>
    // The unpacker opens its destination by path: /proc/self/fd/N is exactly this directory.
    unpackLayer(input, `/proc/self/fd/${fd}`, {
      maxUid: limits.maxUid,
      maxGid: limits.maxGid,
      onWarning: (m) => process.stderr.write(`tsrun: warning: ${m}\n`),
      // Without -a, what is copied in belongs to the container's root, as with docker cp.
      ...(limits.keepOwners ? {} : { forceOwner: { uid: 0, gid: 0 } }),
    });
  const clean = path.posix.normalize(`/${dest}`).replace(/(.)\/$/, "$1");
  let destSt;
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
      await unpack(destFd);
    } finally {
      closeSync(destFd);
    }
    return;
  }
  if (kind === "stream") throw new Error(`destination ${dest} must be a directory`);
  if (destSt !== undefined && kind === "directory") throw new Error(`cannot copy a directory to a file (${dest})`);
  if (destSt === undefined && kind === "file" && /\/\.?$/.test(dest)) throw new Error(`${dest}: no such directory`);
  if (clean === "/") throw new Error("cannot replace the container's root directory");
  let parentFd: number;
  try {
    parentFd = addon.openInRoot(rootFd, path.posix.dirname(clean), O_PATH | constants.O_DIRECTORY, 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new Error(`${path.posix.dirname(clean)}: no such directory in the container`);
    throw err;
  }
  const tmpName = `.tsrun-cp-${randomBytes(6).toString("hex")}`;
  let made = false;
  try {
    addon.mkdirAt(parentFd, tmpName, 0o700);
    made = true;
    const tmpFd = addon.openAt(parentFd, tmpName, O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW, 0);
    try {
      await unpack(tmpFd);
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
