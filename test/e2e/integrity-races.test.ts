// Many tsrun processes on one store at once never corrupt it nor delete what another uses.
//  - Exact interleavings: an operation is stopped at one of its crash points (TSRUN_FAULT with
//    ":stop"), deleters run meanwhile, then it goes on: it must complete, and what it uses must
//    still be there.
//  - Free-for-all rounds: pulls of one image, imports of one tarball, runs, a build, rmi, rm,
//    prune and volume commands started together; each either succeeds or fails with a one-line error a
//    race explains, and the store passes `system check` afterwards. TSRUN_RACE_ROUNDS sets the
//    number of rounds (bench/faults.sh runs more).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { env, scratchDir, tsrun } from "./helpers.js";
import { stopRegistry } from "./registry-server.js";
import { checkStore, countFromEnv, exists, makeFixtures, must, reportCounts, seededRandom, startPausedAt, suiteSeed, type Fixtures } from "./faults.js";

type Env = Record<string, string>;

let fixtures: Fixtures;
/** A build context: FROM bb, a COPY and a RUN step. */
let buildContext: string;
const seed = suiteSeed();
const random = seededRandom(seed);
const counts = { racesRun: 0, interleavings: 0 };

beforeAll(async () => {
  fixtures = await makeFixtures("races", 100_000);
  buildContext = scratchDir("races-build");
  writeFileSync(path.join(buildContext, "f.txt"), "data\n");
  writeFileSync(path.join(buildContext, "Dockerfile"), "FROM bb\nCOPY f.txt /f.txt\nRUN echo ran > /ran\n");
}, 300_000);

afterAll(() => {
  if (fixtures) stopRegistry(fixtures.registry);
  reportCounts("races", counts);
  console.log(`races: seed ${seed}, ${counts.racesRun} concurrent commands, ${counts.interleavings} exact interleavings`);
});

async function freshStore(label: string): Promise<Env> {
  const store = { TSRUN_ROOT: scratchDir(`store-races-${label}`) };
  await must(["import", env.busyboxTar, "bb"], store);
  return store;
}

async function expectSound(store: Env, what: string): Promise<void> {
  const check = await checkStore(store);
  expect(check.findings, `${what}: ${check.raw}`).toEqual([]);
  expect(check.code).toBe(0);
}

describe("an operation paused at a crash point while others delete", () => {
  it("a pull that has downloaded its blobs survives image prune -a and system check --repair", async () => {
    const store = await freshStore("pull");
    const pull = await startPausedAt(["pull", "-q", fixtures.pullRef], store, "pull:blob-downloaded");
    await must(["image", "prune", "-a", "-f"], store);
    await must(["system", "check", "--repair"], store);
    const r = await pull.resume();
    expect(r.code, r.stderr).toBe(0);
    expect(await must(["run", "--rm", "--network", "none", fixtures.pullRef, "sh", "-c", "test -s /random.bin && echo ok"], store)).toBe("ok\n");
    await expectSound(store, "after the pull");
    counts.interleavings++;
  });

  it("a load that found its base layer in the store keeps it through rmi and prune", async () => {
    const store = await freshStore("load");
    // The archive's base layer is busybox's: the load reuses the store's and leases it.
    const load = await startPausedAt(["load", "-q", "-i", fixtures.archive], store, "load:unpacked");
    await must(["rmi", "bb"], store);
    await must(["image", "prune", "-a", "-f"], store);
    const r = await load.resume();
    expect(r.code, r.stderr).toBe(0);
    expect(await must(["run", "--rm", "--network", "none", "layered:1", "sh", "-c", "test -s /random.bin && echo ok"], store)).toBe("ok\n");
    await expectSound(store, "after the load");
    counts.interleavings++;
  });

  it("a container being created keeps its image and volume: rmi is refused, prune and volume rm leave them", async () => {
    const store = await freshStore("create");
    await must(["volume", "create", "keep"], store);
    const id = (await must(["image", "inspect", "--format", "{{.Id}}", "bb"], store)).trim();
    const run = await startPausedAt(["run", "--name", "made", "--network", "none", "-v", "keep:/k", "bb", "sh", "-c", "echo kept > /k/f"], store, "create:prepared");
    const rmi = await tsrun(["rmi", id], { env: store });
    expect(rmi.code).toBe(125);
    expect(rmi.stderr).toMatch(/^Error: conflict: unable to delete [0-9a-f]{12} \(must be forced\) - image is being used by an operation in progress: create made \(pid \d+\)\n$/);
    await must(["image", "prune", "-a", "-f"], store);
    const vol = await tsrun(["volume", "rm", "keep"], { env: store });
    expect(vol.code).toBe(125);
    expect(vol.stderr).toMatch(/volume keep is in use by an operation in progress: create made/);
    const r = await run.resume();
    expect(r.code, r.stderr).toBe(0);
    expect(await must(["run", "--rm", "--network", "none", "-v", "keep:/k", "bb", "cat", "/k/f"], store)).toBe("kept\n");
    await expectSound(store, "after the run");
    counts.interleavings++;
  });

  it("a build stopped after its RUN keeps its base image, its cache hit and its container through rmi, prunes and check --repair", async () => {
    const store = await freshStore("build");
    const dir = scratchDir("races-build-own");
    writeFileSync(path.join(dir, "f.txt"), "data\n");
    writeFileSync(path.join(dir, "Dockerfile"), "FROM bb\nCOPY f.txt /f.txt\nRUN echo first > /ran\n");
    // A first build whose image goes: its COPY layer is then held by the cache alone.
    await must(["build", "-q", "--network", "none", "-t", "first", dir], store);
    await must(["rmi", "first"], store);
    writeFileSync(path.join(dir, "Dockerfile"), "FROM bb\nCOPY f.txt /f.txt\nRUN echo second > /ran\n");
    const build = await startPausedAt(["build", "-q", "--network", "none", "-t", "second", dir], store, "build:run-exited");
    const rmi = await tsrun(["rmi", "bb"], { env: store });
    expect(rmi.code).toBe(125);
    expect(rmi.stderr).toMatch(/^Error: conflict: unable to remove repository reference "bb" \(must force\) - [^\n]*\n$/);
    for (const args of [["image", "prune", "-a", "-f"], ["builder", "prune", "-a", "-f"], ["system", "prune", "-a", "-f"], ["container", "prune", "-f"], ["system", "check", "--repair"]]) await must(args, store);
    const r = await build.resume();
    expect(r.code, r.stderr).toBe(0);
    expect(await must(["run", "--rm", "--network", "none", "second", "cat", "/f.txt", "/ran"], store)).toBe("data\nsecond\n");
    await expectSound(store, "after the build");
    // The cache entries the build used or made stayed: the same build runs nothing.
    const again = await must(["build", "--network", "none", "-t", "second", dir], store);
    expect(again.match(/^--> Using cache /gm)?.length, again).toBe(2);
    counts.interleavings++;
  });

  it("an import whose layer another image's removal deletes meanwhile still records a complete image", async () => {
    const store = await freshStore("import");
    await must(["import", fixtures.importTar, "first"], store);
    // The second import stages the same tarball, then the first image (same layer) goes.
    const imp = await startPausedAt(["import", fixtures.importTar, "second"], store, "import:unpacked");
    await must(["rmi", "first"], store);
    const r = await imp.resume();
    expect(r.code, r.stderr).toBe(0);
    expect(await must(["run", "--rm", "--network", "none", "second", "echo", "ok"], store)).toBe("ok\n");
    await expectSound(store, "after the import");
    counts.interleavings++;
  });
});

