// COPY and ADD on the host side: the instruction's flags and words expanded, the sources
// checked and hashed for the cache key (a missing source fails the build before anything runs),
// URLs downloaded and heredoc bodies written to files, --chown resolved with the image's
// /etc/passwd and /etc/group. Writing the layer is the storage worker's job (copy-worker.ts),
// started only when the cache has no layer for the step.
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";
import { scratchPath, tempPath } from "../store/temps.js";
import path from "node:path";
import type { Store } from "../store/store.js";
import type { LayerRecord } from "../store/images.js";
import { chainIds } from "../store/digest.js";
import { parseHeredoc, chompHeredocContent, type Instruction } from "./dockerfile.js";
import { ShellLex, type EscapeChar } from "./shell-words.js";
import { BadPatternError, CopyFilter, cleanPath, IgnoreMatcher } from "./path-patterns.js";
import { parseFlags, type FlagKind } from "./stages.js";
import { ChmodSyntaxError, parseChmod, type ModeChange } from "./file-mode.js";
import { SourceTree, SourceNotFoundError } from "./source-tree.js";
import { hashSources } from "./cache-keys.js";
import { readLayeredFile } from "../container/rootfs-files.js";
import { parseGroup, parsePasswd } from "../container/spec.js";
import { currentMapping, maxMappedId } from "../userns.js";
import type { CopyJob, CopyResult, CopySource } from "./copy-worker.js";
import { MEDIA } from "../image/types.js";
import { httpGet } from "../image/http-get.js";
import type { IncomingMessage } from "node:http";
import { removeFile } from "../remove-file.js";

// --keep-git-dir (ADD) is known so that it gets a clear refusal rather than "unknown flag".
const COPY_FLAGS: Readonly<Record<string, FlagKind>> = { from: "string", chown: "string", chmod: "string", link: "bool", parents: "bool", exclude: "strings" };
const ADD_FLAGS: Readonly<Record<string, FlagKind>> = { chown: "string", chmod: "string", link: "bool", checksum: "string", exclude: "strings", "keep-git-dir": "bool", unpack: "bool" };
const UNSUPPORTED_FLAGS = ["keep-git-dir"];

/** A directory COPY --from or RUN --mount from= reads as it reads the build context (a named context). */
export interface ContextSource {
  dir: string;
  /** Its .dockerignore patterns. */
  ignore: string[];
  tree: SourceTree;
}

/** What --from names: the layers of a stage or image, or a directory context. */
export type FromSource = { identity: string; layers: LayerRecord[] } | { identity: string; context: ContextSource };

/** What a COPY/ADD needs from the build. */
export interface CopyContext {
  store: Store;
  /** The build context, opened once per build. */
  context: SourceTree;
  contextDir: string;
  ignore: string[];
  /** The stage's WORKDIR, layers and expansion variables. */
  workdir: string;
  layers: LayerRecord[];
  scope: ReadonlyMap<string, string>;
  escapeChar: EscapeChar;
  /** Seconds: the time new directories and heredoc files get. */
  now: number;
  clampMtime: number | undefined;
  /** Warnings about the step (a --chown name the image does not know). */
  warn?: (message: string) => void;
  /** --from: the named stage (built first if needed), context or image; identity goes into the cache key. */
  resolveFrom(ref: string): Promise<FromSource>;
}

/** A COPY/ADD ready to run: its cache description and the worker job's parts. */
export interface PreparedCopy {
  description: unknown;
  sources: CopySource[];
  dest: string;
  destIsDir: boolean;
  owner?: { uid: number; gid: number };
  chmod?: ModeChange;
  /** WORKDIR: make the destination directory itself when it is missing. */
  makeDest?: boolean;
  /** Files made for the step (downloads, heredoc bodies): removed after it. */
  temporaries: string[];
}

function tempFile(store: Store, kind: string): string {
  mkdirSync(store.paths.tmp, { recursive: true });
  return scratchPath(store.paths.tmp, `build-${kind}`);
}

/**
 * --chown (and the USER that WORKDIR creates directories as): numbers, or names from the image's
 * /etc/passwd and /etc/group. layerDirs: topmost first. BuildKit's rules (llb.WithUser and the
 * file op's readUser): an empty user part is uid 0; a user name the image does not know is
 * uid 0 and gid 0 and a group name it does not know leaves the gid as it was, without error
 * (`FROM scratch` + `COPY --chown=nonroot` builds with Docker), so tsrun says so in a warning.
 */
