// Layers as they come from the wild, through every way a layer enters or leaves tsrun: import,
// load (docker-archive and oci-archive), pull (from Debian's registry on 127.0.0.1), cp into a
// container, and back out through commit, diff, export and save. The layers: names that are not
// valid UTF-8 (Latin-1, as old images have them), V7 headers from GNU tar, Python's base-256
// times, a PAX size, a directory listed after its files, a hardlink to a file replaced later, a
// checksum summed over signed chars, no end-of-archive blocks; hostile ones that write through a
// symlink of an earlier layer; broken ones that are refused in one line, store unchanged.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { emptyStore, env, importBusybox, scratchDir, shAsUser, storeSnapshot, tsrun, unique } from "./helpers.js";
import { startRegistry, stopRegistry, type Registry } from "./registry-server.js";
import { paxRecords, rawEntry, rawTar, rewriteChecksum, withoutEnd, type RawTarEntry } from "../unit/tar-builder.js";
import { makeLatin1Tree } from "../unit/latin1-tree.js";

const sha256 = (data: Buffer | string): string => "sha256:" + createHash("sha256").update(data).digest("hex");
const hex = (digest: string): string => digest.slice("sha256:".length);
const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };

/**
 * A signature of /w (or $ROOT/w on the host): every path in byte order with its type, content
 * digest, link count or link target, hex-encoded so that no byte is lost on the way out. The
 * same script runs in busybox and on the host (GNU coreutils).
 */
const SIGNATURE =
  'cd "${ROOT:-}/w" && find . | LC_ALL=C sort | while read -r p; do ' +
  'if [ -L "$p" ]; then echo "$p -> $(readlink "$p")"; ' +
  'elif [ -f "$p" ]; then echo "$p $(md5sum < "$p" | cut -c1-8) $(stat -c %h "$p")"; ' +
  'else echo "$p/"; fi; done | od -An -tx1 -v | tr -d " \\n"';
/** What the container changes in /w (or $ROOT/w): a Latin-1 file and link added, one deleted. */
const CHANGE = 'R=${ROOT:-}; echo new > "$R/w/$(printf "n\\351w")"; ln -s "$(printf "caf\\351")" "$R/w/$(printf "s\\351")"; rm "$R/w/$(printf "caf\\350")"';
/** What the odd layer must give in /o. */
const ODD_CHECK =
  "cat /o/v7/f; stat -c %h /o/v7/h; readlink /o/v7/l; stat -c %Y /o/past /o/future; cat /o/sized; echo; " +
  'stat -c "%a %Y" /o/late; cat /o/late/sub/b /o/t /o/h; cat "/o/sign$(printf "\\351")d"';
const ODD_EXPECTED = "v7 file\n2\nf\n-1000\n8589934593\nfrom pax size\n555 1000\nbsecondfirstsigned";

let dir: string;
/** The Latin-1 tree (w/...) as a GNU tar layer, and the signatures before and after CHANGE. */
let latin1Layer: Buffer;
let expected: string;
let expectedChanged: string;
let oddLayer: Buffer;
let busybox: Buffer;

/** A tar readable by the test user. */
function inputFile(name: string, data: Buffer): string {
  const file = path.join(dir, name);
  writeFileSync(file, data);
  chmodSync(file, 0o644);
  return file;
}

/** SIGNATURE run on the host over root/w. */
function hostSignature(root: string): string {
  return execFileSync("sh", ["-c", SIGNATURE], { env: { ...process.env, ROOT: root, LC_ALL: "C" } }).toString();
}

/** A docker-archive of one image (Docker 24's layout): the config, each layer as <id>/layer.tar, manifest.json. */
function dockerArchive(layers: Buffer[], tag: string): Buffer {
  const config = Buffer.from(
    JSON.stringify({
      architecture: ARCH[process.arch] ?? process.arch,
      os: "linux",
      config: { Cmd: ["sh"] },
      rootfs: { type: "layers", diff_ids: layers.map((l) => sha256(l)) },
      history: layers.map(() => ({ created_by: "wild" })),
    }),
  );
  const configName = `${hex(sha256(config))}.json`;
  const layerNames = layers.map((l) => `${hex(sha256(l))}/layer.tar`);
  return rawTar([
    { name: configName, content: config },
    ...layers.map((l, i): RawTarEntry => ({ name: layerNames[i] as string, content: l })),
    { name: "manifest.json", content: JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: layerNames }]) },
  ]);
}

