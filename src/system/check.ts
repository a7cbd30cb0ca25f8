// `system check [--repair] [--force] [--quick]`: the store's consistency, as Podman's `system
// check` reports it for its storage. Under the store lock (no operation is between two steps
// meanwhile), it looks at:
//  - blobs: every one hashes to its name (layer blobs skipped with --quick);
//  - layers: every image's and container's chain has its dir, with layer.json and a short link;
//  - images: config and manifest present and intact, consistent with the record (diff IDs,
//    layer digests, chain IDs), names unique;
//  - containers: a readable record, its image, its layers, upper and work dirs, its volumes, its
//    name link;
//  - volumes: a readable volume.json and a data dir;
//  - the build cache: build-cache.json readable, every entry's layers and blobs present and
//    intact, its chain IDs those of its diff IDs;
//  - leftovers of killed operations: temporaries, dead leases, half-made dirs, stale links;
//  - what nothing refers to (reclaimable: reported, not a problem: a killed pull's downloads
//    are kept for the next pull).
// --repair removes leftovers, recreates short links and name links, unpacks missing layer dirs
// again from their blobs, rewrites an unreadable volume.json, removes images that stay damaged
// (unless a container uses them: --force removes such containers too), drops damaged build cache
// entries (an unreadable index: the whole cache; the next build runs those steps again) and
// removes what nothing refers to.
import { existsSync, readFileSync, readlinkSync, statSync, symlinkSync } from "node:fs";
import path from "node:path";
import type { Containers } from "../container/run.js";
import type { ContainerRecord } from "../container/records.js";
import type { ImageRecord, LayerRecord } from "../store/images.js";
import type { Store } from "../store/store.js";
import type { ImageConfig, Manifest } from "../image/types.js";
import { chainIds, digestHex, isDigest } from "../store/digest.js";
import { staleTemps, layerLeftovers, type Leftover } from "../store/recovery.js";
import { containerLeftovers, orphanIntermediates } from "../container/recovery.js";
import { isWellFormed } from "../store/build-cache.js";
import { describeOperation, type InUse } from "../store/leases.js";
import { detachGarbage, liveReferences, unreferenced } from "../image/gc.js";
import { writeJsonAtomic, type HeldLock } from "../store/atomic.js";
import { familiarName } from "../image/inspect.js";
import { uncompressedDigest } from "../image/archive/compression.js";
import { removeFile } from "../remove-file.js";

export interface CheckOptions {
  /** Fix what can be fixed (see the top of this file). */
  repair?: boolean;
  /** With repair: also remove containers whose image or layers are damaged beyond repair. */
  force?: boolean;
  /** Skip hashing layer blobs (the slow part). */
  quick?: boolean;
}

export type FindingKind = "damaged" | "leftover";

export interface Finding {
  kind: FindingKind;
  /** "image sha256:0123456789ab (busybox:latest)", "container 0123456789ab (web)", a path... */
  subject: string;
  problem: string;
  /** What --repair did about it. */
  repaired?: string;
  /** Why --repair could not fix it. */
  unrepaired?: string;
}

export interface CheckReport {
  /** True when no damage and no leftover remains (after repairs, with --repair). */
  ok: boolean;
  findings: Finding[];
  /** Complete blobs and layers nothing refers to, and their size. */
  reclaimable: { blobs: number; layers: number; bytes: number; removed: boolean };
  /** Operations running meanwhile (their temporaries are theirs, not leftovers). */
  inProgress: string[];
  checked: { images: number; containers: number; volumes: number; layers: number; blobs: number; buildCache: number };
}

/** What one pass over the store found, in a shape the repairs can act on. */
interface Inspection {
  findings: Finding[];
  leftovers: Leftover[];
  deadLeases: string[];
  /** Layers whose short link is missing or wrong. */
  badLinks: string[];
  /** Missing or incomplete layer dirs, with an image layer record to unpack them from. */
  missingLayers: Map<string, MissingLayer>;
  damagedImages: Map<string, Finding[]>;
  damagedContainers: Map<string, Finding[]>;
  /** Container dirs whose record cannot be read (removed by repair with force). */
  unreadableContainers: Map<string, Finding>;
  /** Volumes whose volume.json is unreadable (rewritten by repair). */
  badVolumeRecords: string[];
  /** build-cache.json exists but is no index (removed by repair). */
  cacheIndexDamaged: boolean;
  /** Build cache entries, by key, whose layers or blobs are missing or wrong (dropped by repair). */
  damagedCacheEntries: Map<string, Finding[]>;
  unreferenced: { layers: string[]; blobs: string[]; bytes: number };
  /** False when images/index.json cannot be read: then nothing can be known to be unreferenced. */
  indexReadable: boolean;
  inUse: InUse;
  checked: CheckReport["checked"];
}

