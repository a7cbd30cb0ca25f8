// Image commands end to end: images (--format, -q, --digests, --no-trunc), inspect (images and
// containers, Docker's JSON shape, Go templates), tag, rmi (untag versus delete, refusal while
// used, -f), image prune, history, and their errors.
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { env, filesDir, importBusybox, scratchDir, tsrun, unique, tsrunOk } from "./helpers.js";

const ok = (args: string[]): Promise<string> => tsrunOk(args);

function storeSnapshot(): string {
  const list = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith(".tmp")).sort() : []);
  const index = existsSync(path.join(env.storeRoot, "images", "index.json")) ? readFileSync(path.join(env.storeRoot, "images", "index.json"), "utf8") : "";
  return JSON.stringify({ index, layers: list(path.join(env.storeRoot, "layers")), blobs: list(path.join(env.storeRoot, "blobs", "sha256")) });
}

/** A new image with a layer of its own (so deleting it deletes a layer): a commit of a change. */
async function imageWithOwnLayer(reference: string): Promise<{ id: string; container: string }> {
  const container = unique("src");
  await ok(["run", "--name", container, "busybox", "sh", "-c", `echo ${reference} > /own`]);
  const id = (await ok(["commit", container, reference])).trim();
  return { id, container };
}

let busyboxId = "";

beforeAll(async () => {
  busyboxId = await importBusybox("busybox");
});

