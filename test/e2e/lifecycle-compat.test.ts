// The lifecycle commands against containers as Docker users meet them: a foreground `run --rm`
// seen from another terminal (logs, attach, wait, stop, rm -f, restart), containers that share
// another's namespaces when that one stops, restarts or goes, and the flag spellings Docker takes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa, type ResultPromise } from "execa";
import { asUser, cliEnv, env, importBusybox, onPty, tsrun, tsrunOk, unique, sleep, until } from "./helpers.js";

const started: string[] = [];

/** `tsrun ARGS...` left running (a second terminal's command), as the test user. */
function background(args: string[]): ResultPromise<{ reject: false; extendEnv: false; stripFinalNewline: false }> {
  const [cmd, ...rest] = asUser([env.cli, ...args]);
  return execa(cmd as string, rest, { reject: false, extendEnv: false, env: cliEnv(), cwd: env.base, stripFinalNewline: false });
}

/** A foreground `run --rm` printing tick0, tick1, ... and exiting 3 on SIGTERM. */
function ticker(name: string, extra: string[] = []): ReturnType<typeof background> {
  started.push(name);
  return background(["run", "--rm", "--name", name, ...extra, "busybox", "sh", "-c", 'trap "echo got-term; exit 3" TERM; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done']);
}

async function names(): Promise<string[]> {
  return (await tsrun(["ps", "-a", "--format", "{{.Names}}"])).stdout.split("\n");
}

beforeAll(async () => {
  await importBusybox("busybox");
});

afterAll(async () => {
  await tsrun(["rm", "-f", ...started]);
});

describe("a foreground run --rm, from another terminal", () => {
  it("logs, logs -f, attach and wait see it as Docker's do; stop prints its name; all get its exit status after it is removed", async () => {
    const name = unique("fg-rm");
    const run = ticker(name);
    await until(async () => (await tsrun(["logs", name])).stdout.includes("tick2\n"));
    const logs = await tsrunOk(["logs", name]);
    expect(logs.startsWith("tick0\ntick1\ntick2\n")).toBe(true);
    expect(await tsrunOk(["logs", "--tail", "1", name])).toMatch(/^tick\d+\n$/);
    expect(await tsrunOk(["logs", "-t", "--tail", "1", name])).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z tick\d+\n$/);
    expect(await tsrunOk(["inspect", "-f", "{{.State.Running}} {{.HostConfig.AutoRemove}}", name])).toBe("true true\n");
    expect((await tsrunOk(["ps", "--filter", `name=${name}`, "--format", "{{.Status}}"])).trim()).toMatch(/^Up /);
    expect(await tsrunOk(["exec", name, "echo", "in-exec"])).toBe("in-exec\n");
    const follow = background(["logs", "-f", name]);
    const attach = background(["attach", name]);
    const wait = background(["wait", name]);
    // attach shows what comes from now on: a few more ticks, then the end.
    await sleep(800);
    const stop = await tsrun(["stop", name]);
    expect(stop).toMatchObject({ code: 0, stdout: `${name}\n` });
    const [fg, followed, attached, waited] = await Promise.all([run, follow, attach, wait]);
    expect(fg.exitCode).toBe(3);
    expect(String(fg.stdout)).toMatch(/^tick0\n(tick\d+\n)+got-term\n$/);
    // Nothing the container printed is missing from the followed log, to its last line.
    expect(followed.exitCode).toBe(0);
    expect(String(followed.stdout)).toBe(String(fg.stdout));
    expect(attached.exitCode).toBe(3);
    expect(String(attached.stdout)).toMatch(/(tick\d+\n)+got-term\n$/);
    expect(String(attached.stdout)).not.toMatch(/^tick0\n/);
    expect(waited).toMatchObject({ exitCode: 0, stdout: "3\n" });
    expect(await names()).not.toContain(name);
  });

  it("rm -f prints its name and ends it (137); kill ends it; restart keeps it, as Docker keeps a --rm container through a restart", async () => {
    const name = unique("fg-rmf");
    const run = ticker(name);
    await until(async () => (await tsrun(["logs", name])).stdout.includes("tick1\n"));
    const wait = background(["wait", name]);
    await sleep(200);
    expect(await tsrun(["rm", "-f", name])).toMatchObject({ code: 0, stdout: `${name}\n`, stderr: "" });
    expect((await run).exitCode).toBe(137);
    expect(await wait).toMatchObject({ exitCode: 0, stdout: "137\n" });
    expect(await names()).not.toContain(name);

    const restarted = unique("fg-restart");
    const first = ticker(restarted);
    await until(async () => (await tsrun(["logs", restarted])).stdout.includes("tick1\n"));
    expect(await tsrun(["restart", "-t", "5", restarted])).toMatchObject({ code: 0, stdout: `${restarted}\n` });
    // The foreground run ends with the container's first life; the container lives on, detached.
    expect((await first).exitCode).toBe(3);
    expect((await tsrunOk(["inspect", "-f", "{{.State.Running}}", restarted])).trim()).toBe("true");
    await until(async () => /got-term\ntick0\n/.test((await tsrun(["logs", restarted])).stdout));
    // Still --rm: stopped for good, it goes.
    expect(await tsrunOk(["stop", restarted])).toBe(`${restarted}\n`);
    await until(async () => !(await names()).includes(restarted));

    const detached = unique("d-restart");
    started.push(detached);
    await tsrunOk(["run", "-d", "--rm", "--name", detached, "busybox", "sleep", "1000"]);
    expect(await tsrunOk(["restart", "-t", "0", detached])).toBe(`${detached}\n`);
    await sleep(500);
    expect((await tsrunOk(["inspect", "-f", "{{.State.Running}}", detached])).trim()).toBe("true");
    expect(await tsrunOk(["kill", detached])).toBe(`${detached}\n`);
    await until(async () => !(await names()).includes(detached));
  });

  it("its output is a pipe, not the run's terminal, without -t (as Docker's); with -t its log is kept too", async () => {
    const r = await onPty(24, 80, [{ expect: "done" }], `"$TSRUN" run --rm busybox sh -c '[ -t 1 ] && echo out-is-tty || echo out-is-pipe; echo done'`);
    expect(r.output).toContain("out-is-pipe");
    const name = unique("fg-tty");
    started.push(name);
    const run = background(["run", "--rm", "-t", "--name", name, "busybox", "sh", "-c", "echo on-tty; sleep 1000"]);
    await until(async () => (await tsrun(["logs", name])).stdout === "on-tty\r\n");
    await tsrunOk(["kill", name]);
    expect((await run).exitCode).toBe(137);
  });
});

