// withLock (src/store/atomic.ts): the store lock of one process, on top of flock. A nested call
// that passes the HeldLock it was given runs at once, concurrent tasks take turns, and a HeldLock
// (or a task started inside a lock) proves nothing once that lock is released.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { withLock, type HeldLock } from "../../src/store/atomic.js";

const dir = mkdtempSync(path.join(tmpdir(), "tsrun-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const lockFile = path.join(dir, "lock");
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

describe("withLock", () => {
  it("runs a nested call for the same lock at once instead of waiting for itself", async () => {
    const order: string[] = [];
    await withLock(lockFile, async (held) => {
      order.push("outer");
      await tick();
      await withLock(
        lockFile,
        async () => {
          await tick();
          order.push("inner");
        },
        held,
      );
      order.push("outer done");
    });
    expect(order).toEqual(["outer", "inner", "outer done"]);
  });

  it("lets concurrent tasks of one process hold the lock one after the other", async () => {
    let inside = 0;
    let most = 0;
    const task = (): Promise<void> =>
      withLock(lockFile, async () => {
        inside++;
        most = Math.max(most, inside);
        await tick();
        await tick();
        inside--;
      });
    await Promise.all([task(), task(), task(), task()]);
    expect(most).toBe(1);
  });

  it("makes a task started inside a lock wait for the lock once that lock is released", async () => {
    const order: string[] = [];
    let started: Promise<void> | undefined;
    let second: Promise<void> | undefined;
    await withLock(lockFile, async () => {
      // Starts inside the lock, takes the lock only after it was released.
      started = (async () => {
        await tick();
        await tick();
        await withLock(lockFile, async () => {
          order.push("late task inside");
          await tick();
          await tick();
          order.push("late task done");
        });
      })();
      order.push("first done");
    });
    // Another task queues while the late one holds the lock: it must wait for it.
    await tick();
    await tick();
    await tick();
    second = withLock(lockFile, async () => {
      order.push("second inside");
    });
    await Promise.all([started, second]);
    expect(order).toEqual(["first done", "late task inside", "late task done", "second inside"]);
  });

  it("takes the lock again for a HeldLock whose lock was released", async () => {
    let stale: HeldLock | undefined;
    await withLock(lockFile, (held) => {
      stale = held;
    });
    expect(stale?.active).toBe(false);
    const order: string[] = [];
    let holderInside!: () => void;
    const inside = new Promise<void>((r) => (holderInside = r));
    const holder = withLock(lockFile, async () => {
      holderInside();
      await tick();
      await tick();
      order.push("holder done");
    });
    await inside;
    await withLock(lockFile, () => order.push("stale token's call"), stale);
    await holder;
    expect(order).toEqual(["holder done", "stale token's call"]);
  });

  it("releases the lock when fn throws", async () => {
    await expect(
      withLock(lockFile, () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    await expect(withLock(lockFile, () => "again")).resolves.toBe("again");
  });
});
