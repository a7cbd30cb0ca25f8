// `stats`: a container's resource usage read from /proc, as rootless Podman without cgroup
// delegation can only do: tsrun has no cgroup per container to read totals from, so the figures
// are sums over the container's processes (top.ts's containerPids) at the moment of reading:
//   CPU     utime+stime of each process, plus cutime+cstime (the children it has reaped, so
//           the total keeps growing when processes exit), sampled twice; % of one CPU, as Docker
//   memory  each process's Pss (its share of pages it shares), against the container's cgroup
//           limit when it has one, else the host's memory, as Docker shows without a limit
//   network the init's network namespace (/proc/PID/net/dev), every interface but lo
//   block   read_bytes/write_bytes of the processes alive (/proc/PID/io): what exited
//           processes did is lost, unlike Docker's cgroup counters
import { readFileSync } from "node:fs";
import type { ContainerRecord } from "./records.js";
import { containerPids } from "./top.js";

/** Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on every Linux architecture). */
const USER_HZ = 100;

export interface ContainerStats {
  id: string;
  name: string;
  /** Percent of one CPU over the sampling interval (200 = two CPUs busy). */
  cpuPercent: number;
  memoryUsage: number;
  memoryLimit: number;
  netRx: number;
  netTx: number;
  blockRead: number;
  blockWrite: number;
  pids: number;
}

interface Sample {
  cpuTicks: number;
  memory: number;
  netRx: number;
  netTx: number;
  blockRead: number;
  blockWrite: number;
  pids: number;
  at: number;
}

function readOr(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return ""; // the process exited meanwhile, or the field is not there
  }
}

function field(text: string, name: string): number {
  const m = new RegExp(`^${name}:?\\s+(\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

/** The host's memory, the limit Docker shows for a container without one. */
function hostMemory(): number {
  return field(readOr("/proc/meminfo"), "MemTotal") * 1024;
}

/** rx and tx bytes of a network namespace, lo left out. */
function networkBytes(pid: number): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const line of readOr(`/proc/${pid}/net/dev`).split("\n").slice(2)) {
    const [name, data] = line.split(":");
    if (!data || name?.trim() === "lo") continue;
    const cols = data.trim().split(/\s+/).map(Number);
    rx += cols[0] ?? 0;
    tx += cols[8] ?? 0;
  }
  return { rx, tx };
}

function sample(record: ContainerRecord): Sample {
  const initPid = record.state.pid;
  const empty: Sample = { cpuTicks: 0, memory: 0, netRx: 0, netTx: 0, blockRead: 0, blockWrite: 0, pids: 0, at: Date.now() };
  if (record.state.status !== "running" || initPid <= 0) return empty;
  let pids: number[];
  try {
    pids = containerPids(initPid);
  } catch {
    return empty; // exited meanwhile
  }
  const s = { ...empty, pids: pids.length };
  for (const pid of pids) {
    const stat = readOr(`/proc/${pid}/stat`);
    // Fields after the command name: state is field 3; utime, stime, cutime, cstime are 14-17.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    s.cpuTicks += [11, 12, 13, 14].reduce((n, i) => n + (Number(rest[i]) || 0), 0);
    const rollup = readOr(`/proc/${pid}/smaps_rollup`);
    s.memory += (rollup ? field(rollup, "Pss") : field(readOr(`/proc/${pid}/status`), "VmRSS")) * 1024;
    const io = readOr(`/proc/${pid}/io`);
    s.blockRead += field(io, "read_bytes");
    s.blockWrite += field(io, "write_bytes");
  }
  // With the host's network there is nothing of the container's own to count (Docker: 0B).
  if (record.hostConfig.networkMode !== "host") {
    const net = networkBytes(initPid);
    s.netRx = net.rx;
    s.netTx = net.tx;
  }
  return s;
}

/** The memory limit of a container's cgroup (--memory, where cgroups are delegated), if any. */
export type MemoryLimitOf = (record: ContainerRecord) => number | undefined;

/**
 * Usage of each container over intervalMs (CPU needs two samples). Stopped containers get zeros,
 * as in Docker's `stats -a`.
 */
export async function containerStats(records: ContainerRecord[], intervalMs: number, memoryLimitOf: MemoryLimitOf = () => undefined): Promise<ContainerStats[]> {
  const first = records.map(sample);
  await new Promise((resolve) => setTimeout(resolve, intervalMs));
  const host = hostMemory();
  return records.map((r, i) => {
    const a = first[i] as Sample;
    const b = sample(r);
    const seconds = (b.at - a.at) / 1000;
    const cpu = b.pids > 0 && a.pids > 0 && seconds > 0 ? (Math.max(0, b.cpuTicks - a.cpuTicks) / USER_HZ / seconds) * 100 : 0;
    return {
      id: r.id,
      name: r.name,
      cpuPercent: cpu,
      memoryUsage: b.memory,
      memoryLimit: memoryLimitOf(r) ?? host,
      netRx: b.netRx,
      netTx: b.netTx,
      blockRead: b.blockRead,
      blockWrite: b.blockWrite,
      pids: b.pids,
    };
  });
}
