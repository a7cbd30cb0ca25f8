// Attaching to a detached container: the client side of the monitor's attach socket
// (native/attach.h has the frame format). Output goes to our stdout/stderr as it comes; our
// stdin goes to the container's (when it was started with -i); with a tty the host terminal is
// raw and its size follows ours; the detach keys (ctrl-p,ctrl-q by default) leave it running.
import { closeSync, constants, openSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Containers } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { SignalRelay } from "./process.js";
import { readLogs, waitExitStatus, waitNextExit } from "./lifecycle.js";
import { TsrunError } from "../errors.js";

const FRAME_STDIN = 0;
const FRAME_STDOUT = 1;
const FRAME_STDERR = 2;
const FRAME_RESIZE = 3;
const FRAME_CLOSE_STDIN = 4;

export interface AttachOptions {
  /** Send our stdin to the container (it must have been started with -i). */
  stdin: boolean;
  /** Docker's --detach-keys, e.g. "ctrl-p,ctrl-q". */
  detachKeys?: string;
  /** Forward signals to the container's process (non-tty only; a tty gets ^C as a byte). */
  sigProxy?: boolean;
  /** The end of our stdin closes the container's (Docker's StdinOnce: `start -ai`). */
  closeStdinOnEnd?: boolean;
  /** The output streams shown (`run -a`); both when unset. The log keeps both either way. */
  streams?: { stdout: boolean; stderr: boolean };
}

/** "ctrl-p,ctrl-q" -> [0x10, 0x11]; "a" -> [0x61]. As Docker parses --detach-keys. */
export function parseDetachKeys(spec: string): number[] {
  const keys: number[] = [];
  for (const part of spec.split(",")) {
    const key = part.trim();
    const ctrl = /^ctrl-(.)$/i.exec(key);
    if (ctrl) {
      const c = (ctrl[1] as string).toLowerCase();
      const special: Record<string, number> = { "@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, _: 31 };
      if (c >= "a" && c <= "z") keys.push(c.charCodeAt(0) - 96);
      else if (c in special) keys.push(special[c] as number);
      else throw new TsrunError(`invalid detach keys "${spec}": unknown key ${key}`);
    } else if (key.length === 1) {
      keys.push(key.charCodeAt(0));
    } else {
      throw new TsrunError(`invalid detach keys "${spec}": unknown key ${key}`);
    }
  }
  if (keys.length === 0) throw new TsrunError(`invalid detach keys "${spec}"`);
  return keys;
}

function frame(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** The container has no monitor to attach to: it runs in the foreground of another tsrun (or has just exited). */
class NoMonitorError extends TsrunError {}

/** Connects to the monitor's attach socket (through /proc/self/fd: the store path may be long). */
export async function connectAttachSocket(containerDir: string): Promise<net.Socket> {
  const dirFd = openSync(containerDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    return await new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ path: path.join(`/proc/self/fd/${dirFd}`, "attach.sock") });
      socket.once("connect", () => resolve(socket));
      socket.once("error", reject);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ECONNREFUSED")
      throw new NoMonitorError("cannot attach: the container is not watched by a tsrun monitor (it has just exited)");
    throw err;
  } finally {
    closeSync(dirFd);
  }
}

/** Detach-key matching across chunk boundaries: what to pass on, and whether they were typed. */
class DetachMatcher {
  private held: number[] = [];
  constructor(private readonly keys: number[]) {}

  feed(chunk: Buffer): { pass: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const byte of chunk) {
      if (byte === this.keys[this.held.length]) {
        this.held.push(byte);
        if (this.held.length === this.keys.length) return { pass: Buffer.from(out), detach: true };
        continue;
      }
      out.push(...this.held);
      this.held = [];
      if (byte === this.keys[0]) this.held.push(byte);
      else out.push(byte);
    }
    return { pass: Buffer.from(out), detach: false };
  }
}

/**
 * Attaches to a running container through an open socket until the container's output ends
 * (resolves with its exit status) or the detach keys are typed (resolves with "detached").
 */