export function resolveOwner(spec: string, layerDirs: string[], warn?: (message: string) => void): { uid: number; gid: number } {
  const colon = spec.indexOf(":");
  const user = colon < 0 ? spec : spec.slice(0, colon);
  const group = colon < 0 ? "" : spec.slice(colon + 1);
  const numeric = (s: string): boolean => /^\d+$/.test(s);
  const unknown: string[] = [];
  let uid = 0;
  let primaryGid = 0;
  if (numeric(user)) {
    uid = Number(user);
    // A numeric user without group gets the same number as group.
    primaryGid = uid;
  } else if (user !== "" && user !== "root") {
    const entry = parsePasswd(readLayeredFile(layerDirs, "etc/passwd") ?? "").find((p) => p.name === user);
    if (entry) {
      uid = entry.uid;
      primaryGid = entry.gid;
    } else unknown.push(`no user ${user} in /etc/passwd`);
  }
  let gid = primaryGid;
  if (group !== "") {
    if (numeric(group)) gid = Number(group);
    else if (group === "root") gid = 0;
    else {
      const entry = parseGroup(readLayeredFile(layerDirs, "etc/group") ?? "").find((g) => g.name === group);
      if (entry) gid = entry.gid;
      else unknown.push(`no group ${group} in /etc/group`);
    }
  }
  if (unknown.length > 0) warn?.(`"${spec}": ${unknown.join(", ")}: ${uid}:${gid} is used, as Docker does`);
  return { uid, gid };
}

const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);
/** A git repository as BuildKit's dfgitutil.ParseGitRef tells one: an http(s) URL only when its path ends in .git. */
const isGit = (s: string): boolean => /^(?:git@|git:\/\/|ssh:\/\/|github\.com\/)/i.test(s) || /^https?:\/\/[^#?]*\.git(?:[#?].*)?$/i.test(s);

/** Downloads an ADD URL into a temporary file; its content hash keys the cache. */
async function download(store: Store, url: string, checksum: string | undefined, now: number): Promise<{ file: string; name: string; mtime: number; digest: string }> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`invalid URL ${url}`);
  }
  // BuildKit's name for a URL without a file name in its path (the destination usually names it).
  const base = path.posix.basename(decodeURIComponent(parsed.pathname));
  const name = base === "" || base === "/" || base === "." ? "__unnamed__" : base;
  let res: IncomingMessage;
  try {
    res = await httpGet(url);
  } catch (err) {
    throw new Error(`failed to download ${url}: ${(err as Error).message}`);
  }
  const file = tempFile(store, "add");
  const fd = openSync(file, "wx", 0o600);
  const hash = createHash("sha256");
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      hash.update(chunk);
      for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
    }
  } catch (err) {
    closeSync(fd);
    removeFile(file);
    throw new Error(`failed to download ${url}: ${(err as Error).message}`);
  }
  closeSync(fd);
  const digest = `sha256:${hash.digest("hex")}`;
  if (checksum !== undefined && checksum !== digest) {
    removeFile(file);
    throw new Error(`checksum mismatch for ${url}: expected ${checksum}, got ${digest}`);
  }
  const modified = Date.parse(res.headers["last-modified"] ?? "");
  return { file, name, mtime: Number.isNaN(modified) ? now : Math.floor(modified / 1000), digest };
}

/** The words of a COPY/ADD: expanded, heredoc openers replaced by their bodies. */
interface CopyWord {
  text: string;
  heredoc?: { name: string; content: string };
}

function copyWords(ins: Instruction, ctx: CopyContext): CopyWord[] {
  const lex = new ShellLex(ctx.escapeChar);
  const bodyLex = new ShellLex(ctx.escapeChar, { skipProcessQuotes: true });
  let next = 0;
  return ins.args.map((raw): CopyWord => {
    const opener = ins.json ? undefined : parseHeredoc(raw);
    const heredoc = opener ? ins.heredocs[next] : undefined;
    if (opener && heredoc) {
      next++;
      let content = heredoc.chomp ? chompHeredocContent(heredoc.content) : heredoc.content;
      // An unquoted delimiter makes the body expand ($VAR), quotes in it kept as they are.
      if (heredoc.expand) content = bodyLex.processWord(content, ctx.scope);
      return { text: heredoc.name, heredoc: { name: heredoc.name, content } };
    }
    return { text: lex.processWord(raw, ctx.scope) };
  });
}

