// What --pid/--ipc/--uts change in a launch plan (the e2e tests run them for real).
import { describe, expect, it } from "vitest";
import { applyNamespaceModes, parseNamespaceFlags, sharedHostname } from "../../src/container/namespaces.js";
import { filesystemPlan, namespaceFlags } from "../../src/container/mounts.js";
import { CLONE, type LaunchPlan } from "../../src/native.js";
import type { ContainerRecord } from "../../src/container/records.js";

function plan(): LaunchPlan {
  const fs = filesystemPlan({
    rootfs: "/r",
    lowerDirs: ["l"],
    lowerBase: "/s",
    upperDir: "/u",
    workDir: "/w",
    readOnly: false,
    network: "private",
    etcFiles: { hosts: "/h", resolvConf: "/rc", hostname: "/hn" },
    ttyGroupMapped: true,
    extraMounts: [],
  });
  return { cloneFlags: namespaceFlags("private"), ...fs, argv: ["true"], env: [], searchPath: "/bin", setGroupsAllowed: true, stdinNull: true, dieWithParent: true };
}

const target = (id: string, hostname = "h"): ContainerRecord => ({ id, config: { hostname } }) as unknown as ContainerRecord;

describe("namespace modes", () => {
  it("host: no new pid/ipc/uts namespace; the host's /proc, /dev/shm bound", () => {
    const p = plan();
    applyNamespaceModes(p, { pidMode: "host", ipcMode: "host", utsMode: "host" }, () => 0);
    expect(p.cloneFlags & (CLONE.NEWPID | CLONE.NEWIPC | CLONE.NEWUTS)).toBe(0);
    expect(p.cloneFlags & CLONE.NEWNS).toBe(CLONE.NEWNS);
    expect(p.mounts.find((m) => m.kind === "bind" && m.target === "/proc")).toMatchObject({ source: "/proc", recursive: true });
    expect(p.mounts.find((m) => "target" in m && m.target === "/dev/shm")).toMatchObject({ kind: "bind", source: "/dev/shm" });
    expect(p.share).toBeUndefined();
  });

  it("container:ID: the other container's namespaces and user namespace, its /dev/shm", () => {
    const p = plan();
    applyNamespaceModes(p, { pidMode: "container:abc", ipcMode: "container:abc" }, () => 42);
    expect(p.share).toEqual(["/proc/42/ns/pid", "/proc/42/ns/ipc"]);
    expect(p.nest).toEqual({ userns: "/proc/42/ns/user" });
    expect(p.cloneFlags & (CLONE.NEWUSER | CLONE.NEWPID | CLONE.NEWIPC)).toBe(0);
    expect(p.cloneFlags & CLONE.NEWUTS).toBe(CLONE.NEWUTS);
    expect(p.mounts.find((m) => m.kind === "bind-from-ns")).toEqual({ kind: "bind-from-ns", nsPath: "/proc/42/ns/mnt", source: "/dev/shm", target: "/dev/shm" });
  });

  it("ipc none drops /dev/shm; flags are checked and container names resolved to IDs", () => {
    const p = plan();
    applyNamespaceModes(p, { ipcMode: "none" }, () => 0);
    expect(p.mounts.some((m) => "target" in m && m.target === "/dev/shm")).toBe(false);
    expect(p.cloneFlags & CLONE.NEWIPC).toBe(CLONE.NEWIPC);
    expect(parseNamespaceFlags({ pid: "container:web", ipc: "shareable", uts: "" }, () => target("f00"))).toEqual({ pidMode: "container:f00", ipcMode: "shareable" });
    expect(() => parseNamespaceFlags({ uts: "none" }, () => target("x"))).toThrow('invalid --uts "none": expected private, host or container:NAME');
    expect(sharedHostname({ utsMode: "container:f00" }, undefined, () => "host", () => target("f00", "theirs"))).toBe("theirs");
    expect(() => sharedHostname({ utsMode: "host" }, "mine", () => "host", () => target("x"))).toThrow("conflicting options: hostname and the UTS mode");
  });
});
