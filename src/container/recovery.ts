// What a killed tsrun can leave among containers and volumes, beside temporaries (which the
// store sweeps by name): a container dir without its record (killed between creating the dir
// and saving the record), a name link to no container or to a container that has another name
// (killed in `rm` or `rename` between the two steps), a volume dir without volume.json (written
// by older versions, which created volumes in place), a build's intermediate container whose
// build was killed (no live lease names it: a live build holds one until it has removed the
// container). Only meaningful under the store lock, where no operation is between two steps.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import type { Leftover } from "../store/recovery.js";
import type { ContainerRecord, ContainerStore } from "./records.js";

const ID = /^[a-f0-9]{64}$/;
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Intermediate containers of builds that are gone: leftovers, not containers to check. */
export function orphanIntermediates(records: ContainerStore, leased: ReadonlySet<string>): ContainerRecord[] {
  return records.list().filter((r) => r.intermediate === true && !leased.has(r.id));
}

/** leased: the container IDs live leases name. */
export function containerLeftovers(records: ContainerStore, volumesDir: string, leased: ReadonlySet<string>): Leftover[] {
  const out: Leftover[] = [];
  for (const c of orphanIntermediates(records, leased)) {
    // The name link goes first (files before dirs): killed in between, the record without its
    // link is still an orphan found here, while a link without its record is a stale name.
    if (records.idForName(c.name) === c.id) out.push({ path: path.join(records.dir, "names", c.name), kind: "file", what: `name of an interrupted build's container (${c.name})` });
    out.push({ path: records.containerDir(c.id), kind: "dir", what: `container ${c.id.slice(0, 12)} (${c.name}) of an interrupted build step` });
  }
  for (const name of entries(records.dir)) {
    if (ID.test(name) && !existsSync(path.join(records.dir, name, "container.json"))) {
      out.push({ path: path.join(records.dir, name), kind: "dir", what: `container dir without a record (${name.slice(0, 12)})` });
    }
  }
  for (const name of records.nameLinks().keys()) {
    if (records.isStaleName(name)) out.push({ path: path.join(records.dir, "names", name), kind: "file", what: `container name "${name}" of no container` });
  }
  for (const name of entries(volumesDir)) {
    if (VOLUME_NAME.test(name) && !existsSync(path.join(volumesDir, name, "volume.json"))) {
      out.push({ path: path.join(volumesDir, name), kind: "dir", what: `volume dir without volume.json (${name})` });
    }
  }
  return out;
}
