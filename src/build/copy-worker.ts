// The storage worker's side of COPY and ADD: writes the layer a copy makes, as a tar (entries in
// name order, numeric owners, times clamped to SOURCE_DATE_EPOCH), then unpacks that tar into
// the new layer dir with the layer unpacker, so layer dirs have one code path and the layer is
// exactly what its digest names.
//
// It runs inside the user namespace (root over the subordinate ids): another stage's files may
// belong to any of them, and the layer's owners must be set. The destination is resolved in the
// merged view of the stage's layers (mounted read-only in this worker's own mount namespace), so
// a symlink on the way is followed inside the image, and the directories above the copy keep
// their owner, mode and time in the layer (overlay shows a directory's attributes from the
// topmost layer that has it).
import { closeSync, createReadStream, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { Readable } from "node:stream";
import { constants } from "node:fs";
import { native, MS, type RawStat } from "../native.js";
import { encodeFileName } from "../store/file-names.js";
import { TarWriter, type TarEntry } from "../store/pack.js";
import { unpackLayer } from "../store/unpack.js";
import { withDecompressed } from "../image/archive/compression.js";
import { IgnoreMatcher } from "./path-patterns.js";
import { isTarHeader } from "./tar-detect.js";
import { applyChmod, type ModeChange } from "./file-mode.js";
import { SourceTree, SourceNotFoundError, fileType, isDirectory, ST_DEV, ST_GID, ST_INO, ST_MODE, ST_MTIME, ST_NLINK, ST_SIZE, ST_UID, type SelectedMatch } from "./source-tree.js";

const { S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO } = constants;

/** Files from a tree: the build context, or the layers of a stage or image. */
export interface CopyTreeSource {
  kind: "tree";
  /** A directory (the context), or layer dirs relative to the store root, topmost first. */
  root: { dir: string } | { layers: string[] };
  /** .dockerignore patterns (context trees only). */
  ignore: string[];
  /** --exclude patterns, relative to each source. */
  exclude?: string[];
  /** COPY --parents. */
  parents?: boolean;
  /** The sources as written in the instruction (wildcards allowed). */
  paths: string[];
  /** COPY --from keeps the files' owners; from the context they become 0:0. */
  keepOwners: boolean;
  /** ADD: local tar archives (plain, gzip, bzip2, xz, zstd) are unpacked at the destination. */
  extractArchives: boolean;
}

/** One file tsrun prepared: a heredoc's body, a download. */
export interface CopyFileSource {
  kind: "file";
  path: string;
  /** Its name in the destination directory. */
  name: string;
  mode: number;
  mtime: number;
  /** ADD --unpack=true of a URL: a tar archive is unpacked at the destination. */
  extractArchive?: boolean;
}

export type CopySource = CopyTreeSource | CopyFileSource;

export interface CopyJob {
  /** Where relative layer paths start. */
  storeRoot: string;
  /** A private empty directory for mounts and unpacked archives. */
  scratch: string;
  /** The stage's layers so far (relative to storeRoot), topmost first. */
  targetLayers: string[];
  /** Absolute destination in the image; a trailing "/" makes it a directory. */
  dest: string;
  sources: CopySource[];
  /** Several sources were written: the destination is a directory. */
  destIsDir: boolean;
  /** WORKDIR: the destination directory itself is made when missing (with its parents). */
  makeDest?: boolean;
  /** --chown, resolved to numbers. */
  owner?: { uid: number; gid: number };
  /** --chmod: an octal mode, or a symbolic one applied to each file's own mode. */
  chmod?: ModeChange;
  /** SOURCE_DATE_EPOCH: no time in the layer is later. */
  clampMtime?: number;
  /** Seconds since the epoch, for directories the copy creates. */
  now: number;
  /** The uncompressed layer tar (a new file) and a fresh layer dir (with diff/). */
  tarFile: string;
  layerDir: string;
  maxUid: number;
  maxGid: number;
}

export interface CopyResult {
  digest: string;
  size: number;
  entries: number;
  warnings: string[];
}

interface JobEnvelope {
  job: CopyJob;
  resultFile: string;
}

/** A path of the layer and where its content comes from. */
interface PlannedEntry {
  type: "directory" | "file" | "symlink" | "fifo";
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  tree?: SourceTree;
  rel?: string;
  /** A prepared file (outside any tree). */
  file?: string;
  linkTarget?: string;
  /** For a file with several names in its tree: the inode, so they stay one file (a hardlink). */
  inode?: string;
}

const WHITEOUT_PREFIX = ".wh.";

/** Podman's ignore_chown_errors, as the layer unpacker takes it (see store/worker.ts). */
const squashOwners = (): boolean => process.env.TSRUN_IGNORE_CHOWN_ERRORS === "true";

/** Path order with every directory before its contents: component by component, bytewise. */
function comparePaths(a: string, b: string): number {
  const pa = a.split("/");
  const pb = b.split("/");
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(encodeFileName(pa[i] as string), encodeFileName(pb[i] as string));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

function join(base: string, sub: string): string {
  return base === "" ? sub : sub === "" ? base : `${base}/${sub}`;
}

function overlayPath(p: string): string {
  return p.replace(/\\/g, "\\\\").replace(/,/g, "\\,").replace(/:/g, "\\:");
}

/**
 * The merged view of layer dirs: none is an empty directory, one is the layer dir itself, more
 * are mounted read-only as overlay (this worker has a mount namespace of its own).
 */
function layerView(layers: string[], storeRoot: string, mountPoint: string): string {
  mkdirSync(mountPoint, { recursive: true });
  if (layers.length === 0) return mountPoint;
  if (layers.length === 1) return path.resolve(storeRoot, layers[0] as string);
  native().mount("overlay", mountPoint, "overlay", MS.RDONLY | MS.NOSUID | MS.NODEV, `lowerdir=${layers.map(overlayPath).join(":")},userxattr`);
  return mountPoint;
}

/**
 * Unpacks a local archive into dir with the layer unpacker (owners, modes and times as the
 * archive has them). Returns false, unpacking nothing, when the file is no tar archive: ADD then
 * copies it as it is.
 */
async function unpackArchive(fd: number, dir: string, job: CopyJob, warnings: string[]): Promise<boolean> {
  let isArchive = false;
  await withDecompressed(createReadStream("", { fd, autoClose: false, start: 0 }), "the archive", async (chunks) => {
    const iterator = chunks[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let length = 0;
    while (length < 512) {
      const next = await iterator.next();
      if (next.done) break;
      head.push(next.value);
      length += next.value.length;
    }
    const first = Buffer.concat(head);
    if (!isTarHeader(first.subarray(0, 512))) {
      await iterator.return?.();
      return;
    }
    isArchive = true;
    async function* all(): AsyncGenerator<Buffer> {
      yield first;
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
    }
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    // ADD extracts plain files, as Docker's untar does: ".wh.*" names are names, not whiteouts.
    await unpackLayer(Readable.from(all()), dir, { maxUid: job.maxUid, maxGid: job.maxGid, squashUnmappedOwners: squashOwners(), whiteouts: false, onWarning: (m) => warnings.push(m) });
  }).catch((err: unknown) => {
    // A file that merely looks compressed (a .gz that is not gzip) is copied as it is.
    if (!isArchive) return;
    throw err;
  });
  return isArchive;
}

class CopyPlanner {
  readonly entries = new Map<string, PlannedEntry>();
  readonly warnings: string[] = [];
  private readonly trees: SourceTree[] = [];
  private archives = 0;

  constructor(
    private readonly job: CopyJob,
    private readonly target: SourceTree,
  ) {}

  close(): void {
    for (const t of this.trees) t.close();
  }

  private clamp(mtime: number): number {
    return this.job.clampMtime !== undefined ? Math.min(mtime, this.job.clampMtime) : mtime;
  }

  private owner(st: RawStat | undefined, keep: boolean): { uid: number; gid: number } {
    if (this.job.owner) return this.job.owner;
    return keep && st ? { uid: st[ST_UID], gid: st[ST_GID] } : { uid: 0, gid: 0 };
  }

  private add(imagePath: string, entry: PlannedEntry): void {
    const name = path.posix.basename(imagePath);
    if (name.startsWith(WHITEOUT_PREFIX)) {
      this.warnings.push(`/${imagePath}: names starting with ${WHITEOUT_PREFIX} mark deletions in layers; left out`);
      return;
    }
    this.entries.set(imagePath, entry);
  }

  /** The mode of a copied file: --chmod's, unless it comes out of an archive (BuildKit leaves those). */
  private modeOf(mode: number, isDirectory: boolean, chmod: boolean): number {
    return chmod && this.job.chmod ? applyChmod(this.job.chmod, mode, isDirectory) : mode & 0o7777;
  }

  private fromStat(st: RawStat, tree: SourceTree, rel: string, keep: boolean, chmod: boolean, linkTarget?: string): PlannedEntry | undefined {
    const { uid, gid } = this.owner(st, keep);
    const type = fileType(st);
    const mode = this.modeOf(st[ST_MODE], type === S_IFDIR, chmod);
    const common = { uid, gid, mtime: this.clamp(st[ST_MTIME]), size: 0 };
    if (type === S_IFDIR) return { ...common, type: "directory", mode };
    if (type === S_IFREG) {
      const entry: PlannedEntry = { ...common, type: "file", mode, size: st[ST_SIZE], tree, rel };
      if (st[ST_NLINK] > 1) entry.inode = `${this.trees.indexOf(tree)}:${st[ST_DEV]}:${st[ST_INO]}`;
      return entry;
    }
    // A symlink's own mode is meaningless (0777 in every tar writer).
    if (type === S_IFLNK) return { ...common, type: "symlink", mode: 0o777, linkTarget: linkTarget ?? "" };
    if (type === S_IFIFO) return { ...common, type: "fifo", mode };
    return undefined;
  }

  /** A matched directory: its contents go into destDir, which is made (0755) when missing. */
  private addDirectory(tree: SourceTree, match: SelectedMatch, destDir: string, keep: boolean, chmod: boolean): void {
    if (destDir !== "" && !this.entries.has(destDir)) {
      const st = this.target.stat(destDir);
      if (st === undefined || !isDirectory(st)) {
        this.add(destDir, { type: "directory", mode: 0o755, ...this.owner(undefined, false), mtime: this.clamp(this.job.now), size: 0 });
      }
    }
    for (const e of tree.walk(match)) {
      const planned = this.fromStat(e.st, tree, e.rel, keep, chmod, e.linkTarget);
      if (planned) this.add(join(destDir, e.sub), planned);
    }
  }

  async plan(): Promise<void> {
    const job = this.job;
    const { rel: destRel, st: destSt } = this.target.resolveForWrite(job.dest);
    const destIsDir = job.destIsDir || job.dest.endsWith("/") || (destSt !== undefined && isDirectory(destSt));
    const matchesOf: { source: CopySource; tree?: SourceTree; matches: SelectedMatch[] }[] = [];
    let count = 0;
    for (const source of job.sources) {
      if (source.kind === "file") {
        matchesOf.push({ source, matches: [] });
        count++;
        continue;
      }
      const root = "dir" in source.root ? source.root.dir : layerView(source.root.layers, job.storeRoot, path.join(job.scratch, `from-${this.trees.length}`));
      const tree = new SourceTree(root, source.ignore.length > 0 ? new IgnoreMatcher(source.ignore) : undefined);
      this.trees.push(tree);
      const matches = source.paths.flatMap((p) => {
        try {
          return tree.select(p, { parents: source.parents ?? false, exclude: source.exclude ?? [] });
        } catch (err) {
          if (err instanceof SourceNotFoundError && !("dir" in source.root)) throw new Error(`COPY ${p}: no such file or directory in the --from stage or image`);
          throw err;
        }
      });
      count += matches.length;
      matchesOf.push({ source, tree, matches });
    }
    // One source naming several files (a wildcard) copies into a directory, as BuildKit does.
    const intoDir = destIsDir || count > 1;
    for (const { source, tree, matches } of matchesOf) {
      if (source.kind === "file") {
        if (source.extractArchive && (await this.addArchive(source.path, destRel))) continue;
        const target = intoDir ? join(destRel, source.name) : destRel;
        const owner = this.owner(undefined, false);
        this.add(target, { type: "file", ...owner, mode: this.modeOf(source.mode, false, true), mtime: this.clamp(source.mtime), size: 0, file: source.path });
        continue;
      }
      if (!tree) continue;
      for (const match of matches) {
        if (isDirectory(match.st)) {
          this.addDirectory(tree, match, destRel, source.keepOwners, true);
          continue;
        }
        if (source.extractArchives && fileType(match.st) === S_IFREG && (await this.addArchive(tree.openFile(match.rel), destRel))) continue;
        const target = intoDir ? join(destRel, path.posix.basename(match.requested)) : destRel;
        if (target === "") throw new Error(`cannot copy the file ${match.requested} onto the root directory`);
        const planned = this.fromStat(match.st, tree, match.rel, source.keepOwners, true);
        if (planned) this.add(target, planned);
      }
    }
    if (job.makeDest && destRel !== "" && !this.entries.has(destRel)) {
      if (destSt !== undefined && !isDirectory(destSt)) throw new Error(`${job.dest}: not a directory`);
      if (destSt === undefined) this.add(destRel, { type: "directory", mode: 0o755, ...this.owner(undefined, false), mtime: this.clamp(job.now), size: 0 });
    }
    this.addParents();
  }

  /**
   * ADD's archive extraction: a tar archive (an open fd, or a prepared file) is unpacked and its
   * contents go into destDir, with the archive's owners and modes. False when it is no archive.
   */
  private async addArchive(file: number | string, destDir: string): Promise<boolean> {
    const dir = path.join(this.job.scratch, `archive-${this.archives++}`);
    const fd = typeof file === "number" ? file : openSync(file, "r");
    let unpacked: boolean;
    try {
      unpacked = await unpackArchive(fd, dir, this.job, this.warnings);
    } finally {
      closeSync(fd);
    }
    if (!unpacked) return false;
    const archiveTree = new SourceTree(dir);
    this.trees.push(archiveTree);
    const [rootMatch] = archiveTree.match(".");
    if (rootMatch) this.addDirectory(archiveTree, rootMatch, destDir, true, false);
    return true;
  }

  /**
   * The directories above every entry: as the image has them (owner, mode, time), or new (0755,
   * the --chown owner or root). A non-directory in the way is replaced, as unpacking a tar does.
   */
  private addParents(): void {
    for (const p of [...this.entries.keys()]) {
      for (let dir = path.posix.dirname(p); dir !== "." && dir !== "/" && !this.entries.has(dir); dir = path.posix.dirname(dir)) {
        const st = this.target.lstat(dir);
        if (st !== undefined && isDirectory(st)) {
          this.entries.set(dir, { type: "directory", mode: st[ST_MODE] & 0o7777, uid: st[ST_UID], gid: st[ST_GID], mtime: this.clamp(st[ST_MTIME]), size: 0 });
        } else {
          this.entries.set(dir, { type: "directory", mode: 0o755, ...this.owner(undefined, false), mtime: this.clamp(this.job.now), size: 0 });
        }
      }
    }
  }

  /** Writes the planned entries as one tar, in path order. */
  write(tar: TarWriter): void {
    // Names of one inode copied together stay one file: the first in path order, then hardlinks.
    const firstName = new Map<string, string>();
    for (const p of [...this.entries.keys()].sort(comparePaths)) {
      const e = this.entries.get(p) as PlannedEntry;
      const header: TarEntry = { path: e.type === "directory" ? `${p}/` : p, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, size: 0, mtime: e.mtime };
      if (e.type === "symlink") header.linkpath = e.linkTarget ?? "";
      const first = e.inode !== undefined ? firstName.get(e.inode) : undefined;
      if (first !== undefined) {
        tar.add({ ...header, type: "hardlink", linkpath: first });
        continue;
      }
      if (e.inode !== undefined) firstName.set(e.inode, p);
      if (e.type !== "file") {
        tar.add(header);
        continue;
      }
      const fd = e.file !== undefined ? openSync(e.file, "r") : (e.tree as SourceTree).openFile(e.rel as string);
      try {
        // The size now, not at planning time: a file that changed meanwhile is still whole.
        header.size = native().lstatAt(fd, "")[ST_SIZE];
        tar.add(header, fd);
      } finally {
        closeSync(fd);
      }
    }
    tar.finish();
  }
}

function writeAll(fd: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset);
}

/** `build-copy JOBFILE`: the layer of one COPY/ADD, as a tar file and a layer dir. */
export async function runCopyJob(jobFile: string): Promise<void> {
  const { job, resultFile } = JSON.parse(readFileSync(jobFile, "utf8")) as JobEnvelope;
  process.chdir(job.storeRoot);
  const target = new SourceTree(layerView(job.targetLayers, job.storeRoot, path.join(job.scratch, "target")));
  const planner = new CopyPlanner(job, target);
  const out = openSync(job.tarFile, "wx", 0o644);
  const hash = createHash("sha256");
  const tar = new TarWriter((chunk) => {
    hash.update(chunk);
    writeAll(out, chunk);
  });
  try {
    await planner.plan();
    planner.write(tar);
  } finally {
    closeSync(out);
    planner.close();
    target.close();
  }
  const digest = `sha256:${hash.digest("hex")}`;
  const warnings = planner.warnings;
  const unpacked = await unpackLayer(createReadStream(job.tarFile), path.join(job.layerDir, "diff"), {
    maxUid: job.maxUid,
    maxGid: job.maxGid,
    squashUnmappedOwners: squashOwners(),
    onWarning: (m) => warnings.push(m),
  });
  if (unpacked.diffId !== digest) throw new Error(`internal error: the copy's layer changed while it was unpacked (${unpacked.diffId} != ${digest})`);
  writeFileSync(resultFile, JSON.stringify({ digest, size: tar.bytes, entries: planner.entries.size, warnings } satisfies CopyResult));
}
