// Crash-safe file updates and the store lock. A reader never sees a half-written file: data goes
// to a temporary name on the same filesystem, is flushed, then renamed over the old one.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "../random.js";
import { native } from "../native.js";
import { faultPoint } from "./fault.js";
import { removeFile } from "../remove-file.js";

export function tempName(target: string): string {
  return path.join(path.dirname(target), `.tmp-${path.basename(target)}-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** write(2) may write less than asked (a nearly full disk): loop until all of it is written. */
export function writeAll(fd: number, data: Buffer | string): void {
  if (typeof data === "string") {
    // Written from the string: Buffer.from would first copy it into fresh memory (~1 ms for the
    // image index of a store with a few hundred images). Only a short write makes the Buffer.
    const written = writeSync(fd, data);
    if (written === Buffer.byteLength(data)) return;
    data = Buffer.from(data).subarray(written);
  }
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off);
}

export interface AtomicWriteOptions {
  mode?: number;
  /**
   * fsync before the rename, for data whose loss after a power failure would corrupt the store
   * (indexes, blobs). Container state is rewritten often and may skip it: a killed process still
   * leaves either the old or the new file, never a torn one.
   */
  durable?: boolean;
  /**
   * Where the temporary file goes (same filesystem as target), instead of beside the target; and
   * the target's directory is not created: a file of something deleted meanwhile (a container
   * removed while `ps` refreshed its state) must not bring its directory back. ENOENT then.
   */
  tempDir?: string;
}

export function writeFileAtomic(target: string, data: string | Buffer, modeOrOptions: number | AtomicWriteOptions = 0o644, durable = true): void {
  const opts: AtomicWriteOptions = typeof modeOrOptions === "number" ? { mode: modeOrOptions, durable } : modeOrOptions;
  const staged = stageFile(target, data, opts.mode ?? 0o644, opts.tempDir);
  try {
    if (opts.durable ?? true) fsyncSync(staged.fd);
  } catch (err) {
    discardStaged([staged]);
    throw err;
  }
  publishStaged(staged);
}

/** A file written under a temporary name beside its target, its fd still open for an fsync. */
export interface StagedFile {
  fd: number;
  file: string;
  target: string;
}

/**
 * The first half of writeFileAtomic: data in a temporary file beside target, not yet flushed,
 * so that the caller can fsync it together with other files (one journal commit for all).
 * publishStaged gives it its name; discardStaged drops it.
 */
export function stageFile(target: string, data: string | Buffer, mode = 0o644, tempDir?: string): StagedFile {
  let file: string;
  if (tempDir) {
    file = path.join(tempDir, path.basename(tempName(target)));
  } else {
    mkdirSync(path.dirname(target), { recursive: true });
    file = tempName(target);
  }
  const fd = openSync(file, "wx", mode);
  try {
    writeAll(fd, data);
  } catch (err) {
    closeSync(fd);
    removeFile(file);
    throw err;
  }
  return { fd, file, target };
}

/** Closes a flushed staged file and renames it into place (crashPoint: the fault point between). */
export function publishStaged(staged: StagedFile, crashPoint = "atomic-write"): void {
  closeSync(staged.fd);
  faultPoint(crashPoint);
  try {
    renameSync(staged.file, staged.target);
  } catch (err) {
    removeFile(staged.file);
    throw err;
  }
}

/** Closes and removes staged files that will not be published (those still open). */
export function discardStaged(staged: StagedFile[]): void {
  for (const s of staged) {
    try {
      closeSync(s.fd);
    } catch {
      // Closed already (published up to its rename).
    }
    removeFile(s.file);
  }
}

export function writeJsonAtomic(target: string, value: unknown, modeOrOptions: number | AtomicWriteOptions = 0o644, durable = true): void {
  writeFileAtomic(target, JSON.stringify(value, null, 2) + "\n", modeOrOptions, durable);
}

/**
 * What fn of withLock is given: proof that it runs inside the lock. A step that may run either
 * on its own or inside a caller's lock (`system check --repair` removes containers and restores
 * layers under the lock it checks under) takes it and passes it on instead of locking again,
 * which would wait for itself forever. It proves nothing once its withLock has returned.
 */
export interface HeldLock {
  readonly lockFile: string;
  /** False once the lock it stands for was released. */
  readonly active: boolean;
}

// Other tasks of this process queue behind the one holding a lock file. Nesting is explicit
// (HeldLock) rather than found through an AsyncLocalStorage: that costs ~1.7 ms of every short
// command here (loading async_hooks, then a hook on every promise while it is enabled).
const queues = new Map<string, Promise<void>>();

/**
 * Runs fn while holding an exclusive flock on lockFile. flock is released by the kernel when
 * the process dies, so a killed tsrun never leaves the store locked. With `held` (the caller's
 * own, still active, for the same file), fn runs at once under that lock.
 */
export async function withLock<T>(lockFile: string, fn: (held: HeldLock) => Promise<T> | T, held?: HeldLock): Promise<T> {
  if (held?.active && held.lockFile === lockFile) return fn(held);
  const previous = queues.get(lockFile) ?? Promise.resolve();
  let release = (): void => undefined;
  const turn = new Promise<void>((resolve) => (release = resolve));
  const queued = previous.then(() => turn);
  queues.set(lockFile, queued);
  await previous;
  let fd: number | undefined;
  const mine = { lockFile, active: false };
  try {
    mkdirSync(path.dirname(lockFile), { recursive: true });
    fd = openSync(lockFile, "a", 0o600);
    const addon = native();
    if (!addon.flock(fd, true, false)) {
      // Another process holds it: wait without blocking the event loop for long stretches.
      while (!addon.flock(fd, true, false)) await new Promise((r) => setTimeout(r, 5));
    }
    mine.active = true;
    return await fn(mine);
  } finally {
    mine.active = false;
    if (fd !== undefined) closeSync(fd);
    release();
    if (queues.get(lockFile) === queued) queues.delete(lockFile);
  }
}
