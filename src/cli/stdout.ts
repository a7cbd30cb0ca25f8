// A command's output, written to fd 1 directly. process.stdout is a stream Node makes on first
// use (a SyncWriteStream for a file, a net.Socket for a pipe, loading their modules): 2 ms of a
// short command printing to a file, up to 10 ms to a pipe (`id=$(tsrun commit c)`), on this
// project's machines. Writes to stdout are synchronous on Linux either way, so the order of the
// output is the same.
import { writeSync } from "node:fs";

/** Once fd 1 refused a write for now (a non-blocking pipe that is full), the stream takes over, for order. */
let throughStream = false;

/** Writes to standard output; a reader that went away ends the command as SIGPIPE would (141). */
export function writeOut(text: string | Uint8Array): void {
  if (throughStream) {
    process.stdout.write(text);
    return;
  }
  let rest = typeof text === "string" ? Buffer.from(text) : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  while (rest.length > 0) {
    try {
      rest = rest.subarray(writeSync(1, rest));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EPIPE") process.exit(141);
      if (code !== "EAGAIN") throw err;
      // The stream waits for the pipe to drain and keeps the process alive until it has.
      throughStream = true;
      process.stdout.write(rest);
      return;
    }
  }
}
