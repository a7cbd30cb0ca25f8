// `history`: an image's history entries, newest first, each with the size of the layer it made
// (0 for entries with empty_layer), as `docker history` lists them. Only the newest entry is the
// image itself; older ones have no image of their own here ("<missing>", as Docker shows for
// pulled images).
import type { Store } from "../store/store.js";
import type { ImageRecord } from "../store/images.js";
import { readImageConfig } from "./inspect.js";

export interface HistoryRow {
  /** The image ID on the newest row, "<missing>" on the others. */
  id: string;
  created: string;
  createdBy: string;
  /** Bytes of the layer this step made (0 when it made none). */
  size: number;
  comment: string;
}

export function imageHistory(store: Store, image: ImageRecord): HistoryRow[] {
  const config = readImageConfig(store, image);
  const entries = config.history ?? [];
  const rows: HistoryRow[] = [];
  let layer = 0;
  for (const entry of entries) {
    const size = entry.empty_layer ? 0 : (image.layers[layer++]?.size ?? 0);
    rows.push({ id: "<missing>", created: entry.created ?? "", createdBy: entry.created_by ?? "", size, comment: entry.comment ?? "" });
  }
  // Layers without history entries (configs written without history): one row each, as Docker.
  for (; layer < image.layers.length; layer++) {
    rows.push({ id: "<missing>", created: config.created ?? image.added, createdBy: "", size: image.layers[layer]?.size ?? 0, comment: "" });
  }
  rows.reverse();
  if (rows[0]) rows[0].id = image.id;
  return rows;
}
