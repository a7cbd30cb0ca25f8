// Registries behind an HTTP proxy: tinyproxy (a real proxy process) on 127.0.0.1 in front of
// Debian's docker-registry. As in Go (and so Docker and Podman), "localhost" and loopback
// addresses never go through a proxy, so the registries are named registry.tsrun.test and
// files.tsrun.test, which only the proxy can resolve: tinyproxy runs in a mount namespace of its
// own with an /etc/hosts that maps them to 127.0.0.1. A request that reaches the registry by
// that name therefore went through the proxy, and tinyproxy's log shows how (CONNECT for https,
// an absolute URL for http).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { env, importBusybox, scratchDir, tsrun } from "./helpers.js";
import { freePort, startRegistry, stopRegistry, type Registry } from "./registry-server.js";

const NAME = "registry.tsrun.test";
let work: string;
let plain: Registry;
let secure: Registry;
let secured: Registry;
let serverCa: string;
let files: { port: number; close: () => void };
const proxies: { process: ChildProcess }[] = [];

interface Tinyproxy {
  url: string;
  /** tinyproxy's request lines so far ("CONNECT host:port HTTP/1.1", "GET http://... HTTP/1.1"). */
  requests: () => string[];
}

/** Starts tinyproxy on a free port of 127.0.0.1 with extra config lines (BasicAuth, ConnectPort). */
async function startTinyproxy(name: string, extra: string[] = []): Promise<Tinyproxy> {
  const dir = path.join(work, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const hosts = path.join(dir, "hosts");
  writeFileSync(hosts, `127.0.0.1 localhost\n127.0.0.1 ${NAME}\n127.0.0.1 files.tsrun.test\n`);
  const log = path.join(dir, "tinyproxy.log");
  writeFileSync(path.join(dir, "tinyproxy.conf"), [`Port ${port}`, "Listen 127.0.0.1", "Timeout 60", `LogFile "${log}"`, "LogLevel Connect", "MaxClients 100", ...extra].join("\n") + "\n");
  // Root needs only a mount namespace; another user gets one in a user namespace of its own.
  const child = spawn("unshare", [process.getuid?.() === 0 ? "-m" : "-rm", "sh", "-c", `mount --bind ${hosts} /etc/hosts && exec tinyproxy -d -c ${dir}/tinyproxy.conf`], { stdio: "ignore" });
  proxies.push({ process: child });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const requests = (): string[] =>
    existsSync(log)
      ? readFileSync(log, "utf8")
          .split("\n")
          .map((l) => /Request \(file descriptor \d+\): (.*)$/.exec(l)?.[1])
          .filter((l): l is string => l !== undefined)
      : [];
  return { url: `http://127.0.0.1:${port}`, requests };
}

const portOf = (r: Registry): string => r.host.split(":")[1] ?? "";

/** XDG_CONFIG_HOME with certs.d for the https registry's proxied name: its CA is trusted. */
function configHome(): string {
  const home = scratchDir("proxy-config");
  const dir = path.join(home, "containers", "certs.d", `${NAME}:${portOf(secure)}`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(serverCa, path.join(dir, "ca.crt"));
  if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, home]);
  return home;
}

function storeIsEmpty(root: string): boolean {
  const blobs = path.join(root, "blobs", "sha256");
  const index = path.join(root, "images", "index.json");
  return (!existsSync(blobs) || readdirSync(blobs).length === 0) && (!existsSync(index) || (JSON.parse(readFileSync(index, "utf8")) as { images: unknown[] }).images.length === 0);
}

function expectOneLineError(r: { code: number; stderr: string }, message: RegExp): void {
  expect(r.code, r.stderr).toBe(125);
  expect(r.stderr.trim().split("\n"), r.stderr).toEqual([expect.stringMatching(message)]);
}

beforeAll(async () => {
  work = scratchDir("registry-proxy");
  await importBusybox("busybox");
  serverCa = path.join(work, "server.pem");
  const key = path.join(work, "server-key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", serverCa, "-days", "2", "-subj", `/CN=${NAME}`, "-addext", `subjectAltName=DNS:${NAME}`], { stdio: "ignore" });
  const htpasswd = path.join(work, "htpasswd");
  // bcrypt cost 4 (the registry checks it on every request) through Python's crypt.
  const hash = execFileSync("python3", ["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))", "s3cret"]).toString().trim();
  writeFileSync(htpasswd, `alice:${hash}\n`);
  [plain, secure, secured] = await Promise.all([
    startRegistry(work, "plain"),
    startRegistry(work, "tls", undefined, { certificate: serverCa, key }),
    startRegistry(work, "secured", { htpasswd }),
  ]);
  // A file server for `import URL` through the proxy.
  const tar = env.busyboxTar;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "application/x-tar" });
    res.end(readFileSync(tar));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  files = { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
});

