// `cp` between the host and a container (running or stopped), in both directions, with `-` for
// a tar stream. The container side runs in the storage worker inside the container's user
// namespace and resolves every path inside the container's root (see copy-worker.ts); the host
// side runs the same code as the user, with the host's "/" as the root.
import { closeSync, constants, createReadStream, createWriteStream, lstatSync, mkdirSync, openSync, statSync, rmSync, type Stats } from "node:fs";
import path from "node:path";
import type { Writable } from "node:stream";
import { randomBytes } from "../random.js";
import { copyIn, copyOut } from "./copy-worker.js";
import type { Containers } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { native } from "../native.js";
import { workerCommand } from "../store/worker-command.js";
import { currentMapping, maxContainerId } from "../userns.js";
import { runInUserNamespace } from "../userns-run.js";
import { TsrunError } from "../errors.js";

// O_PATH is not in fs.constants; this is its value on Linux x86_64 and arm64.
const O_PATH = 0o10000000;
/** Owners are forced to the user's own on the host side: no id limit applies there. */
const MAX_ID = 0xffffffff;

/** Runs the copy worker against the container's root: its live root, or a private overlay. */
async function runCopyWorker(containers: Containers, record: ContainerRecord, args: string[], stdio: { stdin?: number; stdout?: number }): Promise<void> {
  let result;
  if (record.state.status === "running") {
    result = await runInUserNamespace(workerCommand(args[0] as string, `/proc/${record.state.pid}/root`, ...args.slice(1)), process.env, {
      joinUserNamespace: `/proc/${record.state.pid}/ns/user`,
      ...stdio,
    });
  } else {
    const dir = containers.records.containerDir(record.id);
    const mnt = path.join(containers.store.paths.tmp, `cp-${process.pid}-${randomBytes(4).toString("hex")}`);
    mkdirSync(mnt, { recursive: true });
    const esc = (p: string): string => p.replace(/([\\,:])/g, "\\$1");
    const lowers = containers.imageLayerDirs(record).map(esc);
    const options = `lowerdir=${lowers.join(":")},upperdir=${esc(path.join(dir, "upper"))},workdir=${esc(path.join(dir, "work"))},userxattr`;
    try {
      result = await runInUserNamespace(
        ["sh", "-c", 'mount -n -t overlay overlay -o "$1" "$2" || exit 125; shift 2; exec "$@"', "cp", options, mnt, ...workerCommand(args[0] as string, mnt, ...args.slice(1))],
        process.env,
        // A container with its own id mapping (keep-id) is read and written in that mapping.
        { ...stdio, userns: containers.usernsOf(record) },
      );
    } finally {
      rmSync(mnt, { recursive: true, force: true });
    }
  }
  if (result.code !== 0) {
    const lines = result.stderr.trim().split("\n");
    throw new TsrunError(`cp: ${lines[lines.length - 1] || `exit ${result.code}`}`);
  }
}

/** Splits "CONTAINER:PATH"; undefined when the argument is a host path. */
export function splitContainerPath(arg: string): { container: string; path: string } | undefined {
  if (arg.startsWith("/") || arg.startsWith(".") || arg === "-") return undefined;
  const colon = arg.indexOf(":");
  if (colon <= 0) return undefined;
  return { container: arg.slice(0, colon), path: arg.slice(colon + 1) || "/" };
}

/**
 * `cp CONTAINER:SRC DEST` with Docker's rules: into DEST when it is a directory; as DEST when it
 * does not exist (its parent must) or when a file replaces a file; never a directory over a file,
 * never a file as a missing "DEST/". The host side is copy-worker's copyIn run as the user with
 * the host's "/" as the root, so names keep their bytes and nothing is written outside DEST.
 */
