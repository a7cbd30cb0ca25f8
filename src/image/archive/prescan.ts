// A look ahead into an image archive on disk, before it is read: which of its members are layers
// the store will have to unpack. Archives put their manifest last (docker save, podman save), so
// a streaming reader only learns what a member is once it has read them all; a seekable,
// uncompressed file can tell sooner, by walking the tar headers (skipping the data) and reading
// the few JSON documents that say which members are layers of which chain. The loader then
// unpacks those while it reads the archive instead of afterwards.
//
// Only a hint: nothing here is trusted. Anything unexpected (compression, odd headers, malformed
// documents) gives up and returns undefined; the archive is then checked and planned as always,
// from what the reader actually read.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import path from "node:path";
import { chainIds } from "../../store/digest.js";
import { hostPlatform } from "../types.js";
import { selectPlatform, type ImageIndexDoc } from "../registry/manifest.js";
import { detectCompression } from "./compression.js";
import { MAX_JSON_BYTES, memberName } from "./reader.js";

const BLOCK = 512;
/** More members than any image archive has: beyond this the look ahead is not worth it. */
const MAX_MEMBERS = 100_000;
const MAX_META_BYTES = 1024 * 1024;
const MAX_LINK_HOPS = 16;

interface Entry {
  type: string;
  /** Where the data starts in the file. */
  offset: number;
  size: number;
  linkTarget: string;
}

/** Gives up the look ahead (caught in layersToUnpack). */
class NoHint extends Error {}

function cString(block: Buffer, start: number, length: number): string {
  const end = block.indexOf(0, start);
  return block.toString("utf8", start, end >= 0 && end < start + length ? end : start + length);
}

function headerSize(block: Buffer): number {
  const field = block.subarray(124, 136);
  if ((field[0] as number) & 0x80) {
    // Base-256 (GNU, for sizes past 8 GiB): big-endian after the marker bit.
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + (field[i] as number);
    return n;
  }
  const text = cString(block, 124, 12).trim();
  if (!/^[0-7]*$/.test(text)) throw new NoHint();
  return text === "" ? 0 : parseInt(text, 8);
}

function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) throw new NoHint();
    const length = Number(data.toString("latin1", pos, space));
    if (!Number.isInteger(length) || length <= 0 || pos + length > data.length) throw new NoHint();
    const record = data.toString("utf8", space + 1, pos + length - 1);
    const eq = record.indexOf("=");
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return out;
}

class TarIndex {
  readonly entries = new Map<string, Entry>();

  constructor(private readonly fd: number) {}

  read(offset: number, length: number): Buffer {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, buf, got, length - got, offset + got);
      if (n <= 0) throw new NoHint();
      got += n;
    }
    return buf;
  }

  scan(fileSize: number): void {
    let offset = 0;
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax: Map<string, string> | undefined;
    while (offset + BLOCK <= fileSize) {
      const block = this.read(offset, BLOCK);
      if (block.every((b) => b === 0)) return;
      let size = headerSize(block);
      const type = String.fromCharCode(block[156] as number) || "0";
      const dataOffset = offset + BLOCK;
      offset = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
      if (type === "x" || type === "L" || type === "K") {
        if (size > MAX_META_BYTES) throw new NoHint();
        const data = this.read(dataOffset, size);
        if (type === "x") pax = paxRecords(data);
        else if (type === "L") longName = cString(data, 0, data.length);
        else longLink = cString(data, 0, data.length);
        continue;
      }
      if (type === "g") throw new NoHint();
      const ustar = block.toString("latin1", 257, 262) === "ustar";
      let name = cString(block, 0, 100);
      if (ustar && block[345] !== 0) name = `${cString(block, 345, 155)}/${name}`;
      name = pax?.get("path") ?? longName ?? name;
      const linkTarget = pax?.get("linkpath") ?? longLink ?? cString(block, 157, 100);
      const paxSize = pax?.get("size");
      if (paxSize !== undefined) {
        size = Number(paxSize);
        if (!Number.isSafeInteger(size) || size < 0) throw new NoHint();
        offset = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
      }
      pax = longName = longLink = undefined;
      const key = memberName(name);
      if (key !== null) this.entries.set(key, { type, offset: dataOffset, size, linkTarget });
      if (this.entries.size > MAX_MEMBERS) throw new NoHint();
    }
  }

  /** The regular file a name refers to, through links inside the archive. */
  resolve(name: string): string {
    let current = memberName(name);
    for (let hop = 0; current !== null && hop <= MAX_LINK_HOPS; hop++) {
      const entry = this.entries.get(current);
      if (!entry) throw new NoHint();
      if (entry.type === "0" || entry.type === "\0" || entry.type === "7") return current;
      if (entry.type === "1") current = memberName(entry.linkTarget);
      else if (entry.type === "2") current = memberName(path.posix.normalize(path.posix.join(path.posix.dirname(current), entry.linkTarget)));
      else throw new NoHint();
    }
    throw new NoHint();
  }

  json(name: string): unknown {
    const entry = this.entries.get(this.resolve(name)) as Entry;
    if (entry.size > MAX_JSON_BYTES) throw new NoHint();
    return JSON.parse(this.read(entry.offset, entry.size).toString("utf8")) as unknown;
  }
}

const obj = (v: unknown): Record<string, unknown> => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new NoHint();
  return v as Record<string, unknown>;
};
const list = (v: unknown): unknown[] => {
  if (!Array.isArray(v)) throw new NoHint();
  return v;
};
const text = (v: unknown): string => {
  if (typeof v !== "string") throw new NoHint();
  return v;
};
const blobName = (digest: unknown): string => `blobs/${text(digest).replace(":", "/")}`;

function diffIdsOf(config: unknown): string[] {
  return list(obj(obj(config).rootfs).diff_ids).map(text);
}

/**
 * Names of the archive's members that are layers whose chain the store lacks (hasChain), for a
 * plain tar file with a docker-archive manifest.json or an OCI index.json; undefined when that
 * cannot be told cheaply or safely (compressed, stdin, anything odd).
 */
export function layersToUnpack(file: string, hasChain: (chainId: string) => boolean): Set<string> | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    const index = new TarIndex(fd);
    if (detectCompression(index.read(0, Math.min(BLOCK, st.size))) !== "none") return undefined;
    index.scan(st.size);
    const wanted = new Set<string>();
    const want = (layerNames: string[], diffIds: string[]): void => {
      if (layerNames.length !== diffIds.length) throw new NoHint();
      const chains = chainIds(diffIds);
      layerNames.forEach((name, j) => {
        if (!hasChain(chains[j] as string)) wanted.add(index.resolve(name));
      });
    };
    if (index.entries.has("manifest.json")) {
      for (const item of list(index.json("manifest.json"))) {
        const entry = obj(item);
        want(list(entry.Layers).map(text), diffIdsOf(index.json(text(entry.Config))));
      }
    } else if (index.entries.has("index.json")) {
      for (const raw of list(obj(index.json("index.json")).manifests)) {
        let manifest = obj(index.json(blobName(obj(raw).digest)));
        if (Array.isArray(manifest.manifests)) {
          const chosen = selectPlatform(manifest as unknown as ImageIndexDoc, hostPlatform(), "index");
          manifest = obj(index.json(blobName(chosen.digest)));
        }
        const layers = list(manifest.layers).map((l) => blobName(obj(l).digest));
        want(layers, diffIdsOf(index.json(blobName(obj(manifest.config).digest))));
      }
    } else {
      return undefined;
    }
    return wanted;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
