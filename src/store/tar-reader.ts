// A lean, synchronous tar reader for layer unpacking: it follows the block structure of the
// bytes it is fed and reports each file-system entry with its data, in order.
//
// Why not node-tar's Parser: it emits every entry through a paused stream and promises (the
// larger part of the unpacker's JavaScript time), drops PAX SCHILY.xattr.* records (file
// capabilities) and decodes PAX bodies as UTF-8. This reader handles what layers contain:
// ustar, GNU and PAX headers (long names and link targets from 'L'/'K' headers and PAX
// path/linkpath records), base-256 numbers, PAX size/uid/gid/mtime/atime, xattrs from
// SCHILY.xattr.* and LIBARCHIVE.xattr.* records, and sparse files in each of GNU tar's formats
// (old GNU 'S' headers, PAX 0.0, 0.1 and 1.0), as Go's archive/tar reads them for Docker. It
// refuses what tar readers disagree on, so no entry can be smuggled past another tool: negative
// sizes, data on header-only entries, global PAX sizes, sparse maps that do not account for
// exactly the stored data, unknown sparse versions, multi-volume and other exotic entry types,
// and a zero block followed by more headers (Go refuses it; GNU tar and bsdtar stop there).
// Names are bytes: those that are not valid UTF-8 come out in file-names.ts's escaped form, so
// that they land on disk as they are in the archive.
import { decodeFileName } from "./file-names.js";

const BLOCK = 512;
/** Longest PAX or GNU long-name body accepted; real ones are a few hundred bytes. */
const MAX_META_SIZE = 1024 * 1024;
/** Longest sparse map (in old GNU extension blocks or a PAX 1.0 map's text) accepted. */
const MAX_SPARSE_MAP_BYTES = 1024 * 1024;

/** A header the reader cannot accept: the archive is corrupt, truncated or crafted. */
export class TarFormatError extends Error {}

export type TarEntryType = "file" | "hardlink" | "symlink" | "char" | "block" | "directory" | "fifo";

/** A run of a sparse file's stored bytes: where it goes in the file. Between runs are holes. */
export interface SparseSegment {
  offset: number;
  length: number;
}

/** [seconds, nanoseconds] since the epoch, as utimensat takes them. */
export type Timespec = [number, number];

export interface TarEntry {
  /** The path as stored (PAX path, GNU long name, or ustar prefix/name), decoded as file-names.ts does. */
  path: string;
  type: TarEntryType;
  /** Permission bits, including setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** The file's length (regular files only; 0 for every other type). A sparse file's includes its holes. */
  size: number;
  /** A sparse file's data runs, in file order (their lengths add up to the bytes stored); absent for other files. */
  sparse: SparseSegment[] | undefined;
  mtime: Timespec;
  /** From a PAX atime record; absent otherwise. */
  atime: Timespec | undefined;
  /** Link target (symlinks, hardlinks). */
  linkpath: string;
  devMajor: number;
  devMinor: number;
  /** Raw xattr values, by name (SCHILY.xattr.* wins over LIBARCHIVE.xattr.*). */
  xattrs: Map<string, Buffer>;
}

/** Receives the entries in archive order. A throw stops the reader (feed rethrows it). */
export interface TarEntryHandler {
  entry(entry: TarEntry): void;
  /**
   * Data of the last regular file reported, in order, as views into the fed chunks; position is
   * where the chunk's first byte goes in the file (past a hole in a sparse file).
   */
  data(chunk: Buffer, position: number): void;
  /** The last regular file's data is complete (called at once for an empty file). */
  fileEnd(): void;
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "": "file",
  "7": "file", // contiguous file: an ordinary file everywhere but on a few old Unixes
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "directory",
  "6": "fifo",
  D: "directory", // GNU dump dir: a directory whose data (a listing) is skipped
};
/** Entries whose size must be 0: GNU tar and Go skip their data, node-tar reads it as data. */
const HEADER_ONLY_TYPES = new Set(["1", "2", "3", "4", "5", "6"]);
/** PAX (x, g, X) and GNU long name/link (L, K, N) headers describing the next entry. */
const META_TYPES = new Set(["x", "g", "X", "L", "K", "N"]);
const UNSUPPORTED_TYPES: Record<string, string> = {
  M: "GNU multi-volume continuation",
  V: "tape volume header",
  A: "Solaris ACL",
  E: "Solaris extended attributes",
  I: "inode metadata",
};

