// The log of a container run in the foreground: what it prints goes to our stdout/stderr as it
// comes and, line by line, to its ctr.log in Docker's json-file format, the same records the
// monitor (native/monitor.cc) writes for a detached container, so that `tsrun logs` shows what a
// foreground run printed, as Docker's does.
import { closeSync, openSync, writeSync } from "node:fs";
import type { Socket } from "node:net";
import { lazyNet } from "../builtin.js";

/** Docker's json-file driver cuts a line longer than this into several records. */
const MAX_RECORD = 16384;

export type OutputStream = "stdout" | "stderr";

/** Appends an output's lines to a json-file log; a line without its newline waits for the rest. */
export class JsonFileLog {
  private readonly fd: number;
  private readonly pending: Record<OutputStream, Buffer> = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };

  constructor(file: string) {
    this.fd = openSync(file, "a", 0o640);
  }

  write(stream: OutputStream, chunk: Buffer): void {
    let data = this.pending[stream].length > 0 ? Buffer.concat([this.pending[stream], chunk]) : chunk;
    // One time for the lines of one read (they came together), and the text decoded once: a
    // newline never falls inside a UTF-8 sequence, so the complete lines decode alone.
    const tail = `,"stream":"${stream}","time":"${rfc3339Nano()}"}\n`;
    const parts: string[] = [];
    const lastNewline = data.lastIndexOf(10);
    if (lastNewline >= 0) {
      const lines = data.toString("utf8", 0, lastNewline + 1).split("\n");
      lines.pop(); // the empty text after the last newline
      for (const line of lines) parts.push(`{"log":${JSON.stringify(`${line}\n`)}${tail}`);
      data = data.subarray(lastNewline + 1);
    }
    while (data.length >= MAX_RECORD) {
      parts.push(`{"log":${JSON.stringify(data.toString("utf8", 0, MAX_RECORD))}${tail}`);
      data = data.subarray(MAX_RECORD);
    }
    // A copy: the rest must not keep the (possibly large) chunk alive.
    this.pending[stream] = Buffer.from(data);
    if (parts.length > 0) writeSync(this.fd, parts.join(""));
  }

  /** Writes the unfinished lines (the output has ended) and closes the log. */
  close(): void {
    const tailOf = (stream: OutputStream): string => `,"stream":"${stream}","time":"${rfc3339Nano()}"}\n`;
    let records = "";
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.pending[stream].length > 0) records += `{"log":${JSON.stringify(this.pending[stream].toString("utf8"))}${tailOf(stream)}`;
      this.pending[stream] = Buffer.alloc(0);
    }
    try {
      if (records) writeSync(this.fd, records);
    } finally {
      closeSync(this.fd);
    }
  }
}

/** Docker's log time: RFC 3339 in UTC with nanoseconds (the clock gives milliseconds here). */
function rfc3339Nano(): string {
  return new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1000000Z");
}

/**
 * Copies a container's output pipe to one of our streams and to the log; resolves at its end
 * (the last writer closed it). When our reader goes away (EPIPE: `tsrun run ... | head -1`), the
 * pipe is closed too, so that the container's next write fails as it would have written to that
 * reader directly (`yes` ends with SIGPIPE instead of filling the log forever).
 */
export function teeOutput(readFd: number, out: NodeJS.WriteStream, stream: OutputStream, log: JsonFileLog): { ended: Promise<void>; socket: Socket } {
  const socket = new (lazyNet().Socket)({ fd: readFd, readable: true, writable: false });
  // The listener stays after the end: a write still pending may fail later.
  out.on("error", () => socket.destroy());
  const ended = new Promise<void>((resolve) => {
    socket.on("data", (chunk: Buffer) => {
      log.write(stream, chunk);
      out.write(chunk);
    });
    socket.on("end", () => resolve());
    socket.on("close", () => resolve());
    socket.on("error", () => resolve());
  });
  return { ended, socket };
}
