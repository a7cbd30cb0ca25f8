// The log of a container run in the foreground: what it prints goes to our stdout/stderr as it
// comes and, line by line, to its ctr.log in Docker's json-file format, the same records the
// monitor (native/monitor.cc) writes for a detached container, so that `tsrun logs` shows what a
// foreground run printed, as Docker's does.
import { closeSync, constants, existsSync, fstatSync, openSync, read, renameSync, writeSync } from "node:fs";
import path from "node:path";
import { sleepSync } from "../sleep-sync.js";
import { TsrunError } from "../errors.js";
import { parseMemory } from "./security/options.js";
import { removeFile } from "../remove-file.js";

/** What JSON.stringify would escape in a line, beside its newline (decoded UTF-8 has no lone surrogates). */
const NEEDS_ESCAPE = /["\\\x00-\x09\x0b-\x1f]/;

/** Docker's json-file driver cuts a line longer than this into several records. */
const MAX_RECORD = 16384;

export type OutputStream = "stdout" | "stderr";

/** json-file's --log-opt max-size and max-file (Docker's names); no rotation without maxSize. */
export interface LogRotation {
  /** Bytes; the log is rotated before a write would take it past this. */
  maxSize: number;
  /** Files kept, the current one included (Docker's default 1: the log starts over). */
  maxFile: number;
}

/**
 * max-size and max-file as Docker's json-file driver takes them: a size with k, m or g (-1: no
 * limit) and a count of at least 1 (default 1), which only counts with a size. Undefined: no
 * rotation.
 */
export function logRotation(options: Record<string, string>): LogRotation | undefined {
  const size = options["max-size"];
  const files = options["max-file"];
  let maxFile = 1;
  if (files !== undefined) {
    if (!/^\d+$/.test(files) || Number(files) < 1) throw new TsrunError(`invalid --log-opt max-file=${files}: a number of files, at least 1`);
    maxFile = Number(files);
  }
  if (size === undefined || size === "-1") return undefined;
  let maxSize = 0;
  try {
    maxSize = parseMemory(size, "--log-opt max-size");
  } catch {
    // Said below, in the flag's own words.
  }
  if (maxSize <= 0) throw new TsrunError(`invalid --log-opt max-size=${size}: a positive size such as 10m (k, m or g), or -1`);
  return { maxSize, maxFile };
}

/**
 * json-file's extra attributes, as Docker's --log-opt labels, labels-regex, env and env-regex
 * pick them (daemon/logger/loginfo.go): the container's labels and environment variables named
 * in the comma-separated lists or matching the patterns. The JSON fragment that goes between a
 * record's "stream" and "time" (Docker's field order), keys sorted as Go writes a map; empty
 * when nothing is picked.
 */
export function logAttributes(options: Record<string, string>, labels: Record<string, string>, env: string[]): string {
  const pattern = (key: string): RegExp | undefined => {
    const text = options[key];
    if (text === undefined) return undefined;
    try {
      return new RegExp(text);
    } catch (err) {
      throw new TsrunError(`invalid --log-opt ${key}=${text}: ${(err as Error).message}`);
    }
  };
  const names = (key: string): Set<string> => new Set((options[key] ?? "").split(",").map((n) => n.trim()).filter((n) => n !== ""));
  const attrs = new Map<string, string>();
  const pick = (entries: [string, string][], listed: Set<string>, matching: RegExp | undefined): void => {
    for (const [key, value] of entries) if (listed.has(key) || matching?.test(key)) attrs.set(key, value);
  };
  pick(Object.entries(labels), names("labels"), pattern("labels-regex"));
  const envEntries = env.map((e): [string, string] => {
    const eq = e.indexOf("=");
    return eq < 0 ? [e, ""] : [e.slice(0, eq), e.slice(eq + 1)];
  });
  pick(envEntries, names("env"), pattern("env-regex"));
  if (attrs.size === 0) return "";
  const sorted = [...attrs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `,"attrs":${JSON.stringify(Object.fromEntries(sorted))}`;
}

/** The log files of a container, oldest first: ctr.log.N ... ctr.log.1, then ctr.log. */
export function logFiles(containerDir: string): string[] {
  const current = path.join(containerDir, "ctr.log");
  const rotated: string[] = [];
  for (let n = 1; existsSync(`${current}.${n}`); n++) rotated.unshift(`${current}.${n}`);
  return [...rotated, current];
}

/**
 * Rotates a container's log as Docker's json-file driver does: ctr.log becomes ctr.log.1, .1
 * becomes .2 and so on, the oldest beyond maxFile - 1 dropped; with maxFile 1 the log is emptied.
 * The monitor (native/monitor.cc, rotate_log) does the same for detached containers.
 */
export function rotateLog(file: string, maxFile: number): void {
  if (maxFile < 2) {
    removeFile(file);
    return;
  }
  removeFile(`${file}.${maxFile - 1}`);
  for (let n = maxFile - 2; n >= 1; n--) if (existsSync(`${file}.${n}`)) renameSync(`${file}.${n}`, `${file}.${n + 1}`);
  renameSync(file, `${file}.1`);
}

/** Appends an output's lines to a json-file log; a line without its newline waits for the rest. */
export class JsonFileLog {
  private fd: number;
  private size: number;
  private readonly pending: Record<OutputStream, Buffer> = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };

  constructor(
    private readonly file: string,
    private readonly rotation?: LogRotation,
    /** logAttributes(): the same in every record. */
    private readonly attrs = "",
  ) {
    this.fd = openSync(file, "a", 0o640);
    this.size = fstatSync(this.fd).size;
  }

  /**
   * Appends records (one write for as many as fit), rotating before one that would take the
   * file past max-size, as Docker's driver checks each message.
   */
  private append(records: string[]): void {
    let batch: string[] = [];
    let batchBytes = 0;
    const flush = (): void => {
      if (batch.length > 0) writeSync(this.fd, batch.join(""));
      this.size += batchBytes;
      batch = [];
      batchBytes = 0;
    };
    for (const record of records) {
      const bytes = this.rotation ? Buffer.byteLength(record) : 0;
      if (this.rotation && this.size + batchBytes > 0 && this.size + batchBytes + bytes > this.rotation.maxSize) {
        flush();
        closeSync(this.fd);
        rotateLog(this.file, this.rotation.maxFile);
        this.fd = openSync(this.file, "a", 0o640);
        this.size = 0;
      }
      batch.push(record);
      batchBytes += bytes;
    }
    flush();
  }

  write(stream: OutputStream, chunk: Buffer): void {
    let data = this.pending[stream].length > 0 ? Buffer.concat([this.pending[stream], chunk]) : chunk;
    // One time for the lines of one read (they came together), and the text decoded once: a
    // newline never falls inside a UTF-8 sequence, so the complete lines decode alone.
    const tail = `,"stream":"${stream}"${this.attrs},"time":"${rfc3339Nano()}"}\n`;
    const parts: string[] = [];
    const lastNewline = data.lastIndexOf(10);
    if (lastNewline >= 0) {
      const text = data.toString("utf8", 0, lastNewline + 1);
      if (!this.rotation && !NEEDS_ESCAPE.test(text)) {
        // Nothing to escape but the newlines (most output): every record at once, in native
        // string operations, instead of a JSON.stringify and a template per line. A rotation
        // counts each record's size, so it takes the way below.
        parts.push(`{"log":"${text.slice(0, -1).replaceAll("\n", `\\n"${tail}{"log":"`)}\\n"${tail}`);
      } else {
        const lines = text.split("\n");
        lines.pop(); // the empty text after the last newline
        for (const line of lines) parts.push(`{"log":${JSON.stringify(`${line}\n`)}${tail}`);
      }
      data = data.subarray(lastNewline + 1);
    }
    while (data.length >= MAX_RECORD) {
      parts.push(`{"log":${JSON.stringify(data.toString("utf8", 0, MAX_RECORD))}${tail}`);
      data = data.subarray(MAX_RECORD);
    }
    // A copy: the rest must not keep the (possibly large) chunk alive.
    this.pending[stream] = Buffer.from(data);
    if (parts.length > 0) this.append(parts);
  }

  /** Writes the unfinished lines (the output has ended) and closes the log. */
  close(): void {
    const tailOf = (stream: OutputStream): string => `,"stream":"${stream}"${this.attrs},"time":"${rfc3339Nano()}"}\n`;
    const records: string[] = [];
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.pending[stream].length > 0) records.push(`{"log":${JSON.stringify(this.pending[stream].toString("utf8"))}${tailOf(stream)}`);
      this.pending[stream] = Buffer.alloc(0);
    }
    try {
      this.append(records);
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
 * Copies a container's output pipe to one of our fds (1 or 2) and to the log; `ended` resolves
 * at its end (the last writer closed it). The pipe is read through libuv's thread pool and our fd
 * written directly: unlike a net.Socket and process.stdout, this loads no module, so a short
 * `run --rm` pays almost nothing for keeping its log. When our reader goes away (EPIPE: `tsrun
 * run ... | head -1`), the pipe is closed too, so that the container's next write fails as it
 * would have written to that reader directly (`yes` ends with SIGPIPE instead of filling the log
 * forever). stop() ends the copy at once, even while a process that escaped the container (a
 * shared or the host's pid namespace) keeps the pipe open.
 */
export function copyOutput(readFd: number, outFd: number, stream: OutputStream, log: JsonFileLog): { ended: Promise<void>; stop: () => void } {
  // Not zero-filled: only the pages a read fills are ever touched (a quiet run touches none).
  const buf = Buffer.allocUnsafe(1 << 16);
  let stopped = false;
  let reading = false;
  let finish: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const close = (): void => {
    try {
      closeSync(readFd);
    } catch {
      // closed already
    }
    finish();
  };
  const next = (): void => {
    reading = true;
    read(readFd, buf, 0, buf.length, null, (err, n) => {
      reading = false;
      if (stopped || err || n === 0) return close();
      const chunk = buf.subarray(0, n);
      log.write(stream, chunk);
      if (!writeAll(outFd, chunk)) return close();
      next();
    });
  };
  next();
  return {
    ended,
    stop: () => {
      if (stopped) return;
      stopped = true;
      if (!reading) return close();
      // A read in the thread pool cannot be cancelled, and another writer may keep the pipe
      // open: a byte written through a second write end of our own lets the read return.
      try {
        const writer = openSync(`/proc/self/fd/${readFd}`, constants.O_WRONLY | constants.O_NONBLOCK);
        try {
          writeSync(writer, "\n");
        } finally {
          closeSync(writer);
        }
      } catch {
        // Full (the read returns with data anyway) or ended meanwhile.
      }
      finish();
    },
  };
}

/** Writes all of chunk to fd, waiting while a non-blocking fd is full; false once nobody reads it (EPIPE and the like). */
function writeAll(fd: number, chunk: Buffer): boolean {
  let done = 0;
  while (done < chunk.length) {
    try {
      done += writeSync(fd, chunk, done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") return false;
      sleepSync(1);
    }
  }
  return true;
}