/** Runs a script in a container of image, printing what it prints. */
async function inContainer(image: string, script: string, store: Record<string, string> = {}): Promise<string> {
  const r = await tsrun(["run", "--rm", image, "sh", "-c", script], { env: store });
  expect(r.stderr, `${image}: ${script}`).toBe("");
  return r.stdout;
}

/** The odd layer: V7 headers, Python's base-256 times, and what GNU tar would not write. */
function makeOddLayer(): Buffer {
  const v7src = path.join(dir, "v7src");
  mkdirSync(path.join(v7src, "o", "v7"), { recursive: true });
  writeFileSync(path.join(v7src, "o", "v7", "f"), "v7 file\n");
  linkSync(path.join(v7src, "o", "v7", "f"), path.join(v7src, "o", "v7", "h"));
  symlinkSync("f", path.join(v7src, "o", "v7", "l"));
  const v7 = execFileSync("tar", ["--format=v7", "-cf", "-", "-C", v7src, "o"]);
  const python = execFileSync("python3", [
    "-c",
    "import sys,tarfile,io\nb=io.BytesIO(); t=tarfile.open(fileobj=b,mode='w',format=tarfile.GNU_FORMAT)\n" +
      "for name,mtime in [('o/past',-1000),('o/future',2**33+1)]:\n  i=tarfile.TarInfo(name); i.mtime=mtime; t.addfile(i)\nt.close(); sys.stdout.buffer.write(b.getvalue())",
  ]);
  const signed = rawEntry({ name: "x", content: "signed" });
  signed.write("o/sign\xe9d", 0, "latin1");
  rewriteChecksum(signed, true);
  const crafted = rawTar(
    [
      { name: "x", content: "from pax size", size: 0, pax: { size: "13", path: "o/sized" } },
      { name: "o/late/sub/b", content: "b" },
      { name: "o/late/", type: "5", mode: 0o555, mtime: 1000 },
      { name: "o/t", content: "first" },
      { name: "o/h", type: "1", linkname: "o/t" },
      { name: "o/t", content: "second" },
    ],
    { end: false },
  );
  // No end-of-archive blocks at all, as some writers leave it (Go's reader, hence Docker, accepts it).
  return Buffer.concat([withoutEnd(v7), withoutEnd(python), crafted, signed]);
}

let registry: Registry | undefined;

beforeAll(async () => {
  dir = scratchDir("tar-wild");
  busybox = readFileSync(env.busyboxTar);
  const src = path.join(dir, "src");
  makeLatin1Tree(path.join(src, "w"));
  latin1Layer = execFileSync("tar", ["--format=gnu", "-cf", "-", "-C", src, "w"]);
  expected = hostSignature(src);
  const changed = path.join(dir, "changed");
  execFileSync("cp", ["-a", src, changed]);
  execFileSync("sh", ["-c", CHANGE], { env: { ...process.env, ROOT: changed } });
  expectedChanged = hostSignature(changed);
  oddLayer = makeOddLayer();
  execFileSync("chown", ["-R", `${env.user?.uid ?? 0}:${env.user?.gid ?? 0}`, dir]);
  await importBusybox("busybox");
}, 120_000);

afterAll(() => {
  if (registry) stopRegistry(registry);
});

