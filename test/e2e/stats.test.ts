// `stats`: usage read from /proc for containers without a cgroup of their own.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { importBusybox, tsrun, tsrunOk, unique } from "./helpers.js";

const made: string[] = [];

async function detached(args: string[]): Promise<string> {
  const name = unique("stats");
  made.push(name);
  await tsrunOk(["run", "-d", "--name", name, ...args]);
  return name;
}

/** go-units BytesSize of the host's memory: the limit of a container without one. */
function hostLimit(): string {
  let v = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1]) * 1024;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

beforeAll(async () => {
  await importBusybox("busybox");
});

afterAll(async () => {
  if (made.length > 0) await tsrun(["rm", "-f", ...made]);
});

describe("stats --no-stream", () => {
  it("CPU of a busy container, processes, memory against the host's, no network traffic with --network none", async () => {
    const busy = await detached(["--network", "none", "busybox", "sh", "-c", "while :; do :; done"]);
    const idle = await detached(["busybox", "sh", "-c", "sleep 300 & sleep 300 & wait"]);
    const out = await tsrunOk(["stats", "--no-stream", "--format", "{{.Container}}|{{.CPUPerc}}|{{.PIDs}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}", busy, idle]);
    const [b, i] = out.trim().split("\n").map((l) => l.split("|"));
    expect(b?.[0]).toBe(busy);
    expect(Number(b?.[1]?.replace("%", ""))).toBeGreaterThan(0);
    expect(b?.[2]).toBe("1");
    expect(b?.[3]).toMatch(new RegExp(`^\\d+(\\.\\d+)?(B|KiB|MiB) / ${hostLimit().replace(".", "\\.")}$`));
    expect(b?.[4]).toMatch(/^\d+\.\d\d%$/);
    expect(b?.[5]).toBe("0B / 0B");
    expect(b?.[6]).toMatch(/^\d+(\.\d+)?[kMG]?B \/ \d+(\.\d+)?[kMG]?B$/);
    expect(i?.[0]).toBe(idle);
    expect(i?.[2]).toBe("3");
  });

  it("the table (running containers), -a with a stopped one at zero, an unknown name is an error", async () => {
    const stopped = unique("stats-stopped");
    made.push(stopped);
    await tsrunOk(["run", "--name", stopped, "busybox", "true"]);
    const table = await tsrunOk(["stats", "--no-stream"]);
    expect(table.split("\n")[0]).toMatch(/^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET I\/O\s+BLOCK I\/O\s+PIDS$/);
    expect(table).not.toContain(stopped);
    const all = await tsrunOk(["stats", "--no-stream", "-a", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}"]);
    expect(all).toContain(`${stopped} 0.00% 0B / ${hostLimit()} 0\n`);
    const r = await tsrun(["stats", "--no-stream", "no-such-ctr"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toBe("Error: no such container: no-such-ctr\n");
  });
});
