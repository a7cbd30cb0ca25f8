// Whole-archive and layer decompression for save/load, as streams. Docker's `load` accepts an
// archive compressed as a whole (gzip, bzip2, xz, zstd); `save --format docker-archive` must
// write uncompressed layers, so stored gzip/zstd layers are decompressed on the way out.
// Node 20's zlib has gzip only: zstd, xz and bzip2 run as stream filters (their Debian
// packages), and their exit status tells whether the input was whole.
import { lazyChildProcess } from "../../builtin.js";
import { createHash, type Hash } from "node:crypto";
import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, type ZlibOptions } from "node:zlib";

export type Compression = "none" | "gzip" | "zstd" | "xz" | "bzip2";

/** Bytes needed to tell the formats apart. */
const MAGIC_BYTES = 10;
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
/** bzip2's block magic (the digits of pi) and end-of-stream magic (of sqrt(pi)). */
const BZIP2_BLOCK = Buffer.from([0x31, 0x41, 0x59, 0x26, 0x53, 0x59]);
const BZIP2_END = Buffer.from([0x17, 0x72, 0x45, 0x38, 0x50, 0x90]);

/**
 * Gunzip's output chunk size: zlib inflates in libuv's thread pool, one chunk per round trip to
 * the main thread. Node's 16 KiB default made a 128 MB layer cost about 8,000 round trips
 * (measured: 0.8-1.3 s to inflate a Debian layer); 256 KiB takes about 0.35 s.
 */
const GUNZIP_CHUNK = 256 * 1024;
/**
 * Decompressed bytes zlib may hold ready: with the default (16 KiB) it stops after each chunk
 * until the consumer asks for more, so inflating and consuming (unpacking) never overlapped.
 */
// Node passes stream options through to the Transform; @types/node's ZlibOptions omits them.
export const GUNZIP_OPTIONS: ZlibOptions & { readableHighWaterMark: number } = { chunkSize: GUNZIP_CHUNK, readableHighWaterMark: 4 * GUNZIP_CHUNK };

export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return "zstd";
  if (head.length >= 6 && head.subarray(0, 6).equals(XZ_MAGIC)) return "xz";
  // "BZh", the block size digit, then a block or the end of the stream: a tar whose first name
  // starts with "BZh" is not mistaken for bzip2.
  if (head.length >= 10 && head.toString("latin1", 0, 3) === "BZh") {
    const magic = head.subarray(4, 10);
    if (magic.equals(BZIP2_BLOCK) || magic.equals(BZIP2_END)) return "bzip2";
  }
  return "none";
}

const COMMANDS: Record<"zstd" | "xz" | "bzip2", { argv: string[]; pkg: string }> = {
  zstd: { argv: ["zstd", "-d", "-c", "-q"], pkg: "zstd" },
  xz: { argv: ["xz", "-d", "-c"], pkg: "xz-utils" },
  bzip2: { argv: ["bzip2", "-d", "-c"], pkg: "bzip2" },
};

export const toBuffer = (chunk: Buffer | string | Uint8Array): Buffer =>
  Buffer.isBuffer(chunk) ? chunk : typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);

/**
 * Reads the first bytes of input, detects its compression and hands the decompressed bytes to
 * consume, in order. Rejects with a one-line reason on corrupt or truncated compressed data.
 * `what` names the data in messages ("the archive", "layer sha256:...").
 */
export async function withDecompressed(
  input: AsyncIterable<Buffer | string | Uint8Array>,
  what: string,
  consume: (chunks: AsyncIterable<Buffer>) => Promise<void>,
  /** Called with the compression found, before any decompression; may throw to refuse it. */
  accept: (compression: Compression) => void = () => undefined,
): Promise<Compression> {
  const source = input[Symbol.asyncIterator]();
  const headChunks: Buffer[] = [];
  let headLength = 0;
  let inputDone = false;
  while (headLength < MAGIC_BYTES) {
    const next = await source.next();
    if (next.done) {
      inputDone = true;
      break;
    }
    const chunk = toBuffer(next.value);
    headChunks.push(chunk);
    headLength += chunk.length;
  }
  const head = Buffer.concat(headChunks);
  const compression = detectCompression(head);
  try {
    accept(compression);
  } catch (err) {
    await source.return?.();
    throw err;
  }

  async function* raw(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      while (!inputDone) {
        const next = await source.next();
        if (next.done) break;
        yield toBuffer(next.value);
      }
    } finally {
      // Lets the caller's stream close when decompression or the consumer stopped early.
      await source.return?.();
    }
  }

  if (compression === "none") {
    await consume(raw());
  } else if (compression === "gzip") {
    try {
      await pipeline(raw(), createGunzip(GUNZIP_OPTIONS), consume);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === "string" && code.startsWith("Z_")) throw new Error(`${what} is not valid gzip: ${(err as Error).message}`, { cause: err });
      throw err;
    }
  } else {
    await throughCommand(compression, raw(), what, consume);
  }
  return compression;
}

