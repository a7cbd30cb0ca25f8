// Blocking the thread for a moment, where there is nothing else to do meanwhile (a full or empty
// non-blocking pipe, a signal or process we wait for with a deadline). Atomics.wait is the one
// sleep Node allows on its main thread without spinning.
const cell = new Int32Array(new SharedArrayBuffer(4));

/** Sleeps ms milliseconds, blocking the thread. */
export function sleepSync(ms: number): void {
  Atomics.wait(cell, 0, 0, ms);
}
