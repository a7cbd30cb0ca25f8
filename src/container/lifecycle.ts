// Containers over time: stop (STOPSIGNAL, then SIGKILL), kill, wait, remove, logs.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { logFiles } from "./output-log.js";
import { constants } from "node:os";
import path from "node:path";
import type { Containers } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { TsrunError } from "../errors.js";
import { markPaused, markStopped } from "./state.js";
import { freezeProcesses, thawProcesses } from "./freeze.js";
import { faultPoint } from "../store/fault.js";
import { signalNumber } from "../format/signal.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function signal(record: ContainerRecord, sig: number): void {
  try {
    process.kill(record.state.pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/**
 * Signals a container that may be paused: a stopped process only acts on a signal once it runs
 * again, so a paused container is let go on right after (Docker lets stop and kill work on it).
 */
function signalAndThaw(containers: Containers, record: ContainerRecord, sig: number): void {
  signal(record, sig);
  if (record.state.paused) {
    thawProcesses(record.state.pid);
    markPaused(containers.records.containerDir(record.id), false);
  }
}

/** `pause`: stops every process of a running container (SIGSTOP; no cgroup freezer rootless here). */
export function pauseContainer(containers: Containers, query: string): ContainerRecord {
  const record = containers.get(query);
  if (record.state.status !== "running") throw new TsrunError(`container ${query} is not running`);
  if (record.state.paused) throw new TsrunError(`container ${query} is already paused`);
  if (!freezeProcesses(record.state.pid)) throw new TsrunError(`container ${query} is not running`);
  markPaused(containers.records.containerDir(record.id), true);
  return containers.get(record.id);
}

/** `unpause`: lets the processes of a paused container go on. */
export function unpauseContainer(containers: Containers, query: string): ContainerRecord {
  const record = containers.get(query);
  if (record.state.status !== "running" || !record.state.paused) throw new TsrunError(`container ${query} is not paused`);
  thawProcesses(record.state.pid);
  markPaused(containers.records.containerDir(record.id), false);
  return containers.get(record.id);
}

/** Waits until the container is no longer running; false on timeout. */
export async function waitStopped(containers: Containers, id: string, timeoutMs = Infinity): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    if (containers.get(id).state.status !== "running") return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
  }
}

/**
 * Sends the stop signal (--stop-signal, the image's STOPSIGNAL or SIGTERM), then SIGKILL after
 * timeoutSec (by default the container's --stop-timeout, else 10; a negative one waits forever).
 */
export async function stopContainer(containers: Containers, query: string, timeoutSec?: number): Promise<ContainerRecord> {
  const record = containers.get(query);
  if (record.state.status !== "running") return record;
  timeoutSec ??= record.config.stopTimeout ?? 10;
  if (timeoutSec < 0) timeoutSec = Infinity;
  markStopped(containers.records.containerDir(record.id));
  signalAndThaw(containers, record, signalNumber(record.config.stopSignal || "SIGTERM"));
  if (!(await waitStopped(containers, record.id, timeoutSec * 1000))) {
    signal(record, constants.signals.SIGKILL);
    await waitStopped(containers, record.id);
  }
  return containers.get(record.id);
}

export function killContainer(containers: Containers, query: string, sig = "SIGKILL"): ContainerRecord {
  const record = containers.get(query);
  if (record.state.status !== "running") throw new TsrunError(`cannot kill container ${query}: container is not running`);
  const n = signalNumber(sig);
  // Docker: a killed container is not restarted by its policy (as after stop).
  if (n === constants.signals.SIGKILL || n === constants.signals.SIGTERM) markStopped(containers.records.containerDir(record.id));
  signalAndThaw(containers, record, n);
  return record;
}

export async function removeContainer(containers: Containers, query: string, force: boolean, volumes = false): Promise<ContainerRecord> {
  const record = containers.get(query);
  if (record.state.status === "running") {
    if (!force)
      throw new TsrunError(`cannot remove container ${query}: container is running: stop the container before removing or force remove`);
    markStopped(containers.records.containerDir(record.id));
    signalAndThaw(containers, record, constants.signals.SIGKILL);
    await waitStopped(containers, record.id, 10_000);
  }
  await containers.remove(record, { volumes });
  return record;
}

