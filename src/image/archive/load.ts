// `load`: images from a docker-archive (`docker save`, `podman save`, `skopeo copy ...
// docker-archive:`) or an oci-archive (OCI image layout in a tar), compressed as a whole or
// not, one image or several; or, as podman loads them, from a directory holding an OCI layout
// or containers/image's dir layout (directory.ts).
//
// Order of work, so that a broken or hostile archive leaves the store exactly as it was:
//  1. read the archive once, member by member, into a private spill dir (reader.ts);
//  2. plan: parse manifest.json or index.json, check every config and manifest against its
//     digest, find every layer blob, check names;
//  3. check every layer's uncompressed sha256 against the config's diff_id: layers whose
//     chain the store lacks are unpacked (in ONE helper run inside the user namespace, into
//     temporary dirs) and the unpacker reports it; the others are plain tars whose member
//     digest is the diff_id, blobs the store already vouches for, or are hashed;
//  4. only then, under the store lock: move the blobs into the blob store (a rename from the
//     spill dir), commit the layers, record the images. Any failure before step 4 deletes the
//     spill dir and the temporary layer dirs and nothing else.
import { createReadStream, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "../../random.js";
import type { Store, UnpackJobResult } from "../../store/store.js";
import { UnpackFeed } from "../../store/unpack-feed.js";
import { assignNames, type ImageRecord, type LayerRecord } from "../../store/images.js";
import { chainIds, isDigest, sha256 } from "../../store/digest.js";
import { MEDIA, hostPlatform, type ContainerConfig, type Descriptor, type ImageConfig, type Manifest } from "../types.js";
import { normaliseName, ReferenceError } from "../reference.js";
import { classifyManifest, checkImageManifest, MAX_LAYERS, selectPlatform, type ImageIndexDoc } from "../registry/manifest.js";
import type { Lease } from "../../store/leases.js";
import { faultPoint } from "../../store/fault.js";
import { mapLimit } from "../registry/pull.js";
import { TsrunError } from "../../errors.js";
import { ArchiveContents, ArchiveError, readArchive, type ArchiveMember, type MemberSink, type MemberTap } from "./reader.js";
import { checkLayerCompression, detectCompression, uncompressedDigest } from "./compression.js";
import { layersToUnpack } from "./prescan.js";
import { directoryAsTar } from "./directory.js";

export interface LoadOptions {
  /** A file path, "-" for standard input, or the archive's bytes as a stream. */
  input: string | AsyncIterable<Buffer | string | Uint8Array>;
}

export interface LoadedImage {
  /** Image ID (sha256 of the config bytes). */
  id: string;
  /** Names the archive gave it, normalised (empty for an untagged image). */
  names: string[];
}

export interface LoadResult {
  /** "dir": containers/image's dir layout (a directory; an OCI layout directory is "oci-archive"). */
  format: "docker-archive" | "oci-archive" | "dir";
  images: LoadedImage[];
  /** Names this load took from other images (Docker reports each such renaming). */
  renamed: { name: string; previousId: string }[];
}

/** Layers unpacked at once (each by its own helper process). */
const PARALLEL_UNPACKS = 3;
/** Docker's uncompressed layer media type (no constant for it in types.ts). */
const DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar";
const OCI_ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";
/** Written by containerd and Docker 25+ beside a ref.name that holds only the tag. */
const CONTAINERD_IMAGE_NAME = "io.containerd.image.name";

interface PlannedLayer {
  member: ArchiveMember;
  /** The blob as it will be stored (the member's sha256). */
  digest: string;
  mediaType: string;
  diffId: string;
  chainId: string;
  /** The chain below this layer (null for the bottom one). */
  parent: string | null;
}

interface PlannedImage {
  id: string;
  configBytes: Buffer;
  manifestBytes: Buffer;
  manifestDigest: string;
  layers: PlannedLayer[];
  names: string[];
}

const fail = (message: string): never => {
  throw new ArchiveError(message);
};

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8")) as unknown;
  } catch (err) {
    throw new ArchiveError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses and checks an image config; its diff_ids must match the number of layers. */
function parseConfig(bytes: Buffer, layerCount: number, what: string): ImageConfig {
  const config = parseJson(bytes, what);
  if (!isObject(config) || !isObject(config.rootfs) || !Array.isArray(config.rootfs.diff_ids)) {
    fail(`${what} is not an image config (no rootfs.diff_ids)`);
  }
  const diffIds = (config as { rootfs: { diff_ids: unknown[] } }).rootfs.diff_ids;
  for (const d of diffIds) {
    if (typeof d !== "string" || !isDigest(d)) fail(`${what} has an unsupported or malformed diff_id ${JSON.stringify(d)}`);
  }
  if (diffIds.length !== layerCount) fail(`${what} lists ${diffIds.length} layer diff_ids but the image has ${layerCount} layers`);
  return config as ImageConfig;
}

/** A blob named by its digest ("blobs/sha256/<hex>", podman's "<hex>.json") must hash to it. */
function checkNamedDigest(member: ArchiveMember): void {
  const m = /^(?:blobs\/sha256\/([a-f0-9]{64})|([a-f0-9]{64})\.(?:json|tar))$/.exec(member.name);
  const hex = m?.[1] ?? m?.[2];
  if (hex !== undefined && member.digest !== `sha256:${hex}`) {
    fail(`archive member ${member.name}: digest mismatch: the content is ${member.digest}`);
  }
}

/** A RepoTags entry, normalised as Docker does ("busybox:1" is docker.io/library/busybox:1). */
function dockerTagName(tag: unknown, what: string): string {
  if (typeof tag !== "string") return fail(`${what}: RepoTags entry ${JSON.stringify(tag)} is not a string`);
  let name: string;
  try {
    name = normaliseName(tag);
  } catch (err) {
    return fail(`${what}: invalid RepoTags entry ${JSON.stringify(tag)}: ${(err as Error).message}`);
  }
  if (name.includes("@")) fail(`${what}: RepoTags entry ${JSON.stringify(tag)} is not a tag`);
  return name;
}

/**
 * The name an oci-archive entry gives its image, as Podman (libimage) reads it: containerd's
 * full-name annotation first, else ref.name; a name without a registry gets "localhost/"
 * ("app:1" -> localhost/app:1, and a bare tag "v1" -> localhost/v1:latest), since an OCI
 * layout says nothing about where an image came from.
 */
export function ociEntryName(annotations: Record<string, string> | undefined, what: string): string | undefined {
  const full = annotations?.[CONTAINERD_IMAGE_NAME];
  const ref = annotations?.[OCI_ANNOTATION_REF_NAME];
  const given = full || ref;
  if (!given) return undefined;
  const slash = given.indexOf("/");
  const first = slash < 0 ? "" : given.slice(0, slash);
  const hasRegistry = first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase();
  let name: string;
  try {
    name = normaliseName(full || hasRegistry ? given : `localhost/${given}`);
  } catch (err) {
    if (err instanceof ReferenceError) return fail(`${what}: invalid image name ${JSON.stringify(given)}: ${err.message}`);
    throw err;
  }
  // Names in the store are repo:tag; a digest-only reference names nothing.
  return name.includes("@") ? undefined : name;
}

function layerMediaTypeFor(member: ArchiveMember, docker: boolean, what: string): string {
  const compression = detectCompression(member.head);
  checkLayerCompression(compression, what);
  if (compression === "gzip") return docker ? MEDIA.dockerLayerGzip : MEDIA.ociLayerGzip;
  if (compression === "zstd") return MEDIA.ociLayerZstd;
  return docker ? DOCKER_LAYER_TAR : MEDIA.ociLayer;
}

/** Configs with Docker-only fields keep Docker media types (OCI configs cannot carry them). */
function hasDockerOnlyFields(config: ImageConfig): boolean {
  const c: ContainerConfig = config.config ?? {};
  return c.Healthcheck !== undefined || (c.OnBuild !== undefined && c.OnBuild !== null) || c.Shell !== undefined;
}

// ---------------------------------------------------------------------------------------------
// Planning: docker-archive

function planDockerArchive(contents: ArchiveContents, manifestMember: ArchiveMember): PlannedImage[] {
  const doc = parseJson(contents.read(manifestMember, "manifest.json"), "manifest.json");
  if (!Array.isArray(doc)) return fail("manifest.json is not a list of images");
  if (doc.length === 0) fail("manifest.json lists no images");
  const images: PlannedImage[] = [];
  for (const [i, item] of doc.entries()) {
    const what = `manifest.json entry ${i + 1}`;
    if (!isObject(item) || typeof item.Config !== "string" || !Array.isArray(item.Layers) || !item.Layers.every((l) => typeof l === "string")) {
      fail(`${what} is malformed (needs Config and Layers)`);
    }
    const entry = item as { Config: string; Layers: string[]; RepoTags?: unknown };
    if (entry.Layers.length > MAX_LAYERS) fail(`${what}: the image has ${entry.Layers.length} layers, more than the ${MAX_LAYERS} a container can stack`);
    const configMember = contents.file(entry.Config) ?? fail(`${what}: config ${entry.Config} is missing from the archive`);
    checkNamedDigest(configMember);
    const configBytes = contents.read(configMember, `config ${entry.Config}`);
    const config = parseConfig(configBytes, entry.Layers.length, `config ${entry.Config}`);
    const docker = hasDockerOnlyFields(config);
    const diffIds = config.rootfs.diff_ids;
    const chains = chainIds(diffIds);
    const layers: PlannedLayer[] = entry.Layers.map((layerPath, j) => {
      const member = contents.file(layerPath) ?? fail(`${what}: layer ${layerPath} is missing from the archive`);
      checkNamedDigest(member);
      const diffId = diffIds[j] as string;
      const mediaType = layerMediaTypeFor(member, docker, `layer ${layerPath}`);
      // docker-archive layers are uncompressed: their sha256 is the diff_id (loadArchive checks
      // it before unpacking anything). A compressed one (some tools write them) is checked
      // after decompression instead.
      return { member, digest: member.digest, mediaType, diffId, chainId: chains[j] as string, parent: chains[j - 1] ?? null };
    });
    const repoTags = entry.RepoTags ?? [];
    if (!Array.isArray(repoTags)) fail(`${what}: RepoTags is not a list`);
    const names = (repoTags as unknown[]).map((t) => dockerTagName(t, what));
    // The store describes every image by a manifest: the one a registry would get for it.
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: docker ? MEDIA.dockerManifest : MEDIA.ociManifest,
      config: { mediaType: docker ? MEDIA.dockerConfig : MEDIA.ociConfig, digest: configMember.digest, size: configBytes.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.member.size })),
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    images.push({ id: configMember.digest, configBytes, manifestBytes, manifestDigest: "", layers, names });
  }
  return images;
}