interface MissingLayer {
  layer: LayerRecord;
  parent: string | null;
}

const shortHex = (digest: string): string => digestHex(digest).slice(0, 12);

function describeImage(image: ImageRecord): string {
  const name = image.names[0] ? ` (${familiarName(image.names[0])})` : "";
  return `image ${isDigest(image.id) ? `sha256:${shortHex(image.id)}` : JSON.stringify(image.id)}${name}`;
}

const describeContainer = (c: ContainerRecord): string => `container ${c.id.slice(0, 12)} (${c.name})`;

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

async function inspectStore(containers: Containers, quick: boolean): Promise<Inspection> {
  const store = containers.store;
  const findings: Finding[] = [];
  const found = (f: Finding): Finding => (findings.push(f), f);
  const blobOk = new Map<string, boolean>();
  /** Whether a blob is there and intact (large ones only present with quick). */
  const blobState = async (digest: string, large: boolean): Promise<"ok" | "missing" | "corrupt"> => {
    if (!isDigest(digest) || !store.blobs.has(digest)) return "missing";
    if (large && quick) return "ok";
    let ok = blobOk.get(digest);
    if (ok === undefined) {
      ok = large ? await store.blobs.verify(digest) : store.blobs.hasIntact(digest);
      blobOk.set(digest, ok);
    }
    return ok ? "ok" : "corrupt";
  };

  // Operations in flight and those that were killed. Leases first, then containers (see gc.ts).
  const inUse = store.leases.inUse();
  const deadLeases = store.leases.dead();
  for (const l of deadLeases) {
    found({ kind: "leftover", subject: path.relative(store.paths.root, l.file), problem: l.record ? `record of an interrupted operation: ${describeOperation(l.record)}` : "unreadable operation record" });
  }
  const leftovers = [...staleTemps(store.paths), ...layerLeftovers(store.layers), ...containerLeftovers(containers.records, containers.volumes.dir, inUse.containers)];
  for (const l of leftovers) found({ kind: "leftover", subject: path.relative(store.paths.root, l.path), problem: l.what });

  // Layers referenced by images and containers.
  const badLinks: string[] = [];
  const missingLayers = new Map<string, MissingLayer>();
  const layerProblem = new Map<string, string | undefined>();
  const checkLayer = (chainId: string, source: MissingLayer | undefined): string | undefined => {
    if (layerProblem.has(chainId)) return layerProblem.get(chainId);
    let problem: string | undefined;
    if (!isDigest(chainId)) problem = `malformed layer chain ID ${JSON.stringify(chainId)}`;
    else if (!store.layers.has(chainId)) problem = `layer ${chainId} is missing`;
    else {
      const meta = readJson<{ chainId?: string; link?: string }>(path.join(store.layers.layerDir(chainId), "layer.json"));
      if (!meta || meta.chainId !== chainId || typeof meta.link !== "string") problem = `layer ${chainId} has an unreadable or foreign layer.json`;
      else if (!existsSync(store.layers.diffDir(chainId))) problem = `layer ${chainId} has no diff dir`;
      else {
        let target: string | undefined;
        try {
          target = readlinkSync(path.join(store.layers.linkDir, meta.link));
        } catch {
          target = undefined;
        }
        if (target !== store.layers.linkTarget(chainId)) {
          badLinks.push(chainId);
          found({ kind: "damaged", subject: `layer ${chainId}`, problem: `its short link l/${meta.link} is ${target === undefined ? "missing" : `wrong (${target})`}` });
        }
      }
    }
    if (problem && isDigest(chainId) && source && !missingLayers.has(chainId)) missingLayers.set(chainId, source);
    layerProblem.set(chainId, problem);
    return problem;
  };

  // Images.
  const damagedImages = new Map<string, Finding[]>();
  let images: ImageRecord[] = [];
  let indexReadable = true;
  try {
    images = store.images.list();
  } catch (err) {
    indexReadable = false;
    found({ kind: "damaged", subject: "image index", problem: (err as Error).message, unrepaired: "restore images/index.json from a backup, or remove it to start with no images" });
  }
  const nameOwner = new Map<string, ImageRecord>();
  for (const image of images) {
    const problems: string[] = [];
    if (!isDigest(image.id)) problems.push("malformed image ID");
    for (const n of image.names ?? []) {
      const other = nameOwner.get(n);
      if (other) problems.push(`name ${familiarName(n)} also names ${describeImage(other)}`);
      else nameOwner.set(n, image);
    }
    const configState = await blobState(image.id, false);
    let config: ImageConfig | undefined;
    if (configState !== "ok") problems.push(`config blob ${configState}`);
    else {
      config = readJson<ImageConfig>(store.blobs.path(image.id));
      if (!config || !Array.isArray(config.rootfs?.diff_ids)) problems.push("config is not an image config");
    }
    const layers = Array.isArray(image.layers) ? image.layers : [];
    if (!Array.isArray(image.layers)) problems.push("record has no layer list");
    if (config?.rootfs && Array.isArray(config.rootfs.diff_ids)) {
      const diffIds = layers.map((l) => l.diffId);
      if (diffIds.join(" ") !== config.rootfs.diff_ids.join(" ")) problems.push("layers differ from the config's diff IDs");
    }
    const expectedChains = chainIds(layers.map((l) => l.diffId));
    layers.forEach((l, i) => {
      if (l.chainId !== expectedChains[i]) problems.push(`layer ${i + 1} has chain ID ${l.chainId}, expected ${expectedChains[i]}`);
    });
    const manifestState = await blobState(image.manifest, false);
    if (manifestState !== "ok") problems.push(`manifest blob ${manifestState}`);
    else {
      const manifest = readJson<Manifest>(store.blobs.path(image.manifest));
      if (!manifest?.config || manifest.config.digest !== image.id) problems.push("manifest does not describe this image's config");
      else if (!Array.isArray(manifest.layers) || manifest.layers.map((l) => l.digest).join(" ") !== layers.map((l) => l.digest).join(" ")) {
        problems.push("manifest lists other layer blobs than the record");
      }
    }
    for (const [i, l] of layers.entries()) {
      const state = await blobState(l.digest, true);
      if (state !== "ok") problems.push(`layer blob ${l.digest} ${state}`);
      const p = checkLayer(l.chainId, state === "ok" ? { layer: l, parent: layers[i - 1]?.chainId ?? null } : undefined);
      if (p) problems.push(p);
    }
    if (problems.length > 0) damagedImages.set(image.id, problems.map((p) => found({ kind: "damaged", subject: describeImage(image), problem: p })));
  }

  // Containers.
  const damagedContainers = new Map<string, Finding[]>();
  const all = containers.list();
  const names = containers.records.nameLinks();
  const byId = new Map(images.map((i) => [i.id, i]));
  // Intermediate containers of killed builds are leftovers (reported above), not containers.
  const orphans = new Set(orphanIntermediates(containers.records, inUse.containers).map((c) => c.id));
  for (const c of all) {
    if (orphans.has(c.id)) continue;
    const problems: string[] = [];
    const image = byId.get(c.image);
    // A build's container runs on the build's layers, not on an image (FROM scratch has none).
    if (!image && !c.intermediate) problems.push(`its image ${c.image} is not in the store`);
    const imageLayers = new Map((image?.layers ?? []).map((l, i, list) => [l.chainId, { layer: l, parent: list[i - 1]?.chainId ?? null }]));
    for (const chain of c.layers ?? []) {
      const p = checkLayer(chain, imageLayers.get(chain));
      if (p) problems.push(p);
    }
    const dir = containers.records.containerDir(c.id);
    for (const sub of ["upper", "work"]) if (!existsSync(path.join(dir, sub))) problems.push(`its ${sub} dir is missing`);
    for (const m of c.hostConfig?.mounts ?? []) {
      if (m.type === "volume" && !containers.volumes.exists(m.source)) problems.push(`its volume ${m.source} is missing`);
    }
    if (names.get(c.name) !== c.id) problems.push(names.has(c.name) ? `its name "${c.name}" belongs to ${names.get(c.name)?.slice(0, 12)}` : `its name link "${c.name}" is missing`);
    if (problems.length > 0) damagedContainers.set(c.id, problems.map((p) => found({ kind: "damaged", subject: describeContainer(c), problem: p })));
  }
  // Records that cannot be read at all.
  const unreadableContainers = new Map<string, Finding>();
  for (const id of containers.records.ids()) {
    if (!all.some((c) => c.id === id)) unreadableContainers.set(id, found({ kind: "damaged", subject: `container ${id.slice(0, 12)}`, problem: "its record is unreadable" }));
  }

  // Volumes.
  const badVolumeRecords: string[] = [];
  const volumeNames = containers.volumes.names();
  for (const Name of volumeNames) {
    const record = readJson<{ Name?: string }>(path.join(containers.volumes.dir, Name, "volume.json"));
    if (!record || record.Name !== Name) {
      badVolumeRecords.push(Name);
      found({ kind: "damaged", subject: `volume ${Name}`, problem: "volume.json is unreadable or names another volume" });
    }
    if (!existsSync(containers.volumes.dataDir(Name))) found({ kind: "damaged", subject: `volume ${Name}`, problem: "its _data dir is missing", unrepaired: "remove it with tsrun volume rm" });
  }

  // The build cache: an entry is usable only with all its layers (a hit starts no step).
  const cache = store.buildCache.read();
  if (cache.error) found({ kind: "damaged", subject: "build cache index", problem: cache.error });
  const damagedCacheEntries = new Map<string, Finding[]>();
  for (const [key, entry] of cache.entries) {
    const problems: string[] = [];
    if (!isWellFormed(entry)) problems.push("malformed entry");
    else {
      const expected = chainIds(entry.layers.map((l) => l.diffId));
      entry.layers.forEach((l, i) => {
        if (l.chainId !== expected[i]) problems.push(`layer ${i + 1} has chain ID ${l.chainId}, expected ${expected[i]}`);
      });
      for (const l of entry.layers) {
        const state = await blobState(l.digest, true);
        if (state !== "ok") problems.push(`layer blob ${l.digest} ${state}`);
        // No source to unpack from: a cache entry is dropped, not restored (an image's layer is).
        const p = checkLayer(l.chainId, undefined);
        if (p) problems.push(p);
      }
    }
    const subject = `build cache entry ${shortHex(key)}`;
    if (problems.length > 0) damagedCacheEntries.set(key, [...new Set(problems)].map((p) => found({ kind: "damaged", subject, problem: p })));
  }

  // What nothing refers to.
  const garbage = indexReadable ? unreferenced(store, liveReferences(images, all, inUse, store.buildCache.load().values())) : { layers: [], blobs: [] };
  let bytes = 0;
  for (const b of garbage.blobs) bytes += sizeOf(store.blobs.path(b));
  for (const l of garbage.layers) {
    try {
      bytes += store.layers.meta(l).size;
    } catch {
      // Incomplete: reported as a leftover already.
    }
  }
  return {
    findings,
    leftovers,
    deadLeases: deadLeases.map((l) => l.file),
    badLinks,
    missingLayers,
    damagedImages,
    damagedContainers,
    unreadableContainers,
    badVolumeRecords,
    cacheIndexDamaged: cache.error !== undefined,
    damagedCacheEntries,
    unreferenced: { ...garbage, bytes },
    indexReadable,
    inUse,
    checked: { images: images.length, containers: all.length, volumes: volumeNames.length, layers: store.layers.list().length, blobs: store.blobs.list().length, buildCache: cache.entries.size },
  };
}

