// `save`: stored images to a docker-archive or an oci-archive tar stream.
//
// docker-archive uses the layout `docker save` wrote up to Docker 24, which every loader reads
// (old and new Docker, podman, skopeo: containers/image follows manifest.json's paths):
//   <config-hex>.json                 the config, byte for byte (so the image ID survives)
//   <v1-id>/{VERSION,json,layer.tar}  one dir per layer; layer.tar is the UNCOMPRESSED layer,
//                                     whose sha256 is the diff_id (stored gzip/zstd blobs are
//                                     decompressed on the way out, streaming)
//   manifest.json                     [{Config, RepoTags, Layers}], full names (docker.io/...)
//   repositories                      {repo: {tag: top-v1-id}} for pre-1.10 loaders
// Docker 25's alternative (blobs/sha256/ + index.json inside a docker-archive) is not read by
// Docker before 25 for anything but manifest.json paths, so it buys nothing here.
//
// oci-archive is an OCI image layout in a tar: oci-layout, index.json (one entry per name, with
// org.opencontainers.image.ref.name = the full name, as podman writes it), blobs/sha256/<hex>
// with the stored blobs as they are (compressed layers stay compressed).
import { createHash } from "node:crypto";
import { randomBytes } from "../../random.js";
import { createReadStream, createWriteStream, existsSync, renameSync, statSync } from "node:fs";
import { once } from "node:events";
import path from "node:path";
import type { Store } from "../../store/store.js";
import type { ImageRecord, LayerRecord } from "../../store/images.js";
import { chainIds, digestHex, sha256 } from "../../store/digest.js";
import { MEDIA, type Descriptor, type ImageConfig, type Manifest } from "../types.js";
import { formatReference, parseReference, repositoryName, splitName } from "../reference.js";
import { NotFoundError, plainSystemErrors, TsrunError } from "../../errors.js";
import { TarWriter } from "./tar-writer.js";
import { MAX_TAR_PADDING, withDecompressed } from "./compression.js";
import { removeFile } from "../../remove-file.js";

export type ArchiveFormat = "docker-archive" | "oci-archive";
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ["docker-archive", "oci-archive"];

export interface SaveOptions {
  /** Names or IDs. A name without a tag means every tag of that repository (as `docker save`). */
  images: string[];
  format?: ArchiveFormat;
  /** A file (written under a temporary name, renamed when complete) or a stream. */
  output: string | NodeJS.WritableStream;
}

/** One image in the archive and the names it carries there. */
export interface SaveTarget {
  record: ImageRecord;
  names: string[];
}

const DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar";
const OCI_ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";
const CONTAINERD_IMAGE_NAME = "io.containerd.image.name";

/** Resolves the command line's images, in order, each image once with all its requested names. */
export function resolveSaveTargets(store: Store, queries: string[]): SaveTarget[] {
  if (queries.length === 0) throw new TsrunError("save: at least one image is required");
  const images = store.images.list();
  const targets = new Map<string, SaveTarget>();
  const add = (record: ImageRecord, names: string[]): void => {
    const target = targets.get(record.id) ?? { record, names: [] };
    for (const n of names) if (!target.names.includes(n)) target.names.push(n);
    targets.set(record.id, target);
  };
  for (const query of queries) {
    let record: ImageRecord | undefined;
    // The name that matched: Docker's form, or another a short name stands for (its alias, localhost/...).
    let matched: string | undefined;
    try {
      record = store.images.find(query, images);
      if (record && !/^(sha256:)?[a-f0-9]{3,64}$/.test(query)) matched = store.images.findName(query, images).name;
    } catch (err) {
      throw new TsrunError(`save: ${(err as Error).message}`);
    }
    const idPart = query.startsWith("sha256:") ? query.slice(7) : query;
    if (record && /^[a-f0-9]{3,64}$/.test(idPart) && digestHex(record.id).startsWith(idPart)) {
      add(record, []); // by ID: no names, as Docker and Podman do
      continue;
    }
    const ref = parseReference(query);
    if (ref.digest) {
      if (!record) throw new NotFoundError(`save: image not known: ${query}`);
      add(record, []);
      continue;
    }
    const lastPart = query.slice(query.lastIndexOf("/") + 1);
    if (!lastPart.includes(":")) {
      // A repository without a tag: every tag of it (Docker's `save busybox`).
      const repo = repositoryName(ref);
      let found = false;
      for (const image of images) {
        const names = image.names.filter((n) => splitName(n).repository === repo);
        if (names.length > 0) {
          add(image, names);
          found = true;
        }
      }
      if (found) continue;
    }
    if (!record) throw new NotFoundError(`save: image not known: ${query}`);
    add(record, [matched ?? formatReference(ref)]);
  }
  return [...targets.values()];
}

