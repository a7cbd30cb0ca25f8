// What a COPY or ADD takes from a tree: the build context, or another stage's or image's root
// (mounted by the storage worker). The same code selects the files on the host, to hash them for
// the cache key, and in the storage worker, to write the layer: both see the same set.
//
// Every path is resolved inside the tree's root (openat2 RESOLVE_IN_ROOT): a symlink in the
// context or in an image can never lead outside it. A source path itself is followed (in the
// root) when it is a symlink, as Docker does; what lies below a source directory is taken as it
// is, symlinks as symlinks. .dockerignore applies to context trees: an excluded source is "not
// found", excluded files below a source directory are left out (and excluded directories not
// walked unless a "!" exception may re-include something in them).
//
// COPY/ADD --exclude and COPY --parents select within a source as BuildKit does (select()): the
// patterns see paths relative to the source directory that was matched; a wildcard's matches
// are themselves excluded by their path below the wildcard's directory (`COPY --exclude=*.txt
// hom* /d/` leaves home.txt out); --parents copies from the source's root ("/", or what precedes
// a "/./" in the source) what the rest of the source names, with the directories on the way.
import { closeSync, constants, openSync, readlinkSync } from "node:fs";
import { native, type RawStat } from "../native.js";
import { listDirectory, sortByBytes } from "../store/file-names.js";
import { CopyFilter, cleanPath, compileGlob, hasWildcards, type IgnoreMatcher } from "./path-patterns.js";

const O_PATH = 0o10000000;
const { O_DIRECTORY, O_NOFOLLOW, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO } = constants;

export const ST_MODE = 0;
export const ST_UID = 1;
export const ST_GID = 2;
export const ST_SIZE = 3;
export const ST_MTIME = 4;
export const ST_NLINK = 8;
export const ST_INO = 9;
export const ST_DEV = 10;

export function fileType(st: RawStat): number {
  return st[ST_MODE] & S_IFMT;
}

export const isDirectory = (st: RawStat): boolean => fileType(st) === S_IFDIR;

/** The kinds of files a layer can carry from a tree (sockets and devices are left out). */
export function copyable(st: RawStat): boolean {
  const type = fileType(st);
  return type === S_IFDIR || type === S_IFREG || type === S_IFLNK || type === S_IFIFO;
}

/** A source that matched nothing: Docker's "not found" (the caller adds the instruction). */
export class SourceNotFoundError extends Error {
  constructor(readonly source: string) {
    super(`${source}: file not found in build context or excluded by .dockerignore`);
    this.name = "SourceNotFoundError";
  }
}

/** One matched source: where it is in the tree (no symlinks in `rel`) and what it is. */
export interface SourceMatch {
  /** The path as matched, relative to the root ("" for the root): the name ignore rules see. */
  requested: string;
  /** The same path with every symlink resolved (in the root). */
  rel: string;
  st: RawStat;
}

/** A match whose contents are filtered (--exclude, --parents), paths relative to the match. */
export interface SelectedMatch extends SourceMatch {
  filter?: CopyFilter;
}

/** How a COPY/ADD selects from a source: its --parents and --exclude flags. */
export interface SelectOptions {
  parents?: boolean;
  exclude?: readonly string[];
}

