// Content digests and the ids derived from them (OCI image-spec "ChainID").
import { lazyCrypto } from "../builtin.js";
import { sha256Hex } from "./sha256.js";
import { readdirSync } from "node:fs";

/** Below this size the TypeScript SHA-256 is quicker than loading node:crypto (sha256.ts). */
const SMALL = 64 * 1024;

export function sha256(data: string | Buffer): string {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  if (bytes.length <= SMALL) return "sha256:" + sha256Hex(bytes);
  return "sha256:" + lazyCrypto().createHash("sha256").update(bytes).digest("hex");
}

/**
 * sha256 of data that arrives in pieces (a layer being written): hashed in TypeScript at the end
 * while it stays small, through node:crypto from the moment it outgrows SMALL, so that a small
 * commit does not pay for loading node:crypto.
 */
export class Sha256Stream {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private hash: import("node:crypto").Hash | undefined;

  update(chunk: Buffer): void {
    if (!this.hash && this.pendingBytes + chunk.length > SMALL) {
      this.hash = lazyCrypto().createHash("sha256");
      for (const piece of this.pending) this.hash.update(piece);
      this.pending = [];
    }
    if (this.hash) {
      this.hash.update(chunk);
      return;
    }
    // A copy: writers may reuse their buffers once the call returns. (Not for the chunk that
    // outgrows SMALL, hashed at once: a tar writer's first chunk is 1 MB, fresh pages to copy into.)
    this.pending.push(Buffer.from(chunk));
    this.pendingBytes += chunk.length;
  }

  /** "sha256:<hex>" of everything given to update. */
  digest(): string {
    if (this.hash) return `sha256:${this.hash.digest("hex")}`;
    return `sha256:${sha256Hex(Buffer.concat(this.pending))}`;
  }
}

/** The hex part of "sha256:<hex>", refusing anything else so it is safe as a file name. */
export function digestHex(digest: string): string {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m || !m[1]) throw new Error(`unsupported or malformed digest "${digest}"`);
  return m[1];
}

export function isDigest(s: string): boolean {
  return /^sha256:[a-f0-9]{64}$/.test(s);
}

/** ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(nextChainId(out[out.length - 1] ?? null, d));
  return out;
}

/** The chain ID of a layer with this DiffID on top of the chain parent (null: the first layer). */
export function nextChainId(parent: string | null, diffId: string): string {
  return parent === null ? diffId : sha256(`${parent} ${diffId}`);
}

/** Entries of dir named by a digest's hex (blobs, layer dirs), as digests; temporaries and foreign names left out. */
export function digestNamedEntries(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => /^[a-f0-9]{64}$/.test(n))
      .map((n) => `sha256:${n}`);
  } catch {
    return [];
  }
}
