// system check (what it detects, what --repair fixes), system df, system prune, container
// prune, info and version.
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, scratchDir, shAsUser, tsrun } from "./helpers.js";
import { checkStore, damaged, must } from "./faults.js";

type Env = Record<string, string>;

async function freshStore(label: string): Promise<Env> {
  const store = { TSRUN_ROOT: scratchDir(`store-system-${label}`) };
  await must(["import", env.busyboxTar, "bb"], store);
  return store;
}

function imageRecord(store: Env, name: string): { id: string; manifest: string; layers: { chainId: string; digest: string }[] } {
  const index = JSON.parse(readFileSync(path.join(store.TSRUN_ROOT as string, "images", "index.json"), "utf8")) as { images: { id: string; names: string[]; manifest: string; layers: { chainId: string; digest: string }[] }[] };
  const image = index.images.find((i) => i.names.some((n) => n.endsWith(`/${name}:latest`)));
  if (!image) throw new Error(`no image ${name}`);
  return image;
}

const hex = (digest: string): string => digest.replace(/^sha256:/, "");
const blobPath = (store: Env, digest: string): string => path.join(store.TSRUN_ROOT as string, "blobs", "sha256", hex(digest));
const layerDir = (store: Env, chainId: string): string => path.join(store.TSRUN_ROOT as string, "layers", hex(chainId));