export async function prepareCopy(ctx: CopyContext, ins: Instruction): Promise<PreparedCopy> {
  const keyword = ins.keyword as "copy" | "add";
  const name = keyword.toUpperCase();
  const flags = parseFlags(ins, keyword === "copy" ? COPY_FLAGS : ADD_FLAGS);
  for (const f of UNSUPPORTED_FLAGS) if (flags.has(f)) throw new Error(`${name} --${f} is not supported yet`);
  const lex = new ShellLex(ctx.escapeChar);
  const flag = (key: string): string | undefined => {
    const v = flags.get(key);
    return typeof v === "string" ? lex.processWord(v, ctx.scope) : undefined;
  };
  const words = copyWords(ins, ctx);
  if (words.length < 2) throw new Error(`${name} requires at least two arguments, but only one was provided. Destination could not be determined.`);
  const destWord = (words[words.length - 1] as CopyWord).text;
  const sourceWords = words.slice(0, -1);
  const dirLike = destWord.endsWith("/") || destWord === "." || destWord === ".." || destWord.endsWith("/.") || destWord.endsWith("/..");
  if (sourceWords.length > 1 && !dirLike) throw new Error(`When using ${name} with more than one source file, the destination must be a directory and end with a /`);
  const absolute = destWord.startsWith("/") ? destWord : path.posix.join(ctx.workdir || "/", destWord);
  const clean = cleanPath(absolute);
  const dest = dirLike && clean !== "/" ? `${clean}/` : clean;

  const excludeFlag = flags.get("exclude");
  const exclude = (Array.isArray(excludeFlag) ? excludeFlag : []).map((v) => lex.processWord(v, ctx.scope));
  const parents = flags.get("parents") === true;
  try {
    // Refused here, before anything runs, as BuildKit refuses the step.
    new CopyFilter([], exclude);
  } catch (err) {
    if (err instanceof BadPatternError) throw new Error(`${name} --exclude: ${err.message}`);
    throw err;
  }
  const selection = { parents, exclude };
  const chown = flag("chown");
  const chmod = flag("chmod");
  const from = flag("from");
  const checksum = flag("checksum");
  // ADD unpacks local archives, not downloads; --unpack=true|false says otherwise (Dockerfile 1.17).
  const unpack = flags.get("unpack");
  const unpackUrls = unpack === true;
  const unpackLocal = keyword === "add" && unpack !== false;
  const layerDirs = [...ctx.layers].reverse().map((l) => ctx.store.layers.diffDir(l.chainId));
  const prepared: PreparedCopy = { description: undefined, sources: [], dest, destIsDir: sourceWords.length > 1, temporaries: [] };
  if (chown !== undefined && chown !== "") prepared.owner = resolveOwner(chown, layerDirs, ctx.warn);
  if (chmod !== undefined && chmod !== "") {
    try {
      prepared.chmod = parseChmod(chmod);
    } catch (err) {
      if (err instanceof ChmodSyntaxError) throw new Error(err.message);
      throw err;
    }
  }
  const described: unknown[] = [];

  try {
    if (from !== undefined) {
      const source = await ctx.resolveFrom(from);
      const paths = sourceWords.map((w) => w.text);
      if ("context" in source) {
        // A directory context: read as the build context is (owned by root, its .dockerignore applied).
        prepared.sources.push({ kind: "tree", root: { dir: source.context.dir }, ignore: source.context.ignore, ...selection, paths, keepOwners: false, extractArchives: false });
        described.push({ from: source.identity, paths, content: hashSources(source.context.tree, paths, selection) });
      } else {
        prepared.sources.push({
          kind: "tree",
          root: { layers: [...source.layers].reverse().map((l) => ctx.store.layers.linkPath(l.chainId)) },
          ignore: [],
          ...selection,
          paths,
          keepOwners: true,
          extractArchives: false,
        });
        described.push({ from: source.identity, paths });
      }
    } else {
      const contextPaths: string[] = [];
      for (const word of sourceWords) {
        if (word.heredoc) {
          const file = tempFile(ctx.store, "heredoc");
          prepared.temporaries.push(file);
          writeFileSync(file, word.heredoc.content, { mode: 0o600 });
          prepared.sources.push({ kind: "file", path: file, name: word.heredoc.name, mode: 0o644, mtime: ctx.now });
          described.push({ heredoc: word.heredoc.name, content: word.heredoc.content });
        } else if (keyword === "add" && isGit(word.text)) {
          // Before the URL test: https://host/repo.git#ref is a repository, as BuildKit reads it.
          throw new Error(`ADD of a git repository (${word.text}) is not supported`);
        } else if (keyword === "copy" && (isUrl(word.text) || isGit(word.text))) {
          throw new Error(`source can't be a ${isGit(word.text) ? "git ref" : "URL"} for COPY`);
        } else if (keyword === "add" && isUrl(word.text)) {
          const got = await download(ctx.store, word.text, checksum, ctx.now);
          prepared.temporaries.push(got.file);
          // Docker gives downloaded files mode 600.
          prepared.sources.push({ kind: "file", path: got.file, name: got.name, mode: 0o600, mtime: got.mtime, ...(unpackUrls ? { extractArchive: true } : {}) });
          // Keyed by content only (a server without Last-Modified would otherwise never hit).
          described.push({ url: word.text, digest: got.digest, ...(unpackUrls ? { unpack: true } : {}) });
        } else {
          contextPaths.push(word.text);
        }
      }
      if (checksum !== undefined && contextPaths.length > 0) throw new Error("ADD --checksum is only supported for URLs");
      if (contextPaths.length > 0) {
        prepared.sources.push({ kind: "tree", root: { dir: ctx.contextDir }, ignore: ctx.ignore, ...selection, paths: contextPaths, keepOwners: false, extractArchives: unpackLocal });
        described.push({ context: contextPaths, content: hashSources(ctx.context, contextPaths, selection), ...(keyword === "add" && !unpackLocal ? { unpack: false } : {}) });
      }
    }
  } catch (err) {
    for (const f of prepared.temporaries) removeFile(f);
    if (err instanceof SourceNotFoundError) throw new Error(`${name} ${err.message}`);
    throw err;
  }
  const description: Record<string, unknown> = { keyword, dest, owner: prepared.owner ?? null, mode: prepared.chmod === undefined ? null : "octal" in prepared.chmod ? prepared.chmod.octal : prepared.chmod.symbolic, sources: described };
  // Only when set: the keys of steps without them stay what they were.
  if (exclude.length > 0) description.exclude = exclude;
  if (parents) description.parents = true;
  prepared.description = description;
  return prepared;
}

