// Archives as other tools write them, loaded by tsrun, and tsrun's archives read by them:
// Docker's own layouts built here with GNU tar as `docker save` writes them (Docker 25+'s OCI
// layout with manifest.json, Docker 24's <id>/layer.tar with symlinks, RepoTags null, an image
// without layers), zstd:chunked layers from Debian 12's skopeo, the directory layouts podman
// saves, layers with GNU tar's harder cases, and tsrun's archives copied by skopeo.
import { beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Header } from "tar";
import { emptyStore, env, imageIds, importBusybox, missingInteropTools, podmanCli, scratchDir, shAsUser, storeSnapshot, tsrun } from "./helpers.js";

const sha256 = (data: Buffer | string): string => "sha256:" + createHash("sha256").update(data).digest("hex");
const hex = (digest: string): string => digest.slice("sha256:".length);
const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };

type Member = Buffer | { symlink: string } | "dir";

/** Tars members, in this order, with GNU tar from a staged directory: as `docker save` lays them out. */
async function gnuTar(out: string, members: [string, Member][]): Promise<void> {
  const stage = scratchDir("compat-stage");
  for (const [name, m] of members) {
    const file = path.join(stage, name);
    mkdirSync(path.dirname(file), { recursive: true });
    if (m === "dir") mkdirSync(file, { recursive: true });
    else if (Buffer.isBuffer(m)) writeFileSync(file, m);
    else symlinkSync(m.symlink, file);
  }
  if (env.user) execFileSync("chown", ["-R", "-h", `${env.user.uid}:${env.user.gid}`, stage]);
  const names = members.map(([n]) => `'${n}'`).join(" ");
  const r = await shAsUser(`tar -C ${stage} --format=gnu --no-recursion -cf ${out} ${names}`);
  if (r.code !== 0) throw new Error(`tar: ${r.stderr}`);
}

/** A layer made by GNU tar from a shell script run in an empty directory (members in the order given). */
async function gnuLayer(script: string, members: string, flags = "--format=gnu"): Promise<Buffer> {
  const dir = scratchDir("compat-layer");
  const r = await shAsUser(`set -e; mkdir ${dir}/root; cd ${dir}/root; ${script}; tar ${flags} -cf ../layer.tar ${members}`);
  if (r.code !== 0) throw new Error(`layer: ${r.stderr}`);
  return readFileSync(path.join(dir, "layer.tar"));
}

function imageConfig(layers: Buffer[], cmd: string[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: ARCH[process.arch] ?? process.arch,
      os: "linux",
      config: { Cmd: cmd },
      rootfs: { type: "layers", diff_ids: layers.map((l) => sha256(l)) },
      history: layers.length > 0 ? layers.map(() => ({ created_by: "layer" })) : [{ created_by: "nothing", empty_layer: true }],
    }),
  );
}

/** A docker-archive of one image: the config and layers under their digests, as tools that name files so write it. */
async function simpleDockerArchive(out: string, layers: Buffer[], repoTags: unknown, cmd = ["sh"]): Promise<void> {
  const config = imageConfig(layers, cmd);
  const manifest = [{ Config: `${hex(sha256(config))}.json`, RepoTags: repoTags, Layers: layers.map((l) => `${hex(sha256(l))}.tar`) }];
  await gnuTar(out, [[`${hex(sha256(config))}.json`, config], ...layers.map((l): [string, Member] => [`${hex(sha256(l))}.tar`, l]), ["manifest.json", Buffer.from(JSON.stringify(manifest))]]);
}

/** A tar stream of hand-written headers (for an entry GNU tar will not write: a link to a file it does not have). */
function hardlinkLayer(name: string, target: string): Buffer {
  const block = Buffer.alloc(512);
  new Header({ path: name, type: "Link", linkpath: target, size: 0, mode: 0o755, uid: 0, gid: 0, mtime: new Date(0) }).encode(block, 0);
  return Buffer.concat([block, Buffer.alloc(1024)]);
}

let busybox: Buffer;
let top: Buffer;

beforeAll(async () => {
  busybox = readFileSync(env.busyboxTar);
  top = await gnuLayer("echo from docker > hello.txt", "hello.txt");
});

