// User namespaces: who we are, which subordinate ids we own, and writing a child's id maps
// (src/userns-run.ts runs helper commands inside one).
import { readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { native } from "./native.js";
import { TsrunError } from "./errors.js";

export interface IdRange {
  start: number;
  count: number;
}

export interface IdMapping {
  uid: number;
  gid: number;
  /** Subordinate ids from /etc/subuid and /etc/subgid: container ids 1..count map onto them. */
  subUids: IdRange | null;
  subGids: IdRange | null;
}

let warned = false;

function readSubordinate(file: string, name: string, id: number): IdRange | null {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const [owner, start, count] = line.trim().split(":");
    if (!owner || start === undefined || count === undefined) continue;
    if (owner !== name && owner !== String(id)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isInteger(s) && Number.isInteger(c) && c > 0) return { start: s, count: c };
  }
  return null;
}

let cached: IdMapping | undefined;

/** The calling user's ids and subordinate ranges. */
export function currentMapping(): IdMapping {
  if (cached) return cached;
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  let name = String(uid);
  try {
    name = userInfo().username;
  } catch {
    // No passwd entry (a bare uid in a CI container): match /etc/subuid by number only.
  }
  cached = {
    uid,
    gid,
    subUids: uid === 0 ? null : readSubordinate("/etc/subuid", name, uid),
    subGids: uid === 0 ? null : readSubordinate("/etc/subgid", name, uid),
  };
  return cached;
}

/** Highest container uid/gid that exists in the namespace (inclusive). */
export function maxMappedId(m: IdMapping, kind: "uid" | "gid"): number {
  if (m.uid === 0) return 4294967294;
  const range = kind === "uid" ? m.subUids : m.subGids;
  return range ? range.count : 0;
}

/** False when only one id is mapped: then setgroups(2) is denied inside. */
export function setGroupsAllowed(m: IdMapping): boolean {
  return m.uid === 0 || (m.subUids !== null && m.subGids !== null);
}

/** How to map a child's ids: setuid tools to run (the pid goes first) or /proc files to write. */
export interface IdMapSteps {
  tools: string[][];
  writes: [file: string, content: string][];
}

/**
 * A container's user namespace, as Podman's --userns names them. private (and host, which for a
 * rootless runtime means the same mapping, as with rootless Podman): root is the calling user,
 * 1..N the subordinate ids. keep-id: the user keeps its own id (or uid=/gid=) inside, the
 * subordinate ids fill the rest. nomap: only subordinate ids, the user is not mapped at all.
 */
export type UsernsMode = { kind: "private" } | { kind: "host" } | { kind: "nomap" } | { kind: "keep-id"; uid?: number; gid?: number };

/** One line of a uid_map/gid_map: ids inside, ids outside, count. */
export type IdRange3 = [inside: number, outside: number, count: number];

/** The uid and gid maps of a mode that needs subordinate ids (keep-id, nomap). */
function subordinateMaps(m: IdMapping, mode: UsernsMode): { uid: IdRange3[]; gid: IdRange3[] } {
  if (!m.subUids || !m.subGids) throw new TsrunError(`--userns ${mode.kind} needs subordinate ids for uid ${m.uid} in /etc/subuid and /etc/subgid`);
  const around = (own: number, inside: number, sub: IdRange): IdRange3[] => {
    const below = Math.min(inside, sub.count);
    const ranges: IdRange3[] = [];
    if (below > 0) ranges.push([0, sub.start, below]);
    ranges.push([inside, own, 1]);
    if (inside < sub.count) ranges.push([inside + 1, sub.start + inside, sub.count - inside]);
    return ranges;
  };
  if (mode.kind === "nomap") return { uid: [[0, m.subUids.start, m.subUids.count]], gid: [[0, m.subGids.start, m.subGids.count]] };
  const k = mode as { kind: "keep-id"; uid?: number; gid?: number };
  return { uid: around(m.uid, k.uid ?? m.uid, m.subUids), gid: around(m.gid, k.gid ?? m.gid, m.subGids) };
}