describe("system check", () => {
  it("passes on a sound store and says so", async () => {
    const store = await freshStore("sound");
    await must(["run", "--name", "c", "--network", "none", "-v", "vol:/v", "bb", "true"], store);
    const r = await tsrun(["system", "check"], { env: store });
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toBe("Checked 1 image, 1 container, 1 volume, 1 layer, 3 blobs.\nNo problems found.\n");
  });

  it("finds a corrupt layer blob; --repair removes the image when no container uses it", async () => {
    const store = await freshStore("corrupt");
    await must(["tag", "bb", "other"], store);
    const image = imageRecord(store, "bb");
    const blob = blobPath(store, image.layers[0]?.digest as string);
    const data = readFileSync(blob);
    data[1000] = (data[1000] as number) ^ 0xff;
    writeFileSync(blob, data);
    const r = await tsrun(["system", "check"], { env: store });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^damaged   image sha256:[0-9a-f]{12} \(bb:latest\): layer blob sha256:[0-9a-f]{64} corrupt$/m);
    expect(r.stdout).toMatch(/1 problem found: tsrun system check --repair fixes what can be fixed\.\n$/);
    // --quick does not hash layer blobs.
    expect((await tsrun(["system", "check", "--quick"], { env: store })).code).toBe(0);
    const repaired = await tsrun(["system", "check", "--repair"], { env: store });
    expect(repaired.code, repaired.stdout).toBe(0);
    expect(repaired.stdout).toMatch(/corrupt -> image removed$/m);
    expect(await must(["images", "-q"], store)).toBe("");
    const after = await checkStore(store);
    expect(after.findings).toEqual([]);
    expect(after.reclaimable).toMatchObject({ blobs: 0, layers: 0 });
  });

  it("unpacks a missing layer dir again from its blob, and recreates a lost short link", async () => {
    const store = await freshStore("layer");
    const image = imageRecord(store, "bb");
    const chain = image.layers[0]?.chainId as string;
    const meta = JSON.parse(readFileSync(path.join(layerDir(store, chain), "layer.json"), "utf8")) as { link: string };
    unlinkSync(path.join(store.TSRUN_ROOT as string, "l", meta.link));
    let check = await checkStore(store);
    expect(damaged(check).map((f) => f.problem)).toEqual([`its short link l/${meta.link} is missing`]);
    await must(["system", "check", "--repair"], store);
    expect((await checkStore(store)).findings).toEqual([]);
    // The layer dir holds files of other uids: moved away by root of the user namespace.
    renameSync(layerDir(store, chain), path.join(store.TSRUN_ROOT as string, "lost"));
    check = await checkStore(store);
    expect(damaged(check).map((f) => f.problem)).toEqual([`layer ${chain} is missing`]);
    // Its short link now leads nowhere.
    expect(check.findings.filter((f) => f.kind === "leftover").map((f) => f.problem)).toEqual([expect.stringMatching(/^short link to a missing layer/)]);
    const repaired = await checkStore(store, ["--repair"]);
    expect(repaired.ok, repaired.raw).toBe(true);
    expect(repaired.findings.map((f) => f.repaired).sort()).toEqual(["removed", "unpacked again from its blob"]);
    expect(await must(["run", "--rm", "--network", "none", "bb", "echo", "back"], store)).toBe("back\n");
  });

  it("a container whose image is gone is reported; --repair leaves it, --repair --force removes it", async () => {
    const store = await freshStore("orphan");
    await must(["create", "--name", "orphan", "--network", "none", "bb", "true"], store);
    // The image vanishes from the index behind tsrun's back.
    const file = path.join(store.TSRUN_ROOT as string, "images", "index.json");
    writeFileSync(file, JSON.stringify({ images: [] }));
    const check = await checkStore(store);
    expect(damaged(check).map((f) => `${f.subject}: ${f.problem}`)).toEqual([expect.stringMatching(/^container [0-9a-f]{12} \(orphan\): its image sha256:[0-9a-f]{64} is not in the store$/)]);
    const noForce = await checkStore(store, ["--repair"]);
    expect(noForce.ok).toBe(false);
    expect(noForce.code).toBe(1);
    expect(noForce.findings[0]?.unrepaired).toBe("--force removes the container");
    const forced = await checkStore(store, ["--repair", "--force"]);
    expect(forced.ok, forced.raw).toBe(true);
    expect(forced.findings[0]?.repaired).toBe("container removed");
    expect(await must(["ps", "-a", "-q"], store)).toBe("");
    expect((await checkStore(store)).findings).toEqual([]);
  });

  it("an unreadable image index is reported, and --repair then deletes nothing", async () => {
    const store = await freshStore("index");
    const root = store.TSRUN_ROOT as string;
    const blobs = readdirSync(path.join(root, "blobs", "sha256")).sort();
    writeFileSync(path.join(root, "images", "index.json"), "{ not json");
    const repaired = await checkStore(store, ["--repair"]);
    expect(repaired.code).toBe(1);
    expect(damaged(repaired).map((f) => f.subject)).toEqual(["image index"]);
    expect(readdirSync(path.join(root, "blobs", "sha256")).sort()).toEqual(blobs);
    expect(readdirSync(path.join(root, "layers")).filter((n) => /^[0-9a-f]{64}$/.test(n))).toHaveLength(1);
  });

  it("reports leftovers of killed operations and --repair removes them; live operations' files are left alone", async () => {
    const store = await freshStore("leftovers");
    const root = store.TSRUN_ROOT as string;
    // A pid that cannot exist (above pid_max) for a killed process; this test's own for a live one.
    const dead = 4194305;
    writeFileSync(path.join(root, "blobs", "sha256", `.tmp-stream-${dead}-0a1b2c`), "partial");
    writeFileSync(path.join(root, "blobs", "sha256", `.tmp-stream-${process.pid}-0a1b2c`), "in progress");
    writeFileSync(path.join(root, "leases", `${dead}-0a1b2c3d4e5f.json`), JSON.stringify({ operation: "pull x", scope: "images", pid: dead, startTime: 1, boot: "", created: "", images: [], blobs: [], layers: [], volumes: [] }));
    const check = await checkStore(store);
    expect(check.findings.map((f) => `${f.kind} ${f.subject}`).sort()).toEqual([`leftover blobs/sha256/.tmp-stream-${dead}-0a1b2c`, `leftover leases/${dead}-0a1b2c3d4e5f.json`]);
    expect(check.code).toBe(1);
    await must(["system", "check", "--repair"], store);
    expect((await checkStore(store)).findings).toEqual([]);
    expect(existsSync(path.join(root, "blobs", "sha256", `.tmp-stream-${process.pid}-0a1b2c`))).toBe(true);
    // The next operation would have removed them too.
    writeFileSync(path.join(root, "blobs", "sha256", `.tmp-stream-${dead}-0a1b2c`), "partial");
    await must(["import", env.busyboxTar, "again"], store);
    expect(readdirSync(path.join(root, "blobs", "sha256")).filter((n) => n.includes(String(dead)))).toEqual([]);
    rmSync(path.join(root, "blobs", "sha256", `.tmp-stream-${process.pid}-0a1b2c`));
  });
});

