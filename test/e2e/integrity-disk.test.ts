// A full disk during pull, load, import, commit or build: one line naming the problem, status 125
// (a build's failure: 1, as docker build), and
// the store exactly as before (same images, `system check` clean, no temporaries left); with the
// space back, the same command works. The store lives on a small tmpfs (mounted by the suite,
// which runs as root) that a filler file leaves a chosen number of bytes free on, so the disk
// fills up at different steps: the blob download, the unpack, the metadata, the index.
// TSRUN_DISK_LEVELS sets how many free-space levels each operation is tried at.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { env, scratchDir, tsrun } from "./helpers.js";
import { stopRegistry } from "./registry-server.js";
import { checkStore, countFromEnv, exists, makeFixtures, must, reportCounts, seededRandom, suiteSeed, type Fixtures } from "./faults.js";

type Env = Record<string, string>;

const seed = suiteSeed();
const random = seededRandom(seed);
const counts = { diskFullCases: 0, diskFullErrors: 0 };
const LEVELS = [8_000, 120_000, 330_000, 520_000, 700_000, 900_000];
const levelsPerOperation = Math.min(countFromEnv("TSRUN_DISK_LEVELS", 2), LEVELS.length);

let fixtures: Fixtures;
let mountPoint: string;
let store: Env;
let smallTar: string;
/** A build context: a COPY of 300 kB of random bytes, then a RUN. */
let buildContext: string;

function freeBytes(): number {
  const s = statfsSync(mountPoint);
  return s.bavail * s.bsize;
}

/** Leaves about `bytes` free on the tmpfs (a root-owned filler file). */
function fillTo(bytes: number): void {
  unfill();
  const size = freeBytes() - bytes;
  if (size > 0) execFileSync("fallocate", ["-l", String(size), path.join(mountPoint, "filler")]);
}

function unfill(): void {
  rmSync(path.join(mountPoint, "filler"), { force: true });
}

async function imagesList(): Promise<string> {
  return must(["images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"], store);
}

beforeAll(async () => {
  fixtures = await makeFixtures("disk", 300_000);
  mountPoint = scratchDir("tmpfs");
  const owner = env.user ? `,uid=${env.user.uid},gid=${env.user.gid}` : "";
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=12m,mode=0755${owner}`, "tmpfs", mountPoint]);
  store = { TSRUN_ROOT: path.join(mountPoint, "store") };
  await must(["import", env.busyboxTar, "bb"], store);
  await must(["run", "--name", "big", "--network", "none", "bb", "sh", "-c", "head -c 300000 /dev/urandom > /big"], store);
  // A one-file layer: 300 kB of random bytes.
  const dir = scratchDir("small-layer");
  mkdirSync(path.join(dir, "root"));
  writeFileSync(path.join(dir, "root", "data"), randomBytes(300_000));
  smallTar = path.join(dir, "small.tar");
  execFileSync("tar", ["-C", path.join(dir, "root"), "-cf", smallTar, "."]);
  chmodSync(smallTar, 0o644);
  // Outside the tmpfs: only what the build writes to the store fills it.
  buildContext = scratchDir("disk-build");
  writeFileSync(path.join(buildContext, "data"), randomBytes(300_000));
  writeFileSync(path.join(buildContext, "Dockerfile"), "FROM bb\nCOPY data /data\nRUN echo ran > /ran\n");
  execFileSync("chmod", ["-R", "a+rX", buildContext]);
}, 300_000);

afterAll(() => {
  if (fixtures) stopRegistry(fixtures.registry);
  if (mountPoint) execFileSync("umount", ["-l", mountPoint]);
  reportCounts("disk", counts);
  console.log(`full disk: seed ${seed}, ${counts.diskFullCases} cases, ${counts.diskFullErrors} ran out of space`);
});

interface Operation {
  name: string;
  args: () => string[];
  /** The image name it makes, removed after each case. */
  result: string;
  /** Its status on failure (125 unless said). */
  failureCode?: number;
  /** Before each case: what makes it start from nothing again. */
  reset?: string[];
  /** Free-space levels (LEVELS unless said); the first is always tried. */
  levels?: number[];
}

const operations: Operation[] = [
  { name: "pull", args: () => ["pull", "-q", fixtures.pullRef], result: "" },
  { name: "load", args: () => ["load", "-q", "-i", fixtures.archive], result: "layered:1" },
  { name: "import", args: () => ["import", smallTar, "small:1"], result: "small:1" },
  { name: "commit", args: () => ["commit", "big", "committed:1"], result: "committed:1" },
  // -q: the RUN's own output (a command of the Dockerfile that hit the full disk) is not ours.
  { name: "build", args: () => ["build", "-q", "--network", "none", "-t", "built:1", buildContext], result: "built:1", failureCode: 1, reset: ["builder", "prune", "-a", "-f"],
    // 640 kB: the COPY fits, the RUN container's files do not (its removal must still happen).
    levels: [640_000, ...LEVELS] },
];

describe(`a full disk (tmpfs store, seed ${seed})`, () => {
  for (const op of operations) {
    it(`${op.name}: one-line error, the store as before, then it works with space`, async () => {
      const result = op.result || fixtures.pullRef;
      // Levels in a seeded order; the first is always tried (the smallest: fails at once).
      const all = op.levels ?? LEVELS;
      const rest = all.slice(1).sort(() => random() - 0.5);
      const levels = [all[0] as number, ...rest].slice(0, op.levels ? levelsPerOperation + 1 : levelsPerOperation);
      for (const level of levels) {
        const what = `${op.name} with ${level} bytes free (seed ${seed})`;
        if (op.reset) await must(op.reset, store);
        const before = await imagesList();
        fillTo(level);
        const r = await tsrun(op.args(), { env: store });
        counts.diskFullCases++;
        if (r.code === 0) {
          // It fitted: undone for the next level.
          unfill();
          await must(["rmi", result], store);
        } else {
          counts.diskFullErrors++;
          expect(r.code, `${what}: ${r.stderr}`).toBe(op.failureCode ?? 125);
          // A build's RUN command may be what meets the full disk: its status is then the error.
          const diskFull = op.name === "build" ? /^Error: [^\n]*(no space left on device|returned a non-zero code)[^\n]*\n$/ : /^Error: [^\n]*no space left on device[^\n]*\n$/;
          expect(r.stderr, what).toMatch(diskFull);
          const check = await checkStore(store);
          expect(check.findings, `${what}: ${check.raw}`).toEqual([]);
          unfill();
          expect(await imagesList(), what).toBe(before);
        }
      }
      // With the space back, it works.
      unfill();
      await must(op.args(), store);
      expect(await exists("image", result, store)).toBe(true);
      await must(["rmi", result], store);
      const check = await checkStore(store);
      expect(check.findings, check.raw).toEqual([]);
    }, 300_000);
  }
});