describe("Docker's archive layouts, written as docker save writes them", () => {
  it("Docker 25+ (OCI layout plus manifest.json), Docker 24 (<id>/layer.tar, a layer as a symlink to another's, RepoTags null) and an image without layers load", async () => {
    const dir = scratchDir("compat-docker");
    const config = imageConfig([busybox, top], ["cat", "/hello.txt"]);
    const ociManifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
        layers: [busybox, top].map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha256(l), size: l.length })),
      }),
    );
    const blob = (b: Buffer): string => `blobs/sha256/${hex(sha256(b))}`;
    const index = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(ociManifest), size: ociManifest.length, annotations: { "io.containerd.image.name": "docker.io/library/d25:1", "org.opencontainers.image.ref.name": "1" } }] };
    const d25 = path.join(dir, "d25.tar");
    await gnuTar(d25, [
      ["blobs", "dir"],
      ["blobs/sha256", "dir"],
      [blob(busybox), busybox],
      [blob(top), top],
      [blob(config), config],
      [blob(ociManifest), ociManifest],
      ["index.json", Buffer.from(JSON.stringify(index))],
      ["manifest.json", Buffer.from(JSON.stringify([{ Config: blob(config), RepoTags: ["d25:1"], Layers: [blob(busybox), blob(top)], LayerSources: {} }]))],
      ["oci-layout", Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
      ["repositories", Buffer.from(JSON.stringify({ d25: { "1": hex(sha256(top)) } }))],
    ]);

    // Docker 24: one dir per layer (v1 ids); the second image's base layer is a symlink to the first's.
    const [idA, idB, idC] = ["a", "b", "c"].map((c) => c.repeat(64)) as [string, string, string];
    const baseOnly = imageConfig([busybox], ["echo", "base only"]);
    const noLayers = imageConfig([], ["true"]);
    const legacyDir = (id: string, parent?: string): [string, Member][] => [
      [id, "dir"],
      [`${id}/VERSION`, Buffer.from("1.0")],
      [`${id}/json`, Buffer.from(JSON.stringify({ id, ...(parent ? { parent } : {}) }))],
    ];
    const d24 = path.join(dir, "d24.tar");
    await gnuTar(d24, [
      ...legacyDir(idA),
      [`${idA}/layer.tar`, busybox],
      ...legacyDir(idB, idA),
      [`${idB}/layer.tar`, top],
      ...legacyDir(idC),
      [`${idC}/layer.tar`, { symlink: `../${idA}/layer.tar` }],
      [`${hex(sha256(config))}.json`, config],
      [`${hex(sha256(baseOnly))}.json`, baseOnly],
      [`${hex(sha256(noLayers))}.json`, noLayers],
      [
        "manifest.json",
        Buffer.from(
          JSON.stringify([
            { Config: `${hex(sha256(config))}.json`, RepoTags: ["d24:1"], Layers: [`${idA}/layer.tar`, `${idB}/layer.tar`] },
            { Config: `${hex(sha256(baseOnly))}.json`, RepoTags: null, Layers: [`${idC}/layer.tar`] },
            { Config: `${hex(sha256(noLayers))}.json`, RepoTags: ["zero:1"], Layers: [] },
          ]),
        ),
      ],
      ["repositories", Buffer.from(JSON.stringify({ d24: { "1": idB } }))],
    ]);

    const store = emptyStore();
    const a = await tsrun(["load", "-i", d25], { env: store });
    expect(a.stdout, a.stderr).toBe("Loaded image: d25:1\n");
    const b = await tsrun(["load", "-i", d24], { env: store });
    expect(b.stdout, b.stderr).toBe(`Loaded image: d24:1\nLoaded image ID: ${sha256(baseOnly)}\nLoaded image: zero:1\n`);
    expect(await imageIds(store)).toEqual([sha256(config), sha256(baseOnly), sha256(noLayers)].sort());
    expect((await tsrun(["run", "--rm", "d25:1"], { env: store })).stdout).toBe("from docker\n");
    expect((await tsrun(["run", "--rm", "d24:1"], { env: store })).stdout).toBe("from docker\n");
    expect((await tsrun(["run", "--rm", hex(sha256(baseOnly)).slice(0, 12)], { env: store })).stdout).toBe("base only\n");
    expect((await tsrun(["inspect", "--format", "{{len .RootFS.Layers}}", "zero:1"], { env: store })).stdout).toBe("0\n");
  });

  it("refuses, in one line and with the store unchanged: a tag with a digest, a pre-1.10 archive, a hardlink to a file of an earlier layer", async () => {
    const dir = scratchDir("compat-refused");
    const store = emptyStore();
    const good = path.join(dir, "good.tar");
    // Not the busybox layer: the archives below must have it unpacked.
    await simpleDockerArchive(good, [top], ["good:1"]);
    expect((await tsrun(["load", "-i", good], { env: store })).code).toBe(0);
    const before = storeSnapshot(store.TSRUN_ROOT);

    const digestTag = path.join(dir, "digest-tag.tar");
    await simpleDockerArchive(digestTag, [busybox, top], [`tagged:1@${sha256("x")}`]);
    const legacy = path.join(dir, "legacy.tar");
    const id = "d".repeat(64);
    await gnuTar(legacy, [[id, "dir"], [`${id}/VERSION`, Buffer.from("1.0")], [`${id}/json`, Buffer.from(JSON.stringify({ id, config: { Cmd: ["sh"] } }))], [`${id}/layer.tar`, busybox], ["repositories", Buffer.from(JSON.stringify({ old: { "1": id } }))]]);
    // Beside the base layer (large: streamed to its unpacker while the archive is read), a layer
    // linking to /bin/busybox of the layer below. Both unpackers run at once: the failure must be
    // the failing one's (helpers once reaped each other's exit status).
    const lowerLink = path.join(dir, "lower-link.tar");
    await simpleDockerArchive(lowerLink, [busybox, hardlinkLayer("bin/again", "bin/busybox")], ["lower-link:1"]);

    const cases: [string, string, RegExp][] = [
      ["tag with a digest", digestTag, /RepoTags entry "tagged:1@sha256:[a-f0-9]{64}" is not a tag/],
      ["pre-1.10 archive", legacy, /before Docker 1\.10/],
      ["hardlink to a file of an earlier layer", lowerLink, /hardlink target "bin\/busybox" does not exist in the layer \(a link to a file of an earlier layer is not supported/],
    ];
    for (const [what, file, message] of cases) {
      const r = await tsrun(["load", "-i", file], { env: store });
      expect(r.code, `${what}: ${r.stdout}${r.stderr}`).toBe(125);
      expect(r.stderr, what).toMatch(/^Error: load: [^\n]+\n$/);
      expect(r.stderr, what).toMatch(message);
      expect(storeSnapshot(store.TSRUN_ROOT), what).toBe(before);
    }
  });
});

