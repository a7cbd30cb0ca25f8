// How a storage worker (src/store/worker.ts) is started: the command line every caller runs
// inside the user namespace. Bundled (dist/worker.cjs) so that it starts fast and needs no
// node_modules at run time.
import path from "node:path";
import { packageRoot } from "../native.js";

/**
 * V8's young generation held at 1 MiB per semi-space (by default it grows to 16 MiB). A worker
 * walks or writes tens of thousands of entries, each leaving a little garbage: a young generation
 * that keeps growing means ever fresh pages, and a page fault costs ~20 us on this project's
 * machines. `export` of a 27,753-entry container: 24.4k -> 16.8k page faults, 12 % less CPU;
 * `load` of a 99 MB archive unchanged.
 */
const V8_FLAGS = ["--max-semi-space-size=1"];

/** The argv that runs worker command `args` (Node, its flags, the bundled worker, the arguments). */
export function workerCommand(...args: string[]): string[] {
  return [process.execPath, ...V8_FLAGS, path.join(packageRoot(), "dist", "worker.cjs"), ...args];
}
