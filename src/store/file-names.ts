// File names are bytes; tsrun carries them as JavaScript strings. Valid UTF-8 decodes as usual.
// A byte that is not part of valid UTF-8 (a Latin-1 name from an old image, say) becomes a lone
// low surrogate, U+DC80 to U+DCFF, as Python's "surrogateescape" does. Decoding valid UTF-8
// never yields a lone surrogate, so the mapping is one-to-one and lossless: such a string is a
// Map key, splits on "/" and joins like any other name, and encodes back to the very bytes.
//
// The addon (native/fs.cc) takes these strings as names and turns the escapes back into bytes;
// its readlinkAt returns link targets in this form. Node's own path-based fs calls do not know
// the escapes (they would write U+FFFD): nothing inside a container's or a layer's tree goes
// through them anyway.
import { readdirSync } from "node:fs";

const ESCAPE_BASE = 0xdc00;

/** Whether text holds escaped bytes (or any other surrogate, which names never hold otherwise). */
export function hasEscapedBytes(name: string): boolean {
  return /[\ud800-\udfff]/.test(name);
}

/** Length of a valid UTF-8 sequence starting at bytes[i], or 0 when the byte there starts none. */
function utf8SequenceLength(bytes: Uint8Array, i: number, end: number): number {
  const b = bytes[i] as number;
  if (b < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < end && (bytes[i + k] as number) >= lo && (bytes[i + k] as number) <= hi;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  // E0 and ED exclude overlong forms and the UTF-16 surrogates; F0 and F4 overlong forms and code points above U+10FFFF.
  if (b === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (b === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b >= 0xe1 && b <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b >= 0xf1 && b <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/** The name stored in bytes[start, end): UTF-8, with each byte that is not part of valid UTF-8 escaped. */
export function decodeFileName(bytes: Buffer, start = 0, end = bytes.length): string {
  const text = bytes.toString("utf8", start, end);
  // Node's decoder turns invalid bytes into U+FFFD: without one, the text is exact.
  if (!text.includes("\ufffd")) return text;
  let out = "";
  let run = start;
  let i = start;
  while (i < end) {
    const n = utf8SequenceLength(bytes, i, end);
    if (n > 0) {
      i += n;
      continue;
    }
    out += bytes.toString("utf8", run, i) + String.fromCharCode(ESCAPE_BASE + (bytes[i] as number));
    i++;
    run = i;
  }
  return out + bytes.toString("utf8", run, end);
}

/** The bytes of a name: its UTF-8, with escaped bytes as themselves. */
export function encodeFileName(name: string): Buffer {
  if (!hasEscapedBytes(name)) return Buffer.from(name, "utf8");
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < name.length) {
      const next = name.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a surrogate pair: an ordinary character beyond U+FFFF
        continue;
      }
    }
    if (c >= 0xdc80 && c <= 0xdcff) {
      parts.push(Buffer.from(name.slice(run, i), "utf8"), Buffer.from([c - ESCAPE_BASE]));
      run = i + 1;
    }
  }
  parts.push(Buffer.from(name.slice(run), "utf8"));
  return Buffer.concat(parts);
}

/** Length of the name in bytes. */
export function fileNameByteLength(name: string): number {
  return hasEscapedBytes(name) ? encodeFileName(name).length : Buffer.byteLength(name);
}

/** Names in byte order (as tar --sort=name and Go's filepath.Walk list them); plain string order for ASCII, the usual case. */
export function sortByBytes(names: string[]): string[] {
  if (names.every((name) => /^[\x01-\x7f]*$/.test(name))) return names.sort();
  return names
    .map((name) => ({ name, bytes: encodeFileName(name) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((e) => e.name);
}

/** The names in a directory, through an fd of it (no path is followed), in this form. */
export function listDirectory(dirFd: number): string[] {
  const where = `/proc/self/fd/${dirFd}`;
  const names = readdirSync(where);
  // Listed as UTF-8, a name that is not comes back with U+FFFD: list that directory again as bytes.
  if (!names.some((name) => name.includes("\ufffd"))) return names;
  return readdirSync(where, { encoding: "buffer" }).map((name) => decodeFileName(name));
}
