// Build cache keys. A step's key is a hash of the previous step's key and of what the step does,
// with its words expanded, so a change anywhere invalidates that step and every one after it,
// and nothing before. What "what it does" holds, per instruction (see builder.ts):
// - FROM: the base image's ID (its config digest, which names its layers) or the base stage's
//   last key, or "scratch";
// - RUN: the command, and the ARG values it gets in its environment (USER, WORKDIR, ENV and
//   SHELL are earlier steps, so already in the chain);
// - COPY/ADD: the instruction with its flags expanded (--exclude patterns and --parents
//   included), and a hash of the sources: for the build context the paths, types, modes, owners,
//   sizes, symlink targets and contents of what the step copies (an excluded file changing does
//   not invalidate it), never their times; for another stage, that stage's last key; for a URL,
//   the content downloaded;
// - config instructions: the instruction and the config it results in.
import { closeSync, readSync } from "node:fs";
import { createHash, type Hash } from "node:crypto";
import type { SelectOptions, SourceTree, TreeEntry } from "./source-tree.js";
import { fileType, isDirectory, ST_GID, ST_MODE, ST_SIZE, ST_UID } from "./source-tree.js";
import { constants } from "node:fs";

/** The key of a step: sha256 over the parent key and a JSON description of the step. */
export function stepKey(parent: string, description: unknown): string {
  return "sha256:" + createHash("sha256").update(parent).update("\n").update(JSON.stringify(description)).digest("hex");
}

const buffer = Buffer.allocUnsafe(1 << 16);

function hashFile(tree: SourceTree, rel: string, into: Hash): void {
  const fd = tree.openFile(rel);
  try {
    for (let n = readSync(fd, buffer, 0, buffer.length, null); n > 0; n = readSync(fd, buffer, 0, buffer.length, null)) {
      into.update(buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/** One line per file: where it goes, what it is, and (for regular files) its content's hash. */
function hashEntry(tree: SourceTree, sub: string, entry: Pick<TreeEntry, "rel" | "st" | "linkTarget">, into: Hash): void {
  const st = entry.st;
  into.update(JSON.stringify([sub, st[ST_MODE], st[ST_UID], st[ST_GID], isDirectory(st) ? 0 : st[ST_SIZE], entry.linkTarget ?? null]));
  if (fileType(st) === constants.S_IFREG) {
    const content = createHash("sha256");
    hashFile(tree, entry.rel, content);
    into.update(content.digest("hex"));
  }
  into.update("\n");
}

/**
 * The content hash of COPY/ADD sources in a tree (the build context): every source as written,
 * then what it selects (with --parents and --exclude), file by file. Throws SourceNotFoundError
 * when a plain source is missing, so a build fails here, before any step runs.
 */
export function hashSources(tree: SourceTree, sources: readonly string[], options: SelectOptions = {}): string {
  const hash = createHash("sha256");
  for (const source of sources) {
    hash.update(`source ${JSON.stringify(source)}\n`);
    for (const match of tree.select(source, options)) {
      hash.update(`match ${JSON.stringify(match.requested)}\n`);
      hashEntry(tree, "", match, hash);
      if (!isDirectory(match.st)) continue;
      for (const entry of tree.walk(match)) hashEntry(tree, entry.sub, entry, hash);
    }
  }
  return "sha256:" + hash.digest("hex");
}
