// RUN --mount, as BuildKit spells it: `type=cache` (a directory kept between builds, shared by
// every RUN that names the same id: package manager caches; made with its uid, gid and mode),
// `type=bind` (a path of the build context, or with `from=` of another stage or image;
// read-only, or writable with `rw` and the writes thrown away), `type=tmpfs`, `type=secret` (a
// `build --secret`, as a file, by default /run/secrets/ID, or an environment variable; neither
// its content nor the file reaches the layer, the history or the cache key). The mounts become
// the RUN container's --mount specs; what is under their targets never goes into the layer (the
// commit scan leaves mount targets out). A secret or ssh mount whose source the build was not
// given is left out, unless `required` (BuildKit's rule): ssh agent forwarding is not
// supported, so an ssh mount is only ever left out. Not supported: a cache seeded `from=`.
//
// A bind shows what BuildKit would send it: the context as COPY sees it (.dockerignore applied),
// or the merged files of a stage. When the context dir itself is that (no .dockerignore) and the
// mount is read-only, it is bound as it is; a read-only bind of a context with a .dockerignore
// is a tree of hard links to the files .dockerignore keeps (a read-only mount cannot change
// them; copies across filesystems); otherwise (rw, from=) the source is copied, as
// `COPY [--from=X] SOURCE /` would copy it, into a scratch layer dir. Both go after the RUN.
import { chmodSync, constants, copyFileSync, existsSync, linkSync, mkdirSync, renameSync, statSync, symlinkSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import type { Store } from "../store/store.js";
import type { LayerRecord } from "../store/images.js";
import { runInUserNamespace } from "../userns-run.js";
import { hashSources } from "./cache-keys.js";
import { fileType, isDirectory, ST_MODE, type SourceTree } from "./source-tree.js";
import { scratchPath } from "../store/temps.js";
import { runCopy, type ContextSource, type FromSource } from "./copy-step.js";
import { removeFile } from "../remove-file.js";

export interface RunMountContext {
  store: Store;
  context: SourceTree;
  contextDir: string;
  /** The stage's WORKDIR: relative targets start there. */
  workdir: string;
  /** `build --secret` values by id. */
  secrets: ReadonlyMap<string, Buffer>;
  /** The build's .dockerignore patterns. */
  ignore: string[];
  /** Seconds: the time directories a copied bind source gets. */
  now: number;
  /** `from=`: the named stage (built first if needed), context or image; identity goes into the cache key. */
  resolveFrom(ref: string): Promise<FromSource>;
}

/** A secret the RUN gets as a file (written just before it runs, removed after). */
export interface SecretFile {
  target: string;
  content: Buffer;
  mode: number;
  uid: number;
  gid: number;
}

export interface RunMounts {
  /** --mount specs for the RUN container. */
  mounts: string[];
  /** What goes into the RUN's cache key. */
  description: unknown[];
  /** type=secret mounts: files to mount, and variables for the command's environment. */
  secretFiles: SecretFile[];
  secretEnv: [string, string][];
  /** Copies made for bind mounts: removed (with Store.removeTrees) after the RUN. */
  scratch: string[];
  /** Bind mounts whose source is still to be copied: their spec goes to mounts[index]. */
  pending: { index: number; make: () => Promise<string> }[];
}

/** Gives a path made for a RUN the owner its mount asks for (an id of the user namespace). */
export async function chownInUserNamespace(file: string, uid: number, gid: number): Promise<void> {
  const r = await runInUserNamespace(["chown", "-h", `${uid}:${gid}`, "--", file]);
  if (r.code !== 0) throw new Error(`cannot give ${path.basename(file)} the owner ${uid}:${gid}: ${r.stderr.trim() || `chown exited ${r.code}`}`);
}

function idField(spec: string, f: Map<string, string>, key: "uid" | "gid"): number {
  const value = f.get(key) ?? "0";
  if (!/^\d+$/.test(value)) throw new Error(`RUN --mount=${spec}: ${key} must be a number`);
  return Number(value);
}

function fields(spec: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const field of spec.split(",")) {
    if (field === "") continue;
    const eq = field.indexOf("=");
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    out.set(key, eq < 0 ? "true" : field.slice(eq + 1));
  }
  return out;
}