describe("system df, system prune, container prune", () => {
  it("df shows Docker's columns and what pruning would reclaim; prune reclaims it", async () => {
    const store = await freshStore("df");
    await must(["import", env.busyboxTar, "spare"], store);
    await must(["run", "--name", "stopped", "--network", "none", "-v", "/anon", "bb", "sh", "-c", "head -c 50000 /dev/zero > /file"], store);
    // An untagged image: busybox again under a new config.
    await must(["import", "--message", "dangling", env.busyboxTar], store);
    const df = await tsrun(["system", "df"], { env: store });
    const lines = df.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE$/);
    expect(lines[1]).toMatch(/^Images +3 +1 +2\.14\d?MB +0B \(0%\)$/);
    expect(lines[2]).toMatch(/^Containers +1 +0 +50kB +50kB \(100%\)$/);
    expect(lines[3]).toMatch(/^Local Volumes +1 +1 +0B +0B$/);
    expect(lines[4]).toMatch(/^Build Cache +0 +0 +0B +0B$/);
    const json = await must(["system", "df", "--format", "json"], store);
    expect(JSON.parse(json.split("\n")[0] as string)).toEqual({ Active: "1", Reclaimable: "0B (0%)", Size: expect.stringMatching(/MB$/), TotalCount: "3", Type: "Images" });
    const verbose = await must(["system", "df", "-v"], store);
    expect(verbose).toMatch(/^Images space usage:\n\nREPOSITORY +TAG +IMAGE ID +CREATED +SIZE +SHARED SIZE +UNIQUE SIZE +CONTAINERS\n/);
    expect(verbose).toMatch(/\nstopped\n|stopped$/m);

    // Without -f and without a "y", nothing happens.
    const declined = await tsrun(["system", "prune"], { env: store, input: "n\n" });
    expect(declined.stdout).toMatch(/^WARNING! This will remove:\n  - all stopped containers\n  - all dangling images\n  - unused build cache\n\nAre you sure you want to continue\? \[y\/N\] $/);
    expect(await must(["ps", "-a", "-q"], store)).not.toBe("");

    const pruned = await must(["system", "prune", "-f", "--volumes"], store);
    expect(pruned).toMatch(/^Deleted Containers:\n[0-9a-f]{64}\n\nDeleted Volumes:\n[0-9a-f]{64}\n\nDeleted Images:\ndeleted: sha256:[0-9a-f]{64}\n/);
    expect(pruned).toMatch(/\nTotal reclaimed space: 50kB\n$/);
    expect(await must(["ps", "-a", "-q"], store)).toBe("");
    expect((await must(["images", "--format", "{{.Repository}}"], store)).split("\n").filter(Boolean).sort()).toEqual(["bb", "spare"]);
    // container prune takes a created container too; then -a removes every image.
    await must(["create", "--name", "keeper", "--network", "none", "bb", "true"], store);
    expect(await must(["container", "prune", "-f"], store)).toMatch(/^Deleted Containers:\n[0-9a-f]{64}\n\nTotal reclaimed space: 0B\n$/);
    await must(["system", "prune", "-a", "-f"], store);
    expect(await must(["images", "--format", "{{.Repository}}"], store)).toBe("");
    expect((await checkStore(store)).reclaimable).toMatchObject({ blobs: 0, layers: 0 });
    expect(readdirSync(path.join(store.TSRUN_ROOT as string, "blobs", "sha256"))).toEqual([]);
  });
});

