// Manifests as registries serve them: fetching with the right Accept header, telling image
// manifests from indexes, verifying digests, checking media types, picking a platform.
import { sha256 } from "../../store/digest.js";
import { MEDIA, type Descriptor, type Manifest, type Platform } from "../types.js";
import { readBody, RegistryError, type RegistryClient } from "./client.js";
import { TsrunError } from "../../errors.js";
import { parsePlatformSpec, platformRank } from "../platform-spec.js";

/** Everything tsrun can read; registries pick the best they have (order is preference). */
export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerManifestList, MEDIA.dockerManifest].join(", ");

/** Manifests and configs are small; containers/image uses the same 4 MiB bound for manifests. */
export const MAX_MANIFEST_BYTES = 4 << 20;
export const MAX_CONFIG_BYTES = 8 << 20;
/** Overlay mounts at most this many lower dirs in one page of options: Docker's overlay2 limit too. */
export const MAX_LAYERS = 128;

export const LAYER_MEDIA_TYPES = new Set<string>([
  MEDIA.ociLayer,
  MEDIA.ociLayerGzip,
  MEDIA.ociLayerZstd,
  MEDIA.dockerLayerGzip,
  // Docker's uncompressed layer type (skopeo writes it for uncompressed layers in v2s2 manifests).
  "application/vnd.docker.image.rootfs.diff.tar",
  // Non-distributable layers are still ordinary tarballs when the registry has them.
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
]);

export const CONFIG_MEDIA_TYPES = new Set<string>([MEDIA.ociConfig, MEDIA.dockerConfig]);

export interface ImageIndexDoc {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
  kind: "manifest" | "index";
}

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(bytes.toString("utf8")) as unknown;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object");
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new RegistryError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function isDescriptor(value: unknown): value is Descriptor {
  if (typeof value !== "object" || value === null) return false;
  const d = value as Record<string, unknown>;
  return typeof d.mediaType === "string" && typeof d.digest === "string" && typeof d.size === "number" && Number.isSafeInteger(d.size) && d.size >= 0;
}

function checkDigest(digest: string, what: string): void {
  // Only sha256 is stored (blob file names are its hex); anything else is refused up front.
  if (!DIGEST_RE.test(digest)) throw new RegistryError(`${what} has an unsupported or malformed digest "${digest}"`);
}

/** Classifies and validates a manifest document by its media type and shape. */
export function classifyManifest(bytes: Buffer, headerType: string | undefined, what: string): { kind: "manifest" | "index"; mediaType: string; doc: Record<string, unknown> } {
  const doc = parseJson(bytes, what);
  if (doc.schemaVersion === 1) throw new RegistryError(`${what}: unsupported media type: Docker schema 1 manifests are deprecated and not supported`);
  const mediaType = typeof doc.mediaType === "string" ? doc.mediaType : (headerType?.split(";")[0]?.trim() ?? "");
  const isIndexType = mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerManifestList;
  const isManifestType = mediaType === MEDIA.ociManifest || mediaType === MEDIA.dockerManifest;
  // OCI allows mediaType to be absent; then the shape decides (and the header, when it is one of ours).
  if (isIndexType || (!isManifestType && Array.isArray(doc.manifests))) {
    if (!Array.isArray(doc.manifests) || !doc.manifests.every(isDescriptor)) throw new RegistryError(`${what}: malformed image index`);
    for (const m of doc.manifests as Descriptor[]) checkDigest(m.digest, `${what}: an index entry`);
    return { kind: "index", mediaType: mediaType || MEDIA.ociIndex, doc };
  }
  if (isManifestType || (mediaType === "" && doc.config !== undefined)) {
    if (!isDescriptor(doc.config) || !Array.isArray(doc.layers) || !doc.layers.every(isDescriptor)) throw new RegistryError(`${what}: malformed image manifest`);
    return { kind: "manifest", mediaType: mediaType || MEDIA.ociManifest, doc };
  }
  throw new RegistryError(`${what}: unsupported media type "${mediaType || "(none)"}"`);
}