const truthy = (v: string | undefined): boolean => v !== undefined && v !== "false" && v !== "0";

function noComma(p: string, what: string): string {
  if (p.includes(",")) throw new Error(`RUN --mount: ${what} ${p} has a comma in its path, which a mount spec cannot carry`);
  return p;
}

/**
 * The source of a bind that cannot be the context dir itself, copied as `COPY [--from] SOURCE /`
 * would copy it into a scratch layer dir (added to `out.scratch`): returns the copy's path.
 */
async function copyBindSource(ctx: RunMountContext, source: string, from: { layers: LayerRecord[] } | ContextSource, out: RunMounts): Promise<string> {
  const copied = await runCopy(
    { store: ctx.store, layers: [], now: ctx.now, clampMtime: undefined },
    {
      description: undefined,
      sources: [
        "layers" in from
          ? { kind: "tree", root: { layers: [...from.layers].reverse().map((l) => ctx.store.layers.linkPath(l.chainId)) }, ignore: [], paths: [source], keepOwners: true, extractArchives: false }
          : { kind: "tree", root: { dir: from.dir }, ignore: from.ignore, paths: [source], keepOwners: false, extractArchives: false },
      ],
      dest: "/mount",
      destIsDir: false,
      temporaries: [],
    },
  );
  out.scratch.push(copied.layerTmp);
  // Only the unpacked files are used: the layer tar goes at once.
  removeFile(copied.tarFile);
  const hostPath = path.join(copied.layerTmp, "diff", "mount");
  if (!existsSync(hostPath)) throw new Error(`${source} not found`);
  return hostPath;
}

/**
 * A read-only bind's view of a context source without what .dockerignore hides, in a scratch
 * dir (added to `out.scratch`): hard links to the user's own files, which cost no data copy
 * (10,000 files: under a second where a copy and its removal took half a minute here).
 */
