// `save` and `load` end to end: round trips through empty stores for both formats (plain,
// gzip-compressed, several images), a crafted multi-layer OCI archive (gzip layers, a
// whiteout), interop with Debian's podman and skopeo in both directions, and hostile or broken
// archives that must be refused with the store left exactly as it was.
import { beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { Header } from "tar";
import { emptyStore, env, imageIds, importBusybox, missingInteropTools, podmanCli, scratchDir, shAsUser, storeSnapshot, tsrun } from "./helpers.js";

const sha256 = (data: Buffer | string): string => "sha256:" + createHash("sha256").update(data).digest("hex");
const hex = (digest: string): string => digest.slice("sha256:".length);
const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };

// ---------------------------------------------------------------------------------------------
// Crafting archives byte by byte (names that no well-behaved tool would write included)

interface TarEntry {
  name: string;
  data?: Buffer | string;
  type?: "File" | "Directory" | "SymbolicLink";
  linkpath?: string;
}

function tarBuffer(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const block = Buffer.alloc(512);
    const type = e.type ?? "File";
    new Header({
      path: e.name,
      type,
      size: type === "File" ? data.length : 0,
      mode: type === "Directory" ? 0o755 : 0o644,
      uid: 0,
      gid: 0,
      mtime: new Date(0),
      ...(e.linkpath ? { linkpath: e.linkpath } : {}),
    }).encode(block, 0);
    parts.push(block);
    if (type === "File" && data.length > 0) parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/**
 * A two-layer image: the busybox root (gzip) and a layer adding /hello.txt and removing
 * /home/bob (gzip). wrongDiffId: the config lies about the top layer; baseContent: the bottom
 * blob holds something else than the busybox root the config claims.
 */
function twoLayerImage(opts: { wrongDiffId?: boolean; baseContent?: Buffer; cmd?: string } = {}): { config: Buffer; manifest: Buffer; layers: Buffer[]; diffIds: string[] } {
  const base = readFileSync(env.busyboxTar);
  const top = tarBuffer([{ name: "hello.txt", data: "layer two\n" }, { name: "home/", type: "Directory" }, { name: "home/.wh.bob", data: "" }]);
  const diffIds = [sha256(base), opts.wrongDiffId ? sha256("something else") : sha256(top)];
  const layers = [gzipSync(opts.baseContent ?? base), gzipSync(top)];
  const config = Buffer.from(
    JSON.stringify({
      architecture: ARCH[process.arch] ?? process.arch,
      os: "linux",
      config: { Cmd: ["cat", opts.cmd ?? "/hello.txt"] },
      rootfs: { type: "layers", diff_ids: diffIds },
      history: [{ created_by: "busybox" }, { created_by: "hello" }],
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256(l), size: l.length })),
    }),
  );
  return { config, manifest, layers, diffIds };
}

/** An OCI layout in a tar; `refName` becomes the index entry's ref.name annotation. */
function ociArchive(image: ReturnType<typeof twoLayerImage>, refName: string | undefined, change: (entries: TarEntry[]) => TarEntry[] = (e) => e): Buffer {
  const blobs = [image.config, image.manifest, ...image.layers];
  const index = {
    schemaVersion: 2,
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: sha256(image.manifest),
        size: image.manifest.length,
        ...(refName ? { annotations: { "org.opencontainers.image.ref.name": refName } } : {}),
      },
    ],
  };
  const entries: TarEntry[] = [
    { name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' },
    ...blobs.map((b) => ({ name: `blobs/sha256/${hex(sha256(b))}`, data: b })),
    { name: "index.json", data: JSON.stringify(index) },
  ];
  return tarBuffer(change(entries));
}