/** GET a manifest by tag or digest; the bytes are verified against the digest asked for. */
export async function fetchManifest(client: RegistryClient, repo: string, reference: string, context: string): Promise<FetchedManifest> {
  const res = await client.request("GET", `${repo}/manifests/${reference}`, { headers: { Accept: MANIFEST_ACCEPT }, context });
  const bytes = await readBody(res.body, MAX_MANIFEST_BYTES, `${context}: manifest`);
  const digest = sha256(bytes);
  if (reference.includes(":") && reference !== digest) {
    throw new RegistryError(`${context}: manifest digest mismatch: asked for ${reference}, got ${digest}`);
  }
  const headerDigest = res.headers["docker-content-digest"];
  if (typeof headerDigest === "string" && DIGEST_RE.test(headerDigest) && headerDigest !== digest) {
    throw new RegistryError(`${context}: manifest digest mismatch: the registry says ${headerDigest}, the bytes are ${digest}`);
  }
  const ct = res.headers["content-type"];
  const { kind, mediaType } = classifyManifest(bytes, ct, `${context}: manifest`);
  return { bytes, digest, mediaType, kind };
}

/**
 * --platform as Docker takes it (containerd's specifiers): "linux/arm64/v8", "linux/amd64",
 * "arm64" (the host's OS), "linux" (the host's architecture), "x86_64", "aarch64"; normalized.
 */
export function parsePlatform(text: string): Platform {
  try {
    return parsePlatformSpec(text);
  } catch (err) {
    throw new TsrunError((err as Error).message);
  }
}

