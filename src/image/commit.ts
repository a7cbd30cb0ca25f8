// `commit`: a container's changes become a new image, its parent image plus one layer.
//
// The layer is the container's overlay upper dir turned back into an OCI layer by the storage
// worker (src/store/pack.ts): whiteouts become .wh.NAME, opaque directories get .wh..wh..opq,
// owners, modes, xattrs, hardlinks, symlinks and FIFOs are kept. Only the upper dir is read, so
// the cost follows the size of the change, not of the image.
//
// The layer is stored uncompressed: its blob digest is its DiffID, and nothing spends CPU time on
// gzip for a layer that may never leave this machine (push and save compress when they need to).
// The new read-only layer dir is unpacked from that tar, so it is exactly what the digest names,
// and only when the store does not have the layer already: committing the same changes again
// (the same container twice, a rebuild) reuses the stored layer, as Podman does, and costs the
// tar alone. `cp -a` of the upper dir would also copy overlay's private xattrs and the runtime's
// mount points, which are not part of the change.

import path from "node:path";
import { tempPath } from "../store/temps.js";
import { faultPoint } from "../store/fault.js";
import type { Containers } from "../container/run.js";
import type { ContainerRecord } from "../container/records.js";
import { assignNames, type ImageRecord, type LayerRecord } from "../store/images.js";
import { makeLayerTemp } from "../store/layers.js";
import { chainIds, nextChainId, sha256 } from "../store/digest.js";
import { normaliseName, ReferenceError } from "./reference.js";
import { MEDIA, type ContainerConfig, type HistoryEntry, type ImageConfig, type Manifest } from "./types.js";
import { scanSpecFor } from "./diff.js";
import { freezeProcesses, thawProcesses } from "../container/freeze.js";
import { readLayeredFile } from "../container/rootfs-files.js";
import { parseGroup, parsePasswd, parseUserSpec, resolveUser } from "../container/spec.js";
import { currentMapping, isRemapped, maxMappedId } from "../userns.js";
import type { StoreTransaction } from "../store/transaction.js";
import { TsrunError } from "../errors.js";
import { removeFile } from "../remove-file.js";

export interface CommitOptions {
  /** Container name, ID or ID prefix. */
  container: string;
  /** REPO[:TAG] for the new image; without it the image is untagged. */
  reference?: string | undefined;
  author?: string | undefined;
  message?: string | undefined;
  /** Dockerfile instructions applied to the config (--change). */
  changes?: string[];
  /** Stop a running container's processes while its files are read (default true, as Docker). */
  pause?: boolean;
}

/** Checks a REPO[:TAG] the user gave; a digest cannot name a new image. */
export function tagName(reference: string): string {
  let name: string;
  try {
    name = normaliseName(reference);
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(err.message);
    throw err;
  }
  if (name.includes("@")) throw new TsrunError(`invalid reference format: a digest cannot be a tag: ${reference}`);
  return name;
}

function envKey(entry: string): string {
  const eq = entry.indexOf("=");
  return eq < 0 ? entry : entry.slice(0, eq);
}

/**
 * The home directory `run` put in HOME for the container's user: kept in the record since it was
 * created; for a record of an older tsrun, read from the container's passwd.
 */
function defaultHome(containers: Containers, record: ContainerRecord): string | undefined {
  if (record.config.home !== undefined) return record.config.home;
  const roots = [path.join(containers.records.containerDir(record.id), "upper"), ...[...record.layers].reverse().map((c) => containers.store.layers.diffDir(c))];
  try {
    const mapping = currentMapping();
    const user = resolveUser(
      parseUserSpec(record.config.user === "" ? "0" : record.config.user),
      parsePasswd(readLayeredFile(roots, "etc/passwd") ?? ""),
      parseGroup(readLayeredFile(roots, "etc/group") ?? ""),
      { maxUid: maxMappedId(mapping, "uid"), maxGid: maxMappedId(mapping, "gid") },
    );
    return user.home;
  } catch {
    return undefined;
  }
}

/**
 * The runtime part of the new image's config: Docker commit takes the container's own config
 * (Cmd, Entrypoint, Env, WorkingDir, User, Labels, StopSignal, Healthcheck, and the ports --expose
 * added) over the parent image's; what a container does not carry (Volumes, OnBuild, Shell) stays.
 */
