// The layer unpacker: turns one OCI/Docker layer tarball (gzip, zstd or plain) into an overlayfs
// lower directory, and computes the layer's digests in the same pass.
//
// It runs inside the user namespace, as root over the container's id range, so it can chown.
// Security model: destDir is opened once; every entry's parent is resolved with openat2
// RESOLVE_IN_ROOT (symlinks and ".." cannot leave destDir), and the entry itself is created
// with *at() calls on that parent fd that never follow the last component. No Node path-based
// fs call touches anything inside destDir (they would follow symlinks on the host).
//
// node-tar's streaming Parser reads the entries, but it drops PAX xattr records
// (SCHILY.xattr.*, which carry file capabilities) and decodes PAX bodies as UTF-8, which would
// corrupt binary values anyway. So a small second reader (TarHeaderCheck) follows the block
// structure of the same bytes just ahead of node-tar: it keeps the raw xattr records, refuses
// headers that tar implementations read differently (negative sizes, data on header-only
// entries), and each entry node-tar emits is matched against it by size and checksum.
//
// On error the promise rejects and destDir is left half-written: the caller deletes it (inside
// the user namespace) and must never use it.

import { throughCommand } from "../image/archive/compression.js";
import { createHash } from "node:crypto";
import { closeSync, constants as fsConstants, openSync, readdirSync, writeSync } from "node:fs";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { native, type RawStat } from "../native.js";

export interface UnpackOptions {
  /** Highest uid that exists in the namespace; larger owners -> error, or squashed (below). */
  maxUid: number;
  maxGid: number;
  onWarning: (message: string) => void;
  /** When true, owners above maxUid/maxGid are mapped to 0 with a warning (Podman's ignore_chown_errors); else a clear error. */
  squashUnmappedOwners?: boolean;
  /** Every entry gets this owner, whatever the header says (`cp` without -a: the container's root). */
  forceOwner?: { uid: number; gid: number };
}

export interface UnpackResult {
  /** "sha256:<hex>" of the uncompressed tar stream. */
  diffId: string;
  /** "sha256:<hex>" of the bytes as given (compressed or not). */
  compressedDigest: string;
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
const ST_RDEV_MAJOR = 6;
const ST_RDEV_MINOR = 7;
const ST_INO = 9;

const BLOCK = 512;
/** Longest PAX or GNU long-name body accepted; real ones are a few hundred bytes. */
const MAX_META_SIZE = 1024 * 1024;
const NAME_MAX = 255;
const PATH_MAX = 4095;

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
/** Overlay mounted with "userxattr" reads its markers from user.overlay.* (trusted.* needs real root). */
const OPAQUE_XATTR = "user.overlay.opaque";

/** Unpacks one layer tarball into destDir (an existing, empty directory). */
export async function unpackLayer(input: NodeJS.ReadableStream, destDir: string, options: UnpackOptions): Promise<UnpackResult> {
  const rootFd = openSync(destDir, O_PATH | O_DIRECTORY);
  let extractor: LayerExtractor | undefined;
  try {
    extractor = new LayerExtractor(rootFd, options);
    const digests = await readLayer(input, extractor);
    extractor.fixDirectoryTimes();
    return { ...digests, entries: extractor.entryCount };
  } finally {
    extractor?.close();
    closeSync(rootFd);
  }
}

// ---------------------------------------------------------------------------------------------
// Decompression and digests

interface LayerDigests {
  diffId: string;
  compressedDigest: string;
  size: number;
}

/** Where the uncompressed tar bytes go, in order. */
interface TarSink {
  write(chunk: Buffer): void;
  end(): Promise<void>;
}

type Compression = "none" | "gzip" | "zstd";

/** Recognises the compression by its magic bytes; refuses the ones layers may not use. */
function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) return "zstd";
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
    throw new Error("the layer is xz-compressed; layers must be gzip, zstd or uncompressed");
  }
  // "BZh", the block size digit, then the block magic (the digits of pi): unambiguous.
  if (head.length >= 10 && head.toString("latin1", 0, 3) === "BZh" && head.subarray(4, 10).equals(Buffer.from([0x31, 0x41, 0x59, 0x26, 0x53, 0x59]))) {
    throw new Error("the layer is bzip2-compressed; layers must be gzip, zstd or uncompressed");
  }
  return "none";
}

/**
 * Reads the whole input once: hashes the bytes as given, decompresses them, hashes and counts
 * the result and hands it to the sink. Reads to the very end even after the tar's end marker,
 * because the digests cover every byte.
 */
