// The build context and the Dockerfile, as `docker build` takes them: a directory (with
// ./Dockerfile or -f FILE, -f - for standard input), or `-` for standard input holding either a
// tar archive of the context (plain or compressed) or just a Dockerfile (a build without
// context). The .dockerignore at the context's root (or FILE.dockerignore beside a -f FILE, as
// BuildKit allows) says what COPY and ADD cannot see.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { detectCompression, withDecompressed } from "../image/archive/compression.js";
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
function defaultDockerfile(dir: string): string {
  for (const name of ["Dockerfile", "Containerfile", "dockerfile"]) {
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  throw new TsrunError(`cannot find a Dockerfile in ${dir} (give one with -f)`, 1);
}

function readDockerfile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TsrunError(`cannot read the Dockerfile ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`, 1);
  }
}

function newTempDir(tmpDir: string, kind: string): string {
  const dir = path.join(tmpDir, `build-${kind}-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Unpacks a context tarball (its first bytes already read) into a new directory. */
async function unpackContext(head: Buffer, rest: AsyncIterator<Buffer | string>, dir: string): Promise<void> {
  async function* all(): AsyncGenerator<Buffer> {
    yield head;
    for (let next = await rest.next(); !next.done; next = await rest.next()) yield toBuffer(next.value);
  }
  // node-tar is loaded only for this case: most builds have a directory context.
  const tar = await import("tar");
  await withDecompressed(all(), "the build context", async (chunks) => {
    // The user's own files, unpacked as the user: no owners kept, no path may leave dir.
    await pipeline(Readable.from(chunks), tar.x({ cwd: dir, strict: true, preservePaths: false, preserveOwner: false }));
  });
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
  const input = (opts.stdin ?? process.stdin)[Symbol.asyncIterator]();
  const headChunks: Buffer[] = [];
  let headLength = 0;
  let ended = false;
  while (headLength < 512) {
    const next = await input.next();
    if (next.done) {
      ended = true;
      break;
    }
    const chunk = toBuffer(next.value);
    headChunks.push(chunk);
    headLength += chunk.length;
  }
  const head = Buffer.concat(headChunks);
  const isArchive = detectCompression(head) !== "none" || isTarHeader(head.subarray(0, 512));
  if (!isArchive) {
    // A Dockerfile on standard input: a build without context (COPY has nothing to copy).
    const rest = ended ? Buffer.alloc(0) : await readAll({ [Symbol.asyncIterator]: () => input });
    const dir = newTempDir(opts.tmpDir, "empty");
    return { dir, dockerfile: Buffer.concat([head, rest]), dockerfileName: "Dockerfile", ignore: [], temporary: dir };
  }
  const dir = newTempDir(opts.tmpDir, "context");
  try {
    try {
      await unpackContext(head, input, dir);
    } catch (err) {
      throw new TsrunError(`unable to prepare context: ${(err as Error).message}`, 1);
    }
    const inside = path.resolve(dir, path.posix.normalize(`/${file ?? "Dockerfile"}`).slice(1));
    const specific = `${inside}.dockerignore`;
    return {
      dir,
      dockerfile: readDockerfile(inside),
      dockerfileName: path.basename(inside),
      ignore: existsSync(specific) ? readIgnore(specific) : readIgnore(path.join(dir, ".dockerignore")),
      temporary: dir,
    };
  } catch (err) {
    // The user's own files, unpacked as the user: removable from here.
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