/** Unpacks missing layer dirs again from their (intact) blobs, under the check's lock (held). Returns the chains restored. */
async function restoreLayers(store: Store, missing: Map<string, MissingLayer>, held: HeldLock): Promise<Set<string>> {
  const restored = new Set<string>();
  const jobs = [...missing.values()].map((m) => ({ layer: m.layer, parent: m.parent, dest: store.layers.createTemp() }));
  if (jobs.length === 0) return restored;
  try {
    const results = await store.unpack(jobs.map((j) => ({ blob: store.blobs.path(j.layer.digest), dest: j.dest })));
    // The size of the tar each diff_id names, for the layers that unpacked to it: their own, or
    // that tar without some of its end padding (a zstd:chunked blob: compression.ts).
    const sizes: (number | undefined)[] = [];
    for (const [i, job] of jobs.entries()) {
      const r = results[i];
      if (r?.diffId === job.layer.diffId) sizes.push(r.size);
      else if (!r) sizes.push(undefined);
      else {
        const again = await uncompressedDigest(store.blobs.path(job.layer.digest), `layer ${job.layer.digest}`, job.layer.diffId);
        sizes.push(again.digest === job.layer.diffId ? again.size : undefined);
      }
    }
    await store.transact(async (tx) => {
      for (const [i, job] of jobs.entries()) {
        const size = sizes[i];
        if (size === undefined) continue;
        // An incomplete dir under the final name is detached by commitLayer.
        await tx.commitLayer(job.dest, { chainId: job.layer.chainId, diffId: job.layer.diffId, parent: job.parent, size });
        restored.add(job.layer.chainId);
      }
    }, held);
  } catch {
    // A blob that does not unpack: the images using it stay damaged and are removed below.
  } finally {
    await store.removeTrees(jobs.map((j) => j.dest)).catch(() => undefined);
  }
  return restored;
}

