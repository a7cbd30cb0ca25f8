// Removing one file that may be gone already: what rmSync(file, { force: true }) does, without
// loading Node's rimraf (compiled on first use, ~0.6 ms) and the lstat it adds. Many commands
// remove a file or two (a lease, a helper's pid file, a temporary), `run --rm` among them.
import { unlinkSync } from "node:fs";

/** Removes file; nothing happens when it is not there. Other errors (EISDIR, EACCES) throw. */
export function removeFile(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
