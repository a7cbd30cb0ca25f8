// What a killed tsrun can leave among containers and volumes, beside temporaries (which the
// store sweeps by name): a container dir without its record (killed between creating the dir
// and saving the record), a name link to no container or to a container that has another name
// (killed in `rm` or `rename` between the two steps), a volume dir without volume.json (written
// by older versions, which created volumes in place). Only meaningful under the store lock,
// where no operation is between two steps.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import type { Leftover } from "../store/recovery.js";
import type { ContainerStore } from "./records.js";

const ID = /^[a-f0-9]{64}$/;
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function containerLeftovers(records: ContainerStore, volumesDir: string): Leftover[] {
  const out: Leftover[] = [];
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
