// A layer tar without some of its end padding still is the tar its diff_id names
// (src/image/archive/compression.ts: zeroPaddedLength, uncompressedDigest): zstd:chunked blobs
// decompress to the tar up to its end-of-archive marker, while the config keeps the diff_id of
// the tar GNU tar wrote, padded to a 10 KiB record. Only zero blocks may be missing.
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { uncompressedDigest, zeroPaddedLength } from "../../src/image/archive/compression.js";
import { sha256 } from "../../src/store/digest.js";
import { rawTar } from "./tar-builder.js";

const dir = mkdtempSync(path.join(tmpdir(), "layer-padding-"));
// As GNU tar writes it: the members, the end marker, zeros up to a 10240-byte record.
const short = rawTar([{ name: "a.txt", content: "a" }]);
const record = Buffer.concat([short, Buffer.alloc(10240 - (short.length % 10240))]);

const hashOf = (data: Buffer) => createHash("sha256").update(data);

describe("zeroPaddedLength", () => {
  it("finds how many zero blocks the diff_id's tar has beyond the bytes hashed", () => {
    expect(zeroPaddedLength(hashOf(short), short.length, sha256(record))).toBe(record.length);
  });

  it("takes nothing but whole zero blocks, and not past its limit", () => {
    expect(zeroPaddedLength(hashOf(short), short.length, sha256(Buffer.concat([short, Buffer.alloc(512, 1)])))).toBeUndefined();
    expect(zeroPaddedLength(hashOf(short), short.length, sha256(Buffer.concat([short, Buffer.alloc(100)])))).toBeUndefined();
    expect(zeroPaddedLength(hashOf(short.subarray(0, 700)), 700, sha256(Buffer.concat([short.subarray(0, 700), Buffer.alloc(324)])))).toBeUndefined();
    expect(zeroPaddedLength(hashOf(short), short.length, sha256(Buffer.concat([short, Buffer.alloc(2049 * 512)])))).toBeUndefined();
  });
});

describe("uncompressedDigest with the diff_id expected", () => {
  it("returns the diff_id and the padded size for a short tar, its own digest for anything else", async () => {
    const file = path.join(dir, "short.tar.gz");
    writeFileSync(file, gzipSync(short));
    expect(await uncompressedDigest(file, "layer", sha256(record))).toEqual({ digest: sha256(record), size: record.length });
    expect(await uncompressedDigest(file, "layer", sha256(short))).toEqual({ digest: sha256(short), size: short.length });
    expect(await uncompressedDigest(file, "layer", sha256("another layer"))).toEqual({ digest: sha256(short), size: short.length });
  });
});
