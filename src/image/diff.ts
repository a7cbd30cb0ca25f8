// `diff`: what a container changed in its filesystem, as Docker lists it ("A /path" added,
// "C /path" changed, "D /path" deleted; parents of a change listed as changed; depth first with
// each directory's names sorted, the order Docker's overlay driver walks the container layer).
//
// The container's upper dir is compared with the merged view of its image's layers. One choice
// differs from Docker's overlay2 driver: a directory deleted and made again (overlay marks it
// opaque) is "C /dir" with a "D" line for each lower entry it hides, which is what a comparison of
// the two trees shows; Docker prints "D /dir" there although /dir still exists.
import path from "node:path";
import type { Containers } from "../container/run.js";
import type { ContainerRecord } from "../container/records.js";
import type { Change, UpperScanSpec } from "../store/pack.js";
import { encodeFileName } from "../store/file-names.js";

/** Where the runtime mounts over the root (see container/mounts.ts): never a change of the container's own. */
const RUNTIME_MOUNT_POINTS = ["etc/hosts", "etc/resolv.conf", "etc/hostname", "proc", "sys", "dev"];

/** What to compare for a container: its upper dir against its image's layers (topmost first). */
export function scanSpecFor(containers: Containers, record: ContainerRecord): UpperScanSpec {
  const upper = path.join(containers.records.containerDir(record.id), "upper");
  const lowers = containers.imageLayerDirs(record);
  // Volume, bind and tmpfs targets: their contents live elsewhere and are never committed. This
  // is the hook for volume exclusion: whatever mounts a container gets, their targets go here.
  const targets = (record.hostConfig.mounts ?? []).map((m) => m.target.replace(/^\/+/, ""));
  return { upper, lowers, mountPoints: [...RUNTIME_MOUNT_POINTS, ...targets], excludedTrees: targets };
}

/** The container's changes, in Docker's order. */
export async function containerChanges(containers: Containers, query: string): Promise<Change[]> {
  const record = containers.get(query);
  return containers.store.changes(scanSpecFor(containers, record));
}

/** One line per change, as `docker diff` prints them; names as their bytes (file-names.ts). */
export function formatChanges(changes: Change[]): Buffer {
  return encodeFileName(changes.map((c) => `${c.kind} ${c.path}\n`).join(""));
}
