// `pull`: manifest (through an index when the tag is multi-platform), config, then the layers:
// each missing blob is downloaded once, verified before it gets its name in the blob store, and
// unpacked as it arrives (the bytes also go through a pipe to an unpacker inside the user
// namespace: no second pass over the data); several layers at once. The image is recorded under
// the store lock as `import` records images. Layers whose chain is already unpacked are not
// unpacked again, blobs already stored are not downloaded again: a pull killed halfway resumes
// from its complete blobs.
import type { Store, UnpackJobResult } from "../../store/store.js";
import { UnpackFeed } from "../../store/unpack-feed.js";
import type { Lease } from "../../store/leases.js";
import { faultPoint } from "../../store/fault.js";
import { assignNames, type ImageRecord, type LayerRecord } from "../../store/images.js";
import { DigestMismatchError } from "../../store/blobs.js";
import { chainIds, sha256 } from "../../store/digest.js";
import { hostPlatform, type ImageConfig, type Manifest, type Platform, type Descriptor } from "../types.js";
import { formatReference, hasRegistry, parseReference, ReferenceError, repositoryName, type Reference } from "../reference.js";
import { TsrunError } from "../../errors.js";
import { readBody, RegistryError, type RegistryClient } from "./client.js";
import { isTransient, mayFallBack, SourceChain, stripContext, withOthers } from "./source-chain.js";
import { BlockedRegistryError, loadRegistriesConfig, pullSources, type RegistryEntry } from "./registries-conf.js";
import { recordAlias, resolveShortName, type SelectCandidate } from "./short-names.js";
import { checkImageManifest, fetchManifest, formatPlatform, MAX_CONFIG_BYTES, parsePlatform, resolvePlatform, type ImageIndexDoc } from "./manifest.js";
import { silentListener, type TransferListener } from "./progress.js";
import { uncompressedDigest } from "../archive/compression.js";
import { platformRank } from "../platform-spec.js";