// ---------------------------------------------------------------------------------------------
// Planning: oci-archive (and the directory layouts podman loads: directory.ts)

/** Where a layout keeps a blob: blobs/sha256/<hex> in an OCI layout, <hex> in containers/image's "dir". */
type BlobPath = (hex: string) => string;
const OCI_BLOB: BlobPath = (hex) => `blobs/sha256/${hex}`;
const DIR_BLOB: BlobPath = (hex) => hex;

/** The archive member holding a descriptor's blob, checked against its digest and size. */
function ociBlob(contents: ArchiveContents, desc: Descriptor, what: string, blobPath: BlobPath): ArchiveMember {
  const m = /^sha256:([a-f0-9]{64})$/.exec(desc.digest);
  if (!m) return fail(`${what}: unsupported or malformed digest ${JSON.stringify(desc.digest)}`);
  const member = contents.file(blobPath(m[1] as string)) ?? fail(`${what}: blob ${desc.digest} is missing from the archive`);
  if (member.digest !== desc.digest) fail(`${what}: blob ${desc.digest}: digest mismatch: the content is ${member.digest}`);
  if (member.size !== desc.size) fail(`${what}: blob ${desc.digest}: ${member.size} bytes, the descriptor says ${desc.size}`);
  return member;
}

/** An image from its manifest (or a multi-platform index: the host's entry), its config and layers. */
function planManifest(contents: ArchiveContents, top: ArchiveMember, mediaType: string | undefined, what: string, blobPath: BlobPath, names: string[]): PlannedImage {
  let member = top;
  let bytes = contents.read(member, `${what}: manifest`);
  let classified = classifyManifest(bytes, mediaType, `${what}: manifest ${member.digest}`);
  if (classified.kind === "index") {
    // A multi-platform image: the host's platform, as pull picks it.
    const chosen = selectPlatform(classified.doc as unknown as ImageIndexDoc, hostPlatform(), `${what}`);
    member = ociBlob(contents, chosen, `${what}: manifest for ${hostPlatform().architecture}`, blobPath);
    bytes = contents.read(member, `${what}: manifest`);
    classified = classifyManifest(bytes, chosen.mediaType, `${what}: manifest ${chosen.digest}`);
    if (classified.kind !== "manifest") fail(`${what}: the index entry for this platform is not an image manifest`);
  }
  const manifest = classified.doc as unknown as Manifest;
  checkImageManifest(manifest, `${what}: manifest ${member.digest}`);
  const configMember = ociBlob(contents, manifest.config, `${what}: config`, blobPath);
  const configBytes = contents.read(configMember, `${what}: config`);
  const config = parseConfig(configBytes, manifest.layers.length, `${what}: config ${configMember.digest}`);
  const chains = chainIds(config.rootfs.diff_ids);
  const layers = manifest.layers.map((desc, j): PlannedLayer => {
    const layerMember = ociBlob(contents, desc, `${what}: layer ${j + 1}`, blobPath);
    checkLayerCompression(detectCompression(layerMember.head), `${what}: layer ${desc.digest}`);
    return {
      member: layerMember,
      digest: desc.digest,
      mediaType: desc.mediaType,
      diffId: config.rootfs.diff_ids[j] as string,
      chainId: chains[j] as string,
      parent: chains[j - 1] ?? null,
    };
  });
  return { id: configMember.digest, configBytes, manifestBytes: bytes, manifestDigest: member.digest, layers, names };
}

