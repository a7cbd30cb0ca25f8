// Huge and malformed inputs are bounded and refused: image archives (load), layer tarballs
// (import) and registry replies (pull, from a hostile registry served by this test on
// 127.0.0.1). Each is a one-line error with status 125, from a tsrun whose heap is capped at
// 96 MiB (a command that tried to hold a huge input in memory would die instead), and the store
// is exactly as it was.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { createHash } from "node:crypto";
import { env, scratchDir, tsrun } from "./helpers.js";
import { rawTar, type RawTarEntry } from "../unit/tar-builder.js";
import { checkStore, must, reportCounts } from "./faults.js";

type Env = Record<string, string>;

const counts = { badInputs: 0 };
const MEMORY_CAP = { NODE_OPTIONS: "--max-old-space-size=96" };
let store: Env;
let files: string;
let imagesBefore: string;
let server: http.Server;
let registryHost: string;

const sha256 = (data: Buffer | string): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Writes an input file readable by the test user. */
function inputFile(name: string, data: Buffer): string {
  const file = path.join(files, name);
  writeFileSync(file, data);
  chmodSync(file, 0o644);
  return file;
}

/** A file of `size` bytes, written in chunks (for inputs larger than we want in memory). */
function bigFile(name: string, head: Buffer, size: number, fill = 0x20, tail = Buffer.alloc(0)): string {
  const file = path.join(files, name);
  const fd = openSync(file, "w", 0o644);
  writeSync(fd, head);
  const chunk = Buffer.alloc(1 << 20, fill);
  for (let left = size - head.length - tail.length; left > 0; left -= chunk.length) writeSync(fd, chunk, 0, Math.min(left, chunk.length));
  writeSync(fd, tail);
  closeSync(fd);
  return file;
}

async function expectRefused(args: string[], message: RegExp): Promise<void> {
  const r = await tsrun(args, { env: { ...store, ...MEMORY_CAP }, timeout: 120_000 });
  counts.badInputs++;
  const what = `tsrun ${args.join(" ").slice(0, 200)}`;
  expect(r.code, `${what}: ${r.stderr.slice(0, 2000)}`).toBe(125);
  expect(r.stderr, what).toMatch(/^Error: [^\n]*\n$/);
  expect(r.stderr, what).toMatch(message);
}

/** Runs the cases three at a time: each is its own tsrun process. */
async function inParallel(cases: (() => Promise<void>)[], width = 3): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < cases.length) await (cases[next++] as () => Promise<void>)();
    }),
  );
}

/** A base-256 size field (GNU): 2^62 bytes. */
const absurdSize = Buffer.from([0x80, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0]);