/** A docker-archive with one uncompressed layer (the busybox root) and a config saying diffId. */
function dockerArchive(diffId: string, extra: TarEntry[] = [], layerPath = "layer/layer.tar"): Buffer {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [diffId] } }));
  const configName = `${hex(sha256(config))}.json`;
  return tarBuffer([
    { name: configName, data: config },
    { name: "layer/layer.tar", data: readFileSync(env.busyboxTar) },
    ...extra,
    { name: "manifest.json", data: JSON.stringify([{ Config: configName, RepoTags: ["hostile:1"], Layers: [layerPath] }]) },
  ]);
}

let busyboxId = "";
let secondId = "";

beforeAll(async () => {
  busyboxId = await importBusybox("busybox");
  secondId = await importBusybox("archive-second:v2", ["CMD echo second image"]);
});

describe("save and load round trips", () => {
  it("docker-archive: two images in one file load into an empty store with their IDs and names, and run", async () => {
    const dir = scratchDir("archive-docker");
    const file = path.join(dir, "two.tar");
    const saved = await tsrun(["save", "-o", file, "busybox", "archive-second:v2"]);
    expect(saved.code, saved.stderr).toBe(0);
    expect(saved.stdout).toBe("");
    // The docker save layout: config by digest, manifest.json with full names, layers uncompressed.
    const manifest = JSON.parse((await shAsUser(`tar -xOf ${file} manifest.json`)).stdout) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    expect(manifest.map((m) => m.RepoTags)).toEqual([["docker.io/library/busybox:latest"], ["docker.io/library/archive-second:v2"]]);
    expect(manifest[0]?.Config).toBe(`${hex(busyboxId)}.json`);
    expect(manifest[0]?.Layers[0]).toMatch(/^[a-f0-9]{64}\/layer\.tar$/);
    expect((await shAsUser(`tar -tf ${file}`)).stdout).toMatch(/^repositories$/m);

    const store = emptyStore();
    const loaded = await tsrun(["load", "-i", file], { env: store });
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(loaded.stdout).toBe("Loaded image: busybox:latest\nLoaded image: archive-second:v2\n");
    expect(await imageIds(store)).toEqual([busyboxId, secondId].sort());
    const run = await tsrun(["run", "--rm", "archive-second:v2"], { env: store });
    expect(run.stdout).toBe("second image\n");
    // Loading again changes nothing and says the same.
    expect((await tsrun(["load", "-i", file], { env: store })).stdout).toBe(loaded.stdout);
    expect(readdirSync(path.join(store.TSRUN_ROOT, "tmp"))).toEqual([]);
  });

  it.each(["docker-archive", "oci-archive"])("run -> commit -> save (%s) -> load into an empty store -> run sees the change and the config", async (format) => {
    const name = `roundtrip-${format}`;
    const made = await tsrun(["run", "--name", name, "busybox", "sh", "-c", "echo committed > /made.txt && rm /bin/vi && mkdir -p /data && chown 1000:1000 /data"]);
    expect(made.code, made.stderr).toBe(0);
    const committed = await tsrun(["commit", "-c", 'CMD ["cat", "/made.txt"]', "-c", "ENV ROUNDTRIP=1", name, `${name}:1`]);
    expect(committed.code, committed.stderr).toBe(0);
    const file = path.join(scratchDir("roundtrip"), "image.tar");
    const saved = await tsrun(["save", "--format", format, "-o", file, `${name}:1`]);
    expect(saved.code, saved.stderr).toBe(0);
    const store = emptyStore();
    const loaded = await tsrun(["load", "-i", file], { env: store });
    expect(loaded.code, loaded.stderr).toBe(0);
    // The same image ID: the config travels byte for byte.
    const id = (await tsrun(["images", "-q", "--no-trunc", `${name}:1`])).stdout.trim();
    expect(await imageIds(store)).toEqual([id]);
    const run = await tsrun(["run", "--rm", `${name}:1`], { env: store });
    expect(run.stdout).toBe("committed\n");
    const check = await tsrun(["run", "--rm", `${name}:1`, "sh", "-c", 'echo $ROUNDTRIP; test -e /bin/vi || echo vi-gone; stat -c %u:%g /data'], { env: store });
    expect(check.stdout).toBe("1\nvi-gone\n1000:1000\n");
    await tsrun(["rm", name]);
  });

  it("oci-archive to stdout, gzip-compressed, loads from stdin; an ID saves untagged", async () => {
    const dir = scratchDir("archive-oci");
    const saved = await shAsUser(`"$TSRUN" save --format oci-archive busybox ${busyboxId.slice(7, 19)} archive-second | gzip > ${dir}/o.tar.gz`);
    expect(saved.code, saved.stderr).toBe(0);
    const index = JSON.parse((await shAsUser(`zcat ${dir}/o.tar.gz | tar -xOf - index.json`)).stdout) as { manifests: { annotations?: Record<string, string> }[] };
    // busybox by name and by ID is one image: named once; archive-second (no tag) means all its tags.
    expect(index.manifests.map((m) => m.annotations?.["org.opencontainers.image.ref.name"])).toEqual(["docker.io/library/busybox:latest", "docker.io/library/archive-second:v2"]);
    const store = emptyStore();
    const loaded = await tsrun(["load"], { env: store, input: readFileSync(path.join(dir, "o.tar.gz")) });
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(loaded.stdout).toBe("Loaded image: busybox:latest\nLoaded image: archive-second:v2\n");
    expect((await tsrun(["run", "--rm", "busybox", "echo", "from oci"], { env: store })).stdout).toBe("from oci\n");

    const byId = await shAsUser(`"$TSRUN" save ${busyboxId} | TSRUN_ROOT=${emptyStore().TSRUN_ROOT} "$TSRUN" load`);
    expect(byId.stdout).toBe(`Loaded image ID: ${busyboxId}\n`);
  });

  it("a two-layer OCI archive (gzip layers, a whiteout) loads; saved as docker-archive its layers are uncompressed", async () => {
    const dir = scratchDir("archive-layers");
    const image = twoLayerImage();
    writeFileSync(path.join(dir, "two-layer.tar"), ociArchive(image, "two-layer:1"));
    const store = emptyStore();
    const loaded = await tsrun(["load", "-i", path.join(dir, "two-layer.tar")], { env: store });
    expect(loaded.code, loaded.stderr).toBe(0);
    // ref.name without a registry is named as podman names it.
    expect(loaded.stdout).toBe("Loaded image: localhost/two-layer:1\n");
    const run = await tsrun(["run", "--rm", "localhost/two-layer:1", "sh", "-c", "cat /hello.txt; ls /home"], { env: store });
    expect(run.stdout).toBe("layer two\nalice\n");

    // docker-archive: each layer.tar is the uncompressed layer (its sha256 is the diff_id).
    const out = path.join(dir, "out");
    const saved = await shAsUser(`mkdir ${out} && "$TSRUN" save localhost/two-layer:1 | tar -xf - -C ${out}`, { env: store });
    expect(saved.code, saved.stderr).toBe(0);
    const [item] = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8")) as { Layers: string[] }[];
    expect(item?.Layers.map((l) => sha256(readFileSync(path.join(out, l))))).toEqual(image.diffIds);

    // oci-archive keeps the stored blobs and manifest byte for byte.
    const oci = await shAsUser(`"$TSRUN" save --format oci-archive localhost/two-layer:1 | tar -xOf - index.json`, { env: store });
    expect((JSON.parse(oci.stdout) as { manifests: { digest: string }[] }).manifests[0]?.digest).toBe(sha256(image.manifest));
  });

  it("refuses to write an archive to a terminal, and an unknown image leaves no file", async () => {
    const tty = await shAsUser(`script -qec '"$TSRUN" save busybox' /dev/null`);
    expect(tty.stdout).toContain("cowardly refusing to save to a terminal");
    const dir = scratchDir("archive-missing");
    const r = await tsrun(["save", "-o", path.join(dir, "x.tar"), "busybox", "no-such-image"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/no-such-image/);
    expect(readdirSync(dir)).toEqual([]);
    // Where the archive cannot go: the user's path in the message, not a temporary name.
    const noDir = await tsrun(["save", "-o", path.join(dir, "missing", "x.tar"), "busybox"]);
    expect(noDir.stderr).toBe(`Error: save: cannot write ${dir}/missing/x.tar: directory ${dir}/missing does not exist\n`);
    const isDir = await tsrun(["save", "-o", dir, "busybox"]);
    expect(isDir.code).toBe(125);
    expect(isDir.stderr).toBe(`Error: save: cannot write ${dir}: it is a directory\n`);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe.skipIf(missingInteropTools.length > 0)("interop with podman and skopeo (skipped when either is not installed)", () => {
  it("podman loads and runs our archives; skopeo inspects them", async () => {
    const dir = scratchDir("archive-podman-in");
    await tsrun(["save", "-o", path.join(dir, "d.tar"), "archive-second:v2"]);
    await tsrun(["save", "--format", "oci-archive", "-o", path.join(dir, "o.tar"), "busybox"]);
    const p = podmanCli(dir);
    const r = await shAsUser(
      `set -e; ${p} load -q -i ${dir}/d.tar; ${p} load -q -i ${dir}/o.tar; ${p} run --rm --net none docker.io/library/archive-second:v2; ` +
        `${p} images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' | sort; ` +
        `skopeo inspect --format '{{.Digest}}' docker-archive:${dir}/d.tar; skopeo inspect --format '{{.Layers}}' oci-archive:${dir}/o.tar`,
      { timeout: 60_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Loaded image: docker.io/library/archive-second:v2");
    expect(r.stdout).toContain("Loaded image: docker.io/library/busybox:latest");
    expect(r.stdout).toContain("second image\n");
    // Same image IDs as in tsrun: the configs went through byte for byte.
    expect(r.stdout).toContain(`docker.io/library/archive-second:v2 ${secondId}`);
    expect(r.stdout).toContain(`docker.io/library/busybox:latest ${busyboxId}`);
    expect(r.stdout).toMatch(/^sha256:[a-f0-9]{64}$/m);
  });

  it("loads and runs what podman save and skopeo copy write (docker-archive with symlinks, oci-archive, a bare tag)", async () => {
    const dir = scratchDir("archive-podman-out");
    const p = podmanCli(dir);
    const made = await shAsUser(
      `set -e; cd ${dir}; ${p} import -q ${env.busyboxTar} localhost/pod:1 >/dev/null; ${p} tag localhost/pod:1 docker.io/library/pod2:2; ` +
        `${p} save -q -m --format docker-archive -o pd.tar localhost/pod:1 docker.io/library/pod2:2; ` +
        `${p} save -q --format oci-archive -o po.tar localhost/pod:1; ` +
        `skopeo copy -q oci-archive:po.tar docker-archive:sd.tar:skopeo-d:3; skopeo copy -q docker-archive:pd.tar:localhost/pod:1 oci-archive:so.tar:v9`,
      { timeout: 60_000 },
    );
    expect(made.code, made.stderr).toBe(0);
    const store = emptyStore();
    const load = async (file: string): Promise<string> => {
      const r = await tsrun(["load", "-i", path.join(dir, file)], { env: store });
      expect(r.code, `${file}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    expect(await load("pd.tar")).toBe("Loaded image: localhost/pod:1\nLoaded image: pod2:2\n");
    expect(await load("po.tar")).toBe("Loaded image: localhost/pod:1\n");
    expect(await load("sd.tar")).toBe("Loaded image: skopeo-d:3\n");
    // skopeo's ref.name "v9" is just a tag: podman would call it localhost/v9:latest, and so do we.
    expect(await load("so.tar")).toBe("Loaded image: localhost/v9:latest\n");
    expect((await imageIds(store)).length).toBe(1);
    for (const name of ["localhost/pod:1", "pod2:2", "skopeo-d:3", "localhost/v9"]) {
      expect((await tsrun(["run", "--rm", name, "echo", "ok"], { env: store })).stdout).toBe("ok\n");
    }
  });
});

describe.skipIf(missingInteropTools.length > 0)("a podman-built image with several layers and empty-layer history (skipped without podman and skopeo)", () => {
  it("keeps its history, sizes and config through podman save -> tsrun load -> tsrun save -> podman load", async () => {
    const dir = scratchDir("archive-podman-build");
    const p = podmanCli(dir);
    const ctx = path.join(dir, "ctx");
    const history = "history --no-trunc --format '{{.CreatedBy}}|{{.Size}}|{{.Comment}}'";
    const made = await shAsUser(
      `set -e; mkdir ${ctx}; cd ${ctx}; echo one > one; echo two > two; ` +
        `printf 'FROM localhost/base:1\\nENV A=1\\nCOPY one /one\\nLABEL l=v\\nCOPY two /d/two\\nUSER 1000\\nWORKDIR /w\\nCMD ["sh", "-c", "cat /one /d/two; echo $A; id -u; pwd"]\\n' > Containerfile; ` +
        `${p} import -q ${env.busyboxTar} localhost/base:1 >/dev/null; ${p} build -q -t localhost/layers:1 . >/dev/null; ` +
        `${p} save -q --format docker-archive -o ${dir}/pd.tar localhost/layers:1; skopeo copy -q docker-archive:${dir}/pd.tar oci-archive:${dir}/so.tar:layers:2; ` +
        `${p} ${history} localhost/layers:1`,
      { timeout: 90_000 },
    );
    expect(made.code, made.stderr).toBe(0);
    // Docker writes sizes without the space podman puts in.
    const podmanHistory = made.stdout.replace(/(\d) (B|kB|MB)\|/g, "$1$2|");
    expect(podmanHistory.split("\n").filter(Boolean)).toHaveLength(8);
    const store = emptyStore();
    for (const file of ["pd.tar", "so.tar"]) {
      const loaded = await tsrun(["load", "-i", path.join(dir, file)], { env: store });
      expect(loaded.code, `${file}: ${loaded.stderr}`).toBe(0);
    }
    expect((await imageIds(store)).length).toBe(1);
    for (const name of ["localhost/layers:1", "localhost/layers:2"]) {
      expect((await tsrun(["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}|{{.Comment}}", name], { env: store })).stdout).toBe(podmanHistory);
      expect((await tsrun(["run", "--rm", name], { env: store })).stdout).toBe("one\ntwo\n1\n1000\n/w\n");
    }

    // And back, in both formats, into an empty podman store.
    const back = path.join(dir, "back");
    const pb = podmanCli(back);
    for (const format of ["docker-archive", "oci-archive"]) {
      const saved = await tsrun(["save", "--format", format, "-o", path.join(dir, `${format}.tar`), "localhost/layers:1"], { env: store });
      expect(saved.code, saved.stderr).toBe(0);
    }
    const reloaded = await shAsUser(
      `set -e; ${pb} load -q -i ${dir}/docker-archive.tar >/dev/null; ${pb} ${history} localhost/layers:1; ` +
        `${pb} rmi -f localhost/layers:1 >/dev/null; ${pb} load -q -i ${dir}/oci-archive.tar >/dev/null; ${pb} ${history} localhost/layers:1; ` +
        `skopeo inspect --format '{{len .Layers}}' oci-archive:${dir}/oci-archive.tar`,
      { timeout: 90_000 },
    );
    expect(reloaded.code, reloaded.stderr).toBe(0);
    expect(reloaded.stdout).toBe(made.stdout + made.stdout + "3\n");
  });
});

describe("hostile and broken archives", () => {
  it("are refused with one line and exit 125, and the store is exactly as before", async () => {
    const dir = scratchDir("archive-hostile");
    const store = emptyStore();
    // A store with something in it, so "unchanged" means something.
    const good = path.join(dir, "good.tar");
    writeFileSync(good, ociArchive(twoLayerImage(), "good:1"));
    expect((await tsrun(["load", "-i", good], { env: store })).code).toBe(0);
    const before = storeSnapshot(store.TSRUN_ROOT);

    const image = twoLayerImage();
    const busyboxDiffId = sha256(readFileSync(env.busyboxTar));
    const saved = path.join(dir, "saved.tar");
    expect((await tsrun(["save", "-o", saved, "archive-second:v2"])).code).toBe(0);
    const savedBytes = readFileSync(saved);
    const cases: [string, Buffer, RegExp][] = [
      ["member ../evil", ociArchive(image, "evil:1", (e) => [{ name: "../evil", data: "x" }, ...e]), /path escapes the archive/],
      ["absolute member", dockerArchive(busyboxDiffId, [{ name: "/etc/evil", data: "x" }]), /absolute path/],
      ["layer symlink leaving the archive", dockerArchive(busyboxDiffId, [{ name: "link.tar", type: "SymbolicLink", linkpath: "../../etc/passwd" }], "link.tar"), /leaves the archive/],
      ["missing layer blob", ociArchive(image, "missing:1", (e) => e.filter((x) => x.name !== `blobs/sha256/${hex(sha256(image.layers[1] as Buffer))}`)), /missing from the archive/],
      ["blob that is not what its name says", ociArchive(image, "tampered:1", (e) => e.map((x) => (x.name === `blobs/sha256/${hex(sha256(image.config))}` ? { ...x, data: Buffer.from(String(x.data).replace("hello", "HELLO")) } : x))), /digest mismatch/],
      ["docker-archive layer with the wrong diff_id", dockerArchive(sha256("not the layer")), /does not match the config's diff_id/],
      ["gzip layer with the wrong diff_id (found while unpacking)", ociArchive(twoLayerImage({ wrongDiffId: true }), "wrongdiff:1"), /diff_id mismatch/],
      // The store has this chain already, so nothing unpacks it: the blob is hashed instead.
      ["gzip layer posing as a layer the store has", ociArchive(twoLayerImage({ baseContent: tarBuffer([{ name: "evil", data: "x" }]), cmd: "/etc/passwd" }), "poser:1"), /diff_id mismatch/],
      // The store has the whole image: nothing is stored, but the archive must still be sound.
      ["known image with a bad layer", ociArchive(twoLayerImage({ baseContent: tarBuffer([{ name: "evil", data: "x" }]) }), "known:1"), /diff_id mismatch/],
      ["truncated archive", savedBytes.subarray(0, Math.floor(savedBytes.length / 2)), /truncated/i],
      ["truncated gzip", gzipSync(savedBytes).subarray(0, 50_000), /not valid gzip/],
      ["manifest.json that is not JSON", tarBuffer([{ name: "manifest.json", data: "[{" }]), /manifest\.json is not valid JSON/],
      ["manifest.json over 10 MB", tarBuffer([{ name: "manifest.json", data: Buffer.alloc(11 * 1024 * 1024, 0x20) }]), /more than the 10485760 allowed/],
      ["not an archive", Buffer.from("hello\n".repeat(200)), /not a tar archive/],
    ];
    for (const [what, bytes, message] of cases) {
      const file = path.join(dir, "case.tar");
      writeFileSync(file, bytes);
      const r = await tsrun(["load", "-i", file], { env: store });
      expect(r.code, `${what}: ${r.stdout}${r.stderr}`).toBe(125);
      expect(r.stderr, what).toMatch(/^Error: load: [^\n]+\n$/);
      expect(r.stderr, what).toMatch(message);
      expect(storeSnapshot(store.TSRUN_ROOT), what).toBe(before);
    }
  });
});