describe("layers with GNU tar's harder cases", () => {
  it("whiteout then re-creation, opaque dirs, long names (GNU and PAX), sparse files, times before 1970 and after 2038", async () => {
    const dir = scratchDir("compat-layers");
    const lower = await gnuLayer("mkdir gone gone2; echo old > gone/old; echo old2 > gone2/old2", "--no-recursion gone gone/old gone2 gone2/old2");
    const whiteouts = await gnuLayer(
      "mkdir gone gone2; touch .wh.gone gone2/.wh..wh..opq; echo new > gone/new; echo fresh > gone2/fresh",
      "--no-recursion .wh.gone gone gone/new gone2 gone2/.wh..wh..opq gone2/fresh",
    );
    const script =
      `d=$(printf 'd%.0s' $(seq 150)); f=$(printf 'f%.0s' $(seq 200)); mkdir -p long/$d; echo deep > long/$d/$f; ` +
      "printf head > sparse; truncate -s 8M sparse; printf tail >> sparse; " +
      "echo old > old; touch -d 1960-06-01T00:00:00Z old; echo future > future; touch -d 2100-01-01T00:00:00Z future";
    const gnu = await gnuLayer(script, ".", "--format=gnu --sparse");
    const pax = await gnuLayer(script, ".", "--format=pax --sparse");
    const check = "ls /gone /gone2 | tr '\\n' ' '; echo; cat /long/d*/f*; stat -c '%n %s %b' /sparse; stat -c '%n %Y' /old /future; head -c 4 /sparse; tail -c 4 /sparse";
    for (const [variant, layer] of [["gnu", gnu], ["pax", pax]] as const) {
      const file = path.join(dir, `${variant}.tar`);
      await simpleDockerArchive(file, [busybox, lower, whiteouts, layer], [`edge:${variant}`]);
      const loaded = await tsrun(["load", "-i", file]);
      expect(loaded.stdout, loaded.stderr).toBe(`Loaded image: edge:${variant}\n`);
      const r = await tsrun(["run", "--rm", `edge:${variant}`, "sh", "-c", check]);
      // The sparse file keeps its holes: 8 MiB and 4 bytes long, a few blocks on disk.
      const seen = r.stdout.replace(/^(\/sparse \d+) (\d+)$/m, (_, s: string, blocks: string) => `${s} ${Number(blocks) < 64 ? "few" : blocks}`);
      expect(seen, `${variant}: ${r.stderr}`).toBe("/gone: new  /gone2: fresh \ndeep\n/sparse 8388612 few\n/old -302486400\n/future 4102444800\nheadtail");
    }
  });
});