describe("images", () => {
  it("lists with --format (template, table, json), -q, --digests, --no-trunc and a reference filter", async () => {
    const repo = unique("imgls");
    await ok(["import", "-m", "for images", env.busyboxTar, `${repo}:1`]);
    const id = JSON.parse(await ok(["inspect", "-f", "{{json .Id}}", `${repo}:1`])) as string;
    const short = id.slice(7, 19);

    const table = await ok(["images"]);
    expect(table.split("\n")[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(table).toMatch(new RegExp(`^${repo}\\s+1\\s+${short}\\s+\\S.* ago\\s+\\d`, "m"));

    expect(await ok(["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", repo])).toBe(`${repo}:1 ${short}\n`);
    const custom = await ok(["images", "--format", "table {{.Repository}}\t{{.Tag}}", repo]);
    expect(custom).toMatch(new RegExp(`^REPOSITORY\\s+TAG\\n${repo}\\s+1\\n$`));
    const json = JSON.parse((await ok(["images", "--format", "json", repo])).trim()) as Record<string, string>;
    expect(Object.keys(json)).toEqual(["Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize"]);
    expect(json.ID).toBe(short);
    expect(json.CreatedAt).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+$/);
    expect(json.Size).toMatch(/^[\d.]+[kMG]?B$/);

    const quiet = (await ok(["images", "-q"])).trim().split("\n");
    expect(quiet).toContain(short);
    expect(quiet.every((l) => /^[a-f0-9]{12}$/.test(l))).toBe(true);
    expect(new Set(quiet).size).toBe(quiet.length);
    expect((await ok(["images", "-q", "--no-trunc", repo])).trim()).toBe(id);
    const digests = await ok(["images", "--digests", repo]);
    expect(digests.split("\n")[0]).toMatch(/^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(digests.split("\n")[1]).toMatch(new RegExp(`^${repo}\\s+1\\s+<none>\\s+${short}`));
    expect(await ok(["images", `${repo}:2`])).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\n$/);
    expect((await ok(["image", "ls", "-q", repo])).trim()).toBe(short);
  });
});

describe("inspect", () => {
  it("shows images as Docker does, with Go templates", async () => {
    const repo = unique("insp");
    await ok(["tag", "busybox", `${repo}:a`]);
    const [image] = JSON.parse(await ok(["inspect", `${repo}:a`])) as Record<string, unknown>[];
    expect(Object.keys(image ?? {})).toEqual([
      "Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata",
    ]);
    expect(image?.Id).toBe(busyboxId);
    expect(image?.RepoTags).toContain(`${repo}:a`);
    expect(image?.RepoTags).toContain("busybox:latest");
    expect(image?.Os).toBe("linux");
    expect(image?.RootFS).toEqual({ Type: "layers", Layers: [expect.stringMatching(/^sha256:[a-f0-9]{64}$/)] });
    expect(typeof image?.Size).toBe("number");

    expect((await ok(["inspect", "-f", "{{.Id}}", `${repo}:a`])).trim()).toBe(busyboxId);
    expect(JSON.parse(await ok(["image", "inspect", "--format", "{{json .Config}}", `${repo}:a`]))).toEqual({});
    expect((await ok(["inspect", "-f", "{{index .RepoTags 0}}", busyboxId.slice(7, 19)])).trim()).toMatch(/:/);
    const layers = await ok(["inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", `${repo}:a`]);
    expect(layers).toMatch(/^sha256:[a-f0-9]{64} \n$/);
    expect(await ok(["inspect", "-f", "{{.Os}}", `${repo}:a`, "busybox"])).toBe("linux\nlinux\n");
    await ok(["rmi", `${repo}:a`]);
  });

  it("shows containers as Docker does; --type picks one kind", async () => {
    const name = unique("ictr");
    expect((await tsrun(["run", "--name", name, "-e", "X=1", "busybox", "sh", "-c", "exit 3"])).code).toBe(3);
    const [ctr] = JSON.parse(await ok(["inspect", name])) as Record<string, unknown>[];
    for (const key of ["Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount", "Driver", "HostConfig", "GraphDriver", "Mounts", "Config"]) {
      expect(ctr, key).toHaveProperty(key);
    }
    expect(ctr?.Name).toBe(`/${name}`);
    expect(ctr?.Image).toBe(busyboxId);
    expect(ctr?.State).toMatchObject({ Status: "exited", Running: false, Pid: 0, ExitCode: 3 });
    expect(Object.keys(ctr?.State as object).slice(0, 11)).toEqual(["Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode", "Error", "StartedAt", "FinishedAt"]);
    expect((ctr?.Config as { Env: string[] }).Env).toContain("X=1");
    expect((ctr?.HostConfig as { RestartPolicy: unknown }).RestartPolicy).toEqual({ Name: "no", MaximumRetryCount: 0 });
    expect((await ok(["inspect", "--type", "container", "-f", "{{.Name}} {{.State.Status}} {{.State.ExitCode}}", name])).trim()).toBe(`/${name} exited 3`);

    const running = unique("irun");
    await ok(["run", "-d", "--name", running, "busybox", "sleep", "30"]);
    const state = JSON.parse(await ok(["inspect", "-f", "{{json .State}}", running])) as { Running: boolean; Pid: number; Status: string };
    expect(state.Running).toBe(true);
    expect(state.Status).toBe("running");
    expect(state.Pid).toBeGreaterThan(0);
    await tsrun(["rm", "-f", running, name]);
  });

  it("errors: unknown object, wrong --type, bad template", async () => {
    const missing = await tsrun(["inspect", "no-such-thing"]);
    expect(missing.code).toBe(125);
    expect(missing.stdout).toBe("[]\n");
    expect(missing.stderr.trim()).toBe("Error: No such object: no-such-thing");
    const wrongType = await tsrun(["inspect", "--type", "container", "busybox"]);
    expect(wrongType.code).toBe(125);
    expect(wrongType.stderr).toMatch(/No such container: busybox/);
    expect((await tsrun(["inspect", "--type", "volume", "busybox"])).code).toBe(125);
    const template = await tsrun(["inspect", "-f", "{{.Id", "busybox"]);
    expect(template.code).toBe(125);
    expect(template.stderr.trim().split("\n")).toHaveLength(1);
    expect((await tsrun(["images", "--format", "{{.Nope"])).code).toBe(125);
  });
});

describe("tag and rmi", () => {
  it("untags a name while others remain; deletes the image, its own layer and blobs with the last one", async () => {
    const repo = unique("rmi");
    const { id, container } = await imageWithOwnLayer(`${repo}:1`);
    await tsrun(["rm", container]);
    await ok(["tag", `${repo}:1`, `${repo}:2`]);
    const ids = (await ok(["images", "--format", "{{.Tag}} {{.ID}}", repo])).trim().split("\n").sort();
    expect(ids).toEqual([`1 ${id.slice(7, 19)}`, `2 ${id.slice(7, 19)}`]);
    expect(await ok(["rmi", `${repo}:2`])).toBe(`Untagged: ${repo}:2\n`);
    const top = (await ok(["inspect", "-f", "{{index .RootFS.Layers 1}}", `${repo}:1`])).trim();
    const out = await ok(["image", "rm", `${repo}:1`]);
    const lines = out.trim().split("\n");
    expect(lines[0]).toBe(`Untagged: ${repo}:1`);
    expect(lines[1]).toBe(`Deleted: ${id}`);
    expect(lines).toHaveLength(3); // and its own layer, not busybox's shared one
    const chainId = lines[2]?.replace("Deleted: ", "") ?? "";
    expect(existsSync(path.join(env.storeRoot, "layers", chainId.slice(7)))).toBe(false);
    expect(existsSync(path.join(env.storeRoot, "blobs", "sha256", top.slice(7)))).toBe(false);
    expect(existsSync(path.join(env.storeRoot, "blobs", "sha256", id.slice(7)))).toBe(false);
    // busybox's layer is still there, and busybox still runs.
    expect((await ok(["run", "--rm", "busybox", "true"]))).toBe("");
  });

  it("refuses while a container uses the image (any state), untags with -f and keeps it for the container", async () => {
    const repo = unique("used");
    const { id, container } = await imageWithOwnLayer(`${repo}:1`);
    const user = unique("user");
    await ok(["run", "--name", user, `${repo}:1`, "true"]);
    const before = (await ok(["images", "-q", "--no-trunc"])).trim();
    const refused = await tsrun(["rmi", `${repo}:1`]);
    expect(refused.code).toBe(125);
    expect(refused.stderr).toMatch(/conflict: unable to remove repository reference .* \(must force\) - container [a-f0-9]{12} is using its referenced image/);
    const byId = await tsrun(["rmi", id.slice(7, 19)]);
    expect(byId.code).toBe(125);
    expect(byId.stderr).toMatch(/image is being used by stopped container/);
    expect((await ok(["images", "-q", "--no-trunc"])).trim()).toBe(before);

    expect(await ok(["rmi", "-f", `${repo}:1`])).toBe(`Untagged: ${repo}:1\n`);
    // Still there, without a name, for the container: it runs and commits again.
    expect((await ok(["images", "-q", "--no-trunc"])).split("\n")).toContain(id);
    expect((await ok(["start", "-a", user]))).toBe("");
    await ok(["commit", user, `${repo}:again`]);
    // prune leaves an image a container uses alone.
    await ok(["image", "prune", "-f"]);
    expect((await ok(["images", "-q", "--no-trunc"])).split("\n")).toContain(id);
    await tsrun(["rm", user, container]);
    const pruned = await ok(["image", "prune", "-f"]);
    expect(pruned).toMatch(new RegExp(`^Deleted Images:\\n(.*\\n)*deleted: ${id}\\n`));
    expect(pruned).toMatch(/\nTotal reclaimed space: \S+\n$/);
    expect((await ok(["images", "-q", "--no-trunc"])).split("\n")).not.toContain(id);
    await ok(["rmi", `${repo}:again`]);
  });

  it("image prune -a removes every image no container uses; without -f it asks", async () => {
    const repo = unique("prune");
    const { container } = await imageWithOwnLayer(`${repo}:1`);
    await tsrun(["rm", container]);
    const declined = await tsrun(["image", "prune", "-a"], { input: "n\n" });
    expect(declined.code).toBe(0);
    expect(declined.stdout).toMatch(/WARNING! This will remove all images without at least one container associated to them/);
    expect(await ok(["images", "-q", repo])).not.toBe("");
    const all = await ok(["image", "prune", "-a", "-f"]);
    expect(all).toMatch(new RegExp(`untagged: ${repo}:1`));
    expect(await ok(["images", "-q", repo])).toBe("");
    // Other test files import busybox again as they need it; this file does too.
    await importBusybox("busybox");
  });

  it("image prune and system prune --filter: until= (the image's creation), label=, label!=; a bad key is one line", async () => {
    const e = { env: { TSRUN_ROOT: scratchDir("store-prune-filter") } };
    const run = async (args: string[]): Promise<string> => {
      const r = await tsrun(args, e);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    const tar = path.join(env.base, "busybox.tar");
    await run(["import", "-c", "LABEL keep=yes", tar, "keep:1"]);
    await run(["import", "-c", "LABEL keep=no", tar, "drop:1"]);
    await run(["import", "-c", "LABEL other=1", tar, "other:1"]);
    expect(await run(["image", "prune", "-a", "-f", "--filter", "until=2000-01-01T00:00:00Z"])).toBe("Total reclaimed space: 0B\n");
    expect(await run(["image", "prune", "-a", "-f", "--filter", "label=keep=no"])).toMatch(/^Deleted Images:\nuntagged: drop:1\n/);
    expect(await run(["image", "prune", "-a", "-f", "--filter", "label!=keep"])).toMatch(/^Deleted Images:\nuntagged: other:1\n/);
    expect((await run(["images", "--format", "{{.Repository}}"])).trim()).toBe("keep");
    // system prune: containers and images alike; the build cache is left alone.
    await run(["run", "--name", "labelled", "--label", "gone=1", "keep:1", "true"]);
    await run(["run", "--name", "plain", "keep:1", "true"]);
    expect(await run(["system", "prune", "-f", "--filter", "label=gone"])).toMatch(/^Deleted Containers:\n[0-9a-f]{64}\n\nTotal reclaimed space/);
    expect((await run(["ps", "-a", "--format", "{{.Names}}"])).trim()).toBe("plain");
    for (const [args, message] of [
      [["image", "prune", "-f", "--filter", "color=red"], /^Error: invalid filter 'color'/],
      [["system", "prune", "-f", "--volumes", "--filter", "until=1h"], /^Error: the "until" filter is not supported with "--volumes"$/],
    ] as [string[], RegExp][]) {
      const r = await tsrun(args, e);
      expect(r.code, args.join(" ")).toBe(125);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toEqual([expect.stringMatching(message)]);
    }
    expect((await run(["ps", "-a", "--format", "{{.Names}}"])).trim()).toBe("plain");
    // builder prune --filter until=: only the entries made before the time.
    const context = filesDir({ Dockerfile: "FROM keep:1\nRUN echo cached > /cached\n" }, "prune-filter-build");
    await run(["build", "-q", "-t", "built:1", context]);
    const cacheEntries = async (): Promise<number> => Number((await run(["system", "df", "--format", "{{.Type}} {{.TotalCount}}"])).match(/^Build Cache (\d+)$/m)?.[1]);
    const before = await cacheEntries();
    expect(before).toBeGreaterThan(0);
    expect(await run(["builder", "prune", "-a", "-f", "--filter", "until=2000-01-01T00:00:00Z"])).toBe("Total reclaimed space: 0B\n");
    expect(await cacheEntries()).toBe(before);
    // system prune: a label filter leaves the build cache alone, until= applies to it too.
    await run(["system", "prune", "-a", "-f", "--filter", "label=nothing-has-this"]);
    expect(await cacheEntries()).toBe(before);
    await run(["system", "prune", "-a", "-f", "--filter", "until=2000-01-01T00:00:00Z"]);
    expect(await cacheEntries()).toBe(before);
    await run(["builder", "prune", "-a", "-f", "--filter", "until=0s"]);
    expect(await cacheEntries()).toBe(0);
    const badBuilder = await tsrun(["builder", "prune", "-f", "--filter", "type=regular"], e);
    expect([badBuilder.code, badBuilder.stderr]).toEqual([125, "Error: invalid filter 'type': builder prune takes until=TIME\n"]);
  });

  it("bad input: unknown image, bad reference; exit 125 and the store unchanged", async () => {
    const before = storeSnapshot();
    for (const args of [
      ["rmi", "no-such-image"],
      ["rmi", "Bad:Ref"],
      ["tag", "no-such-image", "x:y"],
      ["tag", "busybox", "Bad:Ref"],
      ["tag", "busybox", "x@sha256:" + "0".repeat(64)],
      ["history", "no-such-image"],
      ["image", "inspect", "no-such-image"],
    ]) {
      const r = await tsrun(args);
      expect(r.code, args.join(" ")).toBe(125);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
    expect(storeSnapshot()).toBe(before);
  });
});

describe("history", () => {
  it("lists steps newest first with Docker's columns, <missing> below the top, --no-trunc, -q and --format", async () => {
    const repo = unique("hist");
    await ok(["import", "-m", "imported here", env.busyboxTar, `${repo}:base`]);
    const name = unique("hctr");
    const long = "echo a-rather-long-command-line-that-docker-would-truncate > /f";
    await ok(["run", "--name", name, `${repo}:base`, "sh", "-c", long]);
    const id = (await ok(["commit", "-m", "second", name, `${repo}:top`])).trim();
    const table = (await ok(["history", `${repo}:top`])).split("\n");
    expect(table[0]).toMatch(/^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
    expect(table[1]).toMatch(new RegExp(`^${id.slice(7, 19)}\\s+.* ago\\s+sh -c echo a-rather-long-command-line-that-d…\\s+\\S+B\\s+second$`));
    expect(table[2]).toMatch(/^<missing>\s+.* ago\s+\S+B\s+imported here$/);
    expect(await ok(["history", "-q", `${repo}:top`])).toBe(`${id.slice(7, 19)}\n<missing>\n`);
    const full = await ok(["history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.CreatedAt}}", `${repo}:top`]);
    const [top] = full.split("\n");
    expect(top).toMatch(new RegExp(`^${id}\\|sh -c ${long}\\|\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(Z|[+-]\\d\\d:\\d\\d)$`));
    expect((await ok(["image", "history", "--format", "json", `${repo}:top`])).trim().split("\n")).toHaveLength(2);
    await tsrun(["rm", name]);
  });
});
