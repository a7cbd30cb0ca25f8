// UnpackFeed (src/store/unpack-feed.ts): what reaches the unpacker's pipe. A gzip layer arrives
// there inflated, whole, in order, also when the pipe is slow and the feeder still waits for room
// as it ends; a plain tar passes as it is; zstd passes untouched; a broken gzip stream fails the
// result in one line. The "pipe" is a real stream with a reader that takes its time, as the
// unpacker does; the unpacker's result is made up from what that reader got (its digest).
import { describe, expect, it } from "vitest";
import { PassThrough } from "node:stream";
import { gzipSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import { UnpackFeed } from "../../src/store/unpack-feed.js";
import type { UnpackJobResult } from "../../src/store/store.js";
import { execFileSync } from "node:child_process";
import { sha256 } from "../../src/store/digest.js";
import { rawTar } from "./tar-builder.js";

/** A pipe whose reader starts late and reads slowly; result: what it read, once it ended. */
function slowPipe(startAfterMs: number): { input: PassThrough; received: Promise<Buffer>; result: Promise<UnpackJobResult> } {
  const input = new PassThrough({ highWaterMark: 64 * 1024 });
  const received = new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    input.on("error", reject);
    input.on("close", () => resolve(Buffer.concat(chunks)));
    setTimeout(() => {
      const readSome = (): void => {
        let chunk: Buffer | null;
        while ((chunk = input.read() as Buffer | null) !== null) chunks.push(chunk);
        if (!input.readableEnded) setTimeout(readSome, 2);
      };
      input.on("end", () => resolve(Buffer.concat(chunks)));
      readSome();
    }, startAfterMs);
  });
  const result = received.then((bytes): UnpackJobResult => ({ diffId: sha256(bytes), size: bytes.length, entries: 0, warnings: [] }));
  return { input, received, result };
}

/** Feeds data in chunks of `chunkSize`, waiting when the feed asks to, as pull and load do. */
async function feedAll(feed: UnpackFeed, data: Buffer, chunkSize: number): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunkSize) await feed.write(data.subarray(offset, offset + chunkSize));
  feed.end();
}

// Incompressible content, more than the feed buffers (4 MiB in, 8 MiB out): the slow pipe fills up
// and a write waits.
const layer = rawTar([
  { name: "big.bin", content: randomBytes(12 * 1024 * 1024) },
  { name: "small.txt", content: "small\n" },
]);

describe("UnpackFeed", () => {
  it("inflates a gzip layer into the pipe, every byte, when the pipe is still full as the feed ends", async () => {
    const pipe = slowPipe(50);
    const feed = new UnpackFeed(pipe);
    // Without waiting between writes (a load's reader waits only later): the last write is
    // still waiting for room when end() comes.
    const gz = gzipSync(layer);
    const writes: Promise<void>[] = [];
    for (let offset = 0; offset < gz.length; offset += 100_000) {
      const wait = feed.write(gz.subarray(offset, offset + 100_000));
      if (wait) writes.push(wait);
    }
    feed.end();
    await Promise.all(writes);
    const received = await pipe.received;
    expect(received.length).toBe(layer.length);
    expect(received.equals(layer)).toBe(true);
    expect(await feed.result).toMatchObject({ size: layer.length, diffId: sha256(layer) });
  });

  it("passes a plain tar as it is, and recognises gzip split over the first chunks", async () => {
    const plain = slowPipe(0);
    const plainFeed = new UnpackFeed(plain);
    await feedAll(plainFeed, layer, 65_536);
    expect((await plain.received).equals(layer)).toBe(true);
    expect((await plainFeed.result).diffId).toBe(sha256(layer));

    const split = slowPipe(0);
    const gz = gzipSync(layer);
    const feed = new UnpackFeed(split);
    await feed.write(gz.subarray(0, 1));
    await feed.write(gz.subarray(1, 3));
    await feedAll(feed, gz.subarray(3), 65_536);
    expect((await split.received).equals(layer)).toBe(true);
    expect((await feed.result).diffId).toBe(sha256(layer));
  });

  it("passes zstd untouched", async () => {
    const zst = execFileSync("zstd", ["-c", "-q"], { input: layer, maxBuffer: 64 << 20 });
    const pipe = slowPipe(0);
    const feed = new UnpackFeed(pipe);
    await feedAll(feed, zst, 65_536);
    expect((await pipe.received).equals(zst)).toBe(true);
    expect((await feed.result).diffId).toBe(sha256(zst));
  });

  it("fails the result with a one-line reason for a truncated or corrupt gzip stream", async () => {
    const gz = gzipSync(layer);
    const truncated = slowPipe(0);
    const feed = new UnpackFeed(truncated, "layer sha256:abc");
    await feedAll(feed, gz.subarray(0, gz.length - 100), 65_536);
    await expect(feed.result).rejects.toThrow(/^layer sha256:abc is not valid gzip: unexpected end of file$/);

    const corrupt = Buffer.from(gz);
    corrupt.fill(0x55, 2000, 4000);
    const damaged = slowPipe(0);
    const second = new UnpackFeed(damaged);
    await feedAll(second, corrupt, 65_536);
    await expect(second.result).rejects.toThrow(/^the layer is not valid gzip: /);
  });
});