/** Fields from PAX records and GNU long-name headers. */
interface Overrides {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: Timespec;
  atime?: Timespec;
}

/** GNU.sparse.* PAX records of one entry, as given. */
interface SparsePax {
  major?: string;
  minor?: string;
  name?: string;
  /** GNU.sparse.size (0.x) or GNU.sparse.realsize (1.0). */
  realSize?: number;
  numBlocks?: number;
  /** 0.0: GNU.sparse.offset and GNU.sparse.numbytes records, in order; 0.1: GNU.sparse.map. */
  numbers: number[];
  /** 0.0 records alternate offset, numbytes: the kind the next one must be. */
  expectOffset: boolean;
  hasMap: boolean;
}

/** What applies to the next entry only ('x' and GNU headers). */
class PendingExtension {
  readonly fields: Overrides = {};
  readonly schilyXattrs = new Map<string, Buffer>();
  readonly libarchiveXattrs = new Map<string, Buffer>();
  sparse: SparsePax | undefined;

  xattrs(): Map<string, Buffer> {
    if (this.libarchiveXattrs.size === 0) return this.schilyXattrs;
    // libarchive writes both forms; the SCHILY one is the raw value, so it wins.
    const all = new Map(this.libarchiveXattrs);
    for (const [name, value] of this.schilyXattrs) all.set(name, value);
    return all;
  }
}

/** A name field: its bytes up to the first NUL (what follows a NUL is not part of it). */
function cString(buf: Buffer, offset: number, length: number): string {
  let end = offset;
  const limit = offset + length;
  while (end < limit && buf[end] !== 0) end++;
  return decodeFileName(buf, offset, end);
}

/** A numeric header field: octal text, or base-256 for large values. */
function parseNumberField(buf: Buffer, offset: number, length: number, what: string, allowNegative = false): number {
  const first = buf[offset] ?? 0;
  if (first & 0x80) {
    if (first === 0xff && allowNegative) {
      // Two's complement negative (dates before 1970).
      let value = 0;
      for (let i = offset; i < offset + length; i++) value = value * 256 + (0xff - (buf[i] ?? 0));
      return -(value + 1);
    }
    if (first !== 0x80) throw new TarFormatError(`${what} is negative or malformed (base-256 marker 0x${first.toString(16)})`);
    let value = 0;
    for (let i = offset + 1; i < offset + length; i++) value = value * 256 + (buf[i] ?? 0);
    if (!Number.isSafeInteger(value)) throw new TarFormatError(`${what} is too large`);
    return value;
  }
  // Octal digits, surrounded by spaces or NULs (Go trims both from either end); anything else
  // (a sign, "12x") is refused, where a lenient parseInt would read "-5" as -5 and a negative
  // size as 0. After a NUL that ends the digits, the rest of the field is not looked at.
  let i = offset;
  const end = offset + length;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0)) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = buf[i] ?? 0;
    if (c < 0x30 || c > 0x37) break;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    const c = buf[i] ?? 0;
    if (c === 0) break;
    if (c !== 0x20) throw new TarFormatError(`${what} ${JSON.stringify(buf.toString("latin1", offset, end).replace(/\0.*$/s, ""))} is not an octal number`);
  }
  return digits === 0 ? 0 : value;
}

/** A PAX time: decimal seconds with an optional fraction ("1700000000.123456789", "-1.5"). */
function parsePaxTime(text: string, key: string): Timespec {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new TarFormatError(`PAX ${key} ${JSON.stringify(text)} is not a time`);
  const whole = Number(m[2]);
  const nsec = Number(((m[3] ?? "") + "000000000").slice(0, 9));
  if (!Number.isSafeInteger(whole)) throw new TarFormatError(`PAX ${key} ${JSON.stringify(text)} is out of range`);
  if (m[1] !== "-") return [whole, nsec];
  return nsec === 0 ? [-whole, 0] : [-whole - 1, 1_000_000_000 - nsec];
}

