// Containers over time: stop (STOPSIGNAL, then SIGKILL), kill, wait, remove, logs.
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { logFiles } from "./output-log.js";
import { constants } from "node:os";
import path from "node:path";
import type { Containers } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { markPaused, markRestarting, markStopped, readLastExit } from "./state.js";
import { freezeProcesses, thawProcesses } from "./freeze.js";
import { faultPoint } from "../store/fault.js";
import { signalNumber } from "../format/signal.js";
import { removeFile } from "../remove-file.js";

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

/**
 * The container's state now; a container removed meanwhile (--rm, `rm -f` from elsewhere) as it
 * ended, from the exit status its removal kept, else exited with no status known.
 */
function currentState(containers: Containers, record: ContainerRecord): ContainerRecord {
  try {
    return containers.get(record.id);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    const exit = containers.records.removedExit(record.id);
    if (!exit && record.state.status === "running") throw err;
    return { ...record, state: { ...record.state, status: "exited", pid: 0, paused: false, ...(exit ?? {}) } };
  }
}

/** Waits until the container is no longer running (or removed); false on timeout. */
export async function waitStopped(containers: Containers, id: string, timeoutMs = Infinity): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      if (containers.get(id).state.status !== "running") return true;
    } catch (err) {
      if (err instanceof NotFoundError) return true;
      throw err;
    }
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
  }
}

/**
 * Sends the stop signal (`stop -s`, else --stop-signal, the image's STOPSIGNAL or SIGTERM), then
 * SIGKILL after timeoutSec (by default the container's --stop-timeout, else 10; a negative one
 * waits forever).
 */
export async function stopContainer(containers: Containers, query: string, timeoutSec?: number, stopSignal?: string): Promise<ContainerRecord> {
  const sig = signalNumber(stopSignal ?? "SIGTERM");
  const record = containers.get(query);
  if (record.state.status !== "running") return record;
  timeoutSec ??= record.config.stopTimeout ?? 10;
  if (timeoutSec < 0) timeoutSec = Infinity;
  markStopped(containers.records.containerDir(record.id));
  signalAndThaw(containers, record, stopSignal !== undefined ? sig : signalNumber(record.config.stopSignal || "SIGTERM"));
  if (!(await waitStopped(containers, record.id, timeoutSec * 1000))) {
    signal(record, constants.signals.SIGKILL);
    await waitStopped(containers, record.id);
  }
  return currentState(containers, record);
}

/**
 * `restart`: stop, then start under a monitor. A --rm container stays through it, as Docker
 * keeps it: whoever would remove it at its exit (its monitor, or the foreground `run` it runs
 * under) is told that this exit is not its end.
 */
export async function restartContainer(containers: Containers, query: string, timeoutSec?: number, stopSignal?: string): Promise<ContainerRecord> {
  if (stopSignal !== undefined) signalNumber(stopSignal);
  const record = containers.get(query);
  const dir = containers.records.containerDir(record.id);
  if (record.hostConfig.autoRemove) {
    markRestarting(dir);
    removeFile(path.join(dir, "autoremove"));
  }
  const stopped = await stopContainer(containers, record.id, timeoutSec, stopSignal);
  return containers.startDetached(containers.get(stopped.id));
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
  try {
    // As it ended: its exit status is kept for those waiting for it.
    await containers.remove(currentState(containers, record), { volumes });
  } catch (err) {
    // Removed meanwhile by whoever ran it (--rm): gone, as asked.
    if (!(err instanceof NotFoundError) || record.state.status !== "running") throw err;
  }
  return record;
}

/** `rename`: the new name is claimed, the record saved, the old name released, under the lock. */
export async function renameContainer(containers: Containers, query: string, newName: string): Promise<void> {
  const records = containers.records;
  await containers.store.locked(`rename ${query}`, "containers", () => {
    const record = containers.get(query);
    const old = record.name;
    if (old === newName) throw new TsrunError("renaming a container with the same name as its current name");
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
  return waitExitStatus(containers, containers.get(query));
}

/** Waits until a container found earlier has ended, and returns its exit status (kept when it was removed as it ended). */
export async function waitExitStatus(containers: Containers, record: ContainerRecord): Promise<number> {
  await waitStopped(containers, record.id);
  return currentState(containers, record).state.exitCode;
}

/**
 * Docker's "next-exit" wait, what an attached `run`, `start -a` and `attach` end with: the exit
 * status of the run the container is in now. A restart policy may start it again at once: a
 * restart counted since (or the pause before one) is that run's end, with the code the monitor
 * recorded for it.
 */
export async function waitNextExit(containers: Containers, record: ContainerRecord): Promise<number> {
  const restartsBefore = record.state.restartCount ?? 0;
  const dir = containers.records.containerDir(record.id);
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    const now = currentState(containers, record);
    if (now.state.status !== "running") return now.state.exitCode;
    if (now.state.restarting || (now.state.restartCount ?? 0) > restartsBefore) return readLastExit(dir)?.code ?? now.state.exitCode;
    await sleep(delay);
  }
}

export interface LogRecord {
  log: string;
  stream: "stdout" | "stderr";
  time: string;
  /** json-file's extra attributes (what --log-opt labels/env would add; `logs --details`). */
  attrs?: Record<string, string>;
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
  // The current file stays open between reads, from where the last read ended: when it is
  // rotated (ctr.log is another inode) or removed with its container (--rm), the rest of it is
  // still read from the open file before the next one is opened from its start.
  let fd = -1;
  let inode = 0;
  let offset = 0;
  let carry = "";
  const readOpen = (): LogRecord[] => {
    const size = fstatSync(fd).size;
    if (size <= offset) return [];
    const buf = Buffer.alloc(size - offset);
    const n = readSync(fd, buf, 0, buf.length, offset);
    offset += n;
    const text = carry + buf.subarray(0, n).toString("utf8");
    const cut = text.lastIndexOf("\n") + 1;
    carry = text.slice(cut);
    return parseLines(text.slice(0, cut));
  };
  const readNew = (): LogRecord[] => {
    let current = 0;
    try {
      current = statSync(file).ino;
    } catch {
      // not written yet, between a rotation's steps, or removed
    }
    const out: LogRecord[] = [];
    if (fd >= 0 && current !== inode) {
      out.push(...readOpen());
      closeSync(fd);
      fd = -1;
      offset = 0;
      carry = "";
    }
    if (fd < 0 && current !== 0) {
      try {
        fd = openSync(file, "r");
        inode = fstatSync(fd).ino;
      } catch (err) {
        // Rotated away between the look and the open: the next read finds its successor.
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        return out;
      }
    }
    if (fd >= 0) out.push(...readOpen());
    return out;
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
  try {
    if (opts.tail === 0) {
      // Nothing of what is there: only what comes from now on (attach, `logs -f --tail 0`); a
      // record being written right now comes whole with the next read.
      readNew();
    } else {
      let first = [...readRotated(), ...readNew()];
      if (opts.tail !== undefined && opts.tail > 0) first = first.slice(-opts.tail);
      emit(first);
    }
    if (!opts.follow) return;
    for (;;) {
      let running = false;
      try {
        running = containers.get(record.id).state.status === "running";
      } catch (err) {
        // Removed as it ended (--rm): what it wrote last is read from the open file.
        if (!(err instanceof NotFoundError)) throw err;
      }
      emit(readNew());
      if (!running || (opts.until && Date.now() > opts.until.getTime())) {
        emit(readNew());
        return;
      }
      await sleep(50);
    }
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}
