// `pull`: manifest (through an index when the tag is multi-platform), config, then the layers:
// downloaded in parallel straight into the blob store (each verified before it gets its name),
// unpacked inside the user namespace in one helper run, and recorded under the store lock as
// `import` records images. Layers whose chain is already unpacked are not unpacked again, blobs
// already stored are not downloaded again: a pull killed halfway resumes from its complete blobs.
import type { Store } from "../../store/store.js";
import type { ImageRecord, LayerRecord } from "../../store/images.js";
import { DigestMismatchError } from "../../store/blobs.js";
import { chainIds, sha256 } from "../../store/digest.js";
import { hostPlatform, type ImageConfig, type Manifest, type Platform, type Descriptor } from "../types.js";
import { formatReference, parseReference, ReferenceError, repositoryName, type Reference } from "../reference.js";
import { assignNames } from "../import.js";
import { TsrunError } from "../../errors.js";
import { lookupCredentials } from "./auth.js";
import { readBody, RegistryClient, RegistryError } from "./client.js";
import { checkImageManifest, fetchManifest, formatPlatform, MAX_CONFIG_BYTES, parsePlatform, selectPlatform, type ImageIndexDoc } from "./manifest.js";
import { silentListener, type TransferListener } from "./progress.js";
import type { Lease } from "../../store/leases.js";
import { faultPoint } from "../../store/fault.js";

export interface PullOptions {
  /** NAME[:TAG|@DIGEST] */
  reference: string;
  /** "os/arch[/variant]"; the host's platform when absent. */
  platform?: string | undefined;
  tlsVerify?: boolean | undefined;
  /** An auth file to use instead of the default ones. */
  authFile?: string | undefined;
  listener?: TransferListener | undefined;
}

export interface PullResult {
  image: ImageRecord;
  /** Digest of the image manifest stored (the platform's, when pulled through an index). */
  manifestDigest: string;
  /** Digest of the index the tag pointed at, when it was one. */
  indexDigest?: string;
}

/** Layers downloaded at once: enough to fill a link, few enough not to thrash a small disk. */
const PARALLEL_DOWNLOADS = 3;
const BLOB_ATTEMPTS = 3;

