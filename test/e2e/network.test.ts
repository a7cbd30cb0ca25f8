// Networking end to end: the private network with outbound access (to a server this test
// starts on the host's loopback: no traffic leaves the machine), none, host, -p (TCP and UDP),
// -P, port conflicts, bad specs, --dns, --add-host.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import type { AddressInfo } from "node:net";
import { networkInterfaces, release } from "node:os";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, scratchDir, shAsUser, tsrun, unique } from "./helpers.js";
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let server: Server;
let serverPort = 0;

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(50);
  }
}

async function httpGet(port: number, path = "/"): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return res.text();
}

beforeAll(async () => {
  await importBusybox("busybox");
  await importBusybox("exposed", ["EXPOSE 80", 'CMD ["sh","-c","echo exposed > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]']);
  server = createServer((req, res) => res.end(`host says hi to ${req.url}\n`));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  serverPort = (server.address() as AddressInfo).port;
});

afterAll(() => {
  server.close();
});

describe("network modes", () => {
  it("the default private network has eth0 and reaches the host's loopback at the gateway", async () => {
    const r = await tsrun([
      "run", "--rm", "busybox", "sh", "-c",
      `ip -4 -o addr show eth0 | grep -c inet; gw=$(ip route | awk '/default/ {print $3}'); wget -qO- http://$gw:${serverPort}/from-container; grep -c nameserver /etc/resolv.conf`,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`1\nhost says hi to /from-container\n1\n`);
  });

  it("host.containers.internal and host.docker.internal reach the host (slirp4netns and pasta), unless --add-host says otherwise", async () => {
    for (const helper of ["slirp4netns", "pasta"]) {
      const r = await tsrun(["run", "--rm", "--network", helper, "busybox", "sh", "-c", `wget -qO- http://host.containers.internal:${serverPort}/by-name; wget -qO- http://host.docker.internal:${serverPort}/docker-name`]);
      expect(r.stdout, `${helper}: ${r.stderr}`).toBe("host says hi to /by-name\nhost says hi to /docker-name\n");
    }
    const own = await tsrun(["run", "--rm", "--add-host", "host.docker.internal:10.9.9.9", "busybox", "grep", "host\\.", "/etc/hosts"]);
    expect(own.stdout).toBe("10.9.9.9\thost.docker.internal\n10.0.2.2\thost.containers.internal\n");
    const none = await tsrun(["run", "--rm", "--network", "none", "busybox", "grep", "-c", "host.containers.internal", "/etc/hosts"]);
    expect(none.stdout).toBe("0\n");
  });

  it("--network none has only lo and no way out", async () => {
    const r = await tsrun(["run", "--rm", "--network", "none", "busybox", "sh", "-c", `ls /sys/class/net; wget -T 2 -qO- http://10.0.2.2:${serverPort}/ || echo unreachable`]);
    expect(r.stdout).toBe("lo\nunreachable\n");
  });

  it("the container's loopback takes TCP segments of 512 KiB (BIG TCP) where the kernel allows", async () => {
    // Every byte -p forwards crosses the container's lo (tsrun-forward connects to the server
    // there). The sizes are read with a netlink dump from inside the container's namespaces,
    // joined as the unprivileged user (owner of the user namespace).
    const name = unique("bigtcp");
    expect((await tsrun(["run", "-d", "--name", name, "busybox", "sleep", "600"])).code).toBe(0);
    const pid = (await tsrun(["inspect", "-f", "{{.State.Pid}}", name])).stdout.trim();
    const dump = [
      "import socket, struct",
      "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); s.bind((0, 0))",
      "ifi = struct.pack('BxHiII', 0, 0, 1, 0, 0)",
      "s.send(struct.pack('IHHII', 16 + len(ifi), 18, 1, 1, 0) + ifi); r = s.recv(65536); o = 32",
      "names = {41: 'gso', 58: 'gro', 63: 'gso_ipv4', 64: 'gro_ipv4'}",
      "while o < len(r):",
      "  l, t = struct.unpack('HH', r[o:o + 4])",
      "  if t in names: print(names[t], struct.unpack('I', r[o + 4:o + 8])[0])",
      "  o += (l + 3) & ~3",
    ].join("\n");
    const r = await shAsUser(`nsenter -U --preserve-credentials -n -t ${pid} python3 -c "${dump}"`);
    await tsrun(["rm", "-f", name]);
    expect(r.code, r.stderr).toBe(0);
    const sizes = Object.fromEntries(r.stdout.trim().split("\n").map((line) => line.split(" ")));
    const [major = 0, minor = 0] = release().split(".").map(Number);
    const atLeast = (a: number, b: number): boolean => major > a || (major === a && minor >= b);
    // IPv6 BIG TCP came in Linux 5.19, IPv4 in 6.3; older kernels keep 64 KiB.
    if (atLeast(5, 19)) expect([sizes.gso, sizes.gro]).toEqual(["524280", "524280"]);
    if (atLeast(6, 3)) expect([sizes.gso_ipv4, sizes.gro_ipv4]).toEqual(["524280", "524280"]);
    expect(Number(sizes.gso)).toBeGreaterThanOrEqual(65536);
  });

  it("--network host shares the host's interfaces and loopback", async () => {
    const r = await tsrun(["run", "--rm", "--network", "host", "busybox", "wget", "-qO-", `http://127.0.0.1:${serverPort}/host-mode`]);
    expect(r.stdout).toBe("host says hi to /host-mode\n");
  });

  it("--dns, --add-host (host-gateway too) and --hostname", async () => {
    const r = await tsrun(["run", "--rm", "--dns", "9.9.9.9", "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway", "--hostname", "web1", "busybox", "sh", "-c", "grep nameserver /etc/resolv.conf; grep -E 'db|gw' /etc/hosts; hostname"]);
    expect(r.stdout).toMatch(/^nameserver 9\.9\.9\.9\n10\.1\.2\.3\tdb\n[\d.]+\tgw\nweb1\n$/);
    const bad = await tsrun(["run", "--rm", "--add-host", "nocolon", "busybox", "true"]);
    expect(bad.code).toBe(125);
  });
});

describe("slirp4netns", () => {
  it("--network slirp4netns: outbound to the host's loopback at the gateway, -p through tsrun-forward", async () => {
    const out = await tsrun(["run", "--rm", "--network", "slirp4netns", "busybox", "sh", "-c", `ip route | awk '/default/ {print $3}'; wget -qO- http://10.0.2.2:${serverPort}/via-slirp`]);
    expect(out.stdout).toBe("10.0.2.2\nhost says hi to /via-slirp\n");
    const name = unique("slirp");
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const r = await tsrun(["run", "-d", "--name", name, "--network", "slirp4netns", "-p", `127.0.0.1:${hostPort}:80`, "busybox", "sh", "-c", "echo slirp-web > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]);
    expect(r.code, r.stderr).toBe(0);
    await until(async () => (await httpGet(hostPort, "/index.html").catch(() => "")) === "slirp-web\n");
    await tsrun(["rm", "-f", name]);
  });

  it("a foreground run without -p starts slirp4netns itself, in its own session, in a network namespace made before the container; it ends with the container", async () => {
    const name = unique("fg-slirp");
    const dir = scratchDir("fg-slirp");
    const run = tsrun(["run", "--name", name, "--network", "slirp4netns", "-v", `${dir}:/x`, "busybox", "sh", "-c", `wget -qO- http://10.0.2.2:${serverPort}/fg-slirp > /x/got; until [ -e /x/stop ]; do sleep 0.1; done`]);
    await until(async () => existsSync(path.join(dir, "got")) && readFileSync(path.join(dir, "got"), "utf8").length > 0);
    expect(readFileSync(path.join(dir, "got"), "utf8")).toBe("host says hi to /fg-slirp\n");
    const id = (await tsrun(["inspect", "-f", "{{.Id}}", name])).stdout.trim();
    const pidFile = path.join(env.storeRoot, "containers", id, "slirp4netns.pid");
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    const comm = (): string => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        return "";
      }
    };
    expect(comm()).toBe("slirp4netns");
    // Started on a namespace from the holder while the record was written (not on the
    // container's pid, which did not exist yet): the container joined it.
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    expect(argv).toContain("--netns-type=path");
    expect(argv.some((a) => /^\/proc\/\d+\/fd\/\d+$/.test(a))).toBe(true);
    // Its own session: a Ctrl-C meant for the container never reaches it.
    expect(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[3]).toBe(String(pid));
    writeFileSync(path.join(dir, "stop"), "");
    expect((await run).code).toBe(0);
    expect(existsSync(pidFile)).toBe(false);
    // Its exit pipe closed with the run, it ends moments later (reaped: a zombie keeps its comm;
    // test/e2e/api.test.ts checks that a long-lived program using the library keeps no zombie).
    await until(async () => comm() !== "slirp4netns", 5000);
    await tsrun(["rm", name]);
  });
});

describe("a network helper that fails", () => {
  it("a slirp4netns that exits before configuring the network: one line, exit 125, no container left, nothing running", async () => {
    const dir = scratchDir("bad-slirp");
    const fake = path.join(dir, "slirp4netns");
    writeFileSync(fake, "#!/bin/sh\necho 'slirp4netns: cannot do that' >&2\nexit 1\n", { mode: 0o755 });
    const name = unique("bad-slirp");
    const before = (await tsrun(["ps", "-aq", "--no-trunc"])).stdout;
    const r = await tsrun(["run", "--rm", "--name", name, "--network", "slirp4netns", "busybox", "true"], { env: { PATH: `${dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` } });
    expect(r.code).toBe(125);
    expect(r.stderr.trim().split("\n")).toEqual(["Error: slirp4netns failed to configure the container's network"]);
    expect((await tsrun(["ps", "-aq", "--no-trunc"])).stdout).toBe(before);
    expect((await tsrun(["inspect", name])).code).not.toBe(0);
    // The name is free again.
    expect((await tsrun(["run", "--rm", "--name", name, "--network", "none", "busybox", "true"])).code).toBe(0);
  });
});

describe("published ports", () => {
  it("-p forwards TCP to a detached container; port and ps show it; the port is freed when it stops", async () => {
    const name = unique("web");
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const r = await tsrun(["run", "-d", "--name", name, "-p", `127.0.0.1:${hostPort}:80`, "busybox", "sh", "-c", "echo hello-web > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]);
    expect(r.code).toBe(0);
    await until(async () => (await httpGet(hostPort, "/index.html").catch(() => "")) === "hello-web\n");
    expect((await tsrun(["port", name])).stdout).toBe(`80/tcp -> 127.0.0.1:${hostPort}\n`);
    expect((await tsrun(["port", name, "80/tcp"])).stdout).toBe(`127.0.0.1:${hostPort}\n`);
    expect((await tsrun(["ps", "--filter", `name=${name}`])).stdout).toContain(`127.0.0.1:${hostPort}->80/tcp`);
    // Taken while it runs: a second container cannot have it.
    const conflict = await tsrun(["run", "--rm", "-p", `127.0.0.1:${hostPort}:80`, "busybox", "true"]);
    expect(conflict.code).toBe(125);
    expect(conflict.stderr).toMatch(/already in use/);
    expect(conflict.stderr.trim().split("\n")).toHaveLength(1);
    await tsrun(["stop", "-t", "1", name]);
    // Freed: we can listen on it ourselves now.
    const probe = createTcpServer();
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen(hostPort, "127.0.0.1", () => resolve());
    });
    probe.close();
    await tsrun(["rm", name]);
  });

  // The host's python3 runs in the container through read-only binds of /usr and /lib:
  // busybox-static has no UDP server applet.
  const udpEcho = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5000))\nwhile True:\n d,a=s.recvfrom(100)\n s.sendto(b'echo:'+d,a)\n";
  const hostBinds = ["-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro"];

  async function udpRoundTrip(port: number, address: string): Promise<string> {
    const sock = createSocket("udp4");
    const reply = new Promise<string>((resolve) => sock.once("message", (m) => resolve(m.toString())));
    const sender = setInterval(() => sock.send("datagram", port, address), 200);
    const got = await Promise.race([reply, sleep(10_000).then(() => "timeout")]);
    clearInterval(sender);
    sock.close();
    return got;
  }

  it("-p forwards UDP both ways, to loopback and to the host's own address", async () => {
    const name = unique("udp");
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const r = await tsrun(["run", "-d", "--name", name, "-p", `${hostPort}:5000/udp`, ...hostBinds, "busybox", "/usr/bin/python3", "-c", udpEcho]);
    expect(r.code).toBe(0);
    expect(await udpRoundTrip(hostPort, "127.0.0.1")).toBe("echo:datagram");
    const hostIp = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (hostIp) expect(await udpRoundTrip(hostPort, hostIp)).toBe("echo:datagram");
    await tsrun(["rm", "-f", name]);
  });

  it("tsrun-forward (port_handler=tsrun) moves large streams intact both ways, with half-close", async () => {
    const name = unique("bulk");
    const [web, sink] = [20000 + Math.floor(Math.random() * 20000), 20000 + Math.floor(Math.random() * 20000)];
    const r = await tsrun(["run", "-d", "--name", name, "--network", "private:port_handler=tsrun", "-p", `127.0.0.1:${web}:80`, "-p", `127.0.0.1:${sink}:5000`, "busybox", "sh", "-c",
      "head -c 24000000 /dev/urandom > /tmp/big; sha256sum < /tmp/big > /tmp/big.sum; httpd -p 80 -h /tmp; nc -l -p 5000 > /tmp/up; sha256sum < /tmp/up > /tmp/up.sum; sleep 600"]);
    expect(r.code, r.stderr).toBe(0);
    await until(async () => (await httpGet(web, "/big.sum").catch(() => "")).length > 0);
    const down = Buffer.from(await (await fetch(`http://127.0.0.1:${web}/big`)).arrayBuffer());
    expect(`${createHash("sha256").update(down).digest("hex")}  -\n`).toBe(await httpGet(web, "/big.sum"));
    // Upload: write everything, half-close, wait for the server's end of file.
    const payload = randomBytes(20_000_000);
    await new Promise<void>((resolve, reject) => {
      const sock = connect(sink, "127.0.0.1", () => sock.end(payload));
      sock.on("error", reject);
      sock.on("close", () => resolve());
      sock.resume();
    });
    await until(async () => (await tsrun(["exec", name, "cat", "/tmp/up.sum"])).stdout.length > 0);
    expect((await tsrun(["exec", name, "cat", "/tmp/up.sum"])).stdout).toBe(`${createHash("sha256").update(payload).digest("hex")}  -\n`);
    await tsrun(["rm", "-f", name]);
  });

  it("a foreground run publishes its port through tsrun-forward for its lifetime only; a taken port is one line", async () => {
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const dir = scratchDir("fg");
    const run = tsrun(["run", "--rm", "--network", "private:port_handler=tsrun", "-v", `${dir}:/x`, "-p", `127.0.0.1:${hostPort}:80`, "busybox", "sh", "-c", "echo fg > /tmp/index.html; httpd -p 80 -h /tmp; until [ -e /x/stop ]; do sleep 0.1; done"]);
    await until(async () => (await httpGet(hostPort, "/index.html").catch(() => "")) === "fg\n");
    for (const args of [["run", "--rm"], ["run", "-d"]]) {
      const taken = await tsrun([...args, "--network", "private:port_handler=tsrun", "-p", `127.0.0.1:${hostPort}:80`, "busybox", "true"]);
      expect(taken.code).toBe(125);
      expect(taken.stderr).toMatch(/cannot publish port 127\.0\.0\.1:\d+\/tcp: the host port is already in use/);
      expect(taken.stderr.trim().split("\n")).toHaveLength(1);
    }
    writeFileSync(path.join(dir, "stop"), "");
    expect((await run).code).toBe(0);
    await expect(httpGet(hostPort, "/index.html")).rejects.toThrow();
    const bad = await tsrun(["run", "--rm", "--network", "private:port_handler=nope", "busybox", "true"]);
    expect(bad.stderr).toMatch(/invalid --network option/);
  });

  it("-p with port ranges (through tsrun-forward)", async () => {
    const name = unique("range");
    const base = 20000 + Math.floor(Math.random() * 20000);
    const r = await tsrun(["run", "-d", "--name", name, "--network", "private:port_handler=tsrun", "-p", `127.0.0.1:${base}-${base + 1}:80-81`, "busybox", "sh", "-c",
      "mkdir /a /b; echo a > /a/index.html; echo b > /b/index.html; httpd -p 80 -h /a; httpd -p 81 -h /b; exec sleep 600"]);
    expect(r.code, r.stderr).toBe(0);
    await until(async () => (await httpGet(base, "/index.html").catch(() => "")) === "a\n");
    expect(await httpGet(base + 1, "/index.html")).toBe("b\n");
    expect((await tsrun(["port", name])).stdout).toBe(`80/tcp -> 127.0.0.1:${base}\n81/tcp -> 127.0.0.1:${base + 1}\n`);
    await tsrun(["rm", "-f", name]);
  });

  it("-P publishes every EXPOSEd port on a free host port", async () => {
    const name = unique("puball");
    await tsrun(["run", "-d", "--name", name, "-P", "exposed"]);
    const line = (await tsrun(["port", name])).stdout.trim();
    const m = /^80\/tcp -> 0\.0\.0\.0:(\d+)$/.exec(line);
    expect(m).not.toBeNull();
    await until(async () => (await httpGet(Number(m?.[1]), "/index.html").catch(() => "")) === "exposed\n");
    await tsrun(["rm", "-f", name]);
  });

  it("bad -p specs and ports with --network none are one-line errors", async () => {
    for (const spec of ["abc", "80:", "1:2:3:4", "70000", "80/sctp", "1-3:5-9"]) {
      const r = await tsrun(["run", "--rm", "-p", spec, "busybox", "true"]);
      expect(r.code, spec).toBe(125);
      expect(r.stderr.trim().split("\n"), spec).toHaveLength(1);
    }
    const none = await tsrun(["run", "--rm", "--network", "none", "-p", "8080:80", "busybox", "true"]);
    expect(none.code).toBe(125);
  });
});

