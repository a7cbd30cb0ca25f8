// `push`: every blob the image's stored manifest lists (layers, then the config) unless the
// registry has it already (HEAD), mounted from another repository of the same registry when
// this store knows one that has it, otherwise uploaded (one PUT for small blobs, PATCH chunks
// for large ones); then the manifest, byte for byte as stored, so its digest does not change.
import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import type { Store } from "../../store/store.js";
import type { ImageRecord } from "../../store/images.js";
import { parseReference, repositoryName, type Reference } from "../reference.js";
import type { Descriptor, Manifest } from "../types.js";
import { NotFoundError, TsrunError } from "../../errors.js";
import { lookupCredentials } from "./auth.js";
import { discard, RegistryClient, RegistryError } from "./client.js";
import { loadRegistriesConf, pushTarget } from "./registries-conf.js";
import { classifyManifest } from "./manifest.js";
import { mapLimit, parseUserReference } from "./pull.js";
import { silentListener, type TransferListener } from "./progress.js";

export interface PushOptions {
  /** A local image: name or ID. */
  image: string;
  /** Where to push: NAME[:TAG]; the image's own name when absent. */
  destination?: string | undefined;
  tlsVerify?: boolean | undefined;
  authFile?: string | undefined;
  listener?: TransferListener | undefined;
}

export interface PushResult {
  /** The destination, normalised (e.g. 127.0.0.1:5000/app:latest). */
  reference: string;
  manifestDigest: string;
}

/** Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size. */
export const CHUNK_BYTES = 8 << 20;
const PARALLEL_UPLOADS = 3;

function readChunk(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, offset + got);
      if (n === 0) throw new TsrunError(`${file} is shorter than expected`);
      got += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

function uploadLocation(headers: Record<string, string | string[] | undefined>, answeredBy: URL, context: string): URL {
  const location = headers.location;
  if (typeof location !== "string" || location === "") throw new RegistryError(`${context}: the registry gave no upload location`);
  return new URL(location, answeredBy);
}

/** Uploads one blob to an open upload session. */
async function uploadBlob(
  client: RegistryClient,
  start: URL,
  file: string,
  desc: Descriptor,
  chunkBytes: number,
  listener: TransferListener,
  context: string,
): Promise<void> {
  let location = start;
  if (desc.size > chunkBytes) {
    for (let offset = 0; offset < desc.size; offset += chunkBytes) {
      const length = Math.min(chunkBytes, desc.size - offset);
      const res = await client.request("PATCH", location, {
        headers: { "Content-Type": "application/octet-stream", "Content-Range": `${offset}-${offset + length - 1}` },
        body: readChunk(file, offset, length),
        ok: [202],
        context,
      });
      discard(res.body);
      location = uploadLocation(res.headers, res.url, context);
      listener.blobProgress(desc.digest, offset + length);
    }
    const done = new URL(location);
    done.searchParams.set("digest", desc.digest);
    const res = await client.request("PUT", done, { body: Buffer.alloc(0), ok: [201, 204], context });
    discard(res.body);
    return;
  }
  const done = new URL(location);
  done.searchParams.set("digest", desc.digest);
  const res = await client.request("PUT", done, {
    headers: { "Content-Type": "application/octet-stream" },
    body: {
      length: desc.size,
      open: () => {
        let sent = 0;
        const stream = createReadStream(file);
        stream.on("data", (chunk) => {
          sent += chunk.length;
          listener.blobProgress(desc.digest, sent);
        });
        return stream;
      },
    },
    ok: [201, 204],
    context,
  });
  discard(res.body);
}

/** Repositories on the same registry that this store pulled or pushed the blob from or to. */
function mountSources(images: ImageRecord[], blobDigest: string, dest: Reference): string[] {
  const sources = new Set<string>();
  for (const image of images) {
    if (!image.layers.some((l) => l.digest === blobDigest) && image.id !== blobDigest) continue;
    for (const repoDigest of image.repoDigests) {
      const repo = repoDigest.slice(0, repoDigest.indexOf("@"));
      const prefix = `${dest.domain}/`;
      if (repo.startsWith(prefix) && repo !== repositoryName(dest)) sources.add(repo.slice(prefix.length));
    }
  }
  return [...sources];
}