export function containerConfigForCommit(record: ContainerRecord, parent: ContainerConfig, home: string | undefined): ContainerConfig {
  const c: ContainerConfig = structuredClone(parent);
  const imageKeys = new Set((parent.Env ?? []).map(envKey));
  // HOSTNAME, TERM and HOME are what `run` adds for the process; Docker adds them at start and
  // never puts them in the container's config, so they are not the image's either.
  const addedByRun = (entry: string): boolean => {
    const key = envKey(entry);
    if (imageKeys.has(key)) return false;
    const value = entry.slice(key.length + 1);
    if (key === "HOSTNAME") return value === record.config.hostname;
    if (key === "TERM") return record.config.tty && value === "xterm";
    if (key === "HOME") return home !== undefined && value === home;
    return false;
  };
  const env = record.config.env.filter((e) => !addedByRun(e));
  if (env.length > 0) c.Env = env;
  else delete c.Env;
  if (record.config.user) c.User = record.config.user;
  else delete c.User;
  if (record.config.cmd && record.config.cmd.length > 0) c.Cmd = record.config.cmd;
  else delete c.Cmd;
  if (record.config.entrypoint && record.config.entrypoint.length > 0) c.Entrypoint = record.config.entrypoint;
  else delete c.Entrypoint;
  // `run` makes "/" explicit when the image had no WORKDIR; Docker's config leaves it empty.
  if (record.config.workingDir && !(record.config.workingDir === "/" && !parent.WorkingDir)) c.WorkingDir = record.config.workingDir;
  else delete c.WorkingDir;
  if (Object.keys(record.config.labels).length > 0) c.Labels = { ...record.config.labels };
  else delete c.Labels;
  if (record.config.stopSignal && (parent.StopSignal || record.config.stopSignal !== "SIGTERM")) c.StopSignal = record.config.stopSignal;
  if (record.config.healthcheck) c.Healthcheck = record.config.healthcheck;
  if (record.config.exposedPorts && record.config.exposedPorts.length > 0) {
    c.ExposedPorts = { ...(parent.ExposedPorts ?? {}), ...Object.fromEntries(record.config.exposedPorts.map((p) => [p, {}])) };
  }
  return c;
}

/**
 * The manifest the store keeps for an image. OCI, unless the config uses what only Docker's
 * format has (HEALTHCHECK, ONBUILD, SHELL): then Docker's, as Docker keeps such images.
 */
export function manifestFor(configBytes: Buffer, configDigest: string, config: ImageConfig, layers: LayerRecord[]): Manifest {
  const c = config.config ?? {};
  const docker = c.Healthcheck !== undefined || (c.OnBuild !== undefined && c.OnBuild !== null) || c.Shell !== undefined;
  const layerType = (mediaType: string): string => {
    if (!docker) return mediaType;
    if (mediaType === MEDIA.ociLayerGzip) return MEDIA.dockerLayerGzip;
    if (mediaType === MEDIA.ociLayer) return "application/vnd.docker.image.rootfs.diff.tar";
    return mediaType;
  };
  return {
    schemaVersion: 2,
    mediaType: docker ? MEDIA.dockerManifest : MEDIA.ociManifest,
    config: { mediaType: docker ? MEDIA.dockerConfig : MEDIA.ociConfig, digest: configDigest, size: configBytes.length },
    layers: layers.map((l) => ({ mediaType: layerType(l.mediaType), digest: l.digest, size: l.size })),
  };
}

/** Stops a running container's processes for the commit; returns what lets them go on. */
function pauseForCommit(record: ContainerRecord): () => void {
  // A container the user paused stays paused.
  if (record.state.paused) return () => undefined;
  if (!freezeProcesses(record.state.pid)) return () => undefined; // it ended meanwhile
  return () => thawProcesses(record.state.pid);
}

