// The loader's look ahead (src/image/archive/prescan.ts): which members of an archive file are
// layers the store lacks, told from tar headers and the archive's JSON documents; and that it
// gives up (undefined) on what it cannot tell cheaply, rather than guess.
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { layersToUnpack } from "../../src/image/archive/prescan.js";
import { chainIds, sha256 } from "../../src/store/digest.js";
import { rawTar, type RawTarEntry } from "./tar-builder.js";

const dir = mkdtempSync(path.join(tmpdir(), "prescan-"));
const layerA = rawTar([{ name: "a.txt", content: "a" }]);
const layerB = rawTar([{ name: "b.txt", content: "b" }]);
const diffIds = [sha256(layerA), sha256(layerB)];
const chains = chainIds(diffIds);
const config = Buffer.from(JSON.stringify({ rootfs: { type: "layers", diff_ids: diffIds } }));

function archive(name: string, entries: RawTarEntry[], gzip = false): string {
  const file = path.join(dir, name);
  const tar = rawTar(entries);
  writeFileSync(file, gzip ? gzipSync(tar) : tar);
  return file;
}

/** A docker-archive as `docker save` lays it out: layers first, manifest.json last. */
function dockerArchive(name: string, gzip = false): string {
  return archive(
    name,
    [
      { name: "l1/layer.tar", content: layerA },
      { name: "l2/layer.tar", content: layerB },
      { name: "l3/layer.tar", type: "2", linkname: "../l2/layer.tar" },
      { name: "cfg.json", content: config },
      // A long name in a PAX header, as tar writers do past 100 bytes.
      { name: "x", pax: { path: `${"d".repeat(120)}/VERSION` }, content: "1.0" },
      { name: "manifest.json", content: JSON.stringify([{ Config: "cfg.json", RepoTags: ["x:1"], Layers: ["l1/layer.tar", "l3/layer.tar"] }]) },
    ],
    gzip,
  );
}

describe("layersToUnpack", () => {
  it("names the layer members of a docker-archive whose chains the store lacks, through links", () => {
    const file = dockerArchive("docker.tar");
    expect(layersToUnpack(file, () => false)).toEqual(new Set(["l1/layer.tar", "l2/layer.tar"]));
    expect(layersToUnpack(file, (chain) => chain === chains[0])).toEqual(new Set(["l2/layer.tar"]));
    expect(layersToUnpack(file, () => true)).toEqual(new Set());
  });

  it("follows an OCI index to its manifest, config and layer blobs", () => {
    const blob = (data: Buffer | string): { name: string; digest: string; content: Buffer } => {
      const bytes = Buffer.from(data);
      const digest = sha256(bytes);
      return { name: `blobs/sha256/${digest.slice(7)}`, digest, content: bytes };
    };
    const [a, b, c] = [blob(layerA), blob(layerB), blob(config)];
    const manifest = blob(JSON.stringify({ schemaVersion: 2, config: { digest: c.digest }, layers: [{ digest: a.digest }, { digest: b.digest }] }));
    const file = archive("oci.tar", [a, b, c, manifest, { name: "oci-layout", content: '{"imageLayoutVersion":"1.0.0"}' }, { name: "index.json", content: JSON.stringify({ manifests: [{ digest: manifest.digest }] }) }]);
    expect(layersToUnpack(file, (chain) => chain === chains[0])).toEqual(new Set([b.name]));
  });

  it("gives up on what it cannot tell cheaply: compressed, not an image archive, broken documents, no file", () => {
    expect(layersToUnpack(dockerArchive("docker.tar.gz", true), () => false)).toBeUndefined();
    expect(layersToUnpack(archive("plain.tar", [{ name: "hello", content: "hi" }]), () => false)).toBeUndefined();
    expect(layersToUnpack(archive("broken.tar", [{ name: "manifest.json", content: "[{" }]), () => false)).toBeUndefined();
    expect(layersToUnpack(archive("missing.tar", [{ name: "manifest.json", content: JSON.stringify([{ Config: "nope.json", Layers: [] }]) }]), () => false)).toBeUndefined();
    expect(layersToUnpack(path.join(dir, "does-not-exist.tar"), () => false)).toBeUndefined();
  });
});