afterAll(() => {
  for (const r of [plain, secure, secured]) if (r) stopRegistry(r);
  for (const p of proxies) p.process.kill("SIGTERM");
  files?.close();
});

describe("HTTPS_PROXY: CONNECT tunnels", () => {
  it("pushes and pulls an https registry through the proxy with the credentials of the proxy URL; without them, one line naming the proxy", async () => {
    const proxy = await startTinyproxy("auth", ["BasicAuth alice pr0xy"]);
    const withAuth = proxy.url.replace("http://", "http://alice:pr0xy@");
    const config = configHome();
    const ref = `${NAME}:${portOf(secure)}/tsrun/busybox:proxied`;
    const push = await tsrun(["push", "-q", "busybox", ref], { env: { XDG_CONFIG_HOME: config, HTTPS_PROXY: withAuth } });
    expect(push.code, push.stderr).toBe(0);
    const store = scratchDir("store-proxy-tls");
    const pull = await tsrun(["pull", "-q", ref], { env: { XDG_CONFIG_HOME: config, https_proxy: withAuth, TSRUN_ROOT: store } });
    expect(pull.code, pull.stderr).toBe(0);
    const run = await tsrun(["run", "--rm", ref, "echo", "through the proxy"], { env: { TSRUN_ROOT: store } });
    expect(run.stdout).toBe("through the proxy\n");
    const connects = proxy.requests().filter((r) => r === `CONNECT ${NAME}:${portOf(secure)} HTTP/1.1`);
    expect(connects.length).toBeGreaterThanOrEqual(2);
    expect(proxy.requests().filter((r) => !r.startsWith("CONNECT "))).toEqual([]);

    for (const [label, url, hint] of [
      ["no credentials", proxy.url, /it wants credentials/],
      ["wrong credentials", proxy.url.replace("http://", "http://alice:nope@"), /it refused the credentials in the proxy URL/],
    ] as const) {
      const empty = scratchDir("store-proxy-407");
      const r = await tsrun(["pull", "-q", ref], { env: { XDG_CONFIG_HOME: config, HTTPS_PROXY: url, TSRUN_ROOT: empty } });
      expectOneLineError(r, new RegExp(`^Error: proxy ${proxy.url.replace(/[.]/g, "\\.")} refused CONNECT ${NAME.replace(/[.]/g, "\\.")}:\\d+: 40[17] `));
      expect(r.stderr, label).toMatch(hint);
      expect(r.stderr).not.toContain("nope");
      expect(storeIsEmpty(empty), label).toBe(true);
    }
  });
});

describe("HTTP_PROXY: absolute-URI requests", () => {
  it("logs in, pushes and pulls a plain-http registry, and imports a URL, through the proxy", async () => {
    const proxy = await startTinyproxy("forward");
    const config = scratchDir("proxy-login");
    const viaProxy = { XDG_CONFIG_HOME: config, HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url };
    const host = `${NAME}:${portOf(secured)}`;
    const login = await tsrun(["login", "--tls-verify=false", "-u", "alice", "--password-stdin", host], { input: "s3cret\n", env: viaProxy });
    expect(login, login.stderr).toMatchObject({ code: 0, stdout: "Login Succeeded!\n" });
    const ref = `${host}/tsrun/busybox:proxied`;
    const push = await tsrun(["push", "-q", "--tls-verify=false", "busybox", ref], { env: viaProxy });
    expect(push.code, push.stderr).toBe(0);
    const store = scratchDir("store-proxy-http");
    const pull = await tsrun(["pull", "-q", "--tls-verify=false", ref], { env: { ...viaProxy, TSRUN_ROOT: store } });
    expect(pull.code, pull.stderr).toBe(0);
    const forwarded = proxy.requests().filter((r) => r.includes(`http://${host}/v2/`));
    expect(forwarded.some((r) => r.startsWith(`GET http://${host}/v2/tsrun/busybox/manifests/proxied `))).toBe(true);
    expect(forwarded.some((r) => r.startsWith(`PUT http://${host}/v2/tsrun/busybox/manifests/proxied `))).toBe(true);

    const imported = await tsrun(["import", `http://files.tsrun.test:${files.port}/busybox.tar`, "proxied-import"], { env: { ...viaProxy, TSRUN_ROOT: store } });
    expect(imported.code, imported.stderr).toBe(0);
    expect(proxy.requests()).toContain(`GET http://files.tsrun.test:${files.port}/busybox.tar HTTP/1.1`);
    const run = await tsrun(["run", "--rm", "proxied-import", "echo", "imported"], { env: { TSRUN_ROOT: store } });
    expect(run.stdout).toBe("imported\n");
  });
});

