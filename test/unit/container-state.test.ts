// refreshState (src/container/state.ts): how a running container's record learns that it ended.
// Real files in a real container directory; the "monitor" is a real process that has exited.
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { refreshState } from "../../src/container/state.js";
import type { ContainerRecord } from "../../src/container/records.js";

/** The pid of a process that has come and gone (and been reaped). */
function deadPid(): number {
  const r = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(r.stdout.trim());
}

function runningRecord(monitorPid: number): ContainerRecord {
  return {
    id: "a".repeat(64),
    name: "t",
    state: { status: "running", pid: 12345, monitorPid, monitorStartTime: 0, exitCode: 0, startedAt: "2026-11-30T08:00:00.000Z", finishedAt: "", error: "" },
  } as unknown as ContainerRecord;
}

describe("refreshState", () => {
  it("takes the exit status from the exit file", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "state-"));
    writeFileSync(path.join(dir, "exit"), "7 2026-11-30T08:00:01.000000000Z\n");
    const record = runningRecord(deadPid());
    expect(refreshState(record, dir)).toBe(true);
    expect(record.state).toMatchObject({ status: "exited", exitCode: 7, error: "" });
  });

  it("a foreground run's CLI that saved the exit after this record was read: the saved state, not 255", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "state-"));
    const record = runningRecord(deadPid());
    // What the CLI saved before it ended, while our copy still said running.
    const saved = { ...record, state: { ...record.state, status: "exited", pid: 0, exitCode: 3, finishedAt: "2026-11-30T08:00:02.000Z" } };
    writeFileSync(path.join(dir, "container.json"), JSON.stringify(saved));
    expect(refreshState(record, dir)).toBe(true);
    expect(record.state).toMatchObject({ status: "exited", exitCode: 3, error: "" });
  });

  it("a monitor that ended without recording anything: 255, with the reason", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "state-"));
    const record = runningRecord(deadPid());
    writeFileSync(path.join(dir, "container.json"), JSON.stringify(record));
    expect(refreshState(record, dir)).toBe(true);
    expect(record.state.status).toBe("exited");
    expect(record.state.exitCode).toBe(255);
    expect(record.state.error).toMatch(/monitor ended without recording an exit status/);
  });

  it("a live monitor without an exit file: still running", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "state-"));
    const record = runningRecord(process.pid);
    expect(refreshState(record, dir)).toBe(false);
    expect(record.state.status).toBe("running");
  });
});