function parsePaxId(text: string, key: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new TarFormatError(`PAX ${key} ${JSON.stringify(text)} is not a valid id`);
  return Number(text);
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
    if (data[pos] === 0 && data.subarray(pos).every((b) => b === 0)) return;
    const space = data.indexOf(0x20, pos);
    const lengthText = space === -1 ? "" : data.toString("latin1", pos, space);
    if (!/^\d{1,8}$/.test(lengthText)) throw new TarFormatError("malformed PAX record (bad length)");
    const end = pos + Number(lengthText);
    if (end > data.length || end <= space + 1 || data[end - 1] !== 0x0a) throw new TarFormatError("malformed PAX record (length does not match)");
    const record = data.subarray(space + 1, end - 1);
    const equals = record.indexOf(0x3d);
    if (equals <= 0) throw new TarFormatError("malformed PAX record (no key)");
    onRecord(record.toString("utf8", 0, equals), record.subarray(equals + 1));
    pos = end;
  }
}

/** The header's checksum summed over signed chars (the checksum field read as spaces). */
function signedChecksum(block: Buffer, at: number): number {
  let sum = 8 * 0x20;
  for (let i = at; i < at + BLOCK; i++) {
    if (i === at + 148) i = at + 156;
    sum += block.readInt8(i);
  }
  return sum;
}

function isZeroBlock(buf: Buffer, offset: number): boolean {
  for (let i = offset; i < offset + BLOCK; i++) if (buf[i] !== 0) return false;
  return true;
}

export class TarReader {
  private readonly partial = Buffer.alloc(BLOCK);
  private partialFill = 0;
  /** Data bytes of the current regular file still to hand to the handler. */
  private dataRemaining = 0;
  /** Bytes after the data (padding, or the data of entries whose data is ignored) to pass. */
  private skipRemaining = 0;
  private meta: { type: string; data: Buffer; fill: number } | undefined;
  private pending = new PendingExtension();
  /** Global PAX fields ('g'): defaults for every later entry. */
  private readonly global: Overrides = {};
  private sawZeroBlock = false;
  /** Where the current plain file's next data byte goes. */
  private position = 0;
  /** The current sparse file's data runs, the one being filled, and how much of it is. */
  private segments: SparseSegment[] | undefined;
  private segmentIndex = 0;
  private segmentFilled = 0;
  /** Whole blocks that belong to the current entry before its data (sparse maps), not headers. */
  private blockConsumer: ((block: Buffer, at: number) => void) | undefined;
  /** The two zero blocks that end an archive were seen; what follows is not tar data. */
  ended = false;
  /** File-system entries reported so far. */
  entries = 0;

  constructor(private readonly handler: TarEntryHandler) {}

  /** Consumes a chunk; returns how many of its leading bytes belong to the archive. */
  feed(chunk: Buffer): number {
    let pos = 0;
    const length = chunk.length;
    while (pos < length && !this.ended) {
      if (this.dataRemaining > 0) {
        const n = Math.min(this.dataRemaining, length - pos);
        this.dataRemaining -= n;
        this.deliver(chunk, pos, n);
        pos += n;
        if (this.dataRemaining === 0) this.handler.fileEnd();
      } else if (this.meta) {
        const meta = this.meta;
        const n = Math.min(meta.data.length - meta.fill, length - pos);
        chunk.copy(meta.data, meta.fill, pos, pos + n);
        meta.fill += n;
        pos += n;
        if (meta.fill === meta.data.length) {
          this.meta = undefined;
          this.applyMeta(meta.type, meta.data);
        }
      } else if (this.skipRemaining > 0) {
        const n = Math.min(this.skipRemaining, length - pos);
        this.skipRemaining -= n;
        pos += n;
      } else if (this.partialFill === 0 && length - pos >= BLOCK) {
        // The common case: a whole header inside the chunk, read in place.
        this.onBlock(chunk, pos);
        pos += BLOCK;
      } else {
        const n = Math.min(BLOCK - this.partialFill, length - pos);
        chunk.copy(this.partial, this.partialFill, pos, pos + n);
        this.partialFill += n;
        pos += n;
        if (this.partialFill === BLOCK) {
          this.partialFill = 0;
          this.onBlock(this.partial, 0);
        }
      }
    }
    return pos;
  }

