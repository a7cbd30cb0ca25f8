// Crash-safe file updates and the store lock. A reader never sees a half-written file: data goes
// to a temporary name in the same directory, is flushed, then renamed over the old one.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { native } from "../native.js";

export function tempName(target: string): string {
  return path.join(path.dirname(target), `.tmp-${path.basename(target)}-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/**
 * durable: fsync before the rename, for data whose loss after a power failure would corrupt the
 * store (indexes, blobs). Container state is rewritten often and may skip it: a killed process
 * still leaves either the old or the new file, never a torn one.
 */
export function writeFileAtomic(target: string, data: string | Buffer, mode = 0o644, durable = true): void {
  mkdirSync(path.dirname(target), { recursive: true });
  const tmp = tempName(target);
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    if (durable) fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, target);
}

export function writeJsonAtomic(target: string, value: unknown, mode = 0o644, durable = true): void {
  writeFileAtomic(target, JSON.stringify(value, null, 2) + "\n", mode, durable);
}

/**
 * Runs fn while holding an exclusive flock on lockFile. flock is released by the kernel when
 * the process dies, so a killed tsrun never leaves the store locked.
 */
export async function withLock<T>(lockFile: string, fn: () => Promise<T> | T): Promise<T> {
  mkdirSync(path.dirname(lockFile), { recursive: true });
  const fd = openSync(lockFile, "a", 0o600);
  try {
    const addon = native();
    if (!addon.flock(fd, true, false)) {
      // Someone else holds it: wait without blocking the event loop for long stretches.
      while (!addon.flock(fd, true, false)) await new Promise((r) => setTimeout(r, 5));
    }
    return await fn();
  } finally {
    closeSync(fd);
  }
}
