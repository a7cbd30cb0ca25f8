// Temporary names in the store. Everything an operation writes first goes to a name that carries
// its pid, ".tmp-KIND-PID-RANDOM" beside its final place (or "KIND-PID-RANDOM" in the store's
// tmp/ dir), and is renamed into place only when complete. So whatever a killed tsrun left
// behind is recognisable by name: a temporary whose pid no longer exists is garbage.
import path from "node:path";
import { randomBytes } from "../random.js";
import { pidExists } from "./liveness.js";

/** A fresh temporary path in dir: ".tmp-KIND-PID-RANDOM". */
export function tempPath(dir: string, kind: string): string {
  return path.join(dir, `.tmp-${kind}-${process.pid}-${randomBytes(6).toString("hex")}`);
}

/** A fresh scratch path in the store's tmp/ dir: "KIND-PID-RANDOM" (KIND: lower case and dashes). */
export function scratchPath(tmpDir: string, kind: string): string {
  return path.join(tmpDir, `${kind}-${process.pid}-${randomBytes(6).toString("hex")}`);
}

/** ".tmp-[ANYTHING-]PID-HEX[.EXT]" beside final names; "KIND-PID-HEX[.EXT]" inside tmp/. */
const HIDDEN_TEMP = /^\.tmp-(?:.*-)?(\d+)-[0-9a-f]+(?:\.[a-z.]+)?$/;
const SCRATCH = /^[a-z][a-z-]*-(\d+)-[0-9a-f]+(?:\.[a-z.]+)?$/;

/** The pid a temporary name belongs to, or undefined for a name that is not a temporary. */
export function tempOwner(name: string, scratchDir = false): number | undefined {
  const m = HIDDEN_TEMP.exec(name) ?? (scratchDir ? SCRATCH.exec(name) : null);
  return m ? Number(m[1]) : undefined;
}

export function isTempName(name: string, scratchDir = false): boolean {
  return name.startsWith(".tmp-") || (scratchDir && SCRATCH.test(name));
}

/** A temporary whose writer is gone. Unrecognisable ".tmp-" names count as stale too. */
export function isStaleTemp(name: string, scratchDir = false): boolean {
  if (!isTempName(name, scratchDir)) return false;
  const owner = tempOwner(name, scratchDir);
  return owner === undefined || !pidExists(owner);
}