/** Errors a lost race explains (the other command won); anything else is a failure. */
const RACE_ERRORS = [
  /No such image|image not known/,
  /no such container/i,
  /conflict: unable to (delete|remove)/,
  /is already in use by container/,
  /volume \S+ is in use by/,
  /no such volume/,
];

describe("free-for-all on one store", () => {
  const rounds = countFromEnv("TSRUN_RACE_ROUNDS", 1);
  it(`${rounds} round(s) of pulls, imports, runs, a build, rm, rmi, prune and volume commands at once (seed ${seed})`, async () => {
    const store = await freshStore("free");
    for (let round = 0; round < rounds; round++) {
      await must(["create", "--name", `stopped${round}`, "--network", "none", "bb", "true"], store);
      await must(["import", env.busyboxTar, `spare${round}`], store);
      const commands: string[][] = [
        ["pull", "-q", fixtures.pullRef],
        ["pull", "-q", fixtures.pullRef],
        ["pull", "-q", fixtures.pullRef],
        ["import", fixtures.importTar, "same"],
        ["import", fixtures.importTar, "same"],
        // --pull never: a run that loses bb to the prune says so instead of trying Docker Hub.
        ["run", "--rm", "--pull", "never", "--network", "none", "-v", "shared:/s", "bb", "sh", "-c", "echo x > /s/f"],
        ["run", "--rm", "--pull", "never", "--network", "none", "bb", "true"],
        ["build", "-q", "--pull", "never", "--network", "none", "-t", "racebuilt", buildContext],
        ["rm", `stopped${round}`],
        ["rmi", `spare${round}`],
        ["image", "prune", "-a", "-f"],
        ["volume", "prune", "-f"],
        ["system", "prune", "-f"],
      ];
      // A different start order every round.
      for (let i = commands.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [commands[i], commands[j]] = [commands[j] as string[], commands[i] as string[]];
      }
      const results = await Promise.all(commands.map((args) => tsrun(args, { env: store, timeout: 120_000 })));
      counts.racesRun += commands.length;
      results.forEach((r, i) => {
        const what = `round ${round + 1} (seed ${seed}): tsrun ${commands[i]?.join(" ")}`;
        if (r.code === 0) return;
        // rm exits 1 when a container is gone, as Docker's does, and a failed build as docker
        // build; the others 125.
        expect(r.code, `${what}: ${r.stderr}`).toBe(commands[i]?.[0] === "rm" || commands[i]?.[0] === "build" ? 1 : 125);
        const lines = r.stderr.trim().split("\n");
        expect(lines.length, `${what}: ${r.stderr}`).toBe(1);
        expect(RACE_ERRORS.some((re) => re.test(r.stderr)), `${what}: ${r.stderr}`).toBe(true);
      });
      await expectSound(store, `after round ${round + 1} (seed ${seed})`);
      // Every image that survived the round is whole: it runs.
      const ids = [...new Set((await must(["images", "-q", "--no-trunc"], store)).split("\n").filter(Boolean))];
      for (const id of ids) expect(await must(["run", "--rm", "--network", "none", id, "true"], store)).toBe("");
      if (!(await exists("image", "bb", store))) await must(["import", env.busyboxTar, "bb"], store);
    }
  }, 600_000);
});