/** Streams a stored blob, checking its digest on the way (a blob corrupted on disk fails the save). */
async function* verifiedChunks(chunks: AsyncIterable<Buffer | string>, expected: string, what: string): AsyncGenerator<Buffer> {
  const hash = createHash("sha256");
  for await (const raw of chunks) {
    const chunk = typeof raw === "string" ? Buffer.from(raw) : raw;
    hash.update(chunk);
    yield chunk;
  }
  const got = "sha256:" + hash.digest("hex");
  if (got !== expected) throw new TsrunError(`${what}: content is ${got}, expected ${expected} (corrupted on disk)`);
}

function blobFile(store: Store, digest: string, what: string): string {
  const file = store.blobs.path(digest);
  if (!existsSync(file)) throw new TsrunError(`${what}: blob ${digest} is missing from the store`);
  return file;
}

function readConfig(store: Store, record: ImageRecord): { bytes: Buffer; config: ImageConfig } {
  const bytes = store.blobs.read(record.id);
  const config = JSON.parse(bytes.toString("utf8")) as ImageConfig;
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== record.layers.length || diffIds.some((d, i) => d !== record.layers[i]?.diffId)) {
    throw new TsrunError(`image ${record.id}: its config and the store's record disagree about its layers`);
  }
  return { bytes, config };
}

// ---------------------------------------------------------------------------------------------
// docker-archive

/**
 * The legacy per-layer "image" id and json Docker wrote before content addressing. Only its
 * uniqueness matters to loaders: it is derived from the chain, the parent's id and, for the
 * top layer, the image's runtime config, so different images never share a top dir.
 */
function legacyLayer(chainId: string, parent: string | undefined, top: ImageConfig | undefined): { id: string; json: Buffer } {
  const fields: Record<string, unknown> = {};
  if (parent !== undefined) fields.parent = parent;
  if (top) {
    for (const key of ["architecture", "config", "container", "container_config", "created", "docker_version", "os"]) {
      if (top[key] !== undefined) fields[key] = top[key];
    }
  }
  const id = digestHex(sha256(JSON.stringify({ ...fields, layer_id: chainId })));
  return { id, json: Buffer.from(JSON.stringify({ id, ...fields })) };
}

/** Writes a layer uncompressed: a plain tar blob as it is, a gzip/zstd one decompressed. */
async function writeUncompressedLayer(store: Store, tar: TarWriter, name: string, layer: LayerRecord): Promise<void> {
  const what = `layer ${layer.diffId}`;
  const file = blobFile(store, layer.digest, what);
  if (layer.digest === layer.diffId) {
    await tar.stream(name, statSync(file).size, verifiedChunks(createReadStream(file, { highWaterMark: 1 << 20 }), layer.diffId, what));
    return;
  }
  // The header needs the size before the bytes: the store records each layer's uncompressed
  // size, and the digest check at the end catches any disagreement.
  await withDecompressed(createReadStream(file, { highWaterMark: 1 << 20 }), what, (chunks) =>
    tar.stream(name, layer.size, verifiedChunks(zeroPadded(chunks, layer.size), layer.diffId, what)),
  );
}

/**
 * A layer's tar with the end padding its blob lacks (a zstd:chunked blob: compression.ts,
 * zeroPaddedLength): zero bytes up to the size of the tar its diff_id names.
 */
