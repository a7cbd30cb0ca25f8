// Where tsrun's container commands used to differ from the Docker CLI in ways scripts trip on.
// Each case is a regression test for one fix; the comments say what Docker does.
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { asUser, cliEnv, env, filesDir, importBusybox, scratchDir, shAsUser, tsrun, unique, tsrunOk } from "./helpers.js";

async function until(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ok = (args: string[], opts: { input?: string; cwd?: string } = {}): Promise<string> => tsrunOk(args, { timeout: 120_000, ...opts });

/** Each `run` with these flags is refused: one line naming the problem, exit 125, no container left. */
async function expectRunRefused(cases: ReadonlyArray<readonly [readonly string[], RegExp]>): Promise<void> {
  for (const [args, message] of cases) {
    const bad = unique("bad-flag");
    const r = await tsrun(["run", "--name", bad, ...args, "busybox", "true"]);
    expect(r.code, args.join(" ")).toBe(125);
    expect(r.stderr.trim(), args.join(" ")).toMatch(message);
    expect((await tsrun(["ps", "-a", "-q", "--filter", `name=${bad}`])).stdout).toBe("");
  }
}

beforeAll(async () => {
  await importBusybox("busybox");
});

describe("Docker CLI habits", () => {
  it("a reader that goes away (`images | true`) ends the command quietly with 141, as SIGPIPE ends docker", async () => {
    // The reader closes its end without reading: the write finds the pipe closed (EPIPE).
    const r = await shAsUser(`bash -c '"$TSRUN" images -a | (exec 0<&-; sleep 1); echo status \${PIPESTATUS[0]}'`);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("status 141");
  });

  it("the huge-page tunable bin/tsrun gives its own Node process never reaches the container; the user's own GLIBC_TUNABLES does, unchanged", async () => {
    const none = await tsrun(["run", "--rm", "-e", "GLIBC_TUNABLES", "busybox", "sh", "-c", 'echo "[${GLIBC_TUNABLES-unset}]"']);
    expect(none.stdout).toBe("[unset]\n");
    const own = await tsrun(["run", "--rm", "-e", "GLIBC_TUNABLES", "busybox", "sh", "-c", 'echo "[$GLIBC_TUNABLES]"'], { env: { GLIBC_TUNABLES: "glibc.malloc.arena_max=2" } });
    expect(own.stdout).toBe("[glibc.malloc.arena_max=2]\n");
  });

  it("bin/tsrun keeps a V8 code cache per command, written only by a command that worked", async () => {
    const cache = scratchDir("v8cache");
    const e = { XDG_CACHE_HOME: cache };
    for (const args of [["images", "-q"], ["version"], ["images"], ["no-such-command"], ["run", "--rm", "busybox", "true"]]) await tsrun(args, { env: e });
    const names = (await shAsUser(`ls ${cache}/tsrun`)).stdout.split("\n").filter((n) => n.endsWith(".v8cache"));
    // One for images (its second run used it), one for version, one for run's own bundle; none for the mistake.
    expect(names.map((n) => n.replace(/^.*-/, "")).sort()).toEqual(["images.v8cache", "run.v8cache", "version.v8cache"]);
    expect(names.filter((n) => n.startsWith("tsrun-run-"))).toHaveLength(1);
  });

  it("rm -f, rmi -f and volume rm -f of something that does not exist succeed", async () => {
    // Cleanup lines such as `docker rm -f app || true` without the `|| true`: docker/cli reports
    // a missing container or image under -f and still exits 0; a missing volume is not reported.
    const missing = unique("gone");
    const rm = await tsrun(["rm", "-f", missing]);
    expect([rm.code, rm.stderr]).toEqual([0, `Error: no such container: ${missing}\n`]);
    expect((await tsrun(["rm", missing])).code).not.toBe(0);
    const rmi = await tsrun(["rmi", "-f", missing]);
    expect([rmi.code, rmi.stderr]).toEqual([0, `Error: No such image: ${missing}\n`]);
    expect((await tsrun(["rmi", missing])).code).toBe(125);
    expect(await tsrun(["volume", "rm", "-f", missing])).toEqual({ code: 0, stdout: "", stderr: "" });
    // Without -f the volumes that exist are still removed, and the command fails at the end.
    const vol = unique("vol");
    await ok(["volume", "create", vol]);
    const both = await tsrun(["volume", "rm", missing, vol]);
    expect([both.code, both.stdout, both.stderr]).toEqual([125, `${vol}\n`, `Error: no such volume: ${missing}\n`]);
  });

  it("bind sources relative to the working directory: -v ./dir and --mount src=./dir", async () => {
    // docker/cli makes `.`, `./x` (23.0) and `../x` (28.2) absolute; a bare name stays a volume name.
    const dir = filesDir({ "data/f": "in data\n" }, "relbind");
    const sub = path.join(dir, "data");
    expect(await ok(["run", "--rm", "-v", "./data:/h:ro", "--mount", "type=bind,src=./data,dst=/m", "busybox", "cat", "/h/f", "/m/f"], { cwd: dir })).toBe("in data\nin data\n");
    expect(await ok(["run", "--rm", "-v", "..:/up", "-v", ".:/here", "busybox", "cat", "/up/data/f", "/here/f"], { cwd: sub })).toBe("in data\nin data\n");
    const inspect = await ok(["create", "-v", "../data:/h", "busybox", "true"], { cwd: sub });
    expect(await ok(["inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Source}}{{end}}", inspect.trim()])).toBe(`bind ${sub}\n`);
    await ok(["rm", inspect.trim()]);
  });

  it("--add-host takes NAME=IP and bracketed IPv6 as well as NAME:IP", async () => {
    // docker/cli 25 added the = separator (docs: --add-host=my-hostname=8.8.8.8).
    expect(await ok(["run", "--rm", "--network", "none", "--add-host", "eq=10.1.2.3", "--add-host", "colon:10.1.2.4", "--add-host", "v6=[fd00::1]", "busybox", "tail", "-3", "/etc/hosts"])).toBe(
      "10.1.2.3\teq\n10.1.2.4\tcolon\nfd00::1\tv6\n",
    );
    const bad = await tsrun(["run", "--rm", "--add-host", "=10.1.2.3", "busybox", "true"]);
    expect([bad.code, bad.stderr]).toEqual([125, 'Error: invalid --add-host "=10.1.2.3": expected NAME:IP or NAME=IP\n']);
  });

  it("inspect has Docker's NetworkSettings fields for scripts that read them", async () => {
    // {{.NetworkSettings.IPAddress}} printed "<no value>"; the private network's address cannot
    // be reached from the host, so it is empty, as with rootless Podman.
    const name = unique("netset");
    await ok(["run", "-d", "--name", name, "-p", "127.0.0.1::80", "-p", "81/udp", "busybox", "sleep", "60"]);
    const out = await ok(["inspect", "-f", "[{{.NetworkSettings.IPAddress}}][{{.NetworkSettings.Gateway}}][{{.NetworkSettings.MacAddress}}] {{json .NetworkSettings.Ports}}", name]);
    expect(out).toMatch(/^\[\]\[\]\[\] \{"80\/tcp":\[\{"HostIp":"127\.0\.0\.1","HostPort":"\d+"\}\],"81\/udp":\[\{"HostIp":"0\.0\.0\.0","HostPort":"\d+"\}\]\}\n$/);
    await ok(["rm", "-f", name]);
  });

  it("ps --format has docker/cli's {{.Label \"KEY\"}} method", async () => {
    const name = unique("pslabel");
    await ok(["create", "--name", name, "-l", "com.example.team-name=blue", "busybox", "true"]);
    const filter = ["ps", "-a", "--filter", `name=^${name}$`, "--format"];
    expect(await ok([...filter, '{{.Names}} {{.Label "com.example.team-name"}} [{{.Label "missing"}}]'])).toBe(`${name} blue []\n`);
    // The column title is the key's last part, as docker/cli's header for Label.
    expect((await ok([...filter, 'table {{.Label "com.example.team-name"}}'])).split("\n")[0]).toBe("team name");
    // A method, not a field: json leaves it out.
    expect(Object.keys(JSON.parse(await ok([...filter, "{{json .}}"])) as object)).not.toContain("Label");
    await ok(["rm", name]);
  });

  it("logs --until, and --since with a Go duration such as 1m30s", async () => {
    const name = unique("until");
    await ok(["run", "-d", "--name", name, "busybox", "sh", "-c", "echo early; sleep 1; echo late"]);
    expect(await ok(["wait", name])).toBe("0\n");
    const stamps = (await ok(["logs", "-t", name])).trim().split("\n").map((l) => l.split(" ")[0] as string);
    expect(stamps).toHaveLength(2);
    expect(await ok(["logs", "--until", stamps[0] as string, name])).toBe("early\n");
    expect(await ok(["logs", "--since", stamps[1] as string, name])).toBe("late\n");
    expect(await ok(["logs", "--since", "1h30m", "--until", "0s", name])).toBe("early\nlate\n");
    const bad = await tsrun(["logs", "--until", "yesterday", name]);
    expect([bad.code, bad.stderr]).toEqual([125, 'Error: invalid --until value "yesterday"\n']);
    await ok(["rm", name]);
  });

  it("exec --env-file, with -e winning over the file", async () => {
    const dir = filesDir({ "vars.env": "# settings\nA=from-file\nB=\"kept quotes\"\n" }, "execenv");
    const name = unique("execenv");
    await ok(["run", "-d", "--name", name, "busybox", "sleep", "60"]);
    expect(await ok(["exec", "--env-file", path.join(dir, "vars.env"), "-e", "A=from-flag", name, "sh", "-c", 'echo "$A|$B"'])).toBe('from-flag|"kept quotes"\n');
    const bad = await tsrun(["exec", "--env-file", path.join(dir, "missing.env"), name, "true"]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/^Error: cannot read env file .*missing\.env/);
    await ok(["rm", "-f", name]);
  });

  it("--init runs tini as PID 1: orphans are reaped, exit codes and 127 pass through", async () => {
    expect(await ok(["run", "--rm", "--init", "busybox", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"])).toBe("/sbin/docker-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline ");
    expect((await tsrun(["run", "--rm", "--init", "busybox", "sh", "-c", "exit 9"])).code).toBe(9);
    expect((await tsrun(["run", "--rm", "--init", "busybox", "no-such-command"])).code).toBe(127);
    // The orphaned sleep goes to PID 1: `sleep 60` would leave it a zombie, tini reaps it.
    const name = unique("init");
    await ok(["run", "-d", "--init", "--name", name, "busybox", "sh", "-c", "(sleep 0.2 &); exec sleep 60"]);
    expect(await ok(["inspect", "-f", "{{.HostConfig.Init}}", name])).toBe("true\n");
    let states = "";
    for (let i = 0; i < 50; i++) {
      states = await ok(["exec", name, "ps", "-o", "stat,args"]);
      if (!/^\S+\s+sleep 0\.2$/m.test(states)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(states).not.toMatch(/^\S+\s+(sleep 0\.2|\[sleep\])$/m);
    await ok(["rm", "-f", name]);
  });

  it("run -a STDOUT shows only stdout (the log keeps both); -a is checked as Docker does", async () => {
    const name = unique("attach");
    const r = await tsrun(["run", "-a", "STDOUT", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r).toEqual({ code: 3, stdout: "out\n", stderr: "" });
    const logs = await tsrun(["logs", name]);
    expect([logs.stdout, logs.stderr]).toEqual(["out\n", "err\n"]);
    expect(await tsrun(["run", "--rm", "-a", "stderr", "busybox", "sh", "-c", "echo out; echo err >&2"])).toEqual({ code: 0, stdout: "", stderr: "err\n" });
    expect(await tsrun(["run", "--rm", "-i", "-a", "stdout", "busybox", "cat"], { input: "piped\n" })).toEqual({ code: 0, stdout: "piped\n", stderr: "" });
    const bad = await tsrun(["run", "-a", "stdio", "busybox", "true"]);
    expect([bad.code, bad.stderr]).toEqual([125, 'Error: invalid argument "stdio" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR\n']);
    expect((await tsrun(["run", "-d", "-a", "stdout", "busybox", "true"])).stderr).toBe("Error: conflicting options: -a and -d\n");
    await ok(["rm", name]);
  });

  it("run --sig-proxy=false: a signal ends tsrun, not the container, which runs on", async () => {
    // What devcontainer tools rely on: they start `docker run --sig-proxy=false ...`, read its
    // first output, then end the client.
    const name = unique("sigproxy");
    const [cmd, ...args] = asUser([env.cli, "run", "--sig-proxy=false", "--name", name, "busybox", "sh", "-c", 'trap "echo got TERM" TERM; echo started; while true; do sleep 0.2; done']);
    const child = execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv(), cwd: env.base });
    let seen = "";
    child.stdout?.on("data", (d: Buffer) => (seen += d.toString()));
    await until(async () => seen.includes("started"));
    child.kill("SIGTERM");
    await child;
    expect(await ok(["inspect", "-f", "{{.State.Status}}", name])).toBe("running\n");
    await new Promise((r) => setTimeout(r, 500));
    expect(await ok(["logs", name])).toBe("started\n");
    await ok(["rm", "-f", name]);
  });

  it("--shm-size sizes /dev/shm; --group-add adds groups by gid or by the container's group names, exec too", async () => {
    // Docker: /dev/shm is 64 MiB unless --shm-size; --group-add names are looked up in the
    // container's /etc/group, gids need not exist; both show in inspect's HostConfig.
    const shm = (args: string[]): Promise<string> => ok(["run", "--rm", ...args, "busybox", "sh", "-c", "df -k /dev/shm | tail -1 | awk '{print $2}'"]);
    expect(await shm([])).toBe("65536\n");
    expect(await shm(["--shm-size", "128m"])).toBe("131072\n");
    expect(await ok(["run", "--rm", "--group-add", "10", "--group-add", "video", "busybox", "id"])).toBe("uid=0(root) gid=0(root) groups=0(root),10,44(video)\n");
    expect(await ok(["run", "--rm", "-u", "1000:1000", "--group-add", "staff", "busybox", "id", "-G"])).toBe("1000 50\n");
    const name = unique("groups");
    await ok(["run", "-d", "--name", name, "--group-add", "10", "--shm-size", "1g", "busybox", "sleep", "60"]);
    expect(await ok(["exec", name, "id", "-G"])).toBe("0 10\n");
    expect(await ok(["inspect", "--format", "{{json .HostConfig.GroupAdd}} {{.HostConfig.ShmSize}}", name])).toBe('["10"] 1073741824\n');
    await tsrun(["rm", "-f", name]);
    await expectRunRefused([
      [["--group-add", "no-such-group"], /^Error: unable to find group no-such-group: no matching entries in group file$/],
      [["--shm-size", "0"], /^Error: invalid --shm-size "0": must be greater than 0$/],
      [["--shm-size", "lots"], /^Error: invalid --shm-size "lots"/],
    ]);
  });

  it("--device binds a host device node (a directory: every node below it) at its path or another; bad specs are one line", async () => {
    // /dev/net/tun is mode 0666 here (CI sets it so): the container opens it. Reading an
    // unconfigured tun fd fails with EBADFD, which shows the open itself worked.
    const tun = await ok(["run", "--rm", "--device", "/dev/net/tun", "busybox", "sh", "-c", "stat -c '%F %t:%T' /dev/net/tun; cat /dev/net/tun 2>&1 | head -1"]);
    expect(tun).toBe("character special file a:c8\ncat: read error: File descriptor in bad state\n");
    expect(await ok(["run", "--rm", "--device", "/dev/net/tun:/dev/other/tun:rw", "busybox", "stat", "-c", "%F %t:%T", "/dev/other/tun"])).toBe("character special file a:c8\n");
    expect(await ok(["run", "--rm", "--device", "/dev/net", "busybox", "ls", "/dev/net"])).toBe("tun\n");
    const name = unique("dev");
    await ok(["create", "--name", name, "--device", "/dev/net/tun:/dev/t:r", "busybox", "true"]);
    expect(await ok(["inspect", "--format", "{{json .HostConfig.Devices}}", name])).toBe('[{"PathOnHost":"/dev/net/tun","PathInContainer":"/dev/t","CgroupPermissions":"r"}]\n');
    await tsrun(["rm", name]);
    await expectRunRefused([
      [["--device", "/dev/no-such-device"], /^Error: error gathering device information while adding custom device "\/dev\/no-such-device": no such file or directory$/],
      [["--device", "/etc/passwd"], /^Error: --device \/etc\/passwd: not a device node$/],
      [["--device", "dev/net/tun"], /^Error: invalid --device "dev\/net\/tun": paths must be absolute$/],
      [["--device", "/dev/net/tun:/dev/t:rx"], /^Error: invalid --device "\/dev\/net\/tun:\/dev\/t:rx": permissions must be made of r, w and m$/],
    ]);
  });

  it("--sysctl sets the container's own namespaces' parameters (dots or slashes); others are refused as Docker refuses them", async () => {
    const read = "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmax /proc/sys/net/ipv4/tcp_keepalive_time";
    const sysctls = ["--sysctl", "net.ipv4.ip_unprivileged_port_start=80", "--sysctl", "kernel.shmmax=123456789", "--sysctl", "net/ipv4/tcp_keepalive_time=600"];
    expect(await ok(["run", "--rm", ...sysctls, "busybox", "sh", "-c", read])).toBe("80\n123456789\n600\n");
    // Detached (the monitor starts it) and seen by exec; /proc/sys stays read-only.
    const name = unique("sysctl");
    await ok(["run", "-d", "--name", name, ...sysctls, "busybox", "sleep", "60"]);
    expect(await ok(["exec", name, "sh", "-c", read])).toBe("80\n123456789\n600\n");
    expect((await tsrun(["exec", name, "sh", "-c", "echo 90 > /proc/sys/net/ipv4/ip_unprivileged_port_start"])).code).not.toBe(0);
    expect(await ok(["inspect", "--format", "{{json .HostConfig.Sysctls}}", name])).toBe('{"kernel.shmmax":"123456789","net.ipv4.ip_unprivileged_port_start":"80","net/ipv4/tcp_keepalive_time":"600"}\n');
    await tsrun(["rm", "-f", name]);
    // The host's own values are untouched.
    expect(readFileSync("/proc/sys/net/ipv4/tcp_keepalive_time", "utf8").trim()).not.toBe("600");
    await expectRunRefused([
      [["--sysctl", "vm.swappiness=10"], /^Error: sysctl "vm.swappiness" is not allowed: /],
      [["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], /^Error: sysctl "net.ipv4.ip_forward" not allowed in host network namespace$/],
      [["--sysctl", "net.ipv4.no_such_setting=1"], /^Error: open \/proc\/sys\/net\/ipv4\/no_such_setting: No such file or directory$/],
      [["--sysctl", "no-value"], /^Error: invalid --sysctl "no-value": expected KEY=VALUE$/],
      [["--sysctl", "net.ipv4..x=1"], /^Error: invalid --sysctl "net.ipv4..x=1": bad key/],
    ]);
  });

  it("--domainname (and --sysctl kernel.domainname), --oom-score-adj, --cgroupns and --annotation, foreground and detached", async () => {
    const read = "cat /proc/sys/kernel/domainname /proc/self/oom_score_adj; readlink /proc/self/ns/cgroup";
    const hostCgroupns = (await shAsUser("readlink /proc/self/ns/cgroup")).stdout.trim();
    const [domain, adj, ns] = (await ok(["run", "--rm", "--domainname", "example.org", "--oom-score-adj", "500", "busybox", "sh", "-c", read])).trim().split("\n");
    expect([domain, adj]).toEqual(["example.org", "500"]);
    expect(ns).not.toBe(hostCgroupns);
    expect(await ok(["run", "--rm", "--sysctl", "kernel.domainname=by-sysctl", "--cgroupns", "host", "busybox", "sh", "-c", read])).toBe(`by-sysctl\n0\n${hostCgroupns}\n`);
    const name = unique("flags");
    await ok(["run", "-d", "--name", name, "--domainname", "detached.test", "--oom-score-adj", "300", "--cgroupns", "host", "--annotation", "org.example/a=1", "--annotation", "b=two=2", "busybox", "sleep", "60"]);
    // The container's init has it (an exec'd process is started from outside).
    expect(await ok(["exec", name, "sh", "-c", read.replace("/proc/self/oom_score_adj", "/proc/1/oom_score_adj")])).toBe(`detached.test\n300\n${hostCgroupns}\n`);
    expect(await ok(["inspect", "-f", "{{.Config.Domainname}} {{.HostConfig.OomScoreAdj}} {{.HostConfig.CgroupnsMode}} {{json .HostConfig.Annotations}}", name])).toBe('detached.test 300 host {"b":"two=2","org.example/a":"1"}\n');
    await tsrun(["rm", "-f", name]);
    await expectRunRefused([
      // Rootless, a process may raise its score, not lower it below the user's own.
      [["--oom-score-adj", "-500"], /^Error: write \/proc\/self\/oom_score_adj: Permission denied$/],
      [["--oom-score-adj", "1001"], /^Error: invalid --oom-score-adj "1001": an integer from -1000 to 1000$/],
      [["--cgroupns", "shared"], /^Error: invalid --cgroupns "shared": private or host$/],
      [["--annotation", "=x"], /^Error: invalid --annotation "=x": expected KEY=VALUE$/],
    ]);
  });

  it("docker run flags without effect here are taken (a warning for those that ask for something); --volume-driver other than local is refused", async () => {
    expect(await tsrun(["run", "--rm", "--disable-content-trust", "--volume-driver", "local", "busybox", "echo", "quiet"])).toEqual({ code: 0, stdout: "quiet\n", stderr: "" });
    const warned = await tsrun(["run", "--rm", "--memory-swappiness", "10", "--oom-kill-disable", "--kernel-memory", "64m", "--runtime", "runc", "busybox", "echo", "ran"]);
    expect(warned).toEqual({ code: 0, stdout: "ran\n", stderr: "tsrun: warning: --memory-swappiness, --oom-kill-disable, --kernel-memory, --runtime not applied: cgroup v2 has no swappiness, OOM-kill switch or kernel-memory limit, and tsrun is its own runtime\n" });
    await expectRunRefused([
      [["--volume-driver", "nfs"], /^Error: --volume-driver nfs is not supported: volumes are local$/],
      [["--memory-swappiness", "101"], /^Error: invalid --memory-swappiness "101": -1 or 0 to 100$/],
    ]);
  });

  it("--platform of history, save, load and import takes the host's spellings and refuses others; rmi --no-prune, cp -q, network inspect -v are taken", async () => {
    const arch = (await ok(["inspect", "-f", "{{.Architecture}}", "busybox"])).trim();
    const other = arch === "arm64" ? "linux/amd64" : "linux/arm64";
    expect(await ok(["history", "-q", "--platform", `linux/${arch}`, "busybox"])).toMatch(/^[0-9a-f]{12}\n/);
    const dir = scratchDir("platform");
    const archive = path.join(dir, "b.tar");
    await ok(["save", "--platform", `linux/${arch}`, "-o", archive, "busybox"]);
    expect(await ok(["load", "--platform", `linux/${arch}`, "-q", "-i", archive])).toMatch(/Loaded image: busybox:latest/);
    const imported = unique("imported");
    await ok(["import", "--platform", `linux/${arch}`, path.join(env.base, "busybox.tar"), imported]);
    for (const args of [["history", "busybox"], ["save", "-o", path.join(dir, "x.tar"), "busybox"], ["load", "-i", archive], ["import", path.join(env.base, "busybox.tar")], ["rmi", imported]]) {
      const [command, ...rest] = args as [string, ...string[]];
      const r = await tsrun([command, "--platform", other, ...rest]);
      expect(r.code, args.join(" ")).toBe(125);
      expect(r.stderr).toBe(`Error: ${command} --platform ${other}: the store keeps the host's platform only (linux/${arch})\n`);
    }
    expect(await ok(["rmi", "--no-prune", imported])).toMatch(/Untagged: /);
    const c = unique("cpq");
    await ok(["create", "--name", c, "busybox", "true"]);
    await ok(["cp", "-q", `${c}:/bin/busybox`, path.join(dir, "busybox")]);
    expect(existsSync(path.join(dir, "busybox"))).toBe(true);
    await tsrun(["rm", c]);
    const net = unique("netv");
    await ok(["network", "create", net]);
    expect(JSON.parse(await ok(["network", "inspect", "-v", net]))[0].Name).toBe(net);
    await ok(["network", "rm", net]);
  });

  it("image save, load and build under Docker's image management command", async () => {
    const dir = filesDir({ Dockerfile: "FROM busybox\nLABEL built=by-image-build\n" }, "image-build");
    const tag = unique("image-build");
    await ok(["image", "build", "-q", "-t", tag, dir]);
    expect(await ok(["image", "inspect", "-f", "{{.Config.Labels.built}}", tag])).toBe("by-image-build\n");
    const archive = path.join(scratchDir("image-save"), "i.tar");
    await ok(["image", "save", "-o", archive, tag]);
    await ok(["image", "rm", tag]);
    expect(await ok(["image", "load", "-i", archive])).toBe(`Loaded image: ${tag}:latest\n`);
    expect((await tsrun(["image", "pull", "--help"])).stdout).toMatch(/^Usage: tsrun image pull /);
    await ok(["image", "rm", tag]);
  });

  it("--dns-search, --dns-option, --expose (published by -P) and --label-file", async () => {
    const resolv = await ok(["run", "--rm", "--dns", "10.0.0.1", "--dns-search", "example.com", "--dns-search", "corp.example", "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf"]);
    expect(resolv).toBe("nameserver 10.0.0.1\nsearch example.com corp.example\noptions ndots:2\n");
    expect(await ok(["run", "--rm", "--dns", "10.0.0.1", "--dns-search", ".", "busybox", "cat", "/etc/resolv.conf"])).toBe("nameserver 10.0.0.1\n");
    const dir = filesDir({ labels: "# ours\nteam=infra\n\nowner=alice\n" }, "label-file");
    const labels = path.join(dir, "labels");
    const name = unique("expose");
    // -l after --label-file wins, as with Docker.
    await ok(["create", "--name", name, "--expose", "8080", "--expose", "9000-9001/udp", "-P", "--label-file", labels, "-l", "owner=bob", "--dns-search", "example.com", "busybox", "true"]);
    expect(await ok(["inspect", "--format", "{{json .Config.ExposedPorts}} {{json .Config.Labels}} {{json .HostConfig.DnsSearch}}", name])).toBe(
      '{"8080/tcp":{},"9000/udp":{},"9001/udp":{}} {"owner":"bob","team":"infra"} ["example.com"]\n',
    );
    expect((await ok(["port", name])).split("\n").filter((l) => l !== "").map((l) => l.split(" -> ")[0])).toEqual(["8080/tcp", "9000/udp", "9001/udp"]);
    // A commit keeps them, as Docker's takes the container's config.
    await ok(["commit", name, `${name}:img`]);
    expect(await ok(["image", "inspect", "--format", "{{json .Config.ExposedPorts}}", `${name}:img`])).toBe('{"8080/tcp":{},"9000/udp":{},"9001/udp":{}}\n');
    await tsrun(["rm", name]);
    await tsrun(["rmi", `${name}:img`]);
    await expectRunRefused([
      [["--expose", "http"], /^Error: invalid --expose "http": expected PORT\[\/PROTO\] or a range FIRST-LAST\[\/PROTO\]$/],
      [["--expose", "90-80"], /^Error: invalid --expose "90-80"/],
      [["--dns-search", "a b"], /^Error: invalid --dns-search domain "a b"$/],
      [["--label-file", path.join(dir, "missing")], /^Error: cannot read label file /],
    ]);
  });

  it("the container management command: container run, ls, inspect, rm", async () => {
    const name = unique("mgmt");
    expect(await ok(["container", "run", "--name", name, "busybox", "echo", "hi"])).toBe("hi\n");
    expect(await ok(["container", "ls", "-a", "--filter", `name=^${name}$`, "--format", "{{.Names}} {{.State}}"])).toBe(`${name} exited\n`);
    expect(await ok(["container", "inspect", "-f", "{{.State.ExitCode}}", name])).toBe("0\n");
    const image = await tsrun(["container", "inspect", "busybox"]);
    expect([image.code, image.stderr]).toEqual([125, "Error: No such container: busybox\n"]);
    expect(await ok(["container", "remove", name])).toBe(`${name}\n`);
  });

  it("--log-driver json-file and --log-opt are accepted (those not applied with a warning)", async () => {
    const r = await tsrun(["run", "--rm", "--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3", "busybox", "echo", "hi"]);
    expect(r).toEqual({ code: 0, stdout: "hi\n", stderr: "" });
    const tagged = await tsrun(["run", "--rm", "--log-opt", "tag={{.Name}}", "--log-opt", "compress=true", "busybox", "echo", "hi"]);
    expect(tagged).toEqual({ code: 0, stdout: "hi\n", stderr: "tsrun: warning: --log-opt tag, compress not applied: the log is rotated (max-size, max-file) but not compressed or tagged\n" });
    for (const [flags, message] of [
      [["--log-driver", "syslog"], /^Error: --log-driver syslog is not supported/],
      [["--log-opt", "syslog-address=udp://x"], /^Error: invalid --log-opt "syslog-address=udp:\/\/x"/],
    ] as [string[], RegExp][]) {
      const bad = await tsrun(["run", "--rm", ...flags, "busybox", "true"]);
      expect(bad.code).toBe(125);
      expect(bad.stderr).toMatch(message);
    }
  });

  it("--log-opt labels, labels-regex, env and env-regex put attributes in every record (detached and foreground); logs --details shows them", async () => {
    const flags = ["--label", "app=web", "--label", "team=core", "--label", "other=x", "-e", "STAGE=test", "-e", "REGION=eu", "--log-opt", "labels=app", "--log-opt", "labels-regex=^te", "--log-opt", "env=STAGE,NOPE", "--log-opt", "env-regex=^REG"];
    const detached = unique("attrs-d");
    expect((await tsrun(["run", "-d", "--name", detached, ...flags, "busybox", "sh", "-c", "echo out; echo err >&2"])).code).toBe(0);
    await tsrun(["wait", detached]);
    const foreground = unique("attrs-f");
    expect(await tsrun(["run", "--name", foreground, ...flags, "busybox", "sh", "-c", "echo out; echo err >&2"])).toEqual({ code: 0, stdout: "out\n", stderr: "err\n" });
    const attrs = { REGION: "eu", STAGE: "test", app: "web", team: "core" };
    for (const name of [detached, foreground]) {
      const logPath = (await tsrun(["inspect", "-f", "{{.LogPath}}", name])).stdout.trim();
      const records = readFileSync(logPath, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.map((r) => [r.log, r.stream, r.attrs]), name).toEqual(expect.arrayContaining([["out\n", "stdout", attrs], ["err\n", "stderr", attrs]]));
      // Docker's field order: log, stream, attrs, time.
      expect(readFileSync(logPath, "utf8").split("\n")[0]).toMatch(/^\{"log":".*","stream":"std(out|err)","attrs":\{"REGION":"eu","STAGE":"test","app":"web","team":"core"\},"time":"[^"]+"\}$/);
      const details = await tsrun(["logs", "--details", name]);
      expect(details.stdout + details.stderr, name).toContain("REGION=eu,STAGE=test,app=web,team=core out\n");
    }
    await tsrun(["rm", "-f", detached, foreground]);
    const bad = await tsrun(["run", "--rm", "--log-opt", "labels-regex=(", "busybox", "true"]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/^Error: invalid --log-opt labels-regex=\(: .*\n$/);
  });
});