beforeAll(async () => {
  store = { TSRUN_ROOT: scratchDir("store-inputs") };
  files = scratchDir("inputs");
  await must(["import", env.busyboxTar, "bb"], store);
  imagesBefore = await must(["images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"], store);
  server = http.createServer(hostileRegistry);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  registryHost = `127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  server?.close();
  reportCounts("inputs", counts);
  console.log(`bad inputs: ${counts.badInputs} tried`);
  // Nothing of all that reached the store.
  expect(await must(["images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"], store)).toBe(imagesBefore);
  const check = await checkStore(store);
  expect(check.findings, check.raw).toEqual([]);
  expect(check.reclaimable.blobs + check.reclaimable.layers, check.raw).toBe(0);
});

describe("image archives (load)", () => {
  it("are refused when their tar headers, PAX records or JSON documents are absurd", async () => {
    const cases: [string, Buffer, RegExp][] = [
      ["empty", Buffer.alloc(0), /the archive is empty/],
      ["not a tar", Buffer.from("this is not an archive at all".repeat(100)), /not a tar archive/],
      ["absurd member size", rawTar([{ name: "manifest.json", sizeField: absurdSize, content: "[]" }], { end: false }), /truncated|too large|invalid tar|outside of javascript safe integer range/],
      ["huge PAX header", rawTar([{ name: "manifest.json", content: "[]", pax: { comment: "x".repeat(2_000_000) } }]), /extended header of \d+ bytes is larger/],
      ["PAX size record", rawTar([{ name: "layer.tar", content: "[]", pax: { size: "99999999999999" } }]), /truncated|invalid tar/],
      ["PAX path of 100 kB", rawTar([{ name: "x", content: "[]", pax: { path: "a/".repeat(50_000) + "manifest.json" } }]), /not an image archive/],
      ["deeply nested manifest.json", rawTar([{ name: "manifest.json", content: "[".repeat(200_000) + "]".repeat(200_000) }]), /manifest\.json entry 1 is malformed/],
      [
        "a thousand layers",
        rawTar([
          { name: "manifest.json", content: JSON.stringify([{ Config: "c.json", Layers: Array.from({ length: 1000 }, (_, i) => `${i}.tar`) }]) },
          { name: "c.json", content: JSON.stringify({ rootfs: { type: "layers", diff_ids: [] } }) },
        ]),
        /1000 layers, more than the 128/,
      ],
      [
        "an index of 50,000 entries",
        rawTar([
          { name: "oci-layout", content: '{"imageLayoutVersion":"1.0.0"}' },
          { name: "index.json", content: JSON.stringify({ schemaVersion: 2, manifests: Array.from({ length: 50_000 }, (_, i) => ({ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(String(i)), size: 10 })) }) },
        ]),
        /index\.json entry 1: blob sha256:[0-9a-f]{64} is missing/,
      ],
    ];
    await inParallel(cases.map(([name, data, message]) => () => expectRefused(["load", "-i", inputFile(`${name.replace(/\W+/g, "-")}.tar`, data)], message)));
    // manifest.json whose header says 11 MB (the bytes are there too).
    const header: RawTarEntry = { name: "manifest.json", size: 11 << 20 };
    const head = rawTar([header], { end: false }).subarray(0, 512);
    const big = bigFile("big-manifest.tar", head, 512 + (11 << 20) + 1024, 0x20, Buffer.alloc(1024));
    await expectRefused(["load", "-i", big], /manifest\.json is \d+ bytes, more than the \d+ allowed/);
    // A config of 11 MB.
    const configHead = rawTar([{ name: "manifest.json", content: JSON.stringify([{ Config: "c.json", Layers: [] }]) }], { end: false });
    const configHeader = rawTar([{ name: "c.json", size: 11 << 20 }], { end: false }).subarray(0, 512);
    const bigConfig = bigFile("big-config.tar", Buffer.concat([configHead, configHeader]), configHead.length + 512 + (11 << 20) + 1024, 0x20, Buffer.alloc(1024));
    await expectRefused(["load", "-i", bigConfig], /config c\.json \(c\.json\) is \d+ bytes, more than the \d+ allowed/);
  }, 300_000);
});

describe("layer tarballs (import)", () => {
  it("are refused when their headers are absurd or their names too long", async () => {
    const cases: [string, RawTarEntry[], RegExp][] = [
      ["huge PAX header", [{ name: "f", content: "x", pax: { comment: "x".repeat(2_000_000) } }], /extended header of \d+ bytes is too large/],
      ["absurd size", [{ name: "f", sizeField: absurdSize }], /too large|truncated/],
      ["PAX size record", [{ name: "f", content: "x", pax: { size: "99999999999999" } }], /truncated|size/],
      ["long path", [{ name: "f", content: "x", pax: { path: "d/".repeat(3000) + "f" } }], /longer than 4095 bytes/],
      ["long name", [{ name: "f", content: "x", pax: { path: "n".repeat(300) } }], /component longer than 255 bytes/],
      ["sparse file of no known format", [{ name: "f", content: "x", pax: { "GNU.sparse.major": "1" } }], /unsupported sparse file format/],
      ["hardlink to nothing", [{ name: "h", type: "1", linkname: "missing" }], /hardlink target "missing" does not exist/],
    ];
    await inParallel(cases.map(([name, entries, message]) => () => expectRefused(["import", inputFile(`layer-${name.replace(/\W+/g, "-")}.tar`, rawTar(entries))], message)));
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------
// A registry that lies

const linuxConfig = (layers: number): Buffer =>
  Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: Array.from({ length: layers }, (_, i) => sha256(`layer ${i}`)) }, config: {} }));

const LAYER = "application/vnd.oci.image.layer.v1.tar";
const CONFIG = "application/vnd.oci.image.config.v1+json";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

function manifest(config: Buffer, layers: { digest: string; size: number }[], configSize = config.length): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: { mediaType: CONFIG, digest: sha256(config), size: configSize },
      layers: layers.map((l) => ({ mediaType: LAYER, ...l })),
    }),
  );
}

const smallLayer = Buffer.alloc(1024, 1);
const bigConfig = Buffer.concat([Buffer.from('{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]},"pad":"'), Buffer.alloc(9 << 20, 0x61), Buffer.from('"}')]);

/** name -> what the registry answers for its manifest and blobs. */
const repos: Record<string, { manifest?: Buffer | "endless"; type?: string; blobs?: Record<string, Buffer>; blobLength?: number }> = {
  "big-manifest": { manifest: Buffer.concat([Buffer.from('{"schemaVersion":2,"pad":"'), Buffer.alloc(5 << 20, 0x61), Buffer.from('"}')]) },
  "endless-manifest": { manifest: "endless" },
  "many-layers": { manifest: manifest(linuxConfig(200), Array.from({ length: 200 }, (_, i) => ({ digest: sha256(`blob ${i}`), size: 10 }))) },
  "big-config": { manifest: manifest(bigConfig, []), blobs: { [sha256(bigConfig)]: bigConfig } },
  "nested-manifest": { manifest: Buffer.from("[".repeat(100_000) + "]".repeat(100_000)) },
  "unknown-type": { manifest: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/x-what" })), type: "application/x-what" },
  "oversized-blob": {
    manifest: manifest(linuxConfig(1), [{ digest: sha256(smallLayer), size: 100 }]),
    blobs: { [sha256(linuxConfig(1))]: linuxConfig(1), [sha256(smallLayer)]: smallLayer },
  },
  "corrupt-blob": {
    manifest: manifest(linuxConfig(1), [{ digest: sha256("something else"), size: smallLayer.length }]),
    blobs: { [sha256(linuxConfig(1))]: linuxConfig(1), [sha256("something else")]: smallLayer },
  },
  "many-platforms": {
    manifest: Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: Array.from({ length: 15_000 }, (_, i) => ({ mediaType: MANIFEST, digest: sha256(String(i)), size: 10, platform: { os: "plan9", architecture: `arch${i}` } })),
      }),
    ),
    type: "application/vnd.oci.image.index.v1+json",
  },
};

function hostileRegistry(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? "";
  if (url === "/v2/" || url === "/v2") {
    res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
    return;
  }
  const m = /^\/v2\/hostile\/([a-z-]+)\/(manifests|blobs)\/(.+)$/.exec(url);
  const repo = m ? repos[m[1] as string] : undefined;
  if (!m || !repo) {
    res.writeHead(404, { "Content-Type": "application/json" }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}');
    return;
  }
  if (m[2] === "manifests") {
    if (repo.manifest === "endless") {
      res.writeHead(200, { "Content-Type": MANIFEST });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = (): void => {
        while (res.write(chunk)) {
          // Until the client stops reading.
        }
        res.once("drain", pump);
      };
      res.on("close", () => res.removeAllListeners("drain"));
      pump();
      return;
    }
    res.writeHead(200, { "Content-Type": repo.type ?? MANIFEST }).end(req.method === "HEAD" ? undefined : repo.manifest);
    return;
  }
  const blob = repo.blobs?.[m[3] as string];
  if (!blob) {
    res.writeHead(404, { "Content-Type": "application/json" }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
    return;
  }
  res.writeHead(200, { "Content-Type": "application/octet-stream" }).end(blob);
}

describe("registry replies (pull)", () => {
  it("are refused when manifests, configs or blobs are huge, endless, malformed or not what they claim", async () => {
    const cases: [string, RegExp][] = [
      ["big-manifest", /manifest.*(more than|larger than|exceeds|too large)/i],
      ["endless-manifest", /manifest.*(more than|larger than|exceeds|too large)/i],
      ["many-layers", /200 layers, more than the 128/],
      ["big-config", /config.*(more than|larger than|exceeds|too large)/i],
      ["nested-manifest", /not a JSON object|malformed|unsupported/],
      ["unknown-type", /unsupported media type "application\/x-what"/],
      ["oversized-blob", /sent more than the 100 bytes/],
      ["corrupt-blob", /corrupted data/],
      ["many-platforms", /no image for linux\/amd64 in the index \(available: plan9\/arch0, .* and 14990 more\)/],
    ];
    await inParallel(cases.map(([repo, message]) => () => expectRefused(["pull", "-q", `${registryHost}/hostile/${repo}:1`], message)));
  }, 300_000);
});
