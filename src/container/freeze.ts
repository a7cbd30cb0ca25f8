// Pausing a container without a cgroup freezer (rootless on cgroup v1, or without delegation):
// SIGSTOP to every process in the container's pid namespace. A process may fork while the
// signals go out, so the namespace is swept until a pass finds nobody new, then we wait until
// each process has really stopped ("T" in /proc/PID/stat), so a caller may read the container's
// files in a still state (commit).
import { readFileSync } from "node:fs";
import { containerPids } from "./top.js";
import { sleepSync } from "../sleep-sync.js";

const SWEEPS = 20;

function processState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return "X"; // gone
  }
}

function send(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Exited meanwhile.
  }
}

/** Stops every process of the container whose init is initPid. False when it has ended. */
export function freezeProcesses(initPid: number): boolean {
  const signalled = new Set<number>();
  for (let i = 0; i < SWEEPS; i++) {
    let pids: number[];
    try {
      pids = containerPids(initPid);
    } catch {
      return false; // the init is gone
    }
    const fresh = pids.filter((p) => !signalled.has(p));
    if (fresh.length === 0) break;
    for (const pid of fresh) {
      send(pid, "SIGSTOP");
      signalled.add(pid);
    }
  }
  // Signal delivery is asynchronous: wait (bounded) until each one is stopped or gone.
  const deadline = Date.now() + 2000;
  for (const pid of signalled) {
    while (Date.now() < deadline && !["T", "t", "Z", "X"].includes(processState(pid))) sleepSync(1);
  }
  return true;
}

/** Lets every process of the container go on. */
export function thawProcesses(initPid: number): void {
  let pids: number[];
  try {
    pids = containerPids(initPid);
  } catch {
    return;
  }
  for (const pid of pids) send(pid, "SIGCONT");
}