function linkContextSource(ctx: RunMountContext, from: ContextSource, source: string, out: RunMounts): string {
  const [match] = from.tree.match(source);
  if (!match) throw new Error(`${source} not found in the build context`);
  mkdirSync(ctx.store.paths.tmp, { recursive: true, mode: 0o700 });
  const scratch = scratchPath(ctx.store.paths.tmp, "build-bind");
  mkdirSync(scratch, { mode: 0o700 });
  out.scratch.push(scratch);
  const top = path.join(scratch, "mount");
  const linkOrCopy = (rel: string, dest: string): void => {
    const file = path.join(from.dir, rel);
    try {
      linkSync(file, dest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EXDEV" && code !== "EPERM" && code !== "EMLINK") throw err;
      copyFileSync(file, dest);
      chmodSync(dest, statSync(file).mode & 0o7777);
    }
  };
  if (!isDirectory(match.st)) {
    linkOrCopy(match.rel, top);
    return top;
  }
  // Directory modes are set last: a read-only directory of the context must be filled first.
  const dirs: [string, number][] = [[top, match.st[ST_MODE] & 0o7777]];
  mkdirSync(top);
  for (const e of from.tree.walk(match)) {
    const dest = path.join(top, e.sub);
    const type = fileType(e.st);
    if (type === constants.S_IFDIR) {
      mkdirSync(dest);
      dirs.push([dest, e.st[ST_MODE] & 0o7777]);
    } else if (type === constants.S_IFLNK) symlinkSync(e.linkTarget ?? "", dest);
    else if (type === constants.S_IFREG) linkOrCopy(e.rel, dest);
  }
  for (const [dir, mode] of dirs.reverse()) chmodSync(dir, mode);
  return top;
}

/**
 * Turns the --mount values of one RUN (already expanded) into container mounts and their cache
 * key. Bind sources that need a copy are copied by makeRunMounts, once the RUN is no cache hit.
 */
export async function runMounts(specs: readonly string[], ctx: RunMountContext): Promise<RunMounts> {
  const out: RunMounts = { mounts: [], description: [], secretFiles: [], secretEnv: [], scratch: [], pending: [] };
  for (const spec of specs) await addMount(spec, ctx, out);
  return out;
}

/** Makes the copies the mounts need (removing them again on an error); the caller removes `scratch` after the RUN. */
export async function makeRunMounts(ctx: RunMountContext, mounts: RunMounts): Promise<void> {
  try {
    for (const p of mounts.pending) mounts.mounts[p.index] = await p.make();
    mounts.pending = [];
  } catch (err) {
    await ctx.store.removeTrees(mounts.scratch);
    mounts.scratch = [];
    throw err;
  }
}

async function addMount(spec: string, ctx: RunMountContext, out: RunMounts): Promise<void> {
  const f = fields(spec);
  const type = f.get("type") ?? "bind";
  const known: Record<string, string[]> = {
    cache: ["type", "target", "dst", "destination", "id", "sharing", "mode", "uid", "gid", "readonly", "ro", "rw", "readwrite"],
    bind: ["type", "target", "dst", "destination", "source", "src", "readonly", "ro", "rw", "readwrite", "from"],
    tmpfs: ["type", "target", "dst", "destination", "size"],
    secret: ["type", "id", "target", "dst", "destination", "env", "required", "mode", "uid", "gid"],
    ssh: ["type", "id", "target", "dst", "destination", "required", "mode", "uid", "gid"],
  };
  const allowed = known[type];
  if (!allowed) throw new Error(`RUN --mount=type=${type} is not supported yet (cache, bind, tmpfs, secret and ssh are)`);
  for (const key of f.keys()) {
    if (!allowed.includes(key)) throw new Error(`RUN --mount=${spec}: ${key === "from" ? `"${key}" is not supported for type=${type}` : `unknown option "${key}"`}`);
  }
  if (type === "secret" || type === "ssh") {
    secretMount(spec, type, f, ctx, out);
    return;
  }
  // No target is the WORKDIR (BuildKit joins the two): docker/buildx's `RUN --mount=from=binaries`.
  const rawTarget = f.get("target") ?? f.get("dst") ?? f.get("destination") ?? "";
  const target = path.posix.resolve(ctx.workdir || "/", rawTarget);
  if (target === "/") throw new Error(`RUN --mount=${spec}: invalid mount target "/"`);
  const readOnly = truthy(f.get("readonly")) || truthy(f.get("ro"));
  switch (type) {
    case "cache": {
      const id = f.get("id") ?? target;
      const uid = idField(spec, f, "uid");
      const gid = idField(spec, f, "gid");
      const mode = f.get("mode") ?? "0755";
      if (!/^[0-7]{3,4}$/.test(mode)) throw new Error(`RUN --mount=${spec}: mode must be octal`);
      const dir = path.join(ctx.store.buildCache.mountsDir, "cache", createHash("sha256").update(id).digest("hex").slice(0, 32));
      if (!existsSync(dir)) {
        // Made aside and renamed: a RUN never sees a cache dir without its owner yet.
        const made = `${dir}.tmp-${process.pid}`;
        mkdirSync(made, { recursive: true });
        chmodSync(made, parseInt(mode, 8));
        // uid/gid and mode apply when the cache is made, as in BuildKit.
        if (uid !== 0 || gid !== 0) await chownInUserNamespace(made, uid, gid);
        try {
          renameSync(made, dir);
        } catch (err) {
          // Another build made it meanwhile: theirs is used.
          await ctx.store.removeTree(made);
          if (!existsSync(dir)) throw err;
        }
      }
      out.mounts.push(`type=bind,source=${noComma(dir, "the cache directory")},target=${noComma(target, "the target")}${readOnly ? ",readonly" : ""}`);
      out.description.push({ cache: id, target, readOnly, mode, ...(uid !== 0 || gid !== 0 ? { uid, gid } : {}) });
      break;
    }
    case "bind": {
      const source = f.get("source") ?? f.get("src") ?? ".";
      const from = f.get("from");
      const rw = f.get("rw") ?? f.get("readwrite");
      const ro = f.get("readonly") ?? f.get("ro");
      // Read-only unless rw, or readonly=false, says otherwise.
      const writable = rw !== undefined ? truthy(rw) : ro !== undefined && !truthy(ro);
      const mountSpec = (hostPath: string): string => `type=bind,source=${noComma(hostPath, "the source")},target=${noComma(target, "the target")}${writable ? "" : ",readonly"}`;
      const resolved = from === undefined ? undefined : await ctx.resolveFrom(from);
      // The build context, or a directory named with --build-context: read as COPY reads them.
      const contextSource: ContextSource | undefined = resolved === undefined ? { dir: ctx.contextDir, ignore: ctx.ignore, tree: ctx.context } : "context" in resolved ? resolved.context : undefined;
      if (contextSource && !writable && contextSource.ignore.length === 0) {
        // Resolved inside the context, as COPY resolves its sources.
        const [match] = contextSource.tree.match(source);
        if (!match) throw new Error(`RUN --mount=${spec}: ${source} not found in the build context`);
        out.mounts.push(mountSpec(path.join(contextSource.dir, match.rel)));
        out.description.push({ bind: source, target, content: hashSources(contextSource.tree, [source]), ...(resolved ? { from: resolved.identity } : {}) });
        break;
      }
      // A copy: what .dockerignore hides stays out, a stage's files are merged, and writes
      // with rw land in the copy, never in the user's own files.
      let identity: { from: string; content?: string } | { content: string };
      try {
        identity = contextSource ? { ...(resolved ? { from: resolved.identity } : {}), content: hashSources(contextSource.tree, [source]) } : { from: (resolved as FromSource).identity };
      } catch (err) {
        throw new Error(`RUN --mount=${spec}: ${(err as Error).message}`);
      }
      const index = out.mounts.push("") - 1;
      out.pending.push({
        index,
        make: async () => {
          try {
            if (contextSource && !writable) return mountSpec(linkContextSource(ctx, contextSource, source, out));
            return mountSpec(await copyBindSource(ctx, source, contextSource ?? { layers: (resolved as { layers: LayerRecord[] }).layers }, out));
          } catch (err) {
            const message = (err as Error).message;
            throw new Error(`RUN --mount=${spec}: ${message.startsWith(source) ? message : `${source}: ${message}`}`);
          }
        },
      });
      out.description.push({ bind: source, target, ...(writable ? { rw: true } : {}), ...identity });
      break;
    }
    case "tmpfs": {
      const size = f.get("size");
      out.mounts.push(`type=tmpfs,target=${noComma(target, "the target")}${size ? `,tmpfs-size=${size}` : ""}`);
      out.description.push({ tmpfs: target, size: size ?? null });
      break;
    }
  }
}

/** type=secret and type=ssh: what the RUN gets, or nothing when the build has no such source. */
function secretMount(spec: string, type: "secret" | "ssh", f: Map<string, string>, ctx: RunMountContext, out: RunMounts): void {
  const rawTarget = f.get("target") ?? f.get("dst") ?? f.get("destination");
  const id = f.get("id") ?? (type === "ssh" ? "default" : rawTarget ? path.posix.basename(rawTarget) : "");
  if (id === "") throw new Error(`RUN --mount=${spec}: a secret needs an id or a target`);
  const required = truthy(f.get("required"));
  const uid = idField(spec, f, "uid");
  const gid = idField(spec, f, "gid");
  const mode = f.get("mode") ?? (type === "ssh" ? "0600" : "0400");
  if (!/^[0-7]{3,4}$/.test(mode)) throw new Error(`RUN --mount=${spec}: mode must be octal`);
  if (type === "ssh") {
    if (required) throw new Error(`RUN --mount=${spec}: ssh agent forwarding is not supported`);
    return;
  }
  const content = ctx.secrets.get(id);
  if (content === undefined) {
    if (required) throw new Error(`RUN --mount=${spec}: secret ${id} not found (give it with build --secret id=${id},src=FILE)`);
    return;
  }
  const env = f.get("env");
  // Only which secret and where: its content stays out of the cache key, as in BuildKit.
  out.description.push({ secret: id, target: rawTarget ?? null, env: env ?? null, ...(uid !== 0 || gid !== 0 ? { uid, gid } : {}) });
  if (env !== undefined) out.secretEnv.push([env, content.toString("utf8")]);
  if (env === undefined || rawTarget !== undefined) {
    out.secretFiles.push({ target: path.posix.resolve(ctx.workdir || "/", rawTarget ?? `/run/secrets/${id}`), content, mode: parseInt(mode, 8), uid, gid });
  }
}

