// The layer unpacker: turns one OCI/Docker layer tarball (gzip, zstd or plain) into an overlayfs
// lower directory, and computes the layer's digests in the same pass.
//
// It runs inside the user namespace, as root over the container's id range, so it can chown.
// Security model: destDir is opened once. Directories are reached from it one component at a
// time with openat(O_PATH|O_DIRECTORY|O_NOFOLLOW) on the parent's fd, so a symlink is never
// traversed on the way; a parent that is a symlink (a layer may write through one, e.g. into
// /lib -> usr/lib) is resolved with openat2 RESOLVE_IN_ROOT, so symlinks and ".." cannot leave
// destDir. Entries are created with *at() calls on the parent fd that never follow the last
// component (O_CREAT|O_EXCL|O_NOFOLLOW, AT_SYMLINK_NOFOLLOW). No Node path-based fs call touches
// anything inside destDir (they would follow symlinks on the host).
//
// Speed: directory fds reached without a symlink are kept in a small cache (tar archives list a
// directory's entries together), so most entries cost one openat of the entry itself; owners
// and modes are only changed when the created file's differ; the tar reader is synchronous and
// hands file data over as views of the decompressed chunks (tar-reader.ts).
//
// On error the promise rejects and destDir is left half-written: the caller deletes it (inside
// the user namespace) and must never use it.

import { checkLayerCompression, toBuffer, withDecompressed } from "../image/archive/compression.js";
import { createHash } from "node:crypto";
import { closeSync, constants as fsConstants, fchmodSync, fchownSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { native, type RawStat } from "../native.js";
import { fileNameByteLength, listDirectory } from "./file-names.js";
import { TarFormatError, TarReader, type TarEntry, type TarEntryHandler, type Timespec } from "./tar-reader.js";
import { sleepSync } from "../sleep-sync.js";

export interface UnpackOptions {
  /** Highest uid that exists in the namespace; larger owners -> error, or squashed (below). */
  maxUid: number;
  maxGid: number;
  onWarning: (message: string) => void;
  /** When true, owners above maxUid/maxGid are mapped to 0 with a warning (Podman's ignore_chown_errors); else a clear error. */
  squashUnmappedOwners?: boolean;
  /** Every entry gets this owner, whatever the header says (`cp` without -a: the container's root). */
  forceOwner?: { uid: number; gid: number };
  /**
   * The unpacker runs as an ordinary user outside any user namespace (with forceOwner: the
   * user's own ids), who cannot create anything in a directory once it is read-only: every
   * directory stays writable for its owner until the end, then gets its own mode.
   */
  hostUser?: boolean;
  /**
   * OCI whiteouts (".wh.NAME", ".wh..wh..opq") become overlay whiteouts (default true). False:
   * they are plain names, as docker cp and Docker's plain untar treat them; only layers have them.
   */
  whiteouts?: boolean;
  /**
   * Hash the bytes as given (default true). A pull that streams a layer here has hashed them
   * already, on their way from the registry: then compressedDigest is left out.
   */
  digestInput?: boolean;
  /**
   * The sha256 of the bytes as given, computed by the caller as it wrote the file (load, from a
   * private spill file): returned as compressedDigest, and for a plain tar also as the diffId,
   * so that such a layer is not hashed a second time on the unpacker's critical path.
   */
  inputDigest?: string;
  /**
   * The input yields one reused buffer (readReused): a chunk is only valid until the next one is
   * asked for. A plain tar is consumed chunk by chunk before that; compressed input is copied on
   * its way to the decompressor, which holds on to it.
   */
  reusedChunks?: boolean;
  /**
   * The stream comes through an UnpackFeed, which inflates gzip in the feeding process (off the
   * unpacker's critical path): a stream that is still gzip here was compressed twice.
   */
  fromFeed?: boolean;
  /** How messages name the stream and its entries (default: a layer's words). */
  naming?: UnpackNaming;
  /**
   * Never replace a directory by a non-directory or the reverse (docker cp's
   * NoOverwriteDirNonDir): a copy must not delete a directory tree at its destination. Layers
   * replace freely (default false).
   */
  noOverwriteDirNonDir?: boolean;
}

/**
 * The words of messages: a layer's entries are "layer entry "a/b"", but what `cp` copies is
 * named by the path the user gave (where the entry goes), so that the message says which file.
 */
export interface UnpackNaming {
  /** What the stream is: "layer tarball", "tar archive". */
  stream: string;
  /** Where entries go, as a phrase: "the layer", "/dst in the container". */
  root: string;
  /** Its top, as a phrase: "the layer root", "/dst in the container". */
  top: string;
  /** One entry, by its path in the stream. */
  entry: (entryPath: string) => string;
}

export const LAYER_NAMING: UnpackNaming = { stream: "layer tarball", root: "the layer", top: "the layer root", entry: (p) => `layer entry ${JSON.stringify(p)}` };

export interface UnpackResult {
  /** "sha256:<hex>" of the uncompressed tar stream. */
  diffId: string;
  /** "sha256:<hex>" of the bytes as given (compressed or not); absent without digestInput. */
  compressedDigest?: string;
  /** Uncompressed bytes. */
  size: number;
  /** File-system entries in the tar (metadata headers not counted). */
  entries: number;
}

// O_PATH is not in fs.constants; this is its value on Linux x86_64 and arm64.
const O_PATH = 0o10000000;
const { O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_WRONLY } = fsConstants;
const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFIFO } = fsConstants;

