// Random bytes for ids and temporary names, read from /dev/urandom. node:crypto takes ~8 ms to
// load on a slow machine, a noticeable part of a container start, and these uses need nothing
// but the kernel's random bytes (what crypto.randomBytes returns too).
import { closeSync, openSync, readSync } from "node:fs";

let pool = Buffer.alloc(0);

/** count random bytes. */
export function randomBytes(count: number): Buffer {
  if (pool.length < count) {
    const fresh = Buffer.alloc(Math.max(256, count));
    const fd = openSync("/dev/urandom", "r");
    try {
      for (let off = 0; off < fresh.length; ) {
        const n = readSync(fd, fresh, off, fresh.length - off, null);
        if (n <= 0) throw new Error("/dev/urandom: short read");
        off += n;
      }
    } finally {
      closeSync(fd);
    }
    pool = fresh;
  }
  const out = Buffer.from(pool.subarray(0, count));
  // Never hand out the same bytes twice.
  pool.fill(0, 0, count);
  pool = pool.subarray(count);
  return out;
}
