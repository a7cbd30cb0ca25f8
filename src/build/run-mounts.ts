// RUN --mount, as BuildKit spells it: `type=cache` (a directory kept between builds, shared by
// every RUN that names the same id: package manager caches), `type=bind` (a path of the build
// context, read-only), `type=tmpfs`, `type=secret` (a `build --secret`, as a file, by default
// /run/secrets/ID, or an environment variable; neither its content nor the file reaches the
// layer, the history or the cache key). The mounts become the RUN container's --mount specs;
// what is under their targets never goes into the layer (the commit scan leaves mount targets
// out). A secret or ssh mount whose source the build was not given is left out, unless
// `required` (BuildKit's rule): ssh agent forwarding is not supported, so an ssh mount is only
// ever left out. Not supported yet: bind from another stage or image, writable binds.
import { chmodSync, existsSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import type { Store } from "../store/store.js";
import { hashSources } from "./cache-keys.js";
import type { SourceTree } from "./source-tree.js";

export interface RunMountContext {
  store: Store;
  context: SourceTree;
  contextDir: string;
  /** The stage's WORKDIR: relative targets start there. */
  workdir: string;
  /** `build --secret` values by id. */
  secrets: ReadonlyMap<string, Buffer>;
}

/** A secret the RUN gets as a file (written just before it runs, removed after). */
export interface SecretFile {
  target: string;
  content: Buffer;
  mode: number;
}

export interface RunMounts {
  /** --mount specs for the RUN container. */
  mounts: string[];
  /** What goes into the RUN's cache key. */
  description: unknown[];
  /** type=secret mounts: files to mount, and variables for the command's environment. */
  secretFiles: SecretFile[];
  secretEnv: [string, string][];
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

/** Turns the --mount values of one RUN (already expanded) into container mounts. */
export function runMounts(specs: readonly string[], ctx: RunMountContext): RunMounts {
  const out: RunMounts = { mounts: [], description: [], secretFiles: [], secretEnv: [] };
  for (const spec of specs) {
    const f = fields(spec);
    const type = f.get("type") ?? "bind";
    const known: Record<string, string[]> = {
      cache: ["type", "target", "dst", "destination", "id", "sharing", "mode", "uid", "gid", "readonly", "ro"],
      bind: ["type", "target", "dst", "destination", "source", "src", "readonly", "ro"],
      tmpfs: ["type", "target", "dst", "destination", "size"],
      secret: ["type", "id", "target", "dst", "destination", "env", "required", "mode", "uid", "gid"],
      ssh: ["type", "id", "target", "dst", "destination", "required", "mode", "uid", "gid"],
    };
    const allowed = known[type];
    if (!allowed) throw new Error(`RUN --mount=type=${type} is not supported yet (cache, bind, tmpfs, secret and ssh are)`);
    for (const key of f.keys()) {
      if (!allowed.includes(key)) throw new Error(`RUN --mount=${spec}: ${key === "from" || key === "rw" || key === "readwrite" ? `"${key}" is not supported yet` : `unknown option "${key}"`}`);
    }
    if (type === "secret" || type === "ssh") {
      secretMount(spec, type, f, ctx, out);
      continue;
    }
    const rawTarget = f.get("target") ?? f.get("dst") ?? f.get("destination");
    if (!rawTarget) throw new Error(`RUN --mount=${spec}: a target is required`);
    const target = path.posix.resolve(ctx.workdir || "/", rawTarget);
    const readOnly = truthy(f.get("readonly")) || truthy(f.get("ro"));
    switch (type) {
      case "cache": {
        const id = f.get("id") ?? target;
        for (const key of ["uid", "gid"]) {
          if ((f.get(key) ?? "0") !== "0") throw new Error(`RUN --mount=${spec}: ${key} other than 0 is not supported yet`);
        }
        const mode = f.get("mode") ?? "0755";
        if (!/^[0-7]{3,4}$/.test(mode)) throw new Error(`RUN --mount=${spec}: mode must be octal`);
        const dir = path.join(ctx.store.buildCache.mountsDir, "cache", createHash("sha256").update(id).digest("hex").slice(0, 32));
        if (!existsSync(dir)) {
          mkdirSync(dir, { recursive: true });
          chmodSync(dir, parseInt(mode, 8));
        }
        out.mounts.push(`type=bind,source=${noComma(dir, "the cache directory")},target=${noComma(target, "the target")}${readOnly ? ",readonly" : ""}`);
        out.description.push({ cache: id, target, readOnly, mode });
        break;
      }
      case "bind": {
        const source = f.get("source") ?? f.get("src") ?? ".";
        // Resolved inside the context, as COPY resolves its sources; always read-only (writes
        // would land in the user's own files).
        const [match] = ctx.context.match(source);
        if (!match) throw new Error(`RUN --mount=${spec}: ${source} not found in the build context`);
        const hostPath = path.join(ctx.contextDir, match.rel);
        out.mounts.push(`type=bind,source=${noComma(hostPath, "the source")},target=${noComma(target, "the target")},readonly`);
        out.description.push({ bind: source, target, content: hashSources(ctx.context, [source]) });
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
  return out;
}

/** type=secret and type=ssh: what the RUN gets, or nothing when the build has no such source. */
function secretMount(spec: string, type: "secret" | "ssh", f: Map<string, string>, ctx: RunMountContext, out: RunMounts): void {
  const rawTarget = f.get("target") ?? f.get("dst") ?? f.get("destination");
  const id = f.get("id") ?? (type === "ssh" ? "default" : rawTarget ? path.posix.basename(rawTarget) : "");
  if (id === "") throw new Error(`RUN --mount=${spec}: a secret needs an id or a target`);
  const required = truthy(f.get("required"));
  for (const key of ["uid", "gid"]) {
    if ((f.get(key) ?? "0") !== "0") throw new Error(`RUN --mount=${spec}: ${key} other than 0 is not supported yet`);
  }
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
  out.description.push({ secret: id, target: rawTarget ?? null, env: env ?? null });
  if (env !== undefined) out.secretEnv.push([env, content.toString("utf8")]);
  if (env === undefined || rawTarget !== undefined) {
    out.secretFiles.push({ target: path.posix.resolve(ctx.workdir || "/", rawTarget ?? `/run/secrets/${id}`), content, mode: parseInt(mode, 8) });
  }
}

