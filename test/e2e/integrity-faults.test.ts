// kill -9 at any point of a multi-step operation leaves a store that `system check` finds free
// of damage (leftovers of the killed process allowed), the next command works, and after it the
// check passes outright. Each trial crashes one operation either at one of the crash points it
// passes (TSRUN_FAULT, listed by a traced run) or after a random delay; trials are picked from a
// seed printed with every failure (TSRUN_FAULT_SEED=N reproduces the picks). TSRUN_FAULT_TRIALS
// sets the number of trials per operation (bench/faults.sh runs many more).
//
// A new operation joins with one entry in `operations`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { env, scratchDir } from "./helpers.js";
import { stopRegistry } from "./registry-server.js";
import { busyboxPlusRandom, checkStore, countFromEnv, damaged, describeFault, exists, makeFixtures, must, reportCounts, runWithFault, seededRandom, suiteSeed, tracePoints, type Fault, type Fixtures } from "./faults.js";

type Env = Record<string, string>;

interface Operation {
  name: string;
  /** Once, before its trials (the store has busybox as "bb"). */
  setup?(store: Env): Promise<void>;
  /** Before each trial: the store as the operation expects it. */
  prepare?(store: Env): Promise<void>;
  args: string[];
  /**
   * After the crash: what a user runs next; throws unless it works. passed: the crash points
   * the killed run had passed, its last one included (empty when it was killed after a delay).
   */
  next(store: Env, passed: string[]): Promise<void>;
}