/** `rename`: the new name is claimed, the record saved, the old name released, under the lock. */
export async function renameContainer(containers: Containers, query: string, newName: string): Promise<void> {
  const records = containers.records;
  await containers.store.locked(`rename ${query}`, "containers", () => {
    const record = containers.get(query);
    const old = record.name;
    if (old === newName) return;
    records.claimName(newName, record.id);
    // Peers on user-defined networks learn the new name (their hosts files).
    const networked = Object.keys(record.hostConfig.networks ?? {}).length > 0;
    if (networked) containers.networking.withdraw(record);
    record.name = newName;
    try {
      records.save(record);
    } catch (err) {
      records.releaseName(newName, record.id);
      record.name = old;
      if (networked) containers.networking.announce(record);
      throw err;
    }
    if (networked) containers.networking.announce(record);
    faultPoint("rename:saved");
    records.releaseName(old, record.id);
  });
}

export async function waitContainer(containers: Containers, query: string): Promise<number> {
  const record = containers.get(query);
  await waitStopped(containers, record.id);
  return containers.get(record.id).state.exitCode;
}

export interface LogRecord {
  log: string;
  stream: "stdout" | "stderr";
  time: string;
}

export interface LogOptions {
  follow?: boolean;
  /** Only the last N records. */
  tail?: number;
  /** Only records at or after this time. */
  since?: Date;
  /** Only records before this time; a follow ends once it has passed. */
  until?: Date;
  onRecord: (r: LogRecord) => void;
  /** After the records read at once (a caller that buffers what it prints writes it out here). */
  onBatchEnd?: () => void;
}

function parseLines(text: string): LogRecord[] {
  const out: LogRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as LogRecord);
    } catch {
      // A torn last line while the monitor writes: picked up on the next read.
    }
  }
  return out;
}

/** Reads a container's log (ctr.log, Docker json-file lines), optionally following it. */
export async function readLogs(containers: Containers, query: string, opts: LogOptions): Promise<void> {
  const record = containers.get(query);
  if (record.hostConfig.logDriver === "none") throw new TsrunError(`configured logging driver does not support reading: container ${query} logs to none`);
  const dir = containers.records.containerDir(record.id);
  const file = path.join(dir, "ctr.log");
  // The current file is read from where the last read ended; when it has been rotated (another
  // inode), the rest of the old one, now ctr.log.1, comes first, then the new one from its start.
  let offset = 0;
  let inode = 0;
  let carry = "";
  const readFrom = (name: string, from: number): { records: LogRecord[]; end: number } => {
    let fd: number;
    try {
      fd = openSync(name, "r");
    } catch (err) {
      // Rotated away between the look and the open: the next read finds its successor.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { records: [], end: from };
      throw err;
    }
    try {
      const size = fstatSync(fd).size;
      if (size <= from) return { records: [], end: from };
      const buf = Buffer.alloc(size - from);
      const n = readSync(fd, buf, 0, buf.length, from);
      const text = carry + buf.subarray(0, n).toString("utf8");
      const cut = text.lastIndexOf("\n") + 1;
      carry = text.slice(cut);
      return { records: parseLines(text.slice(0, cut)), end: from + n };
    } finally {
      closeSync(fd);
    }
  };
  const readNew = (): LogRecord[] => {
    let current: number;
    try {
      current = statSync(file).ino;
    } catch {
      return []; // not written yet, or between a rotation's steps
    }
    const out: LogRecord[] = [];
    if (inode !== 0 && current !== inode) {
      const rotated = `${file}.1`;
      if (existsSync(rotated) && statSync(rotated).ino === inode) out.push(...readFrom(rotated, offset).records);
      offset = 0;
      carry = "";
    }
    inode = current;
    const { records, end } = readFrom(file, offset);
    offset = end;
    return [...out, ...records];
  };
  const readRotated = (): LogRecord[] =>
    logFiles(dir)
      .slice(0, -1)
      .flatMap((f) => {
        try {
          return parseLines(readFileSync(f, "utf8"));
        } catch {
          return []; // dropped by a rotation meanwhile
        }
      });
  const emit = (records: LogRecord[]): void => {
    for (const r of records) {
      if (opts.since && new Date(r.time) < opts.since) continue;
      if (opts.until && new Date(r.time) > opts.until) continue;
      opts.onRecord(r);
    }
    opts.onBatchEnd?.();
  };
  let first = [...readRotated(), ...readNew()];
  if (opts.tail !== undefined && opts.tail >= 0) first = opts.tail === 0 ? [] : first.slice(-opts.tail);
  emit(first);
  if (!opts.follow) return;
  for (;;) {
    const running = containers.get(record.id).state.status === "running";
    emit(readNew());
    if (!running || (opts.until && Date.now() > opts.until.getTime())) {
      emit(readNew());
      return;
    }
    await sleep(50);
  }
}