describe("names that are not valid UTF-8, through every way in and out", () => {
  it("import -> run -> diff -> commit -> export -> import -> save -> load into an empty store: the same bytes all along", async () => {
    // One archive: the busybox root, then the Latin-1 tree.
    const image = unique("wild-import");
    expect((await tsrun(["import", inputFile("rootfs.tar", Buffer.concat([withoutEnd(busybox), latin1Layer])), image])).code).toBe(0);
    expect(await inContainer(image, SIGNATURE)).toBe(expected);

    const container = unique("wild-change");
    const run = await tsrun(["run", "--name", container, image, "sh", "-c", CHANGE]);
    expect(run.code, run.stderr).toBe(0);
    const diff = await shAsUser(`"$TSRUN" diff ${container} | od -An -tx1 -v | tr -d ' \\n'`);
    expect(Buffer.from(diff.stdout, "hex").toString("latin1")).toBe("C /w\nD /w/caf\xe8\nA /w/n\xe9w\nA /w/s\xe9\n");

    const committed = unique("wild-commit");
    expect((await tsrun(["commit", container, committed])).code).toBe(0);
    expect(await inContainer(committed, SIGNATURE)).toBe(expectedChanged);

    const exported = path.join(dir, "export.tar");
    expect((await tsrun(["export", "-o", exported, container])).code).toBe(0);
    const reimported = unique("wild-export");
    expect((await tsrun(["import", exported, reimported])).code).toBe(0);
    expect(await inContainer(reimported, SIGNATURE)).toBe(expectedChanged);

    const saved = path.join(dir, "saved.tar");
    expect((await tsrun(["save", "-o", saved, committed])).code).toBe(0);
    // The committed layer holds the names as bytes (PAX records with hdrcharset=BINARY, as
    // POSIX asks), the deletion as a whiteout of the Latin-1 name: Python's tarfile reads them.
    const names = execFileSync("python3", [
      "-c",
      "import json,sys,tarfile\na=tarfile.open(sys.argv[1]); m=json.load(a.extractfile('manifest.json'))\n" +
        "l=tarfile.open(fileobj=a.extractfile(m[0]['Layers'][-1]))\nprint(' '.join(sorted(x.name.encode('utf-8','surrogateescape').hex() for x in l)))",
      saved,
    ]).toString();
    expect(names.trim().split(" ").map((h) => Buffer.from(h, "hex").toString("latin1"))).toEqual(["w", "w/.wh.caf\xe8", "w/n\xe9w", "w/s\xe9"]);
    const store = emptyStore();
    expect((await tsrun(["load", "-i", saved], { env: store })).code).toBe(0);
    expect(await inContainer(committed, SIGNATURE, store)).toBe(expectedChanged);
    await tsrun(["rm", "-f", container]);
  }, 120_000);

  it("cp: a tar stream and a host directory into a container, and back out to the host, keep every byte; '.wh.' names are names", async () => {
    const container = unique("wild-cp");
    expect((await tsrun(["run", "-d", "--name", container, "busybox", "sleep", "120"])).code).toBe(0);
    expect((await tsrun(["cp", "-", `${container}:/`], { input: latin1Layer })).code).toBe(0);
    expect((await tsrun(["exec", container, "sh", "-c", SIGNATURE])).stdout).toBe(expected);
    // Whiteout names are plain names in a copy, as with docker cp: /etc/passwd stays.
    expect((await tsrun(["cp", "-", `${container}:/etc`], { input: rawTar([{ name: ".wh.passwd", content: "a plain file" }]) })).code).toBe(0);
    expect((await tsrun(["exec", container, "sh", "-c", "cat /etc/.wh.passwd; echo; head -1 /etc/passwd"])).stdout).toBe("a plain file\nroot:x:0:0:root:/root:/bin/sh\n");
    // A host directory with such names (node-tar, which tsrun used before, crashed on them).
    const r = await tsrun(["cp", path.join(dir, "changed", "w"), `${container}:/copy/`]);
    expect(r.code, r.stderr).toBe(0);
    const out = scratchDir("wild-cp-out");
    expect((await tsrun(["cp", `${container}:/copy`, path.join(out, "w")])).code).toBe(0);
    expect(hostSignature(out)).toBe(expectedChanged);
    await tsrun(["rm", "-f", container]);
  }, 120_000);
});

