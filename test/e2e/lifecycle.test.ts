// Detached containers and their lifecycle, end to end: run -d, ps, logs, stop, kill, rm, wait,
// create/start, restart, --rm, and a monitor killed with SIGKILL.
import { beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { asUser, cliEnv, env, importBusybox, onPty, shAsUser, tsrun, unique, sleep, until } from "./helpers.js";

/** A process's state letter from /proc (R, S, Z, ...), or "gone". */
function processState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return "gone";
  }
}

function monitorPid(id: string): number {
  const record = JSON.parse(readFileSync(path.join(env.storeRoot, "containers", id, "container.json"), "utf8"));
  return record.state.monitorPid as number;
}

beforeAll(async () => {
  await importBusybox("busybox");
  await importBusybox("stopsig", ["STOPSIGNAL SIGUSR1", 'CMD ["sh","-c","trap \'echo got-usr1; exit 9\' USR1; echo ready; while true; do sleep 0.1; done"]']);
});

describe("detached containers", () => {
  it("run -d prints the ID; ps shows it Up; logs has its output on both streams", async () => {
    const name = unique("det");
    const r = await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; sleep 30"]);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^[a-f0-9]{64}$/);
    const ps = await tsrun(["ps"]);
    const line = ps.stdout.split("\n").find((l) => l.includes(name));
    expect(line).toMatch(new RegExp(`^${id.slice(0, 12)}\\s+busybox\\s+"sh -c echo out; ech…"\\s+.*Up `));
    expect(ps.stdout.split("\n")[0]).toMatch(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
    await until(async () => (await tsrun(["logs", name])).stdout === "out\n");
    const logs = await tsrun(["logs", id.slice(0, 10)]);
    expect(logs.stdout).toBe("out\n");
    expect(logs.stderr).toBe("err\n");
    const json = readFileSync(path.join(env.storeRoot, "containers", id, "ctr.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(json[0]).toMatchObject({ stream: expect.stringMatching(/std(out|err)/), time: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/) });
    const rm = await tsrun(["rm", name]);
    expect(rm.code).not.toBe(0);
    expect(rm.stderr).toMatch(/container is running/);
    expect((await tsrun(["rm", "-f", name])).code).toBe(0);
    expect((await tsrun(["ps", "-a", "-q", "--no-trunc"])).stdout).not.toContain(id);
  });

  it("a foreground run without --rm keeps its log, as Docker's does (pipes and -t); a reader that goes away stops the writer; one that never started leaves nothing", async () => {
    const name = unique("fg-log");
    const r = await tsrun(["run", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; printf 'no newline'; exit 3"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("out\nno newline");
    expect(r.stderr).toBe("err\n");
    const logs = await tsrun(["logs", name]);
    expect(logs.stdout).toBe("out\nno newline");
    expect(logs.stderr).toBe("err\n");
    const json = readFileSync(path.join(env.storeRoot, "containers", (await tsrun(["inspect", "-f", "{{.Id}}", name])).stdout.trim(), "ctr.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(json).toContainEqual({ log: "out\n", stream: "stdout", time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/) });
    expect((await tsrun(["ps", "-a", "--filter", `name=${name}`, "--format", "{{.Status}}"])).stdout).toMatch(/^Exited \(3\) /);
    // Its input: a pipe, closed at its end.
    const piped = await tsrun(["run", "-i", "--name", `${name}-in`, "busybox", "sh", "-c", "cat; echo done"], { input: "line\n" });
    expect(piped.stdout).toBe("line\ndone\n");
    expect((await tsrun(["logs", `${name}-in`])).stdout).toBe("line\ndone\n");
    // A tty's output is logged as the terminal got it (CR LF), all on stdout.
    const tty = await tsrun(["run", "-t", "--name", `${name}-t`, "busybox", "sh", "-c", "echo on-tty; echo err-tty >&2"]);
    expect(tty.stdout).toBe("on-tty\r\nerr-tty\r\n");
    expect((await tsrun(["logs", `${name}-t`])).stdout).toBe("on-tty\r\nerr-tty\r\n");
    // `| head -1`: the container's writes fail once its reader is gone (pid 1 ignores SIGPIPE's
    // default action, so yes sees EPIPE and exits 1), instead of filling the log forever.
    const head = await shAsUser(`"$TSRUN" run --name ${name}-yes busybox yes | head -n 1`, { timeout: 30_000 });
    expect(head.stdout.split("\n")[0]).toBe("y");
    expect((await tsrun(["ps", "-a", "--filter", `name=${name}-yes`, "--format", "{{.Status}}"])).stdout).toMatch(/^Exited \(1\) /);
    await tsrun(["rm", name, `${name}-in`, `${name}-t`, `${name}-yes`]);

    const missing = await tsrun(["run", "--name", `${name}-x`, "busybox", "no-such-command"]);
    expect(missing.code).toBe(127);
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    expect((await tsrun(["ps", "-a", "-q", "--filter", `name=${name}-x`])).stdout).toBe("");
  });

  it("--log-driver none: the output is shown (foreground) but kept nowhere; logs refuses; inspect shows it; options refused", async () => {
    const name = unique("nolog");
    const r = await tsrun(["run", "--name", name, "--log-driver", "none", "busybox", "echo", "shown"]);
    expect(r.stdout).toBe("shown\n");
    const logs = await tsrun(["logs", name]);
    expect(logs.code).not.toBe(0);
    expect(logs.stderr.trim().split("\n")).toHaveLength(1);
    expect(logs.stderr).toMatch(/does not support reading/);
    const id = (await tsrun(["run", "-d", "--name", `${name}-d`, "--log-driver", "none", "busybox", "echo", "detached"])).stdout.trim();
    expect((await tsrun(["wait", id])).stdout.trim()).toBe("0");
    expect(existsSync(path.join(env.storeRoot, "containers", id, "ctr.log"))).toBe(false);
    expect((await tsrun(["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", id])).stdout.trim()).toBe("none");
    const bad = await tsrun(["run", "--rm", "--log-driver", "none", "--log-opt", "max-size=1m", "busybox", "true"]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/takes no options/);
    await tsrun(["rm", name, `${name}-d`]);
  });

  it("--log-opt max-size/max-file rotate the log as Docker's json-file does; logs reads the rotated files, and -f follows across a rotation", async () => {
    const name = unique("rotate");
    const lines = (from: number, to: number): string => Array.from({ length: to - from }, (_, i) => `line-${from + i}\n`).join("");
    const loop = (n: number, pause: string): string => `i=0; while [ $i -lt ${n} ]; do echo line-$i; i=$((i+1)); ${pause} done`;
    // Foreground: every record is about 70 bytes, 14 to a file of 1 KiB; three files kept.
    const r = await tsrun(["run", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=3", "busybox", "sh", "-c", loop(100, "")]);
    expect(r.stdout).toBe(lines(0, 100));
    const id = (await tsrun(["inspect", "-f", "{{.Id}}", name])).stdout.trim();
    const files = readdirSync(path.join(env.storeRoot, "containers", id)).filter((f) => f.startsWith("ctr.log")).sort();
    expect(files).toEqual(["ctr.log", "ctr.log.1", "ctr.log.2"]);
    for (const f of files) expect(statSync(path.join(env.storeRoot, "containers", id, f)).size).toBeLessThanOrEqual(1024);
    const kept = (await tsrun(["logs", name])).stdout;
    const first = Number(/^line-(\d+)/.exec(kept)?.[1]);
    expect(first).toBeGreaterThan(50);
    expect(kept).toBe(lines(first, 100));
    expect(JSON.parse((await tsrun(["inspect", "-f", "{{json .HostConfig.LogConfig}}", name])).stdout)).toEqual({ Type: "json-file", Config: { "max-size": "1k", "max-file": "3" } });
    // Detached, followed from the start: nothing is lost when the file rotates under the reader.
    const followed = `${name}-f`;
    await tsrun(["create", "--name", followed, "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox", "sh", "-c", loop(40, "sleep 0.05;")]);
    await tsrun(["start", followed]);
    const follow = await tsrun(["logs", "-f", followed], { timeout: 60_000 });
    expect(follow.stdout).toBe(lines(0, 40));
    for (const bad of [["max-size=0"], ["max-size=lots"], ["max-file=0", "max-size=1m"]]) {
      const b = await tsrun(["run", "--rm", ...bad.flatMap((o) => ["--log-opt", o]), "busybox", "true"]);
      expect(b.code).toBe(125);
      expect(b.stderr).toMatch(/^Error: invalid --log-opt max-(size|file)=/);
    }
    await tsrun(["rm", name, followed]);
  });

  it("pause stops every process (children too) until unpause; ps, inspect and filters show it; exec is refused; stop works on a paused container", async () => {
    const name = unique("pause");
    // A child process counts; its parent too.
    const r = await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", "(while true; do echo child; sleep 0.05; done) & while true; do echo parent; sleep 0.05; done"]);
    expect(r.code, r.stderr).toBe(0);
    await until(async () => (await tsrun(["logs", name])).stdout.includes("child"));
    expect((await tsrun(["pause", name])).stdout).toBe(`${name}\n`);
    const lines = async (): Promise<number> => (await tsrun(["logs", name])).stdout.split("\n").length;
    const frozen = await lines();
    await sleep(600);
    expect(await lines()).toBe(frozen);
    expect((await tsrun(["ps", "--filter", `name=${name}`])).stdout).toMatch(/Up .* \(Paused\)/);
    expect((await tsrun(["ps", "-q", "--filter", `name=${name}`, "--filter", "status=paused"])).stdout.trim()).toMatch(/^[a-f0-9]{12}$/);
    expect((await tsrun(["inspect", "--format", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}", name])).stdout).toBe("paused true true\n");
    const exec = await tsrun(["exec", name, "true"]);
    expect(exec.code).toBe(125);
    expect(exec.stderr).toMatch(/is paused/);
    const again = await tsrun(["pause", name]);
    expect(again.code).toBe(125);
    expect(again.stderr).toMatch(/already paused/);
    expect((await tsrun(["unpause", name])).code).toBe(0);
    await until(async () => (await lines()) > frozen + 4);
    expect((await tsrun(["inspect", "--format", "{{.State.Status}} {{.State.Paused}}", name])).stdout).toBe("running false\n");
    expect((await tsrun(["unpause", name])).stderr).toMatch(/is not paused/);
    // Stop on a paused container: the signal is acted on once it is let go on.
    expect((await tsrun(["pause", name])).code).toBe(0);
    const stop = await tsrun(["stop", "-t", "1", name]);
    expect(stop.code, stop.stderr).toBe(0);
    expect((await tsrun(["inspect", "--format", "{{.State.Status}} {{.State.Paused}}", name])).stdout).toBe("exited false\n");
    expect((await tsrun(["pause", name])).stderr).toMatch(/is not running/);
    await tsrun(["rm", name]);
  });

  it("the container outlives the CLI; wait returns its exit code; ps -a shows Exited (N)", async () => {
    const name = unique("wait");
    await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 0.5; exit 3"]);
    const w = await tsrun(["wait", name]);
    expect(w.stdout.trim()).toBe("3");
    const ps = await tsrun(["ps", "-a", "--filter", `name=${name}`]);
    expect(ps.stdout).toMatch(/Exited \(3\) .* ago/);
    expect((await tsrun(["ps", "-q", "--filter", `name=${name}`, "--filter", "status=exited"])).stdout.trim()).toMatch(/^[a-f0-9]{12}$/);
    expect((await tsrun(["ps", "-q", "--filter", `name=${name}`, "--filter", "status=running"])).stdout.trim()).toBe("");
    await tsrun(["rm", name]);
  });

  it("logs -f follows a live container until it exits; --tail and -t", async () => {
    const name = unique("follow");
    await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done"]);
    const f = await tsrun(["logs", "-f", name], { timeout: 20_000 });
    expect(f.stdout).toBe("line1\nline2\nline3\nline4\nline5\n");
    expect((await tsrun(["logs", "--tail", "2", name])).stdout).toBe("line4\nline5\n");
    expect((await tsrun(["logs", "-t", "--tail", "1", name])).stdout).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z line5\n$/);
    await tsrun(["rm", name]);
  });

  it("stop sends the image's STOPSIGNAL, and SIGKILL after -t", async () => {
    const name = unique("stopsig");
    await tsrun(["run", "-d", "--name", name, "stopsig"]);
    await until(async () => (await tsrun(["logs", name])).stdout.includes("ready"));
    expect((await tsrun(["stop", name])).code).toBe(0);
    expect((await tsrun(["logs", name])).stdout).toContain("got-usr1");
    expect((await tsrun(["wait", name])).stdout.trim()).toBe("9");
    const stubborn = unique("stubborn");
    await tsrun(["run", "-d", "--name", stubborn, "busybox", "sleep", "60"]);
    const started = Date.now();
    expect((await tsrun(["stop", "-t", "1", stubborn])).code).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await tsrun(["wait", stubborn])).stdout.trim()).toBe("137");
    await tsrun(["rm", name, stubborn]);
  });

  it("kill -s sends the signal; killing a stopped container is an error", async () => {
    const name = unique("kill");
    await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", "trap 'exit 5' HUP; while true; do sleep 0.1; done"]);
    await sleep(300);
    expect((await tsrun(["kill", "-s", "HUP", name])).code).toBe(0);
    expect((await tsrun(["wait", name])).stdout.trim()).toBe("5");
    const again = await tsrun(["kill", name]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/not running/);
    await tsrun(["rm", name]);
  });

  it("create then start; start -a returns the exit status; restart runs it again", async () => {
    const name = unique("created");
    const c = await tsrun(["create", "--name", name, "busybox", "sh", "-c", "echo run-$$; exit 4"]);
    expect(c.stdout.trim()).toMatch(/^[a-f0-9]{64}$/);
    expect((await tsrun(["ps", "-a", "--filter", `name=${name}`])).stdout).toContain("Created");
    const a = await tsrun(["start", "-a", name]);
    expect(a.stdout).toBe("run-1\n");
    expect(a.code).toBe(4);
    expect((await tsrun(["restart", name])).code).toBe(0);
    expect((await tsrun(["wait", name])).stdout.trim()).toBe("4");
    expect((await tsrun(["logs", name])).stdout).toBe("run-1\nrun-1\n");
    await tsrun(["rm", name]);
  });

  it("run -d --rm removes the container after it exits", async () => {
    const name = unique("autorm");
    const id = (await tsrun(["run", "-d", "--rm", "--name", name, "busybox", "true"])).stdout.trim();
    await until(async () => !existsSync(path.join(env.storeRoot, "containers", id)));
    expect((await tsrun(["ps", "-a", "-q", "--no-trunc"])).stdout).not.toContain(id);
  });

  it("a monitor killed with SIGKILL: the container is reported exited, never stuck running, and its network helper is stopped", async () => {
    const name = unique("orphan");
    const port = 20000 + Math.floor(Math.random() * 20000);
    const id = (await tsrun(["run", "-d", "--name", name, "--network", "pasta", "-p", `127.0.0.1:${port}:80`, "busybox", "sleep", "60"])).stdout.trim();
    const dir = path.join(env.storeRoot, "containers", id);
    const pasta = Number(readFileSync(path.join(dir, "pasta.pid"), "utf8").trim());
    expect(processState(pasta)).toMatch(/^[RS]$/);
    const monitor = monitorPid(id);
    expect(monitor).toBeGreaterThan(0);
    process.kill(monitor, "SIGKILL");
    await until(async () => (await tsrun(["ps", "-a", "--filter", `name=${name}`])).stdout.includes("Exited"));
    // The container died with its monitor.
    const record = JSON.parse(readFileSync(path.join(dir, "container.json"), "utf8"));
    expect(record.state.status).toBe("exited");
    // pasta does not notice by itself that the namespace is gone: the first look at the state
    // stopped it (gone, or a zombie waiting for the host's init), and the port is free again.
    await until(async () => ["gone", "Z"].includes(processState(pasta)));
    expect(existsSync(path.join(dir, "pasta.pid"))).toBe(false);
    const again = unique("orphan-port");
    expect((await tsrun(["run", "--rm", "--name", again, "-p", `127.0.0.1:${port}:80`, "busybox", "true"])).code).toBe(0);
    expect((await tsrun(["rm", name])).code).toBe(0);
  });

  it("a foreground run shows as running while it runs", async () => {
    const name = unique("fg");
    const [cmd, ...args] = asUser([env.cli, "run", "--name", name, "busybox", "sleep", "2"]);
    const child = execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv(), cwd: env.base });
    await until(async () => (await tsrun(["ps", "--filter", `name=${name}`])).stdout.includes("Up"));
    await child;
    expect((await tsrun(["ps", "-a", "--filter", `name=${name}`])).stdout).toMatch(/Exited \(0\)/);
    await tsrun(["rm", name]);
  });

  it("unknown containers and bad signals are one-line errors", async () => {
    for (const args of [["logs", "nope-x"], ["stop", "nope-x"], ["rm", "nope-x"], ["wait", "nope-x"]]) {
      const r = await tsrun(args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr).toMatch(/no such container: nope-x/);
    }
    const name = unique("badsig");
    await tsrun(["run", "-d", "--name", name, "busybox", "sleep", "30"]);
    const r = await tsrun(["kill", "-s", "SIGNOPE", name]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/invalid signal/);
    await tsrun(["rm", "-f", name]);
  });

  it("exec joins the container: same processes, hostname and filesystem; -u, -w, -e, -d, -it, exit codes", async () => {
    const name = unique("exec");
    await tsrun(["run", "-d", "--name", name, "--hostname", "exechost", "busybox", "sh", "-c", "echo data > /tmp/shared; sleep 60"]);
    await sleep(200);
    const r = await tsrun(["exec", name, "sh", "-c", "echo pid=$$; hostname; cat /tmp/shared; cat /proc/1/cmdline | tr '\\0' ' '"]);
    expect(r.code).toBe(0);
    // busybox sh execs its last command: pid 1 is the sleep.
    expect(r.stdout).toMatch(/^pid=\d+\nexechost\ndata\nsleep 60 $/);
    expect(r.stdout).not.toMatch(/^pid=1$/m);
    const u = await tsrun(["exec", "-u", "alice", "-w", "/home/alice", "-e", "X=1", name, "sh", "-c", "id -u; pwd; echo $X"]);
    expect(u.stdout).toBe("1000\n/home/alice\n1\n");
    expect((await tsrun(["exec", name, "sh", "-c", "exit 6"])).code).toBe(6);
    expect((await tsrun(["exec", name, "no-such-cmd"])).code).toBe(127);
    expect((await tsrun(["exec", "-d", name, "sh", "-c", "echo bg > /tmp/bg"])).code).toBe(0);
    await until(async () => (await tsrun(["exec", name, "cat", "/tmp/bg"])).stdout === "bg\n");
    const tty = await shAsUser(`script -qec '"$TSRUN" exec -it ${name} sh -c "tty; exit 2"' /dev/null`);
    expect(tty.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(tty.code).toBe(2);
    await tsrun(["rm", "-f", name]);
    const stopped = await tsrun(["exec", name, "true"]);
    expect(stopped.code).toBe(125);
  });

  it("health checks: starting through the start period, healthy, unhealthy after retries; shown by ps", async () => {
    const name = unique("health");
    // Failures in the start period do not count: "starting" lasts until the first success.
    await tsrun(["run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms", "--health-retries", "2", "--health-start-period", "60s", "busybox", "sleep", "60"]);
    await sleep(700);
    expect((await tsrun(["ps", "--filter", `name=${name}`])).stdout).toMatch(/\(health: starting\)/);
    await tsrun(["exec", name, "touch", "/tmp/ok"]);
    await until(async () => (await tsrun(["ps", "--filter", `name=${name}`])).stdout.includes("(healthy)"));
    // A success ends the start period: failures count from then on.
    await tsrun(["exec", name, "rm", "/tmp/ok"]);
    await until(async () => (await tsrun(["ps", "--filter", `name=${name}`])).stdout.includes("(unhealthy)"));
    const health = JSON.parse(readFileSync(path.join(env.storeRoot, "containers", (await tsrun(["ps", "-q", "--no-trunc", "--filter", `name=${name}`])).stdout.trim(), "health.json"), "utf8"));
    expect(health.Status).toBe("unhealthy");
    expect(health.FailingStreak).toBeGreaterThanOrEqual(2);
    expect(health.Log.at(-1).ExitCode).toBe(1);
    await tsrun(["rm", "-f", name]);
  });

  it("a HEALTHCHECK from the image applies; --no-healthcheck disables it", async () => {
    await importBusybox("healthy-image", ["HEALTHCHECK --interval=200ms CMD true", 'CMD ["sleep","60"]']);
    const a = unique("imghc");
    const b = unique("nohc");
    await tsrun(["run", "-d", "--name", a, "healthy-image"]);
    await tsrun(["run", "-d", "--name", b, "--no-healthcheck", "healthy-image"]);
    await until(async () => (await tsrun(["ps", "--filter", `name=${a}`])).stdout.includes("(healthy)"));
    expect((await tsrun(["ps", "--filter", `name=${b}`])).stdout).not.toMatch(/\((health|healthy|unhealthy)/);
    await tsrun(["rm", "-f", a, b]);
  });

  it("restart policies: on-failure:N retries N times; always restarts until stop; no by default", async () => {
    const onFailure = unique("onfail");
    await tsrun(["run", "-d", "--name", onFailure, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1"]);
    expect((await tsrun(["wait", onFailure])).stdout.trim()).toBe("1");
    expect((await tsrun(["logs", onFailure])).stdout).toBe("run\nrun\nrun\n");
    const always = unique("always");
    await tsrun(["run", "-d", "--name", always, "--restart", "always", "busybox", "sh", "-c", "echo up; sleep 0.2"]);
    await until(async () => (await tsrun(["logs", always])).stdout.split("\n").length > 3);
    // Up, or between two runs (Docker's "Restarting (0) ... ago").
    expect((await tsrun(["ps", "--filter", `name=${always}`])).stdout).toMatch(/ (Up|Restarting \(0\)) /);
    expect((await tsrun(["stop", always])).code).toBe(0);
    const count = (await tsrun(["logs", always])).stdout;
    await sleep(600);
    expect((await tsrun(["logs", always])).stdout).toBe(count);
    expect((await tsrun(["ps", "-a", "--filter", `name=${always}`])).stdout).toContain("Exited");
    const bad = await tsrun(["run", "-d", "--restart", "sometimes", "busybox", "true"]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/invalid restart policy/);
    await tsrun(["rm", "-f", onFailure, always]);
  });

  it("attach with stdin: input reaches a run -di container, output comes back until it ends; start -ai closes its stdin at our end of input; start -a misses nothing", async () => {
    const name = unique("attach-i");
    const script = "while read l; do echo got:$l; done; echo eof; exit 5";
    expect((await tsrun(["run", "-d", "-i", "--name", name, "busybox", "sh", "-c", script])).code).toBe(0);
    // attach keeps the container's stdin open after its own input ends (no StdinOnce): the
    // output keeps coming until the container ends, here by kill.
    const [cmd, ...args] = asUser([env.cli, "attach", name]);
    const child = execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv(), cwd: env.base, input: "hello\nworld\n" });
    await until(async () => (await tsrun(["logs", name])).stdout.includes("got:world"));
    expect((await tsrun(["kill", name])).code).toBe(0);
    const r = await child;
    expect(String(r.stdout)).toBe("got:hello\ngot:world");
    expect(r.exitCode).toBe(137);
    await tsrun(["rm", name]);
    // start -ai: the container starts once we are attached, and our end of input is its end.
    const created = unique("start-ai");
    expect((await tsrun(["create", "-i", "--name", created, "busybox", "sh", "-c", script])).code).toBe(0);
    const started = await tsrun(["start", "-ai", created], { input: "one\ntwo\n" });
    expect(started.stdout).toBe("got:one\ngot:two\neof\n");
    expect(started.code).toBe(5);
    // start -a misses nothing the container writes at once, on both streams.
    const early = unique("start-a");
    expect((await tsrun(["create", "--name", early, "busybox", "sh", "-c", "echo first; echo to-err >&2; exit 3"])).code).toBe(0);
    const a = await tsrun(["start", "-a", early]);
    expect([a.stdout, a.stderr, a.code]).toEqual(["first\n", "to-err\n", 3]);
    await tsrun(["rm", created, early]);
  });

  it("attach to a run -dit container on a real terminal: a shell, ctrl-p ctrl-q detaches it running, attach again, exit returns its status", async () => {
    const name = unique("attach-t");
    expect((await tsrun(["run", "-dit", "--name", name, "busybox", "sh"])).code).toBe(0);
    const first = await onPty(30, 90, [
      { sleep: 0.3 },
      { send: "stty size; echo attached-$((6 * 7))\n" },
      { expect: "attached-42" },
      { send: "\u0010\u0011" },
      { expect: "rc=0" },
    ], `"$TSRUN" attach ${name}; echo "rc=$?"`);
    expect(first.failed, first.output).toBeNull();
    // The container's terminal took our size.
    expect(first.output).toContain("30 90");
    expect((await tsrun(["inspect", "--format", "{{.State.Status}}", name])).stdout).toBe("running\n");
    const second = await onPty(24, 80, [
      { sleep: 0.3 },
      { send: "exit 7\n" },
      { expect: "rc=7" },
    ], `"$TSRUN" attach ${name}; echo "rc=$?"; stty -a`);
    expect(second.failed, second.output).toBeNull();
    expect(second.output).toMatch(/(^|\s)icanon(\s|$)/m);
    expect((await tsrun(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name])).stdout).toBe("exited 7\n");
    const bad = await tsrun(["attach", name]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/stopped container/);
    await tsrun(["rm", name]);
  });

  it("rename, top and attach", async () => {
    const name = unique("ren");
    const renamed = unique("renamed");
    await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 60 & echo started; wait"]);
    expect((await tsrun(["rename", name, renamed])).code).toBe(0);
    expect((await tsrun(["ps", "--filter", `name=${renamed}`])).stdout).toContain(renamed);
    expect((await tsrun(["logs", name])).code).not.toBe(0);
    const top = await tsrun(["top", renamed]);
    expect(top.stdout.split("\n")[0]).toMatch(/^UID\s+PID\s+PPID/);
    expect(top.stdout).toMatch(/sleep 60/);
    expect((await tsrun(["top", renamed, "-o", "pid,comm"])).stdout).toMatch(/^\s*PID COMMAND\n\s*\d+ sh\n\s*\d+ sleep\n$/);
    // BSD-style options select every process of the host: only the container's are kept, as Docker does.
    expect((await tsrun(["top", renamed, "aux"])).stdout).toMatch(/^USER\s+PID.*\n.*\bsh -c sleep 60.*\n.*\bsleep 60\n$/);
    const noPid = await tsrun(["top", renamed, "-o", "comm"]);
    expect(noPid.code).toBe(125);
    expect(noPid.stderr).toMatch(/no PID column/);
    const attached = unique("att");
    // attach shows the output from the moment it is attached: ticks until it is told to end.
    await tsrun(["run", "-d", "--name", attached, "busybox", "sh", "-c", "while [ ! -e /tmp/go ]; do echo tick; sleep 0.2; done; echo late; exit 3"]);
    const [cmd, ...args] = asUser([env.cli, "attach", attached]);
    const child = execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv(), cwd: env.base, stripFinalNewline: false });
    let seen = "";
    child.stdout?.on("data", (d: Buffer) => (seen += d.toString()));
    await until(async () => seen.includes("tick"), 30_000);
    expect((await tsrun(["exec", attached, "touch", "/tmp/go"])).code).toBe(0);
    const a = await child;
    expect(String(a.stdout)).toMatch(/^(tick\n)+late\n$/);
    expect(a.exitCode).toBe(3);
    await tsrun(["rm", "-f", renamed, attached]);
  });
});