describe("NO_PROXY and loopback", () => {
  it("loopback registries never use the proxy; NO_PROXY domains, ports and * bypass it as in Go", async () => {
    const proxy = await startTinyproxy("bypass");
    const config = configHome();
    const loopbackRef = `${plain.host}/tsrun/busybox:direct`;
    const push = await tsrun(["push", "-q", "busybox", loopbackRef], { env: { XDG_CONFIG_HOME: config, HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url } });
    expect(push.code, push.stderr).toBe(0);
    expect(proxy.requests()).toEqual([]);

    const ref = `${NAME}:${portOf(secure)}/tsrun/busybox:bypass`;
    expect((await tsrun(["push", "-q", "busybox", ref], { env: { XDG_CONFIG_HOME: config, HTTPS_PROXY: proxy.url } })).code).toBe(0);
    const before = proxy.requests().length;
    expect(before).toBeGreaterThan(0);
    // Bypassed, the name is resolved by this host, which does not know it: the pull fails
    // without a word to the proxy.
    for (const noProxy of ["tsrun.test", `.tsrun.test:${portOf(secure)}`, "*", `example.com, ${NAME}`]) {
      const store = scratchDir("store-noproxy");
      const r = await tsrun(["pull", "-q", ref], { env: { XDG_CONFIG_HOME: config, HTTPS_PROXY: proxy.url, NO_PROXY: noProxy, TSRUN_ROOT: store } });
      expect(r.code, noProxy).toBe(125);
      expect(r.stderr, noProxy).not.toMatch(/proxy/);
      expect(storeIsEmpty(store)).toBe(true);
    }
    expect(proxy.requests().length).toBe(before);
    // Another port, or a name that only ends like it, is not bypassed.
    for (const noProxy of [`${NAME}:1`, "sub.registry.tsrun.test", "tsrun.tes"]) {
      const r = await tsrun(["pull", "-q", ref], { env: { XDG_CONFIG_HOME: config, HTTPS_PROXY: proxy.url, no_proxy: noProxy, TSRUN_ROOT: scratchDir("store-proxied") } });
      expect(r.code, `${noProxy}: ${r.stderr}`).toBe(0);
    }
  });
});

describe("bad proxies", () => {
  it("a proxy that refuses, one that is not there, and an unusable variable: one line naming it, nothing stored", async () => {
    const strict = await startTinyproxy("strict", ["ConnectPort 443"]);
    const closed = `http://127.0.0.1:${await freePort()}`;
    const config = configHome();
    const ref = `${NAME}:${portOf(secure)}/tsrun/busybox:proxied`;
    const cases: [Record<string, string>, RegExp][] = [
      [{ HTTPS_PROXY: strict.url }, new RegExp(`^Error: proxy ${strict.url.replace(/[.]/g, "\\.")} refused CONNECT ${NAME.replace(/[.]/g, "\\.")}:\\d+: 403 `)],
      [{ HTTPS_PROXY: closed }, new RegExp(`^Error: proxy ${closed.replace(/[.]/g, "\\.")}: connect ECONNREFUSED`)],
      [{ HTTPS_PROXY: "socks5://127.0.0.1:1080" }, /^Error: unsupported proxy scheme "socks5" in HTTPS_PROXY/],
      [{ https_proxy: "http://[::1" }, /^Error: invalid proxy address in https_proxy: "http:\/\/\[::1"$/],
    ];
    for (const [proxyEnv, message] of cases) {
      const store = scratchDir("store-bad-proxy");
      const r = await tsrun(["pull", "-q", ref], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: store, ...proxyEnv } });
      expectOneLineError(r, message);
      expect(storeIsEmpty(store), JSON.stringify(proxyEnv)).toBe(true);
    }
    const imported = await tsrun(["import", `http://files.tsrun.test:${files.port}/busybox.tar`, "never"], { env: { HTTP_PROXY: closed, TSRUN_ROOT: scratchDir("store-bad-import") } });
    expectOneLineError(imported, new RegExp(`^Error: import http://files\\.tsrun\\.test:\\d+/busybox\\.tar: proxy ${closed.replace(/[.]/g, "\\.")}: connect ECONNREFUSED`));
  });
});
