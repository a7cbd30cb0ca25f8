// Feeding a layer's bytes to an unpacker that reads them through a pipe (Store.unpackStream), as
// they arrive from elsewhere: a registry (pull) or an archive being read (load). In order, with
// backpressure, and never failing the feeder: an unpacker that stops says why through its own
// result, and the feeder goes on with its other work (storing the blob, reading the archive).
import type { Writable } from "node:stream";

export class UnpackFeed {
  private stopped = false;

  constructor(private readonly input: Writable) {
    // Write errors also arrive as events; without a listener they would crash the process.
    input.on("error", () => undefined);
  }

  /** Takes a chunk; a promise (that never rejects) when the pipe is full, until it has room. */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.stopped) return undefined;
    if (this.input.destroyed) return void this.abort();
    if (this.input.write(chunk)) return undefined;
    return new Promise<void>((resolve) => {
      const done = (ok: boolean): void => {
        this.input.off("drain", onDrain);
        this.input.off("close", onStop);
        this.input.off("error", onStop);
        if (!ok) this.abort(); // the unpacker stopped reading
        resolve();
      };
      const onDrain = (): void => done(true);
      const onStop = (): void => done(false);
      this.input.on("drain", onDrain);
      this.input.on("close", onStop);
      this.input.on("error", onStop);
    });
  }

  /** Every byte is in: the unpacker may finish. */
  end(): void {
    if (!this.stopped && !this.input.writableEnded) this.input.end();
  }

  /** Gives up on this unpack (the source failed, or the unpacker stopped). */
  abort(): void {
    this.stopped = true;
    this.input.destroy();
  }
}