/**
 * Decompresses through the zstd, xz or bzip2 command as a stream filter (Node 20's zlib has none
 * of them), checking its exit status: a truncated or corrupt stream makes it fail with a message.
 */
export async function throughCommand(
  kind: "zstd" | "xz" | "bzip2",
  chunks: AsyncIterable<Buffer>,
  what: string,
  consume: (out: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const { argv, pkg } = COMMANDS[kind];
  const child = lazyChildProcess().spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => {
    if (stderr.length < 4096) stderr += text;
  });
  const exited = new Promise<{ code: number | null; spawnError?: Error }>((resolve) => {
    child.once("error", (err) => resolve({ code: null, spawnError: err }));
    child.once("close", (code) => resolve({ code }));
  });
  let failure: unknown;
  let killedByUs = false;
  try {
    await pipeline(chunks, Duplex.from({ writable: child.stdin, readable: child.stdout }), consume);
  } catch (err) {
    failure = err;
    // The consumer failed: the output is no longer wanted. On success the child is left to
    // exit by itself: its status says whether the input was whole.
    if (child.exitCode === null && child.signalCode === null) {
      killedByUs = true;
      child.kill("SIGKILL");
    }
  }
  const status = await exited;
  if (status.spawnError) {
    const missing = (status.spawnError as NodeJS.ErrnoException).code === "ENOENT";
    throw new Error(
      missing ? `${what} is ${kind}-compressed and the ${kind} command is not installed (Debian package ${pkg})` : `cannot run ${kind}: ${status.spawnError.message}`,
      { cause: status.spawnError },
    );
  }
  // The tool's own complaint explains a corrupt stream better than the broken pipe it causes.
  if (!killedByUs && status.code !== 0) {
    throw new Error(`${what} is not valid ${kind}: ${stderr.trim().split("\n")[0] || `${kind} exited with status ${String(status.code)}`}`);
  }
  if (failure !== undefined) throw failure;
}

/** The first bytes of a file (enough for detectCompression). */
export function fileHead(file: string): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(MAGIC_BYTES);
    return buf.subarray(0, readSync(fd, buf, 0, MAGIC_BYTES, 0));
  } finally {
    closeSync(fd);
  }
}

/** Layers may be gzip, zstd or plain tar (OCI media types); anything else is refused up front. */
export function checkLayerCompression(compression: Compression, what: string): void {
  if (compression === "xz" || compression === "bzip2") throw new Error(`${what} is ${compression}-compressed; layers must be gzip, zstd or uncompressed`);
}

/** Tar data comes in 512-byte blocks; the end of an archive is two zero blocks, padded to a record. */
const TAR_BLOCK = 512;
/** The most end padding a layer's diff_id may cover beyond its tar data: 2048 blocks (`tar -b 2048`). */
export const MAX_TAR_PADDING = 2048 * TAR_BLOCK;

/**
 * The length of the tar the diff_id names when it is the bytes hashed so far followed by zero
 * blocks, or undefined. containers/storage's zstd:chunked compressor (Debian 12's skopeo and
 * podman) writes a layer's tar only up to its end-of-archive marker and drops the rest of the
 * last record (GNU tar pads to 10 KiB), and every later copy (podman save, skopeo to gzip) keeps
 * that shorter tar, while the config keeps the original's diff_id. Zero blocks after the
 * archive's end carry nothing, so the files are exactly those the diff_id names.
 */
export function zeroPaddedLength(hash: Hash, size: number, expected: string): number | undefined {
  if (size % TAR_BLOCK !== 0) return undefined;
  const probe = hash.copy();
  const zeros = Buffer.alloc(TAR_BLOCK);
  for (let added = TAR_BLOCK; added <= MAX_TAR_PADDING; added += TAR_BLOCK) {
    probe.update(zeros);
    if ("sha256:" + probe.copy().digest("hex") === expected) return size + added;
  }
  return undefined;
}

/**
 * The uncompressed form of a layer file: its sha256 (the DiffID) and size. Given the diff_id
 * the config expects, a tar that is that one without some of its end padding (zeroPaddedLength)
 * counts as it: then the diff_id and the padded size are returned.
 */
export async function uncompressedDigest(file: string, what: string, expected?: string): Promise<{ digest: string; size: number }> {
  checkLayerCompression(detectCompression(fileHead(file)), what);
  const hash = createHash("sha256");
  let size = 0;
  await withDecompressed(createReadStream(file), what, async (chunks) => {
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += chunk.length;
    }
  });
  const digest = "sha256:" + hash.copy().digest("hex");
  const padded = expected === undefined || digest === expected ? undefined : zeroPaddedLength(hash, size, expected);
  return padded === undefined ? { digest, size } : { digest: expected as string, size: padded };
}