async function* zeroPadded(chunks: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let written = 0;
  for await (const chunk of chunks) {
    written += chunk.length;
    yield chunk;
  }
  // More than that is a damaged record: the tar writer then reports the sizes' disagreement.
  if (written < size && size - written <= MAX_TAR_PADDING) yield Buffer.alloc(size - written);
}

async function writeDockerArchive(store: Store, tar: TarWriter, targets: SaveTarget[]): Promise<void> {
  const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  const writtenDirs = new Set<string>();
  const writtenConfigs = new Set<string>();
  /** Where each diff_id's bytes already are: later images point there instead of repeating them. */
  const layerFiles = new Map<string, string>();
  for (const { record, names } of targets) {
    const { bytes, config } = readConfig(store, record);
    const configName = `${digestHex(record.id)}.json`;
    if (!writtenConfigs.has(configName)) {
      await tar.file(configName, bytes);
      writtenConfigs.add(configName);
    }
    const chains = chainIds(record.layers.map((l) => l.diffId));
    const layerPaths: string[] = [];
    let parent: string | undefined;
    for (const [i, layer] of record.layers.entries()) {
      const legacy = legacyLayer(chains[i] as string, parent, i === record.layers.length - 1 ? config : undefined);
      const dir = legacy.id;
      if (!writtenDirs.has(dir)) {
        writtenDirs.add(dir);
        await tar.directory(dir);
        await tar.file(`${dir}/VERSION`, Buffer.from("1.0"));
        await tar.file(`${dir}/json`, legacy.json);
        const existing = layerFiles.get(layer.diffId);
        if (existing) await tar.symlink(`${dir}/layer.tar`, `../${existing}`);
        else {
          await writeUncompressedLayer(store, tar, `${dir}/layer.tar`, layer);
          layerFiles.set(layer.diffId, `${dir}/layer.tar`);
        }
      }
      // manifest.json names the real file, so no loader has to follow links.
      layerPaths.push(layerFiles.get(layer.diffId) as string);
      parent = dir;
    }
    manifest.push({ Config: configName, RepoTags: names, Layers: layerPaths });
    if (parent !== undefined) {
      for (const name of names) {
        const { repository, tag } = splitName(name);
        (repositories[repository] ??= {})[tag] = parent;
      }
    }
  }
  await tar.file("manifest.json", Buffer.from(JSON.stringify(manifest)));
  await tar.file("repositories", Buffer.from(JSON.stringify(repositories)));
}

// ---------------------------------------------------------------------------------------------
// oci-archive

const OCI_LAYER_TYPES: Record<string, string> = {
  [MEDIA.dockerLayerGzip]: MEDIA.ociLayerGzip,
  [DOCKER_LAYER_TAR]: MEDIA.ociLayer,
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
};

/** The manifest an OCI layout should hold: the stored one, or its OCI form for a Docker v2s2 one. */
function ociManifest(store: Store, record: ImageRecord): { bytes: Buffer; manifest: Manifest } {
  const stored = store.blobs.read(record.manifest);
  const manifest = JSON.parse(stored.toString("utf8")) as Manifest;
  if (manifest.mediaType !== MEDIA.dockerManifest) return { bytes: stored, manifest };
  const converted: Manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { ...manifest.config, mediaType: MEDIA.ociConfig },
    layers: manifest.layers.map((l) => ({ ...l, mediaType: OCI_LAYER_TYPES[l.mediaType] ?? l.mediaType })),
    ...(manifest.annotations ? { annotations: manifest.annotations } : {}),
  };
  return { bytes: Buffer.from(JSON.stringify(converted)), manifest: converted };
}