async function repairStore(containers: Containers, found: Inspection, opts: CheckOptions, held: HeldLock): Promise<void> {
  const store = containers.store;
  const mark = (findings: Finding[] | undefined, repaired: string): void => {
    for (const f of findings ?? []) f.repaired ??= repaired;
  };
  // Leftovers and dead leases.
  await store.removeLeftovers(found.leftovers);
  for (const f of found.findings) if (f.kind === "leftover") f.repaired = "removed";
  for (const file of found.deadLeases) removeFile(file);

  // Short links.
  for (const chainId of found.badLinks) {
    const meta = store.layers.meta(chainId);
    const link = path.join(store.layers.linkDir, meta.link);
    removeFile(link);
    symlinkSync(store.layers.linkTarget(chainId), link);
  }
  for (const f of found.findings) if (f.subject.startsWith("layer ") && f.problem.includes("short link")) f.repaired = "link recreated";

  // Missing layer dirs, unpacked again from their blobs.
  const restored = await restoreLayers(store, found.missingLayers, held);
  for (const f of found.findings) {
    const m = /^layer (sha256:[a-f0-9]{64}) (is missing|has)/.exec(f.problem);
    if (m && restored.has(m[1] as string)) f.repaired = "unpacked again from its blob";
  }

  // Volume records.
  for (const name of found.badVolumeRecords) {
    writeJsonAtomic(path.join(containers.volumes.dir, name, "volume.json"), {
      Name: name,
      Driver: "local",
      Mountpoint: containers.volumes.dataDir(name),
      CreatedAt: new Date().toISOString(),
      Labels: {},
      Scope: "local",
      Options: {},
      Anonymous: /^[a-f0-9]{64}$/.test(name),
    });
    mark(found.findings.filter((f) => f.subject === `volume ${name}` && f.problem.startsWith("volume.json")), "volume.json rewritten");
  }

  // Name links of containers whose name is free.
  const links = containers.records.nameLinks();
  for (const [id, findings] of found.damagedContainers) {
    for (const f of findings) {
      const m = /^its name link "(.*)" is missing$/.exec(f.problem);
      if (m && !links.has(m[1] as string)) {
        symlinkSync(id, path.join(containers.records.dir, "names", m[1] as string));
        f.repaired = "name link recreated";
      }
    }
  }

  // The build cache index, when unreadable, goes whole: the cache only saves time.
  if (found.cacheIndexDamaged) {
    removeFile(store.buildCache.file);
    mark(found.findings.filter((f) => f.subject === "build cache index"), "removed: the next build runs its steps again");
  }

  // Without a readable image index every layer would look unused: nothing more is removed.
  if (!found.indexReadable) return;

  // What is still damaged: images, unless a container uses them; with force, the containers that
  // are damaged or use a damaged image go first (as Podman's --force).
  const again = await inspectStore(containers, opts.quick ?? false);
  const all = containers.list();
  const doomedContainers = new Set<string>(opts.force ? again.damagedContainers.keys() : []);
  if (opts.force) for (const c of all) if (again.damagedImages.has(c.image)) doomedContainers.add(c.id);
  for (const c of all.filter((x) => doomedContainers.has(x.id))) {
    await containers.remove(c, { held });
    mark(found.damagedContainers.get(c.id), "container removed");
  }
  for (const [id, finding] of again.unreadableContainers) {
    const reported = found.findings.filter((f) => f.subject === finding.subject && f.problem === finding.problem);
    if (!opts.force) {
      for (const f of reported) f.unrepaired = "--force removes the container";
      continue;
    }
    await store.removeTree(containers.records.detach(id));
    mark(reported, "container removed");
  }
  const kept = all.filter((c) => !doomedContainers.has(c.id));
  for (const [id, findings] of found.damagedContainers) {
    if (!doomedContainers.has(id)) for (const f of findings) if (!f.repaired) f.unrepaired ??= "--force removes the container";
  }
  const imagesNow = store.images.list();
  const doomedImages: ImageRecord[] = [];
  for (const image of imagesNow.filter((i) => again.damagedImages.has(i.id))) {
    const user = kept.find((c) => c.image === image.id);
    if (!user) doomedImages.push(image);
    else for (const f of found.damagedImages.get(image.id) ?? []) if (!f.repaired) f.unrepaired = `used by ${describeContainer(user)}: --force removes that container too`;
  }
  if (doomedImages.length > 0) {
    store.images.save(imagesNow.filter((i) => !doomedImages.includes(i)));
    for (const i of doomedImages) mark(found.damagedImages.get(i.id), "image removed");
  }

  // Cache entries still damaged (a layer restored for an image repaired some): dropped.
  if (again.damagedCacheEntries.size > 0) {
    const { entries } = store.buildCache.read();
    for (const key of again.damagedCacheEntries.keys()) entries.delete(key);
    store.buildCache.save(entries);
    for (const key of again.damagedCacheEntries.keys()) mark(found.damagedCacheEntries.get(key), "entry dropped");
  }

  // Corrupt blobs nothing uses any more, and everything else nothing refers to.
  const detached = detachGarbage(store, liveReferences(store.images.list(), containers.list(), store.leases.inUse(), store.buildCache.load().values()));
  await store.removeTrees(detached.dirs);
}

