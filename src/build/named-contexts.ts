// `build --build-context NAME=VALUE`, BuildKit's named contexts: a local directory or an image
// (docker-image://REF, docker-image://scratch) that stands for NAME wherever the Dockerfile
// names a base or a source: `FROM NAME`, `COPY --from=NAME`, `RUN --mount=from=NAME`, and a
// stage `AS NAME`, which it replaces (the stage's instructions are not run). Names compare as
// BuildKit compares them: as image references, short form, without ":latest" (`alpine`,
// `alpine:latest` and `docker.io/library/alpine` are one name). A directory brings its own
// .dockerignore; its files are owned by root, as the main context's are.
// Git, HTTP and oci-layout contexts are refused with a message saying so.
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { normaliseName, ReferenceError } from "../image/reference.js";
import { familiarName } from "../image/inspect.js";
import { readDockerignore } from "./path-patterns.js";

export type NamedContext =
  | { kind: "image"; name: string; ref: string }
  | { kind: "scratch"; name: string }
  | { kind: "dir"; name: string; dir: string; ignore: string[] };

export class NamedContextError extends Error {}

/** The name BuildKit looks a context up by: the familiar reference without ":latest". */
export function contextKey(name: string): string {
  try {
    return familiarName(normaliseName(name)).replace(/:latest$/, "");
  } catch (err) {
    if (err instanceof ReferenceError) return name;
    throw err;
  }
}

/** Parses the --build-context values (directories relative to cwd). */
export function parseNamedContexts(values: readonly string[], cwd = process.cwd()): Map<string, NamedContext> {
  const out = new Map<string, NamedContext>();
  for (const item of values) {
    const eq = item.indexOf("=");
    if (eq <= 0 || eq === item.length - 1) throw new NamedContextError(`invalid --build-context "${item}": expected NAME=DIRECTORY or NAME=docker-image://REFERENCE`);
    const rawName = item.slice(0, eq);
    const value = item.slice(eq + 1);
    try {
      normaliseName(rawName);
    } catch (err) {
      throw new NamedContextError(`invalid --build-context name "${rawName}": ${(err as Error).message}`);
    }
    const name = contextKey(rawName);
    if (value.startsWith("docker-image://")) {
      const ref = value.slice("docker-image://".length);
      if (ref === "scratch") {
        out.set(name, { kind: "scratch", name });
        continue;
      }
      try {
        normaliseName(ref);
      } catch (err) {
        throw new NamedContextError(`invalid --build-context ${item}: ${(err as Error).message}`);
      }
      out.set(name, { kind: "image", name, ref });
      continue;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) || value.startsWith("git@") || /^(target|input):/.test(value)) {
      throw new NamedContextError(`--build-context ${item}: only a local directory or docker-image://REFERENCE is supported (not git, HTTP, oci-layout or bake targets)`);
    }
    const dir = path.resolve(cwd, value);
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      throw new NamedContextError(`--build-context ${item}: path "${value}" not found`);
    }
    if (!isDir) throw new NamedContextError(`--build-context ${item}: "${value}" is not a directory`);
    const ignoreFile = path.join(dir, ".dockerignore");
    out.set(name, { kind: "dir", name, dir, ignore: existsSync(ignoreFile) ? readDockerignore(readFileSync(ignoreFile, "utf8")) : [] });
  }
  return out;
}
