// The build context and the Dockerfile, as `docker build` takes them: a directory (with
// ./Dockerfile or -f FILE, -f - for standard input), or `-` for standard input holding either a
// tar archive of the context (plain or compressed) or just a Dockerfile (a build without
// context). The .dockerignore at the context's root (or FILE.dockerignore beside a -f FILE, as
// BuildKit allows) says what COPY and ADD cannot see.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { scratchPath } from "../store/temps.js";
import path from "node:path";
import { Readable } from "node:stream";
import { withDecompressed } from "../image/archive/compression.js";
import { readDockerignore } from "./path-patterns.js";
import { isTarHeader } from "./tar-detect.js";
import { TsrunError } from "../errors.js";

export interface BuildContext {
  /** The directory COPY and ADD read from (an empty one when the build has no context). */
  dir: string;
  dockerfile: Buffer;
  /** The Dockerfile's name in messages ("Dockerfile:3: ..."). */
  dockerfileName: string;
  /** .dockerignore patterns. */
  ignore: string[];
  /** A directory this module made (unpacked tarball, empty context): the caller removes it. */
  temporary: string | undefined;
}

export interface ContextOptions {
  /** A directory, or "-" for standard input. */
  context: string;
  /** -f: a path (relative to the current directory; inside the archive for a tarball context), or "-". */
  file?: string | undefined;
  /** Standard input (process.stdin by default). */
  stdin?: AsyncIterable<Buffer | string>;
  /** Where a tarball context is unpacked (the store's tmp dir). */
  tmpDir: string;
  /** Warnings about a tarball context (device nodes left out). */
  warn?: ((message: string) => void) | undefined;
}

const toBuffer = (chunk: Buffer | string): Buffer => (typeof chunk === "string" ? Buffer.from(chunk) : chunk);

async function readAll(input: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(toBuffer(chunk));
  return Buffer.concat(chunks);
}

function readIgnore(file: string): string[] {
  return existsSync(file) ? readDockerignore(readFileSync(file, "utf8")) : [];
}

/** The Dockerfile a context directory has when no -f is given. */
function defaultDockerfile(dir: string, shownAs = dir): string {
  for (const name of ["Dockerfile", "Containerfile", "dockerfile"]) {
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  throw new TsrunError(`cannot find a Dockerfile in ${shownAs} (give one with -f)`, 1);
}

/** shownAs: the name the user gave (a context from standard input lives in a temporary dir). */
function readDockerfile(file: string, shownAs = file): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TsrunError(`cannot read the Dockerfile ${shownAs}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`, 1);
  }
}

