// --pid, --ipc and --uts: the host's namespaces and another container's, end to end.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { hostname } from "node:os";
import { readFileSync } from "node:fs";
import { asUser, cliEnv, importBusybox, shAsUser, tsrun, tsrunOk, unique } from "./helpers.js";

const started: string[] = [];

/** A detached busybox container running `sleep SECONDS` (a recognisable command line). */
async function sleeper(seconds: number, flags: string[] = []): Promise<string> {
  const name = unique("ns");
  await tsrunOk(["run", "-d", "--name", name, ...flags, "busybox", "sleep", String(seconds)]);
  started.push(name);
  return name;
}

async function nsLink(name: string, kind: string): Promise<string> {
  return (await tsrunOk(["exec", name, "readlink", `/proc/self/ns/${kind}`])).trim();
}

/** The container no longer exists under that name (nothing was left behind). */
async function gone(name: string): Promise<boolean> {
  return !(await tsrun(["ps", "-a", "--format", "{{.Names}}"])).stdout.split("\n").includes(name);
}

function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

beforeAll(async () => {
  await importBusybox("busybox");
});

afterAll(async () => {
  if (started.length > 0) await tsrun(["rm", "-f", ...started]);
});

describe("--pid", () => {
  it("host: /proc is the host's, so a host process is visible, and pause leaves it alone", async () => {
    // A process of the test user on the host, with an argument nobody else uses.
    const marker = String(1000 + Math.floor(Math.random() * 8000));
    const [cmd, ...args] = asUser(["sleep", marker]);
    const host = execa(cmd as string, args, { reject: false, env: cliEnv() });
    try {
      const out = await tsrunOk(["run", "--rm", "--pid", "host", "busybox", "sh", "-c", `cat /proc/${host.pid}/cmdline | tr '\\0' ' '; echo; echo self=$$`]);
      const [cmdline, self] = out.split("\n");
      expect(cmdline).toBe(`sleep ${marker} `);
      expect(self).not.toBe("self=1");
      // pause stops the container's processes only, not every process of the namespace.
      const name = await sleeper(1001, ["--pid", "host"]);
      expect(await tsrunOk(["inspect", "-f", "{{.HostConfig.PidMode}}", name])).toBe("host\n");
      await tsrunOk(["pause", name]);
      const pid = Number((await tsrunOk(["inspect", "-f", "{{.State.Pid}}", name])).trim());
      expect(processState(pid)).toBe("T");
      expect(processState(host.pid as number)).not.toBe("T");
      // top lists the container's process, not the host's others.
      await tsrunOk(["unpause", name]);
      const top = await tsrunOk(["top", name]);
      expect(top).toContain("sleep 1001");
      expect(top).not.toContain(`sleep ${marker}`);
      // exec joins the container's other namespaces and stays in the host's pid namespace.
      expect(await tsrunOk(["exec", name, "sh", "-c", `test -e /proc/${host.pid} && echo seen`])).toBe("seen\n");
    } finally {
      host.kill("SIGKILL");
      await host;
    }
  });

  it("container:NAME: both containers' processes in one namespace; top shows each its own", async () => {
    const first = await sleeper(1002);
    const ps = await tsrunOk(["run", "--rm", "--pid", `container:${first}`, "busybox", "ps", "-o", "pid,args"]);
    expect(ps).toMatch(/^\s*1 sleep 1002$/m);
    expect(ps).toMatch(/^\s*\d+ ps -o pid,args$/m);
    const second = await sleeper(1003, ["--pid", `container:${first}`]);
    expect(await nsLink(second, "pid")).toBe(await nsLink(first, "pid"));
    const id = (await tsrunOk(["inspect", "-f", "{{.Id}}", first])).trim();
    expect(await tsrunOk(["inspect", "-f", "{{.HostConfig.PidMode}}", second])).toBe(`container:${id}\n`);
    const top = await tsrunOk(["top", second]);
    expect(top).toContain("sleep 1003");
    expect(top).not.toContain("sleep 1002");
  });

  it("bad values and a target that is not running: one line, 125, nothing left behind", async () => {
    const created = unique("ns-created");
    await tsrunOk(["create", "--name", created, "busybox", "true"]);
    started.push(created);
    const cases: [string[], RegExp][] = [
      [["--pid", "bogus"], /^Error: invalid --pid "bogus": expected private, host or container:NAME\n$/],
      [["--pid", "container:"], /^Error: invalid --pid "container:"/],
      [["--ipc", "sometimes"], /^Error: invalid --ipc "sometimes": expected private, shareable, none, host or container:NAME\n$/],
      [["--uts", "container:no-such-ctr"], /^Error: no such container: no-such-ctr\n$/],
      [["--uts", "host", "-h", "x"], /^Error: conflicting options: hostname and the UTS mode\n$/],
      [["--pid", `container:${created}`], new RegExp(`^Error: cannot join PID of a non running container: ${created}\\n$`)],
    ];
    for (const [flags, message] of cases) {
      const name = unique("ns-bad");
      const r = await tsrun(["run", "--name", name, ...flags, "busybox", "true"]);
      expect(r.code, flags.join(" ")).toBe(125);
      expect(r.stderr).toMatch(message);
      expect(await gone(name)).toBe(true);
    }
  });
});

