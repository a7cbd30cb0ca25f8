// Feeding a layer's bytes to an unpacker that reads them through a pipe (Store.unpackStream), as
// they arrive from elsewhere: a registry (pull) or an archive being read (load). In order, with
// backpressure, and never failing the feeder: an unpacker that stops says why through its own
// result, and the feeder goes on with its other work (storing the blob, reading the archive).
//
// A gzip layer is inflated here, in the feeding process, and reaches the unpacker as plain tar.
// The unpacker's main thread is the pull's critical path (it creates every file); inflating in
// its own process left it waiting on each zlib round trip through the thread pool (measured: idle
// about 45 % of its life), while this process is mostly idle and zlib's callbacks run at once.
// The unpacker still hashes the plain tar (the diffId): hashing here too was slower, as this
// process then fed three parallel layers from one busy thread. zstd passes as it is.
import type { Writable } from "node:stream";
import { createGunzip, type Gunzip, type ZlibOptions } from "node:zlib";
import { detectCompression, GUNZIP_OPTIONS } from "../image/archive/compression.js";
import type { UnpackJobResult } from "./store.js";

/** Bytes looked at before deciding: gzip's magic. */
const HEAD_BYTES = 2;
/** Compressed bytes gunzip may hold before write() asks the feeder to wait. */
const GUNZIP_INPUT_BUFFER = 4 << 20;
/**
 * Inflated bytes gunzip may hold while the pipe is full: inflating runs ahead of the unpacker
 * instead of waiting for each read of the pipe (a 1-layer pull: 3-4 % faster than with 1 MiB).
 */
const GUNZIP_OUTPUT_BUFFER = 8 << 20;

export class UnpackFeed {
  private stopped = false;
  /** Where written chunks go: the pipe, or a gunzip stream that writes to it. */
  private input: Writable;
  private gunzip: Gunzip | undefined;
  /** The first bytes, kept until there are enough to recognise gzip. */
  private head: Buffer[] | undefined = [];
  private failure: Error | undefined;
  /** The wait for room in the pipe, while there is one. */
  private waiting: Promise<void> | undefined;
  /** The unpacker's result; when inflating here failed, that failure instead. */
  readonly result: Promise<UnpackJobResult>;

  constructor(
    private readonly unpack: { input: Writable; result: Promise<UnpackJobResult> },
    private readonly what = "the layer",
  ) {
    this.input = unpack.input;
    // Write errors also arrive as events; without a listener they would crash the process.
    unpack.input.on("error", () => undefined);
    // An unpacker that stops reading stops this feed (a gunzip in between would otherwise wait
    // for room in the pipe for ever).
    unpack.input.on("close", () => {
      if (!unpack.input.writableFinished) this.abort();
    });
    this.result = unpack.result.then(
      (r) => {
        if (this.failure) throw this.failure;
        return r;
      },
      (err: unknown) => {
        throw this.failure ?? err;
      },
    );
  }

  /** Takes a chunk; a promise (that never rejects) when the pipe is full, until it has room. */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.stopped) return undefined;
    if (this.head) {
      this.head.push(chunk);
      const head = Buffer.concat(this.head);
      if (head.length < HEAD_BYTES) return undefined;
      this.head = undefined;
      this.start(head);
      chunk = head;
    }
    if (this.input.destroyed) return void this.abort();
    if (this.input.write(chunk)) return undefined;
    // One wait for room, however many writes came meanwhile (a load's reader writes on).
    this.waiting ??= new Promise<void>((resolve) => {
      const target = this.input;
      const done = (ok: boolean): void => {
        target.off("drain", onDrain);
        target.off("close", onStop);
        target.off("error", onStop);
        this.waiting = undefined;
        if (!ok) this.abort(); // the unpacker stopped reading
        resolve();
      };
      const onDrain = (): void => done(true);
      // A gunzip closes once it has ended and flushed into the pipe: no failure then (an abort
      // now would discard what the pipe has yet to take).
      const onStop = (): void => done(target.writableFinished && !target.errored);
      target.on("drain", onDrain);
      target.on("close", onStop);
      target.on("error", onStop);
    });
    return this.waiting;
  }

  /** Decides from the first bytes: gzip is inflated here, anything else passes as it is. */
  private start(head: Buffer): void {
    if (detectCompression(head) === "gzip") this.startGunzip();
  }

  private startGunzip(): void {
    // Node passes stream options through to the Transform; @types/node's ZlibOptions omits them.
    const options: ZlibOptions & { readableHighWaterMark: number; writableHighWaterMark: number } = {
      ...GUNZIP_OPTIONS,
      readableHighWaterMark: GUNZIP_OUTPUT_BUFFER,
      writableHighWaterMark: GUNZIP_INPUT_BUFFER,
    };
    const gunzip = createGunzip(options);
    gunzip.on("error", (err: Error & { code?: string }) => {
      if (!this.stopped) this.failure = new Error(`${this.what} is not valid gzip: ${err.message}`, { cause: err });
      this.abort();
    });
    gunzip.pipe(this.unpack.input);
    this.gunzip = gunzip;
    this.input = gunzip;
  }

  /** Every byte is in: the unpacker may finish. */
  end(): void {
    if (this.stopped) return;
    if (this.head) {
      // A stream shorter than the look at its head: decided from what there is.
      const head = Buffer.concat(this.head);
      this.head = undefined;
      this.start(head);
      if (head.length > 0) this.input.write(head);
    }
    if (!this.input.writableEnded) this.input.end();
  }

  /** Gives up on this unpack (the source failed, or the unpacker stopped). */
  abort(): void {
    this.stopped = true;
    this.gunzip?.destroy();
    this.unpack.input.destroy();
  }
}