async function readLayer(input: NodeJS.ReadableStream, sink: TarSink): Promise<LayerDigests> {
  const compressedHash = createHash("sha256");
  const uncompressedHash = createHash("sha256");
  let size = 0;
  const source = input[Symbol.asyncIterator]();
  const toBuffer = (chunk: string | Buffer): Buffer => (typeof chunk === "string" ? Buffer.from(chunk) : chunk);

  // Enough bytes to tell the formats apart.
  const headChunks: Buffer[] = [];
  let headLength = 0;
  let inputDone = false;
  while (headLength < 10) {
    const next = await source.next();
    if (next.done) {
      inputDone = true;
      break;
    }
    const chunk = toBuffer(next.value);
    compressedHash.update(chunk);
    headChunks.push(chunk);
    headLength += chunk.length;
  }
  const head = Buffer.concat(headChunks);
  let compression: Compression;
  try {
    compression = detectCompression(head);
  } catch (err) {
    await source.return?.();
    throw err;
  }

  async function* compressedChunks(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      while (!inputDone) {
        const next = await source.next();
        if (next.done) break;
        const chunk = toBuffer(next.value);
        compressedHash.update(chunk);
        yield chunk;
      }
    } finally {
      // Stops (and lets the caller's stream close) when decompression or extraction failed early.
      await source.return?.();
    }
  }

  async function consume(chunks: AsyncIterable<Buffer | string>): Promise<void> {
    for await (const raw of chunks) {
      const chunk = toBuffer(raw);
      uncompressedHash.update(chunk);
      size += chunk.length;
      sink.write(chunk);
    }
    await sink.end();
  }

  if (compression === "none") {
    await consume(compressedChunks());
  } else if (compression === "gzip") {
    try {
      await pipeline(compressedChunks(), createGunzip(), consume);
    } catch (err) {
      if (isZlibError(err)) throw new Error(`the layer is not valid gzip: ${(err as Error).message}`, { cause: err });
      throw err;
    }
  } else {
    // Node 20's zlib has no zstd: the zstd command is a stream filter (shared with archives).
    await throughCommand("zstd", compressedChunks(), "the layer", consume);
  }
  return {
    diffId: "sha256:" + uncompressedHash.digest("hex"),
    compressedDigest: "sha256:" + compressedHash.digest("hex"),
    size,
  };
}

function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && code.startsWith("Z_");
}

// ---------------------------------------------------------------------------------------------
// The header check: follows the tar block structure beside node-tar

/** What the header check learned about one file-system entry, in archive order. */
interface CheckedEntry {
  checksum: number;
  size: number;
  xattrs: Map<string, Buffer>;
}

/** Typeflags node-tar treats as file-system entries (its types.normalFsTypes). */
const ENTRY_TYPES = new Set(["0", "", "1", "2", "3", "4", "5", "6", "7", "D"]);
/** Entries whose size must be 0: GNU tar and Go skip their data, node-tar reads it as data. */
const HEADER_ONLY_TYPES = new Set(["1", "2", "3", "4", "5", "6"]);
/** PAX (x, g, X) and GNU long name/link (L, K, N) headers describing the next entry. */
const META_TYPES = new Set(["x", "g", "X", "L", "K", "N"]);
const UNSUPPORTED_TYPES: Record<string, string> = {
  S: "GNU sparse file",
  M: "GNU multi-volume continuation",
  V: "tape volume header",
  A: "Solaris ACL",
  E: "Solaris extended attributes",
  I: "inode metadata",
};

/** Fields from PAX and GNU long-name headers that apply to the next entry. */
class PendingExtension {
  size: number | undefined;
  path: string | undefined;
  readonly schilyXattrs = new Map<string, Buffer>();
  readonly libarchiveXattrs = new Map<string, Buffer>();

  xattrs(): Map<string, Buffer> {
    // libarchive writes both forms; the SCHILY one is the raw value, so it wins.
    const all = new Map(this.libarchiveXattrs);
    for (const [name, value] of this.schilyXattrs) all.set(name, value);
    return all;
  }
}

