// Storage helper: runs inside the user namespace (root over the subordinate ids), started by
// Store.unpack. Node cannot enter a user namespace itself, so this is a separate process.
import { closeSync, constants, openSync, readFileSync, writeFileSync } from "node:fs";

const O_PATH = 0o10000000;
import path from "node:path";
import { runChangesJob, runExportJob, runPackJob } from "./pack.js";
import { runTreeSizeJob } from "./tree-size.js";
// node-tar, zlib and child_process are loaded by the commands that need them: the pack, changes
// and export commands (commit, diff, export) start about 15 ms sooner without them.
const loadUnpack = (): Promise<typeof import("./unpack.js")> => import("./unpack.js");
const loadCopy = (): Promise<typeof import("../container/copy-worker.js")> => import("../container/copy-worker.js");
const loadBuildCopy = (): Promise<typeof import("../build/copy-worker.js")> => import("../build/copy-worker.js");
import type { UnpackJob, UnpackJobResult } from "./store.js";

/** Layers are read 1 MiB at a time, into one reused buffer (readReused). */
const READ_CHUNK = 1 << 20;

interface JobFile {
  jobs: UnpackJob[];
  resultFile: string;
  maxUid: number;
  maxGid: number;
}

async function unpackAll(jobFile: string): Promise<void> {
  const { readReused, unpackLayer } = await loadUnpack();
  const spec = JSON.parse(readFileSync(jobFile, "utf8")) as JobFile;
  const results: UnpackJobResult[] = [];
  for (const job of spec.jobs) {
    const warnings: string[] = [];
    // "-": the layer arrives on standard input, as the CLI downloads it.
    const fd = job.blob === "-" ? 0 : openSync(job.blob, "r");
    const r = await unpackLayer(readReused(fd, READ_CHUNK), path.join(job.dest, "diff"), {
      reusedChunks: true,
      digestInput: job.blob !== "-",
      ...(job.inputDigest ? { inputDigest: job.inputDigest } : {}),
      ...(job.fromFeed ? { fromFeed: true } : {}),
      maxUid: spec.maxUid,
      maxGid: spec.maxGid,
      // Podman's ignore_chown_errors: with a single-id mapping, images whose files belong to
      // other users can still be used, their owners squashed to root (with a warning).
      squashUnmappedOwners: process.env.TSRUN_IGNORE_CHOWN_ERRORS === "true",
      onWarning: (m: string) => warnings.push(m),
    }).finally(() => {
      if (fd !== 0) closeSync(fd);
    });
    results.push({ ...r, warnings });
  }
  writeFileSync(spec.resultFile, JSON.stringify(results));
}

/** Resolves the container root given on the command line to an fd (never to a path). */
function openRoot(root: string): number {
  return openSync(root, O_PATH | constants.O_DIRECTORY);
}

async function main(): Promise<void> {
  const [command, arg, ...rest] = process.argv.slice(2);
  if (command === "unpack" && arg) {
    await unpackAll(arg);
  } else if (command === "cp-out" && arg && rest.length === 2) {
    // cp-out ROOT SRC FOLLOW: tar on stdout, with backpressure.
    const rootFd = openRoot(arg);
    const { copyOut } = await loadCopy();
    await copyOut(rootFd, rest[0] as string, rest[1] === "1", {
      write: (chunk) => new Promise<void>((resolve, reject) => {
        if (process.stdout.write(chunk, (err) => (err ? reject(err) : undefined))) resolve();
        else process.stdout.once("drain", () => resolve());
      }),
    });
    await new Promise<void>((resolve) => process.stdout.end(() => resolve()));
  } else if (command === "cp-in" && arg && rest.length === 4) {
    // cp-in ROOT DEST TOP MAXUID:MAXGID:KEEP KIND: tar on stdin.
    const [maxUid, maxGid, keep] = (rest[2] as string).split(":").map(Number) as [number, number, number];
    const { copyIn } = await loadCopy();
    const kind = rest[3] as import("../container/copy-worker.js").CopyInKind;
    // Without -a, what is copied in belongs to the container's root, as with docker cp.
    await copyIn(openRoot(arg), rest[0] as string, rest[1] as string, kind, process.stdin, { maxUid, maxGid, ...(keep === 1 ? {} : { owner: { uid: 0, gid: 0 } }) });
  } else if (command === "pack" && arg) {
    await runPackJob(arg);
  } else if (command === "changes" && arg) {
    runChangesJob(arg);
  } else if (command === "tree-size" && arg) {
    runTreeSizeJob(arg);
  } else if (command === "export" && arg) {
    runExportJob(arg);
  } else if (command === "build-copy" && arg) {
    await (await loadBuildCopy()).runCopyJob(arg);
  } else {
    throw new Error(`unknown worker command ${command ?? ""}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