export async function copyFromContainer(containers: Containers, query: string, src: string, dest: string, opts: { follow: boolean }): Promise<void> {
  const record = containers.get(query);
  const addon = native();
  if (dest === "-") {
    await runCopyWorker(containers, record, ["cp-out", src, opts.follow ? "1" : "0"], { stdout: 1 });
    return;
  }
  const top = /\/\.$/.test(src) ? "." : path.posix.basename(path.posix.normalize(`/${src}`)) || ".";
  const destIsDir = statOrUndefined(dest)?.isDirectory() ?? false;
  const cwd = destIsDir ? dest : path.dirname(path.resolve(dest));
  if (!destIsDir && !statOrUndefined(cwd)?.isDirectory()) throw new TsrunError(`cp: destination directory ${cwd} does not exist`);
  // A trailing "/" or "/." says what DEST must be: path.resolve would drop it.
  const target = path.resolve(dest) + (/\/\.?$/.test(dest) && path.resolve(dest) !== "/" ? "/" : "");
  const [r, w] = addon.pipe();
  const input = createReadStream("", { fd: r });
  const rootFd = openSync("/", O_PATH | constants.O_DIRECTORY);
  // An extraction that fails before the stream's end is the cause of whatever the worker then
  // reports (its writes fail); one that fails after it may be the effect of a worker that failed.
  let streamEnded = false;
  input.once("end", () => (streamEnded = true));
  let extractFailure: { error: unknown; beforeTheEnd: boolean } | undefined;
  const extracting = copyIn(rootFd, target, top, "either", input, { maxUid: MAX_ID, maxGid: MAX_ID, owner: hostUser(), place: "", shown: dest }).catch((error: unknown) => {
    extractFailure = { error, beforeTheEnd: !streamEnded };
    // The worker may still be writing: let it see a closed pipe rather than block.
    input.destroy();
  });
  let workerError: unknown;
  try {
    await runCopyWorker(containers, record, ["cp-out", src, opts.follow ? "1" : "0"], { stdout: w });
  } catch (err) {
    workerError = err;
  } finally {
    closeSync(w);
  }
  await extracting;
  closeSync(rootFd);
  if (workerError !== undefined && !extractFailure?.beforeTheEnd) throw workerError;
  if (extractFailure) throw new TsrunError(`cp: ${(extractFailure.error as Error).message}`);
}

/** Owners on the host side of cp: the user running tsrun, as docker cp extracts. */
function hostUser(): { uid: number; gid: number } {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

function statOrUndefined(p: string): Stats | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

export async function copyToContainer(containers: Containers, src: string, query: string, dest: string, opts: { archive: boolean; follow: boolean }): Promise<void> {
  const record = containers.get(query);
  const mapping = currentMapping();
  const userns = containers.usernsOf(record);
  const limits = `${maxContainerId(mapping, "uid", userns)}:${maxContainerId(mapping, "gid", userns)}:${opts.archive ? 1 : 0}`;
  if (src === "-") {
    await runCopyWorker(containers, record, ["cp-in", dest, ".", limits, "stream"], { stdin: 0 });
    return;
  }
  let srcStat: Stats;
  try {
    srcStat = opts.follow ? statSync(src) : lstatSync(src);
  } catch {
    throw new TsrunError(`cp: ${src}: no such file or directory`);
  }
  const abs = path.resolve(src);
  const contentsOnly = /\/\.$/.test(src);
  const kind = contentsOnly || srcStat.isDirectory() ? "directory" : "file";
  const top = contentsOnly ? "." : path.basename(abs);
  const addon = native();
  const [r, w] = addon.pipe();
  // The host side is copy-worker's copyOut with the host's "/" as the root (as the user): the
  // same walk, names and rules as out of a container, a trailing "/" or "/." meaning the same.
  const source = abs + (contentsOnly ? "/." : /\/$/.test(src) && abs !== "/" ? "/" : "");
  const out = createWriteStream("", { fd: w });
  const rootFd = openSync("/", O_PATH | constants.O_DIRECTORY);
  let packFailure: unknown;
  const packing = copyOut(rootFd, source, opts.follow, { write: (chunk) => writeWithBackpressure(out, chunk) }, "")
    .then(
      () => new Promise<void>((resolve) => out.end(resolve)),
      (err: unknown) => {
        packFailure = err;
        // The worker sees the stream cut short, rather than wait for the rest.
        out.destroy();
      },
    )
    .finally(() => closeSync(rootFd));
  const copying = runCopyWorker(containers, record, ["cp-in", dest, top, limits, kind], { stdin: r });
  closeSync(r);
  const [, copied] = await Promise.allSettled([packing, copying]);
  out.destroy();
  // A worker that refused the copy closed the pipe under the packer (EPIPE): its message is
  // the cause. Any other failure to read the source is, and the worker then saw a cut stream.
  const brokenPipe = (packFailure as { code?: unknown } | undefined)?.code === "EPIPE";
  if (copied.status === "rejected" && (packFailure === undefined || brokenPipe)) throw copied.reason;
  if (packFailure !== undefined) throw new TsrunError(`cp: ${(packFailure as Error).message}`);
}

/** Writes a chunk, waiting while the pipe is full. */
function writeWithBackpressure(out: Writable, chunk: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (out.write(chunk, (err) => (err ? reject(err) : undefined))) resolve();
    else out.once("drain", () => resolve());
  });
}