function headerName(block: Buffer, pending: PendingExtension): string {
  if (pending.path !== undefined) return pending.path;
  const name = cString(block, 0, 100);
  const prefix = block.toString("latin1", 257, 263) === "ustar\u0000" ? cString(block, 345, 155) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function cString(buf: Buffer, offset: number, length: number): string {
  const field = buf.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.toString("utf8", 0, nul === -1 ? field.length : nul);
}

/** A numeric header field: octal text, or base-256 for large values. Negative values are refused. */
function parseNumberField(field: Buffer, what: string): number {
  const first = field[0] ?? 0;
  if (first & 0x80) {
    if (first !== 0x80) throw new Error(`${what} is negative or malformed (base-256 marker 0x${first.toString(16)})`);
    let value = 0;
    for (const byte of field.subarray(1)) value = value * 256 + byte;
    if (!Number.isSafeInteger(value)) throw new Error(`${what} is too large`);
    return value;
  }
  const text = cString(field, 0, field.length).trim();
  if (text === "") return 0;
  // node-tar's parseInt would read "-5" or "12x" leniently, and take a negative size as 0.
  if (!/^[0-7]+$/.test(text)) throw new Error(`${what} ${JSON.stringify(text)} is not an octal number`);
  return parseInt(text, 8);
}

function padToBlock(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

class TarHeaderCheck {
  private readonly header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Body and padding bytes of the current entry still to pass. */
  private skipRemaining = 0;
  private meta: { type: string; data: Buffer; fill: number } | undefined;
  private pending = new PendingExtension();
  private sawZeroBlock = false;
  private readonly queue: CheckedEntry[] = [];
  /** The two zero blocks that end an archive were seen; what follows is not tar data. */
  ended = false;
  entriesSeen = 0;

  /** Consumes a chunk; returns how many of its leading bytes belong to the archive. */
  feed(chunk: Buffer): number {
    let pos = 0;
    while (pos < chunk.length && !this.ended) {
      if (this.meta) {
        const meta = this.meta;
        const n = Math.min(meta.data.length - meta.fill, chunk.length - pos);
        chunk.copy(meta.data, meta.fill, pos, pos + n);
        meta.fill += n;
        pos += n;
        if (meta.fill === meta.data.length) {
          this.meta = undefined;
          this.applyMeta(meta.type, meta.data);
        }
      } else if (this.skipRemaining > 0) {
        const n = Math.min(this.skipRemaining, chunk.length - pos);
        this.skipRemaining -= n;
        pos += n;
      } else {
        const n = Math.min(BLOCK - this.headerFill, chunk.length - pos);
        chunk.copy(this.header, this.headerFill, pos, pos + n);
        this.headerFill += n;
        pos += n;
        if (this.headerFill === BLOCK) {
          this.headerFill = 0;
          this.onHeader(this.header);
        }
      }
    }
    return pos;
  }

  /** At the end of the input: refuses an archive cut off inside a header or an entry's data. */
  finish(): void {
    if (this.ended) return;
    if (this.meta || this.skipRemaining > 0) throw new Error("the tar stream is truncated (it ends inside an entry)");
    if (this.headerFill > 0 && this.header.subarray(0, this.headerFill).some((b) => b !== 0)) {
      throw new Error("the tar stream is truncated (it ends inside a header)");
    }
  }

  /** The record for the next entry node-tar emits. */
  take(): CheckedEntry | undefined {
    return this.queue.shift();
  }

  private onHeader(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      if (this.sawZeroBlock) this.ended = true;
      this.sawZeroBlock = true;
      return;
    }
    this.sawZeroBlock = false;
    const name = headerName(block, this.pending);
    // A name of garbage bytes (random data, a wrong format) would fill the error line with noise.
    const readable = /^[\x20-\x7e\u00a0-\uffef]*$/u.test(name) && !name.includes("\ufffd");
    const where = readable ? `tar header for ${JSON.stringify(name)}` : `tar header ${this.entriesSeen + 1}`;

    let stored: number | undefined;
    try {
      stored = parseNumberField(block.subarray(148, 156), `${where}: checksum`);
    } catch {
      // An unreadable checksum field is a wrong checksum: random data, or another format.
    }
    let sum = 8 * 0x20;
    for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i] ?? 0;
    if (sum !== stored) throw new Error(`${where}: checksum mismatch (corrupt or not a tar archive)`);

    const type = block[156] === 0 ? "" : String.fromCharCode(block[156] ?? 0);
    const headerSize = parseNumberField(block.subarray(124, 136), `${where}: size`);

    if (META_TYPES.has(type)) {
      if (headerSize > MAX_META_SIZE) throw new Error(`${where}: extended header of ${headerSize} bytes is too large`);
      this.skipRemaining = padToBlock(headerSize) - headerSize;
      if (headerSize === 0) this.applyMeta(type, Buffer.alloc(0));
      else this.meta = { type, data: Buffer.alloc(headerSize), fill: 0 };
      return;
    }
    if (!ENTRY_TYPES.has(type)) {
      const known = UNSUPPORTED_TYPES[type];
      throw new Error(`${where}: entry type ${JSON.stringify(type)}${known ? ` (${known})` : ""} is not supported in layers`);
    }
    const size = this.pending.size ?? headerSize;
    const oldStyleDir = (type === "0" || type === "") && name.endsWith("/");
    if (size > 0 && (HEADER_ONLY_TYPES.has(type) || oldStyleDir)) {
      // Tar readers disagree on whether such data exists: a way to smuggle entries past scanners.
      throw new Error(`${where}: entry of type ${JSON.stringify(type)} claims ${size} bytes of data`);
    }
    this.queue.push({ checksum: stored, size, xattrs: this.pending.xattrs() });
    this.entriesSeen++;
    this.pending = new PendingExtension();
    this.skipRemaining = padToBlock(size);
  }

  private applyMeta(type: string, data: Buffer): void {
    switch (type) {
      case "x":
      case "X":
        parsePaxRecords(data, (key, value) => this.applyPaxRecord(key, value, false));
        break;
      case "g":
        parsePaxRecords(data, (key, value) => this.applyPaxRecord(key, value, true));
        break;
      case "L":
      case "N":
        this.pending.path = cString(data, 0, data.length);
        break;
      case "K":
        // The link target itself comes from node-tar; nothing here changes framing.
        break;
    }
  }

  private applyPaxRecord(key: string, value: Buffer, global: boolean): void {
    if (key.startsWith("GNU.sparse.")) throw new Error("sparse files (GNU.sparse PAX records) are not supported in layers");
    if (key === "size") {
      const text = value.toString("latin1");
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new Error(`PAX size ${JSON.stringify(text)} is not a valid size`);
      if (global) throw new Error("a global PAX header sets the size of every entry; refusing the ambiguous archive");
      this.pending.size = Number(text);
    } else if (key === "path" || key === "linkpath") {
      if (value.includes(0)) throw new Error(`PAX ${key} contains a NUL byte`);
      if (key === "path" && !global) this.pending.path = value.toString("utf8");
    } else if (!global && key.startsWith("SCHILY.xattr.")) {
      const name = key.slice("SCHILY.xattr.".length);
      if (name === "") throw new Error("PAX xattr record without a name");
      this.pending.schilyXattrs.set(name, Buffer.from(value));
    } else if (!global && key.startsWith("LIBARCHIVE.xattr.")) {
      // libarchive %-encodes the name and base64-encodes the value.
      const name = percentDecode(key.slice("LIBARCHIVE.xattr.".length));
      if (name === "") throw new Error("PAX xattr record without a name");
      this.pending.libarchiveXattrs.set(name, Buffer.from(value.toString("latin1"), "base64"));
    }
  }
}