// Indexes into the addon's RawStat tuple.
const ST_MODE = 0;
const ST_UID = 1;
const ST_GID = 2;
const ST_RDEV_MAJOR = 6;
const ST_RDEV_MINOR = 7;
const ST_INO = 9;

const NAME_MAX = 255;
const PATH_MAX = 4095;
/** Directory fds kept open: more than any real tree's depth, far below the fd limit. */
const DIR_CACHE_SIZE = 128;

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
/** Overlay mounted with "userxattr" reads its markers from user.overlay.* (trusted.* needs real root). */
const OPAQUE_XATTR = "user.overlay.opaque";

/** Unpacks one layer tarball into destDir (an existing, empty directory). */
export async function unpackLayer(input: AsyncIterable<Buffer | string | Uint8Array>, destDir: string, options: UnpackOptions): Promise<UnpackResult> {
  const rootFd = openSync(destDir, O_PATH | O_DIRECTORY);
  let extractor: LayerExtractor | undefined;
  try {
    extractor = new LayerExtractor(rootFd, options);
    const digests = await readLayer(input, extractor, options.inputDigest === undefined && (options.digestInput ?? true), options.inputDigest, options.fromFeed ?? false, options.reusedChunks ?? false);
    extractor.fixDirectoryTimes();
    return { ...digests, entries: extractor.entryCount };
  } finally {
    extractor?.close();
    closeSync(rootFd);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading the input

/**
 * Reads fd to its end with blocking reads into one reused buffer (so set reusedChunks): each
 * chunk must be consumed before the next is asked for. A stream would allocate a fresh buffer
 * for every read, and on this kind of machine touching fresh memory is what costs: reading a
 * 128 MB layer from a pipe took 650 ms of CPU through a socket stream, 170-210 ms this way.
 * The worker has nothing else to do meanwhile, so blocking is no loss.
 */
export async function* readReused(fd: number, size = 1 << 20): AsyncGenerator<Buffer> {
  const buffer = Buffer.allocUnsafe(size);
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, buffer, 0, size, null);
    } catch (err) {
      const code = errorCode(err);
      if (code === "EINTR") continue;
      // A non-blocking pipe (someone set O_NONBLOCK on it): wait a little for data.
      if (code === "EAGAIN") {
        sleepSync(1);
        continue;
      }
      throw err;
    }
    if (n === 0) return;
    yield buffer.subarray(0, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Decompression and digests

interface LayerDigests {
  diffId: string;
  compressedDigest?: string;
  size: number;
}

/** Where the uncompressed tar bytes go, in order. */
interface TarSink {
  write(chunk: Buffer): void;
  end(): Promise<void>;
}

/**
 * Reads the whole input once: hashes the bytes as given, decompresses them, hashes and counts
 * the result and hands it to the sink. Reads to the very end even after the tar's end marker,
 * because the digests cover every byte.
 */
async function readLayer(
  input: AsyncIterable<Buffer | string | Uint8Array>,
  sink: TarSink,
  digestInput: boolean,
  inputDigest: string | undefined,
  fromFeed: boolean,
  reusedChunks: boolean,
): Promise<LayerDigests> {
  const compressedHash = digestInput ? createHash("sha256") : undefined;
  const uncompressedHash = createHash("sha256");
  let size = 0;
  // An uncompressed layer's two digests are one: its bytes are hashed once.
  let plain = false;
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const raw of input) {
      const chunk = toBuffer(raw);
      compressedHash?.update(chunk);
      // Until the input is known to be plain tar (consumed at once), a reused buffer is copied:
      // the magic-byte check and a decompressor keep chunks.
      yield reusedChunks && !plain ? Buffer.from(chunk) : chunk;
    }
  }
  await withDecompressed(
    hashed(),
    "the layer",
    async (chunks) => {
      for await (const chunk of chunks) {
        // A plain tar's diffId is the digest of its bytes as given: hashed once, here or by the caller.
        if (!plain || (!compressedHash && inputDigest === undefined)) uncompressedHash.update(chunk);
        size += chunk.length;
        sink.write(chunk);
      }
      await sink.end();
    },
    (compression) => {
      if (fromFeed && compression === "gzip") throw new Error("invalid layer tarball: the decompressed layer is gzip again (compressed twice)");
      checkLayerCompression(compression, "the layer");
      plain = compression === "none";
    },
  );
  if (inputDigest !== undefined) return { diffId: plain ? inputDigest : "sha256:" + uncompressedHash.digest("hex"), compressedDigest: inputDigest, size };
  if (!compressedHash) return { diffId: "sha256:" + uncompressedHash.digest("hex"), size };
  const compressedDigest = "sha256:" + compressedHash.digest("hex");
  return { diffId: plain ? compressedDigest : "sha256:" + uncompressedHash.digest("hex"), compressedDigest, size };
}