export function parseUserReference(text: string): Reference {
  try {
    return parseReference(text.replace(/^docker:\/\//, ""));
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(err.message);
    throw err;
  }
}

/** Runs fn over items with at most `limit` at a time; the first failure rejects the whole. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** A blob the store has, verified; undefined when it is missing (or deleted meanwhile) or corrupt. */
function readStoredBlob(store: Store, digest: string): Buffer | undefined {
  try {
    return store.blobs.read(digest);
  } catch {
    return undefined;
  }
}

/** Streams one blob into the store, verifying size and digest; retries on dropped connections. */
async function downloadBlob(client: RegistryClient, store: Store, repo: string, desc: Descriptor, listener: TransferListener, context: string): Promise<void> {
  const what = `${context}: blob ${desc.digest}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await client.request("GET", `${repo}/blobs/${desc.digest}`, { context: what });
      let received = 0;
      const counted = async function* (): AsyncGenerator<Buffer> {
        for await (const chunk of res.body) {
          const buf = chunk as Buffer;
          received += buf.length;
          // A registry that sends more than the manifest promised is refused before it fills the disk.
          if (received > desc.size) throw new RegistryError(`${what}: the registry sent more than the ${desc.size} bytes the manifest lists`);
          listener.blobProgress(desc.digest, received);
          yield buf;
        }
        if (received !== desc.size) {
          throw Object.assign(new Error(`${what}: got ${received} of ${desc.size} bytes`), { code: "ECONNRESET" });
        }
      };
      await store.blobs.putStream(counted(), desc.digest);
      return;
    } catch (err) {
      if (err instanceof DigestMismatchError) throw new RegistryError(`${what}: ${err.message} (the registry sent corrupted data)`);
      const code = (err as NodeJS.ErrnoException).code ?? "";
      const transient = code === "ECONNRESET" || code === "ETIMEDOUT" || code === "EPIPE" || (err as Error).message === "aborted";
      if (!transient || attempt >= BLOB_ATTEMPTS) throw err instanceof TsrunError ? err : new RegistryError(`${what}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}

export async function pullImage(store: Store, opts: PullOptions): Promise<PullResult> {
  const ref = parseUserReference(opts.reference);
  const want: Platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const listener = opts.listener ?? silentListener;
  const name = formatReference(ref);
  const context = `pull ${name}`;
  const client = new RegistryClient(ref.domain, { tlsVerify: opts.tlsVerify, credentials: lookupCredentials(ref.domain, opts.authFile) });
  client.addScope(`repository:${ref.path}:pull`);
  const temps: string[] = [];
  let lease: Lease | undefined;
  try {
    listener.message(`Trying to pull ${name}...`);
    let top = await fetchManifest(client, ref.path, ref.digest ?? ref.tag ?? "latest", context);
    let indexDigest: string | undefined;
    if (top.kind === "index") {
      indexDigest = top.digest;
      const index = JSON.parse(top.bytes.toString("utf8")) as ImageIndexDoc;
      const chosen = selectPlatform(index, want, context);
      top = await fetchManifest(client, ref.path, chosen.digest, context);
      if (top.kind !== "manifest") throw new RegistryError(`${context}: the index entry for ${formatPlatform(want)} is not an image manifest`);
    }
    const manifestBytes = top.bytes;
    const manifestDigest = top.digest;
    const manifest = JSON.parse(manifestBytes.toString("utf8")) as Manifest;
    checkImageManifest(manifest, context);

    // From here on the blobs the manifest names are leased: no rmi or prune running meanwhile
    // deletes one this pull found in the store or has downloaded.
    lease = await store.begin(context, "images", () => ({ blobs: [manifest.config.digest, ...manifest.layers.map((l) => l.digest)] }));
    faultPoint("pull:begun");

    // The config is kept in memory and stored only with the image record: a pull that fails
    // leaves no config blob of an image that does not exist.
    const configDesc = manifest.config;
    let configBytes: Buffer;
    const storedConfig = readStoredBlob(store, configDesc.digest);
    if (storedConfig) {
      configBytes = storedConfig;
    } else {
      listener.blobStart("config", configDesc.digest, configDesc.size);
      const res = await client.request("GET", `${ref.path}/blobs/${configDesc.digest}`, { context: `${context}: config` });
      configBytes = await readBody(res.body, MAX_CONFIG_BYTES, `${context}: config`);
      if (sha256(configBytes) !== configDesc.digest) {
        throw new RegistryError(`${context}: config digest mismatch: expected ${configDesc.digest}, got ${sha256(configBytes)} (the registry sent corrupted data)`);
      }
      listener.blobDone(configDesc.digest, "done");
    }
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString("utf8")) as ImageConfig;
    } catch (err) {
      throw new RegistryError(`${context}: the image config is not valid JSON: ${(err as Error).message}`);
    }
    const diffIds = config.rootfs?.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) {
      throw new RegistryError(`${context}: the config lists ${Array.isArray(diffIds) ? diffIds.length : 0} layer diff IDs but the manifest has ${manifest.layers.length} layers`);
    }
    if (!indexDigest && (config.os !== want.os || config.architecture !== want.architecture) && config.os && config.architecture) {
      process.stderr.write(`tsrun: warning: image platform (${formatPlatform(config)}) does not match the expected platform (${formatPlatform(want)})\n`);
    }
    const chains = chainIds(diffIds);
    const leased = lease;
    await store.lock(() => leased.add({ images: [configDesc.digest], layers: chains }));

    // Layers: download the missing blobs (each digest once, even if listed twice), in parallel.
    const toDownload = new Map<string, Descriptor>();
    for (const layer of manifest.layers) {
      if (toDownload.has(layer.digest)) continue;
      listener.blobStart("blob", layer.digest, layer.size);
      if (store.blobs.has(layer.digest)) listener.blobDone(layer.digest, "skipped: already exists");
      else toDownload.set(layer.digest, layer);
    }
    await mapLimit([...toDownload.values()], PARALLEL_DOWNLOADS, async (layer) => {
      await downloadBlob(client, store, ref.path, layer, listener, context);
      listener.blobDone(layer.digest, "done");
      faultPoint("pull:blob-downloaded");
    });

    // Unpack the layers whose chain is not in the store yet, in one helper run, in order.
    const jobs: { index: number; dest: string }[] = [];
    for (const [i, chain] of chains.entries()) {
      if (store.layers.has(chain)) continue;
      const dest = store.layers.createTemp();
      temps.push(dest);
      jobs.push({ index: i, dest });
    }
    const unpacked = new Map<number, { size: number; dest: string }>();
    if (jobs.length > 0) {
      listener.message("Extracting layers");
      const results = await store.unpack(jobs.map((j) => ({ blob: store.blobs.path((manifest.layers[j.index] as Descriptor).digest), dest: j.dest })));
      for (const [n, job] of jobs.entries()) {
        const r = results[n];
        const layer = manifest.layers[job.index] as Descriptor;
        if (!r) throw new RegistryError(`${context}: no unpack result for layer ${layer.digest}`);
        for (const w of r.warnings) process.stderr.write(`tsrun: warning: ${w}\n`);
        // The blob was verified on download; the uncompressed content must be what the config says.
        if (r.diffId !== diffIds[job.index]) {
          throw new RegistryError(`${context}: layer ${layer.digest}: diff ID mismatch: the config says ${diffIds[job.index]}, the content is ${r.diffId}`);
        }
        if (r.compressedDigest !== layer.digest) throw new RegistryError(`${context}: layer ${layer.digest} changed on disk while unpacking (got ${r.compressedDigest})`);
        unpacked.set(job.index, { size: r.size, dest: job.dest });
      }
    }
    listener.message("Writing manifest to image destination");
    listener.finish();
    faultPoint("pull:unpacked");

    const image = await store.transact(async (tx) => {
      const layers: LayerRecord[] = [];
      for (const [i, layer] of manifest.layers.entries()) {
        const chainId = chains[i] as string;
        const diffId = diffIds[i] as string;
        const fresh = unpacked.get(i);
        if (fresh) {
          // Another pull may have committed the same chain meanwhile: tx keeps theirs. (A
          // committed temp dir is gone from its temporary path: the cleanup below skips it.)
          await tx.commitLayer(fresh.dest, { chainId, diffId, parent: i === 0 ? null : (chains[i - 1] as string), size: fresh.size });
        }
        if (!store.blobs.has(layer.digest)) throw new RegistryError(`${context}: layer blob ${layer.digest} is missing from the store`);
        const size = store.layers.meta(chainId).size;
        layers.push({ diffId, chainId, digest: layer.digest, mediaType: layer.mediaType, size });
      }
      tx.putBlob(configBytes, configDesc.digest);
      tx.putBlob(manifestBytes, manifestDigest);
      faultPoint("pull:blobs-stored");
      const images = store.images.list();
      let record = images.find((i) => i.id === configDesc.digest);
      if (!record) {
        record = { id: configDesc.digest, names: [], manifest: manifestDigest, repoDigests: [], layers, added: new Date().toISOString() };
        images.push(record);
      } else {
        // The registry's manifest becomes the one the store describes the image with: pushing
        // it back then reproduces the same digest.
        record.manifest = manifestDigest;
        record.layers = layers;
      }
      const repo = repositoryName(ref);
      for (const digest of [manifestDigest, indexDigest]) {
        if (digest && !record.repoDigests.includes(`${repo}@${digest}`)) record.repoDigests.push(`${repo}@${digest}`);
      }
      if (!ref.digest) assignNames(images, record, [name]);
      tx.saveImages(images);
      return record;
    });
    const result: PullResult = { image, manifestDigest };
    if (indexDigest) result.indexDigest = indexDigest;
    return result;
  } finally {
    client.close();
    await store.removeTrees(temps).catch(() => undefined);
    lease?.release();
  }
}
