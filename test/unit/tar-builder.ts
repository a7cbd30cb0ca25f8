// Builds tar archives byte by byte, so tests can make entries no well-behaved tar writer would:
// hostile names, links out of the root, device nodes, whiteouts, binary PAX xattrs, broken sizes.
// Every header is a POSIX ustar block; PAX records go in a preceding 'x' entry.

const BLOCK = 512;

export interface RawTarEntry {
  /** Stored verbatim in the 100-byte name field (or in a PAX "path" record when longer). */
  name: string;
  /** The typeflag character: "0" file, "1" hardlink, "2" symlink, "3" char dev, "4" block dev, "5" dir, "6" FIFO. */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  linkname?: string;
  content?: Buffer | string;
  /** Overrides the size field's value (by default the content length). */
  size?: number;
  /** Raw 12 bytes for the size field, to write negative or malformed sizes. */
  sizeField?: Buffer;
  /** Raw 8 bytes for the uid field (base-256 numbers). */
  uidField?: Buffer;
  devMajor?: number;
  devMinor?: number;
  /** PAX records written in an 'x' header just before this entry; values may be binary. */
  pax?: Record<string, string | Buffer>;
  /** Corrupt the header checksum. */
  badChecksum?: boolean;
}

function octal(value: number, width: number): Buffer {
  // width - 1 octal digits, then a NUL, as GNU tar writes them.
  const digits = value.toString(8).padStart(width - 1, "0");
  if (digits.length > width - 1) throw new Error(`${value} does not fit in a ${width}-byte octal field`);
  return Buffer.from(digits + "\0", "latin1");
}

function putString(block: Buffer, offset: number, width: number, value: string): void {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > width) throw new Error(`"${value}" does not fit in ${width} bytes`);
  bytes.copy(block, offset);
}

/** One 512-byte ustar header. */
export function ustarHeader(entry: RawTarEntry, size: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  putString(block, 0, 100, entry.name);
  octal(entry.mode ?? 0o644, 8).copy(block, 100);
  (entry.uidField ?? octal(entry.uid ?? 0, 8)).copy(block, 108);
  octal(entry.gid ?? 0, 8).copy(block, 116);
  (entry.sizeField ?? octal(size, 12)).copy(block, 124);
  octal(entry.mtime ?? 1_700_000_000, 12).copy(block, 136);
  block.write(entry.type ?? "0", 156, 1, "latin1");
  putString(block, 157, 100, entry.linkname ?? "");
  block.write("ustar\u000000", 257, 8, "latin1");
  putString(block, 265, 32, "root");
  putString(block, 297, 32, "root");
  octal(entry.devMajor ?? 0, 8).copy(block, 329);
  octal(entry.devMinor ?? 0, 8).copy(block, 337);
  // The checksum is computed with its own field read as eight spaces.
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  if (entry.badChecksum) sum += 1;
  Buffer.from(sum.toString(8).padStart(6, "0") + "\0 ", "latin1").copy(block, 148);
  return block;
}

function padded(data: Buffer): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}

/** PAX extended header records: "<length> <key>=<value>\n", the length counting itself. */
export function paxRecords(records: Record<string, string | Buffer>): Buffer {
  const out: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8"), Buffer.from("\n")]);
    let length = body.length + 1;
    while (String(length).length + body.length !== length) length = String(length).length + body.length;
    out.push(Buffer.from(String(length), "latin1"), body);
  }
  return Buffer.concat(out);
}

/** The header, PAX header (if any), content and padding of one entry. */
export function rawEntry(entry: RawTarEntry): Buffer {
  const content = entry.content === undefined ? Buffer.alloc(0) : Buffer.from(entry.content);
  const parts: Buffer[] = [];
  if (entry.pax) {
    const records = paxRecords(entry.pax);
    parts.push(ustarHeader({ name: "PaxHeader", type: "x", mode: 0o644 }, records.length), padded(records));
  }
  parts.push(ustarHeader(entry, entry.size ?? content.length), padded(content));
  return Buffer.concat(parts);
}

/** A complete archive: the entries, then the two zero blocks that end a tar (unless end is false). */
export function rawTar(entries: RawTarEntry[], options: { end?: boolean } = {}): Buffer {
  const parts = entries.map(rawEntry);
  if (options.end !== false) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** Recomputes a header's checksum, summed over unsigned chars or (as old SunOS tars did) signed ones. */
export function rewriteChecksum(header: Buffer, signed = false): void {
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += signed ? header.readInt8(i) : (header[i] as number);
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
}

/** The archive without its end marker and the zero padding tar writers add to a record. */
export function withoutEnd(archive: Buffer): Buffer {
  let end = archive.length;
  while (end >= BLOCK && archive.subarray(end - BLOCK, end).every((b) => b === 0)) end -= BLOCK;
  return archive.subarray(0, end);
}
