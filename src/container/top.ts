// The processes of a container, as the host sees them: every process whose pid namespace is the
// container init's.
import { readdirSync, readlinkSync } from "node:fs";

export function containerPids(initPid: number): number[] {
  const ns = readlinkSync(`/proc/${initPid}/ns/pid`);
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) === ns) pids.push(Number(entry));
    } catch {
      // Gone, or not ours to look at.
    }
  }
  return pids.sort((a, b) => a - b);
}