export interface PullOptions {
  /** NAME[:TAG|@DIGEST] */
  reference: string;
  /** "os/arch[/variant]"; the host's platform when absent. */
  platform?: string | undefined;
  tlsVerify?: boolean | undefined;
  /** An auth file to use instead of the default ones. */
  authFile?: string | undefined;
  listener?: TransferListener | undefined;
  /**
   * Asks the user which registry a short name means, when several unqualified-search
   * registries could serve it (Podman's prompt); give it only when a user can answer.
   */
  selectCandidate?: SelectCandidate | undefined;
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

/**
 * Runs fn over items with at most `limit` at a time. After a failure no new item starts; the
 * first failure rejects the whole once the running ones have settled (their temporary files
 * can then be removed safely).
 */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
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

/**
 * Streams one blob into the store, verifying size and digest. A dropped connection is resumed
 * where it broke (Range; a registry that ignores it resends from the start, and what we have is
 * skipped), so `feed` (an unpacker reading along) sees every byte exactly once. A source that
 * lacks the blob or fails (source-chain.ts) hands over to the next, which resumes likewise.
 */
async function downloadBlob(
  chain: SourceChain,
  store: Store,
  desc: Descriptor,
  listener: TransferListener,
  context: string,
  /** Gets every byte once, in order; never throws. */
  feed?: (chunk: Buffer) => Promise<void>,
): Promise<void> {
  const what = `${context}: blob ${desc.digest}`;
  let received = 0;
  async function* body(): AsyncGenerator<Buffer> {
    let index = chain.firstIndex;
    let firstError: unknown;
    const others: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const { client, path: repo, source } = chain.at(index);
      try {
        const headers: Record<string, string> = received > 0 ? { Range: `bytes=${received}-` } : {};
        const res = await client.request("GET", `${repo}/blobs/${desc.digest}`, { headers, ok: [200, 206], context: what });
        let skip = received;
        if (res.status === 206) {
          const start = /^bytes (\d+)-/.exec(String(res.headers["content-range"] ?? ""))?.[1];
          if (start === undefined || Number(start) > received) {
            res.body.destroy();
            throw new RegistryError(`${what}: the registry answered a resumed download with the wrong range (${String(res.headers["content-range"])})`);
          }
          skip = received - Number(start);
        }
        for await (const chunk of res.body) {
          let buf = chunk as Buffer;
          if (skip > 0) {
            if (buf.length <= skip) {
              skip -= buf.length;
              continue;
            }
            buf = buf.subarray(skip);
            skip = 0;
          }
          // A registry that sends more than the manifest promised is refused before it fills the disk.
          if (received + buf.length > desc.size) throw new RegistryError(`${what}: the registry sent more than the ${desc.size} bytes the manifest lists`);
          received += buf.length;
          listener.blobProgress(desc.digest, received);
          if (feed) await feed(buf);
          yield buf;
        }
        if (received !== desc.size) throw Object.assign(new Error(`got ${received} of ${desc.size} bytes`), { code: "ECONNRESET" });
        return;
      } catch (err) {
        if (isTransient(err) && attempt < BLOB_ATTEMPTS) {
          await new Promise((r) => setTimeout(r, 500 * attempt));
          continue;
        }
        if (!mayFallBack(err)) throw err;
        const message = err instanceof RegistryError ? stripContext(err.message, what) : (err as Error).message;
        if (firstError === undefined) firstError = err instanceof RegistryError ? err : new RegistryError(`${what}: ${message}`);
        else others.push(`${source.domain}: ${message}`);
        if (index + 1 >= chain.sources.length) throw withOthers(firstError, others);
        index++;
        attempt = 0;
      }
    }
  }
  try {
    await store.blobs.putStream(body(), desc.digest);
  } catch (err) {
    if (err instanceof DigestMismatchError) throw new RegistryError(`${what}: ${err.message} (the registry sent corrupted data)`);
    if (err instanceof TsrunError) throw err;
    throw new RegistryError(`${what}: ${(err as Error).message}`);
  }
}

/**
 * Downloads a layer blob and unpacks it in the same pass: the bytes go to the blob store and,
 * through a pipe, to an unpacker in the user namespace. If the unpacker fails, the download
 * still runs to its end: a blob that does not match its digest is reported as such (the
 * registry sent corrupted data), one that does as the layer the unpacker refused.
 */
async function downloadAndUnpack(
  chain: SourceChain,
  store: Store,
  desc: Descriptor,
  dest: string,
  listener: TransferListener,
  context: string,
): Promise<UnpackJobResult> {
  const unpack = store.unpackStream(dest);
  const unpacker = new UnpackFeed(unpack);
  let fed = 0;
  const feed = async (chunk: Buffer): Promise<void> => {
    await unpacker.write(chunk);
    fed += chunk.length;
    // The last byte is in: the unpacker can finish while the blob is verified and synced (its
    // fsync must not wait for an unpacker that waits for the end of its input).
    if (fed === desc.size) unpacker.end();
  };
  const download = downloadBlob(chain, store, desc, listener, context, feed).then(
    () => unpacker.end(), // (an empty blob)
    (err: unknown) => {
      unpacker.abort();
      throw err;
    },
  );
  const [downloaded, unpacked] = await Promise.allSettled([download, unpacker.result]);
  if (downloaded.status === "rejected") throw downloaded.reason;
  if (unpacked.status === "rejected") throw unpacked.reason;
  return unpacked.value;
}

/** An image config from the registry, verified against its digest. */
async function fetchConfig(client: RegistryClient, repo: string, desc: Descriptor, context: string): Promise<Buffer> {
  const res = await client.request("GET", `${repo}/blobs/${desc.digest}`, { context: `${context}: config` });
  const bytes = await readBody(res.body, MAX_CONFIG_BYTES, `${context}: config`);
  if (sha256(bytes) !== desc.digest) {
    throw new RegistryError(`${context}: config digest mismatch: expected ${desc.digest}, got ${sha256(bytes)} (the registry sent corrupted data)`);
  }
  return bytes;
}

