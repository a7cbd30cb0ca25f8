// What a container's state really is. The record says "running" while a monitor (the detached
// container's tsrun-monitor, or the CLI of a foreground run) waits for it; the monitor writes an
// exit file when the container ends. A monitor that died without one (kill -9, a reboot) means
// the container is gone too (it dies with its monitor): it is reported as exited, never running.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ContainerRecord } from "./records.js";

export { processStartTime, isAlive } from "../store/liveness.js";
import { isAlive } from "../store/liveness.js";
import { stopNetworkHelpers } from "../network/outbound.js";
import { removeFile } from "../remove-file.js";

function readOr(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

export interface ExitFile {
  code: number;
  finishedAt: string;
}

export function readExitFile(containerDir: string): ExitFile | undefined {
  try {
    const [code, finishedAt] = readFileSync(path.join(containerDir, "exit"), "utf8").trim().split(" ");
    return { code: Number(code), finishedAt: finishedAt ?? new Date().toISOString() };
  } catch {
    return undefined;
  }
}

/** The exit a restart policy's monitor recorded last (between runs, or before the current one). */
export function readLastExit(containerDir: string): ExitFile | undefined {
  const [code, finishedAt] = readOr(path.join(containerDir, "last-exit")).trim().split(" ");
  if (!code || finishedAt === undefined || Number.isNaN(Number(code))) return undefined;
  return { code: Number(code), finishedAt };
}

/** Before a start: no exit, stop marker, pid or health of an earlier run. */
export function clearRunFiles(containerDir: string): void {
  for (const f of ["exit", "stopped", "pid", "health.json", "restarts", "last-exit", "paused", "attach-wait", "restarting"]) removeFile(path.join(containerDir, f));
}

/** Tells whoever runs a --rm container that `restart` stops it: it is not to be removed at this exit. */
export function markRestarting(containerDir: string): void {
  writeFileSync(path.join(containerDir, "restarting"), "");
}

export function isRestarting(containerDir: string): boolean {
  return existsSync(path.join(containerDir, "restarting"));
}

/** Tells the monitor that the user stopped the container: no restart after this exit. */
export function markStopped(containerDir: string): void {
  writeFileSync(path.join(containerDir, "stopped"), "");
}

/** Records that `pause` stopped the container's processes (or, with false, that they run again). */
export function markPaused(containerDir: string, paused: boolean): void {
  if (paused) writeFileSync(path.join(containerDir, "paused"), "");
  else removeFile(path.join(containerDir, "paused"));
}

/**
 * Brings a record up to date with reality; returns true when it changed (the caller saves it).
 */
export function refreshState(record: ContainerRecord, containerDir: string): boolean {
  if (record.state.status !== "running") return false;
  let changed = false;
  // A restart policy gives the container a new init: the monitor writes its pid.
  const pid = Number(readOr(path.join(containerDir, "pid")).trim());
  if (pid > 0 && pid !== record.state.pid) {
    record.state = { ...record.state, pid };
    changed = true;
  }
  const restarts = Number(readOr(path.join(containerDir, "restarts")).trim() || 0);
  if (restarts !== (record.state.restartCount ?? 0)) {
    record.state = { ...record.state, restartCount: restarts };
    changed = true;
  }
  // Between two runs of its restart policy, the monitor has recorded the last exit and the pid
  // it names has ended: Docker's "restarting", with that exit's code and time.
  const lastExit = restarts > 0 ? readOr(path.join(containerDir, "last-exit")).trim().split(" ") : [];
  const restarting = lastExit.length === 2 && !existsSync(`/proc/${record.state.pid}`);
  const [code, finishedAt] = restarting ? [Number(lastExit[0]), lastExit[1] as string] : [record.state.exitCode, record.state.finishedAt];
  if (restarting !== (record.state.restarting ?? false) || code !== record.state.exitCode || finishedAt !== record.state.finishedAt) {
    record.state = { ...record.state, restarting, exitCode: code, finishedAt };
    changed = true;
  }
  const health = readOr(path.join(containerDir, "health.json"));
  if (health) {
    try {
      record.state = { ...record.state, health: JSON.parse(health) as NonNullable<ContainerRecord["state"]["health"]> };
    } catch {
      // Being rewritten: the next look sees it.
    }
  }
  const paused = existsSync(path.join(containerDir, "paused"));
  if (paused !== (record.state.paused ?? false)) {
    record.state = { ...record.state, paused };
    changed = true;
  }
  const exited = (exit: ExitFile): boolean => {
    markPaused(containerDir, false);
    record.state = { ...record.state, status: "exited", pid: 0, paused: false, restarting: false, exitCode: exit.code, finishedAt: exit.finishedAt };
    return true;
  };
  const exit = readExitFile(containerDir);
  if (exit) return exited(exit);
  if (isAlive(record.state.monitorPid, record.state.monitorStartTime)) return changed;
  // The monitor writes the exit file, then ends: one that ended between the look above and
  // this one has recorded its exit. Without this second look a container that exited normally
  // was seen as one whose monitor was killed (255), and stayed so.
  const late = readExitFile(containerDir);
  if (late) return exited(late);
  // A foreground run's CLI is its own monitor: it saves the exit in the record, then ends. One
  // that did so after this record was read has left the truth on disk.
  try {
    const saved = (JSON.parse(readFileSync(path.join(containerDir, "container.json"), "utf8")) as ContainerRecord).state;
    if (saved.status !== "running" && saved.startedAt === record.state.startedAt) {
      record.state = saved;
      return true;
    }
  } catch {
    // Removed meanwhile: the caller finds out.
  }
  markPaused(containerDir, false);
  // The monitor would have stopped pasta at the container's exit; killed, it could not.
  stopNetworkHelpers(containerDir);
  record.state = {
    ...record.state,
    paused: false,
    restarting: false,
    status: "exited",
    pid: 0,
    exitCode: 255,
    finishedAt: new Date().toISOString(),
    error: "the container's monitor ended without recording an exit status (killed, or the host rebooted)",
  };
  return true;
}
