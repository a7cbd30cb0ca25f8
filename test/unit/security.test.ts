// The confinement policy in TypeScript: Docker's profile format (parsing, checks, resolution for
// a machine and a capability set), capabilities as moby computes them, the flag parsers, and
// the cgroup delegation decision. The compiled filter is checked against the real libseccomp.
import { describe, expect, it } from "vitest";
import { compileFilter, decodeCachedProgram, encodeCachedProgram, parseSeccompProfile, pruneSeccompCache, resolveSeccomp, seccompProgram, type ResolvedFilter } from "../../src/container/security/seccomp.js";
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { defaultSeccompProfile } from "../../src/container/security/default-seccomp.js";
import { allCapabilities, capabilityMask, containerCapabilities, DEFAULT_CAPABILITIES, normaliseCapability, processCapabilities } from "../../src/container/security/capabilities.js";
import { parseMemory, parseSecurityFlags, parseUlimit, parseUserns } from "../../src/container/security/options.js";
import { cgroupSupport, LIMIT_FILE_DEFAULTS, limitFiles } from "../../src/container/security/cgroups.js";
import { TsrunError } from "../../src/errors.js";
import { idMapSteps, maxContainerId, type IdMapping } from "../../src/userns.js";
import { keepIdAccounts } from "../../src/container/spec.js";

const DEFAULT_SECCOMP_PROFILE = defaultSeccompProfile();

const ALLOW = 0x7fff0000;
const errno = (n: number): number => 0x00050000 | n;

function parseError(text: string): string {
  try {
    parseSeccompProfile(text, "p.json");
  } catch (err) {
    expect(err).toBeInstanceOf(TsrunError);
    return (err as Error).message;
  }
  throw new Error("expected a parse error");
}

function rulesFor(filter: ResolvedFilter, name: string): ResolvedFilter["rules"] {
  return filter.rules.filter((r) => r.name === name);
}

describe("seccomp profile parser (Docker's format)", () => {
  it("accepts Docker's default profile and a minimal one", () => {
    expect(parseSeccompProfile(JSON.stringify(DEFAULT_SECCOMP_PROFILE), "default.json").defaultAction).toBe("SCMP_ACT_ERRNO");
    const p = parseSeccompProfile('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO"}]}', "p.json");
    expect(p.syscalls?.[0]?.name).toBe("mkdir");
  });

  it("rejects bad profiles with one line naming the file and the problem", () => {
    const cases: [string, RegExp][] = [
      ['{"defaultAction":', /p\.json: .*JSON/],
      ["[]", /not a JSON object/],
      ['{"syscalls":[]}', /defaultAction: action must be a string/],
      ['{"defaultAction":"SCMP_ACT_DENY"}', /unknown action "SCMP_ACT_DENY"/],
      ['{"defaultAction":"SCMP_ACT_NOTIFY"}', /seccomp agent/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":-1}', /errnoRet/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":null}]}', /both architectures and archMap/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","architectures":["x86_64"]}', /unknown architecture "x86_64"/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}', /unsupported flag/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":{}}', /syscalls must be a list/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}', /syscalls\[0\]: no syscall names/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}', /both name and names/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a",1],"action":"SCMP_ACT_ERRNO"}]}', /names must be a list of strings/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}', /index must be 0 to 5/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":0,"op":"EQ"}]}]}', /unknown op "EQ"/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":-5,"op":"SCMP_CMP_EQ"}]}]}', /unsigned 64-bit/],
      ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"four"}}]}', /minKernel/],
    ];
    for (const [text, pattern] of cases) {
      const message = parseError(text);
      expect(message).toMatch(/^invalid seccomp profile p\.json: /);
      expect(message).toMatch(pattern);
      expect(message).not.toContain("\n");
    }
  });

  it("keeps 64-bit argument values exact", () => {
    const p = parseSeccompProfile('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]}]}', "p.json");
    const f = resolveSeccomp(p, { caps: [], arch: "amd64", kernel: "6.1.0" });
    expect(f.rules[0]?.args).toEqual([[0, 4, "18446744073709551615", "0"]]);
  });
});