function parseConfig(bytes: Buffer, context: string): ImageConfig {
  try {
    return JSON.parse(bytes.toString("utf8")) as ImageConfig;
  } catch (err) {
    throw new RegistryError(`${context}: the image config is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Pulls a name: a short name goes through registries.conf's aliases and search registries
 * (short-names.ts), each candidate tried in order until one can be pulled, as Podman does.
 */
export async function pullImage(store: Store, opts: PullOptions): Promise<PullResult> {
  const input = opts.reference.replace(/^docker:\/\//, "");
  const ref = parseUserReference(input);
  const want: Platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const listener = opts.listener ?? silentListener;
  const short = !hasRegistry(input);
  const conf = loadRegistriesConfig(process.env, short);
  let resolution;
  try {
    resolution = short ? await resolveShortName(input, conf.shortNames, opts.selectCandidate) : { candidates: [ref] };
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(`pull ${input}: ${err.message}`);
    throw err;
  }
  if (resolution.description) listener.message(resolution.description);
  const failures: string[] = [];
  for (const candidate of resolution.candidates) {
    try {
      const result = await pullReference(store, candidate, conf.entries, want, opts, listener);
      if (resolution.record) recordAlias(resolution.record, repositoryName(candidate));
      return result;
    } catch (err) {
      // Only what the registry said (or that registries.conf blocks it) moves on to the next
      // candidate; a local problem (the store, the disk, a bad auth file) would be the same for
      // every one.
      const candidateFailed = err instanceof RegistryError || err instanceof BlockedRegistryError;
      if (resolution.candidates.length === 1 || !candidateFailed) throw err;
      failures.push(err.message);
    }
  }
  throw new RegistryError(`pull ${input}: no candidate could be pulled: ${failures.join("; ")}`);
}

async function pullReference(store: Store, ref: Reference, entries: RegistryEntry[], want: Platform, opts: PullOptions, listener: TransferListener): Promise<PullResult> {
  const name = formatReference(ref);
  const context = `pull ${name}`;
  const sources = pullSources(entries, ref);
  listener.message(`Trying to pull ${name}...`);
  const chain = new SourceChain(sources, opts);
  const temps: string[] = [];
  let lease: Lease | undefined;
  try {
    let top = await chain.openFirst(context, ({ client, path }) => fetchManifest(client, path, ref.digest ?? ref.tag ?? "latest", context));
    let indexDigest: string | undefined;
    if (top.kind === "index") {
      indexDigest = top.digest;
      const index = JSON.parse(top.bytes.toString("utf8")) as ImageIndexDoc;
      top = await resolvePlatform(
        index,
        want,
        {
          fetch: (desc) => chain.read(context, ({ client, path }) => fetchManifest(client, path, desc.digest, context)),
          configPlatform: async (manifest) => {
            checkImageManifest(manifest, context);
            const config = parseConfig(await chain.read(context, ({ client, path }) => fetchConfig(client, path, manifest.config, context)), context);
            const platform: Platform = { os: String(config.os ?? "unknown"), architecture: String(config.architecture ?? "unknown") };
            if (typeof config.variant === "string") platform.variant = config.variant;
            return platform;
          },
        },
        context,
      );
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
      configBytes = await chain.read(context, ({ client, path }) => fetchConfig(client, path, configDesc, context));
      listener.blobDone(configDesc.digest, "done");
    }
    const config = parseConfig(configBytes, context);
    const diffIds = config.rootfs?.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) {
      throw new RegistryError(`${context}: the config lists ${Array.isArray(diffIds) ? diffIds.length : 0} layer diff IDs but the manifest has ${manifest.layers.length} layers`);
    }
    const declared = config.os && config.architecture ? { os: String(config.os), architecture: String(config.architecture), ...(typeof config.variant === "string" ? { variant: config.variant } : {}) } : undefined;
    if (!indexDigest && declared && platformRank(declared, want) < 0) {
      process.stderr.write(`tsrun: warning: image platform (${formatPlatform(config)}) does not match the expected platform (${formatPlatform(want)})\n`);
    }
    const chains = chainIds(diffIds);
    const leased = lease;
    await store.lock(() => leased.add({ images: [configDesc.digest], layers: chains }));

    // Layers. Each blob the store lacks is downloaded once (even if listed twice) and, when its
    // chain is not unpacked yet, unpacked as it arrives; blobs already stored are unpacked from
    // disk. Every layer gets its own unpacker, a few at a time: they run in parallel.
    const needsUnpack = manifest.layers.map((_, i) => !store.layers.has(chains[i] as string));
    const tasks = new Map<string, { desc: Descriptor; download: boolean; indexes: number[] }>();
    for (const [i, layer] of manifest.layers.entries()) {
      let task = tasks.get(layer.digest);
      if (!task) {
        listener.blobStart("blob", layer.digest, layer.size);
        const download = !store.blobs.has(layer.digest);
        if (!download) listener.blobDone(layer.digest, "skipped: already exists");
        task = { desc: layer, download, indexes: [] };
        tasks.set(layer.digest, task);
      }
      if (needsUnpack[i]) task.indexes.push(i);
    }
    const unpacked = new Map<number, { size: number; dest: string }>();
    const check = async (index: number, r: UnpackJobResult, dest: string): Promise<void> => {
      const layer = manifest.layers[index] as Descriptor;
      for (const w of r.warnings) process.stderr.write(`tsrun: warning: ${w}\n`);
      if (r.compressedDigest !== undefined && r.compressedDigest !== layer.digest) throw new RegistryError(`${context}: layer ${layer.digest} changed on disk while unpacking (got ${r.compressedDigest})`);
      // The blob's digest was verified; the uncompressed content must be what the config says,
      // or that tar without some of its end padding (a zstd:chunked blob: compression.ts), which
      // the stored blob, hashed again, tells.
      let size = r.size;
      if (r.diffId !== diffIds[index]) {
        const again = await uncompressedDigest(store.blobs.path(layer.digest), `layer ${layer.digest}`, diffIds[index]);
        if (again.digest !== diffIds[index]) {
          throw new RegistryError(`${context}: layer ${layer.digest}: diff ID mismatch: the config says ${diffIds[index]}, the content is ${r.diffId}`);
        }
        size = again.size;
      }
      unpacked.set(index, { size, dest });
    };
    const newTemp = (): string => {
      const dest = store.layers.createTemp();
      temps.push(dest);
      return dest;
    };
    await mapLimit([...tasks.values()], PARALLEL_DOWNLOADS, async ({ desc, download, indexes }) => {
      let fromFile = indexes;
      if (download) {
        const first = indexes[0];
        if (first === undefined) {
          await downloadBlob(chain, store, desc, listener, context);
        } else {
          const dest = newTemp();
          await check(first, await downloadAndUnpack(chain, store, desc, dest, listener, context), dest);
          fromFile = indexes.slice(1);
        }
        listener.blobDone(desc.digest, "done");
        faultPoint("pull:blob-downloaded");
      }
      // The same blob at another position of the stack (rare): unpacked again from the store.
      for (const index of fromFile) {
        const dest = newTemp();
        const [r] = await store.unpack([{ blob: store.blobs.path(desc.digest), dest }]);
        if (!r) throw new RegistryError(`${context}: no unpack result for layer ${desc.digest}`);
        await check(index, r, dest);
      }
    });
    faultPoint("pull:unpacked");
    listener.message("Writing manifest to image destination");
    listener.finish();

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
    chain.close();
    await store.removeTrees(temps).catch(() => undefined);
    lease?.release();
  }
}
