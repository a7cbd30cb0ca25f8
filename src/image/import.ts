// `import`: a root filesystem tarball (plain, gzip, zstd or xz; a file, stdin or a URL) becomes
// a one-layer image. The layer is unpacked inside the user namespace and renamed into place
// only when complete; the image index changes under the store lock.
import { spawn } from "node:child_process";
import { closeSync, createReadStream, openSync, readSync, rmSync } from "node:fs";
import type { Store } from "../store/store.js";
import type { StagedBlob } from "../store/blobs.js";
import { faultPoint } from "../store/fault.js";
import type { ImageRecord, LayerRecord } from "../store/images.js";
import { hostPlatform, MEDIA, type ContainerConfig, type ImageConfig, type Manifest } from "./types.js";
import { normaliseName } from "./reference.js";
import { TsrunError } from "../errors.js";
import { httpGet } from "./http-get.js";

export interface ImportOptions {
  /** A file path, "-" for standard input, or an http(s) URL. */
  source: string;
  reference?: string | undefined;
  message?: string | undefined;
  /** Config changes already parsed (from --change). */
  config?: ContainerConfig;
}

function magic(file: string): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(6);
    const n = readSync(fd, buf, 0, 6, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

export function layerMediaType(head: Buffer): string {
  if (head[0] === 0x1f && head[1] === 0x8b) return MEDIA.ociLayerGzip;
  if (head.readUInt32LE(0) === 0xfd2fb528) return MEDIA.ociLayerZstd;
  return MEDIA.ociLayer;
}

const isXz = (head: Buffer): boolean => head.length >= 6 && head.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));

async function openSource(source: string): Promise<AsyncIterable<Buffer>> {
  if (source === "-") return process.stdin;
  if (/^https?:\/\//.test(source)) {
    return httpGet(source).catch((err: Error) => {
      throw new TsrunError(`import ${source}: ${err.message}`);
    });
  }
  const stream = createReadStream(source);
  await new Promise<void>((resolve, reject) => {
    stream.once("open", () => resolve());
    stream.once("error", (err) => reject(new TsrunError(`import: cannot open ${source}: ${err.message}`)));
  });
  return stream;
}

/** Decompresses a staged xz file into a new staged (plain tar) one: xz is no OCI layer media type. */
async function xzToTar(store: Store, file: string): Promise<StagedBlob> {
  const child = spawn("xz", ["-dc", file], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve, reject) => {
    child.on("error", (err) => reject(new TsrunError(`xz: ${err.message} (install the xz-utils package)`)));
    child.on("exit", (code) => resolve(code ?? 1));
  });
  const staged = await store.blobs.stageStream(child.stdout);
  if ((await exited) !== 0) {
    rmSync(staged.file, { force: true });
    throw new TsrunError(`import: xz: ${stderr.trim() || "decompression failed"}`);
  }
  return staged;
}

/** Adds names to an image record, taking each name away from any other image (retagging). */
export function assignNames(images: ImageRecord[], target: ImageRecord, names: string[]): void {
  for (const name of names) {
    for (const other of images) {
      if (other !== target) other.names = other.names.filter((n) => n !== name);
    }
    if (!target.names.includes(name)) target.names.push(name);
  }
}

export async function importImage(store: Store, opts: ImportOptions): Promise<ImageRecord> {
  const name = opts.reference ? normaliseName(opts.reference) : undefined;
  if (name?.includes("@")) throw new TsrunError(`import: a reference with a digest cannot be a tag: ${opts.reference}`);
  const input = await openSource(opts.source);
  const lease = await store.begin(`import ${opts.source}`, "images");
  // The tarball stays under a temporary name until the image is recorded: until then nothing
  // refers to it, and nothing can delete it or see it half-written.
  let blob: StagedBlob | undefined;
  let tmp: string | undefined;
  try {
    blob = await store.blobs.stageStream(input);
    faultPoint("import:staged");
    const head = magic(blob.file);
    if (head.length === 0) throw new TsrunError(`import: ${opts.source} is empty`);
    if (isXz(head)) {
      const raw = blob;
      blob = await xzToTar(store, raw.file);
      rmSync(raw.file, { force: true });
    }
    const mediaType = layerMediaType(magic(blob.file));
    tmp = store.layers.createTemp();
    let unpacked;
    try {
      [unpacked] = await store.unpack([{ blob: blob.file, dest: tmp }]);
      if (!unpacked) throw new Error("no result from the unpacker");
    } catch (err) {
      throw new TsrunError(`import ${opts.source}: ${(err as Error).message}`);
    }
    faultPoint("import:unpacked");
    for (const w of unpacked.warnings) process.stderr.write(`tsrun: warning: ${w}\n`);
    const now = new Date().toISOString();
    const platform = hostPlatform();
    const config: ImageConfig = {
      created: now,
      architecture: platform.architecture,
      os: platform.os,
      config: opts.config ?? {},
      rootfs: { type: "layers", diff_ids: [unpacked.diffId] },
      history: [{ created: now, created_by: "", comment: opts.message ?? `Imported from ${opts.source}` }],
    };
    const layer: LayerRecord = { diffId: unpacked.diffId, chainId: unpacked.diffId, digest: blob.digest, mediaType, size: unpacked.size };
    const staged = blob;
    const layerTmp = tmp;
    return await store.transact(async (tx) => {
      await tx.commitLayer(layerTmp, { chainId: layer.chainId, diffId: layer.diffId, parent: null, size: layer.size });
      tmp = undefined;
      tx.publishBlob(staged.file, staged.digest);
      const configBytes = Buffer.from(JSON.stringify(config));
      const configDigest = tx.putBlob(configBytes);
      const manifest: Manifest = {
        schemaVersion: 2,
        mediaType: MEDIA.ociManifest,
        config: { mediaType: MEDIA.ociConfig, digest: configDigest, size: configBytes.length },
        layers: [{ mediaType, digest: staged.digest, size: staged.size }],
      };
      const manifestDigest = tx.putBlob(Buffer.from(JSON.stringify(manifest)));
      faultPoint("import:blobs-stored");
      const images = store.images.list();
      let record = images.find((i) => i.id === configDigest);
      if (!record) {
        record = { id: configDigest, names: [], manifest: manifestDigest, repoDigests: [], layers: [layer], added: now };
        images.push(record);
      }
      if (name) assignNames(images, record, [name]);
      tx.saveImages(images);
      return record;
    });
  } catch (err) {
    if (err instanceof TsrunError) throw err;
    throw new TsrunError(`import ${opts.source}: ${(err as Error).message}`);
  } finally {
    if (blob) rmSync(blob.file, { force: true });
    if (tmp) await store.removeTree(tmp).catch(() => undefined);
    lease.release();
  }
}
