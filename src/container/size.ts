// A container's size as Docker reports it (`ps -s`, `inspect -s`): SizeRw, the bytes of its
// writable layer (the overlay upper dir), and SizeRootFs, those plus its image's layers.
import path from "node:path";
import type { Containers } from "./run.js";
import type { ContainerRecord } from "./records.js";
import { imageSize } from "../image/inspect.js";

export interface ContainerSize {
  sizeRw: number;
  sizeRootFs: number;
}

/** Sizes by container ID; every upper dir is measured in one storage worker run. */
export async function containerSizes(containers: Containers, records: ContainerRecord[]): Promise<Map<string, ContainerSize>> {
  const uppers = records.map((r) => path.join(containers.records.containerDir(r.id), "upper"));
  const rw = await containers.store.treeSizes(uppers);
  const images = new Map(containers.store.images.list().map((i) => [i.id, imageSize(i)]));
  return new Map(records.map((r, i) => [r.id, { sizeRw: rw[i] ?? 0, sizeRootFs: (rw[i] ?? 0) + (images.get(r.image) ?? 0) }]));
}