/** Resolves IMAGE [DESTINATION] to the stored image and the normalised destination. */
function resolveTarget(store: Store, opts: PushOptions): { image: ImageRecord; dest: Reference } {
  const query = opts.image.replace(/^docker:\/\//, "");
  let image: ImageRecord | undefined;
  try {
    image = store.images.find(query);
  } catch (err) {
    throw new TsrunError(`push: ${(err as Error).message}`);
  }
  if (!image) throw new NotFoundError(`push: image not known: ${opts.image}`);
  if (opts.destination) return { image, dest: parseUserReference(opts.destination) };
  // Without a destination the image argument must be a name (an ID says nothing about where to go).
  // The name that matched: Docker's form, or another a short name stands for (localhost/NAME...).
  let named: string | undefined;
  try {
    named = store.images.findName(query).name;
  } catch {
    named = undefined;
  }
  if (!named || !(image.names.includes(named) || image.repoDigests.includes(named))) {
    throw new TsrunError(`push: ${opts.image} is an image ID; give a destination (tsrun push IMAGE REGISTRY/NAME[:TAG])`);
  }
  return { image, dest: parseReference(named) };
}

export async function pushImage(store: Store, opts: PushOptions): Promise<PushResult> {
  const { image, dest } = resolveTarget(store, opts);
  const listener = opts.listener ?? silentListener;
  const target = dest.digest ?? dest.tag ?? "latest";
  const name = `${repositoryName(dest)}${dest.digest ? `@${dest.digest}` : `:${target}`}`;
  const context = `push ${name}`;
  const manifestBytes = store.blobs.read(image.manifest);
  const { mediaType } = classifyManifest(manifestBytes, undefined, `${context}: stored manifest ${image.manifest}`);
  const manifest = JSON.parse(manifestBytes.toString("utf8")) as Manifest;
  if (dest.digest && dest.digest !== image.manifest) {
    throw new TsrunError(`${context}: the image's manifest is ${image.manifest}, not the digest given`);
  }
  const blobs: { kind: "blob" | "config"; desc: Descriptor }[] = [];
  const seen = new Set<string>();
  for (const layer of manifest.layers) {
    if (seen.has(layer.digest)) continue;
    seen.add(layer.digest);
    blobs.push({ kind: "blob", desc: layer });
  }
  blobs.push({ kind: "config", desc: manifest.config });
  for (const { desc } of blobs) {
    if (!store.blobs.has(desc.digest)) throw new TsrunError(`${context}: blob ${desc.digest} is missing from the store`);
  }

  // registries.conf: a blocked registry is refused; an insecure one is spoken to without TLS verification.
  const { insecure } = pushTarget(loadRegistriesConf(), dest);
  const client = new RegistryClient(dest.domain, { tlsVerify: opts.tlsVerify ?? !insecure, credentials: lookupCredentials(dest.domain, opts.authFile) });
  client.addScope(`repository:${dest.path}:pull,push`);
  const allImages = store.images.list();
  try {
    listener.message(`Pushing ${name}`);
    for (const { kind, desc } of blobs) listener.blobStart(kind, desc.digest, desc.size);
    await mapLimit(blobs, PARALLEL_UPLOADS, async ({ desc }) => {
      const blobContext = `${context}: blob ${desc.digest}`;
      const head = await client.request("HEAD", `${dest.path}/blobs/${desc.digest}`, { ok: [200, 404], context: blobContext });
      discard(head.body);
      if (head.status === 200) return listener.blobDone(desc.digest, "skipped: already exists");
      let session: { status: number; location: URL; chunkMin: number } | undefined;
      for (const from of mountSources(allImages, desc.digest, dest)) {
        client.addScope(`repository:${from}:pull`);
        const url = `${dest.path}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}`;
        const res = await client.request("POST", url, { body: Buffer.alloc(0), ok: [201, 202], context: blobContext });
        discard(res.body);
        if (res.status === 201) return listener.blobDone(desc.digest, "mounted");
        // 202: the registry could not mount and opened an ordinary upload instead.
        session = { status: 202, location: uploadLocation(res.headers, res.url, blobContext), chunkMin: Number(res.headers["oci-chunk-min-length"] ?? 0) };
        break;
      }
      if (!session) {
        const res = await client.request("POST", `${dest.path}/blobs/uploads/`, { body: Buffer.alloc(0), ok: [202], context: blobContext });
        discard(res.body);
        session = { status: 202, location: uploadLocation(res.headers, res.url, blobContext), chunkMin: Number(res.headers["oci-chunk-min-length"] ?? 0) };
      }
      const chunk = Math.max(CHUNK_BYTES, Number.isSafeInteger(session.chunkMin) ? session.chunkMin : 0);
      await uploadBlob(client, session.location, store.blobs.path(desc.digest), desc, chunk, listener, blobContext);
      listener.blobDone(desc.digest, "done");
    });
    listener.message("Writing manifest to image destination");
    listener.finish();
    const res = await client.request("PUT", `${dest.path}/manifests/${target}`, {
      headers: { "Content-Type": mediaType },
      body: manifestBytes,
      ok: [200, 201, 204],
      context: `${context}: manifest`,
    });
    discard(res.body);
    const answered = res.headers["docker-content-digest"];
    if (typeof answered === "string" && /^sha256:/.test(answered) && answered !== image.manifest) {
      throw new RegistryError(`${context}: the registry stored the manifest as ${answered}, expected ${image.manifest}`);
    }
  } finally {
    client.close();
  }
  // Remember where the image now lives: `images --digests` shows it, and later pushes to other
  // repositories of this registry can mount its blobs instead of uploading them.
  const repoDigest = `${repositoryName(dest)}@${image.manifest}`;
  await store.lock(() => {
    const images = store.images.list();
    const record = images.find((i) => i.id === image.id);
    if (record && !record.repoDigests.includes(repoDigest)) {
      record.repoDigests.push(repoDigest);
      store.images.save(images);
    }
  });
  return { reference: name, manifestDigest: image.manifest };
}