describe("cp's messages name what the user gave", () => {
  it("a broken or hostile tar stream, or a file over a directory, is a one-line error naming where the entry was going", async () => {
    const container = unique("wild-cp-msg");
    expect((await tsrun(["run", "-d", "--name", container, "busybox", "sleep", "120"])).code).toBe(0);
    const cases: [Buffer, RegExp][] = [
      [rawTar([{ name: "x", content: "x", pax: { path: "a/../../escape" } }]), /^Error: cp: archive entry "a\/\.\.\/\.\.\/escape" \(copying to \/tmp in the container\): path "a\/\.\.\/\.\.\/escape" climbs above \/tmp in the container\n$/],
      [rawTar([{ name: "d/h", type: "1", linkname: "nothere" }]), /^Error: cp: \/tmp\/d\/h in the container: hardlink target "nothere" does not exist in \/tmp in the container \(a link must point to a file extracted earlier\)\n$/],
      [rawTar([{ name: "big", content: "x".repeat(5000) }]).subarray(0, 3000), /^Error: cp: invalid tar archive: .*truncated/],
    ];
    for (const [input, message] of cases) {
      const r = await tsrun(["cp", "-", `${container}:/tmp`], { input });
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/layer/);
    }
    // As docker cp, a directory is never replaced by a file (nor the reverse), in the container
    // or on the host; the message names the path the user gave.
    expect((await tsrun(["exec", container, "sh", "-c", "mkdir -p /data/d /tmp/x/keep && echo one > /data/d/one"])).code).toBe(0);
    const intoContainer = await tsrun(["cp", "-", `${container}:/tmp`], { input: rawTar([{ name: "x", content: "a file" }]) });
    expect(intoContainer.stderr).toMatch(/^Error: cp: \/tmp\/x in the container: cannot overwrite a directory with a non-directory\n$/);
    expect((await tsrun(["exec", container, "test", "-d", "/tmp/x/keep"])).code).toBe(0);
    const out = scratchDir("wild-cp-msg-out");
    mkdirSync(path.join(out, "d", "one", "keep"), { recursive: true });
    if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, out]);
    const onHost = await tsrun(["cp", `${container}:/data/d`, "."], { cwd: out });
    expect(onHost.code, onHost.stderr).toBe(125);
    expect(onHost.stderr).toMatch(/^Error: cp: d\/one: cannot overwrite a directory with a non-directory\n$/);
    expect(existsSync(path.join(out, "d", "one", "keep"))).toBe(true);
    await tsrun(["rm", "-f", container]);
  }, 120_000);
});

describe("odd headers through load, save, pull", () => {
  it("docker-archive load -> oci-archive save -> load -> push -> pull into an empty store: every layer reads the same", async () => {
    const image = `wild-odd:${unique("v")}`;
    const loaded = await tsrun(["load", "-i", inputFile("odd.tar", dockerArchive([busybox, latin1Layer, oddLayer], image))]);
    expect(loaded.stdout, loaded.stderr).toBe(`Loaded image: ${image}\n`);
    const check = `${SIGNATURE}; echo; ${ODD_CHECK}`;
    const want = `${expected}\n${ODD_EXPECTED}`;
    expect(await inContainer(image, check)).toBe(want);

    const oci = path.join(dir, "odd-oci.tar");
    expect((await tsrun(["save", "--format", "oci-archive", "-o", oci, image])).code).toBe(0);
    const ociStore = emptyStore();
    expect((await tsrun(["load", "-i", oci], { env: ociStore })).code).toBe(0);
    expect(await inContainer(image, check, ociStore)).toBe(want);

    registry = await startRegistry(dir, "registry");
    const remote = `${registry.host}/${image}`;
    expect((await tsrun(["tag", image, remote])).code).toBe(0);
    const pushed = await tsrun(["push", "-q", remote]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const pullStore = emptyStore();
    const pulled = await tsrun(["pull", "-q", remote], { env: pullStore });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await inContainer(remote, check, pullStore)).toBe(want);
  }, 120_000);
});

