// Image layers for a container whose user namespace maps ids differently (--userns keep-id or
// nomap). Layers are stored as the default mapping sees them (image root = the calling user),
// so under another mapping every owner would appear shifted: root's files would belong to the
// user, and so on. Like Podman without idmapped mounts (which need host root here), tsrun gives
// such a container its own copies of the layers, owned as the image says under its mapping.
//
// The copy is a tar stream between two storage helpers: one reads in the default mapping, one
// writes in the container's. Owners keep their numbers inside, so the kernel does the shifting,
// file capabilities included (their root id follows the writer's namespace).
import { closeSync, mkdirSync } from "node:fs";
import path from "node:path";
import { native } from "../native.js";
import type { UsernsMode } from "../userns.js";
import { runInUserNamespace } from "../userns-run.js";
import { TsrunError } from "../errors.js";

const TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*"];

/** Where a container keeps its copies: lower/0 is the bottom layer. */
export function remappedLayerDir(containerDir: string, index: number): string {
  return path.join(containerDir, "lower", String(index));
}

/**
 * Copies each layer dir (bottom first) into the container's lower/N, owned under its mapping,
 * and gives the container's upper and work dirs to its root.
 */
export async function copyLayersForMapping(layerDirs: string[], containerDir: string, mode: UsernsMode): Promise<string[]> {
  const addon = native();
  const dests = layerDirs.map((_, i) => remappedLayerDir(containerDir, i));
  mkdirSync(path.join(containerDir, "lower"), { recursive: true });
  // The container's root may not map the calling user (nomap), and overlay mounts read-only
  // when its root cannot write the upper and work dirs: the layer dirs and those are given to
  // that root (subordinate id 1 in the default mapping) first. The upper dir's owner is also
  // the owner of the container's "/".
  const own = [...dests, path.join(containerDir, "upper"), path.join(containerDir, "work")];
  const made = await runInUserNamespace(["sh", "-c", 'for d; do mkdir -p "$d" && chown 1:1 "$d" || exit 1; done', "sh", ...own]);
  if (made.code !== 0) throw new TsrunError(`cannot prepare the layer copies for --userns ${mode.kind}: ${made.stderr.trim().split("\n").pop() ?? ""}`);
  const out: string[] = [];
  for (const [i, src] of layerDirs.entries()) {
    const dest = dests[i] as string;
    const [readEnd, writeEnd] = addon.pipe();
    let reader: ReturnType<typeof runInUserNamespace>;
    let writer: ReturnType<typeof runInUserNamespace>;
    try {
      // Each call keeps its own copy of its pipe end until its helper has one, so ours can go
      // at once: when one helper dies, the other sees end of file or EPIPE.
      writer = runInUserNamespace(["tar", "-C", dest, ...TAR_FLAGS, "--same-owner", "--same-permissions", "-xf", "-"], process.env, { stdin: readEnd, userns: mode });
      reader = runInUserNamespace(["tar", "-C", src, ...TAR_FLAGS, "-cf", "-", "."], process.env, { stdout: writeEnd });
    } finally {
      closeSync(readEnd);
      closeSync(writeEnd);
    }
    const [r, w] = await Promise.all([reader, writer]);
    if (r.code !== 0 || w.code !== 0) {
      const said = (w.stderr.trim() || r.stderr.trim()).split("\n").pop() ?? "";
      throw new TsrunError(`cannot copy the image's layers for --userns ${mode.kind}: ${said || `tar exited ${r.code || w.code}`}`);
    }
    out.push(dest);
  }
  return out;
}
