// The processes of a container, as the host sees them: every process whose pid namespace is the
// container init's.
import { readdirSync, readlinkSync } from "node:fs";
import { lazyChildProcess } from "../builtin.js";
import { TsrunError } from "../errors.js";

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