function planOciArchive(contents: ArchiveContents, indexMember: ArchiveMember): PlannedImage[] {
  const layout = contents.file("oci-layout");
  if (layout) {
    const doc = parseJson(contents.read(layout, "oci-layout"), "oci-layout");
    if (!isObject(doc) || typeof doc.imageLayoutVersion !== "string") fail("oci-layout is malformed (no imageLayoutVersion)");
  }
  const index = parseJson(contents.read(indexMember, "index.json"), "index.json");
  if (!isObject(index) || !Array.isArray(index.manifests)) return fail("index.json is not an image index (no manifests)");
  const images: PlannedImage[] = [];
  for (const [i, raw] of index.manifests.entries()) {
    const what = `index.json entry ${i + 1}`;
    if (!isObject(raw) || typeof raw.digest !== "string" || typeof raw.size !== "number") fail(`${what} is not a descriptor`);
    const top = raw as unknown as Descriptor;
    const name = ociEntryName(top.annotations, what);
    images.push(planManifest(contents, ociBlob(contents, top, what, OCI_BLOB), top.mediaType, what, OCI_BLOB, name ? [name] : []));
  }
  if (images.length === 0) fail("index.json lists no images");
  return images;
}

/**
 * containers/image's "dir" layout (`podman save --format docker-dir`, `skopeo copy ... dir:`):
 * manifest.json is the image's manifest itself and each blob is named by its hex digest. It
 * carries no name: the image loads untagged, as podman loads it.
 */