const seed = suiteSeed();
const random = seededRandom(seed);
const trialsPerOperation = countFromEnv("TSRUN_FAULT_TRIALS", 1);
const counts: Record<string, number> = { faultsInjected: 0, faultsSurvived: 0, trials: 0 };
const bump = (key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

let fixtures: Fixtures;
/** One store for all operations, as a user's store: each leaves it sound for the next. */
let store: Env;
let pullRef: string;
let archive: string;
let importTar: string;
/** Layers of their own for rmi and prune, so that deleting them deletes layer dirs. */
let doomedTar: string;
let prunedTar: string;
/** A build context: a COPY and a RUN layer (files of another uid), a config step. */
let buildContext: string;

const operations: Operation[] = [
  {
    name: "pull",
    prepare: async (s) => {
      if (await exists("image", pullRef, s)) await must(["rmi", pullRef], s);
    },
    get args() {
      return ["pull", "-q", pullRef];
    },
    next: async (s) => {
      await must(["pull", "-q", pullRef], s);
      expect(await must(["run", "--rm", "--network", "none", pullRef, "sh", "-c", "test -s /random.bin && echo ok"], s)).toBe("ok\n");
    },
  },
  {
    name: "load",
    prepare: async (s) => {
      // The pulled image is the same one: without removing it, load would only add a name.
      for (const name of ["layered:1", pullRef]) if (await exists("image", name, s)) await must(["rmi", name], s);
    },
    get args() {
      return ["load", "-q", "-i", archive];
    },
    next: async (s) => {
      await must(["load", "-q", "-i", archive], s);
      expect(await must(["run", "--rm", "--network", "none", "layered:1", "sh", "-c", "test -s /random.bin && echo ok"], s)).toBe("ok\n");
    },
  },
  {
    name: "import",
    prepare: async (s) => {
      if (await exists("image", "imported:1", s)) await must(["rmi", "imported:1"], s);
    },
    get args() {
      return ["import", importTar, "imported:1"];
    },
    next: async (s) => {
      await must(["import", importTar, "imported:1"], s);
      expect(await must(["run", "--rm", "--network", "none", "imported:1", "echo", "ok"], s)).toBe("ok\n");
    },
  },
  {
    name: "commit",
    setup: async (s) => {
      await must(["run", "--name", "src", "--network", "none", "bb", "sh", "-c", "echo data > /committed; mkdir -p /d && chown 1000:1000 /d"], s);
    },
    prepare: async (s) => {
      if (await exists("image", "committed:1", s)) await must(["rmi", "committed:1"], s);
    },
    args: ["commit", "src", "committed:1"],
    next: async (s) => {
      await must(["commit", "src", "committed:1"], s);
      expect(await must(["run", "--rm", "--network", "none", "committed:1", "cat", "/committed"], s)).toBe("data\n");
    },
  },
  {
    name: "rm",
    prepare: async (s) => {
      if (await exists("container", "victim", s)) await must(["rm", "-f", "-v", "victim"], s);
      await must(["run", "--name", "victim", "--network", "none", "-v", "/anon", "bb", "sh", "-c", "mkdir /x && touch /x/f && chown -R 1000:1000 /x /anon"], s);
    },
    args: ["rm", "-v", "victim"],
    next: async (s) => {
      if (await exists("container", "victim", s)) await must(["rm", "-v", "victim"], s);
      // The name is free again.
      await must(["create", "--name", "victim", "--network", "none", "bb", "true"], s);
      await must(["rm", "victim"], s);
    },
  },
  {
    name: "rmi",
    prepare: async (s) => {
      await must(["import", doomedTar, "doomed:1"], s);
    },
    args: ["rmi", "doomed:1"],
    next: async (s) => {
      if (await exists("image", "doomed:1", s)) await must(["rmi", "doomed:1"], s);
      expect(await must(["run", "--rm", "--network", "none", "bb", "echo", "ok"], s)).toBe("ok\n");
    },
  },
  {
    name: "image prune",
    prepare: async (s) => {
      await must(["import", prunedTar], s);
    },
    args: ["image", "prune", "-f"],
    next: async (s) => {
      await must(["image", "prune", "-f"], s);
      expect(await must(["images", "--format", "{{.Repository}}"], s)).not.toContain("<none>");
      expect(await must(["run", "--rm", "--network", "none", "bb", "echo", "ok"], s)).toBe("ok\n");
    },
  },
  {
    name: "volume rm",
    prepare: async (s) => {
      if (!(await exists("volume", "data", s))) await must(["volume", "create", "data"], s);
      // Files of another uid: only removable inside the user namespace.
      await must(["run", "--rm", "--network", "none", "-v", "data:/d", "bb", "sh", "-c", "mkdir -p /d/x && touch /d/x/f && chown -R 1000:1000 /d/x"], s);
    },
    args: ["volume", "rm", "data"],
    next: async (s) => {
      if (await exists("volume", "data", s)) await must(["volume", "rm", "data"], s);
      await must(["volume", "create", "data"], s);
      expect(await must(["run", "--rm", "--network", "none", "-v", "data:/d", "bb", "ls", "/d"], s)).toBe("");
    },
  },
  {
    name: "run",
    args: ["run", "--rm", "--name", "runner", "--network", "none", "-v", "/anon", "-v", "named:/n", "bb", "sh", "-c", "echo hi > /n/f"],
    next: async (s) => {
      // A killed foreground run leaves its container stopped (nothing ran its --rm).
      if (await exists("container", "runner", s)) await must(["rm", "-v", "runner"], s);
      await must(["run", "--rm", "--name", "runner", "--network", "none", "-v", "named:/n", "bb", "cat", "/n/f"], s);
    },
  },
  {
    name: "build",
    setup: async () => {
      buildContext = scratchDir("build-context");
      writeFileSync(path.join(buildContext, "f.txt"), "data\n");
      writeFileSync(path.join(buildContext, "Dockerfile"), "FROM bb\nCOPY f.txt /f.txt\nRUN echo ran > /ran && chown 1000:1000 /ran\nENV BUILT=1\n");
    },
    prepare: async (s) => {
      // No image and no cache: every step runs, and every crash point is reached.
      if (await exists("image", "built:1", s)) await must(["rmi", "built:1"], s);
      await must(["builder", "prune", "-a", "-f"], s);
    },
    get args() {
      return ["build", "-q", "--network", "none", "-t", "built:1", buildContext];
    },
    next: async (s, passed) => {
      const out = await must(["build", "--network", "none", "-t", "built:1", buildContext], s);
      // Each layer step whose layer and cache entry were stored before the kill is reused.
      const complete = passed.filter((p) => /^build:cache-written(@\d+)?$/.test(p)).length;
      expect((out.match(/^--> Using cache /gm) ?? []).length, out).toBeGreaterThanOrEqual(complete);
      expect(await must(["run", "--rm", "--network", "none", "built:1", "sh", "-c", "cat /f.txt /ran; echo $BUILT"], s)).toBe("data\nran\n1\n");
    },
  },
];

beforeAll(async () => {
  fixtures = await makeFixtures("faults");
  ({ pullRef, archive, importTar } = fixtures);
  doomedTar = busyboxPlusRandom("doomed", 100_000);
  prunedTar = busyboxPlusRandom("pruned", 100_000);
  store = { TSRUN_ROOT: scratchDir("store-faults") };
  await must(["import", env.busyboxTar, "bb"], store);
}, 300_000);

afterAll(() => {
  if (fixtures) stopRegistry(fixtures.registry);
  reportCounts("faults", counts);
  console.log(`fault injection: seed ${seed}, ${counts.faultsInjected} faults injected, ${counts.faultsSurvived} survived, ${counts.trials} trials`);
});

describe(`kill -9 during store operations (seed ${seed})`, () => {
  for (const op of operations) {
    it(`${op.name}: the store stays sound and the next command works`, async () => {
      await op.setup?.(store);
      await op.prepare?.(store);
      const traced = await tracePoints(op.args, store);
      expect(traced.outcome.code, traced.outcome.stderr).toBe(0);
      expect(traced.points.length).toBeGreaterThan(0);
      counts[`points ${op.name}`] = Math.max(counts[`points ${op.name}`] ?? 0, traced.points.length);
      // The points in a seeded order, taken one after the other: enough trials cover them all.
      const points = [...traced.points];
      for (let i = points.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [points[i], points[j]] = [points[j] as string, points[i] as string];
      }
      let nextPoint = 0;
      for (let trial = 0; trial < trialsPerOperation; trial++) {
        await op.prepare?.(store);
        // Mostly named points (every step boundary), sometimes a delay (wherever it lands).
        const fault: Fault =
          random() < 0.75 ? { point: points[nextPoint++ % points.length] as string } : { delayMs: Math.floor(random() * traced.outcome.ms) };
        const where = `${op.name} killed ${describeFault(fault)} (seed ${seed}, trial ${trial + 1}; points: ${traced.points.join(" ")})`;
        const r = await runWithFault(op.args, store, fault);
        bump("trials");
        if (r.killed) {
          bump("faultsInjected");
          bump(`injected ${op.name}`);
          bump(fault.point ? "atPoint" : "afterDelay");
        }
        else expect(r.code, `${where}: ${r.stderr}`).toBe(0);
        const after = await checkStore(store);
        expect(damaged(after), `${where}: damage right after the crash: ${after.raw}`).toEqual([]);
        const passed = fault.point ? traced.points.slice(0, traced.points.indexOf(fault.point) + 1) : [];
        await op.next(store, passed).catch((err: Error) => {
          throw new Error(`${where}: the next command: ${err.message}`);
        });
        const final = await checkStore(store);
        expect(final.findings, `${where}: after the next command: ${final.raw}`).toEqual([]);
        expect(final.code).toBe(0);
        if (r.killed) {
          bump("faultsSurvived");
          bump(`survived ${op.name}`);
        }
      }
      // Nothing left that a repair would still have to remove.
      const repaired = await checkStore(store, ["--repair"]);
      expect(repaired.ok, repaired.raw).toBe(true);
    }, 300_000);
  }
});