export async function attachSocket(containers: Containers, record: ContainerRecord, socket: net.Socket, opts: AttachOptions): Promise<number | "detached"> {
  const tty = record.config.tty;
  const sendInput = opts.stdin && record.config.openStdin;
  const matcher = new DetachMatcher(parseDetachKeys(opts.detachKeys ?? "ctrl-p,ctrl-q"));
  const stdin = process.stdin;
  const relay = !tty && opts.sigProxy !== false ? new SignalRelay() : undefined;
  relay?.target(record.state.pid);
  let rawSet = false;
  let detached = false;
  const onResize = (): void => {
    const size = Buffer.alloc(4);
    size.writeUInt16BE(process.stdout.rows || 24, 0);
    size.writeUInt16BE(process.stdout.columns || 80, 2);
    socket.write(frame(FRAME_RESIZE, size));
  };
  const onInput = (chunk: Buffer): void => {
    const { pass, detach } = matcher.feed(chunk);
    if (pass.length > 0) socket.write(frame(FRAME_STDIN, pass));
    if (detach) {
      detached = true;
      socket.end();
      socket.destroy();
    }
  };
  try {
    const ended = new Promise<void>((resolve) => {
      let pending: Buffer = Buffer.alloc(0);
      socket.on("data", (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        while (pending.length >= 5) {
          const length = pending.readUInt32BE(1);
          if (pending.length < 5 + length) break;
          const type = pending[0];
          const payload = pending.subarray(5, 5 + length);
          if (type === FRAME_STDOUT && (opts.streams?.stdout ?? true)) process.stdout.write(payload);
          else if (type === FRAME_STDERR && (opts.streams?.stderr ?? true)) process.stderr.write(payload);
          pending = pending.subarray(5 + length);
        }
      });
      socket.on("close", () => resolve());
      socket.on("error", () => resolve());
    });
    if (tty && process.stdout.isTTY) {
      onResize();
      process.stdout.on("resize", onResize);
    }
    if (sendInput) {
      if (tty && stdin.isTTY) {
        stdin.setRawMode(true);
        rawSet = true;
      }
      stdin.on("data", onInput);
      // The output still comes after our input ends; the container's stdin is closed too only
      // when asked (as Docker's StdinOnce), otherwise it stays open for the next attach.
      stdin.on("end", () => {
        if (opts.closeStdinOnEnd && !detached) socket.write(frame(FRAME_CLOSE_STDIN, Buffer.alloc(0)));
      });
      stdin.resume();
    }
    await ended;
  } finally {
    relay?.dispose();
    process.stdout.off("resize", onResize);
    if (rawSet) stdin.setRawMode(false);
    if (sendInput) {
      stdin.off("data", onInput);
      stdin.pause();
    }
  }
  if (detached) return "detached";
  return waitNextExit(containers, record);
}

/** `tsrun attach`: attaches to a running container. */
export async function attachContainer(containers: Containers, query: string, opts: AttachOptions): Promise<number | "detached"> {
  const record = containers.get(query);
  if (record.state.status !== "running") throw new TsrunError("cannot attach to a stopped container, start it first");
  if (record.state.paused) throw new TsrunError(`cannot attach to paused container ${query}, unpause it first`);
  const tty = record.config.tty;
  if (tty && opts.stdin && record.config.openStdin && !process.stdin.isTTY) throw new TsrunError("the input device is not a TTY", 1);
  let socket: net.Socket;
  try {
    socket = await connectAttachSocket(containers.records.containerDir(record.id));
  } catch (err) {
    if (!(err instanceof NoMonitorError)) throw err;
    return attachToForeground(containers, record, query, opts);
  }
  return attachSocket(containers, record, socket, opts);
}

/**
 * Attaches to a container that runs in the foreground of another `tsrun run` (no monitor, no
 * attach socket): its output from now on, as that run copies it into the log, and signals passed
 * on; ends with the container, with its exit status. Its input is that run's: none is sent.
 */
async function attachToForeground(containers: Containers, record: ContainerRecord, query: string, opts: AttachOptions): Promise<number> {
  if (record.hostConfig.logDriver === "none") throw new TsrunError(`cannot attach to container ${query}: it runs in the foreground of another tsrun with --log-driver none, which shows its output alone`);
  if (opts.stdin && record.config.openStdin) {
    process.stderr.write(`tsrun: container ${query} runs in the foreground of another tsrun, whose input it reads: attached to its output only\n`);
  }
  const relay = !record.config.tty && opts.sigProxy !== false ? new SignalRelay() : undefined;
  relay?.target(record.state.pid);
  try {
    await readLogs(containers, record.id, {
      follow: true,
      tail: 0,
      onRecord: (r) => {
        if (r.stream === "stderr" ? (opts.streams?.stderr ?? true) : (opts.streams?.stdout ?? true)) (r.stream === "stderr" ? process.stderr : process.stdout).write(r.log);
      },
    });
  } finally {
    relay?.dispose();
  }
  return waitExitStatus(containers, record);
}

/**
 * Starts a created or stopped container under its monitor and attaches to it from its first
 * output on (`start -a`, and `run -a`/`--sig-proxy=false`): the monitor waits for this client
 * before it starts the container. The container outlives this process, as with Docker.
 */
export async function startAttached(containers: Containers, record: ContainerRecord, opts: AttachOptions): Promise<number | "detached"> {
  let socket: net.Socket | undefined;
  const started = await containers.startDetached(record, {
    beforeStart: async () => {
      socket = await connectAttachSocket(containers.records.containerDir(record.id));
    },
  });
  if (!socket) throw new TsrunError("the container's monitor did not wait for the attach");
  return attachSocket(containers, started, socket, opts);
}
