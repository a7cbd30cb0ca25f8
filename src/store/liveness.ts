// Whether the process that wrote something into the store still exists. Temporary names carry
// the writer's pid and leases carry pid, start time and boot id, so that leftovers of a killed
// tsrun can be told from the work of one that is still running.
import { readFileSync } from "node:fs";

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or 0 if no such process. */
export function processStartTime(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return 0;
  }
}

/** A live (not zombie) process with that pid and, when startTime is not 0, that start time. */
export function isAlive(pid: number, startTime: number): boolean {
  if (pid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // A zombie has exited; only its parent has not collected it yet.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return false;
  } catch {
    return false;
  }
  const now = processStartTime(pid);
  return now !== 0 && (startTime === 0 || now === startTime);
}

/** Whether any process has this pid (a reused pid counts: its leftovers are kept a while longer). */
export function pidExists(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

let boot: string | undefined;

/** This boot's id: a lease from an earlier boot is dead whatever its pid is now. */
export function bootId(): string {
  if (boot === undefined) {
    try {
      boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    } catch {
      boot = "";
    }
  }
  return boot;
}