  /** At the end of the input: refuses an archive cut off inside a header or an entry's data. */
  finish(): void {
    if (this.ended) return;
    if (this.meta || this.blockConsumer || this.skipRemaining > 0 || this.dataRemaining > 0) throw new TarFormatError("the tar stream is truncated (it ends inside an entry)");
    if (this.partialFill > 0 && this.partial.subarray(0, this.partialFill).some((b) => b !== 0)) {
      throw new TarFormatError("the tar stream is truncated (it ends inside a header)");
    }
  }

  private onBlock(block: Buffer, at: number): void {
    if (this.blockConsumer) this.blockConsumer(block, at);
    else this.onHeader(block, at);
  }

  /** Hands n bytes of the current file's data at chunk[pos] to the handler, with their file positions. */
  private deliver(chunk: Buffer, pos: number, n: number): void {
    const segments = this.segments;
    if (segments === undefined) {
      this.handler.data(chunk.subarray(pos, pos + n), this.position);
      this.position += n;
      return;
    }
    while (n > 0) {
      // The map was checked to account for exactly the stored bytes: a run is always there.
      const segment = segments[this.segmentIndex] as SparseSegment;
      const take = Math.min(segment.length - this.segmentFilled, n);
      this.handler.data(chunk.subarray(pos, pos + take), segment.offset + this.segmentFilled);
      this.segmentFilled += take;
      pos += take;
      n -= take;
      if (this.segmentFilled === segment.length) {
        this.segmentIndex++;
        this.segmentFilled = 0;
      }
    }
  }

  private onHeader(block: Buffer, at: number): void {
    if (isZeroBlock(block, at)) {
      if (this.sawZeroBlock) this.ended = true;
      this.sawZeroBlock = true;
      return;
    }
    // One zero block ends the archive for GNU tar and bsdtar, Go refuses what follows it, and
    // node-tar reads on: entries there would be seen by some tools only. Docker's reader decides.
    if (this.sawZeroBlock) throw new TarFormatError(`a zero block is followed by more headers (after entry ${this.entries}; corrupt, or two archives run together)`);
    const typeByte = block[at + 156] ?? 0;
    const typeflag = typeByte === 0 ? "" : String.fromCharCode(typeByte);
    const isMeta = META_TYPES.has(typeflag);
    const ex = this.pending.fields;
    // A pending PAX path names the next file entry, never an intervening extension header.
    // POSIX ustar names may start in the prefix field (GNU's own format keeps times there).
    const ustar = block.toString("latin1", at + 257, at + 263) === "ustar\u0000";
    let name = cString(block, at, 100);
    if (ustar && block[at + 345] !== 0) {
      // star's variant ("tar\0" at the end) has a 131-byte prefix and then times.
      const star = block[at + 508] === 0x74 && block.toString("latin1", at + 508, at + 512) === "tar\u0000";
      name = `${cString(block, at + 345, star ? 131 : 155)}/${name}`;
    }
    const path = !isMeta && ex.path !== undefined ? ex.path : name;
    // A name of garbage bytes (random data, a wrong format) would fill the error line with noise.
    const readable = /^[\x20-\x7e\u00a0-\ud7ff\ue000-\uffef]*$/.test(path) && !path.includes("\ufffd");
    const where = readable ? `tar header for ${JSON.stringify(path)}` : `tar header ${this.entries + 1}`;

    let stored: number | undefined;
    try {
      stored = parseNumberField(block, at + 148, 8, `${where}: checksum`);
    } catch {
      // An unreadable checksum field is a wrong checksum: random data, or another format.
    }
    let sum = 8 * 0x20;
    for (let i = at; i < at + 148; i++) sum += block[i] as number;
    for (let i = at + 156; i < at + BLOCK; i++) sum += block[i] as number;
    // Some old tars (SunOS, early GNU) summed signed chars: Go and GNU tar accept either sum.
    if (sum !== stored && signedChecksum(block, at) !== stored) throw new TarFormatError(`${where}: checksum mismatch (corrupt or not a tar archive)`);

    const headerSize = parseNumberField(block, at + 124, 12, `${where}: size`);
    if (isMeta) {
      if (headerSize > MAX_META_SIZE) throw new TarFormatError(`${where}: extended header of ${headerSize} bytes is too large`);
      this.skipRemaining = padding(headerSize) - headerSize;
      if (headerSize === 0) this.applyMeta(typeflag, Buffer.alloc(0));
      else this.meta = { type: typeflag, data: Buffer.alloc(headerSize), fill: 0 };
      return;
    }
    // Old GNU sparse files ('S') are regular files with their map in the header.
    let type = typeflag === "S" ? "file" : TYPES[typeflag];
    if (type === undefined) {
      const known = UNSUPPORTED_TYPES[typeflag];
      throw new TarFormatError(`${where}: entry type ${JSON.stringify(typeflag)}${known ? ` (${known})` : ""} is not supported in layers`);
    }
    const size = ex.size ?? headerSize;
    // Old tars marked directories as files with a trailing slash.
    const oldStyleDir = type === "file" && typeflag !== "7" && typeflag !== "S" && path.endsWith("/");
    if (size > 0 && (HEADER_ONLY_TYPES.has(typeflag) || oldStyleDir)) {
      // Tar readers disagree on whether such data exists: a way to smuggle entries past scanners.
      throw new TarFormatError(`${where}: entry of type ${JSON.stringify(typeflag)} claims ${size} bytes of data`);
    }
    if (oldStyleDir) type = "directory";
    if (path === "") throw new TarFormatError("an entry has no name");
    if (path.includes("\0")) throw new TarFormatError(`${where}: the name contains a NUL byte`);

    const linkpath = ex.linkpath ?? cString(block, at + 157, 100);
    const entry: TarEntry = {
      path,
      type,
      mode: parseNumberField(block, at + 100, 8, `${where}: mode`) & 0o7777,
      uid: ex.uid ?? this.global.uid ?? parseNumberField(block, at + 108, 8, `${where}: uid`),
      gid: ex.gid ?? this.global.gid ?? parseNumberField(block, at + 116, 8, `${where}: gid`),
      size: type === "file" ? size : 0,
      sparse: undefined,
      mtime: ex.mtime ?? this.global.mtime ?? [parseNumberField(block, at + 136, 12, `${where}: mtime`, true), 0],
      atime: ex.atime ?? this.global.atime,
      linkpath,
      devMajor: type === "char" || type === "block" ? parseNumberField(block, at + 329, 8, `${where}: device major`) : 0,
      devMinor: type === "char" || type === "block" ? parseNumberField(block, at + 337, 8, `${where}: device minor`) : 0,
      xattrs: this.pending.xattrs(),
    };
    const sparsePax = this.pending.sparse;
    this.pending = new PendingExtension();
    if (sparsePax && type !== "file") throw new TarFormatError(`${where}: sparse records on an entry that is not a regular file`);
    if (typeflag === "S") this.startOldGnuSparse(entry, block, at, size, where);
    else if (sparsePax) this.startPaxSparse(entry, sparsePax, size, where);
    else if (type === "file") this.startFile(entry, size);
    else {
      this.entries++;
      this.handler.entry(entry);
      // A GNU dump dir's listing: not file-system content.
      this.skipRemaining = padding(size);
    }
  }