describe("hostile layers", () => {
  it("a later layer that writes through an earlier layer's symlink writes into its own directory, never through the link", async () => {
    const sentinel = scratchDir("wild-sentinel");
    writeFileSync(path.join(sentinel, "keep"), "original");
    const hostPath = `/tmp/tsrun-wild-escape-${process.pid}`;
    const links = rawTar([
      { name: "escape", type: "2", linkname: sentinel },
      { name: "up", type: "2", linkname: "../../../../../../../.." },
      { name: "etc2", type: "2", linkname: "/etc" },
    ]);
    const through = rawTar([
      { name: "escape/pwned", content: "layer two" },
      { name: `up${hostPath}`, content: "layer two" },
      { name: "etc2/passwd", content: "hacked" },
    ]);
    const image = `wild-hostile:${unique("v")}`;
    const loaded = await tsrun(["load", "-i", inputFile("hostile.tar", dockerArchive([busybox, links, through], image))]);
    expect(loaded.code, loaded.stderr).toBe(0);
    // In the merged view each name is a directory of the top layer: the links are hidden.
    const seen = await inContainer(image, `for d in /escape /up /etc2; do [ -d $d ] && [ ! -L $d ] && echo dir; done; cat /escape/pwned /up${hostPath}; head -1 /etc/passwd; cat /etc2/passwd`);
    expect(seen).toBe("dir\ndir\ndir\nlayer twolayer tworoot:x:0:0:root:/root:/bin/sh\nhacked");
    expect(readdirSync(sentinel)).toEqual(["keep"]);
    expect(existsSync(hostPath)).toBe(false);
  }, 120_000);

  it("broken and hostile layers are refused in one line with status 125, and the store stays as it was", async () => {
    const store = emptyStore();
    const busyboxOnly = await tsrun(["load", "-i", inputFile("base.tar", dockerArchive([busybox], "base:1"))], { env: store });
    expect(busyboxOnly.code, busyboxOnly.stderr).toBe(0);
    const before = storeSnapshot(store.TSRUN_ROOT);
    const truncated = rawTar([{ name: "big", content: "x".repeat(5000) }]).subarray(0, 3000);
    const badChecksum = rawTar([{ name: "f", content: "x" }]);
    badChecksum[0] = 0x67;
    const cases: [string, Buffer, RegExp][] = [
      ["a PAX path with ..", rawTar([{ name: "x", content: "x", pax: { path: "a/../../escape" } }]), /"a\/\.\.\/\.\.\/escape" climbs above the layer root/],
      ["a whiteout above the root", rawTar([{ name: "../.wh.etc", content: "" }]), /climbs above the layer root/],
      ["a hardlink out through a symlink", rawTar([{ name: "l", type: "2", linkname: "/" }, { name: "h", type: "1", linkname: "l/../../etc/passwd" }]), /climbs above the layer root|does not exist in the layer/],
      ["a zero block before more headers", Buffer.concat([rawTar([{ name: "a", content: "1" }], { end: false }), Buffer.alloc(512), rawTar([{ name: "b", content: "2" }])]), /a zero block is followed by more headers/],
      ["a truncated archive", truncated, /truncated/],
      ["a bad checksum", badChecksum, /checksum mismatch/],
      ["a global PAX size", rawTar([{ name: "g", type: "g", content: paxRecords({ size: "5" }) }, { name: "f", content: "x" }]), /global PAX header sets the size/],
    ];
    for (const [what, layer, message] of cases) {
      const r = await tsrun(["load", "-i", inputFile(`bad-${what.replace(/\W+/g, "-")}.tar`, dockerArchive([busybox, layer], "bad:1"))], { env: store });
      expect(r.code, `${what}: ${r.stderr}`).toBe(125);
      expect(r.stderr, what).toMatch(/^Error: [^\n]*\n$/);
      expect(r.stderr, what).toMatch(message);
      expect(storeSnapshot(store.TSRUN_ROOT), what).toBe(before);
    }
  }, 120_000);
});