describe("--ipc", () => {
  it("container:NAME: the same IPC namespace and the same /dev/shm, both ways", async () => {
    const first = await sleeper(1004);
    await tsrunOk(["exec", first, "sh", "-c", "echo from-first > /dev/shm/seg"]);
    const out = await tsrunOk(["run", "--rm", "--ipc", `container:${first}`, "busybox", "sh", "-c", "cat /dev/shm/seg; echo from-second > /dev/shm/back; readlink /proc/self/ns/ipc"]);
    const [seen, link] = out.trim().split("\n");
    expect(seen).toBe("from-first");
    expect(link).toBe(await nsLink(first, "ipc"));
    expect(await tsrunOk(["exec", first, "cat", "/dev/shm/back"])).toBe("from-second\n");
  });

  it("host: the host's /dev/shm; none: no /dev/shm; a private one by default", async () => {
    const file = `tsrun-ipc-${unique("t")}`;
    expect((await shAsUser(`echo on-host > /dev/shm/${file}`)).code).toBe(0);
    try {
      expect(await tsrunOk(["run", "--rm", "--ipc", "host", "busybox", "cat", `/dev/shm/${file}`])).toBe("on-host\n");
      expect((await tsrun(["run", "--rm", "busybox", "cat", `/dev/shm/${file}`])).code).not.toBe(0);
      expect(await tsrunOk(["run", "--rm", "--ipc", "none", "busybox", "sh", "-c", "test -e /dev/shm || echo no-shm"])).toBe("no-shm\n");
    } finally {
      await shAsUser(`rm -f /dev/shm/${file}`);
    }
  });
});

describe("--uts", () => {
  it("host: the host's name; container:NAME: the other container's", async () => {
    expect(await tsrunOk(["run", "--rm", "--uts", "host", "busybox", "sh", "-c", "hostname; cat /etc/hostname"])).toBe(`${hostname()}\n${hostname()}\n`);
    const first = await sleeper(1005, ["-h", "shared-name"]);
    expect(await tsrunOk(["run", "--rm", "--uts", `container:${first}`, "busybox", "hostname"])).toBe("shared-name\n");
    const d = await sleeper(1006, ["--uts", "host"]);
    // exec skips the namespaces the container shares with the host.
    expect(await tsrunOk(["exec", d, "hostname"])).toBe(`${hostname()}\n`);
  });
});

describe("--network container:NAME", () => {
  it("the other container's network namespace, name and /etc files; Docker's conflicts refused", async () => {
    const first = await sleeper(1007, ["-h", "net-owner", "--add-host", "extra.example:10.1.2.3"]);
    // A server in the first container, reached on the second's loopback.
    await tsrunOk(["exec", "-d", first, "sh", "-c", "echo served > /tmp/index.html; httpd -p 127.0.0.1:8089 -h /tmp"]);
    const out = await tsrunOk([
      "run",
      "--rm",
      "--network",
      `container:${first}`,
      "busybox",
      "sh",
      "-c",
      "for i in $(seq 50); do wget -q -O - http://127.0.0.1:8089/index.html 2>/dev/null && break; sleep 0.1; done; hostname; grep extra.example /etc/hosts; readlink /proc/self/ns/net",
    ]);
    const [served, name, hostsLine, link] = out.trim().split("\n");
    expect(served).toBe("served");
    expect(name).toBe("net-owner");
    expect(hostsLine).toMatch(/^10\.1\.2\.3\s+extra\.example$/);
    expect(link).toBe(await nsLink(first, "net"));
    for (const [flags, message] of [
      [["-h", "x"], "conflicting options: hostname and the network mode"],
      [["-p", "8080:80"], "conflicting options: port publishing and the container type network mode"],
      [["--dns", "1.1.1.1"], "conflicting options: dns and the network mode"],
      [["--add-host", "a:1.2.3.4"], "conflicting options: custom host-to-IP mapping and the network mode"],
      [["--sysctl", "net.ipv4.ip_forward=1"], 'sysctl "net.ipv4.ip_forward" not allowed: the network namespace is another container\'s'],
    ] as [string[], string][]) {
      const name2 = unique("ns-net-bad");
      const r = await tsrun(["run", "--name", name2, "--network", `container:${first}`, ...flags, "busybox", "true"]);
      expect(r.code, flags.join(" ")).toBe(125);
      expect(r.stderr).toBe(`Error: ${message}\n`);
      expect(await gone(name2)).toBe(true);
    }
  });
});