/** One entry below a source directory. */
export interface TreeEntry {
  /** Relative to the source directory. */
  sub: string;
  /** Relative to the tree root, symlink-free. */
  rel: string;
  st: RawStat;
  /** For symlinks: the target as stored. */
  linkTarget?: string;
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export class SourceTree {
  private readonly addon = native();
  private readonly rootFd: number;
  private readonly rootPath: string;

  constructor(
    root: string,
    private readonly ignore?: IgnoreMatcher,
  ) {
    this.rootFd = openSync(root, O_PATH | O_DIRECTORY);
    this.rootPath = readlinkSync(`/proc/self/fd/${this.rootFd}`);
  }

  close(): void {
    closeSync(this.rootFd);
  }

  private excluded(rel: string): boolean {
    return this.ignore !== undefined && rel !== "" && this.ignore.excludes(rel);
  }

  /** Opens a path in the root (following symlinks in it), or undefined when it does not exist. */
  private openInRoot(rel: string, flags = 0): number | undefined {
    try {
      return this.addon.openInRoot(this.rootFd, rel === "" ? "." : rel, O_PATH | flags, 0);
    } catch (err) {
      const code = errorCode(err);
      if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") return undefined;
      throw err;
    }
  }

  /** The symlink-free path of an fd opened in the root, relative to the root. */
  private realRel(fd: number): string {
    const real = readlinkSync(`/proc/self/fd/${fd}`);
    if (real === this.rootPath) return "";
    const prefix = this.rootPath === "/" ? "/" : `${this.rootPath}/`;
    if (!real.startsWith(prefix)) throw new Error(`internal error: ${real} resolved outside ${this.rootPath}`);
    return real.slice(prefix.length);
  }

  /** Resolves one path (following symlinks in the root); undefined when it does not exist. */
  private resolve(requested: string): SourceMatch | undefined {
    const fd = this.openInRoot(requested);
    if (fd === undefined) return undefined;
    try {
      return { requested, rel: this.realRel(fd), st: this.addon.lstatAt(fd, "") };
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Expands one COPY/ADD source (relative to the root; "." or "/" is the root itself, ".." cannot
   * leave it) into the paths it names, sorted. Wildcards follow Go's filepath.Match per path
   * component. Throws SourceNotFoundError when a plain path does not exist; a wildcard that
   * matches nothing matches nothing, as BuildKit allows (`COPY go.mod go.sum* ./`).
   */
  match(source: string): SourceMatch[] {
    const clean = cleanPath(`/${source}`).slice(1);
    if (!hasWildcards(clean)) {
      const found = this.excluded(clean) ? undefined : this.resolve(clean);
      if (!found) throw new SourceNotFoundError(source);
      return [found];
    }
    let candidates = [""];
    for (const component of clean.split("/")) {
      const next: string[] = [];
      if (!hasWildcards(component)) {
        for (const c of candidates) next.push(c === "" ? component : `${c}/${component}`);
      } else {
        const re = compileGlob(component);
        for (const c of candidates) {
          const fd = this.openInRoot(c, O_DIRECTORY);
          if (fd === undefined) continue;
          try {
            for (const name of sortByBytes(listDirectory(fd))) {
              if (re.test(name)) next.push(c === "" ? name : `${c}/${name}`);
            }
          } finally {
            closeSync(fd);
          }
        }
      }
      candidates = next;
    }
    const matches: SourceMatch[] = [];
    for (const c of candidates) {
      if (this.excluded(c)) continue;
      const found = this.resolve(c);
      if (found) matches.push(found);
    }
    return matches;
  }

  /**
   * What one COPY/ADD source selects with its --parents and --exclude flags: the matches, each
   * carrying the filter its contents go through (walk()). Without those flags, match(). Throws
   * SourceNotFoundError as match() does, and for a --parents path without wildcards that is
   * missing (BuildKit's required path); BadPatternError for a bad pattern.
   */
  select(source: string, options: SelectOptions = {}): SelectedMatch[] {
    const exclude = options.exclude ?? [];
    if (!options.parents && exclude.length === 0) return this.match(source);
    let root = source;
    const include: string[] = [];
    if (options.parents) {
      // BuildKit cuts at the first "/./", before any cleaning would remove it.
      const cut = source.indexOf("/./");
      const pattern = cleanPath(`/${cut < 0 ? source : source.slice(cut + 3)}`).slice(1);
      root = cut < 0 ? "/" : source.slice(0, cut);
      if (pattern !== "") include.push(pattern);
      if (!hasWildcards(root) && !hasWildcards(pattern)) this.matchAs(`${root}/${pattern}`, source);
    }
    const filter = new CopyFilter(include, exclude);
    const cleanRoot = cleanPath(`/${root}`).slice(1);
    let matches = this.matchAs(root, source);
    if (hasWildcards(cleanRoot)) {
      // A wildcard's matches are excluded by their path below its directory, as if copied from there.
      const components = cleanRoot.split("/");
      const base = components.slice(0, components.findIndex((c) => hasWildcards(c))).join("/");
      matches = matches.filter((m) => !filter.excludes(base === "" ? m.requested : m.requested.slice(base.length + 1)));
    }
    return matches.map((m) => ({ ...m, filter }));
  }

  /** match(), a missing path reported as the source the instruction names. */
  private matchAs(path: string, source: string): SourceMatch[] {
    try {
      return this.match(path);
    } catch (err) {
      if (err instanceof SourceNotFoundError) throw new SourceNotFoundError(source);
      throw err;
    }
  }

  /**
   * Everything below a matched directory, depth first, names sorted, directories before their
   * contents; excluded entries left out (an excluded directory is listed only when something
   * below it is re-included by an exception, or, with --parents, is on the way to what the
   * source names).
   */
  walk(match: SelectedMatch): TreeEntry[] {
    const out: TreeEntry[] = [];
    const fd = this.addon.openInRoot(this.rootFd, match.rel === "" ? "." : match.rel, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    try {
      this.walkDir(fd, match.rel, match.requested, "", match.filter, out);
    } finally {
      closeSync(fd);
    }
    return out;
  }

  /** For a directory left out itself: whether .dockerignore or the filter may take something below it. */
  private mayTakeBelow(requested: string, sub: string, filter: CopyFilter | undefined): boolean {
    if (this.excluded(requested) && !this.ignore?.hasExceptions) return false;
    return filter === undefined || filter.accepts(sub) || filter.mayAcceptBelow(sub);
  }

  private walkDir(dirFd: number, rel: string, requested: string, sub: string, filter: CopyFilter | undefined, out: TreeEntry[]): void {
    for (const name of sortByBytes(listDirectory(dirFd))) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      const childRequested = requested === "" ? name : `${requested}/${name}`;
      const childSub = sub === "" ? name : `${sub}/${name}`;
      let st: RawStat;
      try {
        st = this.addon.lstatAt(dirFd, name);
      } catch (err) {
        if (errorCode(err) === "ENOENT") continue; // removed while we walk
        throw err;
      }
      const excluded = this.excluded(childRequested) || (filter !== undefined && !filter.accepts(childSub));
      if (!isDirectory(st)) {
        if (excluded || !copyable(st)) continue;
        const entry: TreeEntry = { sub: childSub, rel: childRel, st };
        if (fileType(st) === S_IFLNK) entry.linkTarget = this.addon.readlinkAt(dirFd, name);
        out.push(entry);
        continue;
      }
      if (excluded && !this.mayTakeBelow(childRequested, childSub, filter)) continue;
      const at = out.length;
      const childFd = this.addon.openAt(dirFd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
      try {
        this.walkDir(childFd, childRel, childRequested, childSub, filter, out);
      } finally {
        closeSync(childFd);
      }
      if (!excluded || out.length > at) out.splice(at, 0, { sub: childSub, rel: childRel, st });
    }
  }

  /** The attributes of a symlink-free path itself (not followed); undefined when it does not exist. */
  lstat(rel: string): RawStat | undefined {
    const fd = this.openInRoot(rel, O_NOFOLLOW);
    if (fd === undefined) return undefined;
    try {
      return this.addon.lstatAt(fd, "");
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Where a path leads in the root when something is written there: every symlink on the way
   * is followed inside the root, including a last component that is a symlink; components that
   * do not exist are kept as they are. Returns the symlink-free path and, when it exists, its
   * attributes.
   */
  resolveForWrite(target: string): { rel: string; st: RawStat | undefined } {
    const resolved: string[] = [];
    const queue = target.split("/").filter((c) => c !== "" && c !== ".");
    let hops = 0;
    while (queue.length > 0) {
      const component = queue.shift() as string;
      if (component === "..") {
        resolved.pop();
        continue;
      }
      const candidate = [...resolved, component].join("/");
      const st = this.lstat(candidate);
      if (st === undefined) {
        resolved.push(component, ...queue.filter((c) => c !== ".."));
        return { rel: cleanPath(`/${resolved.join("/")}`).slice(1), st: undefined };
      }
      if (fileType(st) === S_IFLNK) {
        if (++hops > 40) throw new Error(`/${target}: too many levels of symbolic links`);
        const link = this.addon.readlinkAt(this.rootFd, candidate);
        if (link.startsWith("/")) resolved.length = 0;
        queue.unshift(...link.split("/").filter((c) => c !== "" && c !== "."));
        continue;
      }
      resolved.push(component);
    }
    const rel = resolved.join("/");
    return { rel, st: rel === "" ? this.lstat("") : this.lstat(rel) };
  }

  /** Opens a regular file of the tree for reading (never following a symlink). */
  openFile(rel: string): number {
    return this.addon.openInRoot(this.rootFd, rel, constants.O_RDONLY | O_NOFOLLOW | constants.O_NONBLOCK, 0);
  }

  /** The attributes of a path in the root, followed; undefined when it does not exist. */
  stat(rel: string): RawStat | undefined {
    return this.resolve(rel)?.st;
  }
}