export async function commitContainer(containers: Containers, opts: CommitOptions): Promise<ImageRecord> {
  const store = containers.store;
  // Everything the user can get wrong is checked before anything is read or written.
  const name = opts.reference ? tagName(opts.reference) : undefined;
  const record = containers.get(opts.container);
  const parent = store.images.list().find((i) => i.id === record.image);
  if (!parent) throw new TsrunError(`the image of container ${record.name} (${record.image}) is no longer in the store`);
  let parentConfig: ImageConfig;
  try {
    parentConfig = JSON.parse(store.blobs.read(parent.id).toString("utf8")) as ImageConfig;
  } catch (err) {
    throw new TsrunError(`cannot read the config of image ${parent.id}: ${(err as Error).message}`);
  }
  const committed = containerConfigForCommit(record, parentConfig.config ?? {}, defaultHome(containers, record));
  // The Dockerfile parser that reads -c/--change is loaded only for them: setting up its modules
  // is ~1 ms of a commit's start.
  const runtimeConfig = opts.changes?.length ? (await import("./config-changes.js")).applyChanges(committed, opts.changes) : committed;

  const lease = await store.begin(`commit ${record.name}`, "images");
  // Both stay under temporary names until the transaction moves them into place.
  // Made by the pack only when the store does not have the layer yet.
  let layerTmp: string | undefined = store.layers.tempName();
  const tarFile = tempPath(store.paths.blobs, "commit");
  try {
    let packed;
    const resume = record.state.status === "running" && opts.pause !== false ? pauseForCommit(record) : () => undefined;
    const userns = containers.usernsOf(record);
    const parentChainId = parent.layers.at(-1)?.chainId ?? null;
    try {
      if (isRemapped(userns)) {
        // A container with its own id mapping (keep-id) is read in that mapping, so the tar has
        // the owners it sees; the store's copy is unpacked from the tar in the store's mapping.
        packed = await store.pack({ ...scanSpecFor(containers, record), tarFile }, userns);
        if (packed.entries > 0 && !store.layers.has(nextChainId(parentChainId, packed.digest))) {
          await unpackCommitted(store, tarFile, layerTmp as string, packed.digest);
          packed.layerWritten = true;
        }
      } else {
        packed = await store.pack({ ...scanSpecFor(containers, record), tarFile, layerDir: layerTmp as string, parentChainId });
      }
    } catch (err) {
      throw new TsrunError(`commit ${opts.container}: ${(err as Error).message}`);
    } finally {
      resume();
    }
    faultPoint("commit:packed");
    for (const w of packed.warnings) process.stderr.write(`tsrun: warning: ${w}\n`);

    const now = new Date().toISOString();
    const emptyLayer = packed.entries === 0;
    const parentDiffIds = parent.layers.map((l) => l.diffId);
    const newLayer: LayerRecord | undefined = emptyLayer
      ? undefined
      : {
          diffId: packed.digest,
          chainId: chainIds([...parentDiffIds, packed.digest]).at(-1) as string,
          // Stored uncompressed: the blob is the tar itself.
          digest: packed.digest,
          mediaType: MEDIA.ociLayer,
          size: packed.size,
        };
    const layers = newLayer ? [...parent.layers, newLayer] : [...parent.layers];
    const history: HistoryEntry = { created: now, created_by: (record.config.cmd ?? []).join(" ") };
    if (opts.author) history.author = opts.author;
    if (opts.message) history.comment = opts.message;
    if (emptyLayer) history.empty_layer = true;
    const config: ImageConfig = {
      ...parentConfig,
      created: now,
      config: runtimeConfig,
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      history: [...(parentConfig.history ?? []), history],
      // Docker records the image a commit started from; `inspect` shows it as Parent.
      parent: parent.id,
    };
    if (opts.author) config.author = opts.author;
    else delete config.author;

    const layerWritten = packed.layerWritten;
    return await store.transact(async (tx) => {
      if (newLayer) {
        if (!layerWritten && !store.layers.has(newLayer.chainId)) {
          // The stored layer the pack found went away since (an rmi meanwhile): made again here.
          await unpackCommitted(store, tarFile, layerTmp as string, newLayer.diffId);
        }
        await installPackedLayer(tx, layerTmp as string, tarFile, newLayer, parentChainId);
        layerTmp = undefined;
      }
      return await recordImage(tx, config, layers, name ? [name] : [], now, "commit:blobs-stored");
    });
  } catch (err) {
    if (err instanceof TsrunError) throw err;
    throw new TsrunError(`commit ${opts.container}: ${(err as Error).message}`);
  } finally {
    removeFile(tarFile);
    if (layerTmp) await store.removeTree(layerTmp).catch(() => undefined);
    lease.release();
  }
}

/** Unpacks a committed layer's tar into a temporary layer dir (in the store's own mapping). */
async function unpackCommitted(store: Containers["store"], tarFile: string, layerTmp: string, digest: string): Promise<void> {
  const [unpacked] = await store.unpack([{ blob: tarFile, dest: makeLayerTemp(layerTmp) }]);
  if (unpacked?.diffId !== digest) throw new Error(`the layer read back as ${unpacked?.diffId ?? "nothing"}, not ${digest}`);
}

/**
 * Moves a layer the storage worker packed into the store, in a transaction: the layer dir under
 * its chain ID (dropped when the store has that chain already: theirs is kept), the tar as its
 * blob. The packer hashed every byte it wrote, so the file is the blob it names.
 */
export async function installPackedLayer(tx: StoreTransaction, layerTmp: string, tarFile: string, layer: LayerRecord, parentChainId: string | null): Promise<void> {
  await tx.commitLayer(layerTmp, { chainId: layer.chainId, diffId: layer.diffId, parent: parentChainId, size: layer.size });
  tx.publishBlob(tarFile, layer.digest);
}

/**
 * Stores an image's config and manifest and adds its record to the index, or finds the record
 * when the same config is stored already; `names` move to it (in a transaction).
 */
export async function recordImage(tx: StoreTransaction, config: ImageConfig, layers: LayerRecord[], names: string[], now: string, crashPoint?: string): Promise<ImageRecord> {
  const store = tx.store;
  const configBytes = Buffer.from(JSON.stringify(config));
  const manifestBytes = Buffer.from(JSON.stringify(manifestFor(configBytes, sha256(configBytes), config, layers)));
  let image: ImageRecord | undefined;
  await tx.putBlobsAndSaveImages(
    [{ data: configBytes }, { data: manifestBytes }],
    ([configDigest, manifestDigest]) => {
      const images = store.images.list();
      image = images.find((i) => i.id === configDigest);
      const found = image;
      const known = found !== undefined && names.every((n) => found.names.includes(n));
      if (!image) {
        image = { id: configDigest as string, names: [], manifest: manifestDigest as string, repoDigests: [], layers, added: now };
        images.push(image);
      }
      assignNames(images, image, names);
      // Nothing changed (a rebuild that hit the cache all the way): the index is not rewritten.
      return known ? undefined : images;
    },
    crashPoint ? () => faultPoint(crashPoint) : undefined,
  );
  return image as ImageRecord;
}
