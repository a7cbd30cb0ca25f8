// Confinement end to end: what a process inside a container sees of its capabilities, seccomp
// filter, no_new_privs and limits, for foreground and detached runs, exec and health checks;
// the flags that change it; and the refusals (bad profiles, limits without cgroup delegation).
import { beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { env, importBusybox, scratchDir, tsrun, unique } from "./helpers.js";

const DOCKER_DEFAULT_CAPS = "00000000a80425fb";
const lastCap = Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8"));
const ALL_CAPS = ((1n << BigInt(lastCap + 1)) - 1n).toString(16).padStart(16, "0");
const EPERM = 1;
const ENOSYS = 38;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The fields of /proc/self/status (or another pid's) as seen inside a container. */
function statusFields(text: string): Record<string, string> {
  return Object.fromEntries(text.split("\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
}

async function status(args: string[]): Promise<Record<string, string>> {
  const r = await tsrun(["run", "--rm", ...args, "busybox", "cat", "/proc/self/status"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return statusFields(r.stdout);
}

async function containerCount(): Promise<number> {
  return (await tsrun(["ps", "-a", "-q"])).stdout.split("\n").filter((l) => l).length;
}

let probeDir = "";
/** A static probe binary, bind-mounted at /probe: `probe/probe keyctl` prints "keyctl ERRNO". */
const probe = (): string[] => ["-v", `${probeDir}:/probe:ro`];

beforeAll(async () => {
  await importBusybox("busybox");
  probeDir = scratchDir("probe");
  // Other users in the container run the probes too.
  chmodSync(probeDir, 0o755);
  const source = path.join(probeDir, "probe.c");
  copyFileSync(fileURLToPath(new URL("probe.c", import.meta.url)), source);
  execFileSync("gcc", ["-static", "-O2", "-o", path.join(probeDir, "probe"), source]);
  // A setuid copy owned by the test user, who is root inside the container.
  const suid = path.join(probeDir, "suid-probe");
  copyFileSync(path.join(probeDir, "probe"), suid);
  if (env.user) chownSync(suid, env.user.uid, env.user.gid);
  chmodSync(suid, 0o4755);
});

describe("capabilities", () => {
  it("root in a container has Docker's default set; another user has none effective", async () => {
    const root = await status([]);
    expect(root).toMatchObject({ CapEff: DOCKER_DEFAULT_CAPS, CapPrm: DOCKER_DEFAULT_CAPS, CapBnd: DOCKER_DEFAULT_CAPS, CapInh: "0000000000000000", CapAmb: "0000000000000000" });
    const user = await status(["-u", "1000"]);
    expect(user).toMatchObject({ Uid: "1000\t1000\t1000\t1000", CapEff: "0000000000000000", CapPrm: "0000000000000000", CapBnd: DOCKER_DEFAULT_CAPS });
  });

  it("--cap-add/--cap-drop change the sets (any case, with or without CAP_, ALL)", async () => {
    expect((await status(["--cap-drop", "ALL", "--cap-add", "net_bind_service"])).CapBnd).toBe("0000000000000400");
    expect((await status(["--cap-add", "ALL"])).CapEff).toBe(ALL_CAPS);
    // Dropping CHOWN (bit 0) and adding CAP_NET_ADMIN (bit 12).
    expect((await status(["--cap-drop", "chown", "--cap-add", "CAP_NET_ADMIN"])).CapEff).toBe("00000000a80435fa");
    // A non-root user gets the explicitly added capabilities as ambient ones, as with Podman.
    const user = await status(["-u", "1000", "--cap-add", "NET_ADMIN"]);
    expect(user).toMatchObject({ CapEff: "0000000000001000", CapAmb: "0000000000001000", CapBnd: "00000000a80435fb" });
    // The capability is really gone: root cannot chown without CAP_CHOWN.
    const r = await tsrun(["run", "--rm", "--cap-drop", "CHOWN", "busybox", "sh", "-c", "touch /f && chown 1000 /f"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Operation not permitted/);
    const bad = await tsrun(["run", "--rm", "--cap-add", "FLY", "busybox", "true"]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toBe('Error: invalid --cap-add "FLY": unknown capability\n');
  });
});

describe("seccomp", () => {
  it("Docker's default profile: unshare, keyctl and mount are refused, clone3 answers ENOSYS", async () => {
    expect((await status([])).Seccomp).toBe("2");
    const unshare = await tsrun(["run", "--rm", "busybox", "unshare", "-r", "true"]);
    expect(unshare.code).not.toBe(0);
    expect(unshare.stderr).toMatch(/Operation not permitted/);
    const r = await tsrun(["run", "--rm", ...probe(), "busybox", "sh", "-c", "mkdir -p /mnt; /probe/probe keyctl; /probe/probe clone3; /probe/probe mount /mnt"]);
    expect(r.stdout).toBe(`keyctl ${EPERM}\nclone3 ${ENOSYS}\nmount ${EPERM}\n`);
  });

  it("seccomp=unconfined lifts the filter (the capabilities stay Docker's)", async () => {
    expect((await status(["--security-opt", "seccomp=unconfined"])).Seccomp).toBe("0");
    const unshare = await tsrun(["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "unshare", "-r", "sh", "-c", "id -u"]);
    expect(unshare).toMatchObject({ code: 0, stdout: "0\n" });
    const r = await tsrun(["run", "--rm", "--security-opt", "seccomp=unconfined", ...probe(), "busybox", "/probe/probe", "keyctl"]);
    expect(r.stdout).not.toBe(`keyctl ${EPERM}\n`);
    expect(r.stdout).toMatch(/^keyctl \d+\n$/);
  });

  it("the profile follows the capabilities: with SYS_ADMIN a filesystem can be mounted inside", async () => {
    const r = await tsrun(["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", "mkdir /m && mount -t tmpfs none /m && grep -c ' /m ' /proc/mounts"]);
    expect(r).toMatchObject({ code: 0, stdout: "1\n" });
  });

  it("a custom profile is honoured (mkdir denied with EPERM, or mount despite SYS_ADMIN)", async () => {
    const dir = scratchDir("seccomp");
    const noMkdir = path.join(dir, "no-mkdir.json");
    writeFileSync(noMkdir, JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO", errnoRet: EPERM }] }));
    const r = await tsrun(["run", "--rm", "--security-opt", `seccomp=${noMkdir}`, "busybox", "sh", "-c", "mkdir /x; touch /y && echo touched"]);
    expect(r.stderr).toMatch(/mkdir: can't create directory '\/x': Operation not permitted/);
    expect(r.stdout).toBe("touched\n");
    const noMount = path.join(dir, "no-mount.json");
    writeFileSync(noMount, JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ name: "mount", action: "SCMP_ACT_ERRNO", errnoRet: 13 }] }));
    const m = await tsrun(["run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt", `seccomp=${noMount}`, ...probe(), "busybox", "sh", "-c", "mkdir /m; /probe/probe mount /m"]);
    expect(m.stdout).toBe("mount 13\n");
  });

  it("a bad profile is one line of error, exit 125, and no container", async () => {
    const dir = scratchDir("badprofile");
    const before = await containerCount();
    const cases: [string, RegExp][] = [
      ['{"defaultAction": "SCMP_ACT_ALLOW",', /^Error: invalid seccomp profile .*bad\.json: .*JSON.*\n$/],
      ['{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]}', /^Error: invalid seccomp profile .*bad\.json: syscalls\[0\]: unknown action "SCMP_ACT_EXPLODE"\n$/],
      // Well-formed, but libseccomp refuses it: still before anything is created.
      ['{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOSUCH"]}', /^Error: cannot compile the seccomp profile: seccomp: unknown architecture nosuch\n$/],
    ];
    for (const [text, pattern] of cases) {
      writeFileSync(path.join(dir, "bad.json"), text);
      const r = await tsrun(["run", "--rm", "--security-opt", `seccomp=${path.join(dir, "bad.json")}`, "busybox", "true"]);
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(pattern);
    }
    const missing = await tsrun(["run", "--security-opt", "seccomp=/nonexistent/profile.json", "busybox", "true"]);
    expect(missing).toMatchObject({ code: 125, stderr: "Error: cannot read seccomp profile /nonexistent/profile.json: no such file\n" });
    expect(await containerCount()).toBe(before);
  });
});

describe("no-new-privileges", () => {
  it("a setuid-root binary raises a user to euid 0 only without no-new-privileges", async () => {
    expect(statSync(path.join(probeDir, "suid-probe")).mode & 0o4000).toBe(0o4000);
    const plain = await tsrun(["run", "--rm", "-u", "1000", ...probe(), "busybox", "/probe/suid-probe", "euid"]);
    expect(plain).toMatchObject({ code: 0, stdout: "0\n" });
    for (const opt of ["no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"]) {
      const nnp = await tsrun(["run", "--rm", "-u", "1000", "--security-opt", opt, ...probe(), "busybox", "/probe/suid-probe", "euid"]);
      expect(nnp, opt).toMatchObject({ code: 0, stdout: "1000\n" });
    }
    const off = await tsrun(["run", "--rm", "-u", "1000", "--security-opt", "no-new-privileges=false", ...probe(), "busybox", "/probe/suid-probe", "euid"]);
    expect(off.stdout).toBe("0\n");
    expect((await status(["--security-opt", "no-new-privileges"])).NoNewPrivs).toBe("1");
  });
});

describe("--privileged", () => {
  it("every capability, no seccomp filter, no masked paths, a writable /sys, the host's devices", async () => {
    const s = await status(["--privileged"]);
    expect(s).toMatchObject({ CapEff: ALL_CAPS, CapBnd: ALL_CAPS, Seccomp: "0", NoNewPrivs: "0" });
    const script = "mkdir /m && mount -t tmpfs none /m && echo mounted; grep -c -E ' /proc/(keys|kcore|timer_list) ' /proc/self/mountinfo; grep ' /sys ' /proc/self/mountinfo | grep -c ' rw,'; test -c /dev/net/tun && echo tun";
    const p = await tsrun(["run", "--rm", "--privileged", "busybox", "sh", "-c", script]);
    const tun = (() => {
      try {
        return (statSync("/dev/net/tun").mode & 0o006) === 0o006;
      } catch {
        return false;
      }
    })();
    expect(p.stdout).toBe(`mounted\n0\n1\n${tun ? "tun\n" : ""}`);
    const d = await tsrun(["run", "--rm", "busybox", "sh", "-c", "grep -c -E ' /proc/(keys|kcore|timer_list) ' /proc/self/mountinfo; test -e /dev/net/tun || echo no-tun"]);
    expect(Number(d.stdout.split("\n")[0])).toBeGreaterThan(0);
    expect(d.stdout).toContain("no-tun\n");
  });
});

describe("masked paths (Podman's mask= and unmask=)", () => {
  it("unmask=ALL lifts runc's masks and read-only paths; mask= adds one", async () => {
    const count = "grep -c -E ' /proc/(keys|kcore|timer_list|sys) ' /proc/self/mountinfo";
    expect((await tsrun(["run", "--rm", "--security-opt", "unmask=ALL", "busybox", "sh", "-c", count])).stdout).toBe("0\n");
    const one = await tsrun(["run", "--rm", "--security-opt", "unmask=/proc/kcore:/proc/keys", "busybox", "sh", "-c", "grep -c ' /proc/kcore ' /proc/self/mountinfo; grep -c ' /proc/timer_list ' /proc/self/mountinfo"]);
    expect(one.stdout).toBe("0\n1\n");
    const masked = await tsrun(["run", "--rm", "--security-opt", "mask=/etc/hostname", "busybox", "sh", "-c", "wc -c < /etc/hostname"]);
    expect(masked.stdout.trim()).toBe("0");
    const bad = await tsrun(["run", "--rm", "--security-opt", "mask=relative/path", "busybox", "true"]);
    expect(bad).toMatchObject({ code: 125, stderr: 'Error: invalid --security-opt mask=relative/path: "relative/path" is not an absolute path\n' });
  });
});

describe("limits", () => {
  it("--ulimit sets soft and hard limits, for the container and for exec", async () => {
    const r = await tsrun(["run", "--rm", "--ulimit", "nofile=512:1024", "--ulimit", "core=0", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"]);
    expect(r).toMatchObject({ code: 0, stdout: "512\n1024\n0\n" });
    const bad = await tsrun(["run", "--rm", "--ulimit", "nofile=2048:1024", "busybox", "true"]);
    expect(bad).toMatchObject({ code: 125, stderr: 'Error: invalid --ulimit "nofile=2048:1024": the soft limit must not exceed the hard limit\n' });
    const unknown = await tsrun(["run", "--rm", "--ulimit", "files=1", "busybox", "true"]);
    expect(unknown.code).toBe(125);
    expect(unknown.stderr).toMatch(/^Error: invalid --ulimit "files=1": unknown limit "files"/);
  });

  it("--memory, --pids-limit, --cpus and the other cgroup flags need cgroup v2 delegation: refused in one line without it", async () => {
    const before = await containerCount();
    const cases = [
      ["--memory", "64m"],
      ["--pids-limit", "10"],
      ["--cpus", "0.5"],
      ["--cpu-shares", "512"],
      ["--cpu-quota", "50000"],
      ["--cpuset-cpus", "0"],
      ["--memory-reservation", "32m"],
      ["-c", "512"],
    ];
    for (const flags of cases) {
      const r = await tsrun(["run", "--rm", ...flags, "busybox", "cat", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.weight"]);
      if (r.code === 0) {
        // A host with delegation: the limit must be in force inside.
        if (flags[0] === "--pids-limit") expect(r.stdout).toMatch(/^10\n/);
        if (flags[0] === "--cpu-shares" || flags[0] === "-c") expect(r.stdout).toMatch(/\n20\n$/);
        continue;
      }
      const named = flags[0] === "-c" ? "--cpu-shares" : flags[0];
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(new RegExp(`^Error: ${named}: resource limits need a cgroup v2 hierarchy delegated to your user; .+\\n$`));
      expect(r.stderr.split("\n")).toHaveLength(2);
    }
    expect(await containerCount()).toBe(before);
  });
});

describe("every process of a container is confined", () => {
  it("a detached container, exec (and exec --privileged) and health checks get the container's settings", async () => {
    const name = unique("conf");
    const run = await tsrun([
      "run", "-d", "--name", name, "--cap-drop", "NET_RAW", "--ulimit", "nofile=256:512", "--security-opt", "no-new-privileges",
      "--health-cmd", "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status", "--health-interval", "1s",
      "busybox", "sleep", "60",
    ]);
    expect(run.code).toBe(0);
    const expected = "00000000a80405fb";
    const init = statusFields((await tsrun(["exec", name, "cat", "/proc/1/status"])).stdout);
    expect(init).toMatchObject({ CapEff: expected, Seccomp: "2", NoNewPrivs: "1" });
    const exec = statusFields((await tsrun(["exec", name, "sh", "-c", "cat /proc/self/status; echo Nofile: $(ulimit -n)"])).stdout);
    expect(exec).toMatchObject({ CapEff: expected, CapBnd: expected, Seccomp: "2", NoNewPrivs: "1", Nofile: "256" });
    const user = statusFields((await tsrun(["exec", "-u", "1000", name, "cat", "/proc/self/status"])).stdout);
    expect(user).toMatchObject({ CapEff: "0000000000000000", CapBnd: expected, Seccomp: "2" });
    const privileged = statusFields((await tsrun(["exec", "--privileged", name, "cat", "/proc/self/status"])).stdout);
    expect(privileged).toMatchObject({ CapEff: ALL_CAPS, Seccomp: "2" });
    let health = "";
    for (let i = 0; i < 200 && !health.includes("CapEff"); i++) {
      await sleep(100);
      health = (await tsrun(["inspect", "-f", "{{json .State.Health}}", name])).stdout;
    }
    const log = JSON.parse(health) as { Log: { Output: string; ExitCode: number }[] };
    expect(statusFields(log.Log[0]?.Output ?? "")).toEqual({ CapEff: expected, Seccomp: "2", NoNewPrivs: "1" });
    const hc = JSON.parse((await tsrun(["inspect", "-f", "{{json .HostConfig}}", name])).stdout) as Record<string, unknown>;
    expect(hc).toMatchObject({
      CapAdd: null,
      CapDrop: ["NET_RAW"],
      Privileged: false,
      SecurityOpt: ["no-new-privileges"],
      Ulimits: [{ Name: "nofile", Hard: 512, Soft: 256 }],
      PidsLimit: null,
      Memory: 0,
      NanoCpus: 0,
      UsernsMode: "",
    });
    expect(hc.MaskedPaths).toContain("/proc/kcore");
    expect(hc.ReadonlyPaths).toContain("/proc/sys");
    expect((await tsrun(["rm", "-f", name])).code).toBe(0);
  });
});

describe("--userns", () => {
  const hostUid = env.user ? env.user.uid : (process.getuid?.() ?? 0);
  const hostGid = env.user ? env.user.gid : (process.getgid?.() ?? 0);

  it("keep-id: the user keeps its ids inside and runs as them; the image still belongs to root; bind-mount files are the user's", async () => {
    const dir = scratchDir("keepid");
    const r = await tsrun(["run", "--rm", "--userns", "keep-id", "-v", `${dir}:/work`, "busybox", "sh", "-c", "id -u; id -g; stat -c '%u:%g' / /etc/passwd /bin/busybox; touch /work/made; wc -l < /proc/self/uid_map"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`${hostUid}\n${hostGid}\n0:0\n0:0\n0:0\n${hostUid < 65536 ? 3 : 2}\n`);
    expect(statSync(path.join(dir, "made"))).toMatchObject({ uid: hostUid, gid: hostGid });
    // Root is still root inside, over the image's files.
    const root = await tsrun(["run", "--rm", "--userns", "keep-id", "-u", "0", "busybox", "sh", "-c", "id -u; echo x >> /etc/passwd && echo wrote"]);
    expect(root.stdout).toBe("0\nwrote\n");
  });

  it("keep-id:uid=N,gid=N adds a passwd and group entry when the image has none", async () => {
    const r = await tsrun(["run", "--rm", "--userns", "keep-id:uid=4242,gid=4243", "busybox", "sh", "-c", "id -u; id -g; grep -c ':4242:4243:' /etc/passwd; grep -c ':4243:' /etc/group; echo $HOME"]);
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n").slice(0, 4)).toEqual(["4242", "4243", "1", "1"]);
  });

  it("keep-id for a detached container: exec runs as the user, inspect shows the mode, commit keeps the owners it saw", async () => {
    const name = unique("keepid");
    expect((await tsrun(["run", "-d", "--name", name, "--userns", "keep-id", "busybox", "sleep", "60"])).code).toBe(0);
    expect((await tsrun(["exec", name, "sh", "-c", "id -u; touch /tmp/mine"])).stdout).toBe(`${hostUid}\n`);
    expect((await tsrun(["exec", "-u", "root", name, "sh", "-c", "id -u; touch /rootfile; rm /etc/group"])).stdout).toBe("0\n");
    expect((await tsrun(["inspect", "-f", "{{.HostConfig.UsernsMode}}", name])).stdout).toBe("keep-id\n");
    const image = unique("keepid-image");
    const commit = await tsrun(["commit", name, image]);
    expect(commit.stderr).toBe("");
    expect(commit.code).toBe(0);
    // Run with the default mapping: the owners are the ones the keep-id container had.
    const check = await tsrun(["run", "--rm", image, "sh", "-c", "stat -c '%n %u:%g' /tmp/mine /rootfile /etc/passwd; test -e /etc/group || echo no-group"]);
    expect(check.stdout).toBe(`/tmp/mine ${hostUid}:${hostGid}\n/rootfile 0:0\n/etc/passwd 0:0\nno-group\n`);
    expect((await tsrun(["rm", "-f", name])).code).toBe(0);
  });

  it("nomap leaves the user unmapped; host is the default mapping; others are refused", async () => {
    const nomap = await tsrun(["run", "--rm", "--userns", "nomap", "busybox", "sh", "-c", "id -u; stat -c '%u:%g' /etc/passwd; cat /proc/self/uid_map"]);
    expect(nomap.stderr).toBe("");
    const [uid, owner, ...map] = nomap.stdout.trim().split("\n");
    expect([uid, owner]).toEqual(["0", "0:0"]);
    expect(map).toHaveLength(1);
    expect(map[0]?.trim().split(/\s+/)[1]).not.toBe(String(hostUid));
    const host = await tsrun(["run", "--rm", "--userns", "host", "busybox", "cat", "/proc/self/uid_map"]);
    expect(host.stdout.trim().split("\n")[0]?.trim().split(/\s+/)).toEqual(["0", String(hostUid), "1"]);
    const auto = await tsrun(["run", "--rm", "--userns", "auto", "busybox", "true"]);
    expect(auto).toMatchObject({ code: 125, stderr: "Error: --userns auto is not supported by tsrun (private, host, nomap, keep-id are)\n" });
  });
});