  /** Reports a regular file whose `stored` bytes of data come next. */
  private startFile(entry: TarEntry, stored: number): void {
    this.entries++;
    this.handler.entry(entry);
    this.position = 0;
    this.segments = entry.sparse;
    this.segmentIndex = 0;
    this.segmentFilled = 0;
    this.skipRemaining = padding(stored) - stored;
    if (stored === 0) this.handler.fileEnd();
    else this.dataRemaining = stored;
  }

  /**
   * Old GNU sparse file: up to 4 runs in the header, more in extension blocks (21 each) that
   * follow it while their "is extended" byte is set; the real size at offset 483.
   */
  private startOldGnuSparse(entry: TarEntry, block: Buffer, at: number, stored: number, where: string): void {
    const realSize = parseNumberField(block, at + 483, 12, `${where}: sparse file size`);
    const numbers: number[] = [];
    const readRuns = (buf: Buffer, offset: number, count: number): void => {
      for (let i = 0; i < count; i++) {
        const run = offset + i * 24;
        // An empty offset field ends the list (GNU tar, bsdtar and Go all stop there).
        if (buf[run] === 0) return;
        numbers.push(parseNumberField(buf, run, 12, `${where}: sparse offset`), parseNumberField(buf, run + 12, 12, `${where}: sparse length`));
      }
    };
    readRuns(block, at + 386, 4);
    const start = (): void => {
      entry.size = realSize;
      entry.sparse = sparseSegments(numbers, realSize, stored, where);
      this.startFile(entry, stored);
    };
    if (block[at + 482] === 0) {
      start();
      return;
    }
    let mapBytes = 0;
    this.blockConsumer = (ext, extAt) => {
      mapBytes += BLOCK;
      if (mapBytes > MAX_SPARSE_MAP_BYTES) throw new TarFormatError(`${where}: sparse map larger than ${MAX_SPARSE_MAP_BYTES} bytes`);
      readRuns(ext, extAt, 21);
      if (ext[extAt + 504] === 0) {
        this.blockConsumer = undefined;
        start();
      }
    };
  }

