// Content-addressed blobs (layers as given, configs, manifests) under blobs/sha256/<hex>.
// A blob counts as stored only once its bytes hashed to its name: data lands in a temporary
// file, is verified, and is renamed into place.
import { createHash } from "node:crypto";
import { closeSync, existsSync, fsync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { promisify } from "node:util";
import path from "node:path";
import { tempName } from "./atomic.js";
import { digestHex, sha256 } from "./digest.js";

export class DigestMismatchError extends Error {}

const fsyncAsync = promisify(fsync);

export class BlobStore {
  constructor(readonly dir: string) {}

  path(digest: string): string {
    return path.join(this.dir, digestHex(digest));
  }

  has(digest: string): boolean {
    return existsSync(this.path(digest));
  }

  size(digest: string): number {
    return statSync(this.path(digest)).size;
  }

  /** Reads a blob and checks its digest (for small blobs: configs and manifests). */
  read(digest: string): Buffer {
    const data = readFileSync(this.path(digest));
    if (sha256(data) !== digest) throw new DigestMismatchError(`blob ${digest} is corrupted on disk (digest mismatch)`);
    return data;
  }

  /** Stores bytes, verifying them against expected when given. Returns the digest. */
  putBuffer(data: Buffer, expected?: string): string {
    const digest = sha256(data);
    if (expected && expected !== digest) throw new DigestMismatchError(`digest mismatch: expected ${expected}, got ${digest}`);
    if (this.has(digest)) return digest;
    mkdirSync(this.dir, { recursive: true });
    const target = this.path(digest);
    const tmp = tempName(target);
    const fd = openSync(tmp, "wx", 0o644);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
    return digest;
  }

  /**
   * Streams a blob to disk while hashing it; the temporary file becomes the blob only when the
   * digest matches (expected, when given). Returns digest and size.
   */
  async putStream(input: AsyncIterable<Buffer | string>, expected?: string): Promise<{ digest: string; size: number }> {
    mkdirSync(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.tmp-stream-${process.pid}-${Math.random().toString(16).slice(2)}`);
    const fd = openSync(tmp, "wx", 0o644);
    const hash = createHash("sha256");
    let size = 0;
    try {
      for await (const chunk of input) {
        const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
        hash.update(buf);
        size += buf.length;
        let off = 0;
        while (off < buf.length) off += writeSync(fd, buf, off);
      }
    } catch (err) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw err;
    }
    const digest = "sha256:" + hash.digest("hex");
    if (expected && expected !== digest) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw new DigestMismatchError(`digest mismatch: expected ${expected}, got ${digest}`);
    }
    try {
      // In the thread pool: a pull writes several blobs at once, and a blocking fsync (50-100 ms
      // for a large layer here) would stall the other downloads and the unpackers they feed.
      await fsyncAsync(fd);
    } catch (err) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw err;
    }
    closeSync(fd);
    renameSync(tmp, this.path(digest));
    return { digest, size };
  }

  remove(digest: string): void {
    rmSync(this.path(digest), { force: true });
  }
}