describe("the build cache in system check, df and prune", () => {
  it("check verifies its entries (--repair drops a damaged one, or an unreadable index); df counts it; system prune drops what is dangling, -a all of it", async () => {
    const store = await freshStore("cache");
    const root = store.TSRUN_ROOT as string;
    const dir = scratchDir("system-cache-context");
    writeFileSync(path.join(dir, "Dockerfile"), "FROM bb\nRUN head -c 20000 /dev/zero > /z\n");
    const build = (): Promise<string> => must(["build", "--network", "none", "-t", "cached", dir], store);
    await build();
    const dfRow = async (): Promise<string> => (await must(["system", "df"], store)).split("\n").find((l) => l.startsWith("Build Cache")) ?? "";
    // Both layers are the image's too: shared, so nothing a cache prune would free.
    expect(await dfRow()).toMatch(/^Build Cache +2 +0 +0B +0B$/);
    const runLayer = imageRecord(store, "cached").layers[1] as { chainId: string; digest: string };
    await must(["rmi", "cached"], store);
    // Now the cache alone holds the RUN's layer.
    expect(await dfRow()).toMatch(/^Build Cache +2 +0 +2\d(\.\d+)?kB +2\d(\.\d+)?kB$/);
    expect(await must(["system", "df", "-v"], store)).toMatch(new RegExp(`^${hex(runLayer.chainId).slice(0, 12)} +regular +2\\d(\\.\\d+)?kB +.* ago +1 +false$`, "m"));
    const sound = await tsrun(["system", "check"], { env: store });
    expect(sound.stdout).toBe("Checked 1 image, 0 containers, 0 volumes, 2 layers, 4 blobs, 2 build cache entries.\nNo problems found.\n");

    // The RUN layer's blob goes: its entry is damaged, --repair drops it, the next build runs the step.
    unlinkSync(blobPath(store, runLayer.digest));
    const check = await checkStore(store);
    expect(damaged(check).map((f) => f.problem)).toEqual([`layer blob ${runLayer.digest} missing`]);
    expect(damaged(check)[0]?.subject).toMatch(/^build cache entry [0-9a-f]{12}$/);
    const repaired = await checkStore(store, ["--repair"]);
    expect(repaired.ok, repaired.raw).toBe(true);
    expect(repaired.findings.map((f) => f.repaired)).toEqual(["entry dropped"]);
    expect(await build()).not.toMatch(/Using cache/);

    // An unreadable index is damage; --repair removes it (the cache only saves time).
    writeFileSync(path.join(root, "build-cache.json"), "{ not json");
    expect(damaged(await checkStore(store)).map((f) => f.subject)).toEqual(["build cache index"]);
    expect((await checkStore(store, ["--repair"])).ok).toBe(true);
    expect(existsSync(path.join(root, "build-cache.json"))).toBe(false);
    expect((await checkStore(store)).findings).toEqual([]);

    // system prune: the cache no image holds goes; -a: all of it.
    await build();
    await must(["rmi", "cached"], store);
    await must(["system", "prune", "-f"], store);
    expect(await dfRow()).toMatch(/^Build Cache +1 +0 +0B +0B$/);
    await must(["system", "prune", "-a", "-f"], store);
    expect(await dfRow()).toMatch(/^Build Cache +0 +0 +0B +0B$/);
    expect(readdirSync(path.join(root, "blobs", "sha256"))).toEqual([]);
    expect((await checkStore(store)).findings).toEqual([]);
  });
});

describe("info and version", () => {
  it("info shows the store, the id mapping, the network helper and kernel features; --format reads its fields", async () => {
    const store = await freshStore("info");
    const info = await must(["info"], store);
    expect(info).toContain(` Root:             ${store.TSRUN_ROOT}\n`);
    expect(info).toMatch(/ Storage driver: +overlay \(userxattr\)\n/);
    expect(info).toMatch(/ UID mapping: +0->\d+, 1-65536->\d+-\d+\n/);
    expect(info).toMatch(/ Network helper: +\/usr\/bin\/slirp4netns/);
    expect(info).toMatch(/ openat2: +yes\n/);
    expect(info).toMatch(/ Cgroups: +(v1|v2|hybrid)/);
    expect(await must(["info", "--format", "{{.Store.GraphRoot}} {{.Store.ImageStore.Number}} {{.Host.Features.Openat2}}"], store)).toBe(`${store.TSRUN_ROOT} 1 true\n`);
    const json = JSON.parse(await must(["system", "info", "--format", "json"], store)) as { Host: { Rootless: boolean; IDMappings: { UIDMap: unknown[] } } };
    expect(json.Host.Rootless).toBe(env.user !== null);
    expect(json.Host.IDMappings.UIDMap.length).toBe(env.user ? 2 : 1);
  });

  it("version prints the client section; --format reads it; a bad template is a one-line error", async () => {
    const pkg = JSON.parse(readFileSync(path.join(path.dirname(env.cli), "..", "package.json"), "utf8")) as { version: string };
    const v = await must(["version"], {});
    expect(v).toMatch(new RegExp(`^Client:\\n Version: +${pkg.version.replace(/\./g, "\\.")}\\n Node\\.js: +v\\d+\\.\\d+\\.\\d+\\n OS/Arch: +linux/(amd64|arm64)\\n Kernel: +\\S+\\n$`));
    expect(await must(["version", "--format", "{{.Client.Version}}"], {})).toBe(`${pkg.version}\n`);
    const bad = await tsrun(["version", "--format", "{{.Client.Nope"], {});
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/^Error: template: .*\n$/);
  });

  it("the CLI maps its bundle into memory (native/loader.cc) instead of reading it", async () => {
    // Reading the 0.5-0.7 MB bundle cost 10-12 ms of every command; a mapping shows in the
    // running command's /proc/PID/maps. A missing loader would silently fall back to reading.
    await importBusybox("busybox");
    const r = await shAsUser('$TSRUN run --rm --network none busybox sleep 2 & p=$!; sleep 1; grep -c "/dist/tsrun-run\\.cjs$" /proc/$p/maps; wait $p');
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("1\n");
    expect(r.code).toBe(0);
  });
});