  /**
   * PAX sparse file: versions 0.0 (GNU.sparse.offset/numbytes records) and 0.1 (GNU.sparse.map)
   * carry the map in the PAX header; 1.0 puts it as decimal lines at the start of the data,
   * padded to a block, and the real name in GNU.sparse.name.
   */
  private startPaxSparse(entry: TarEntry, sparse: SparsePax, stored: number, where: string): void {
    const version = `${sparse.major ?? ""}.${sparse.minor ?? ""}`;
    // 0.0 and 0.1 have no version records.
    if (!(version === "0.0" || version === "0.1" || version === "1.0" || (version === "." && (sparse.hasMap || sparse.numbers.length > 0)))) {
      throw new TarFormatError(`${where}: unsupported sparse file format ${JSON.stringify(version)}`);
    }
    if (sparse.realSize === undefined) throw new TarFormatError(`${where}: sparse file without GNU.sparse.size or GNU.sparse.realsize`);
    const realSize = sparse.realSize;
    if (sparse.name !== undefined) entry.path = sparse.name;
    entry.size = realSize;
    if (version !== "1.0") {
      if (sparse.numBlocks !== undefined && sparse.numbers.length !== 2 * sparse.numBlocks) {
        throw new TarFormatError(`${where}: GNU.sparse.numblocks says ${sparse.numBlocks} runs, the map has ${sparse.numbers.length / 2}`);
      }
      entry.sparse = sparseSegments(sparse.numbers, realSize, stored, where);
      this.startFile(entry, stored);
      return;
    }
    // "<count>\n" then "<offset>\n<length>\n" per run; the rest of the last block is padding.
    const numbers: number[] = [];
    let count = -1;
    let digits = "";
    let mapBytes = 0;
    this.blockConsumer = (block, at) => {
      mapBytes += BLOCK;
      if (mapBytes > stored) throw new TarFormatError(`${where}: the sparse map runs past the entry's data`);
      if (mapBytes > MAX_SPARSE_MAP_BYTES) throw new TarFormatError(`${where}: sparse map larger than ${MAX_SPARSE_MAP_BYTES} bytes`);
      for (let i = at; i < at + BLOCK; i++) {
        const c = block[i] as number;
        if (c >= 0x30 && c <= 0x39 && digits.length < 20) {
          digits += String.fromCharCode(c);
          continue;
        }
        if (c !== 0x0a || digits === "") throw new TarFormatError(`${where}: malformed sparse map`);
        const value = Number(digits);
        if (!Number.isSafeInteger(value)) throw new TarFormatError(`${where}: sparse map number ${digits} is too large`);
        digits = "";
        if (count < 0) count = value;
        else numbers.push(value);
        if (numbers.length === 2 * count) {
          this.blockConsumer = undefined;
          const dataBytes = stored - mapBytes;
          entry.sparse = sparseSegments(numbers, realSize, dataBytes, where);
          this.startFile(entry, dataBytes);
          return;
        }
      }
    };
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
        this.pending.fields.path = cString(data, 0, data.length);
        break;
      case "K":
        this.pending.fields.linkpath = cString(data, 0, data.length);
        break;
    }
  }

  private applySparseRecord(key: string, value: Buffer): void {
    const sparse = (this.pending.sparse ??= { numbers: [], expectOffset: true, hasMap: false });
    const text = value.toString("utf8");
    switch (key) {
      case "major":
      case "minor":
        sparse[key] = text;
        return;
      case "name":
        if (value.includes(0)) throw new TarFormatError("PAX GNU.sparse.name contains a NUL byte");
        sparse.name = decodeFileName(value);
        return;
      case "size":
      case "realsize":
        sparse.realSize = sparseNumber(text, key);
        return;
      case "numblocks":
        sparse.numBlocks = sparseNumber(text, key);
        return;
      case "offset":
      case "numbytes":
        // 0.0: the pairs are repeated records, in order.
        if ((key === "offset") !== sparse.expectOffset) throw new TarFormatError(`PAX GNU.sparse.${key} out of order`);
        sparse.numbers.push(sparseNumber(text, key));
        sparse.expectOffset = !sparse.expectOffset;
        return;
      case "map":
        sparse.hasMap = true;
        sparse.numbers = text === "" ? [] : text.split(",").map((n) => sparseNumber(n, key));
        return;
    }
  }

  private applyPaxRecord(key: string, value: Buffer, global: boolean): void {
    const fields = global ? this.global : this.pending.fields;
    if (key.startsWith("GNU.sparse.")) {
      if (global) throw new TarFormatError("a global PAX header has sparse file records; refusing the ambiguous archive");
      this.applySparseRecord(key.slice("GNU.sparse.".length), value);
      return;
    }
    switch (key) {
      case "size": {
        const text = value.toString("latin1");
        if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new TarFormatError(`PAX size ${JSON.stringify(text)} is not a valid size`);
        if (global) throw new TarFormatError("a global PAX header sets the size of every entry; refusing the ambiguous archive");
        fields.size = Number(text);
        return;
      }
      case "path":
      case "linkpath":
        if (value.includes(0)) throw new TarFormatError(`PAX ${key} contains a NUL byte`);
        // A global path or link target would name every entry: ignored, as node-tar and GNU tar do.
        // The value is taken as bytes whatever hdrcharset says, as Go and GNU tar do.
        if (!global) fields[key] = decodeFileName(value);
        return;
      case "uid":
      case "gid":
        fields[key] = parsePaxId(value.toString("latin1"), key);
        return;
      case "mtime":
      case "atime":
        fields[key] = parsePaxTime(value.toString("latin1"), key);
        return;
    }
    if (global) return; // xattrs and the rest describe one file
    if (key.startsWith("SCHILY.xattr.")) {
      const name = key.slice("SCHILY.xattr.".length);
      if (name === "") throw new TarFormatError("PAX xattr record without a name");
      this.pending.schilyXattrs.set(name, Buffer.from(value));
    } else if (key.startsWith("LIBARCHIVE.xattr.")) {
      // libarchive %-encodes the name and base64-encodes the value.
      const name = percentDecode(key.slice("LIBARCHIVE.xattr.".length));
      if (name === "") throw new TarFormatError("PAX xattr record without a name");
      this.pending.libarchiveXattrs.set(name, Buffer.from(value.toString("latin1"), "base64"));
    }
  }
}

