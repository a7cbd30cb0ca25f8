// Containers back into tar: the storage worker's side of `commit` (the overlay upper dir as an OCI
// layer), `diff` (the same walk, as Docker's A/C/D list) and `export` (a container's root, its
// layers merged as overlayfs merges them, as one flat tar).
//
// Everything here runs inside the user namespace (root over the subordinate ids), started by
// Store.pack / Store.changes / Store.exportTree: the upper dir holds files of many uids with
// modes the host user cannot read. One exception: a commit whose changed files all belong to the
// container's root, which is the host user, is packed by the calling process itself (packLayer
// with a HostOwner), saving the start of a helper process; anything else sends it to the worker.
//
// The upper dir belongs to the container, which may still be running and may race us with
// symlinks. So it is walked through directory fds (openat with O_NOFOLLOW, listings through
// /proc/self/fd/N); when the layer is written, each entry's directory is reopened with
// openat2(RESOLVE_IN_ROOT) relative to the upper dir and the entry itself with O_NOFOLLOW:
// nothing can lead the walk onto a host file. Lower layers are the store's own immutable dirs but
// are walked the same way.
//
// File names are bytes: those that are not valid UTF-8 travel in file-names.ts's escaped form
// and go into the tar as the very bytes they are on disk.
//
// Cost: only the upper dir is walked; the lower layers are only looked up, name by name, for the
// entries the upper dir has. A commit therefore costs what the change costs, not what the image
// weighs.
import { closeSync, constants, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { native, type RawStat } from "../native.js";
import { nextChainId, Sha256Stream } from "./digest.js";
import { layerStored, makeLayerTemp } from "./layers.js";
import { encodeFileName, hasEscapedBytes, listDirectory, sortByBytes } from "./file-names.js";
import { sleepSync } from "../sleep-sync.js";
import { removeFile } from "../remove-file.js";

const O_PATH = 0o10000000;
const { O_DIRECTORY, O_NOFOLLOW, O_RDONLY, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFIFO } = constants;

// Indexes into the addon's RawStat tuple.
const ST_MODE = 0;
const ST_UID = 1;
const ST_GID = 2;
const ST_SIZE = 3;
const ST_MTIME = 4;
const ST_RDEV_MAJOR = 6;
const ST_RDEV_MINOR = 7;
const ST_NLINK = 8;
const ST_INO = 9;
const ST_DEV = 10;

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
/** Overlay mounted with "userxattr" keeps its markers (opaque, origin, impure...) in user.overlay.*. */
const OVERLAY_XATTR_PREFIX = "user.overlay.";
const OPAQUE_XATTR = "user.overlay.opaque";

/** What to compare: a container's upper dir against its image's layers. */
export interface UpperScanSpec {
  /** The container's overlay upper dir. */
  upper: string;
  /** The image's layer dirs (layers/<chainid>/diff), topmost first. */
  lowers: string[];
  /**
   * Paths (relative, no leading "/") where the runtime creates mount points (/etc/hosts, /proc,
   * ...): left out when they are an empty file or directory the image does not have, as Docker's
   * init layer keeps them out of its container layer.
   */
  mountPoints: string[];
  /** Paths whose whole subtree is never part of a change: volume and bind mount targets. */
  excludedTrees: string[];
}

/**
 * Packing outside the user namespace: lstat shows host ids there, and the copies in the new layer
 * dir can only belong to the calling user. So every entry must belong to `uid`:`gid` (the host
 * ids of the container's root), and the layer says `containerUid`:`containerGid` for them.
 */
export interface HostOwner {
  uid: number;
  gid: number;
  containerUid: number;
  containerGid: number;
}

/** The change has what only the user namespace can read or recreate: pack it there instead. */
export class NeedsUserNamespace extends Error {}

export type ChangeKind = "A" | "C" | "D";

/** One line of `diff`: "A /path", "C /path", "D /path". */
export interface Change {
  /** Absolute path inside the container. */
  path: string;
  kind: ChangeKind;
}

/** One entry of the scan, in Docker's order (each directory's names sorted, depth first). */
interface ScanItem {
  /** Relative to the root, no leading "/". */
  path: string;
  kind: ChangeKind;
  /**
   * What the layer gets: the upper entry itself, an OCI whiteout, or nothing (a deletion that the
   * opaque directory above it already expresses, or a socket, which tar cannot carry).
   */
  layer: "entry" | "whiteout" | "none";
  /** A directory that hides everything below it: gets a .wh..wh..opq marker in the layer. */
  opaque: boolean;
}

/** A directory of a lower layer that contributes to the merged lower view at some path. */
interface LowerDir {
  fd: number;
}

function fileType(st: RawStat): number {
  return st[ST_MODE] & S_IFMT;
}

/** Overlay's whiteout: a 0:0 character device. */
function isWhiteout(st: RawStat): boolean {
  return fileType(st) === S_IFCHR && st[ST_RDEV_MAJOR] === 0 && st[ST_RDEV_MINOR] === 0;
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function lstatOrNull(dirFd: number, name: string): RawStat | null {
  try {
    return native().lstatAt(dirFd, name);
  } catch (err) {
    const code = errorCode(err);
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw err;
  }
}

function isOpaque(fd: number): boolean {
  const value = native().getXattrs(fd)[OPAQUE_XATTR];
  return value !== undefined && value.toString("latin1") === "y";
}

/** Names in a directory (through its fd), in byte order. */
function sortedNames(dirFd: number): string[] {
  return sortByBytes(listDirectory(dirFd));
}

function joinPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

/** What the lower layers (merged as overlay merges them) have at one name of a directory. */
interface LowerEntry {
  /** The visible entry (topmost layer that has the name), or null when none or hidden by a whiteout. */
  stat: RawStat | null;
  /** When it is a directory: every layer's directory that merges into it, topmost first. */
  dirs: LowerDir[];
}

/**
 * Looks a name up in the merged lower view, as overlayfs does: the topmost layer that has the
 * name decides; a whiteout hides it; directories merge with the ones below until an opaque
 * directory or a non-directory ends the merge.
 */
function lookupBelow(below: LowerDir[], name: string): LowerEntry {
  const addon = native();
  const entry: LowerEntry = { stat: null, dirs: [] };
  for (const dir of below) {
    const st = lstatOrNull(dir.fd, name);
    if (st === null) continue;
    if (isWhiteout(st)) break;
    if (fileType(st) !== S_IFDIR) {
      if (entry.stat === null) entry.stat = st;
      break;
    }
    if (entry.stat === null) entry.stat = st;
    const fd = addon.openAt(dir.fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    entry.dirs.push({ fd });
    if (isOpaque(fd)) break;
  }
  return entry;
}

function closeDirs(dirs: LowerDir[]): void {
  for (const d of dirs) closeSync(d.fd);
}

/** The names a merged lower directory shows (whiteouts and names hidden by higher layers removed). */
function mergedNames(dirs: LowerDir[]): Set<string> {
  const decided = new Map<string, boolean>();
  for (const dir of dirs) {
    for (const name of listDirectory(dir.fd)) {
      if (decided.has(name)) continue;
      const st = lstatOrNull(dir.fd, name);
      decided.set(name, st !== null && !isWhiteout(st));
    }
  }
  return new Set([...decided].filter(([, visible]) => visible).map(([name]) => name));
}

class UpperScanner {
  private readonly addon = native();
  private readonly mountPoints: Set<string>;
  private readonly excludedTrees: Set<string>;
  readonly items: ScanItem[] = [];
  readonly warnings: string[] = [];

  /** hostOwner: the owner every upper entry must have (see HostOwner); checked before anything is written. */
  constructor(
    spec: UpperScanSpec,
    private readonly hostOwner?: HostOwner,
  ) {
    this.mountPoints = new Set(spec.mountPoints.map(clean));
    this.excludedTrees = new Set(spec.excludedTrees.map(clean));
  }

  /**
   * Scans one upper directory. `below`: the lower dirs merging into it (empty when the upper
   * directory is new or hides the lower ones). `hidden`: for an opaque directory over a lower
   * one, the lower names it hides, reported as deleted unless the upper dir has them again.
   * Returns whether anything below was reported.
   */
  scanDir(dirFd: number, relDir: string, below: LowerDir[], hidden: Set<string>): boolean {
    const start = this.items.length;
    const upperNames = sortedNames(dirFd);
    const names = new Set(upperNames);
    for (const h of hidden) names.add(h);
    const ordered = hidden.size === 0 ? upperNames : sortByBytes([...names]);
    for (const name of ordered) {
      const rel = joinPath(relDir, name);
      if (this.excludedTrees.has(rel)) continue;
      const st = lstatOrNull(dirFd, name);
      if (st === null) {
        // Only in the lower dir an opaque directory hides: deleted by this layer.
        if (hidden.has(name)) this.items.push({ path: rel, kind: "D", layer: "none", opaque: false });
        continue;
      }
      if (this.hostOwner) checkHostOwner(st, rel, this.hostOwner);
      const lower = lookupBelow(below, name);
      try {
        this.scanEntry(dirFd, name, rel, st, lower, hidden.has(name));
      } finally {
        closeDirs(lower.dirs);
      }
    }
    return this.items.length > start;
  }

  /**
   * A mount point directory the runtime made: empty, or holding nothing but mount targets and
   * mount points of the same kind (the parents made for a build's RUN --mount targets).
   */
  private isStubDir(dirFd: number, name: string, rel: string): boolean {
    const fd = this.addon.openAt(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    try {
      for (const child of listDirectory(fd)) {
        const childRel = joinPath(rel, child);
        if (this.excludedTrees.has(childRel)) continue;
        const st = this.mountPoints.has(childRel) ? lstatOrNull(fd, child) : null;
        if (st === null) return false;
        const type = fileType(st);
        if ((type === S_IFREG && st[ST_SIZE] === 0) || (type === S_IFDIR && this.isStubDir(fd, child, childRel))) continue;
        return false;
      }
      return true;
    } finally {
      closeSync(fd);
    }
  }

  /** hiddenBelow: the name exists in a lower dir that an opaque upper dir above it hides. */
  private scanEntry(dirFd: number, name: string, rel: string, st: RawStat, lower: LowerEntry, hiddenBelow: boolean): void {
    const type = fileType(st);
    if (isWhiteout(st)) {
      // Overlay makes whiteouts only over something below; one over nothing changes nothing.
      if (lower.stat !== null) this.items.push({ path: rel, kind: "D", layer: "whiteout", opaque: false });
      return;
    }
    if (this.mountPoints.has(rel) && lower.stat === null && !hiddenBelow) {
      const stub = (type === S_IFREG && st[ST_SIZE] === 0) || (type === S_IFDIR && this.isStubDir(dirFd, name, rel));
      if (stub) return;
    }
    // Re-created inside an opaque directory: it was there before and is there now, so changed.
    const kind: ChangeKind = lower.stat === null && !hiddenBelow ? "A" : "C";
    if (type !== S_IFDIR) {
      const packable = type === S_IFREG || type === S_IFLNK || type === S_IFIFO;
      this.items.push({ path: rel, kind, layer: packable ? "entry" : "none", opaque: false });
      return;
    }
    const fd = this.addon.openAt(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    try {
      const lowerIsDir = lower.stat !== null && fileType(lower.stat) === S_IFDIR;
      // An opaque marker only matters over a lower directory; a new directory hides nothing.
      const opaque = lowerIsDir && isOpaque(fd);
      const at = this.items.length;
      this.items.push({ path: rel, kind, layer: "entry", opaque });
      const below = lowerIsDir && !opaque ? lower.dirs : [];
      const hidden = opaque ? mergedNames(lower.dirs) : new Set<string>();
      const childrenChanged = this.scanDir(fd, rel, below, hidden);
      // A directory that is in the upper dir only because overlay copied it up for a child (or
      // for a runtime mount point left out above) is no change of its own: Docker lists such a
      // parent only when something below it changed.
      const ownChange =
        kind === "A" ||
        hiddenBelow ||
        opaque ||
        !lowerIsDir ||
        (lower.stat !== null && (lower.stat[ST_MODE] !== st[ST_MODE] || lower.stat[ST_UID] !== st[ST_UID] || lower.stat[ST_GID] !== st[ST_GID]));
      if (!ownChange && !childrenChanged) this.items.splice(at, 1);
    } finally {
      closeSync(fd);
    }
  }
}

function checkHostOwner(st: RawStat, rel: string, owner: HostOwner): void {
  if (st[ST_UID] !== owner.uid || st[ST_GID] !== owner.gid) throw new NeedsUserNamespace(`/${rel} belongs to ${st[ST_UID]}:${st[ST_GID]}`);
}

function clean(p: string): string {
  return path.posix.normalize(`/${p}`).slice(1).replace(/\/$/, "");
}

/** Walks the upper dir against the lower layers; the result is in Docker's order. */
function scanUpper(spec: UpperScanSpec, hostOwner?: HostOwner): { items: ScanItem[]; warnings: string[] } {
  const scanner = new UpperScanner(spec, hostOwner);
  const upperFd = openSync(spec.upper, O_RDONLY | O_DIRECTORY);
  const lowers: LowerDir[] = [];
  try {
    for (const dir of spec.lowers) {
      lowers.push({ fd: openSync(dir, O_PATH | O_DIRECTORY) });
      // A lower layer's root can itself be opaque (an OCI layer with /.wh..wh..opq).
      if (isOpaque(lowers[lowers.length - 1]!.fd)) break;
    }
    scanner.scanDir(upperFd, "", lowers, new Set());
  } finally {
    closeDirs(lowers);
    closeSync(upperFd);
  }
  return { items: scanner.items, warnings: scanner.warnings };
}

/** The `diff` list. */
export function upperChanges(spec: UpperScanSpec): Change[] {
  return scanUpper(spec).items.map((i) => ({ path: `/${i.path}`, kind: i.kind }));
}

// ---------------------------------------------------------------------------------------------
// Tar writing

export interface TarEntry {
  /** Relative path; directories get their trailing "/" here. */
  path: string;
  type: "file" | "hardlink" | "symlink" | "directory" | "fifo";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (Docker writes whole seconds, for reproducible layers). */
  mtime: number;
  linkpath?: string | undefined;
  xattrs?: ReadonlyMap<string, Buffer> | undefined;
}

const BLOCK = 512;
const TYPEFLAG: Record<TarEntry["type"], string> = { file: "0", hardlink: "1", symlink: "2", directory: "5", fifo: "6" };
const MAX_OCTAL_ID = 0o7777777;
const MAX_OCTAL_SIZE = 0o77777777777;

/** Octal digits, zero-padded to width - 1, then a NUL (as GNU tar and Go write them). */
function octalField(block: Buffer, offset: number, width: number, value: number): void {
  let v = value;
  for (let i = width - 2; i >= 0; i--) {
    block[offset + i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  block[offset + width - 1] = 0;
}

/** "<length> <key>=<value>\n", where the length counts the whole record including itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), value, Buffer.from("\n")]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length), "latin1"), body]);
}

function isAscii(s: string): boolean {
  return /^[\x01-\x7f]*$/.test(s);
}

interface UstarFields {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}

/** A name field's bytes (cut at its width: a longer name is in a PAX record too). */
function writeName(block: Buffer, offset: number, width: number, name: string): void {
  if (isAscii(name)) block.write(name, offset, width, "latin1");
  else encodeFileName(name).copy(block, offset, 0, width);
}

/** Writes one ustar header block at offset (the caller checked that 512 bytes are free). */
function writeUstarHeader(block: Buffer, offset: number, f: UstarFields): void {
  block.fill(0, offset, offset + BLOCK);
  writeName(block, offset, 100, f.name);
  octalField(block, offset + 100, 8, f.mode);
  octalField(block, offset + 108, 8, f.uid <= MAX_OCTAL_ID ? f.uid : 0);
  octalField(block, offset + 116, 8, f.gid <= MAX_OCTAL_ID ? f.gid : 0);
  octalField(block, offset + 124, 12, f.size <= MAX_OCTAL_SIZE ? f.size : 0);
  octalField(block, offset + 136, 12, Math.max(0, Math.min(f.mtime, MAX_OCTAL_SIZE)));
  block.write(f.typeflag, offset + 156, 1, "latin1");
  if (f.linkname) writeName(block, offset + 157, 100, f.linkname);
  block.write("ustar\u000000", offset + 257, 8, "latin1");
  octalField(block, offset + 329, 8, 0);
  octalField(block, offset + 337, 8, 0);
  // The checksum is computed with its own field read as eight spaces.
  block.fill(0x20, offset + 148, offset + 156);
  let sum = 0;
  for (let i = offset; i < offset + BLOCK; i++) sum += block[i] as number;
  octalField(block, offset + 148, 7, sum);
  block[offset + 155] = 0x20;
}

function ustarHeader(fields: UstarFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeUstarHeader(block, 0, fields);
  return block;
}

/** The PAX records an entry needs beyond what ustar holds (none for most entries). */
function paxRecordsFor(e: TarEntry): Buffer[] {
  const records: Buffer[] = [];
  const linkpath = e.linkpath ?? "";
  const pathRecord = e.path.length > 100 || !isAscii(e.path);
  const linkRecord = linkpath.length > 100 || !isAscii(linkpath);
  // PAX values are UTF-8 unless hdrcharset says otherwise (POSIX; GNU tar and Python write it).
  if ((pathRecord && hasEscapedBytes(e.path)) || (linkRecord && hasEscapedBytes(linkpath))) records.push(paxRecord("hdrcharset", Buffer.from("BINARY")));
  if (pathRecord) records.push(paxRecord("path", encodeFileName(e.path)));
  if (linkRecord) records.push(paxRecord("linkpath", encodeFileName(linkpath)));
  if (e.uid > MAX_OCTAL_ID) records.push(paxRecord("uid", Buffer.from(String(e.uid))));
  if (e.gid > MAX_OCTAL_ID) records.push(paxRecord("gid", Buffer.from(String(e.gid))));
  if (e.size > MAX_OCTAL_SIZE) records.push(paxRecord("size", Buffer.from(String(e.size))));
  if (e.xattrs && e.xattrs.size > 0) {
    // Sorted, so the same file always gives the same bytes (and the same layer digest).
    for (const [name, value] of [...e.xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      records.push(paxRecord(`SCHILY.xattr.${name}`, value));
    }
  }
  return records;
}

function entryFields(e: TarEntry): UstarFields {
  return { name: e.path, mode: e.mode, uid: e.uid, gid: e.gid, size: e.size, mtime: e.mtime, typeflag: TYPEFLAG[e.type], linkname: e.linkpath ?? "" };
}

/** The PAX 'x' header, its records and padding, for an entry that needs them. */
function paxBlocks(e: TarEntry, records: Buffer[]): Buffer {
  const body = Buffer.concat(records);
  const paxName = `PaxHeaders.0/${path.posix.basename(e.path.replace(/\/$/, "")).slice(0, 80)}`;
  const paxHeader = ustarHeader({ name: isAscii(paxName) ? paxName : "PaxHeaders.0/entry", mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: e.mtime, typeflag: "x", linkname: "" });
  const padding = Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK);
  return Buffer.concat([paxHeader, body, padding]);
}

/** The header blocks of one entry: a PAX header when it needs one, then its ustar header. */
export function entryHeaderBlocks(entry: TarEntry): Buffer {
  const records = paxRecordsFor(entry);
  const header = ustarHeader(entryFields(entry));
  return records.length > 0 ? Buffer.concat([paxBlocks(entry, records), header]) : header;
}

/**
 * Where finished tar bytes go, synchronously: the chunk is reused once the sink returns. Every
 * sink here writes to a file or pipe with writeSync: a walk of tens of thousands of entries with
 * nothing to wait for spends no time in promises.
 */
export type TarSink = (chunk: Buffer) => void;

/** Zeros for tar padding (less than a block) and the end-of-archive blocks. */
const ZEROS = Buffer.alloc(2 * 512);

/** Buffers tar output in large chunks (small files cost no write call each). */
export class TarWriter {
  private buffer = Buffer.allocUnsafe(1 << 20);
  private used = 0;
  entries = 0;
  bytes = 0;

  constructor(private readonly sink: TarSink) {}

  private flush(): void {
    if (this.used === 0) return;
    const chunk = this.buffer.subarray(0, this.used);
    this.bytes += this.used;
    this.used = 0;
    this.sink(chunk);
  }

  private put(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) {
      if (this.used === this.buffer.length) this.flush();
      const n = data.copy(this.buffer, this.used, offset);
      this.used += n;
      offset += n;
    }
  }

  /** Writes one entry; a regular file's data is read from dataFd (exactly entry.size bytes). */
  add(entry: TarEntry, dataFd?: number): void {
    const records = paxRecordsFor(entry);
    if (records.length > 0) this.put(paxBlocks(entry, records));
    // The header goes straight into the output buffer: tens of thousands of entries make no garbage.
    if (this.buffer.length - this.used < BLOCK) this.flush();
    writeUstarHeader(this.buffer, this.used, entryFields(entry));
    this.used += BLOCK;
    this.entries++;
    if (entry.type !== "file" || entry.size === 0) return;
    if (dataFd === undefined) throw new Error(`no data for ${entry.path}`);
    let left = entry.size;
    while (left > 0) {
      if (this.used === this.buffer.length) this.flush();
      // Straight into the output buffer: one copy from the page cache, none in between.
      const n = native().readInto(dataFd, this.buffer, this.used, Math.min(left, this.buffer.length - this.used));
      if (n <= 0) break;
      this.used += n;
      left -= n;
    }
    // A file that shrank while we read it is padded, keeping the archive well formed.
    if (left > 0) this.put(Buffer.alloc(left));
    const pad = (BLOCK - (entry.size % BLOCK)) % BLOCK;
    if (pad) this.put(ZEROS.subarray(0, pad));
  }

  /** The two zero blocks that end an archive, and the last flush. */
  finish(): void {
    this.put(ZEROS.subarray(0, 2 * BLOCK));
    this.flush();
  }
}

/**
 * Writes all of data. Standard output may be a pipe someone else made non-blocking (the file
 * description is shared): then a full pipe gives EAGAIN, and the write is tried again shortly.
 */
function writeAll(fd: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += writeSync(fd, data, offset, data.length - offset);
    } catch (err) {
      if (errorCode(err) !== "EAGAIN") throw err;
      sleepSync(1); // a full non-blocking pipe: nothing else to do meanwhile
    }
  }
}

/**
 * The xattrs a layer or export carries: overlay's own markers are the overlay's business.
 * hostSide (packing outside the user namespace): only user.* xattrs read the same there; a file
 * capability, for one, reads with the host's root id in it (VFS_CAP_REVISION_3) instead of the
 * namespace's form, so such an entry is packed inside the user namespace.
 */
function portableXattrs(fd: number, rel: string, hostSide: boolean): ReadonlyMap<string, Buffer> {
  const all = native().getXattrs(fd);
  let out: Map<string, Buffer> | undefined;
  // (for...in: most files have no xattrs, and then nothing is made for them.)
  for (const name in all) {
    if (name.startsWith(OVERLAY_XATTR_PREFIX) || name.startsWith("trusted.")) continue;
    if (hostSide && !name.startsWith("user.")) throw new NeedsUserNamespace(`/${rel}: xattr ${name} is read inside the user namespace`);
    (out ??= new Map()).set(name, all[name] as Buffer);
  }
  return out ?? NO_XATTRS;
}

const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

/** Remembers the first name of every multiply-linked file, so later names become hardlinks. */
export class HardlinkTracker {
  private readonly seen = new Map<string, string>();

  /** The earlier name of the same inode, or undefined (and remembers this one). */
  earlier(st: RawStat, name: string): string | undefined {
    if (fileType(st) !== S_IFREG || st[ST_NLINK] < 2) return undefined;
    const key = `${st[ST_DEV]}:${st[ST_INO]}`;
    const first = this.seen.get(key);
    if (first === undefined) this.seen.set(key, name);
    return first;
  }
}

/**
 * A tar entry for what lstat found (st): one object literal of one shape for every entry.
 * Spreading a shared part into each (`{ ...common, path, ... }`) cost ~1 KB of garbage per entry
 * here: a commit of 1,000 files ran a young-generation collection or two more.
 */
function tarEntry(st: RawStat, path: string, type: TarEntry["type"], size: number, linkpath: string | undefined, xattrs: ReadonlyMap<string, Buffer> | undefined): TarEntry {
  return { path, type, mode: st[ST_MODE] & 0o7777, uid: st[ST_UID], gid: st[ST_GID], size, mtime: st[ST_MTIME], linkpath, xattrs };
}

/**
 * Writes the entry `name` of the directory parentFd, as lstat found it (st). A directory's fd
 * is passed in by the caller, which lists it next. Nothing is followed: the entry is opened with
 * O_NOFOLLOW (and O_NONBLOCK, so a FIFO swapped in meanwhile cannot block the read). Returns
 * false for what tar cannot carry (sockets, devices).
 */
function writeEntry(
  tar: TarWriter,
  parentFd: number,
  name: string,
  st: RawStat,
  rel: string,
  links: HardlinkTracker,
  opts: { dirFd?: number; hostSide?: boolean } = {},
): boolean {
  const addon = native();
  switch (fileType(st)) {
    case S_IFDIR: {
      const fd = opts.dirFd ?? addon.openAt(parentFd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
      try {
        tar.add(tarEntry(st, `${rel}/`, "directory", 0, undefined, portableXattrs(fd, rel, opts.hostSide ?? false)));
      } finally {
        if (opts.dirFd === undefined) closeSync(fd);
      }
      return true;
    }
    case S_IFLNK:
      // User xattrs cannot exist on symlinks.
      tar.add(tarEntry(st, rel, "symlink", 0, addon.readlinkAt(parentFd, name), undefined));
      return true;
    case S_IFIFO:
      tar.add(tarEntry(st, rel, "fifo", 0, undefined, undefined));
      return true;
    case S_IFREG: {
      const first = links.earlier(st, rel);
      if (first !== undefined) {
        tar.add(tarEntry(st, rel, "hardlink", 0, first, undefined));
        return true;
      }
      const dataFd = addon.openAt(parentFd, name, O_RDONLY | O_NOFOLLOW | constants.O_NONBLOCK, 0);
      try {
        tar.add(tarEntry(st, rel, "file", st[ST_SIZE], undefined, portableXattrs(dataFd, rel, opts.hostSide ?? false)), dataFd);
      } finally {
        closeSync(dataFd);
      }
      return true;
    }
    default:
      return false;
  }
}

/** The directory an entry is in, opened in-root; consecutive entries mostly share it. */
class ParentDirs {
  private current: { rel: string; fd: number } | undefined;

  constructor(private readonly rootFd: number) {}

  open(rel: string): { fd: number; name: string } {
    const dir = path.posix.dirname(rel);
    const name = path.posix.basename(rel);
    if (dir === ".") return { fd: this.rootFd, name };
    if (this.current?.rel !== dir) {
      this.close();
      // RESOLVE_IN_ROOT: whatever the container put in the path, it resolves inside the upper dir.
      this.current = { rel: dir, fd: native().openInRoot(this.rootFd, dir, O_PATH | O_DIRECTORY, 0) };
    }
    return { fd: this.current.fd, name };
  }

  close(): void {
    if (this.current) closeSync(this.current.fd);
    this.current = undefined;
  }
}

/**
 * Writes the scanned upper dir as an OCI layer (whiteouts in OCI form). Returns warnings.
 * clampMtime: no time in the layer is later (SOURCE_DATE_EPOCH, for reproducible builds).
 */
function packUpper(spec: UpperScanSpec, items: ScanItem[], tar: TarWriter, clampMtime?: number, hostOwner?: HostOwner): string[] {
  const addon = native();
  const warnings: string[] = [];
  const links = new HardlinkTracker();
  const upperFd = openSync(spec.upper, O_PATH | O_DIRECTORY);
  const parents = new ParentDirs(upperFd);
  try {
    for (const item of items) {
      if (item.layer === "none") {
        if (item.kind !== "D") warnings.push(`/${item.path}: sockets and device nodes cannot be stored in a layer; left out`);
        continue;
      }
      let parent: { fd: number; name: string };
      let st: RawStat;
      try {
        parent = parents.open(item.path);
        st = addon.lstatAt(parent.fd, parent.name);
        if (clampMtime !== undefined && st[ST_MTIME] > clampMtime) st[ST_MTIME] = clampMtime;
        if (hostOwner) {
          // Again: a running container may have changed it since the scan.
          checkHostOwner(st, item.path, hostOwner);
          st[ST_UID] = hostOwner.containerUid;
          st[ST_GID] = hostOwner.containerGid;
        }
      } catch (err) {
        // Gone since the scan (a running container): nothing to store.
        if (errorCode(err) === "ENOENT" || errorCode(err) === "ENOTDIR") continue;
        throw err;
      }
      if (item.layer === "whiteout" || isWhiteout(st)) {
        if (!isWhiteout(st)) continue; // replaced since the scan: the next commit has it
        const dir = path.posix.dirname(item.path);
        const name = `${WHITEOUT_PREFIX}${parent.name}`;
        // As Docker and containers/storage write them: an empty regular file, mode 0600.
        tar.add({ path: dir === "." ? name : `${dir}/${name}`, type: "file", mode: 0o600, uid: st[ST_UID], gid: st[ST_GID], size: 0, mtime: st[ST_MTIME] });
        continue;
      }
      const opaque = item.opaque && fileType(st) === S_IFDIR;
      if (!writeEntry(tar, parent.fd, parent.name, st, item.path, links, { hostSide: hostOwner !== undefined })) {
        warnings.push(`/${item.path}: sockets and device nodes cannot be stored in a layer; left out`);
        continue;
      }
      if (opaque) {
        tar.add({ path: `${item.path}/${OPAQUE_MARKER}`, type: "file", mode: st[ST_MODE] & 0o777, uid: st[ST_UID], gid: st[ST_GID], size: 0, mtime: st[ST_MTIME] });
      }
    }
  } finally {
    parents.close();
    closeSync(upperFd);
  }
  tar.finish();
  return warnings;
}

/**
 * Writes a container's root as tar, depth first, names sorted: the layer dirs (the upper dir
 * first) merged here as overlayfs would show them, rather than through an overlay mount. Reading
 * the layers' own filesystem is cheaper per entry than through overlay (an overlay lookup, open
 * and close each touch the layers' inodes too): about a third of an export's time went there.
 * `dirs`: this directory in each layer that merges into it, topmost first.
 */
function packMergedTree(dirs: number[], rel: string, tar: TarWriter, links: HardlinkTracker, warnings: string[]): void {
  // Each name belongs to the topmost layer that has it (a whiteout there hides it).
  const owners = new Map<string, number>();
  for (let i = 0; i < dirs.length; i++) {
    for (const name of listDirectory(dirs[i]!)) if (!owners.has(name)) owners.set(name, i);
  }
  for (const name of sortByBytes([...owners.keys()])) {
    const owner = owners.get(name)!;
    const dirFd = dirs[owner]!;
    const child = joinPath(rel, name);
    const st = lstatOrNull(dirFd, name);
    if (st === null) {
      warnings.push(`/${child}: vanished while exporting`);
      continue;
    }
    if (isWhiteout(st)) continue;
    if (fileType(st) !== S_IFDIR) {
      if (!writeEntry(tar, dirFd, name, st, child, links)) warnings.push(`/${child}: sockets and device nodes are not exported`);
      continue;
    }
    // The owner's directory and those below that merge into it: the rules commit's scan uses.
    const merged = lookupBelow(dirs.slice(owner).map((fd) => ({ fd })), name);
    try {
      const top = merged.dirs[0];
      if (top === undefined) {
        warnings.push(`/${child}: vanished while exporting`);
        continue;
      }
      writeEntry(tar, dirFd, name, st, child, links, { dirFd: top.fd });
      packMergedTree(merged.dirs.map((d) => d.fd), child, tar, links, warnings);
    } finally {
      closeDirs(merged.dirs);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Worker jobs (the host side writes the job file; see Store.pack, Store.changes, Store.exportTree)

export interface PackJob extends UpperScanSpec {
  /** Where the uncompressed layer tar goes (a new file). */
  tarFile: string;
  /**
   * A fresh layer dir that receives the same layer in overlay form (made, with its diff/, only
   * when the layer is written: it may not exist yet). Absent
   * when the worker reads in another mapping than the store's (a keep-id container): then the
   * caller unpacks the tar into the store.
   */
  layerDir?: string;
  /**
   * With layerDir: the chain the new layer goes on top of (null for a first layer). When the
   * store has the packed layer's chain already (the same container committed again, a rebuild
   * that made the same files), layerDir is left empty and the stored layer is reused, as Podman
   * reuses a layer with the same DiffID.
   */
  parentChainId?: string | null;
  /** With layerDir, set by Store.pack: the store's layers dir and the highest ids that exist. */
  store?: { layersDir: string; maxUid: number; maxGid: number };
  /** SOURCE_DATE_EPOCH of a build: later file times are clamped to it. */
  clampMtime?: number;
}

export interface PackResult {
  /** sha256 of the tar: the layer's DiffID and, stored uncompressed, its blob digest too. */
  digest: string;
  size: number;
  /** Tar entries written; 0 means the container changed nothing. */
  entries: number;
  /** The layer dir was filled; false: no change, or the store has this layer (PackJob.stored). */
  layerWritten: boolean;
  warnings: string[];
}

export interface ExportJob {
  /** The container's upper dir, then the image's layer dirs, topmost first. */
  layers: string[];
}

interface JobEnvelope<T> {
  job: T;
  resultFile: string;
}


/** `pack JOBFILE`: the commit's layer, as a tar file and, unless stored already, as a layer dir. */
export async function runPackJob(jobFile: string): Promise<void> {
  const { job, resultFile } = JSON.parse(readFileSync(jobFile, "utf8")) as JobEnvelope<PackJob>;
  writeFileSync(resultFile, JSON.stringify(await packLayer(job)));
}

/**
 * Writes the layer of a pack job: the tar first, then, when the store does not have that layer
 * yet, the layer dir unpacked from the tar (so it is exactly what the digest names, whatever a
 * running container does meanwhile). With hostOwner, in the calling process outside the user
 * namespace: a change it cannot pack there (another owner, a file its owner may not read, an
 * xattr only root may set) throws NeedsUserNamespace, leaving the tar file and whatever it wrote
 * to the layer dir for the caller to remove.
 */
export async function packLayer(job: PackJob, hostOwner?: HostOwner): Promise<PackResult> {
  try {
    const { items, warnings: scanWarnings } = scanUpper(job, hostOwner);
    const out = openSync(job.tarFile, "wx", 0o644);
    const hash = new Sha256Stream();
    const tar = new TarWriter((chunk) => {
      hash.update(chunk);
      writeAll(out, chunk);
    });
    let warnings: string[];
    try {
      warnings = [...scanWarnings, ...packUpper(job, items, tar, job.clampMtime, hostOwner)];
    } finally {
      closeSync(out);
    }
    const digest = hash.digest();
    const result = { digest, size: tar.bytes, entries: tar.entries, layerWritten: false, warnings };
    // An empty change needs no layer at all.
    if (result.entries === 0) {
      removeFile(job.tarFile);
      return result;
    }
    if (job.layerDir !== undefined) {
      if (!job.store) throw new Error("a pack job with a layer dir needs the store's details");
      const reuse = job.parentChainId !== undefined && layerStored(job.store.layersDir, nextChainId(job.parentChainId, digest));
      if (!reuse) {
        await unpackPacked(job.tarFile, job.layerDir, job.store, digest, warnings, hostOwner);
        result.layerWritten = true;
      }
    }
    return result;
  } catch (err) {
    const code = errorCode(err);
    if (hostOwner && (code === "EACCES" || code === "EPERM")) throw new NeedsUserNamespace((err as Error).message);
    throw err;
  }
}

/**
 * The layer dir of a pack job, from the tar it just wrote: the unpacker's work, which the same
 * bytes would get from a pull. Its sequential reads of one file cost no more than writing the
 * dir during the walk did (measured on a 1,000-file commit), and it runs only for a new layer.
 */
async function unpackPacked(tarFile: string, layerDir: string, ids: { maxUid: number; maxGid: number }, digest: string, warnings: string[], hostOwner: HostOwner | undefined): Promise<void> {
  const { readReused, unpackLayer } = await import("./unpack.js");
  // Made here, when there is a layer to write (inside the user namespace too: owned by the user).
  makeLayerTemp(layerDir);
  const fd = openSync(tarFile, "r");
  try {
    await unpackLayer(readReused(fd), path.join(layerDir, "diff"), {
      reusedChunks: true,
      // Hashed as it was written.
      inputDigest: digest,
      maxUid: ids.maxUid,
      maxGid: ids.maxGid,
      // Outside the user namespace every entry is the container's root, which is the host user.
      ...(hostOwner ? { forceOwner: { uid: hostOwner.uid, gid: hostOwner.gid }, hostUser: true } : {}),
      onWarning: (m) => warnings.push(m),
    });
  } finally {
    closeSync(fd);
  }
}

/** `changes JOBFILE`: the diff list. */
export function runChangesJob(jobFile: string): void {
  const { job, resultFile } = JSON.parse(readFileSync(jobFile, "utf8")) as JobEnvelope<UpperScanSpec>;
  writeFileSync(resultFile, JSON.stringify(upperChanges(job)));
}

/**
 * `export JOBFILE`: the container's layers (its upper dir first), merged as overlayfs merges
 * them, written as one tar on standard output. The layers are only read: a running container's
 * upper dir may change meanwhile, and every entry is opened under its directory's fd with
 * O_NOFOLLOW, so nothing leads the walk out of the layer dirs.
 */
export function runExportJob(jobFile: string): void {
  const { job } = JSON.parse(readFileSync(jobFile, "utf8")) as JobEnvelope<ExportJob>;
  const warnings: string[] = [];
  const tar = new TarWriter((chunk) => writeAll(1, chunk));
  // The root merges like any directory; a layer's root can itself be opaque (/.wh..wh..opq).
  const roots: number[] = [];
  try {
    for (const dir of job.layers) {
      roots.push(openSync(dir, O_RDONLY | O_DIRECTORY));
      if (isOpaque(roots[roots.length - 1]!)) break;
    }
    packMergedTree(roots, "", tar, new HardlinkTracker(), warnings);
  } finally {
    for (const fd of roots) closeSync(fd);
  }
  tar.finish();
  for (const w of warnings) process.stderr.write(`tsrun: warning: ${w}\n`);
}
