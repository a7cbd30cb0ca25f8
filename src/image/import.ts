// `import`: a root filesystem tarball (plain, gzip, zstd, xz or bzip2, as `docker import` takes;
// a file, stdin or a URL) becomes a one-layer image. The layer is unpacked inside the user namespace and renamed into place
// only when complete; the image index changes under the store lock.
import { createReadStream } from "node:fs";
import type { Store } from "../store/store.js";
import type { StagedBlob } from "../store/blobs.js";
import { faultPoint } from "../store/fault.js";
import { assignNames, type ImageRecord, type LayerRecord } from "../store/images.js";
import { hostPlatform, MEDIA, type ContainerConfig, type ImageConfig, type Manifest } from "./types.js";
import { normaliseName } from "./reference.js";
import { TsrunError } from "../errors.js";
import { httpGet } from "./http-get.js";
import { detectCompression, fileHead, throughCommand } from "./archive/compression.js";
import { removeFile } from "../remove-file.js";

export interface ImportOptions {
  /** A file path, "-" for standard input, or an http(s) URL. */
  source: string;
  reference?: string | undefined;
  message?: string | undefined;
  /** Config changes already parsed (from --change). */
  config?: ContainerConfig;
}

/** The OCI media type a stored layer blob gets: gzip and zstd layers are kept as given. */
export function layerMediaType(head: Buffer): string {
  const compression = detectCompression(head);
  if (compression === "gzip") return MEDIA.ociLayerGzip;
  if (compression === "zstd") return MEDIA.ociLayerZstd;
  return MEDIA.ociLayer;
}

/** sha256 of no bytes: the diff_id of a tarball that decompresses to nothing. */
const EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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

/**
 * Decompresses a staged xz or bzip2 file into a new staged (plain tar) one: neither is an OCI
 * layer media type, so the image keeps the tar itself.
 */
async function decompressToTar(store: Store, file: string, kind: "xz" | "bzip2", source: string): Promise<StagedBlob> {
  let staged: StagedBlob | undefined;
  await throughCommand(kind, createReadStream(file), "the tarball", async (out) => {
    staged = await store.blobs.stageStream(out);
  }).catch((err: unknown) => {
    if (staged) removeFile(staged.file);
    throw err;
  });
  if (!staged) throw new TsrunError(`import ${source}: no output from ${kind}`);
  return staged;
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
    const compression = detectCompression(fileHead(blob.file));
    if (compression === "xz" || compression === "bzip2") {
      const raw = blob;
      blob = await decompressToTar(store, raw.file, compression, opts.source);
      removeFile(raw.file);
    }
    if (blob.size === 0) throw new TsrunError(`import: ${opts.source} is empty`);
    const mediaType = layerMediaType(fileHead(blob.file));
    tmp = store.layers.createTemp();
    let unpacked;
    try {
      [unpacked] = await store.unpack([{ blob: blob.file, dest: tmp }]);
      if (!unpacked) throw new Error("no result from the unpacker");
    } catch (err) {
      throw new TsrunError(`import ${opts.source}: ${(err as Error).message}`);
    }
    faultPoint("import:unpacked");
    // A compressed stream of nothing is as empty as an empty file.
    if (unpacked.diffId === EMPTY_DIGEST) throw new TsrunError(`import: ${opts.source} is empty`);
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
    if (blob) removeFile(blob.file);
    if (tmp) await store.removeTree(tmp).catch(() => undefined);
    lease.release();
  }
}
