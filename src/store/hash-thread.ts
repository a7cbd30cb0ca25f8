// sha256 digests computed on a worker thread. The unpacker's main thread is busy creating files;
// hashing a layer there cost about a fifth of its time (128 MB of tar: 130-210 ms). Chunks are
// copied to the thread (a memcpy, far cheaper than the hash) in order, so the digests are the
// same as hashing them in place.
import { Worker } from "node:worker_threads";

// Plain JavaScript evaluated by the thread: the CLI and the storage worker are single-file
// bundles, so the thread's code cannot live in a module file of its own.
const THREAD_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const hashes = Array.from({ length: workerData.count }, () => createHash("sha256"));
parentPort.on("message", (message) => {
  if (message.chunk) hashes[message.index].update(message.chunk);
  else parentPort.postMessage(hashes.map((h) => "sha256:" + h.digest("hex")));
});
`;

interface ChunkMessage {
  index: number;
  chunk: Buffer;
}

export class HashThread {
  private readonly worker: Worker;
  private failure: Error | undefined;
  private readonly result: Promise<string[]>;

  /** count: how many independent digests (e.g. of the bytes as given and decompressed). */
  constructor(count: number) {
    this.worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { count } });
    this.result = new Promise((resolve, reject) => {
      this.worker.once("message", (digests: string[]) => resolve(digests));
      this.worker.once("error", (err) => {
        this.failure = err;
        reject(err);
      });
      this.worker.once("exit", () => reject(this.failure ?? new Error("the hashing thread exited early")));
    });
    // A failure nobody waits for (the unpack failed first) must not become an unhandled rejection.
    this.result.catch(() => undefined);
  }

  update(index: number, chunk: Buffer): void {
    if (this.failure) throw this.failure;
    // A copy of exactly these bytes, moved (not cloned again) to the thread: cloning the view
    // itself would copy its whole backing buffer (zlib slices many chunks out of one).
    // (allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool; copy: memcpy.)
    const copy = Buffer.allocUnsafeSlow(chunk.length);
    chunk.copy(copy);
    this.worker.postMessage({ index, chunk: copy } satisfies ChunkMessage, [copy.buffer]);
  }

  /** The digests ("sha256:<hex>") of everything given so far; then the thread ends. */
  async digests(): Promise<string[]> {
    this.worker.postMessage({ index: -1 });
    try {
      return await this.result;
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