/** Whether a mode maps ids differently from the default (then image layers need shifted copies). */
export function isRemapped(mode: UsernsMode | undefined, m: IdMapping = currentMapping()): boolean {
  return m.uid !== 0 && (mode?.kind === "keep-id" || mode?.kind === "nomap");
}

/** The uid a keep-id container's user gets by default (Podman: the caller's own ids). */
export function keepIdUser(mode: UsernsMode, m: IdMapping = currentMapping()): { uid: number; gid: number } | undefined {
  if (mode.kind !== "keep-id") return undefined;
  return { uid: mode.uid ?? m.uid, gid: mode.gid ?? m.gid };
}

/** Highest container id a mode maps (inclusive). */
export function maxContainerId(m: IdMapping, kind: "uid" | "gid", mode: UsernsMode = { kind: "private" }): number {
  if (!isRemapped(mode, m)) return maxMappedId(m, kind);
  const ranges = subordinateMaps(m, mode)[kind];
  return Math.max(...ranges.map(([inside, , count]) => inside + count - 1));
}

/**
 * Container root is the calling user; 1..N are the subordinate ids. Without subordinate ranges
 * only root is mapped, with one warning: files of other owners cannot exist then.
 */
export function idMapSteps(m: IdMapping = currentMapping(), mode: UsernsMode = { kind: "private" }): IdMapSteps {
  if (isRemapped(mode, m)) {
    const maps = subordinateMaps(m, mode);
    return {
      tools: [
        ["newuidmap", ...maps.uid.flat().map(String)],
        ["newgidmap", ...maps.gid.flat().map(String)],
      ],
      writes: [],
    };
  }
  if (m.uid === 0) {
    // Real root: an identity map, as rootful runtimes have.
    return { tools: [], writes: [["uid_map", "0 0 4294967295"], ["gid_map", "0 0 4294967295"]] };
  }
  if (m.subUids && m.subGids) {
    return {
      tools: [
        ["newuidmap", "0", String(m.uid), "1", "1", String(m.subUids.start), String(m.subUids.count)],
        ["newgidmap", "0", String(m.gid), "1", "1", String(m.subGids.start), String(m.subGids.count)],
      ],
      writes: [],
    };
  }
  if (!warned) {
    warned = true;
    process.stderr.write(`tsrun: warning: no range for uid ${m.uid} in /etc/subuid and /etc/subgid; only root is mapped in containers\n`);
  }
  return { tools: [], writes: [["uid_map", `0 ${m.uid} 1`], ["setgroups", "deny"], ["gid_map", `0 ${m.gid} 1`]] };
}

/** The steps as the monitor's idmap file. */
export function idMapFile(steps: IdMapSteps): string {
  return [...steps.tools.map((t) => `tool ${t.join(" ")}`), ...steps.writes.map(([f, c]) => `write ${f} ${c}`)].join("\n") + "\n";
}

/** Writes uid_map and gid_map of a child that waits in a fresh user namespace. */
export async function writeIdMaps(pid: number, m: IdMapping = currentMapping(), mode: UsernsMode = { kind: "private" }): Promise<void> {
  const steps = idMapSteps(m, mode);
  if (steps.tools.length > 0) {
    const commands = steps.tools.map(([tool, ...args]) => [tool as string, String(pid), ...args]);
    // Both tools run at once; their stderr goes straight to ours, so a refusal explains itself.
    const results = native().runTools(commands);
    results.forEach((r, i) => {
      const cmd = commands[i] as string[];
      if (r.error) throw new Error(`${r.error} (install the "uidmap" package)`);
      if (r.code !== 0 || r.signal !== 0)
        throw new Error(`${cmd[0]} failed: ${r.stderr.trim().split("\n").pop() || `exit ${r.code}`} (check /etc/subuid and /etc/subgid)`);
    });
  }
  for (const [file, content] of steps.writes) writeFileSync(`/proc/${pid}/${file}`, `${content}\n`);
}