describe.skipIf(missingInteropTools.length > 0)("podman's and skopeo's layouts and compressions (skipped without podman and skopeo)", () => {
  it("zstd:chunked layers from skopeo load (archive and directory) and save back as the tar the diff_id names", async () => {
    const dir = scratchDir("compat-zstd-chunked");
    await importBusybox("compat-zc:1");
    expect((await tsrun(["save", "-o", path.join(dir, "src.tar"), "compat-zc:1"])).code).toBe(0);
    const made = await shAsUser(
      `set -e; cd ${dir}; skopeo copy -q --dest-compress-format zstd:chunked docker-archive:src.tar oci-archive:zc.tar:compat-zc:2; ` +
        `skopeo copy -q --dest-compress-format zstd:chunked docker-archive:src.tar oci:zcdir:compat-zc:3; ` +
        // Converted again, the short tar stays short under the same diff_id.
        `skopeo copy -q --dest-compress-format gzip oci-archive:zc.tar oci-archive:gz.tar:compat-zc:4; ` +
        `mkdir x; tar -xf zc.tar -C x; for b in x/blobs/sha256/*; do zstd -qdc $b 2>/dev/null | sha256sum; done`,
      { timeout: 60_000 },
    );
    expect(made.code, made.stderr).toBe(0);
    // What makes it hard: the zstd:chunked layer decompresses to a tar shorter than the one the
    // diff_id names (the busybox fixture's GNU tar pads to 10 KiB records).
    const diffId = sha256(busybox);
    expect(made.stdout).not.toContain(hex(diffId));

    const store = emptyStore();
    for (const [input, name] of [["zc.tar", "localhost/compat-zc:2"], ["zcdir", "localhost/compat-zc:3"], ["gz.tar", "localhost/compat-zc:4"]]) {
      const r = await tsrun(["load", "-i", path.join(dir, input as string)], { env: store });
      expect(r.stdout, `${input}: ${r.stderr}`).toBe(`Loaded image: ${name}\n`);
    }
    // One image (skopeo rewrote the Docker config as an OCI one, once for all three).
    expect(await imageIds(store)).toHaveLength(1);
    expect((await tsrun(["run", "--rm", "localhost/compat-zc:2", "echo", "ok"], { env: store })).stdout).toBe("ok\n");
    // docker-archive wants uncompressed layers whose sha256 is the diff_id: the padding goes back.
    const out = await shAsUser(`cd ${dir}; "$TSRUN" save localhost/compat-zc:2 | tar -xOf - --wildcards '*/layer.tar' | sha256sum`, { env: store });
    expect(out.stdout).toBe(`${hex(diffId)}  -\n`);
  });

  it("podman save's directory formats (oci-dir, docker-dir --compress), which podman load reads too, and whole-archive xz and zstd load", async () => {
    const dir = scratchDir("compat-podman-formats");
    const p = podmanCli(dir);
    const made = await shAsUser(
      `set -e; cd ${dir}; ${p} import -q ${env.busyboxTar} localhost/pf:1 >/dev/null; ` +
        `${p} save -q --format oci-dir -o od localhost/pf:1; ${p} save -q --format docker-dir --compress -o dd localhost/pf:1; ` +
        `${p} save -q localhost/pf:1 | xz -T1 > a.tar.xz; ${p} save -q localhost/pf:1 | zstd -q > a.tar.zst`,
      { timeout: 90_000 },
    );
    expect(made.code, made.stderr).toBe(0);
    const store = emptyStore();
    const od = await tsrun(["load", "-i", path.join(dir, "od")], { env: store });
    expect(od.stdout, od.stderr).toBe("Loaded image: localhost/pf:1\n");
    const [id] = await imageIds(store);
    // The dir layout names no image: untagged, as podman loads it.
    const dd = await tsrun(["load", "-i", path.join(dir, "dd")], { env: store });
    expect(dd.stdout, dd.stderr).toBe(`Loaded image ID: ${id}\n`);
    for (const file of ["a.tar.xz", "a.tar.zst"]) {
      const r = await tsrun(["load"], { env: store, input: readFileSync(path.join(dir, file)) });
      expect(r.stdout, `${file}: ${r.stderr}`).toBe("Loaded image: localhost/pf:1\n");
    }
    expect(await imageIds(store)).toEqual([id]);
    expect((await tsrun(["run", "--rm", "localhost/pf:1", "echo", "ok"], { env: store })).stdout).toBe("ok\n");

    // A directory that is not a layout, or that leads out of itself, is refused like a bad archive.
    const before = storeSnapshot(store.TSRUN_ROOT);
    const evil = path.join(dir, "evil");
    mkdirSync(path.join(evil, "blobs", "sha256"), { recursive: true });
    copyFileSync(path.join(dir, "od", "index.json"), path.join(evil, "index.json"));
    const manifest = (JSON.parse(readFileSync(path.join(evil, "index.json"), "utf8")) as { manifests: { digest: string }[] }).manifests[0]?.digest as string;
    symlinkSync("/etc/passwd", path.join(evil, "blobs", "sha256", hex(manifest)));
    for (const [input, message] of [[evil, /symlink to an absolute path/], [scratchDir("compat-empty-dir"), /is not an image layout: neither index.json/]] as const) {
      const r = await tsrun(["load", "-i", input], { env: store });
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toMatch(/^Error: load: [^\n]+\n$/);
      expect(r.stderr).toMatch(message);
      expect(storeSnapshot(store.TSRUN_ROOT)).toBe(before);
    }
  });

  it("tsrun save (an image with several tags beside another) copies with skopeo to dir layouts whose blobs match their digests, and podman loads every name", async () => {
    const dir = scratchDir("compat-skopeo-copy");
    await importBusybox("compat-tags:1");
    expect((await tsrun(["tag", "compat-tags:1", "compat-tags:2"])).code).toBe(0);
    await importBusybox("compat-other:1", ["CMD echo other"]);
    for (const format of ["docker-archive", "oci-archive"]) {
      const saved = await tsrun(["save", "--format", format, "-o", path.join(dir, `${format}.tar`), "compat-tags", "compat-other:1"]);
      expect(saved.code, saved.stderr).toBe(0);
    }
    // Every blob file of a dir layout is named by its digest: sha256sum -c checks them all.
    const verify = (d: string): string => `(cd ${d} && ls | grep -E '^[a-f0-9]{64}$' | while read f; do echo "$f  $f"; done | sha256sum -c --quiet && ls | grep -cE '^[a-f0-9]{64}$')`;
    const r = await shAsUser(
      `set -e; cd ${dir}; ` +
        `skopeo copy -q docker-archive:docker-archive.tar:docker.io/library/compat-tags:2 dir:d2; ${verify("d2")}; ` +
        `skopeo copy -q docker-archive:docker-archive.tar:docker.io/library/compat-other:1 dir:d3; ${verify("d3")}; ` +
        `skopeo copy -q oci-archive:oci-archive.tar:docker.io/library/compat-tags:1 dir:o1; ${verify("o1")}; ` +
        `skopeo inspect --format '{{.Layers}}' docker-archive:docker-archive.tar:docker.io/library/compat-tags:1; ` +
        `${podmanCli(dir)} load -q -i docker-archive.tar 2>/dev/null | sort`,
      { timeout: 60_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    // Config and one layer each; podman takes every name of both images.
    expect(r.stdout).toBe(
      `2\n2\n2\n[${sha256(busybox)}]\nLoaded image: docker.io/library/compat-other:1\nLoaded image: docker.io/library/compat-tags:1\nLoaded image: docker.io/library/compat-tags:2\n`,
    );
  });
});
