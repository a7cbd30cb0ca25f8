// Starting a launch plan and living with the process: id maps, the pty, signals, the exit code.
import { closeSync, writeSync } from "node:fs";
import type { ReadStream } from "node:tty";
import { encodePlan, native, type ChildFailure, type LaunchPlan } from "../native.js";
import { currentMapping, writeIdMaps, type UsernsMode } from "../userns.js";
import { TsrunError } from "../errors.js";
import { lazyTty } from "../builtin.js";
import type { JsonFileLog } from "./output-log.js";

export interface LaunchedProcess {
  pid: number;
  pidfd: number;
  /** The pty master when the plan asked for a tty, else -1. */
  ptyFd: number;
}

/** A failure reported by the child before exec, as Docker reports it: 127 not found, 126 not runnable, else 125. */
export function childFailureError(f: ChildFailure): TsrunError {
  const message = f.kind === 1 && f.errno === 0 ? f.step : f.message ? `${f.step}: ${f.message}` : f.step;
  return new TsrunError(message, f.kind === 1 ? 127 : f.kind === 2 ? 126 : 125);
}

/**
 * Clones the child, writes its id maps, lets it run; fails with 125/126/127 as Docker does.
 * beforeStart runs while the child waits for its first go; whileSettingUp (with
 * plan.holdBeforeExec) while it sets up its root, before it may run the command: work that only
 * has to be done by the time the command starts, such as its network, overlaps the setup.
 */
export async function launchPlan(
  plan: LaunchPlan,
  userns: UsernsMode,
  beforeStart?: (pid: number) => void,
  whileSettingUp?: (pid: number) => void,
): Promise<LaunchedProcess> {
  const addon = native();
  const handle = addon.spawn(encodePlan(plan));
  try {
    // In the holder's user namespace (plan.nest) there are no maps to write.
    if (!plan.nest) await writeIdMaps(handle.pid, currentMapping(), userns);
    // e.g. connect its network namespace, while it still waits.
    beforeStart?.(handle.pid);
  } catch (err) {
    // Closing the sync pipe makes the waiting child exit without doing anything.
    closeSync(handle.syncFd);
    closeSync(handle.errorFd);
    if (handle.socketFd >= 0) closeSync(handle.socketFd);
    await addon.waitPid(handle.pid);
    closeSync(handle.pidfd);
    throw err instanceof TsrunError ? err : new TsrunError(`setting up the user namespace: ${(err as Error).message}`);
  }
  let syncFd = handle.syncFd;
  let cancelled: unknown;
  if (plan.holdBeforeExec) {
    try {
      writeSync(syncFd, "G");
    } catch {
      // The child is gone already (EPIPE): resume reads what it reported.
    }
    try {
      whileSettingUp?.(handle.pid);
    } catch (err) {
      // The child sees end of file at its hold and reports "start cancelled", unless its own
      // setup failed first: then its error explains this one (a helper that found it gone).
      closeSync(syncFd);
      syncFd = -1;
      cancelled = err;
    }
  }
  const resumed = addon.resume(syncFd, handle.errorFd, handle.socketFd, plan.tty !== undefined);
  if (cancelled !== undefined && (!resumed.error || resumed.error.step === "start cancelled")) {
    if (resumed.ptyFd >= 0) closeSync(resumed.ptyFd);
    await addon.waitPid(handle.pid);
    closeSync(handle.pidfd);
    throw cancelled instanceof TsrunError ? cancelled : new TsrunError(`starting the container: ${(cancelled as Error).message}`);
  }
  if (resumed.error) {
    await addon.waitPid(handle.pid);
    closeSync(handle.pidfd);
    throw childFailureError(resumed.error);
  }
  return { pid: handle.pid, pidfd: handle.pidfd, ptyFd: resumed.ptyFd };
}

/** Docker's exit status for a process: its code, or 128 + the signal that killed it. */
export async function waitExit(pid: number): Promise<number> {
  const s = await native().waitPid(pid);
  return s.signal ? 128 + s.signal : s.code;
}