function planDirLayout(contents: ArchiveContents, manifestMember: ArchiveMember): PlannedImage[] {
  const version = contents.file("version");
  if (version && !contents.read(version, "version").toString("utf8").startsWith("Directory Transport Version:")) {
    fail("not an image layout: manifest.json is not a list of images and version is not a dir layout's");
  }
  return [planManifest(contents, manifestMember, undefined, "manifest.json", DIR_BLOB, [])];
}

/** Entries for the same image (same config) become one, with all their names. */
function mergeByImage(planned: PlannedImage[]): PlannedImage[] {
  const byId = new Map<string, PlannedImage>();
  for (const image of planned) {
    const seen = byId.get(image.id);
    if (!seen) byId.set(image.id, { ...image, names: [...new Set(image.names)] });
    else for (const n of image.names) if (!seen.names.includes(n)) seen.names.push(n);
  }
  return [...byId.values()];
}

async function openInput(input: LoadOptions["input"]): Promise<AsyncIterable<Buffer | string | Uint8Array>> {
  if (typeof input !== "string") return input;
  if (input === "-") return process.stdin;
  // A directory: an OCI layout or a dir layout, as podman loads them (directory.ts).
  if (statSync(input, { throwIfNoEntry: false })?.isDirectory()) return directoryAsTar(input);
  const stream = createReadStream(input, { highWaterMark: 1 << 20 });
  await new Promise<void>((resolve, reject) => {
    stream.once("open", () => resolve());
    stream.once("error", (err) => reject(new ArchiveError(`cannot open ${input}: ${err.message}`)));
  });
  return stream;
}

