// RUN --mount, as BuildKit spells it: `type=cache` (a directory kept between builds, shared by
// every RUN that names the same id: package manager caches), `type=bind` (a path of the build
// context, read-only), `type=tmpfs`. The mounts become the RUN container's --mount specs; what
// is under their targets never goes into the layer (the commit scan leaves mount targets out).
// Not supported yet: bind from another stage or image, writable binds, secrets, ssh.
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
}

export interface RunMounts {
  /** --mount specs for the RUN container. */
  mounts: string[];
  /** What goes into the RUN's cache key. */
  description: unknown[];
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
  const out: RunMounts = { mounts: [], description: [] };
  for (const spec of specs) {
    const f = fields(spec);
    const type = f.get("type") ?? "bind";
    const known: Record<string, string[]> = {
      cache: ["type", "target", "dst", "destination", "id", "sharing", "mode", "uid", "gid", "readonly", "ro"],
      bind: ["type", "target", "dst", "destination", "source", "src", "readonly", "ro"],
      tmpfs: ["type", "target", "dst", "destination", "size"],
    };
    const allowed = known[type];
    if (!allowed) throw new Error(`RUN --mount=type=${type} is not supported yet (cache, bind and tmpfs are)`);
    for (const key of f.keys()) {
      if (!allowed.includes(key)) throw new Error(`RUN --mount=${spec}: ${key === "from" || key === "rw" || key === "readwrite" ? `"${key}" is not supported yet` : `unknown option "${key}"`}`);
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
