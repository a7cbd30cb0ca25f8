// `cp` between the host and a container (running or stopped), in both directions, with `-` for
// a tar stream. The container side runs in the storage worker inside the container's user
// namespace and resolves every path inside the container's root (see copy-worker.ts); the host
// side is the user's own files, handled as the user.
import { closeSync, lstatSync, mkdirSync, statSync, rmSync, type Stats } from "node:fs";
import path from "node:path";
import { randomBytes } from "../random.js";
import { createReadStream, createWriteStream } from "node:fs";
import * as tar from "tar";
import type { Containers } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { native, packageRoot } from "../native.js";
import { currentMapping, maxContainerId } from "../userns.js";
import { runInUserNamespace } from "../userns-run.js";
import { TsrunError } from "../errors.js";

const worker = (): string => path.join(packageRoot(), "dist", "worker.cjs");

/** Runs the copy worker against the container's root: its live root, or a private overlay. */
async function runCopyWorker(containers: Containers, record: ContainerRecord, args: string[], stdio: { stdin?: number; stdout?: number }): Promise<void> {
  let result;
  if (record.state.status === "running") {
    result = await runInUserNamespace([process.execPath, worker(), args[0] as string, `/proc/${record.state.pid}/root`, ...args.slice(1)], process.env, {
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
        ["sh", "-c", 'mount -n -t overlay overlay -o "$1" "$2" || exit 125; shift 2; exec "$@"', "cp", options, mnt, process.execPath, worker(), args[0] as string, mnt, ...args.slice(1)],
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
 * never a file as a missing "DEST/". What the source is shows in the stream's first entry, so
 * the rules are checked before anything is written.
 */
export async function copyFromContainer(containers: Containers, query: string, src: string, dest: string, opts: { follow: boolean }): Promise<void> {
  const record = containers.get(query);
  const addon = native();
  if (dest === "-") {
    await runCopyWorker(containers, record, ["cp-out", src, opts.follow ? "1" : "0"], { stdout: 1 });
    return;
  }
  const top = /\/\.$/.test(src) ? "." : path.posix.basename(path.posix.normalize(`/${src}`)) || ".";
  const destStat = statOrUndefined(dest);
  const destIsDir = destStat?.isDirectory() ?? false;
  const cwd = destIsDir ? dest : path.dirname(path.resolve(dest));
  if (!destIsDir && !statOrUndefined(cwd)?.isDirectory()) throw new TsrunError(`cp: destination directory ${cwd} does not exist`);
  // Not a directory: the copy takes the destination's name.
  const rename = destIsDir ? undefined : path.basename(dest);
  let refused: string | undefined;
  let first = true;
  const [r, w] = addon.pipe();
  const extract = new Promise<void>((resolve, reject) => {
    const stream = createReadStream("", { fd: r });
    const x = tar.x({
      cwd,
      preserveOwner: false,
      // Keep symlink targets as they are in the container (absolute ones too). Entry names come
      // from our own walk of real directories: none climbs out or passes through a symlink.
      preservePaths: true,
      filter: (_p, entry) => {
        if (first) {
          first = false;
          const isDir = "type" in entry && entry.type === "Directory";
          if (!destIsDir && destStat !== undefined && isDir) refused = `cannot copy a directory to a file (${dest})`;
          else if (destStat === undefined && !isDir && /\/\.?$/.test(dest)) refused = `${dest}: no such directory`;
        }
        return refused === undefined;
      },
      onReadEntry: (entry) => {
        if (!rename) return;
        if (top !== ".") entry.path = rename + entry.path.slice(top.length);
        else entry.path = entry.path === "." || entry.path === "./" ? `${rename}/` : `${rename}/${entry.path.replace(/^\.\//, "")}`;
      },
    });
    stream.pipe(x);
    x.on("finish", () => resolve());
    x.on("error", reject);
    stream.on("error", reject);
  });
  try {
    await runCopyWorker(containers, record, ["cp-out", src, opts.follow ? "1" : "0"], { stdout: w });
  } finally {
    closeSync(w);
  }
  await extract;
  if (refused !== undefined) throw new TsrunError(`cp: ${refused}`);
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
  const pack = tar.c(
    {
      cwd: contentsOnly ? abs : path.dirname(abs),
      follow: opts.follow,
      // Owners are recorded; the container side keeps them only with -a.
      portable: false,
    },
    [top],
  );
  const out = createWriteStream("", { fd: w });
  const piped = new Promise<void>((resolve, reject) => {
    pack.pipe(out);
    out.on("finish", () => resolve());
    out.on("error", reject);
  });
  const copying = runCopyWorker(containers, record, ["cp-in", dest, top, limits, kind], { stdin: r });
  closeSync(r);
  await Promise.all([piped, copying]);
}