describe("a foreground run with a restart policy", () => {
  it("ends with the container's first exit, as Docker's attached run does; the container is restarted as the policy says", async () => {
    const name = unique("fg-policy");
    started.push(name);
    const run = await tsrun(["run", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo ran; exit 3"]);
    expect(run).toMatchObject({ code: 3, stdout: "ran\n" });
    // Two restarts after the first run, then the policy is spent: three runs in the log.
    await until(async () => (await tsrunOk(["logs", name])) === "ran\nran\nran\n" && (await tsrunOk(["inspect", "-f", "{{.State.Status}}", name])).trim() === "exited", 20_000);
    expect(await tsrunOk(["inspect", "-f", "{{.RestartCount}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}", name])).toBe("2 3 on-failure\n");
    // always: the container runs on after the command that started it has returned.
    const always = unique("fg-always");
    started.push(always);
    expect(await tsrun(["run", "--name", always, "--restart", "always", "busybox", "sh", "-c", "echo up; sleep 0.3; exit 0"])).toMatchObject({ code: 0, stdout: "up\n" });
    await until(async () => (await tsrunOk(["logs", always])).split("\n").length > 3, 20_000);
    expect(await tsrunOk(["rm", "-f", always])).toBe(`${always}\n`);
  });
});

describe("update", () => {
  it("changes the restart policy of a running container (its monitor applies it at the next exit) and of a created one; bad input is one line", async () => {
    const running = unique("upd-run");
    started.push(running);
    await tsrunOk(["run", "-d", "--name", running, "busybox", "sh", "-c", "echo ran; sleep 0.5; exit 4"]);
    expect(await tsrunOk(["update", "--restart", "on-failure:2", running])).toBe(`${running}\n`);
    await until(async () => (await tsrunOk(["logs", running])) === "ran\nran\nran\n" && (await tsrunOk(["inspect", "-f", "{{.State.Status}}", running])).trim() === "exited", 20_000);
    expect(await tsrunOk(["inspect", "-f", "{{.RestartCount}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}", running])).toBe("2 4 on-failure 2\n");

    const created = unique("upd-created");
    started.push(created);
    await tsrunOk(["create", "--name", created, "--restart", "always", "busybox", "sh", "-c", "exit 1"]);
    expect(await tsrunOk(["update", "--restart", "no", created])).toBe(`${created}\n`);
    expect(await tsrun(["start", "-a", created])).toMatchObject({ code: 1, stdout: "" });
    expect(await tsrunOk(["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.RestartCount}} {{.State.Status}}", created])).toBe("no 0 exited\n");

    const removed = unique("upd-rm");
    started.push(removed);
    await tsrunOk(["run", "-d", "--rm", "--name", removed, "busybox", "sleep", "30"]);
    for (const [args, message] of [
      [["update", created], /^Error: you must provide one or more flags when using this command$/],
      [["update", "--restart", "sometimes", created], /^Error: invalid restart policy "sometimes"/],
      [["update", "--restart", "always", removed], /^Error: Restart policy cannot be updated because AutoRemove is enabled for the container$/],
      [["update", "--restart", "always", unique("nobody")], /^Error: no such container: /],
      [["update", "--pids-limit", "x", created], /^Error: invalid --pids-limit "x"/],
      [["update", "--cpu-shares", "x", created], /^Error: invalid --cpu-shares "x"/],
      [["update", "--cpu-period", "10", created], /^Error: invalid --cpu-period "10": the minimum is 1000 microseconds$/],
      [["update", "--memory-swap", "100m", created], /^Error: You should always set the Memory limit when using Memoryswap limit/],
    ] as [string[], RegExp][]) {
      const r = await tsrun(args);
      expect(r.code, args.join(" ")).toBe(125);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toEqual([expect.stringMatching(message)]);
    }
    // Nothing changed by the refused updates.
    expect(await tsrunOk(["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", created, removed])).toBe("no\nno\n");
  });

  it("takes run's cgroup flags (-c/--cpu-shares, --cpu-period, --cpu-quota, --cpuset-cpus/-mems, --memory-swap, --memory-reservation): recorded where a cgroup is delegated, refused in one line where not", async () => {
    const created = unique("upd-limits");
    started.push(created);
    await tsrunOk(["create", "--name", created, "busybox", "true"]);
    const fields = "{{.HostConfig.CpuShares}} {{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpusetCpus}} {{.HostConfig.MemoryReservation}}";
    const before = await tsrunOk(["inspect", "-f", fields, created]);
    const r = await tsrun(["update", "-c", "512", "--cpu-period", "50000", "--cpu-quota", "25000", "--cpuset-cpus", "0", "--memory-reservation", "32m", created]);
    if (r.code === 0) {
      // A host with delegation: the record holds the new limits, and "0"/"" lift them again.
      expect(await tsrunOk(["inspect", "-f", fields, created])).toBe("512 50000 25000 0 33554432\n");
      expect(await tsrunOk(["update", "-c", "0", "--cpuset-cpus", "", created])).toBe(`${created}\n`);
      expect(await tsrunOk(["inspect", "-f", "{{.HostConfig.CpuShares}} [{{.HostConfig.CpusetCpus}}]", created])).toBe("0 []\n");
      return;
    }
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/^Error: --memory-reservation, --cpu-shares, --cpu-period, --cpu-quota, --cpuset-cpus: resource limits need a cgroup v2 hierarchy delegated to your user; .+\n$/);
    expect(await tsrunOk(["inspect", "-f", fields, created])).toBe(before);
  });
});

describe("containers that share another's namespaces when it stops, restarts or goes", () => {
  async function nsLinks(name: string): Promise<Record<string, string>> {
    const out = await tsrunOk(["exec", name, "sh", "-c", "for k in net pid ipc; do echo $k $(readlink /proc/self/ns/$k); done"]);
    return Object.fromEntries(out.trim().split("\n").map((l) => l.split(" ") as [string, string]));
  }

  it("dependents join the target's namespaces at each start; a stopped target is refused in Docker's words; rm -f leaves them, as Docker does", async () => {
    const target = unique("ns-target");
    started.push(target);
    await tsrunOk(["run", "-d", "--name", target, "busybox", "sleep", "1000"]);
    const deps = { net: unique("ns-dnet"), pid: unique("ns-dpid"), ipc: unique("ns-dipc") };
    const flag = { net: "--network", pid: "--pid", ipc: "--ipc" } as const;
    for (const kind of ["net", "pid", "ipc"] as const) {
      started.push(deps[kind]);
      await tsrunOk(["create", "--name", deps[kind], flag[kind], `container:${target}`, "busybox", "sleep", "1000"]);
    }
    expect(await tsrunOk(["start", deps.net, deps.pid, deps.ipc])).toBe(`${deps.net}\n${deps.pid}\n${deps.ipc}\n`);
    const first = await nsLinks(target);
    for (const kind of ["net", "pid", "ipc"] as const) expect((await nsLinks(deps[kind]))[kind]).toBe(first[kind]);

    // Stopped: the one in its pid namespace ends with it; the others run on.
    await tsrunOk(["stop", "-t", "0", target]);
    await until(async () => (await tsrunOk(["inspect", "-f", "{{.State.Running}}", deps.pid])).trim() === "false");
    expect((await tsrunOk(["inspect", "-f", "{{.State.Running}}", deps.net, deps.ipc])).trim().split("\n")).toEqual(["true", "true"]);
    const refused = await tsrun(["start", deps.pid]);
    expect(refused).toMatchObject({ code: 125, stderr: `Error: cannot join PID of a non running container: ${target}\n` });
    for (const [flags, word] of [[["--network", `container:${target}`], "network"], [["--ipc", `container:${target}`], "IPC"], [["--pid", `container:${target}`], "PID"]] as const) {
      const r = await tsrun(["run", "--rm", ...flags, "busybox", "true"]);
      expect(r).toMatchObject({ code: 125, stderr: `Error: cannot join ${word} of a non running container: ${target}\n` });
    }
    // start with several: each gets its turn, the failures are named at the end (docker/cli).
    const other = unique("ns-other");
    started.push(other);
    await tsrunOk(["create", "--name", other, "busybox", "sleep", "1000"]);
    const several = await tsrun(["start", deps.pid, other]);
    expect(several).toMatchObject({ code: 125, stdout: `${other}\n`, stderr: `Error: cannot join PID of a non running container: ${target}\nError: failed to start containers: ${deps.pid}\n` });

    // Started again: dependents started after it are in its new namespaces.
    await tsrunOk(["start", target]);
    await tsrunOk(["stop", "-t", "0", deps.net, deps.ipc]);
    await tsrunOk(["start", deps.net, deps.pid, deps.ipc]);
    const second = await nsLinks(target);
    expect(second.net).not.toBe(first.net);
    for (const kind of ["net", "pid", "ipc"] as const) expect((await nsLinks(deps[kind]))[kind]).toBe(second[kind]);

    // rm -f: allowed while dependents exist (Docker); they keep running, and a later start of one says why it cannot.
    const id = (await tsrunOk(["inspect", "-f", "{{.Id}}", target])).trim();
    expect(await tsrunOk(["rm", "-f", target])).toBe(`${target}\n`);
    expect((await tsrunOk(["inspect", "-f", "{{.State.Running}}", deps.net])).trim()).toBe("true");
    await tsrunOk(["stop", "-t", "0", deps.net]);
    expect(await tsrun(["start", deps.net])).toMatchObject({ code: 125, stderr: `Error: no such container: ${id}\n` });
  });

  it("a target between two runs of its restart policy: Docker's 'is restarting'; ps and inspect show it restarting", async () => {
    const target = unique("ns-restarting");
    started.push(target);
    await tsrunOk(["run", "-d", "--name", target, "--restart", "always", "busybox", "sh", "-c", "exit 1"]);
    // Its back-off doubles from 100 ms: after a few restarts it spends seconds between runs.
    await until(async () => Number((await tsrunOk(["inspect", "-f", "{{.RestartCount}}", target])).trim()) >= 5, 30_000);
    let seen = "";
    await until(async () => {
      seen = (await tsrun(["run", "--rm", "--network", `container:${target}`, "busybox", "true"])).stderr;
      return seen !== "";
    });
    expect(seen).toBe(`Error: container ${target} is restarting, wait until the container is running\n`);
    // ps and inspect say so too, with the last run's exit code, as Docker's do.
    await until(async () => /^Restarting \(1\) .* ago restarting$/.test((await tsrunOk(["ps", "--filter", `name=^${target}$`, "--format", "{{.Status}} {{.State}}"])).trim()));
    await until(async () => (await tsrunOk(["inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.State.Restarting}} {{.State.ExitCode}}", target])).trim() === "restarting true true 1");
    await until(async () => (await tsrunOk(["ps", "--filter", "status=restarting", "--format", "{{.Names}}"])).split("\n").includes(target));
  });
});

describe("ps flag spellings Docker's parser takes", () => {
  it("--size=false, -s=true, --all=true, --quiet=1, -n=1, -n -1, -f=KEY=VALUE", async () => {
    const prefix = unique("spell");
    for (const n of ["a", "b"]) {
      started.push(`${prefix}-${n}`);
      await tsrunOk(["create", "--name", `${prefix}-${n}`, "busybox", "true"]);
    }
    const mine = ["--filter", `name=^${prefix}-`];
    const header = (args: string[]): Promise<string> => tsrunOk(["ps", ...args]).then((o) => o.split("\n")[0] as string);
    expect(await header(["-a", "--size=false", ...mine])).not.toMatch(/SIZE/);
    expect(await header(["-a", "-s=true", ...mine])).toMatch(/NAMES\s+SIZE$/);
    expect(await header(["-a", "--size", ...mine])).toMatch(/NAMES\s+SIZE$/);
    const names = (args: string[]): Promise<string[]> => tsrunOk(["ps", ...args, ...mine, "--format", "{{.Names}}"]).then((o) => o.trim().split("\n").filter(Boolean));
    expect(await names(["--all=true"])).toEqual([`${prefix}-b`, `${prefix}-a`]);
    expect(await names(["--all=false"])).toEqual([]);
    expect(await names(["-n=1"])).toEqual([`${prefix}-b`]);
    expect(await names(["--last=1"])).toEqual([`${prefix}-b`]);
    expect(await names(["-a", "-n", "-1"])).toEqual([`${prefix}-b`, `${prefix}-a`]);
    // (Two name filters would be alternatives: this one alone.)
    expect((await tsrunOk(["ps", "-a", `-f=name=^${prefix}-a$`, "--format", "{{.Names}}"])).trim()).toBe(`${prefix}-a`);
    expect((await tsrunOk(["ps", "--all=true", "--quiet=1", "--no-trunc=true", ...mine])).trim().split("\n")).toHaveLength(2);
    expect((await tsrunOk(["ps", "--all=true", "--quiet=1", "--no-trunc=true", ...mine])).trim()).toMatch(/^[a-f0-9]{64}\n[a-f0-9]{64}$/);
  });
});

describe("lifecycle flags as docker/cli has them", () => {
  it("stop and restart take -s/--signal and --timeout (and --time); logs takes --details and a negative --tail; rename to the same name is refused", async () => {
    const name = unique("flags");
    started.push(name);
    await tsrunOk(["run", "-d", "--name", name, "busybox", "sh", "-c", 'trap "echo got-int; exit 5" INT; trap "echo got-term; exit 6" TERM; echo ready; while true; do sleep 0.1; done']);
    await until(async () => (await tsrun(["logs", name])).stdout.includes("ready"));
    expect(await tsrunOk(["stop", "--signal", "SIGINT", "--timeout", "20", name])).toBe(`${name}\n`);
    expect((await tsrunOk(["inspect", "-f", "{{.State.ExitCode}}", name])).trim()).toBe("5");
    await tsrunOk(["start", name]);
    await until(async () => (await tsrun(["logs", name])).stdout.split("ready").length === 3);
    expect(await tsrunOk(["restart", "-s", "INT", "--time", "20", name])).toBe(`${name}\n`);
    await until(async () => (await tsrun(["logs", name])).stdout.split("ready").length === 4);
    expect(await tsrunOk(["stop", "-t", "20", name])).toBe(`${name}\n`);
    expect((await tsrunOk(["inspect", "-f", "{{.State.ExitCode}}", name])).trim()).toBe("6");
    expect(await tsrunOk(["logs", name])).toBe("ready\ngot-int\nready\ngot-int\nready\ngot-term\n");
    const bad = await tsrun(["stop", "-s", "SIGNOPE", name]);
    expect(bad).toMatchObject({ code: 125, stderr: "Error: invalid signal: SIGNOPE\n" });
    // --details: json-file's attributes (none here) and a space before each line, as Docker's.
    expect(await tsrunOk(["logs", "--details", "--tail", "2", name])).toBe(" ready\n got-term\n");
    expect(await tsrunOk(["logs", "--tail", "-1", name])).toBe("ready\ngot-int\nready\ngot-int\nready\ngot-term\n");
    expect((await tsrun(["logs", "--tail", "lots", name])).code).toBe(125);
    expect(await tsrun(["rename", name, name])).toMatchObject({ code: 125, stderr: "Error: renaming a container with the same name as its current name\n" });
  });
});