export function formatPlatform(p: Platform | undefined): string {
  if (!p) return "unknown";
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

function platformMatches(candidate: Platform | undefined, want: Platform): boolean {
  return platformRank(candidate, want) >= 0;
}

/** The entry that fits best (containerd orders matches: arm64 before arm/v8, amd64 before 386); the first of equals. */
function bestMatch(entries: Descriptor[], want: Platform): Descriptor | undefined {
  let best: Descriptor | undefined;
  let bestRank = Infinity;
  for (const m of entries) {
    const rank = platformRank(m.platform, want);
    if (rank >= 0 && rank < bestRank) {
      best = m;
      bestRank = rank;
    }
  }
  return best;
}

/** The index entry for a platform, or a one-line error listing what the index has. */
export function selectPlatform(index: ImageIndexDoc, want: Platform, what: string): Descriptor {
  const images = index.manifests.filter((m) => m.mediaType === MEDIA.ociManifest || m.mediaType === MEDIA.dockerManifest);
  const match = bestMatch(images, want);
  if (match) return match;
  throw noImageFor(want, images.map((m) => formatPlatform(m.platform)), what);
}

function noImageFor(want: Platform, available: Iterable<string>, what: string): RegistryError {
  const list = [...new Set(available)].filter((p) => p !== "unknown/unknown" && p !== "unknown");
  // A hostile index can list thousands: the message stays one readable line.
  const shown = list.length > 10 ? `${list.slice(0, 10).join(", ")} and ${list.length - 10} more` : list.join(", ");
  return new RegistryError(`${what}: no image for ${formatPlatform(want)} in the index (available: ${shown || "none"})`);
}

const INDEX_TYPES = new Set<string>([MEDIA.ociIndex, MEDIA.dockerManifestList]);
const IMAGE_TYPES = new Set<string>([MEDIA.ociManifest, MEDIA.dockerManifest]);
/** Indexes inside indexes are followed this deep (containerd follows them; real ones nest once). */
const MAX_INDEX_DEPTH = 4;
/** Manifests fetched to look for a platform before giving up: a hostile index cannot make a pull fetch thousands. */
const MAX_INDEX_FETCHES = 16;

/** buildx lists attestations (SBOM, provenance) as image manifests of platform unknown/unknown. */
function isAttestation(d: Descriptor): boolean {
  return d.annotations?.["vnd.docker.reference.type"] === "attestation-manifest";
}

export interface IndexWalker {
  /** Fetches a manifest or index the index names, verified against its digest. */
  fetch: (desc: Descriptor) => Promise<FetchedManifest>;
  /** The platform an image manifest's config declares (for index entries that say none). */
  configPlatform: (manifest: Manifest) => Promise<Platform>;
}

/**
 * The image manifest for a platform, found in an index as containerd finds it: an image entry
 * of that platform; else inside nested indexes (entries of that platform or of none); else an
 * image entry without a platform whose config declares it. Attestations are skipped. Fails in
 * one line listing the platforms the index offers.
 */
export async function resolvePlatform(index: ImageIndexDoc, want: Platform, walker: IndexWalker, what: string): Promise<FetchedManifest> {
  const available = new Set<string>();
  let fetches = 0;
  const fetch = (desc: Descriptor): Promise<FetchedManifest> => {
    if (++fetches > MAX_INDEX_FETCHES) throw new RegistryError(`${what}: the index nests or lists too many entries without a platform (more than ${MAX_INDEX_FETCHES} looked at)`);
    return walker.fetch(desc);
  };
  const visit = async (doc: ImageIndexDoc, depth: number, seen: Set<string>): Promise<FetchedManifest | undefined> => {
    const entries = doc.manifests.filter((m) => !isAttestation(m));
    for (const m of entries) if (IMAGE_TYPES.has(m.mediaType) && m.platform) available.add(formatPlatform(m.platform));
    const direct = bestMatch(entries.filter((m) => IMAGE_TYPES.has(m.mediaType)), want);
    if (direct) return fetch(direct);
    for (const m of entries) {
      if (!INDEX_TYPES.has(m.mediaType) || (m.platform && !platformMatches(m.platform, want)) || seen.has(m.digest)) continue;
      if (depth >= MAX_INDEX_DEPTH) throw new RegistryError(`${what}: image indexes nested more than ${MAX_INDEX_DEPTH} deep`);
      const nested = await fetch(m);
      if (nested.kind !== "index") continue;
      const found = await visit(JSON.parse(nested.bytes.toString("utf8")) as ImageIndexDoc, depth + 1, new Set([...seen, m.digest]));
      if (found) return found;
    }
    for (const m of entries) {
      if (!IMAGE_TYPES.has(m.mediaType) || m.platform) continue;
      const candidate = await fetch(m);
      if (candidate.kind !== "manifest") continue;
      const declared = await walker.configPlatform(JSON.parse(candidate.bytes.toString("utf8")) as Manifest);
      available.add(formatPlatform(declared));
      if (platformMatches(declared, want)) return candidate;
    }
    return undefined;
  };
  const found = await visit(index, 0, new Set());
  if (found) return found;
  throw noImageFor(want, available, what);
}

/** Validates an image manifest's descriptors: digests we can store, media types we can unpack. */
export function checkImageManifest(manifest: Manifest, what: string): void {
  checkDigest(manifest.config.digest, `${what}: the config`);
  if (!CONFIG_MEDIA_TYPES.has(manifest.config.mediaType)) {
    throw new RegistryError(`${what}: unsupported media type "${manifest.config.mediaType}" for the config: not a container image`);
  }
  if (manifest.layers.length > MAX_LAYERS) throw new RegistryError(`${what}: the image has ${manifest.layers.length} layers, more than the ${MAX_LAYERS} a container can stack`);
  for (const layer of manifest.layers) {
    checkDigest(layer.digest, `${what}: a layer`);
    if (!LAYER_MEDIA_TYPES.has(layer.mediaType)) throw new RegistryError(`${what}: unsupported media type "${layer.mediaType}" for layer ${layer.digest}`);
  }
}