const FORWARDED_SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];

/**
 * Forwards the signals tsrun receives to the container process. Installed before the container
 * starts: a signal that arrives while it is being set up (it may already print, so a caller can
 * react to it) would otherwise kill tsrun with Node's default action. Such early signals are
 * held and delivered as soon as the process is known.
 */
export class SignalRelay {
  private pid = 0;
  private readonly pending: NodeJS.Signals[] = [];
  private readonly handlers: Array<readonly [NodeJS.Signals, () => void]>;

  constructor() {
    this.handlers = FORWARDED_SIGNALS.map((sig) => {
      const h = (): void => {
        if (this.pid > 0) this.send(sig);
        else this.pending.push(sig);
      };
      process.on(sig, h);
      return [sig, h] as const;
    });
  }

  /** Starts forwarding to pid, first delivering what arrived before it was known. */
  target(pid: number): void {
    this.pid = pid;
    for (const sig of this.pending.splice(0)) this.send(sig);
  }

  dispose(): void {
    for (const [sig, h] of this.handlers) process.off(sig, h);
  }

  private send(sig: NodeJS.Signals): void {
    try {
      process.kill(this.pid, sig);
    } catch {
      // Already gone.
    }
  }
}

/**
 * Runs a launched process in the foreground: relays the pty (host terminal in raw mode, restored
 * on every exit path), follows window size, forwards signals (through `relay` when the caller
 * installed one before starting the process), and returns the exit status.
 */
export async function attachForeground(proc: LaunchedProcess, opts: { interactive: boolean; relay?: SignalRelay; log?: JsonFileLog }): Promise<number> {
  const relay = opts.relay ?? new SignalRelay();
  relay.target(proc.pid);
  // process.stdin and node:tty are touched only with a pty: creating the stdin stream loads
  // net and stream, a good part of a short run's start-up.
  let stdin: NodeJS.ReadStream | undefined;
  let rawSet = false;
  let ptyClosed: Promise<void> = Promise.resolve();
  let onResize: (() => void) | undefined;
  let master: ReadStream | undefined;
  try {
    if (proc.ptyFd >= 0) {
      const addon = native();
      const fd = proc.ptyFd;
      const tty = lazyTty();
      stdin = process.stdin;
      master = new tty.ReadStream(fd);
      const m = master;
      ptyClosed = new Promise<void>((resolve) => {
        m.on("data", (d: Buffer) => {
          opts.log?.write("stdout", d);
          process.stdout.write(d);
        });
        // EIO once the last slave fd is closed: that is end of file for a pty master.
        m.on("error", () => resolve());
        m.on("end", () => resolve());
        m.on("close", () => resolve());
      });
      if (opts.interactive) {
        const input = stdin;
        if (input.isTTY) {
          input.setRawMode(true);
          rawSet = true;
        }
        input.on("data", (d: Buffer) => {
          try {
            writeSync(fd, d);
          } catch {
            // The container closed its terminal.
          }
        });
        input.resume();
      }
      if (process.stdout.isTTY) {
        onResize = () => {
          try {
            addon.setWinsize(fd, process.stdout.rows, process.stdout.columns);
          } catch {
            // pty gone
          }
        };
        process.stdout.on("resize", onResize);
      }
    }
    const status = await waitExit(proc.pid);
    // Drain what the container wrote before it exited (bounded: a leaked slave fd must not hang us).
    await Promise.race([ptyClosed, new Promise((r) => setTimeout(r, 2000).unref())]);
    return status;
  } finally {
    relay.dispose();
    if (onResize) process.stdout.off("resize", onResize);
    if (rawSet) stdin?.setRawMode(false);
    if (proc.ptyFd >= 0) {
      stdin?.pause();
      master?.destroy();
    }
    if (proc.pidfd >= 0) {
      try {
        closeSync(proc.pidfd);
      } catch {
        // closed
      }
    }
  }
}