describe("user-defined networks", () => {
  it("containers reach each other by name, alias and link; peers' hosts follow joins and leaves; rm refused while in use", async () => {
    const net = unique("net");
    const [a, b] = [unique("a"), unique("b")];
    const created = await tsrun(["network", "create", net]);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^[a-f0-9]{64}\n$/);
    expect((await tsrun(["network", "ls", "--format", "{{.Name}} {{.Driver}}"])).stdout).toContain(`${net} bridge\n`);
    expect((await tsrun(["network", "create", net])).stderr).toMatch(/already exists/);
    const server = await tsrun(["run", "-d", "--name", a, "--network", net, "--network-alias", "db", "busybox", "sh", "-c", "echo hi-from-a > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]);
    expect(server.code, server.stderr).toBe(0);
    const client = await tsrun([
      "run", "-d", "--name", b, "--network", net, "--link", `${a}:linked`, "busybox", "sleep", "600",
    ]);
    expect(client.code, client.stderr).toBe(0);
    // exec into a container whose user namespace hangs from the network holder's.
    const r = await tsrun(["exec", b, "sh", "-c", `wget -qO- http://${a}/index.html; wget -qO- http://db/index.html; wget -qO- http://linked/index.html; ip -4 -o addr show eth0 | awk '{print $4}'`]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^hi-from-a\nhi-from-a\nhi-from-a\n10\.\d+\.\d+\.\d+\/24\n$/);
    // a learnt b's name when b joined (its hosts file was rewritten in place).
    expect((await tsrun(["exec", a, "sh", "-c", `grep -c ${b} /etc/hosts`])).stdout).toBe("1\n");
    expect((await tsrun(["ps", "-q", "--filter", `network=${net}`])).stdout.trim().split("\n")).toHaveLength(2);
    const inspect = JSON.parse((await tsrun(["network", "inspect", net])).stdout) as { Containers: Record<string, { Name: string }> }[];
    expect(Object.values(inspect[0]?.Containers ?? {}).map((c) => c.Name).sort()).toEqual([a, b].sort());
    const refused = await tsrun(["network", "rm", net]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`network ${net} is in use by container`));
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    await tsrun(["rm", "-f", b]);
    expect((await tsrun(["exec", a, "sh", "-c", `grep -c ${b} /etc/hosts || true`])).stdout).toBe("0\n");
    await tsrun(["rm", "-f", a]);
    expect((await tsrun(["network", "rm", net])).stdout).toBe(`${net}\n`);
    expect((await tsrun(["network", "inspect", net])).code).not.toBe(0);
  });

  it("outbound access from a user-defined network; none with --internal", async () => {
    const [net, internal] = [unique("out"), unique("int")];
    await tsrun(["network", "create", net]);
    await tsrun(["network", "create", "--internal", "--subnet", "10.123.45.0/24", internal]);
    const out = await tsrun(["run", "--rm", "--network", net, "busybox", "sh", "-c", `gw=$(ip route | awk '/default/ {print $3}'); wget -qO- http://$gw:${serverPort}/from-user-network`]);
    expect(out.stdout).toBe("host says hi to /from-user-network\n");
    const cut = await tsrun(["run", "--rm", "--network", internal, "--ip", "10.123.45.77", "busybox", "sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}'; ip route | grep -c default || true"]);
    expect(cut.stdout).toBe("10.123.45.77/24\n0\n");
    await tsrun(["network", "rm", net, internal]);
  });

  it("cp, commit and file owners work for a container on a user-defined network", async () => {
    const net = unique("own");
    const name = unique("owner");
    const image = unique("ownimg");
    await tsrun(["network", "create", net]);
    const r = await tsrun(["run", "-d", "--name", name, "--network", net, "busybox", "sh", "-c", "echo data > /f; chown 123:45 /f; sleep 600"]);
    expect(r.code, r.stderr).toBe(0);
    await until(async () => (await tsrun(["exec", name, "stat", "-c", "%u:%g", "/f"])).stdout === "123:45\n");
    const listing = await shAsUser(`"$TSRUN" cp ${name}:/f - | tar -tvf - --numeric-owner`);
    expect(listing.stdout).toMatch(/^-\S+ 123\/45 /);
    expect((await tsrun(["commit", name, image])).code).toBe(0);
    expect((await tsrun(["run", "--rm", image, "stat", "-c", "%u:%g", "/f"])).stdout).toBe("123:45\n");
    await tsrun(["rm", "-f", name]);
    await tsrun(["rmi", image]);
    await tsrun(["network", "rm", net]);
  });

  it("-p to a container on a user-defined network", async () => {
    const net = unique("pub");
    const name = unique("pubweb");
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    await tsrun(["network", "create", net]);
    const r = await tsrun(["run", "-d", "--name", name, "--network", net, "-p", `127.0.0.1:${hostPort}:80`, "busybox", "sh", "-c", "echo on-net > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]);
    expect(r.code, r.stderr).toBe(0);
    await until(async () => (await httpGet(hostPort, "/index.html").catch(() => "")) === "on-net\n");
    await tsrun(["rm", "-f", name]);
    await tsrun(["network", "rm", net]);
  });

  it("network connect and disconnect, stopped and running", async () => {
    const [n1, n2] = [unique("c1"), unique("c2")];
    const [web, probe] = [unique("web"), unique("probe")];
    await tsrun(["network", "create", n1]);
    await tsrun(["network", "create", n2]);
    await tsrun(["create", "--name", web, "busybox", "sh", "-c", "echo web > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]);
    // Created on the private network; connected before it starts.
    expect((await tsrun(["network", "connect", "--alias", "www", n1, web])).code).toBe(0);
    expect((await tsrun(["start", web])).code).toBe(0);
    await tsrun(["run", "-d", "--name", probe, "--network", n2, "busybox", "sleep", "600"]);
    // Running on a user-defined network: connected at once, as eth1.
    const c = await tsrun(["network", "connect", n1, probe]);
    expect(c.code, c.stderr).toBe(0);
    const r = await tsrun(["exec", probe, "sh", "-c", "ls /sys/class/net | grep eth | sort | tr '\\n' ' '; wget -qO- http://www/index.html"]);
    expect(r.stdout).toBe("eth0 eth1 web\n");
    expect((await tsrun(["network", "disconnect", n1, probe])).code).toBe(0);
    expect((await tsrun(["exec", probe, "sh", "-c", "ls /sys/class/net | grep -c eth; grep -c www /etc/hosts || true"])).stdout).toBe("1\n0\n");
    // A container running on the private network cannot be reached by the network holder.
    const lone = unique("lone");
    await tsrun(["run", "-d", "--name", lone, "busybox", "sleep", "600"]);
    const refused = await tsrun(["network", "connect", n2, lone]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/stop it/);
    await tsrun(["rm", "-f", web, probe, lone]);
    await tsrun(["network", "rm", n1, n2]);
  });

  it("network create --ip-range, --aux-address and --attachable: addresses come from the range, the aux address is never given", async () => {
    const net = unique("ranged");
    const third = 100 + Math.floor(Math.random() * 100);
    expect((await tsrun(["network", "create", "--subnet", `10.${third}.7.0/24`, "--ip-range", `10.${third}.7.128/28`, "--aux-address", `router=10.${third}.7.128`, "--attachable", net])).code).toBe(0);
    const addr = await tsrun(["run", "--rm", "--network", net, "busybox", "sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}'"]);
    expect(addr.stdout, addr.stderr).toBe(`10.${third}.7.129/24\n`);
    expect(JSON.parse((await tsrun(["network", "inspect", "-f", "{{json .IPAM.Config}}", net])).stdout)).toEqual([{ Subnet: `10.${third}.7.0/24`, Gateway: `10.${third}.7.1`, IPRange: `10.${third}.7.128/28`, AuxiliaryAddresses: { router: `10.${third}.7.128` } }]);
    expect((await tsrun(["network", "inspect", "-f", "{{.Attachable}}", net])).stdout).toBe("true\n");
    await tsrun(["network", "rm", net]);
  });

  it("bad network flags are one-line errors", async () => {
    const cases: [string[], RegExp][] = [
      [["run", "--rm", "--network", unique("missing"), "busybox", "true"], /network .* not found/],
      [["run", "--rm", "--network-alias", "x", "busybox", "true"], /--network-alias needs a user-defined network/],
      [["run", "--rm", "--link", "x:y", "busybox", "true"], /--link needs a user-defined network/],
      [["network", "create", "bridge"], /reserved/],
      [["network", "create", "--subnet", "10.1.2.3", unique("bad")], /invalid subnet/],
      [["network", "rm", "host"], /pre-defined network/],
      [["network", "create", "--ipv6", unique("v6")], /^Error: IPv6 networks are not supported/],
      [["network", "create", "--ip-range", "10.1.0.0/28", unique("range")], /^Error: --ip-range needs --subnet\n$/],
      [["network", "create", "--subnet", "10.78.0.0/24", "--ip-range", "10.79.0.0/28", unique("range")], /^Error: ip-range 10.79.0.0\/28 is not within subnet 10.78.0.0\/24\n$/],
      [["network", "create", "--aux-address", "router", unique("aux")], /^Error: invalid --aux-address "router": NAME=IPv4\n$/],
      [["network", "create", "--ipam-driver", "dhcp", unique("ipam")], /^Error: IPAM driver dhcp is not supported: only default\n$/],
    ];
    for (const [args, message] of cases) {
      const r = await tsrun(args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr, args.join(" ")).toMatch(message);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  });
});