export async function checkStore(containers: Containers, opts: CheckOptions = {}): Promise<CheckReport> {
  const store = containers.store;
  return store.lock(async (held) => {
    const first = await inspectStore(containers, opts.quick ?? false);
    const reclaimable = { blobs: first.unreferenced.blobs.length, layers: first.unreferenced.layers.length, bytes: first.unreferenced.bytes, removed: false };
    let final = first;
    if (opts.repair) {
      await repairStore(containers, first, opts, held);
      final = await inspectStore(containers, opts.quick ?? false);
      reclaimable.removed = true;
      // Whatever the second look still sees was not repaired.
      const remaining = new Set(final.findings.map((f) => `${f.subject}\n${f.problem}`));
      for (const f of first.findings) {
        if (remaining.has(`${f.subject}\n${f.problem}`)) {
          delete f.repaired;
          f.unrepaired ??= "could not be repaired";
        } else f.repaired ??= "repaired";
      }
      for (const f of final.findings) if (!first.findings.some((g) => g.subject === f.subject && g.problem === f.problem)) first.findings.push({ ...f, unrepaired: f.unrepaired ?? "appeared during the repair" });
    }
    const ok = first.findings.every((f) => f.repaired !== undefined);
    return {
      ok,
      findings: first.findings,
      reclaimable,
      inProgress: first.inUse.operations.filter((o) => o.pid !== process.pid).map(describeOperation),
      checked: final.checked,
    };
  });
}