/** Flushes spilled files to disk while the layers unpack: they become blobs, which must survive a crash. */
async function syncFiles(files: string[]): Promise<void> {
  for (const file of files) {
    const handle = await open(file, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

/**
 * Layers unpacked while the archive is still being read (the reader's MemberTap): the members
 * that a look ahead (prescan.ts) found to be layers the store lacks stream into an unpacker of
 * their own as the reader spills them, so that unpacking overlaps reading instead of following
 * it (each takes about as long). What the look ahead said is checked like everything else once
 * the archive is read: a member that turns out not to be needed was unpacked for nothing, and
 * its dir goes with the load's other temporaries. At most PARALLEL_UNPACKS at once.
 */
class EarlyUnpacks implements MemberTap {
  private readonly started = new Map<string, { dest: string; result: Promise<UnpackJobResult> }>();
  private readonly all: Promise<unknown>[] = [];
  private running = 0;

  constructor(
    private readonly store: Store,
    private readonly temps: string[],
    private readonly wanted: Set<string> | undefined,
  ) {}

  open(name: string): MemberSink | undefined {
    if (!this.wanted?.has(name) || this.running >= PARALLEL_UNPACKS) return undefined;
    const dest = this.store.layers.createTemp();
    this.temps.push(dest);
    const feed = new UnpackFeed(this.store.unpackStream(dest));
    this.running++;
    const result = feed.result.finally(() => this.running--);
    // Awaited where the layer is used; settle() waits for the others.
    result.catch(() => undefined);
    this.all.push(result);
    this.started.set(name, { dest, result });
    return feed;
  }

  /** The unpack of a member started early (once: a second use of the blob unpacks it again). */
  take(name: string): { dest: string; result: Promise<UnpackJobResult> } | undefined {
    const started = this.started.get(name);
    this.started.delete(name);
    return started;
  }

  /** Waits until every unpacker started has exited (their dirs may then be removed). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.all);
  }
}

// ---------------------------------------------------------------------------------------------

export async function loadArchive(store: Store, opts: LoadOptions): Promise<LoadResult> {
  mkdirSync(store.paths.tmp, { recursive: true });
  const spillDir = path.join(store.paths.tmp, `load-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(spillDir, { mode: 0o700 });
  const layerTemps: string[] = [];
  // A file on disk can be looked into first (stdin and compressed archives cannot).
  const wanted = typeof opts.input === "string" && opts.input !== "-" ? layersToUnpack(opts.input, (chain) => store.layers.has(chain)) : undefined;
  const early = new EarlyUnpacks(store, layerTemps, wanted);
  let lease: Lease | undefined;
  try {
    const contents = await readArchive(await openInput(opts.input), spillDir, early);

    // docker-archive when manifest.json is there (Docker 25+ writes index.json as well, but
    // only manifest.json carries its RepoTags); else an OCI layout.
    const manifestMember = contents.file("manifest.json");
    const indexMember = contents.file("index.json");
    let format: LoadResult["format"];
    let planned: PlannedImage[];
    if (manifestMember && isObject(parseJson(contents.read(manifestMember, "manifest.json"), "manifest.json"))) {
      format = "dir";
      planned = planDirLayout(contents, manifestMember);
    } else if (manifestMember) {
      format = "docker-archive";
      planned = planDockerArchive(contents, manifestMember);
    } else if (indexMember) {
      format = "oci-archive";
      planned = planOciArchive(contents, indexMember);
    } else {
      // Docker before 1.10 wrote only <id>/json, <id>/layer.tar and repositories; Docker 25+
      // no longer loads such archives either.
      if (contents.file("repositories")) return fail("not a loadable image archive: a Docker archive from before Docker 1.10 (repositories without manifest.json), which current Docker does not load either");
      return fail("not an image archive: neither manifest.json (docker-archive) nor index.json (oci-archive) is in it");
    }
    const images = mergeByImage(planned);
    for (const image of images) if (!image.manifestDigest) image.manifestDigest = sha256(image.manifestBytes);
    faultPoint("load:read");

    // What the store has of these images is leased before it is looked at: a concurrent rmi or
    // prune cannot delete a layer this load decides not to unpack again.
    lease = await store.begin("load", "images", () => ({
      images: images.map((i) => i.id),
      layers: images.flatMap((i) => i.layers.map((l) => l.chainId)),
      blobs: images.flatMap((i) => [i.id, i.manifestDigest, ...i.layers.map((l) => l.digest)]),
    }));

    const stored = store.images.list();
    const known = new Set(stored.map((i) => i.id));
    // Blob-to-diff_id pairs the store already vouches for (layers it unpacked itself).
    const vouched = new Set(stored.flatMap((i) => i.layers.map((l) => `${l.digest} ${l.diffId}`)));
    const fresh = images.filter((i) => !known.has(i.id));

    // Layers to unpack (one job per missing chain) and layers to check by hashing.
    const jobs: { layer: PlannedLayer; blob: string; dest: string }[] = [];
    const jobByChain = new Map<string, PlannedLayer>();
    const toHash: PlannedLayer[] = [];
    // Images the store has already are not stored again, but a load that names them must
    // still be a sound archive: their layers are checked too (free for plain tars and known blobs).
    for (const image of images) {
      for (const layer of image.layers) {
        const verifiedByContent = layer.digest === layer.diffId || vouched.has(`${layer.digest} ${layer.diffId}`);
        if (known.has(image.id)) {
          if (!verifiedByContent) toHash.push(layer);
          continue;
        }
        if (!store.layers.has(layer.chainId)) {
          const job = jobByChain.get(layer.chainId);
          if (!job) {
            jobByChain.set(layer.chainId, layer);
            jobs.push({ blob: contents.pathOf(layer.member), dest: "", layer });
            continue;
          }
          if (job.digest === layer.digest) continue; // the same blob: the job checks it
        }
        if (!verifiedByContent) toHash.push(layer);
      }
    }

    /**
     * Whether a layer whose bytes hash to `got` is the diff_id's tar all the same: without some of
     * its end padding (zstd:chunked, compression.ts). Such a layer's size is the padded one, so
     * that save writes the tar the diff_id names.
     */
    const paddedSizes = new Map<string, number>();
    // By member and diff_id: two configs may claim different diff_ids for one blob.
    const paddedKey = (layer: PlannedLayer): string => `${layer.member.name} ${layer.diffId}`;
    const isDiffId = async (layer: PlannedLayer, got: string): Promise<boolean> => {
      if (got === layer.diffId || paddedSizes.has(paddedKey(layer))) return true;
      const again = await uncompressedDigest(contents.pathOf(layer.member), `layer ${layer.member.name}`, layer.diffId);
      if (again.digest !== layer.diffId) return false;
      paddedSizes.set(paddedKey(layer), again.size);
      return true;
    };
    // A docker-archive's plain layer.tar must be the diff_id's tar: found before anything unpacks.
    if (format === "docker-archive") {
      for (const layer of images.flatMap((i) => i.layers)) {
        if (detectCompression(layer.member.head) !== "none" || (await isDiffId(layer, layer.member.digest))) continue;
        fail(`layer ${layer.member.name}: its sha256 ${layer.member.digest} does not match the config's diff_id ${layer.diffId}`);
      }
    }
    // Cheap and rare (a compressed blob for a chain the store has): before any unpacking.
    for (const layer of toHash) {
      const { digest } = await uncompressedDigest(contents.pathOf(layer.member), `layer ${layer.member.name}`, layer.diffId);
      if (digest !== layer.diffId) fail(`layer ${layer.member.name}: diff_id mismatch: the config says ${layer.diffId}, the content is ${digest}`);
    }

    const blobFiles = new Set<string>();
    for (const image of fresh) for (const l of image.layers) if (l.member.file && !l.member.data && !store.blobs.has(l.digest)) blobFiles.add(l.member.file);
    // The reader hashed each spilled member as it wrote it, into a directory only this user can
    // write: the unpacker takes that digest instead of hashing a plain layer a second time.
    // Layers unpacked while the archive was read are taken as they are: the reader hashed the
    // very bytes their unpacker got.
    const unpackOne = async (job: (typeof jobs)[number]): Promise<UnpackJobResult> => {
      const started = early.take(job.layer.member.name);
      if (started) {
        job.dest = started.dest;
        return await started.result;
      }
      job.dest = store.layers.createTemp();
      layerTemps.push(job.dest);
      const r = (await store.unpack([{ blob: job.blob, dest: job.dest, inputDigest: job.layer.digest }]))[0] ?? fail(`no unpack result for layer ${job.blob}`);
      if (r.compressedDigest !== job.layer.digest) fail(`layer ${job.layer.member.name}: the blob's digest is ${r.compressedDigest ?? "unknown"}, not ${job.layer.digest}`);
      return r;
    };
    // One unpacker per layer, a few at once: the layers of an image unpack in parallel.
    const unpackAll = mapLimit(jobs, PARALLEL_UNPACKS, unpackOne);
    const [results] = await Promise.all([unpackAll, syncFiles([...blobFiles])]);
    faultPoint("load:unpacked");
    const unpackedSize = new Map<string, number>();
    for (const [n, job] of jobs.entries()) {
      const r = results[n] ?? fail(`no unpack result for layer ${job.layer.digest}`);
      for (const w of r.warnings) process.stderr.write(`tsrun: warning: ${w}\n`);
      if (!(await isDiffId(job.layer, r.diffId))) {
        fail(`layer ${job.layer.member.name}: diff_id mismatch: the config says ${job.layer.diffId}, the content is ${r.diffId}`);
      }
      unpackedSize.set(job.layer.chainId, paddedSizes.get(paddedKey(job.layer)) ?? r.size);
    }

    return await store.transact(async (tx) => {
      const putMember = (member: ArchiveMember, digest: string): void => {
        if (member.data) tx.putBlob(member.data, digest);
        else tx.publishBlob(member.file as string, digest);
      };
      for (const job of jobs) {
        const { chainId, diffId, parent } = job.layer;
        // Another tsrun may have committed the same chain meanwhile: tx keeps theirs. (A
        // committed temp dir is gone from its temporary path: the cleanup below skips it.)
        await tx.commitLayer(job.dest, { chainId, diffId, parent, size: unpackedSize.get(chainId) ?? 0 });
      }
      const records = store.images.list();
      const now = new Date().toISOString();
      const renamed: LoadResult["renamed"] = [];
      for (const image of images) {
        let record = records.find((r) => r.id === image.id);
        if (!record) {
          for (const l of image.layers) putMember(l.member, l.digest);
          tx.putBlob(image.configBytes, image.id);
          tx.putBlob(image.manifestBytes, image.manifestDigest);
          faultPoint("load:blobs-stored");
          const layers: LayerRecord[] = image.layers.map((l) => ({
            diffId: l.diffId,
            chainId: l.chainId,
            digest: l.digest,
            mediaType: l.mediaType,
            size: store.layers.meta(l.chainId).size,
          }));
          record = { id: image.id, names: [], manifest: image.manifestDigest, repoDigests: [], layers, added: now } satisfies ImageRecord;
          records.push(record);
        }
        for (const name of image.names) {
          const previous = records.find((r) => r !== record && r.names.includes(name));
          if (previous) renamed.push({ name, previousId: previous.id });
        }
        assignNames(records, record, image.names);
      }
      tx.saveImages(records);
      return { format, images: images.map((i) => ({ id: i.id, names: i.names })), renamed };
    });
  } catch (err) {
    if (err instanceof TsrunError) throw new TsrunError(`load: ${err.message}`, err.exitCode);
    throw new TsrunError(`load: ${(err as Error).message}`);
  } finally {
    rmSync(spillDir, { recursive: true, force: true });
    // Unpackers still at work write into their temporary dirs: they finish first.
    await early.settle();
    await store.removeTrees(layerTemps).catch(() => undefined);
    lease?.release();
    if (existsSync(spillDir)) process.stderr.write(`tsrun: warning: could not remove ${spillDir}\n`);
  }
}