describe("resolving a profile for a machine and a container", () => {
  const caps = DEFAULT_CAPABILITIES;
  const amd64 = resolveSeccomp(DEFAULT_SECCOMP_PROFILE, { caps, arch: "amd64", kernel: "6.1.0" });

  it("takes the native architecture and its sub-architectures from archMap", () => {
    expect(amd64.arches).toEqual(["x86_64", "x86", "x32"]);
    expect(resolveSeccomp(DEFAULT_SECCOMP_PROFILE, { caps, arch: "arm64", kernel: "6.1.0" }).arches).toEqual(["aarch64", "arm"]);
    expect(amd64.defaultAction).toBe(errno(1));
  });

  it("allows what Docker allows and nothing that needs a missing capability", () => {
    expect(rulesFor(amd64, "read")).toEqual([{ name: "read", action: ALLOW, args: [] }]);
    for (const blocked of ["mount", "umount2", "unshare", "setns", "keyctl", "add_key", "request_key", "reboot", "init_module", "bpf", "open_by_handle_at", "perf_event_open", "kexec_load", "swapon"]) {
      expect(rulesFor(amd64, blocked), blocked).toEqual([]);
    }
    // SYS_CHROOT is one of Docker's default capabilities.
    expect(rulesFor(amd64, "chroot")).toHaveLength(1);
    // clone without namespace flags only; clone3 answers ENOSYS so libc falls back to clone.
    expect(rulesFor(amd64, "clone")).toEqual([{ name: "clone", action: ALLOW, args: [[0, 7, String(0x7e020000), "0"]] }]);
    expect(rulesFor(amd64, "clone3")).toEqual([{ name: "clone3", action: errno(38), args: [] }]);
    expect(rulesFor(amd64, "arch_prctl")).toHaveLength(1);
    expect(rulesFor(amd64, "socket")).toEqual([{ name: "socket", action: ALLOW, args: [[0, 1, "40", "0"]] }]);
    expect(rulesFor(amd64, "personality")).toHaveLength(5);
  });

  it("follows the capabilities (includes and excludes)", () => {
    const admin = resolveSeccomp(DEFAULT_SECCOMP_PROFILE, { caps: [...caps, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"], arch: "amd64", kernel: "6.1.0" });
    expect(rulesFor(admin, "mount")).toHaveLength(1);
    expect(rulesFor(admin, "unshare")).toHaveLength(1);
    expect(rulesFor(admin, "clone")).toEqual([{ name: "clone", action: ALLOW, args: [] }]);
    expect(rulesFor(admin, "clone3")).toEqual([{ name: "clone3", action: ALLOW, args: [] }]);
    expect(rulesFor(admin, "ptrace").length).toBeGreaterThan(0);
  });

  it("follows the architecture and the kernel version", () => {
    const arm = resolveSeccomp(DEFAULT_SECCOMP_PROFILE, { caps, arch: "arm64", kernel: "6.1.0" });
    expect(rulesFor(arm, "arch_prctl")).toEqual([]);
    expect(rulesFor(arm, "cacheflush")).toHaveLength(1);
    const old = resolveSeccomp(DEFAULT_SECCOMP_PROFILE, { caps, arch: "amd64", kernel: "4.4.0" });
    expect(rulesFor(old, "ptrace")).toEqual([]);
    expect(rulesFor(amd64, "ptrace")).toHaveLength(1);
  });

  it("drops rules with the default action and splits conditions on one argument (runc)", () => {
    const p = parseSeccompProfile(
      JSON.stringify({
        defaultAction: "SCMP_ACT_ERRNO",
        syscalls: [
          { names: ["getpid"], action: "SCMP_ACT_ERRNO" },
          { names: ["kill"], action: "SCMP_ACT_ALLOW", args: [{ index: 1, value: 9, op: "SCMP_CMP_EQ" }, { index: 1, value: 15, op: "SCMP_CMP_EQ" }] },
          { names: ["tkill"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 1, op: "SCMP_CMP_GT" }, { index: 1, value: 9, op: "SCMP_CMP_EQ" }] },
          { names: ["mkdir"], action: "SCMP_ACT_ERRNO", errnoRet: 13 },
          { names: ["openat"], action: "SCMP_ACT_TRACE" },
        ],
      }),
      "p.json",
    );
    const f = resolveSeccomp(p, { caps: [], arch: "amd64", kernel: "6.1.0" });
    expect(rulesFor(f, "getpid")).toEqual([]);
    expect(rulesFor(f, "kill").map((r) => r.args)).toEqual([[[1, 4, "9", "0"]], [[1, 4, "15", "0"]]]);
    expect(rulesFor(f, "tkill").map((r) => r.args)).toEqual([[[0, 6, "1", "0"], [1, 4, "9", "0"]]]);
    expect(rulesFor(f, "mkdir")[0]?.action).toBe(errno(13));
    expect(rulesFor(f, "openat")[0]?.action).toBe(0x7ff00001);
    expect(f.arches).toEqual([]);
  });

  it("compiles with libseccomp into a BPF program", () => {
    const program = compileFilter(amd64);
    expect(seccompProgram(DEFAULT_SECCOMP_PROFILE, { caps, arch: "amd64", kernel: "6.1.0" })).toEqual({ program, flags: 0 });
    expect(program.length % 8).toBe(0);
    expect(program.length / 8).toBeGreaterThan(300);
    // The first instruction loads the architecture (seccomp_data.arch at offset 4).
    expect(program.readUInt16LE(0)).toBe(0x20);
    expect(program.readUInt32LE(4)).toBe(4);
  });

  it("keeps the newest cached programs and removes the older ones beyond the limit, and nothing else", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tsrun-seccomp-cache-"));
    try {
      const names = Array.from({ length: 6 }, (_, i) => `seccomp-${String(i).padStart(16, "0")}.bpf`);
      names.forEach((name, i) => {
        writeFileSync(path.join(dir, name), "x");
        // Written one second apart, the first oldest.
        utimesSync(path.join(dir, name), 1_700_000_000 + i, 1_700_000_000 + i);
      });
      writeFileSync(path.join(dir, "tsrun-abc-run.v8cache"), "other caches stay");
      pruneSeccompCache(dir, 4);
      expect(readdirSync(dir).sort()).toEqual([...names.slice(2), "tsrun-abc-run.v8cache"].sort());
      pruneSeccompCache(dir, 4);
      expect(readdirSync(dir)).toHaveLength(5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("trusts a cached program only whole and for exactly its key", () => {
    const program = compileFilter(amd64);
    const file = encodeCachedProgram("key-a", program);
    expect(decodeCachedProgram(file, "key-a")).toEqual(program);
    expect(decodeCachedProgram(file, "key-b")).toBeUndefined();
    expect(decodeCachedProgram(file.subarray(0, file.length - 8), "key-a")).toBeUndefined();
    const flipped = Buffer.from(file);
    flipped[flipped.length - 3] ^= 0x40;
    expect(decodeCachedProgram(flipped, "key-a")).toBeUndefined();
    expect(decodeCachedProgram(Buffer.from("garbage"), "key-a")).toBeUndefined();
  });
});

describe("capabilities (moby's rules)", () => {
  it("normalises names as Docker accepts them", () => {
    expect(normaliseCapability("net_admin", "--cap-add")).toBe("CAP_NET_ADMIN");
    expect(normaliseCapability("CAP_SYS_ADMIN", "--cap-add")).toBe("CAP_SYS_ADMIN");
    expect(normaliseCapability("all", "--cap-drop")).toBe("ALL");
    expect(() => normaliseCapability("FLY", "--cap-add")).toThrow(/invalid --cap-add "FLY": unknown capability/);
  });

  it("computes the bounding set from defaults, adds and drops", () => {
    const none = { privileged: false, capAdd: [], capDrop: [] };
    expect(capabilityMask(containerCapabilities(none))).toBe(0xa80425fbn);
    expect(containerCapabilities({ ...none, capDrop: ["ALL"], capAdd: ["net_bind_service"] })).toEqual(["CAP_NET_BIND_SERVICE"]);
    expect(containerCapabilities({ ...none, capAdd: ["ALL"], capDrop: ["chown"] })).toEqual(allCapabilities().filter((c) => c !== "CAP_CHOWN"));
    expect(containerCapabilities({ ...none, capDrop: ["chown"] })).not.toContain("CAP_CHOWN");
    expect(containerCapabilities({ privileged: true, capAdd: [], capDrop: ["ALL"] })).toEqual(allCapabilities());
  });

  it("gives root the set and other users only what was explicitly added (ambient)", () => {
    const caps = [...DEFAULT_CAPABILITIES, "CAP_NET_ADMIN"];
    const root = processCapabilities(caps, 0, ["NET_ADMIN"]);
    expect(root).toMatchObject({ effective: root.bounding, permitted: root.bounding, inheritable: 0n, ambient: 0n });
    const user = processCapabilities(caps, 1000, ["NET_ADMIN"]);
    expect(user).toEqual({ bounding: root.bounding, effective: 1n << 12n, permitted: 1n << 12n, inheritable: 1n << 12n, ambient: 1n << 12n });
    expect(processCapabilities(DEFAULT_CAPABILITIES, 1000, []).effective).toBe(0n);
  });
});

describe("confinement flags", () => {
  it("parses --ulimit as Docker does", () => {
    expect(parseUlimit("nofile=512:1024")).toEqual({ Name: "nofile", Soft: 512, Hard: 1024 });
    expect(parseUlimit("core=0")).toEqual({ Name: "core", Soft: 0, Hard: 0 });
    expect(parseUlimit("memlock=-1:-1")).toEqual({ Name: "memlock", Soft: -1, Hard: -1 });
    expect(() => parseUlimit("nofile=10:5")).toThrow(/soft limit must not exceed/);
    expect(() => parseUlimit("files=1")).toThrow(/unknown limit "files"/);
    expect(() => parseUlimit("nofile")).toThrow(/NAME=SOFT\[:HARD\]/);
  });

  it("parses --userns modes as Podman names them", () => {
    expect(parseUserns(undefined)).toEqual({ kind: "private" });
    expect(parseUserns("keep-id")).toEqual({ kind: "keep-id" });
    expect(parseUserns("keep-id:uid=1000,gid=100")).toEqual({ kind: "keep-id", uid: 1000, gid: 100 });
    expect(parseUserns("host")).toEqual({ kind: "host" });
    expect(() => parseUserns("keep-id:size=5")).toThrow(/keep-id takes uid=N and gid=N/);
    expect(() => parseUserns("auto")).toThrow(/not supported/);
    expect(() => parseUserns("bogus")).toThrow(/invalid --userns/);
  });

  it("parses sizes and security options", () => {
    expect(parseMemory("512m", "--memory")).toBe(512 * 1024 * 1024);
    expect(parseMemory("1g", "--memory")).toBe(1024 ** 3);
    expect(() => parseMemory("lots", "--memory")).toThrow(/invalid --memory "lots"/);
    const s = parseSecurityFlags({ securityOpt: ["no-new-privileges:true", "seccomp=unconfined", "unmask=ALL"], pidsLimit: "-1" });
    expect(s.noNewPrivileges).toBe(true);
    expect(s.seccomp).toEqual({ kind: "unconfined" });
    expect(s.unmask).toEqual(["ALL"]);
    expect(s.resources).toEqual({});
    expect(parseSecurityFlags({ securityOpt: ["no-new-privileges=false"] }).noNewPrivileges).toBe(false);
    expect(() => parseSecurityFlags({ securityOpt: ["no-new-privileges=maybe"] })).toThrow(/not a boolean/);
    expect(() => parseSecurityFlags({ securityOpt: ["apparmor=docker-default"] })).toThrow(/AppArmor/);
    expect(() => parseSecurityFlags({ cpus: "0.5x" })).toThrow(/invalid --cpus/);
  });
});

describe("cgroup delegation", () => {
  const v2 = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
  const hybrid = "30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n40 30 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";

  it("refuses on cgroup v1 and on an undelegated v2 tree, saying why", () => {
    const onV1 = cgroupSupport(["memory"], { mountinfo: hybrid, selfCgroup: "0::/\n" });
    expect(onV1).toEqual({ delegated: false, reason: expect.stringMatching(/cgroup v1 at \/sys\/fs\/cgroup/) });
    const notMine = cgroupSupport(["memory"], { mountinfo: v2, selfCgroup: "0::/user.slice/user-1000.slice/session-1.scope\n", writable: () => false });
    expect(notMine).toEqual({ delegated: false, reason: expect.stringMatching(/no cgroup is delegated/) });
  });

  it("uses the parent of this process's cgroup when this user may write there", () => {
    const ok = cgroupSupport([], { mountinfo: v2, selfCgroup: "0::/user.slice/user-1000.slice/user@1000.service/app.slice/tsrun.scope\n", writable: () => true });
    expect(ok).toEqual({ delegated: true, parent: "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice" });
  });

  it("writes the limits runc writes", () => {
    expect(limitFiles({ pidsLimit: 10, memory: 64 * 1024 * 1024, nanoCpus: 1.5e9 })).toEqual([
      ["pids.max", "10"],
      ["memory.max", String(64 * 1024 * 1024)],
      ["memory.swap.max", String(64 * 1024 * 1024)],
      ["cpu.max", "150000 100000"],
    ]);
  });

  it("takes docker run's other cgroup flags, checked as Docker checks them, and writes them as runc does on cgroup v2", () => {
    const r = parseSecurityFlags({ memory: "64m", memorySwap: "96m", memoryReservation: "32m", cpuShares: "512", cpuPeriod: "50000", cpuQuota: "25000", cpusetCpus: "0-1,3", cpusetMems: "0" }).resources;
    const mib = 1024 * 1024;
    expect(r).toEqual({ memory: 64 * mib, memorySwap: 96 * mib, memoryReservation: 32 * mib, cpuShares: 512, cpuPeriod: 50000, cpuQuota: 25000, cpusetCpus: "0-1,3", cpusetMems: "0" });
    expect(limitFiles(r)).toEqual([
      ["memory.max", String(64 * mib)],
      ["memory.swap.max", String(32 * mib)],
      ["memory.low", String(32 * mib)],
      ["cpu.max", "25000 50000"],
      ["cpu.weight", "20"],
      ["cpuset.cpus", "0-1,3"],
      ["cpuset.mems", "0"],
    ]);
    expect(limitFiles(parseSecurityFlags({ memory: "64m", memorySwap: "-1" }).resources)).toContainEqual(["memory.swap.max", "max"]);
    expect(limitFiles(parseSecurityFlags({ cpuQuota: "50000" }).resources)).toEqual([["cpu.max", "50000 100000"]]);
    // update lifts a running container's limits through LIMIT_FILE_DEFAULTS: it must name every file.
    const named = new Set(LIMIT_FILE_DEFAULTS.map(([file]) => file));
    for (const [file] of [...limitFiles(r), ...limitFiles({ pidsLimit: 10, memory: mib, nanoCpus: 1e9 })]) expect(named, file).toContain(file);
    for (const [flags, message] of [
      [{ memorySwap: "1g" }, /^You should always set the Memory limit when using Memoryswap limit/],
      [{ memory: "64m", memorySwap: "32m" }, /^Minimum memoryswap limit should be larger than memory limit/],
      [{ memory: "64m", memoryReservation: "128m" }, /^Minimum memory limit can not be less than memory reservation limit/],
      [{ cpus: "1", cpuQuota: "50000" }, /^Conflicting options: Nano CPUs and CPU Quota cannot both be set$/],
      [{ cpuShares: "x" }, /^invalid --cpu-shares "x"/],
      [{ cpuPeriod: "500" }, /^invalid --cpu-period "500": the minimum is 1000 microseconds$/],
      [{ cpusetCpus: "0-" }, /^invalid --cpuset-cpus "0-": a list such as 0-3,5$/],
    ] as [Parameters<typeof parseSecurityFlags>[0], RegExp][]) {
      expect(() => parseSecurityFlags(flags), JSON.stringify(flags)).toThrow(message);
    }
  });
});

describe("--userns id maps", () => {
  const m: IdMapping = { uid: 1001, gid: 1002, subUids: { start: 100000, count: 65536 }, subGids: { start: 200000, count: 65536 } };

  it("private and host: root is the user, 1..N the subordinate ids", () => {
    for (const kind of ["private", "host"] as const) {
      expect(idMapSteps(m, { kind }).tools).toEqual([
        ["newuidmap", "0", "1001", "1", "1", "100000", "65536"],
        ["newgidmap", "0", "1002", "1", "1", "200000", "65536"],
      ]);
    }
  });

  it("keep-id: the user keeps its id, the subordinate ids go around it", () => {
    expect(idMapSteps(m, { kind: "keep-id" }).tools).toEqual([
      ["newuidmap", "0", "100000", "1001", "1001", "1001", "1", "1002", "101001", "64535"],
      ["newgidmap", "0", "200000", "1002", "1002", "1002", "1", "1003", "201002", "64534"],
    ]);
    expect(idMapSteps(m, { kind: "keep-id", uid: 70000, gid: 0 }).tools).toEqual([
      ["newuidmap", "0", "100000", "65536", "70000", "1001", "1"],
      ["newgidmap", "0", "1002", "1", "1", "200000", "65536"],
    ]);
    expect(maxContainerId(m, "uid", { kind: "keep-id", uid: 70000 })).toBe(70000);
    expect(maxContainerId(m, "uid", { kind: "keep-id" })).toBe(65536);
  });

  it("nomap: only subordinate ids; modes that need them are refused without", () => {
    expect(idMapSteps(m, { kind: "nomap" }).tools[0]).toEqual(["newuidmap", "0", "100000", "65536"]);
    const bare: IdMapping = { uid: 1001, gid: 1001, subUids: null, subGids: null };
    expect(() => idMapSteps(bare, { kind: "keep-id" })).toThrow(/--userns keep-id needs subordinate ids for uid 1001/);
  });

  it("keep-id adds the user's passwd and group entries only when missing", () => {
    const passwd = "root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n";
    const group = "root:x:0:\n";
    expect(keepIdAccounts(passwd, group, { uid: 1001, gid: 1001, name: "me", home: "/home/me" })).toEqual({ group: "root:x:0:\nme:x:1001:\n" });
    expect(keepIdAccounts(passwd, group, { uid: 4242, gid: 0, name: "root", home: "/h" })).toEqual({ passwd: `${passwd}root-4242:*:4242:0:root-4242:/h:/bin/sh\n` });
  });
});