/**
 * A sparse map (offset, length, offset, length, ...) as data runs: in order, not overlapping,
 * within the file, and accounting for exactly the stored bytes (a reader that disagreed on where
 * the data ends would read the rest as the next entries).
 */
function sparseSegments(numbers: number[], realSize: number, stored: number, where: string): SparseSegment[] {
  if (numbers.length % 2 !== 0) throw new TarFormatError(`${where}: sparse map has an offset without a length`);
  const segments: SparseSegment[] = [];
  let end = 0;
  let total = 0;
  for (let i = 0; i < numbers.length; i += 2) {
    const offset = numbers[i] as number;
    const length = numbers[i + 1] as number;
    if (offset < end) throw new TarFormatError(`${where}: sparse map runs overlap or are out of order`);
    if (offset + length > realSize) throw new TarFormatError(`${where}: sparse map run at ${offset} goes past the file's size ${realSize}`);
    end = offset + length;
    total += length;
    if (length > 0) segments.push({ offset, length });
  }
  if (total !== stored) throw new TarFormatError(`${where}: sparse map accounts for ${total} bytes of data, the entry stores ${stored}`);
  return segments;
}

/** A decimal number in a GNU.sparse.* record. */
function sparseNumber(text: string, key: string): number {
  if (!/^\d{1,20}$/.test(text) || !Number.isSafeInteger(Number(text))) throw new TarFormatError(`PAX GNU.sparse.${key} ${JSON.stringify(text.slice(0, 40))} is not a valid number`);
  return Number(text);
}

function padding(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}