async function writeOciArchive(store: Store, tar: TarWriter, targets: SaveTarget[]): Promise<void> {
  await tar.file("oci-layout", Buffer.from(JSON.stringify({ imageLayoutVersion: "1.0.0" })));
  await tar.directory("blobs");
  await tar.directory("blobs/sha256");
  const written = new Set<string>();
  const putBytes = async (digest: string, bytes: Buffer): Promise<void> => {
    if (written.has(digest)) return;
    written.add(digest);
    await tar.file(`blobs/sha256/${digestHex(digest)}`, bytes);
  };
  const entries: Descriptor[] = [];
  for (const { record, names } of targets) {
    const { bytes: configBytes } = readConfig(store, record);
    const { bytes: manifestBytes, manifest } = ociManifest(store, record);
    if (manifest.config.digest !== record.id) throw new TsrunError(`image ${record.id}: its stored manifest names another config (${manifest.config.digest})`);
    await putBytes(record.id, configBytes);
    for (const layer of manifest.layers) {
      if (written.has(layer.digest)) continue;
      written.add(layer.digest);
      const what = `layer ${layer.digest}`;
      const file = blobFile(store, layer.digest, what);
      const size = statSync(file).size;
      if (size !== layer.size) throw new TsrunError(`${what}: ${size} bytes in the store, the manifest says ${layer.size}`);
      await tar.stream(`blobs/sha256/${digestHex(layer.digest)}`, size, verifiedChunks(createReadStream(file, { highWaterMark: 1 << 20 }), layer.digest, what));
    }
    const manifestDigest = sha256(manifestBytes);
    await putBytes(manifestDigest, manifestBytes);
    const descriptor: Descriptor = { mediaType: MEDIA.ociManifest, digest: manifestDigest, size: manifestBytes.length };
    if (names.length === 0) entries.push(descriptor);
    // One entry per name: ref.name carries the full name (as podman writes it), and
    // containerd's annotation the same, which Docker 25+ and newer podman read first.
    for (const name of names) entries.push({ ...descriptor, annotations: { [CONTAINERD_IMAGE_NAME]: name, [OCI_ANNOTATION_REF_NAME]: name } });
  }
  await tar.file("index.json", Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: entries })));
}

// ---------------------------------------------------------------------------------------------

async function writeArchive(store: Store, out: NodeJS.WritableStream, format: ArchiveFormat, targets: SaveTarget[]): Promise<void> {
  const tar = new TarWriter(out);
  if (format === "docker-archive") await writeDockerArchive(store, tar, targets);
  else await writeOciArchive(store, tar, targets);
  await tar.finish();
}

export async function saveImages(store: Store, opts: SaveOptions): Promise<void> {
  const format = opts.format ?? "docker-archive";
  if (!ARCHIVE_FORMATS.includes(format)) throw new TsrunError(`save: unknown format "${String(format)}" (docker-archive or oci-archive)`);
  // Every image is resolved before a byte is written: a typo leaves no half archive.
  const targets = resolveSaveTargets(store, opts.images);
  try {
    if (typeof opts.output !== "string") {
      const out = opts.output;
      // A reader that goes away (EPIPE) fails the save instead of crashing the process.
      const failed = new Promise<never>((_, reject) => out.once("error", reject));
      await Promise.race([writeArchive(store, out, format, targets), failed]);
      return;
    }
    const target = path.resolve(opts.output);
    // Checked before the archive is written, not found by the final rename.
    if (statSync(target, { throwIfNoEntry: false })?.isDirectory()) throw new TsrunError(`cannot write ${opts.output}: it is a directory`);
    const tmp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    const out = createWriteStream(tmp, { flags: "wx", mode: 0o644 });
    try {
      await once(out, "open").catch((err: NodeJS.ErrnoException) => {
        // The error names the temporary file: the user gave the directory and the name.
        const reason = err.code === "ENOENT" ? `directory ${path.dirname(target)} does not exist` : plainSystemErrors(err.message).replace(/ \(open [^)]*\)$/, "");
        throw new TsrunError(`cannot write ${opts.output as string}: ${reason}`);
      });
      const failed = new Promise<never>((_, reject) => out.once("error", reject));
      await Promise.race([writeArchive(store, out, format, targets), failed]);
      out.end();
      await once(out, "close");
      renameSync(tmp, target);
    } catch (err) {
      out.destroy();
      removeFile(tmp);
      throw err;
    }
  } catch (err) {
    const message = (err as Error).message;
    const prefixed = message.startsWith("save: ") ? message : `save: ${message}`;
    throw err instanceof TsrunError ? new TsrunError(prefixed, err.exitCode) : new TsrunError(prefixed);
  }
}