function newTempDir(tmpDir: string, kind: string): string {
  // Named with our pid: a killed build's context is swept as scratch files of a dead process.
  const dir = scratchPath(tmpDir, `build-${kind}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * Reads standard input once: a tar archive (plain or compressed) is unpacked into dir and null
 * returned; anything else is a Dockerfile, returned whole.
 */
async function readStdinContext(input: AsyncIterable<Buffer | string>, dir: string, onWarning?: (message: string) => void): Promise<Buffer | null> {
  let dockerfile: Buffer | null = null;
  await withDecompressed(input, "the build context", async (chunks) => {
    const iterator = chunks[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let length = 0;
    let done = false;
    while (length < 512 && !done) {
      const next = await iterator.next();
      if (next.done) done = true;
      else {
        head.push(next.value);
        length += next.value.length;
      }
    }
    const first = Buffer.concat(head);
    const rest: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => iterator };
    if (!isTarHeader(first.subarray(0, 512))) {
      dockerfile = Buffer.concat([first, done ? Buffer.alloc(0) : await readAll(rest)]);
      return;
    }
    async function* all(): AsyncGenerator<Buffer> {
      yield first;
      yield* rest;
    }
    // The layer unpacker (loaded only for this case: most builds have a directory context)
    // resolves every path inside dir and keeps symlink targets as written, absolute or leading
    // up (COPY copies links as links, as Docker does); node-tar would rewrite or refuse them.
    // The user's own files, unpacked as the user: every entry is the user's.
    const { unpackLayer } = await import("../store/unpack.js");
    const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    // A context is plain files: ".wh.*" names are names, as in Docker's context extraction.
    // hostUser: a read-only directory in the archive still receives its contents.
    await unpackLayer(Readable.from(all()), dir, { maxUid: owner.uid, maxGid: owner.gid, forceOwner: owner, hostUser: true, whiteouts: false, onWarning: onWarning ?? (() => undefined) });
  });
  return dockerfile;
}

export async function prepareContext(opts: ContextOptions): Promise<BuildContext> {
  const file = opts.file;
  if (opts.context !== "-") {
    let st;
    try {
      st = statSync(opts.context);
    } catch {
      throw new TsrunError(`unable to prepare context: path "${opts.context}" not found`, 1);
    }
    if (!st.isDirectory()) throw new TsrunError(`unable to prepare context: "${opts.context}" is not a directory`, 1);
    const dir = path.resolve(opts.context);
    if (file === "-") {
      return { dir, dockerfile: await readAll(opts.stdin ?? process.stdin), dockerfileName: "Dockerfile", ignore: readIgnore(path.join(dir, ".dockerignore")), temporary: undefined };
    }
    const dockerfilePath = file === undefined ? defaultDockerfile(dir) : path.resolve(file);
    const specific = `${dockerfilePath}.dockerignore`;
    const ignore = existsSync(specific) ? readIgnore(specific) : readIgnore(path.join(dir, ".dockerignore"));
    return { dir, dockerfile: readDockerfile(dockerfilePath), dockerfileName: path.basename(dockerfilePath), ignore, temporary: undefined };
  }

  if (file === "-") throw new TsrunError("the context and the Dockerfile cannot both come from standard input", 1);
  const dir = newTempDir(opts.tmpDir, "context");
  let fromStdin: Buffer | null;
  try {
    fromStdin = await readStdinContext(opts.stdin ?? process.stdin, dir, opts.warn);
  } catch (err) {
    removeContextDir(dir);
    throw new TsrunError(`unable to prepare context: ${(err as Error).message}`, 1);
  }
  // A Dockerfile on standard input: a build without context (COPY has nothing to copy).
  if (fromStdin !== null) return { dir, dockerfile: fromStdin, dockerfileName: "Dockerfile", ignore: [], temporary: dir };
  try {
    const inside = file === undefined ? defaultDockerfile(dir, "the context archive") : path.resolve(dir, path.posix.normalize(`/${file}`).slice(1));
    // A symlink in the archive must not make us read a file of the host as the Dockerfile.
    const real = existsSync(inside) ? realpathSync(inside) : inside;
    if (!real.startsWith(`${realpathSync(dir)}/`)) throw new TsrunError(`the Dockerfile ${file ?? path.basename(inside)} in the context archive points outside it`, 1);
    const specific = `${inside}.dockerignore`;
    return {
      dir,
      dockerfile: readDockerfile(inside, `${file ?? path.basename(inside)} in the context archive`),
      dockerfileName: path.basename(inside),
      ignore: existsSync(specific) ? readIgnore(specific) : readIgnore(path.join(dir, ".dockerignore")),
      temporary: dir,
    };
  } catch (err) {
    removeContextDir(dir);
    throw err;
  }
}

/**
 * Removes a context unpacked from standard input. The user's own files, unpacked as the user:
 * removable from here once its read-only directories (kept from the archive) are opened up.
 */
export function removeContextDir(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EPERM") throw err;
  }
  // Names as bytes: an archive's names need not be UTF-8. Dirent types come from lstat's view,
  // so a symlink to a directory is never followed.
  const openUp = (d: Buffer): void => {
    chmodSync(d, 0o700);
    for (const entry of readdirSync(d, { withFileTypes: true, encoding: "buffer" })) {
      if (entry.isDirectory()) openUp(Buffer.concat([d, Buffer.from("/"), entry.name]));
    }
  };
  openUp(Buffer.from(dir));
  rmSync(dir, { recursive: true, force: true });
}