export interface CopiedLayer {
  result: CopyResult;
  layer: LayerRecord;
  layerTmp: string;
  tarFile: string;
}

/** Writes the layer of a prepared COPY/ADD in the storage worker (not yet in the store). */
export async function runCopy(ctx: Pick<CopyContext, "store" | "layers" | "now" | "clampMtime">, prepared: PreparedCopy): Promise<CopiedLayer> {
  const store = ctx.store;
  const layerTmp = store.layers.createTemp();
  const tarFile = tempPath(store.paths.blobs, "build");
  const scratch = tempFile(store, "copy");
  mkdirSync(scratch, { recursive: true, mode: 0o700 });
  const mapping = currentMapping();
  const job: CopyJob = {
    storeRoot: store.paths.root,
    scratch,
    targetLayers: [...ctx.layers].reverse().map((l) => store.layers.linkPath(l.chainId)),
    dest: prepared.dest,
    sources: prepared.sources,
    destIsDir: prepared.destIsDir,
    now: ctx.now,
    tarFile,
    layerDir: layerTmp,
    maxUid: maxMappedId(mapping, "uid"),
    maxGid: maxMappedId(mapping, "gid"),
  };
  if (prepared.owner) job.owner = prepared.owner;
  if (prepared.chmod !== undefined) job.chmod = prepared.chmod;
  if (prepared.makeDest) job.makeDest = true;
  if (ctx.clampMtime !== undefined) job.clampMtime = ctx.clampMtime;
  try {
    const result = await store.runWorkerJob<CopyJob, CopyResult>("build-copy", job);
    if (!result) throw new Error("the storage worker returned no result for the copy");
    const chainId = chainIds([...ctx.layers.map((l) => l.diffId), result.digest]).at(-1) as string;
    // Stored uncompressed, as commit stores its layers: the blob digest is the DiffID.
    const layer: LayerRecord = { diffId: result.digest, chainId, digest: result.digest, mediaType: MEDIA.ociLayer, size: result.size };
    return { result, layer, layerTmp, tarFile };
  } catch (err) {
    removeFile(tarFile);
    await store.removeTree(layerTmp);
    throw err;
  } finally {
    await store.removeTree(scratch);
  }
}

/** The .dockerignore matcher of a build, or undefined when it has no patterns. */
export function ignoreMatcher(patterns: string[]): IgnoreMatcher | undefined {
  return patterns.length > 0 ? new IgnoreMatcher(patterns) : undefined;
}