/** Undoes libarchive's %XX encoding of xattr names, byte by byte (names are UTF-8). */
function percentDecode(text: string): string {
  const bytes = Buffer.from(text, "utf8");
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const hex = bytes[i] === 0x25 ? bytes.toString("latin1", i + 1, i + 3) : "";
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(bytes[i] ?? 0);
    }
  }
  return Buffer.from(out).toString("utf8");
}

/** PAX records are "<length> <key>=<value>\n", the length in bytes counting the whole record. */
function parsePaxRecords(data: Buffer, onRecord: (key: string, value: Buffer) => void): void {
  let pos = 0;
  while (pos < data.length) {
    // Some writers pad the body with NULs.
    if (data.subarray(pos).every((b) => b === 0)) return;
    const space = data.indexOf(0x20, pos);
    const lengthText = space === -1 ? "" : data.toString("latin1", pos, space);
    if (!/^\d{1,8}$/.test(lengthText)) throw new Error("malformed PAX record (bad length)");
    const length = Number(lengthText);
    const end = pos + length;
    if (end > data.length || end <= space + 1 || data[end - 1] !== 0x0a) throw new Error("malformed PAX record (length does not match)");
    const record = data.subarray(space + 1, end - 1);
    const equals = record.indexOf(0x3d);
    if (equals <= 0) throw new Error("malformed PAX record (no key)");
    onRecord(record.toString("utf8", 0, equals), record.subarray(equals + 1));
    pos = end;
  }
}

// ---------------------------------------------------------------------------------------------
// Extraction

type EntryKind = "file" | "directory" | "symlink" | "hardlink" | "fifo" | "device";

function entryKind(entry: ReadEntry): EntryKind {
  switch (entry.type) {
    case "File":
    case "OldFile":
    case "ContiguousFile":
      return "file";
    case "Directory":
    case "GNUDumpDir":
      return "directory";
    case "SymbolicLink":
      return "symlink";
    case "Link":
      return "hardlink";
    case "FIFO":
      return "fifo";
    case "CharacterDevice":
    case "BlockDevice":
      return "device";
    default:
      throw new Error(`entry type ${entry.type} is not supported in layers`);
  }
}

/**
 * Splits a tar path into components inside the root. A leading "/" is dropped (Docker does the
 * same); "." is skipped; ".." pops a component and must never climb above the root.
 */
