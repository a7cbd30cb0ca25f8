// The processes of a container, as the host sees them: those of the container init's pid
// namespace, or of its process tree when the namespace is shared.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { lazyChildProcess } from "../builtin.js";
import { TsrunError } from "../errors.js";

/**
 * The container's processes. When its init is pid 1 of its own pid namespace, every process of
 * that namespace; when it shares one (--pid host or container:NAME), the init and its
 * descendants only: the namespace holds other processes that are not the container's.
 */
export function containerPids(initPid: number): number[] {
  const ns = readlinkSync(`/proc/${initPid}/ns/pid`);
  const nsPids = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${initPid}/status`, "utf8"))?.[1]?.trim().split(/\s+/) ?? [];
  const ownNamespace = nsPids.length > 1 && nsPids[nsPids.length - 1] === "1";
  const pids: number[] = [];
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) !== ns) continue;
      if (ownNamespace) {
        pids.push(Number(entry));
      } else {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      }
    } catch {
      // Gone, or not ours to look at.
    }
  }
  if (!ownNamespace) {
    const tree = new Set([initPid]);
    // Parents come before children in pid order only until pids wrap: repeat until stable.
    for (let grew = true; grew; ) {
      grew = false;
      for (const [pid, parent] of parents) {
        if (!tree.has(pid) && tree.has(parent)) {
          tree.add(pid);
          grew = true;
        }
      }
    }
    pids.push(...tree);
  }
  return pids.sort((a, b) => a - b);
}

/**
 * `ps ARGS` on the host, keeping the header and the lines of the container's processes, as
 * Docker's top does. The lines are picked by their PID column rather than by passing `-p` to ps:
 * BSD-style options such as `aux` select every process whatever `-p` says.
 */
export function topLines(initPid: number, psArgs: string[]): string {
  const args = psArgs.length > 0 ? psArgs : ["-ef"];
  let output: string;
  try {
    output = lazyChildProcess().execFileSync("ps", args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    throw new TsrunError(`ps ${args.join(" ")}: ${(err as Error).message.split("\n")[0]}`);
  }
  const lines = output.split("\n");
  const header = lines[0] ?? "";
  const pidColumn = header.trim().split(/\s+/).indexOf("PID");
  if (pidColumn < 0) throw new TsrunError(`ps ${args.join(" ")}: no PID column in its output (add pid to -o)`);
  const pids = new Set(containerPids(initPid));
  const kept = lines.slice(1).filter((line) => {
    const field = line.trim().split(/\s+/)[pidColumn];
    return field !== undefined && /^\d+$/.test(field) && pids.has(Number(field));
  });
  return [header, ...kept].join("\n") + "\n";
}
