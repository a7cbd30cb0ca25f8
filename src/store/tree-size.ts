// The size of a directory tree as Docker counts a container's writable layer (moby's
// directory.Size): every entry but directories, a hard-linked file once.
//
// Runs in the storage worker, inside the user namespace: a container's upper dir holds files
// of subordinate uids in directories the host user may not read. The dir may belong to a running
// container that races us with symlinks, so it is walked through directory fds (openat with
// O_NOFOLLOW, listings through /proc/self/fd/N), never by path.
import { closeSync, constants, openSync, readFileSync, writeFileSync } from "node:fs";
import { native } from "../native.js";
import { listDirectory } from "./file-names.js";

const { O_DIRECTORY, O_NOFOLLOW, O_RDONLY, S_IFMT, S_IFDIR } = constants;
// Indexes into the addon's RawStat tuple.
const ST_MODE = 0;
const ST_SIZE = 3;
const ST_NLINK = 8;
const ST_INO = 9;
const ST_DEV = 10;

function gone(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP";
}

/** Bytes in the tree at dir (0 when it does not exist). */
export function treeSize(dir: string): number {
  const addon = native();
  const seen = new Set<string>();
  let total = 0;
  // Depth first, one fd open per level (not one per directory waiting its turn).
  const walk = (fd: number): void => {
    for (const name of listDirectory(fd)) {
      let st;
      try {
        st = addon.lstatAt(fd, name);
      } catch (err) {
        if (gone(err)) continue; // removed meanwhile
        throw err;
      }
      if ((st[ST_MODE] & S_IFMT) === S_IFDIR) {
        let child: number;
        try {
          child = addon.openAt(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
        } catch (err) {
          if (gone(err)) continue; // replaced by a symlink, or removed
          throw err;
        }
        try {
          walk(child);
        } finally {
          closeSync(child);
        }
        continue;
      }
      if (st[ST_SIZE] === 0) continue;
      if (st[ST_NLINK] > 1) {
        const key = `${st[ST_DEV]}:${st[ST_INO]}`;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      total += st[ST_SIZE];
    }
  };
  let top: number;
  try {
    top = openSync(dir, O_RDONLY | O_DIRECTORY);
  } catch (err) {
    if (gone(err)) return 0;
    throw err;
  }
  try {
    walk(top);
  } finally {
    closeSync(top);
  }
  return total;
}

/** `tree-size JOBFILE`: the sizes of the job's dirs, in order. */
export function runTreeSizeJob(jobFile: string): void {
  const { job, resultFile } = JSON.parse(readFileSync(jobFile, "utf8")) as { job: { dirs: string[] }; resultFile: string };
  writeFileSync(resultFile, JSON.stringify(job.dirs.map(treeSize)));
}