function splitPath(raw: string, what: string): string[] {
  if (raw.includes("\0")) throw new Error(`${what} contains a NUL byte`);
  const parts: string[] = [];
  for (const component of raw.split("/")) {
    if (component === "" || component === ".") continue;
    if (component === "..") {
      if (parts.length === 0) throw new Error(`${what} ${JSON.stringify(raw)} climbs above the layer root`);
      parts.pop();
      continue;
    }
    if (Buffer.byteLength(component) > NAME_MAX) throw new Error(`${what} has a component longer than ${NAME_MAX} bytes`);
    parts.push(component);
  }
  if (Buffer.byteLength(parts.join("/")) > PATH_MAX) throw new Error(`${what} is longer than ${PATH_MAX} bytes`);
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

/** [seconds, nanoseconds] for utimensat; a missing or invalid date is the epoch. */
function timespec(date: Date | undefined): [number, number] {
  const ms = date?.getTime();
  if (ms === undefined || !Number.isFinite(ms)) return [0, 0];
  const sec = Math.floor(ms / 1000);
  return [sec, (ms - sec * 1000) * 1_000_000];
}

interface EntryTimes {
  atime: [number, number];
  mtime: [number, number];
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

/** A directory fd and whether we must close it (the root fd is borrowed). */
interface DirHandle {
  fd: number;
  owned: boolean;
}

class LayerExtractor implements TarSink {
  private readonly addon = native();
  private readonly parser: Parser;
  private readonly headers = new TarHeaderCheck();
  private readonly warnings = new WarningGroups();
  private readonly parserEnded: Promise<void>;
  private failure: Error | undefined;
  private archiveEnded = false;
  private firstBytes = Buffer.alloc(0);
  /** The regular file being written, closed by close() if the stream stops mid-entry. */
  private openFileFd: number | undefined;
  /**
   * Inodes of regular files and symlinks extracted from this layer: the only valid hardlink
   * targets (a hardlinked symlink is one more name for the link, as Docker and Podman extract it).
   */
  private readonly extractedFiles = new Set<number>();
  /** Directory times, applied at the end because creating children changes them. */
  private readonly directoryTimes = new Map<string, EntryTimes & { ino: number }>();
  entryCount = 0;

  constructor(
    private readonly rootFd: number,
    private readonly options: UnpackOptions,
  ) {
    // strict: every node-tar warning (bad checksum, truncation, invalid header) is an error.
    // zstd/brotli off: the stream is already decompressed, a second round would change what
    // the diffId describes. maxMetaEntrySize above ours, so node-tar never skips one silently.
    this.parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: 2 * MAX_META_SIZE });
    this.parser.on("entry", (entry: ReadEntry) => this.onEntry(entry));
    this.parser.on("ignoredEntry", (entry: ReadEntry) => {
      if (!entry.meta) this.fail(new Error(`entry type ${entry.type} is not supported in layers`), entry.path);
    });
    this.parser.on("error", (err: Error) => this.onParserError(err));
    this.parserEnded = new Promise((resolve) => this.parser.once("end", () => resolve()));
  }

  write(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    if (this.archiveEnded) return; // trailing bytes after the end marker: hashed, not parsed
    this.refuseNestedGzip(chunk);
    let archiveBytes: number;
    try {
      archiveBytes = this.headers.feed(chunk);
    } catch (err) {
      this.fail(new Error(`invalid layer tarball: ${(err as Error).message}`, { cause: err }));
      throw this.failure;
    }
    // The parser consumes synchronously (every entry flows into synchronous writes), so its
    // write() return value needs no waiting for 'drain'.
    if (archiveBytes > 0) this.parser.write(archiveBytes === chunk.length ? chunk : chunk.subarray(0, archiveBytes));
    if (!this.failure && this.headers.ended) {
      this.archiveEnded = true;
      this.parser.end();
    }
    if (this.failure) throw this.failure;
  }

  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.archiveEnded) {
      try {
        this.headers.finish();
      } catch (err) {
        this.fail(new Error(`invalid layer tarball: ${(err as Error).message}`, { cause: err }));
        throw this.failure;
      }
      this.archiveEnded = true;
      this.parser.end();
    }
    await this.parserEnded;
    if (this.failure) throw this.failure;
  }

  /** Releases fds still open after a failure. */
  close(): void {
    if (this.openFileFd !== undefined) {
      closeSync(this.openFileFd);
      this.openFileFd = undefined;
    }
    this.warnings.flush(this.options.onWarning);
  }

  /**
   * node-tar would silently gunzip a stream that is still gzip after our decompression, and
   * the diffId would then describe the wrong bytes. A tar name cannot start with these bytes.
   */
  private refuseNestedGzip(chunk: Buffer): void {
    if (this.firstBytes.length >= 2) return;
    this.firstBytes = Buffer.concat([this.firstBytes, chunk.subarray(0, 2 - this.firstBytes.length)]);
    if (this.firstBytes.length === 2 && this.firstBytes[0] === 0x1f && this.firstBytes[1] === 0x8b) {
      this.fail(new Error("invalid layer tarball: the decompressed layer is gzip again (compressed twice)"));
      throw this.failure;
    }
  }

  private fail(err: unknown, entryPath?: string): void {
    if (this.failure) return;
    const message = err instanceof Error ? err.message : String(err);
    this.failure = entryPath === undefined ? (err instanceof Error ? err : new Error(message)) : new Error(`layer entry ${JSON.stringify(entryPath)}: ${message}`, { cause: err });
  }

  private onParserError(err: Error): void {
    const tarCode = (err as { tarCode?: unknown }).tarCode;
    // node-tar calls an archive without any entry "Unrecognized archive format"; an empty layer
    // (just the end marker, or no bytes) is valid, and the header check vouched for the bytes.
    if (tarCode === "TAR_BAD_ARCHIVE" && this.headers.entriesSeen === 0 && /Unrecognized archive format/.test(err.message)) return;
    const entryPath = (err as { header?: { path?: unknown } }).header?.path;
    const where = typeof entryPath === "string" ? ` (at ${JSON.stringify(entryPath)})` : "";
    this.fail(new Error(`invalid layer tarball: ${err.message}${where}`, { cause: err }));
  }

  private onEntry(entry: ReadEntry): void {
    const checked = this.headers.take();
    this.entryCount++;
    if (this.failure) {
      entry.resume();
      return;
    }
    try {
      if (!checked || checked.size !== entry.size || checked.checksum !== entry.header.cksum) {
        throw new Error("tar readers disagree on where this entry starts or ends (crafted or corrupt archive)");
      }
      this.extract(entry, checked.xattrs);
    } catch (err) {
      this.fail(err, entry.path);
      entry.resume();
    }
  }

  private extract(entry: ReadEntry, xattrs: Map<string, Buffer>): void {
    const parts = splitPath(entry.path, "path");
    const kind = entryKind(entry);
    const name = parts[parts.length - 1];
    if (name === undefined) {
      // "." or "/": only a directory may describe the layer root (CVE-2021-29136: a symlink
      // named "." would replace the root with a link to anywhere).
      if (kind !== "directory") throw new Error("a non-directory entry cannot replace the layer root");
      this.applyAttributes(this.rootFd, entry, xattrs);
      this.recordDirectoryTimes("", this.rootFd, entry);
      entry.resume();
      return;
    }
    if (name.startsWith(WHITEOUT_PREFIX)) {
      this.applyWhiteout(parts, entry);
      entry.resume();
      return;
    }
    if (kind === "device") {
      const what = entry.type === "CharacterDevice" ? "char" : "block";
      this.warnings.add(
        "skipped device nodes (they cannot be created without real root)",
        `${JSON.stringify(entry.path)} (${what} ${entry.header.devmaj}:${entry.header.devmin})`,
      );
      entry.resume();
      return;
    }

    // The parent fd is only needed to create the entry; a file's data arrives later through
    // its own fd.
    const parent = this.openParent(parts.slice(0, -1));
    try {
      switch (kind) {
        case "directory":
          this.extractDirectory(parent.fd, name, parts.join("/"), entry, xattrs);
          break;
        case "file":
          this.extractFile(parent.fd, name, entry, xattrs);
          break;
        case "symlink":
          this.extractSymlink(parent.fd, name, entry, xattrs);
          break;
        case "hardlink":
          this.extractHardlink(parent.fd, name, parts, entry);
          break;
        case "fifo":
          this.extractFifo(parent.fd, name, entry, xattrs);
          break;
      }
    } finally {
      if (parent.owned) closeSync(parent.fd);
    }
    if (kind !== "file") entry.resume();
  }

  // --- parents ---------------------------------------------------------------------------------

  /** The directory that holds an entry, created (0755, root) if the tar did not list it. */
  private openParent(parentParts: string[]): DirHandle {
    if (parentParts.length === 0) return { fd: this.rootFd, owned: false };
    try {
      return { fd: this.addon.openInRoot(this.rootFd, parentParts.join("/"), O_PATH | O_DIRECTORY, 0), owned: true };
    } catch (err) {
      const code = errorCode(err);
      if (code !== "ENOENT" && code !== "ENOTDIR") throw err;
    }
    return this.createParents(parentParts);
  }

  /** mkdir -p inside the root, one component at a time, each resolved in-root. */
  private createParents(parentParts: string[]): DirHandle {
    let current: DirHandle = { fd: this.rootFd, owned: false };
    try {
      for (let i = 0; i < parentParts.length; i++) {
        const component = parentParts[i] ?? "";
        const prefix = parentParts.slice(0, i + 1).join("/");
        let next: number;
        try {
          next = this.addon.openInRoot(this.rootFd, prefix, O_PATH | O_DIRECTORY, 0);
        } catch (err) {
          const code = errorCode(err);
          if (code !== "ENOENT" && code !== "ENOTDIR") throw err;
          next = this.makeImplicitDirectory(current.fd, component, prefix);
        }
        if (current.owned) closeSync(current.fd);
        current = { fd: next, owned: true };
      }
      return current;
    } catch (err) {
      if (current.owned) closeSync(current.fd);
      throw err;
    }
  }

  private makeImplicitDirectory(dirFd: number, component: string, prefix: string): number {
    const existing = this.lstatOrNull(dirFd, component);
    let opaque = false;
    if (existing !== null) {
      if (isWhiteoutDevice(existing)) {
        // ".wh.x" then "x/y": the lower x is hidden, this layer's x is a new (opaque) directory.
        this.addon.unlinkAt(dirFd, component, false);
        opaque = true;
      } else if (fileType(existing) === S_IFLNK) {
        throw new Error(`parent ${JSON.stringify(prefix)} is a symlink that does not lead to a directory inside the layer`);
      } else {
        throw new Error(`parent ${JSON.stringify(prefix)} exists and is not a directory`);
      }
    }
    this.addon.mkdirAt(dirFd, component, 0o755);
    const fd = this.addon.openAt(dirFd, component, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    try {
      this.addon.chmodFd(fd, 0o755); // mkdir applied the umask
      if (opaque) this.addon.setXattrFd(fd, OPAQUE_XATTR, Buffer.from("y"));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return fd;
  }

  // --- entry types ----------------------------------------------------------------------------

  private extractDirectory(parentFd: number, name: string, relPath: string, entry: ReadEntry, xattrs: Map<string, Buffer>): void {
    const existing = this.lstatOrNull(parentFd, name);
    // An existing directory keeps its contents and takes the entry's attributes (OCI rule).
    if (existing === null || fileType(existing) !== S_IFDIR) {
      const replacesWhiteout = existing !== null && isWhiteoutDevice(existing);
      if (existing !== null) this.remove(parentFd, name, existing);
      this.addon.mkdirAt(parentFd, name, 0o700);
      if (replacesWhiteout) this.withFd(parentFd, name, O_DIRECTORY, (fd) => this.addon.setXattrFd(fd, OPAQUE_XATTR, Buffer.from("y")));
    }
    this.withFd(parentFd, name, O_DIRECTORY, (fd) => {
      this.applyAttributes(fd, entry, xattrs);
      this.recordDirectoryTimes(relPath, fd, entry);
    });
  }

  private extractFile(parentFd: number, name: string, entry: ReadEntry, xattrs: Map<string, Buffer>): void {
    const existing = this.lstatOrNull(parentFd, name);
    if (existing !== null) this.remove(parentFd, name, existing);
    // O_EXCL|O_NOFOLLOW: never write through anything already there.
    const fileFd = this.addon.openAt(parentFd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    this.openFileFd = fileFd;
    // 'end' before 'data': attaching 'data' starts the flow, and an empty entry ends at once.
    entry.on("end", () => {
      try {
        if (!this.failure) {
          // chown before chmod (chown clears setuid/setgid), xattrs after chown (it drops
          // security.capability), times last.
          this.applyAttributes(fileFd, entry, xattrs);
          const times = this.entryTimes(entry);
          this.addon.utimesAt(fileFd, "", ...times.atime, ...times.mtime);
          this.extractedFiles.add(this.addon.lstatAt(fileFd, "")[ST_INO]);
        }
      } catch (err) {
        this.fail(err, entry.path);
      } finally {
        closeSync(fileFd);
        this.openFileFd = undefined;
      }
    });
    entry.on("data", (chunk: Buffer) => {
      if (this.failure) return;
      try {
        // Large files stream through here chunk by chunk; nothing is buffered.
        let offset = 0;
        while (offset < chunk.length) offset += writeSync(fileFd, chunk, offset, chunk.length - offset);
      } catch (err) {
        this.fail(new Error(`cannot write: ${(err as Error).message}`, { cause: err }), entry.path);
      }
    });
  }

  private extractSymlink(parentFd: number, name: string, entry: ReadEntry, xattrs: Map<string, Buffer>): void {
    const target = entry.linkpath ?? "";
    if (target === "") throw new Error("symlink without a target");
    if (target.includes("\0")) throw new Error("symlink target contains a NUL byte");
    if (Buffer.byteLength(target) > PATH_MAX) throw new Error(`symlink target is longer than ${PATH_MAX} bytes`);
    const existing = this.lstatOrNull(parentFd, name);
    if (existing !== null) this.remove(parentFd, name, existing);
    // The target is stored verbatim; it is only ever resolved in-root (here) or inside the
    // container's own mount namespace.
    this.addon.symlinkAt(target, parentFd, name);
    this.extractedFiles.add(this.addon.lstatAt(parentFd, name)[ST_INO]);
    const { uid, gid } = this.owner(entry);
    this.addon.chownAt(parentFd, name, uid, gid); // lchown: never follows
    if (xattrs.size > 0) {
      this.withFd(parentFd, name, 0, (fd) => this.applyXattrs(fd, xattrs, entry.path));
    }
    const times = this.entryTimes(entry);
    this.addon.utimesAt(parentFd, name, ...times.atime, ...times.mtime); // AT_SYMLINK_NOFOLLOW
  }

  private extractHardlink(parentFd: number, name: string, parts: string[], entry: ReadEntry): void {
    const targetParts = splitPath(entry.linkpath ?? "", "hardlink target");
    if (targetParts.length === 0) throw new Error("hardlink to the layer root");
    if (targetParts.join("/") === parts.join("/")) return; // a link to itself: nothing to do
    // Resolved in-root, last component not followed: "/etc/passwd" means destDir/etc/passwd.
    let targetFd: number;
    try {
      targetFd = this.addon.openInRoot(this.rootFd, targetParts.join("/"), O_PATH | O_NOFOLLOW, 0);
    } catch (err) {
      throw new Error(`hardlink target ${JSON.stringify(entry.linkpath)} does not exist in the layer (${errorCode(err) ?? (err as Error).message})`, { cause: err });
    }
    try {
      const st = this.addon.lstatAt(targetFd, "");
      if ((fileType(st) !== S_IFREG && fileType(st) !== S_IFLNK) || !this.extractedFiles.has(st[ST_INO])) {
        throw new Error(`hardlink target ${JSON.stringify(entry.linkpath)} is not a file or symlink extracted earlier from this layer`);
      }
      const existing = this.lstatOrNull(parentFd, name);
      if (existing !== null) {
        if (existing[ST_INO] === st[ST_INO]) return; // already the same file
        this.remove(parentFd, name, existing);
      }
      // The new name shares the inode, so its owner, mode, xattrs and times are the target's.
      this.addon.linkAt(targetFd, parentFd, name);
    } finally {
      closeSync(targetFd);
    }
  }

  private extractFifo(parentFd: number, name: string, entry: ReadEntry, xattrs: Map<string, Buffer>): void {
    const existing = this.lstatOrNull(parentFd, name);
    if (existing !== null) this.remove(parentFd, name, existing);
    this.addon.mknodAt(parentFd, name, S_IFIFO | 0o600, 0, 0);
    // An O_PATH fd does not open the FIFO, so this never blocks.
    this.withFd(parentFd, name, 0, (fd) => {
      this.applyAttributes(fd, entry, xattrs);
      const times = this.entryTimes(entry);
      this.addon.utimesAt(fd, "", ...times.atime, ...times.mtime);
    });
  }

  /**
   * OCI whiteouts in overlay form. ".wh.NAME" becomes a 0:0 character device NAME;
   * ".wh..wh..opq" marks its directory opaque. Whiteouts only hide LOWER layers: an entry this
   * layer itself has at NAME stays (and if it is a directory, it becomes opaque instead).
   */
  private applyWhiteout(parts: string[], entry: ReadEntry): void {
    const marker = parts[parts.length - 1] ?? "";
    const parent = this.openParent(parts.slice(0, -1));
    try {
      if (marker === OPAQUE_MARKER) {
        this.addon.setXattrFd(parent.fd, OPAQUE_XATTR, Buffer.from("y"));
        return;
      }
      if (marker.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) return; // other AUFS metadata (.wh..wh.plnk, ...)
      const hidden = marker.slice(WHITEOUT_PREFIX.length);
      if (hidden === "" || hidden === "." || hidden === "..") throw new Error("whiteout does not name an entry");
      const existing = this.lstatOrNull(parent.fd, hidden);
      if (existing !== null) {
        if (fileType(existing) === S_IFDIR) {
          this.withFd(parent.fd, hidden, O_DIRECTORY, (fd) => this.addon.setXattrFd(fd, OPAQUE_XATTR, Buffer.from("y")));
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

  /** Owner, then mode (chown clears setuid/setgid, so chmod comes after), then xattrs. */
  private applyAttributes(fd: number, entry: ReadEntry, xattrs: Map<string, Buffer>): void {
    const { uid, gid } = this.owner(entry);
    if (entry.mode === undefined || !Number.isInteger(entry.mode)) throw new Error("header has no valid mode");
    this.addon.chownAt(fd, "", uid, gid);
    this.addon.chmodFd(fd, entry.mode & 0o7777);
    this.applyXattrs(fd, xattrs, entry.path);
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
  private owner(entry: ReadEntry): { uid: number; gid: number } {
    if (this.options.forceOwner) return this.options.forceOwner;
    const check = (id: number | undefined, max: number, kind: "uid" | "gid"): number => {
      if (id === undefined || !Number.isSafeInteger(id) || id < 0) throw new Error(`header has no valid ${kind}`);
      if (id <= max) return id;
      if (this.options.squashUnmappedOwners) {
        this.warnings.add("owners outside the user namespace's id range were changed to root (squashUnmappedOwners)", `${JSON.stringify(entry.path)} ${kind} ${id}`);
        return 0;
      }
      throw new Error(
        `is owned by ${kind} ${id}, but the user namespace only has ${kind}s 0-${max} ` +
          `(give the user a larger range in /etc/sub${kind}, or squash unmapped owners to root)`,
      );
    };
    return { uid: check(entry.uid, this.options.maxUid, "uid"), gid: check(entry.gid, this.options.maxGid, "gid") };
  }

  private entryTimes(entry: ReadEntry): EntryTimes {
    const mtime = timespec(entry.mtime);
    return { mtime, atime: entry.atime ? timespec(entry.atime) : mtime };
  }

  private recordDirectoryTimes(relPath: string, fd: number, entry: ReadEntry): void {
    this.directoryTimes.set(relPath, { ...this.entryTimes(entry), ino: this.addon.lstatAt(fd, "")[ST_INO] });
  }

  /** Sets directory times last: every child created or removed above changed them. */
  fixDirectoryTimes(): void {
    for (const [relPath, times] of this.directoryTimes) {
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
        if (this.addon.lstatAt(fd, "")[ST_INO] === times.ino) this.addon.utimesAt(fd, "", ...times.atime, ...times.mtime);
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
  private remove(parentFd: number, name: string, st: RawStat): void {
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
    for (const child of readdirSync(`/proc/self/fd/${dirFd}`)) removeEntry(dirFd, child, addon.lstatAt(dirFd, child));
  } finally {
    closeSync(dirFd);
  }
  addon.unlinkAt(parentFd, name, true);
}
