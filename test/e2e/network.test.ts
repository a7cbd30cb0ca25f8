// Networking end to end: the private network with outbound access (to a server this test
// starts on the host's loopback: no traffic leaves the machine), none, host, -p (TCP and UDP),
// -P, port conflicts, bad specs, --dns, --add-host.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { createSocket } from "node:dgram";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { importBusybox, tsrun } from "./helpers.js";

const unique = (prefix: string): string => `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
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

  it("--network none has only lo and no way out", async () => {
    const r = await tsrun(["run", "--rm", "--network", "none", "busybox", "sh", "-c", `ls /sys/class/net; wget -T 2 -qO- http://10.0.2.2:${serverPort}/ || echo unreachable`]);
    expect(r.stdout).toBe("lo\nunreachable\n");
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

  it("-p forwards UDP both ways (to the host's own address: see README on loopback)", async () => {
    const hostIp = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (!hostIp) return; // a host with only loopback has no address to test the tap path with
    const name = unique("udp");
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    // The host's python3 runs in the container through read-only binds of /usr and /lib:
    // busybox-static has no UDP server applet.
    const server = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5000))\nwhile True:\n d,a=s.recvfrom(100)\n s.sendto(b'echo:'+d,a)\n";
    const r = await tsrun(["run", "-d", "--name", name, "-p", `${hostPort}:5000/udp`, "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "busybox", "/usr/bin/python3", "-c", server]);
    expect(r.code).toBe(0);
    const sock = createSocket("udp4");
    const reply = new Promise<string>((resolve) => sock.once("message", (m) => resolve(m.toString())));
    const sender = setInterval(() => sock.send("datagram", hostPort, hostIp), 200);
    const got = await Promise.race([reply, sleep(10_000).then(() => "timeout")]);
    clearInterval(sender);
    sock.close();
    expect(got).toBe("echo:datagram");
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