// ---------------------------------------------------------------------------------------------
// Helpers

/**
 * Splits a tar path into components inside the root. A leading "/" is dropped (Docker does the
 * same); "." is skipped; ".." pops a component and must never climb above the root.
 */
function splitPath(raw: string, what: string, top = LAYER_NAMING.top): string[] {
  if (raw.includes("\0")) throw new Error(`${what} contains a NUL byte`);
  const parts: string[] = [];
  for (const component of raw.split("/")) {
    if (component === "" || component === ".") continue;
    if (component === "..") {
      if (parts.length === 0) throw new Error(`${what} ${JSON.stringify(raw)} climbs above ${top}`);
      parts.pop();
      continue;
    }
    // UTF-8 is at most 3 bytes per UTF-16 unit: only long names need counting.
    if (component.length * 3 > NAME_MAX && fileNameByteLength(component) > NAME_MAX) throw new Error(`${what} has a component longer than ${NAME_MAX} bytes`);
    parts.push(component);
  }
  if (raw.length * 3 > PATH_MAX && fileNameByteLength(parts.join("/")) > PATH_MAX) throw new Error(`${what} is longer than ${PATH_MAX} bytes`);
  return parts;
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function fileType(st: RawStat): number {
  return st[ST_MODE] & S_IFMT;
}

/** Overlay's whiteout: a character device 0:0. Any char device here is one we made (others are skipped). */
function isWhiteoutDevice(st: RawStat): boolean {
  return fileType(st) === S_IFCHR && st[ST_RDEV_MAJOR] === 0 && st[ST_RDEV_MINOR] === 0;
}

interface EntryTimes {
  atime: Timespec;
  mtime: Timespec;
}

function entryTimes(entry: TarEntry): EntryTimes {
  return { mtime: entry.mtime, atime: entry.atime ?? entry.mtime };
}

/** Warnings of one kind are collected and reported once, with a few examples and a count. */
class WarningGroups {
  private readonly groups = new Map<string, { examples: string[]; count: number }>();

  add(summary: string, example: string): void {
    const group = this.groups.get(summary) ?? { examples: [], count: 0 };
    group.count++;
    if (group.examples.length < 3) group.examples.push(example);
    this.groups.set(summary, group);
  }

  flush(onWarning: (message: string) => void): void {
    for (const [summary, { examples, count }] of this.groups) {
      const more = count > examples.length ? ` and ${count - examples.length} more` : "";
      onWarning(`${summary}: ${examples.join(", ")}${more}`);
    }
    this.groups.clear();
  }
}

/** A directory fd and whether the caller must close it (cached and root fds are borrowed). */
interface DirHandle {
  fd: number;
  owned: boolean;
}

// ---------------------------------------------------------------------------------------------
// Directory fds

/**
 * Open O_PATH fds of directories inside the root, by path relative to it. Only directories
 * reached through real directories are cached (each component opened with O_NOFOLLOW on its
 * parent's fd): then the fd is exactly what the path names until something at that path or
 * above it is removed, and remove() drops those entries. A path through a symlink is resolved
 * in-root every time and handed out as an owned fd.
 */
class DirectoryCache {
  private readonly addon = native();
  /** Least recently used first (Map keeps insertion order). */
  private readonly fds = new Map<string, number>();

  constructor(
    private readonly rootFd: number,
    /** Creates a missing directory component (mkdir -p), returning an O_PATH fd to it. */
    private readonly makeDirectory: (parentFd: number, name: string, relPath: string) => number,
    /** Where entries go, in messages (UnpackNaming.root). */
    private readonly root: string,
  ) {}

  /**
   * The directory parts[0..count), created (0755, root) where the tar did not list it. A
   * borrowed fd stays valid until the next call into the cache.
   */
  open(parts: string[], count: number): DirHandle {
    if (count === 0) return { fd: this.rootFd, owned: false };
    const key = count === parts.length ? parts.join("/") : parts.slice(0, count).join("/");
    const cached = this.fds.get(key);
    if (cached !== undefined) {
      this.fds.delete(key);
      this.fds.set(key, cached);
      return { fd: cached, owned: false };
    }
    const parent = this.open(parts, count - 1);
    const name = parts[count - 1] as string;
    try {
      let fd: number;
      try {
        fd = this.addon.openAt(parent.fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
      } catch (err) {
        const code = errorCode(err);
        if (code === "ENOENT") fd = this.makeDirectory(parent.fd, name, key);
        else if (code === "ENOTDIR" || code === "ELOOP") return this.openNonDirectory(parent, name, key);
        else throw err;
      }
      // Below a symlink nothing is cached: the path does not name these fds.
      if (parent.owned) return { fd, owned: true };
      this.add(key, fd);
      return { fd, owned: false };
    } finally {
      if (parent.owned) closeSync(parent.fd);
    }
  }

  /** Caches a directory fd the caller opened at key (the caller gives up ownership). */
  adopt(key: string, fd: number): void {
    const old = this.fds.get(key);
    if (old !== undefined && old !== fd) {
      this.fds.delete(key);
      closeSync(old);
    }
    this.add(key, fd);
  }

  /** Forgets (and closes) every fd at relPath or below: it is being removed or replaced. */
  invalidate(relPath: string): void {
    const below = relPath + "/";
    for (const [key, fd] of this.fds) {
      if (key === relPath || key.startsWith(below)) {
        this.fds.delete(key);
        closeSync(fd);
      }
    }
  }

  closeAll(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }

  private add(key: string, fd: number): void {
    this.fds.set(key, fd);
    if (this.fds.size > DIR_CACHE_SIZE) {
      // The oldest entry is never one in use: every caller's parent was touched after it.
      const [oldestKey, oldestFd] = this.fds.entries().next().value as [string, number];
      this.fds.delete(oldestKey);
      closeSync(oldestFd);
    }
  }

  /** A path component that exists and is not a directory: a symlink, a whiteout, or an error. */
  private openNonDirectory(parent: DirHandle, name: string, key: string): DirHandle {
    const st = this.addon.lstatAt(parent.fd, name);
    if (fileType(st) === S_IFLNK) {
      try {
        return { fd: this.addon.openInRoot(this.rootFd, key, O_PATH | O_DIRECTORY, 0), owned: true };
      } catch (err) {
        const code = errorCode(err);
        if (code !== "ENOENT" && code !== "ENOTDIR" && code !== "ELOOP") throw err;
        throw new Error(`parent ${JSON.stringify(key)} is a symlink that does not lead to a directory inside ${this.root}`, { cause: err });
      }
    }
    if (isWhiteoutDevice(st)) {
      // ".wh.x" then "x/y": the lower x is hidden, this layer's x is a new (opaque) directory.
      const fd = this.makeDirectory(parent.fd, name, key);
      if (parent.owned) return { fd, owned: true };
      this.add(key, fd);
      return { fd, owned: false };
    }
    throw new Error(`parent ${JSON.stringify(key)} exists and is not a directory`);
  }
}

// ---------------------------------------------------------------------------------------------
// Extraction

/** The regular file whose data is arriving. */
interface OpenFile {
  fd: number;
  entry: TarEntry;
}

class LayerExtractor implements TarSink, TarEntryHandler {
  private readonly addon = native();
  private readonly reader = new TarReader(this);
  private readonly warnings = new WarningGroups();
  private readonly dirs: DirectoryCache;
  private failure: Error | undefined;
  private archiveEnded = false;
  private firstBytes = Buffer.alloc(0);
  /** The regular file being written, closed by close() if the stream stops mid-entry. */
  private file: OpenFile | undefined;
  /**
   * Inodes of regular files and symlinks extracted from this layer: the only valid hardlink
   * targets (a hardlinked symlink is one more name for the link, as Docker and Podman extract it).
   */
  private readonly extractedFiles = new Set<number>();
  /**
   * Directory times, applied at the end because creating children changes them; with hostUser,
   * also the mode (see UnpackOptions.hostUser).
   */
  private readonly directoryTimes = new Map<string, EntryTimes & { ino: number; mode?: number }>();
  private readonly opaque = Buffer.from("y");
  private readonly whiteouts: boolean;
  private readonly naming: UnpackNaming;

  constructor(
    private readonly rootFd: number,
    private readonly options: UnpackOptions,
  ) {
    this.naming = options.naming ?? LAYER_NAMING;
    this.dirs = new DirectoryCache(rootFd, (parentFd, name, relPath) => this.makeImplicitDirectory(parentFd, name, relPath), this.naming.root);
    this.whiteouts = options.whiteouts ?? true;
  }

  get entryCount(): number {
    return this.reader.entries;
  }

  write(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    if (this.archiveEnded) return; // trailing bytes after the end marker: hashed, not parsed
    this.refuseNestedGzip(chunk);
    try {
      this.reader.feed(chunk);
    } catch (err) {
      this.fail(err);
      throw this.failure;
    }
    if (this.reader.ended) this.archiveEnded = true;
  }

  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.archiveEnded) {
      try {
        this.reader.finish();
      } catch (err) {
        this.fail(err);
        throw this.failure;
      }
      this.archiveEnded = true;
    }
  }

  /** Releases fds still open after a failure. */
  close(): void {
    if (this.file !== undefined) {
      closeSync(this.file.fd);
      this.file = undefined;
    }
    this.dirs.closeAll();
    this.warnings.flush(this.options.onWarning);
  }

  /**
   * A stream that is still gzip after our decompression is compressed twice: the diffId would
   * describe the wrong bytes. A tar name cannot start with these bytes.
   */
  private refuseNestedGzip(chunk: Buffer): void {
    if (this.firstBytes.length >= 2) return;
    this.firstBytes = Buffer.concat([this.firstBytes, chunk.subarray(0, 2 - this.firstBytes.length)]);
    if (this.firstBytes.length === 2 && this.firstBytes[0] === 0x1f && this.firstBytes[1] === 0x8b) {
      const what = this.naming === LAYER_NAMING ? "layer" : "stream";
      this.fail(new Error(`invalid ${this.naming.stream}: the decompressed ${what} is gzip again (compressed twice)`));
      throw this.failure;
    }
  }

  private fail(err: unknown): void {
    if (this.failure) return;
    if (err instanceof TarFormatError) this.failure = new Error(`invalid ${this.naming.stream}: ${err.message}`, { cause: err });
    else this.failure = err instanceof Error ? err : new Error(String(err));
  }

  // --- the reader's callbacks ----------------------------------------------------------------

  entry(entry: TarEntry): void {
    try {
      this.extract(entry);
    } catch (err) {
      throw entryError(err, entry.path, this.naming);
    }
  }

  data(chunk: Buffer, position: number): void {
    const file = this.file;
    if (!file) return;
    try {
      // Large files stream through here chunk by chunk; nothing is buffered. A sparse file's
      // runs are written where they go: the holes between them stay holes.
      const sparse = file.entry.sparse !== undefined;
      let offset = 0;
      while (offset < chunk.length) offset += writeSync(file.fd, chunk, offset, chunk.length - offset, sparse ? position + offset : null);
    } catch (err) {
      throw entryError(new Error(`cannot write: ${(err as Error).message}`, { cause: err }), file.entry.path, this.naming);
    }
  }

  fileEnd(): void {
    const file = this.file;
    if (!file) return;
    this.file = undefined;
    try {
      // A sparse file may end in a hole: its length is the entry's, not the last run's end.
      if (file.entry.sparse !== undefined) ftruncateSync(file.fd, file.entry.size);
      // chown before chmod (chown clears setuid/setgid), xattrs after chown (it drops
      // security.capability), times last.
      const st = this.applyAttributes(file.fd, file.entry, true);
      const { atime, mtime } = entryTimes(file.entry);
      this.addon.futimens(file.fd, atime[0], atime[1], mtime[0], mtime[1]);
      this.extractedFiles.add(st[ST_INO]);
    } catch (err) {
      throw entryError(err, file.entry.path, this.naming);
    } finally {
      closeSync(file.fd);
    }
  }

  // --- entries ---------------------------------------------------------------------------------

  private extract(entry: TarEntry): void {
    const parts = splitPath(entry.path, "path", this.naming.top);
    const name = parts[parts.length - 1];
    if (name === undefined) {
      // "." or "/": only a directory may describe the layer root (CVE-2021-29136: a symlink
      // named "." would replace the root with a link to anywhere).
      if (entry.type !== "directory") throw new Error(`a non-directory entry cannot replace ${this.naming.top}`);
      const hostUser = this.options.hostUser === true;
      const st = this.applyAttributes(this.rootFd, hostUser ? { ...entry, mode: entry.mode | 0o700 } : entry, false);
      this.directoryTimes.set("", { ...entryTimes(entry), ino: st[ST_INO], ...(hostUser ? { mode: entry.mode & 0o7777 } : {}) });
      return;
    }
    if (this.whiteouts && name.startsWith(WHITEOUT_PREFIX)) {
      this.applyWhiteout(parts, entry);
      return;
    }
    if (entry.type === "char" || entry.type === "block") {
      this.warnings.add(
        "skipped device nodes (they cannot be created without real root)",
        `${JSON.stringify(entry.path)} (${entry.type} ${entry.devMajor}:${entry.devMinor})`,
      );
      return;
    }
    if (entry.type === "hardlink") {
      this.extractHardlink(parts, entry);
      return;
    }
    const parent = this.dirs.open(parts, parts.length - 1);
    try {
      const relPath = parts.join("/");
      switch (entry.type) {
        case "directory":
          this.extractDirectory(parent, name, relPath, entry);
          break;
        case "file":
          this.extractFile(parent.fd, name, relPath, entry);
          break;
        case "symlink":
          this.extractSymlink(parent.fd, name, relPath, entry);
          break;
        case "fifo":
          this.extractFifo(parent.fd, name, relPath, entry);
          break;
      }
    } finally {
      if (parent.owned) closeSync(parent.fd);
    }
  }

  private makeImplicitDirectory(dirFd: number, component: string, relPath: string): number {
    let opaque = false;
    try {
      this.addon.mkdirAt(dirFd, component, 0o755);
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
      const existing = this.addon.lstatAt(dirFd, component);
      if (!isWhiteoutDevice(existing)) {
        if (fileType(existing) === S_IFLNK) throw new Error(`parent ${JSON.stringify(relPath)} is a symlink that does not lead to a directory inside ${this.naming.root}`);
        if (fileType(existing) !== S_IFDIR) throw new Error(`parent ${JSON.stringify(relPath)} exists and is not a directory`);
      } else {
        // ".wh.x" then "x/y": the lower x is hidden, this layer's x is a new (opaque) directory.
        this.addon.unlinkAt(dirFd, component, false);
        this.addon.mkdirAt(dirFd, component, 0o755);
        opaque = true;
      }
    }
    const fd = this.addon.openAt(dirFd, component, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    try {
      const st = this.addon.lstatAt(fd, "");
      if ((st[ST_MODE] & 0o7777) !== 0o755) this.addon.chmodFd(fd, 0o755); // mkdir applied the umask
      if (opaque) this.addon.setXattrFd(fd, OPAQUE_XATTR, this.opaque);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return fd;
  }

  private extractDirectory(parent: DirHandle, name: string, relPath: string, entry: TarEntry): void {
    let replacesWhiteout = false;
    // Created with the entry's permission bits: root in the user namespace can write into a
    // read-only directory, so there is no need to open it up and fix it afterwards. The host
    // user cannot: it keeps write and search access until fixDirectoryTimes.
    const hostUser = this.options.hostUser === true;
    const mode = hostUser ? (entry.mode & 0o777) | 0o700 : entry.mode & 0o777;
    try {
      this.addon.mkdirAt(parent.fd, name, mode);
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
      // An existing directory keeps its contents and takes the entry's attributes (OCI rule).
      const existing = this.addon.lstatAt(parent.fd, name);
      if (fileType(existing) !== S_IFDIR) {
        replacesWhiteout = isWhiteoutDevice(existing);
        this.remove(parent.fd, name, relPath, existing, true);
        this.addon.mkdirAt(parent.fd, name, mode);
      }
    }
    const fd = this.addon.openAt(parent.fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    try {
      if (replacesWhiteout) this.addon.setXattrFd(fd, OPAQUE_XATTR, this.opaque);
      const st = this.applyAttributes(fd, hostUser ? { ...entry, mode: entry.mode | 0o700 } : entry, false);
      this.directoryTimes.set(relPath, { ...entryTimes(entry), ino: st[ST_INO], ...(hostUser ? { mode: entry.mode & 0o7777 } : {}) });
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    // Its entries usually follow: keep the fd, unless it was reached through a symlink.
    if (parent.owned) closeSync(fd);
    else this.dirs.adopt(relPath, fd);
  }

  private extractFile(parentFd: number, name: string, relPath: string, entry: TarEntry): void {
    // O_EXCL|O_NOFOLLOW: never write through anything already there. Created with the entry's
    // permission bits (no setuid/setgid before the chown), as GNU tar does.
    const flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
    let fd: number;
    try {
      fd = this.addon.openAt(parentFd, name, flags, entry.mode & 0o777);
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
      this.remove(parentFd, name, relPath, this.addon.lstatAt(parentFd, name), false);
      fd = this.addon.openAt(parentFd, name, flags, entry.mode & 0o777);
    }
    // The data and fileEnd() follow from the reader.
    this.file = { fd, entry };
  }

  private extractSymlink(parentFd: number, name: string, relPath: string, entry: TarEntry): void {
    const target = entry.linkpath;
    if (target === "") throw new Error("symlink without a target");
    if (target.includes("\0")) throw new Error("symlink target contains a NUL byte");
    if (fileNameByteLength(target) > PATH_MAX) throw new Error(`symlink target is longer than ${PATH_MAX} bytes`);
    // The target is stored verbatim; it is only ever resolved in-root (here) or inside the
    // container's own mount namespace.
    try {
      this.addon.symlinkAt(target, parentFd, name);
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
      this.remove(parentFd, name, relPath, this.addon.lstatAt(parentFd, name), false);
      this.addon.symlinkAt(target, parentFd, name);
    }
    this.extractedFiles.add(this.addon.lstatAt(parentFd, name)[ST_INO]);
    const { uid, gid } = this.owner(entry);
    this.addon.chownAt(parentFd, name, uid, gid); // lchown: never follows
    if (entry.xattrs.size > 0) {
      this.withFd(parentFd, name, 0, (fd) => this.applyXattrs(fd, entry.xattrs, entry.path));
    }
    const { atime, mtime } = entryTimes(entry);
    this.addon.utimesAt(parentFd, name, ...atime, ...mtime); // AT_SYMLINK_NOFOLLOW
  }

  private extractHardlink(parts: string[], entry: TarEntry): void {
    const targetParts = splitPath(entry.linkpath, "hardlink target", this.naming.top);
    if (targetParts.length === 0) throw new Error(`hardlink to ${this.naming.top}`);
    if (targetParts.join("/") === parts.join("/")) return; // a link to itself: nothing to do
    // Resolved in-root, last component not followed: "/etc/passwd" means destDir/etc/passwd.
    let targetFd: number;
    try {
      targetFd = this.addon.openInRoot(this.rootFd, targetParts.join("/"), O_PATH | O_NOFOLLOW, 0);
    } catch (err) {
      // Docker's overlay2 and Podman's overlay driver refuse it too: each layer is its own dir,
      // and a link cannot reach a file of a layer below.
      const code = errorCode(err);
      const earlierLayer = this.naming === LAYER_NAMING ? "a link to a file of an earlier layer is not supported, as with Docker's and Podman's overlay storage" : "a link must point to a file extracted earlier";
      const why = code === "ENOENT" ? earlierLayer : (code ?? (err as Error).message);
      throw new Error(`hardlink target ${JSON.stringify(entry.linkpath)} does not exist in ${this.naming.root} (${why})`, { cause: err });
    }
    try {
      const st = this.addon.lstatAt(targetFd, "");
      if ((fileType(st) !== S_IFREG && fileType(st) !== S_IFLNK) || !this.extractedFiles.has(st[ST_INO])) {
        throw new Error(`hardlink target ${JSON.stringify(entry.linkpath)} is not a file or symlink extracted earlier into ${this.naming.root}`);
      }
      // The target's fd is ours: the parent lookup may reuse the cache freely.
      const parent = this.dirs.open(parts, parts.length - 1);
      const name = parts[parts.length - 1] as string;
      try {
        try {
          this.addon.linkAt(targetFd, parent.fd, name);
        } catch (err) {
          if (errorCode(err) !== "EEXIST") throw err;
          const existing = this.addon.lstatAt(parent.fd, name);
          if (existing[ST_INO] === st[ST_INO]) return; // already the same file
          this.remove(parent.fd, name, parts.join("/"), existing, false);
          // The new name shares the inode, so its owner, mode, xattrs and times are the target's.
          this.addon.linkAt(targetFd, parent.fd, name);
        }
      } finally {
        if (parent.owned) closeSync(parent.fd);
      }
    } finally {
      closeSync(targetFd);
    }
  }

  private extractFifo(parentFd: number, name: string, relPath: string, entry: TarEntry): void {
    try {
      this.addon.mknodAt(parentFd, name, S_IFIFO | 0o600, 0, 0);
    } catch (err) {
      if (errorCode(err) !== "EEXIST") throw err;
      this.remove(parentFd, name, relPath, this.addon.lstatAt(parentFd, name), false);
      this.addon.mknodAt(parentFd, name, S_IFIFO | 0o600, 0, 0);
    }
    // An O_PATH fd does not open the FIFO, so this never blocks.
    this.withFd(parentFd, name, 0, (fd) => {
      this.applyAttributes(fd, entry, false);
      const { atime, mtime } = entryTimes(entry);
      this.addon.utimesAt(fd, "", ...atime, ...mtime);
    });
  }

  /**
   * OCI whiteouts in overlay form. ".wh.NAME" becomes a 0:0 character device NAME;
   * ".wh..wh..opq" marks its directory opaque. Whiteouts only hide LOWER layers: an entry this
   * layer itself has at NAME stays (and if it is a directory, it becomes opaque instead).
   */
  private applyWhiteout(parts: string[], entry: TarEntry): void {
    const marker = parts[parts.length - 1] ?? "";
    const parent = this.dirs.open(parts, parts.length - 1);
    try {
      if (marker === OPAQUE_MARKER) {
        this.addon.setXattrFd(parent.fd, OPAQUE_XATTR, this.opaque);
        return;
      }
      if (marker.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) return; // other AUFS metadata (.wh..wh.plnk, ...)
      const hidden = marker.slice(WHITEOUT_PREFIX.length);
      if (hidden === "" || hidden === "." || hidden === "..") throw new Error("whiteout does not name an entry");
      const existing = this.lstatOrNull(parent.fd, hidden);
      if (existing !== null) {
        if (fileType(existing) === S_IFDIR) {
          this.withFd(parent.fd, hidden, O_DIRECTORY, (fd) => this.addon.setXattrFd(fd, OPAQUE_XATTR, this.opaque));
        }
        return;
      }
      const { uid, gid } = this.owner(entry);
      this.addon.mknodAt(parent.fd, hidden, S_IFCHR, 0, 0);
      this.addon.chownAt(parent.fd, hidden, uid, gid);
    } finally {
      if (parent.owned) closeSync(parent.fd);
    }
  }

  // --- attributes -----------------------------------------------------------------------------

  /**
   * Owner, then mode (chown clears setuid/setgid, so chmod comes after), then xattrs; each only
   * when the entry's differ from what the file has. realFd: fd is open for reading or writing
   * (fchown/fchmod), not O_PATH. Returns the file's stat from before the changes.
   */
  private applyAttributes(fd: number, entry: TarEntry, realFd: boolean): RawStat {
    const { uid, gid } = this.owner(entry);
    const st = this.addon.lstatAt(fd, "");
    const mode = entry.mode;
    let chowned = false;
    if (st[ST_UID] !== uid || st[ST_GID] !== gid) {
      if (realFd) fchownSync(fd, uid, gid);
      else this.addon.chownAt(fd, "", uid, gid);
      chowned = true;
    }
    if ((st[ST_MODE] & 0o7777) !== mode || (chowned && (mode & 0o6000) !== 0)) {
      if (realFd) fchmodSync(fd, mode);
      else this.addon.chmodFd(fd, mode);
    }
    if (entry.xattrs.size > 0) this.applyXattrs(fd, entry.xattrs, entry.path);
    return st;
  }

  private applyXattrs(fd: number, xattrs: Map<string, Buffer>, entryPath: string): void {
    for (const [name, value] of xattrs) {
      if (name.startsWith("user.overlay.") || name.startsWith("trusted.overlay.")) {
        // Overlay (mounted with userxattr) reads these as its own whiteout/redirect markers. In
        // a layer they are the producer's overlay bookkeeping (rootless Podman and Buildah 4
        // leak origin/impure into every layer they commit), never file content: dropped
        // without a word, or every pull or load of such an image warns about them.
        continue;
      }
      if (name.startsWith("trusted.")) {
        this.warnings.add(`skipped xattr ${name} (trusted.* xattrs need real root)`, JSON.stringify(entryPath));
        continue;
      }
      try {
        this.addon.setXattrFd(fd, name, value);
      } catch (err) {
        const code = errorCode(err);
        if (code === "EPERM" || code === "EACCES" || code === "EOPNOTSUPP" || code === "ENOTSUP") {
          this.warnings.add(`could not set xattr ${name} (${code})`, JSON.stringify(entryPath));
          continue;
        }
        throw new Error(`cannot set xattr ${name}: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /** The entry's owner, checked against the ids that exist in the user namespace. */
  private owner(entry: TarEntry): { uid: number; gid: number } {
    if (this.options.forceOwner) return this.options.forceOwner;
    const check = (id: number, max: number, kind: "uid" | "gid"): number => {
      if (!Number.isSafeInteger(id) || id < 0) throw new Error(`header has no valid ${kind}`);
      if (id <= max) return id;
      if (this.options.squashUnmappedOwners) {
        this.warnings.add("owners outside the user namespace's id range were changed to root (TSRUN_IGNORE_CHOWN_ERRORS)", `${JSON.stringify(entry.path)} ${kind} ${id}`);
        return 0;
      }
      throw new Error(
        `is owned by ${kind} ${id}, but the user namespace only has ${kind}s 0-${max} ` +
          `(give the user a larger range in /etc/sub${kind}, or set TSRUN_IGNORE_CHOWN_ERRORS=true to squash them to root)`,
      );
    };
    return { uid: check(entry.uid, this.options.maxUid, "uid"), gid: check(entry.gid, this.options.maxGid, "gid") };
  }

  /**
   * Sets directory times last: every child created or removed above changed them. Deepest first
   * (a tar lists a directory before its contents), so that a parent's final mode cannot stop
   * the way down to its children.
   */
  fixDirectoryTimes(): void {
    this.dirs.closeAll();
    for (const [relPath, times] of [...this.directoryTimes].reverse()) {
      let fd = this.rootFd;
      if (relPath !== "") {
        try {
          fd = this.addon.openInRoot(this.rootFd, relPath, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
        } catch {
          continue; // replaced later by something else
        }
      }
      try {
        // Same inode check: a later entry may have replaced the directory.
        if (this.addon.lstatAt(fd, "")[ST_INO] === times.ino) {
          if (times.mode !== undefined) this.addon.chmodFd(fd, times.mode);
          this.addon.utimesAt(fd, "", ...times.atime, ...times.mtime);
        }
      } finally {
        if (fd !== this.rootFd) closeSync(fd);
      }
    }
  }

  // --- helpers ---------------------------------------------------------------------------------

  private lstatOrNull(dirFd: number, name: string): RawStat | null {
    try {
      return this.addon.lstatAt(dirFd, name);
    } catch (err) {
      if (errorCode(err) === "ENOENT") return null;
      throw err;
    }
  }

  /** Runs fn with an O_PATH fd for one name in dirFd (never following a symlink). */
  private withFd(dirFd: number, name: string, extraFlags: number, fn: (fd: number) => void): void {
    const fd = this.addon.openAt(dirFd, name, O_PATH | O_NOFOLLOW | extraFlags, 0);
    try {
      fn(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Removes what an entry replaces; a directory with everything in it, without leaving the root. */
  private remove(parentFd: number, name: string, relPath: string, st: RawStat, entryIsDirectory: boolean): void {
    if (this.options.noOverwriteDirNonDir && (fileType(st) === S_IFDIR) !== entryIsDirectory) {
      throw new Error(entryIsDirectory ? "cannot overwrite a non-directory with a directory" : "cannot overwrite a directory with a non-directory");
    }
    this.dirs.invalidate(relPath);
    this.removeTree(parentFd, name, st);
  }

  private removeTree(parentFd: number, name: string, st: RawStat): void {
    removeEntry(parentFd, name, st);
  }
}

/**
 * Removes the entry NAME of the directory parentFd (st: its lstat), a directory with everything
 * in it, through fds only: no path is followed, whatever is renamed meanwhile.
 */
export function removeEntry(parentFd: number, name: string, st: RawStat = native().lstatAt(parentFd, name)): void {
  const addon = native();
  if (fileType(st) !== S_IFDIR) {
    addon.unlinkAt(parentFd, name, false);
    return;
  }
  const dirFd = addon.openAt(parentFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
  try {
    // Listing through the fd's /proc link reads exactly this directory, whatever its path.
    for (const child of listDirectory(dirFd)) removeEntry(dirFd, child, addon.lstatAt(dirFd, child));
  } finally {
    closeSync(dirFd);
  }
  addon.unlinkAt(parentFd, name, true);
}

/** An extraction error, naming the entry (once). */
function entryError(err: unknown, entryPath: string, naming: UnpackNaming): Error {
  if (err instanceof EntryError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EntryError(`${naming.entry(entryPath)}: ${message}`, { cause: err });
}

class EntryError extends Error {}
