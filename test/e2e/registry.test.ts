// pull, push, login and logout against real registries: Debian's docker-registry started on
// 127.0.0.1 (open; with htpasswd basic auth; with bearer tokens from a token server in this
// process, as Docker Hub, GHCR and Quay work), skopeo and podman for interop, and small proxies
// in this process that record requests and inject faults (5xx answers, reset connections, a
// download stalled halfway so the pull can be killed there).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, openSync, readSync, writeSync, closeSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { createHash, randomBytes, sign } from "node:crypto";
import { asUser, cliEnv, env, importBusybox, podmanCli, scratchDir, shAsUser, tsrun, unique } from "./helpers.js";
import { startRegistry as startSharedRegistry, type Registry, type RegistryAuth } from "./registry-server.js";

const registries: Registry[] = [];
let open: Registry;
let secured: Registry;
let work: string;

/**
 * bcrypt for htpasswd: apache2-utils when installed, else Python's crypt (libxcrypt has $2b$).
 * Cost 4: the registry checks the hash on every request, and the default cost makes each 250 ms.
 */
function bcryptLine(user: string, password: string): string {
  try {
    return execFileSync("htpasswd", ["-Bbn", "-C", "4", user, password]).toString().trim();
  } catch {
    const hash = execFileSync("python3", ["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))", password])
      .toString()
      .trim();
    if (!hash.startsWith("$2")) throw new Error("cannot make a bcrypt hash (install apache2-utils)");
    return `${user}:${hash}`;
  }
}

async function startRegistry(name: string, auth?: RegistryAuth): Promise<Registry> {
  const registry = await startSharedRegistry(work, name, auth);
  registries.push(registry);
  return registry;
}

/** A fresh, empty store owned by the test user. */
function freshStore(label: string): Record<string, string> {
  return { TSRUN_ROOT: scratchDir(`store-${label}`), XDG_CONFIG_HOME: configHome };
}
let configHome: string;

/** A layer tarball with a file of random bytes (distinct, incompressible); runnable with busybox. */
function randomLayerTar(label: string, bytes: number, withBusybox = false): string {
  const dir = scratchDir(`layer-${label}`);
  const data = path.join(dir, "rootfs");
  mkdirSync(data);
  if (withBusybox) execFileSync("tar", ["-C", data, "-xf", env.busyboxTar]);
  writeFileSync(path.join(data, `random-${label}`), randomBytes(bytes));
  const tar = path.join(dir, "layer.tar");
  execFileSync("tar", ["-C", data, "-cf", tar, "."]);
  chmodSync(tar, 0o644);
  return tar;
}

interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** Date.now() when it arrived. */
  at: number;
}

/** Starts a test server on a free port of 127.0.0.1; close() also drops its open connections. */
async function listenLocally(server: http.Server): Promise<{ host: string; close: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What a test proxy does with one request: pass it on, answer it with a status, or break it. */
type Fault = { status: number; headers?: Record<string, string>; body?: string } | { resetAfterBytes: number } | { resetBeforeAnswer: true } | undefined;

/**
 * An HTTP proxy in front of a registry that records every request and injects faults (5xx
 * answers, connections reset before the answer or in the middle of a body), as a flaky network
 * or an overloaded registry would.
 */
async function startProxy(upstream: string, fault: (req: SeenRequest) => Fault = () => undefined): Promise<{ host: string; seen: SeenRequest[]; close: () => Promise<void> }> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const request = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, at: Date.now() };
    seen.push(request);
    const f = fault(request);
    if (f && "status" in f) {
      req.resume();
      res.writeHead(f.status, { "Content-Type": "application/json", ...f.headers });
      res.end(f.body ?? JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected failure" }] }));
      return;
    }
    if (f && "resetBeforeAnswer" in f) {
      req.socket.destroy();
      return;
    }
    const [upHost, upPort] = upstream.split(":");
    const up = http.request({ host: upHost, port: Number(upPort), path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (!f) return void upRes.pipe(res);
      let sent = 0;
      upRes.on("data", (chunk: Buffer) => {
        if (sent >= f.resetAfterBytes) return;
        const part = chunk.subarray(0, f.resetAfterBytes - sent);
        sent += part.length;
        res.write(part);
        if (sent >= f.resetAfterBytes) {
          upRes.destroy();
          // Let the bytes leave, then cut the connection without ending the response.
          setTimeout(() => res.socket?.destroy(), 50);
        }
      });
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  const { host, close } = await listenLocally(server);
  return { host, seen, close };
}

/** A fresh store pulled from `ref`, run with `sh -c script`: what the pulled image contains. */
async function pullAndRun(ref: string, label: string, script: string): Promise<string> {
  const store = freshStore(label);
  const pull = await tsrun(["pull", "-q", ref], { env: store });
  expect(pull.code, pull.stderr).toBe(0);
  const run = await tsrun(["run", "--rm", ref, "sh", "-c", script], { env: store });
  expect(run.code, run.stderr).toBe(0);
  return run.stdout;
}

function blobFiles(store: Record<string, string>): string[] {
  const dir = path.join(store.TSRUN_ROOT as string, "blobs", "sha256");
  return existsSync(dir) ? readdirSync(dir) : [];
}

function storedImages(store: Record<string, string>): { id: string; names: string[]; repoDigests: string[] }[] {
  const file = path.join(store.TSRUN_ROOT as string, "images", "index.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { images: { id: string; names: string[]; repoDigests: string[] }[] }).images : [];
}

const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** The size of a manifest in the open registry (repo: "tsrun/NAME"), as an index entry needs it. */
async function manifestSize(repo: string, digest: string): Promise<number> {
  const res = await fetch(`http://${open.host}/v2/${repo}/manifests/${digest}`, { method: "HEAD", headers: { Accept: OCI_MANIFEST } });
  return Number(res.headers.get("content-length"));
}

/** Puts an OCI image index under a tag of the open registry; returns its descriptor. */
async function putIndex(repo: string, tag: string, manifests: Record<string, unknown>[]): Promise<{ mediaType: string; digest: string; size: number }> {
  const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests });
  const res = await fetch(`http://${open.host}/v2/${repo}/manifests/${tag}`, { method: "PUT", headers: { "Content-Type": OCI_INDEX }, body });
  expect(res.status).toBe(201);
  return { mediaType: OCI_INDEX, digest: `sha256:${createHash("sha256").update(body).digest("hex")}`, size: Buffer.byteLength(body) };
}

/** A failure as tsrun must report it: status 125 and one "Error: ..." line, the last one. */
function expectOneLineError(r: { code: number; stderr: string }, message: RegExp, label = ""): void {
  expect(r.code, label).toBe(125);
  const lines = r.stderr.trim().split("\n");
  expect(lines.pop(), label).toMatch(message);
  expect(lines.filter((l) => l.startsWith("Error")), label).toEqual([]);
}

/** Nothing of a failed pull may stay: no blob, no image. */
function expectEmptyStore(store: Record<string, string>): void {
  expect(blobFiles(store)).toEqual([]);
  expect(storedImages(store)).toEqual([]);
}

beforeAll(async () => {
  work = scratchDir("registry");
  configHome = scratchDir("config");
  await importBusybox("busybox");
  const htpasswd = path.join(work, "htpasswd");
  writeFileSync(htpasswd, `${bcryptLine("alice", "s3cret")}\n`);
  [open, secured] = await Promise.all([startRegistry("open"), startRegistry("secured", { htpasswd })]);
});

afterAll(() => {
  for (const r of registries) r.process.kill("SIGTERM");
});

describe("push and pull", () => {
  it("round trip into a fresh store, then run the pulled image", async () => {
    const ref = `${open.host}/tsrun/busybox:1`;
    const push = await tsrun(["push", "busybox", ref]);
    expect(push.stderr).toMatch(/Copying blob sha256:[a-f0-9]{64} done/);
    expect(push.code, push.stderr).toBe(0);
    const digest = push.stdout.trim();
    expect(digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    // Pushing again uploads nothing.
    const again = await tsrun(["push", "busybox", ref]);
    expect(again.stderr).toMatch(/skipped: already exists/);

    const store = freshStore("roundtrip");
    const pull = await tsrun(["pull", ref], { env: store });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toMatch(/^Trying to pull/);
    expect(pull.stderr).toMatch(/Copying blob sha256:[a-f0-9]{64} done/);
    const id = pull.stdout.trim();
    const local = await tsrun(["images", "-q", "--no-trunc"]);
    expect(local.stdout).toContain(`sha256:${id}`);
    const images = await tsrun(["images", "--digests"], { env: store });
    expect(images.stdout).toContain(digest);
    const run = await tsrun(["run", "--rm", ref, "echo", "pulled"], { env: store });
    expect(run.stdout).toBe("pulled\n");
    // -q: the ID only; a second pull has everything already.
    const quiet = await tsrun(["pull", "-q", ref], { env: store });
    expect(quiet).toMatchObject({ code: 0, stdout: `${id}\n`, stderr: "" });
  });

  it("a pull of several layers with no namespace holder running yet starts one for all its unpackers", async () => {
    // The unpackers start at once and each needs the holder's user namespace: they must share
    // one start (a second caller blocking on the start lock used to deadlock the pull).
    const src = freshStore("layers-src");
    expect((await tsrun(["import", env.busyboxTar, "base"], { env: src })).code).toBe(0);
    const name = unique("layered");
    expect((await tsrun(["run", "--name", name, "base", "sh", "-c", "echo two > /second"], { env: src })).code).toBe(0);
    expect((await tsrun(["commit", name, "twolayers"], { env: src })).code).toBe(0);
    const ref = `${open.host}/tsrun/twolayers:1`;
    expect((await tsrun(["push", "-q", "twolayers", ref], { env: src })).code).toBe(0);
    const store = { ...freshStore("layers-dst"), TSRUN_RUNROOT: scratchDir("runroot-layers") };
    const pull = await tsrun(["pull", "-q", ref], { env: store, timeout: 30_000 });
    expect(pull.code, pull.stderr).toBe(0);
    const run = await tsrun(["run", "--rm", ref, "cat", "/second"], { env: store });
    expect(run.stdout).toBe("two\n");
  });

  it("run pulls a missing image itself; --pull always pulls again, --pull never does not", async () => {
    const ref = `${open.host}/tsrun/run-pull:1`;
    expect((await tsrun(["push", "-q", "busybox", ref])).code).toBe(0);
    const store = freshStore("run-pull");
    const never = await tsrun(["run", "--rm", "--pull", "never", ref, "true"], { env: store });
    expectOneLineError(never, /image not known/);
    expectEmptyStore(store);
    const first = await tsrun(["run", "--rm", ref, "echo", "pulled by run"], { env: store });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe("pulled by run\n");
    expect(first.stderr).toMatch(/^Trying to pull .*run-pull:1\.\.\.$/m);
    const present = await tsrun(["run", "--rm", ref, "true"], { env: store });
    expect(present.stderr).not.toMatch(/Trying to pull/);
    const always = await tsrun(["run", "--rm", "--pull", "always", ref, "true"], { env: store });
    expect(always.code, always.stderr).toBe(0);
    expect(always.stderr).toMatch(/Copying blob sha256:[a-f0-9]{64} skipped: already exists/);
    // -q (docker run --quiet): the pull prints nothing.
    expect(await tsrun(["run", "--rm", "-q", "--pull", "always", ref, "echo", "quiet"], { env: store })).toEqual({ code: 0, stdout: "quiet\n", stderr: "" });
    const missing = await tsrun(["run", "--rm", `${open.host}/tsrun/not-there:1`, "true"], { env: store });
    expectOneLineError(missing, /^Error: .*not-there:1: image not known locally, and pulling it failed: .*(manifest unknown|name unknown)/);
  });

  it("pulls by digest (no tag assigned) and runs it by repo@digest", async () => {
    const ref = `${open.host}/tsrun/bydigest:x`;
    const digest = (await tsrun(["push", "-q", "busybox", ref])).stdout.trim();
    const store = freshStore("digest");
    const byDigest = `${open.host}/tsrun/bydigest@${digest}`;
    const pull = await tsrun(["pull", "-q", byDigest], { env: store });
    expect(pull.code, pull.stderr).toBe(0);
    const [image] = storedImages(store);
    expect(image?.names).toEqual([]);
    expect(image?.repoDigests).toContain(byDigest);
    const run = await tsrun(["run", "--rm", byDigest, "true"], { env: store });
    expect(run.code, run.stderr).toBe(0);
    // Listed as Docker lists it: the repository, tag <none>, the digest pulled.
    const id = (await tsrun(["images", "-q"], { env: store })).stdout.trim();
    const listed = await tsrun(["images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}"], { env: store });
    expect(listed.stdout).toBe(`${open.host}/tsrun/bydigest <none> ${digest} ${id}\n`);
    expect((await tsrun(["images", "--filter", "dangling=true", "-q"], { env: store })).stdout).toBe(`${id}\n`);
    expect((await tsrun(["inspect", "--format", "{{.RepoTags}} {{.RepoDigests}}", byDigest], { env: store })).stdout).toBe(`[] [${byDigest}]\n`);
    // A digest the registry does not have.
    const missing = await tsrun(["pull", `${open.host}/tsrun/bydigest@sha256:${"0".repeat(64)}`], { env: store });
    expect(missing.code).toBe(125);
    expect(missing.stderr.trim().split("\n").pop()).toMatch(/^Error: pull .*manifest unknown/);
    const removed = await tsrun(["rmi", byDigest], { env: store });
    expect(removed.stdout).toContain(`Untagged: ${byDigest}\n`);
    expect(storedImages(store)).toEqual([]);
  });

  it("bad input is a one-line error with status 125 and leaves the store unchanged", async () => {
    const store = freshStore("bad");
    const cases: [string[], RegExp][] = [
      [["pull", `${open.host}/Upper`], /invalid reference format/],
      [["pull", `${open.host}/nothing/here:latest`], /manifest unknown|name unknown/],
      [["pull", "--platform", "linux/amd64/v2/x", `${open.host}/tsrun/busybox:1`], /invalid platform "linux\/amd64\/v2\/x"/],
      [["pull", "--tls-verify=maybe", `${open.host}/tsrun/busybox:1`], /expected true or false/],
      [["push", "no-such-image", `${open.host}/x:1`], /image not known/],
      [["logout", open.host], /not logged into/],
    ];
    for (const [args, message] of cases) expectOneLineError(await tsrun(args, { env: store }), message, args.join(" "));
    expectEmptyStore(store);
  });
});

describe("authentication (htpasswd, basic auth)", () => {
  it("401 without login, success after login --password-stdin, 401 again after logout", async () => {
    const ref = `${secured.host}/private/busybox:1`;
    const config = scratchDir("auth-config");
    const store = { TSRUN_ROOT: scratchDir("store-auth"), XDG_CONFIG_HOME: config };
    const denied = await tsrun(["push", "busybox", ref], { env: { XDG_CONFIG_HOME: config } });
    expect(denied.code).toBe(125);
    expect(denied.stderr).toMatch(/authentication required \(log in with: tsrun login/);

    const wrong = await tsrun(["login", "-u", "alice", "--password-stdin", secured.host], { input: "nope\n", env: store });
    expect(wrong.code).toBe(125);
    expect(wrong.stderr).toMatch(/refused the username or password/);
    expect(existsSync(path.join(config, "tsrun", "auth.json"))).toBe(false);

    const ok = await tsrun(["login", "-u", "alice", "--password-stdin", secured.host], { input: "s3cret\n", env: store });
    expect(ok, ok.stderr).toMatchObject({ code: 0, stdout: "Login Succeeded!\n" });
    const authFile = path.join(config, "tsrun", "auth.json");
    expect(statSync(authFile).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(readFileSync(authFile, "utf8")) as { auths: Record<string, { auth: string }> };
    expect(Buffer.from(saved.auths[secured.host]?.auth ?? "", "base64").toString()).toBe("alice:s3cret");

    const push = await tsrun(["push", "busybox", ref], { env: { XDG_CONFIG_HOME: config } });
    expect(push.code, push.stderr).toBe(0);
    const pull = await tsrun(["pull", "-q", ref], { env: store });
    expect(pull.code, pull.stderr).toBe(0);

    const out = await tsrun(["logout", secured.host], { env: store });
    expect(out.stdout).toBe(`Removed login credentials for ${secured.host}\n`);
    const after = await tsrun(["pull", ref], { env: { ...store, TSRUN_ROOT: scratchDir("store-auth2") } });
    expect(after.code).toBe(125);
    expect(after.stderr).toMatch(/authentication required/);
  });

  it("reads credentials from $REGISTRY_AUTH_FILE (Docker's format)", async () => {
    const file = path.join(scratchDir("docker-auth"), "config.json");
    writeFileSync(file, JSON.stringify({ auths: { [`http://${secured.host}/v2/`]: { auth: Buffer.from("alice:s3cret").toString("base64") } } }));
    if (env.user) chownSync(file, env.user.uid, env.user.gid);
    const pull = await tsrun(["pull", "-q", `${secured.host}/private/busybox:1`], { env: { TSRUN_ROOT: scratchDir("store-authfile"), REGISTRY_AUTH_FILE: file } });
    expect(pull.code, pull.stderr).toBe(0);
  });

  it("uses podman login's credentials ($XDG_RUNTIME_DIR/containers/auth.json), containers' and Docker's ($DOCKER_CONFIG) files", async () => {
    const runtime = scratchDir("xdg-runtime");
    chmodSync(runtime, 0o700);
    const dir = scratchDir("podman-login");
    const podman = `podman --root ${dir}/root --runroot ${dir}/run --storage-driver vfs`;
    const login = await shAsUser(`${podman} login --tls-verify=false -u alice --password-stdin ${secured.host}`, { input: "s3cret\n", env: { XDG_RUNTIME_DIR: runtime } });
    expect(login.code, login.stderr).toBe(0);
    expect(existsSync(path.join(runtime, "containers", "auth.json"))).toBe(true);
    // No tsrun login: tsrun's own file does not exist in this config home.
    const noLogin = { XDG_CONFIG_HOME: scratchDir("config-empty") };
    const ref = `${secured.host}/private/podman-auth:1`;
    const push = await tsrun(["push", "-q", "busybox", ref], { env: { ...noLogin, XDG_RUNTIME_DIR: runtime } });
    expect(push.code, push.stderr).toBe(0);
    const pull = await tsrun(["pull", "-q", ref], { env: { ...noLogin, XDG_RUNTIME_DIR: runtime, TSRUN_ROOT: scratchDir("store-podman-auth") } });
    expect(pull.code, pull.stderr).toBe(0);

    // The same entry in $XDG_CONFIG_HOME/containers/auth.json, then in $DOCKER_CONFIG/config.json.
    const configHome = scratchDir("config-containers");
    const dockerConfig = scratchDir("docker-config");
    const entry = JSON.stringify({ auths: { [secured.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } } });
    mkdirSync(path.join(configHome, "containers"));
    writeFileSync(path.join(configHome, "containers", "auth.json"), entry);
    writeFileSync(path.join(dockerConfig, "config.json"), entry);
    if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, configHome, dockerConfig]);
    for (const where of [{ XDG_CONFIG_HOME: configHome }, { ...noLogin, DOCKER_CONFIG: dockerConfig }]) {
      const r = await tsrun(["pull", "-q", ref], { env: { ...where, TSRUN_ROOT: scratchDir("store-other-auth") } });
      expect(r.code, `${JSON.stringify(where)}: ${r.stderr}`).toBe(0);
    }
  });
});

describe("Docker credential helpers", () => {
  it("asks credHelpers' and credsStore's docker-credential-NAME; a missing default store is ignored, a missing named helper is an error", async () => {
    const bin = scratchDir("cred-helper");
    const log = path.join(bin, "asked");
    // A helper as docker-credential-pass and friends behave: the server on stdin, JSON out.
    writeFileSync(
      path.join(bin, "docker-credential-tsrun-test"),
      `#!/bin/sh\n[ "$1" = get ] || exit 2\nread -r server\necho "$server" >> ${log}\nif [ "$server" = "${secured.host}" ]; then\n  printf '{"ServerURL":"%s","Username":"alice","Secret":"s3cret"}' "$server"\nelse\n  echo "credentials not found in native keychain"; exit 1\nfi\n`,
      { mode: 0o755 },
    );
    const configs: Record<string, unknown>[] = [
      { credHelpers: { [secured.host]: "tsrun-test" } },
      { credsStore: "tsrun-test", auths: { [secured.host]: {} } },
    ];
    const withConfig = (config: Record<string, unknown>): Record<string, string> => {
      const dir = scratchDir("docker-config-helper");
      writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
      if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, dir]);
      return { DOCKER_CONFIG: dir, XDG_CONFIG_HOME: scratchDir("config-empty"), PATH: `${bin}:/usr/bin:/bin`, TSRUN_ROOT: scratchDir("store-helper") };
    };
    const ref = `${secured.host}/private/helper:1`;
    const { TSRUN_ROOT: _store, ...named } = withConfig(configs[0] as Record<string, unknown>);
    const push = await tsrun(["push", "-q", "busybox", ref], { env: named });
    expect(push.code, push.stderr).toBe(0);
    for (const config of configs) {
      const r = await tsrun(["pull", "-q", ref], { env: withConfig(config) });
      expect(r.code, `${JSON.stringify(config)}: ${r.stderr}`).toBe(0);
    }
    expect(readFileSync(log, "utf8")).toBe(`${secured.host}\n`.repeat(3));
    // Docker Desktop's leftover default store on a machine without it: no credentials, no error.
    const { TSRUN_ROOT: _fresh, ...desktop } = withConfig({ credsStore: "desktop" });
    const openPush = await tsrun(["push", "-q", "busybox", `${open.host}/tsrun/helper:1`], { env: desktop });
    expect(openPush.code, openPush.stderr).toBe(0);
    const missing = await tsrun(["pull", ref], { env: withConfig({ credHelpers: { [secured.host]: "nowhere" } }) });
    expectOneLineError(missing, /^Error: credential helper docker-credential-nowhere \(named in .*config\.json for 127\.0\.0\.1:\d+\) is not installed$/);
  });

  it("login stores through the credsStore helper (store), logout erases (erase), logout --all lists and erases; a failing store is one line", async () => {
    const bin = scratchDir("cred-store");
    const keep = path.join(bin, "kept");
    // A helper with a real store (a directory), speaking the protocol as docker-credential-pass does.
    writeFileSync(
      path.join(bin, "docker-credential-filestore"),
      [
        "#!/bin/sh",
        `dir=${keep}`,
        'mkdir -p "$dir"',
        "key() { printf '%s' \"$1\" | tr '/:' '__'; }",
        'case "$1" in',
        '  get) read -r server; f="$dir/$(key "$server")"; [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }; cat "$f" ;;',
        '  store) json=$(cat); server=$(printf \'%s\' "$json" | sed \'s/.*"ServerURL":"\\([^"]*\\)".*/\\1/\'); printf \'%s\' "$json" > "$dir/$(key "$server")" ;;',
        '  erase) read -r server; f="$dir/$(key "$server")"; [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }; rm "$f" ;;',
        '  list) printf \'{\'; sep=; for f in "$dir"/*; do [ -f "$f" ] || continue; s=$(sed \'s/.*"ServerURL":"\\([^"]*\\)".*/\\1/\' "$f"); printf \'%s"%s":"x"\' "$sep" "$s"; sep=,; done; printf \'}\' ;;',
        "  *) exit 2 ;;",
        "esac",
        "",
      ].join("\n"),
      { mode: 0o755 },
    );
    writeFileSync(path.join(bin, "docker-credential-broken"), `#!/bin/sh\ncat >/dev/null\necho "the keyring is locked" >&2\nexit 1\n`, { mode: 0o755 });
    const authFile = path.join(bin, "auth.json");
    const config = JSON.stringify({ credsStore: "filestore", auths: { "other.example": { auth: Buffer.from("x:y").toString("base64") } } });
    writeFileSync(authFile, config);
    if (env.user) chownSync(authFile, env.user.uid, env.user.gid);
    const helperEnv = { REGISTRY_AUTH_FILE: authFile, PATH: `${bin}:/usr/bin:/bin`, XDG_CONFIG_HOME: scratchDir("config-empty") };

    const login = await tsrun(["login", "-u", "alice", "--password-stdin", secured.host], { input: "s3cret\n", env: helperEnv });
    expect(login, login.stderr).toMatchObject({ code: 0, stdout: "Login Succeeded!\n" });
    const kept = path.join(keep, secured.host.replace(/:/g, "_"));
    expect(JSON.parse(readFileSync(kept, "utf8"))).toEqual({ ServerURL: secured.host, Username: "alice", Secret: "s3cret" });
    expect(readFileSync(authFile, "utf8")).toBe(config);
    const push = await tsrun(["push", "-q", "busybox", `${secured.host}/private/helper-store:1`], { env: helperEnv });
    expect(push.code, push.stderr).toBe(0);
    const pull = await tsrun(["pull", "-q", `${secured.host}/private/helper-store:1`], { env: { ...helperEnv, TSRUN_ROOT: scratchDir("store-helper-store") } });
    expect(pull.code, pull.stderr).toBe(0);

    const logout = await tsrun(["logout", secured.host], { env: helperEnv });
    expect(logout, logout.stderr).toMatchObject({ code: 0, stdout: `Removed login credentials for ${secured.host}\n` });
    expect(existsSync(kept)).toBe(false);
    expectOneLineError(await tsrun(["logout", secured.host], { env: helperEnv }), new RegExp(`^Error: not logged into ${secured.host.replace(/[.]/g, "\\.")}$`));
    const denied = await tsrun(["pull", `${secured.host}/private/helper-store:1`], { env: { ...helperEnv, TSRUN_ROOT: scratchDir("store-helper-out") } });
    expect(denied.stderr).toMatch(/authentication required/);

    expect((await tsrun(["login", "-u", "alice", "--password-stdin", secured.host], { input: "s3cret\n", env: helperEnv })).code).toBe(0);
    const all = await tsrun(["logout", "--all"], { env: helperEnv });
    expect(all.code, all.stderr).toBe(0);
    expect(readdirSync(keep)).toEqual([]);

    // A helper that cannot store: one line naming it, the auth file as it was, nothing kept.
    const brokenConfig = JSON.stringify({ credHelpers: { [secured.host]: "broken" } });
    writeFileSync(authFile, brokenConfig);
    const broken = await tsrun(["login", "-u", "alice", "--password-stdin", secured.host], { input: "s3cret\n", env: helperEnv });
    expectOneLineError(broken, /^Error: credential helper docker-credential-broken could not store credentials: the keyring is locked$/);
    expect(readFileSync(authFile, "utf8")).toBe(brokenConfig);
  });
});

describe("pull --all-tags", () => {
  it("pulls every tag of the repository, as docker pull -a does; a tag with -a is a one-line error", async () => {
    const repo = `${open.host}/tsrun/alltags`;
    const second = await importBusybox("alltags-second", ["LABEL n=2"]);
    for (const [image, tag] of [["busybox", "1"], ["alltags-second", "2"], ["busybox", "latest"]]) {
      expect((await tsrun(["push", "-q", image as string, `${repo}:${tag}`])).code).toBe(0);
    }
    const store = freshStore("alltags");
    const r = await tsrun(["pull", "-q", "--all-tags", repo], { env: store });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(3);
    const names = storedImages(store).flatMap((i) => i.names).sort();
    expect(names).toEqual([`${repo}:1`, `${repo}:2`, `${repo}:latest`]);
    expect(storedImages(store).find((i) => i.names.includes(`${repo}:2`))?.id).toBe(second);
    const bad = freshStore("alltags-bad");
    expectOneLineError(await tsrun(["pull", "-a", `${repo}:1`], { env: bad }), /a tag or digest cannot be used with --all-tags$/);
    expectOneLineError(await tsrun(["pull", "-a", `${open.host}/tsrun/no-such-repo`], { env: bad }), /listing tags: .*(name unknown|repository name not known)/i);
    expect(storedImages(bad)).toEqual([]);
  });

  it("push -a pushes every local tag of the repository, as docker push -a does; a tag or a destination with -a is one line", async () => {
    const repo = `${open.host}/tsrun/pushall`;
    await importBusybox("pushall-second", ["LABEL n=pushall"]);
    for (const [image, tag] of [["busybox", "a"], ["pushall-second", "b"]]) expect((await tsrun(["tag", image as string, `${repo}:${tag}`])).code).toBe(0);
    const r = await tsrun(["push", "-q", "--all-tags", "--disable-content-trust", repo]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\nsha256:[0-9a-f]{64}\n$/);
    const store = freshStore("pushall");
    const pulled = await tsrun(["pull", "-q", "-a", repo], { env: store });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(storedImages(store).flatMap((i) => i.names).sort()).toEqual([`${repo}:a`, `${repo}:b`]);
    expectOneLineError(await tsrun(["push", "-a", `${repo}:a`]), /^Error: tag can't be used with --all-tags\/-a$/);
    expectOneLineError(await tsrun(["push", "-a", repo, `${repo}-copy`]), /^Error: push: a destination cannot be used with --all-tags$/);
    expectOneLineError(await tsrun(["push", "-a", `${open.host}/tsrun/nothing-here`]), /^Error: An image does not exist locally with the tag: /);
  });
});

describe("multi-platform index", () => {
  it("picks the host's platform by default and another with --platform", async () => {
    const repo = `${open.host}/tsrun/multi`;
    await importBusybox("multi-arm", ["LABEL arch=arm64"]);
    const amd = (await tsrun(["push", "-q", "busybox", `${repo}:amd64`])).stdout.trim();
    const arm = (await tsrun(["push", "-q", "multi-arm", `${repo}:arm64`])).stdout.trim();
    await putIndex("tsrun/multi", "latest", [
      { mediaType: OCI_MANIFEST, digest: arm, size: await manifestSize("tsrun/multi", arm), platform: { os: "linux", architecture: "arm64", variant: "v8" } },
      { mediaType: OCI_MANIFEST, digest: amd, size: await manifestSize("tsrun/multi", amd), platform: { os: "linux", architecture: "amd64" } },
    ]);

    const host = freshStore("multi-host");
    const pulled = await tsrun(["pull", "-q", repo], { env: host });
    expect(pulled.code, pulled.stderr).toBe(0);
    const [hostImage] = storedImages(host);
    expect(hostImage?.repoDigests).toContain(`${repo}@${amd}`);

    const other = freshStore("multi-arm");
    const armPull = await tsrun(["pull", "-q", "--platform", "linux/arm64", repo], { env: other });
    expect(armPull.code, armPull.stderr).toBe(0);
    const [armImage] = storedImages(other);
    expect(armImage?.repoDigests).toContain(`${repo}@${arm}`);
    expect(armImage?.names).toEqual([`${repo}:latest`]);

    const none = await tsrun(["pull", "--platform", "linux/s390x", repo], { env: freshStore("multi-none") });
    expect(none.code).toBe(125);
    expect(none.stderr).toMatch(/no image for linux\/s390x in the index \(available: linux\/arm64\/v8, linux\/amd64\)/);
  });

  it("takes --platform as Docker does and matches variants as containerd does", async () => {
    const repo = `${open.host}/tsrun/variants`;
    const ids = { v7: await importBusybox("variants-armv7", ["LABEL arch=armv7"]), arm64: await importBusybox("variants-arm64", ["LABEL arch=arm64"]), amd64: (await tsrun(["images", "-q", "--no-trunc", "busybox"])).stdout.trim() };
    const digest = async (image: string, tag: string): Promise<string> => (await tsrun(["push", "-q", image, `${repo}:${tag}`])).stdout.trim();
    const [v7, arm64, amd64] = [await digest("variants-armv7", "armv7"), await digest("variants-arm64", "arm64"), await digest("busybox", "amd64")];
    const entry = async (d: string, platform: Record<string, string>): Promise<Record<string, unknown>> => ({ mediaType: OCI_MANIFEST, digest: d, size: await manifestSize("tsrun/variants", d), platform });
    // arm/v7 first: an arm64 request must still get the arm64 image, its best match.
    await putIndex("tsrun/variants", "latest", [
      await entry(v7, { os: "linux", architecture: "arm", variant: "v7" }),
      await entry(arm64, { os: "linux", architecture: "arm64" }),
      await entry(amd64, { os: "linux", architecture: "amd64" }),
    ]);
    const cases: [string, string][] = [
      ["linux/arm64/v8", ids.arm64],
      ["arm64", ids.arm64],
      ["aarch64", ids.arm64],
      ["linux/arm/v8", ids.v7],
      ["linux/arm", ids.v7],
      ["linux/amd64", ids.amd64],
      ["linux/amd64/v3", ids.amd64],
      ["x86_64", ids.amd64],
      ["linux", ids.amd64],
    ];
    // One store: the images share their layer, so each pull after the first only fetches manifests.
    const pulls = freshStore("variants");
    for (const [platform, want] of cases) {
      const r = await tsrun(["pull", "-q", "--platform", platform, repo], { env: pulls });
      expect(r.code, `${platform}: ${r.stderr}`).toBe(0);
      expect(`sha256:${r.stdout.trim()}`, platform).toBe(want);
    }
    const store = freshStore("variants-none");
    expectOneLineError(await tsrun(["pull", "--platform", "linux/arm/v6", repo], { env: store }), /no image for linux\/arm\/v6 in the index \(available: linux\/arm\/v7, linux\/arm64, linux\/amd64\)$/);
    expect(storedImages(store)).toEqual([]);
    // run/create --platform: the host's platform in another spelling pulls what pull --platform
    // would; another platform is refused before anything is pulled.
    const runs = freshStore("variants-run");
    const ran = await tsrun(["run", "--rm", "--platform", "x86_64", repo, "true"], { env: runs });
    expect(ran.code, ran.stderr).toBe(0);
    expect(storedImages(runs).map((i) => i.id)).toEqual([ids.amd64]);
    const refused = freshStore("variants-refused");
    expectOneLineError(await tsrun(["create", "--platform", "linux/arm64", repo], { env: refused }), /^Error: --platform linux\/arm64: only the host's platform \(linux\/amd64\) can run here$/);
    expect(storedImages(refused)).toEqual([]);
  });
});

describe("index shapes other tools push", () => {
  it("follows nested indexes and entries without a platform; skips buildx's attestation manifests", async () => {
    const repo = `${open.host}/tsrun/nested`;
    await importBusybox("nested-other", ["LABEL other=1"]);
    const host = (await tsrun(["push", "-q", "busybox", `${repo}:host`])).stdout.trim();
    const other = (await tsrun(["push", "-q", "nested-other", `${repo}:other`])).stdout.trim();
    const hostArch = (await tsrun(["inspect", "--format", "{{.Architecture}}", "busybox"])).stdout.trim();
    const otherArch = hostArch === "arm64" ? "amd64" : "arm64";
    const put = (tag: string, manifests: Record<string, unknown>[]): ReturnType<typeof putIndex> => putIndex("tsrun/nested", tag, manifests);
    const hostEntry = { mediaType: OCI_MANIFEST, digest: host, size: await manifestSize("tsrun/nested", host) };
    const otherEntry = { mediaType: OCI_MANIFEST, digest: other, size: await manifestSize("tsrun/nested", other), platform: { os: "linux", architecture: otherArch } };
    const inner = await put("inner", [{ ...hostEntry, platform: { os: "linux", architecture: hostArch } }]);
    await put("nested", [otherEntry, inner]);
    await put("unplatformed", [hostEntry]);
    // buildx: an attestation manifest (here pointing at a real image, listed first) of platform unknown/unknown.
    const attestation = { ...otherEntry, platform: { os: "unknown", architecture: "unknown" }, annotations: { "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": host } };
    await put("attested", [attestation, { ...hostEntry, platform: { os: "linux", architecture: hostArch } }]);

    const pulled = async (args: string[]): Promise<string[]> => {
      const store = freshStore("nested");
      const r = await tsrun(["pull", "-q", ...args], { env: store });
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      return storedImages(store)[0]?.repoDigests ?? [];
    };
    expect(await pulled([`${repo}:nested`])).toContain(`${repo}@${host}`);
    expect(await pulled(["--platform", `linux/${otherArch}`, `${repo}:nested`])).toContain(`${repo}@${other}`);
    // No platform in the index: the config says which one it is.
    expect(await pulled([`${repo}:unplatformed`])).toContain(`${repo}@${host}`);
    expect(await pulled([`${repo}:attested`])).toContain(`${repo}@${host}`);

    const store = freshStore("nested-none");
    expectOneLineError(await tsrun(["pull", "--platform", "linux/s390x", `${repo}:nested`], { env: store }), new RegExp(`no image for linux/s390x in the index \\(available: linux/${otherArch}, linux/${hostArch}\\)$`));
    expectOneLineError(await tsrun(["pull", "--platform", `linux/${otherArch}`, `${repo}:unplatformed`], { env: store }), new RegExp(`no image for linux/${otherArch} in the index \\(available: linux/${hostArch}\\)$`));
    expectOneLineError(await tsrun(["pull", "--platform", "unknown/unknown", `${repo}:attested`], { env: store }), new RegExp(`no image for unknown/unknown in the index \\(available: linux/${hostArch}\\)$`));
    expectEmptyStore(store);
  });
});

describe("integrity and interruption", () => {
  it.each(["plain", "gzip"])("a corrupted %s blob in the registry is refused: digest error, nothing stored", async (kind) => {
    // A gzip layer's unpacker fails at the damaged bytes, before the digest can be checked: the
    // download still runs to the end, so the error names the real problem.
    let tar = randomLayerTar(`corrupt-${kind}`, 200_000);
    if (kind === "gzip") {
      execFileSync("gzip", ["-1", tar]);
      tar = `${tar}.gz`;
    }
    const imported = await tsrun(["import", tar, `corrupt-${kind}`]);
    expect(imported.code, imported.stderr).toBe(0);
    const ref = `${open.host}/tsrun/corrupt-${kind}:1`;
    expect((await tsrun(["push", "-q", `corrupt-${kind}`, ref])).code).toBe(0);
    const manifest = (await (
      await fetch(`http://${open.host}/v2/tsrun/corrupt-${kind}/manifests/1`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } })
    ).json()) as { layers: { digest: string }[] };
    const hex = manifest.layers[0]?.digest.slice(7) ?? "";
    const data = path.join(open.root, "data", "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
    // Flip bytes in the middle, keeping the size: only the digest can tell.
    const fd = openSync(data, "r+");
    const buf = Buffer.alloc(16);
    readSync(fd, buf, 0, 16, 100_000);
    for (let i = 0; i < buf.length; i++) buf[i] = (buf[i] as number) ^ 0xff;
    writeSync(fd, buf, 0, 16, 100_000);
    closeSync(fd);

    const store = freshStore(`corrupt-${kind}`);
    expectOneLineError(await tsrun(["pull", ref], { env: store }), /^Error: pull .*digest mismatch: expected sha256:[a-f0-9]{64}, got sha256:[a-f0-9]{64} \(the registry sent corrupted data\)$/);
    expectEmptyStore(store);
  });

  it("a pull killed halfway leaves no partial blob; the next pull reuses the complete ones", async () => {
    // Two layers: busybox (small, completes at once) and 8 MB of random bytes, which the proxy
    // below holds back after its first half until the pull has been killed.
    const big = randomLayerTar("big", 8 << 20);
    const registryStore = freshStore("twolayer-src");
    expect((await tsrun(["import", env.busyboxTar, "base"], { env: registryStore })).code).toBe(0);
    expect((await tsrun(["import", big, "big"], { env: registryStore })).code).toBe(0);
    // Build a two-layer manifest from the two one-layer images (both layers pushed separately).
    const repo = "tsrun/twolayer";
    const baseDigest = (await tsrun(["push", "-q", "base", `${open.host}/${repo}:base`], { env: registryStore })).stdout.trim();
    const bigDigest = (await tsrun(["push", "-q", "big", `${open.host}/${repo}:big`], { env: registryStore })).stdout.trim();
    const getJson = async (p: string): Promise<Record<string, unknown>> =>
      (await (await fetch(`http://${open.host}/v2/${repo}/${p}`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } })).json()) as Record<string, unknown>;
    const baseManifest = (await getJson(`manifests/${baseDigest}`)) as { layers: { digest: string; size: number; mediaType: string }[]; config: { digest: string } };
    const bigManifest = (await getJson(`manifests/${bigDigest}`)) as { layers: { digest: string; size: number; mediaType: string }[]; config: { digest: string } };
    const baseConfig = (await getJson(`blobs/${baseManifest.config.digest}`)) as { rootfs: { diff_ids: string[] } };
    const bigConfig = (await getJson(`blobs/${bigManifest.config.digest}`)) as { rootfs: { diff_ids: string[] } };
    const config = { ...baseConfig, rootfs: { type: "layers", diff_ids: [...baseConfig.rootfs.diff_ids, ...bigConfig.rootfs.diff_ids] } };
    const configBytes = Buffer.from(JSON.stringify(config));
    const configDigest = `sha256:${createHash("sha256").update(configBytes).digest("hex")}`;
    const upload = await fetch(`http://${open.host}/v2/${repo}/blobs/uploads/`, { method: "POST" });
    const location = new URL(upload.headers.get("location") ?? "", `http://${open.host}`);
    location.searchParams.set("digest", configDigest);
    expect((await fetch(location, { method: "PUT", body: configBytes, headers: { "Content-Type": "application/octet-stream" } })).status).toBe(201);
    const bigLayer = bigManifest.layers[0] as { digest: string; size: number; mediaType: string };
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: configBytes.length },
      layers: [baseManifest.layers[0], bigLayer],
    };
    const put = await fetch(`http://${open.host}/v2/${repo}/manifests/two`, {
      method: "PUT",
      headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
      body: JSON.stringify(manifest),
    });
    expect(put.status).toBe(201);

    // The throttling proxy: forwards everything, but stalls the big blob after half of it.
    let stalled: (() => void) | undefined;
    let sentHalf: () => void = () => undefined;
    const halfway = new Promise<void>((resolve) => (sentHalf = resolve));
    let throttle = true;
    const proxy = http.createServer((req, res) => {
      const upstream = http.request({ host: "127.0.0.1", port: Number(open.host.split(":")[1]), path: req.url, method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (!throttle || !req.url?.includes(bigLayer.digest)) return void up.pipe(res);
        let sent = 0;
        up.on("data", (chunk: Buffer) => {
          if (sent < bigLayer.size / 2) {
            sent += chunk.length;
            res.write(chunk);
            if (sent >= bigLayer.size / 2) {
              up.pause();
              sentHalf();
              stalled = () => up.destroy();
            }
          }
        });
      });
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const proxyHost = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const ref = `${proxyHost}/${repo}:two`;
    const store = freshStore("killed");
    try {
      const [cmd, ...args] = asUser([env.cli, "pull", ref]);
      const child = execa(cmd as string, args, { reject: false, extendEnv: false, env: cliEnv(store), cwd: env.base });
      await halfway;
      // The small layer completes (its blob is stored once its unpacker has read it all) while
      // the big one is stalled; then kill tsrun without any chance to clean up.
      const baseHex = (baseManifest.layers[0]?.digest ?? "").slice(7);
      for (let waited = 0; !blobFiles(store).includes(baseHex) && waited < 30_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 200));
      child.kill("SIGKILL");
      const killed = await child;
      expect(killed.signal).toBe("SIGKILL");
      stalled?.();
      const files = blobFiles(store);
      const bigHex = bigLayer.digest.slice(7);
      expect(files).not.toContain(bigHex);
      expect(files).toContain(baseHex); // the complete small layer stays for the next pull
      expect(files.some((f) => f.startsWith(".tmp-stream-"))).toBe(true);
      expect(storedImages(store)).toEqual([]);

      throttle = false;
      const again = await tsrun(["pull", ref], { env: store });
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain(`Copying blob ${baseManifest.layers[0]?.digest} skipped: already exists`);
      expect(again.stderr).toContain(`Copying blob ${bigLayer.digest} done`);
      // The killed pull's partial download was cleaned up.
      expect(blobFiles(store).filter((f) => f.startsWith(".tmp"))).toEqual([]);
      const run = await tsrun(["run", "--rm", ref, "sh", "-c", "ls /random-big && wc -c < /random-big"], { env: store });
      expect(run.stdout).toBe(`/random-big\n${8 << 20}\n`);
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      proxy.closeAllConnections();
    }
  });
});

describe("interop", () => {
  it("skopeo inspects a pushed image and copies it into an OCI layout", async () => {
    const ref = `${open.host}/tsrun/interop:1`;
    const digest = (await tsrun(["push", "-q", "busybox", ref])).stdout.trim();
    const inspect = JSON.parse(execFileSync("skopeo", ["inspect", "--tls-verify=false", `docker://${ref}`]).toString()) as { Digest: string; Architecture: string; Os: string };
    expect(inspect).toMatchObject({ Digest: digest, Os: "linux" });
    const dest = path.join(work, "oci-copy");
    // --preserve-digests: skopeo would otherwise gzip busybox's uncompressed layer on the way.
    await execa("skopeo", ["copy", "--preserve-digests", "--src-tls-verify=false", `docker://${ref}`, `oci:${dest}:interop`]);
    const index = JSON.parse(readFileSync(path.join(dest, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    expect(index.manifests.map((m) => m.digest)).toContain(digest);
    // And the other way: a Docker-format (v2s2) image written by skopeo pulls and runs.
    await execa("skopeo", ["copy", "--format", "v2s2", "--dest-tls-verify=false", `oci:${dest}:interop`, `docker://${open.host}/tsrun/docker-format:1`]);
    const store = freshStore("v2s2");
    const pull = await tsrun(["pull", "-q", `${open.host}/tsrun/docker-format:1`], { env: store });
    expect(pull.code, pull.stderr).toBe(0);
    const run = await tsrun(["run", "--rm", `${open.host}/tsrun/docker-format:1`, "echo", "v2s2"], { env: store });
    expect(run.stdout).toBe("v2s2\n");
  });
});

describe("images other tools push", () => {
  it("pulls and runs podman's v2s2 and OCI pushes, skopeo's zstd layers and podman's manifest list (host and --platform)", async () => {
    const dir = scratchDir("podman-push");
    const runtime = scratchDir("podman-runtime");
    chmodSync(runtime, 0o700);
    const podman = `podman --root ${dir}/root --runroot ${dir}/run --storage-driver vfs`;
    const repo = `${open.host}/others`;
    const hostArch = (await tsrun(["inspect", "--format", "{{.Architecture}}", "busybox"])).stdout.trim();
    const otherArch = hostArch === "arm64" ? "amd64" : "arm64";
    const script = [
      "set -e",
      `${podman} import -q -c 'CMD ["echo","from-podman"]' ${env.busyboxTar} localhost/pb:host >/dev/null`,
      `${podman} import -q --arch ${otherArch} -c 'LABEL plat=other' ${env.busyboxTar} localhost/pb:other >/dev/null`,
      `${podman} push -q --tls-verify=false --format v2s2 localhost/pb:host ${repo}/v2s2:1`,
      `${podman} push -q --tls-verify=false --format oci localhost/pb:host ${repo}/oci:1`,
      // Through an OCI layout: a registry destination would reuse the gzip blobs pushed above.
      `skopeo copy -q --dest-compress-format zstd containers-storage:[vfs@${dir}/root+${dir}/run]localhost/pb:host oci:${dir}/layout:zstd`,
      `skopeo copy -q --preserve-digests --dest-tls-verify=false oci:${dir}/layout:zstd docker://${repo}/zstd:1`,
      `${podman} manifest create localhost/pb-list >/dev/null`,
      `${podman} manifest add localhost/pb-list containers-storage:localhost/pb:host >/dev/null`,
      `${podman} manifest add localhost/pb-list containers-storage:localhost/pb:other >/dev/null`,
      `${podman} manifest push --all --tls-verify=false localhost/pb-list docker://${repo}/list:1`,
    ].join("\n");
    const pushed = await shAsUser(script, { env: { XDG_RUNTIME_DIR: runtime }, timeout: 120_000 });
    expect(pushed.code, pushed.stderr).toBe(0);
    const zstd = (await (await fetch(`http://${open.host}/v2/others/zstd/manifests/1`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } })).json()) as { layers: { mediaType: string }[] };
    expect(zstd.layers.map((l) => l.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar+zstd"]);

    for (const name of ["v2s2", "oci", "zstd", "list"]) {
      const store = freshStore(`others-${name}`);
      const pull = await tsrun(["pull", "-q", `${repo}/${name}:1`], { env: store });
      expect(pull.code, `${name}: ${pull.stderr}`).toBe(0);
      const run = await tsrun(["run", "--rm", `${repo}/${name}:1`], { env: store });
      expect(run.stdout, `${name}: ${run.stderr}`).toBe("from-podman\n");
    }
    const store = freshStore("others-list-other");
    const other = await tsrun(["pull", "-q", "--platform", `linux/${otherArch}`, `${repo}/list:1`], { env: store });
    expect(other.code, other.stderr).toBe(0);
    const inspect = await tsrun(["inspect", "--format", "{{.Architecture}} {{.Config.Labels}}", `${repo}/list:1`], { env: store });
    expect(inspect.stdout).toBe(`${otherArch} map[plat:other]\n`);
  });
});

describe("build", () => {
  it("pulls FROM and COPY --from images the store lacks; --pull pulls again, --pull=never refuses", async () => {
    const base = `${open.host}/tsrun/build-base:1`;
    const other = `${open.host}/tsrun/build-other:1`;
    await tsrun(["push", "-q", "busybox", base]);
    await tsrun(["push", "-q", "busybox", other]);
    const store = freshStore("build");
    const dir = scratchDir("build-from-registry");
    writeFileSync(path.join(dir, "Dockerfile"), `FROM ${base}\nCOPY --from=${other} /etc/passwd /other-passwd\nRUN head -1 /other-passwd\n`);
    if (env.user) chownSync(path.join(dir, "Dockerfile"), env.user.uid, env.user.gid);
    const never = await tsrun(["build", "--pull=never", dir], { env: store });
    expect(never.code).toBe(1);
    expect(never.stderr).toMatch(/image not known \(and --pull=never\)\n$/);
    expect(storedImages(store)).toEqual([]);
    const built = await tsrun(["build", "-t", "from-registry", dir], { env: store, timeout: 120_000 });
    expect(built.code, built.stderr).toBe(0);
    expect(built.stderr.match(/Trying to pull/g)?.length).toBe(2);
    expect(built.stdout).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh$/m);
    const again = await tsrun(["build", "--pull", dir], { env: store, timeout: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/Trying to pull/);
  });
});

describe("podman interop", () => {
  it("podman pulls an image pushed by tsrun: same image ID and manifest digest", async () => {
    const ref = `${open.host}/tsrun/for-podman:1`;
    const digest = (await tsrun(["push", "-q", "busybox", ref])).stdout.trim();
    const id = (await tsrun(["images", "-q", "--no-trunc", "busybox"])).stdout.trim();
    const dir = scratchDir("podman-pull");
    const p = podmanCli(dir);
    const r = await shAsUser(`set -e; ${p} pull -q --tls-verify=false ${ref}; ${p} images --no-trunc --digests --format '{{.ID}} {{.Digest}}'`, { timeout: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${id.replace(/^sha256:/, "")} ${digest}`);
  });
});

describe("retries and resumed downloads", () => {
  it("retries 5xx answers and reset connections; a blob cut halfway resumes with Range", async () => {
    const tar = randomLayerTar("flaky", 1 << 20, true);
    expect((await tsrun(["import", tar, "flaky"])).code).toBe(0);
    const ref = `${open.host}/tsrun/flaky:1`;
    expect((await tsrun(["push", "-q", "flaky", ref])).code).toBe(0);
    const manifest = (await (await fetch(`http://${open.host}/v2/tsrun/flaky/manifests/1`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } })).json()) as {
      layers: { digest: string; size: number }[];
    };
    const layer = manifest.layers[0] as { digest: string; size: number };
    let manifestGets = 0;
    let blobGets = 0;
    const proxy = await startProxy(open.host, (req) => {
      if (req.method === "GET" && req.url.includes("/manifests/")) {
        manifestGets++;
        if (manifestGets === 1) return { status: 503 };
        if (manifestGets === 2) return { resetBeforeAnswer: true };
      }
      if (req.method === "GET" && req.url.includes(`/blobs/${layer.digest}`)) {
        blobGets++;
        if (blobGets === 1) return { status: 502 };
        if (blobGets === 2) return { resetAfterBytes: Math.floor(layer.size / 2) };
      }
      return undefined;
    });
    try {
      const out = await pullAndRun(`${proxy.host}/tsrun/flaky:1`, "flaky", "wc -c < /random-flaky");
      expect(out).toBe(`${1 << 20}\n`);
      const blobRequests = proxy.seen.filter((r) => r.url.includes(`/blobs/${layer.digest}`));
      expect(blobRequests.length).toBe(3);
      // The third request asks only for the rest of the blob.
      expect(blobRequests[2]?.headers.range).toMatch(/^bytes=\d+-$/);
      expect(Number(/^bytes=(\d+)-$/.exec(String(blobRequests[2]?.headers.range))?.[1])).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  });

  it("a 429 is retried after its Retry-After; one asking for too long fails at once, saying so", async () => {
    const tooMany = (seconds: number): Fault => ({
      status: 429,
      headers: { "Retry-After": String(seconds) },
      body: JSON.stringify({ errors: [{ code: "TOOMANYREQUESTS", message: "You have reached your pull rate limit." }] }),
    });
    expect((await tsrun(["push", "-q", "busybox", `${open.host}/tsrun/ratelimit:1`])).code).toBe(0);
    let limited = 0;
    const proxy = await startProxy(open.host, (req) => (req.url.includes("/manifests/") && limited++ === 0 ? tooMany(1) : undefined));
    try {
      const store = freshStore("ratelimit");
      const r = await tsrun(["pull", "-q", `${proxy.host}/tsrun/ratelimit:1`], { env: store });
      expect(r.code, r.stderr).toBe(0);
      const [first, second] = proxy.seen.filter((q) => q.url.includes("/manifests/"));
      expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(900);
    } finally {
      await proxy.close();
    }
    const stubborn = await startProxy(open.host, (req) => (req.url.includes("/manifests/") ? tooMany(3600) : undefined));
    try {
      const store = freshStore("ratelimit-long");
      expectOneLineError(
        await tsrun(["pull", `${stubborn.host}/tsrun/ratelimit:1`], { env: store }),
        /^Error: pull .*ratelimit:1: toomanyrequests: You have reached your pull rate limit\. \(the registry asks to retry in 3600 s\)$/,
      );
      expect(stubborn.seen.filter((q) => q.url.includes("/manifests/")).length).toBe(1);
      expectEmptyStore(store);
    } finally {
      await stubborn.close();
    }
  });

  it("gives up after a few retries with one line, and stores nothing", async () => {
    const proxy = await startProxy(open.host, (req) => (req.url.includes("/manifests/") ? { status: 500 } : undefined));
    try {
      const store = freshStore("giveup");
      expectOneLineError(await tsrun(["pull", `${proxy.host}/tsrun/busybox:1`], { env: store }), /^Error: pull .*busybox:1: injected failure$/);
      // The first answer and three retries with backoff.
      expect(proxy.seen.filter((q) => q.url.includes("/manifests/")).length).toBe(4);
      expectEmptyStore(store);
    } finally {
      await proxy.close();
    }
  });
});

describe("push: chunked uploads and cross-repository mounts", () => {
  it("uploads a large blob in PATCH chunks and mounts blobs this registry already has", async () => {
    const tar = randomLayerTar("chunked", 9 << 20, true);
    expect((await tsrun(["import", tar, "chunked"])).code).toBe(0);
    const proxy = await startProxy(open.host);
    try {
      const push = await tsrun(["push", "chunked", `${proxy.host}/tsrun/chunked:1`]);
      expect(push.code, push.stderr).toBe(0);
      const patches = proxy.seen.filter((r) => r.method === "PATCH");
      expect(patches.length).toBeGreaterThanOrEqual(2);
      expect(patches.map((r) => r.headers["content-range"])).toEqual(patches.map((_, i) => expect.stringMatching(new RegExp(`^${i * (8 << 20)}-\\d+$`))));
      // The same image to another repository of the registry: every blob is mounted, none sent.
      proxy.seen.length = 0;
      const again = await tsrun(["push", "chunked", `${proxy.host}/tsrun/chunked-copy:1`]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/Copying blob sha256:[a-f0-9]{64} mounted/);
      expect(proxy.seen.some((r) => r.method === "POST" && /[?&]mount=sha256%3A[a-f0-9]{64}&from=tsrun%2Fchunked/.test(r.url))).toBe(true);
      expect(proxy.seen.filter((r) => r.method === "PATCH")).toEqual([]);
    } finally {
      await proxy.close();
    }
    const out = await pullAndRun(`${open.host}/tsrun/chunked-copy:1`, "chunked", "wc -c < /random-chunked");
    expect(out).toBe(`${9 << 20}\n`);
  });
});

describe("errors", () => {
  it("an artifact that is not a container image: unsupported media type, one line, nothing stored", async () => {
    const repo = "tsrun/helm-chart";
    const upload = async (bytes: Buffer): Promise<string> => {
      const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
      const start = await fetch(`http://${open.host}/v2/${repo}/blobs/uploads/`, { method: "POST" });
      const location = new URL(start.headers.get("location") ?? "", `http://${open.host}`);
      location.searchParams.set("digest", digest);
      expect((await fetch(location, { method: "PUT", body: bytes, headers: { "Content-Type": "application/octet-stream" } })).status).toBe(201);
      return digest;
    };
    const config = Buffer.from("{}");
    const chart = randomBytes(64);
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.cncf.helm.config.v1+json", digest: await upload(config), size: config.length },
      layers: [{ mediaType: "application/vnd.cncf.helm.chart.content.v1.tar+gzip", digest: await upload(chart), size: chart.length }],
    };
    const put = await fetch(`http://${open.host}/v2/${repo}/manifests/1`, { method: "PUT", headers: { "Content-Type": manifest.mediaType }, body: JSON.stringify(manifest) });
    expect(put.status).toBe(201);
    const store = freshStore("helm");
    const r = await tsrun(["pull", `${open.host}/${repo}:1`], { env: store });
    expectOneLineError(r, /^Error: pull .*: unsupported media type "application\/vnd\.cncf\.helm\.config\.v1\+json" for the config: not a container image$/);
    expectEmptyStore(store);
  });
});

describe("progress output", () => {
  it("draws per-layer bars on a terminal; plain lines otherwise; nothing with -q", async () => {
    const ref = `${open.host}/tsrun/busybox:1`;
    const tty = await shAsUser(`script -qec '"$TSRUN" pull ${ref}' /dev/null`, { env: freshStore("progress-tty") });
    expect(tty.code, tty.stdout).toBe(0);
    // Redrawn in place (cursor up, erase line), short digests, sizes, then the final state.
    expect(tty.stdout).toContain("\r\x1b[K");
    expect(tty.stdout).toMatch(/Copying blob [a-f0-9]{12} done +[\d.]+ ?[kMG]?B \/ [\d.]+ ?[kMG]?B/);
    expect(tty.stdout).toContain("Writing manifest to image destination");
    const plain = await tsrun(["pull", ref], { env: freshStore("progress-plain") });
    expect(plain.stderr).not.toContain("\x1b[");
    expect(plain.stderr.split("\n").filter((l) => l.startsWith("Copying blob "))).toEqual([expect.stringMatching(/^Copying blob sha256:[a-f0-9]{64} done$/)]);
    const quiet = await tsrun(["pull", "-q", ref], { env: freshStore("progress-quiet") });
    expect(quiet.stderr).toBe("");
    expect(quiet.stdout).toMatch(/^[a-f0-9]{64}\n$/);
  });
});

/**
 * A token server as Docker Hub, GHCR and Quay run them: GET /token?service=...&scope=... answers
 * a JWT (RS256, its certificate in the x5c header, which the registry checks against its
 * rootcertbundle). Anyone may pull repositories under public/; alice (password s3cret) may do
 * anything; bob (password b0b) may pull anything and push nothing, as a read-only account of a
 * hosted registry; a wrong password gets a 401. With refreshTokens, it also speaks
 * docker/distribution's OAuth2 spec: a GET with offline_token=true and good credentials also
 * answers a refresh_token (an identity token), and POST /token with grant_type=refresh_token
 * and such a token answers an access token for its user; any other refresh token is a 401.
 */
async function startTokenServer(
  dir: string,
  issuer: string,
  refreshTokens = false,
): Promise<{ realm: string; certFile: string; seen: (SeenRequest & { form?: URLSearchParams })[]; close: () => Promise<void> }> {
  const keyFile = path.join(dir, "token-key.pem");
  const certFile = path.join(dir, "token-cert.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", `/CN=${issuer}`], { stdio: "ignore" });
  const key = readFileSync(keyFile, "utf8");
  const certDer = readFileSync(certFile, "utf8").replace(/-----[A-Z ]+-----|\s/g, "");
  const seen: (SeenRequest & { form?: URLSearchParams })[] = [];
  const issued = new Map<string, string>();
  const b64url = (data: string | Buffer): string => Buffer.from(data).toString("base64url");
  const answer = (req: http.IncomingMessage, res: http.ServerResponse, form: URLSearchParams | undefined): void => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, at: Date.now(), ...(form ? { form } : {}) });
    const url = new URL(req.url ?? "/", "http://token");
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    let [user, password] = basic ? Buffer.from(basic, "base64").toString().split(":") : [];
    if (form) {
      user = form.get("grant_type") === "refresh_token" ? issued.get(form.get("refresh_token") ?? "") : undefined;
      if (!refreshTokens || user === undefined || !form.get("client_id")) {
        res.writeHead(refreshTokens ? 401 : 404, { "Content-Type": "application/json" });
        return void res.end(JSON.stringify({ details: "invalid refresh token" }));
      }
    } else if (user !== undefined && !((user === "alice" && password === "s3cret") || (user === "bob" && password === "b0b"))) {
      res.writeHead(401, { "Content-Type": "application/json" });
      return void res.end(JSON.stringify({ details: "incorrect username or password" }));
    }
    const scopes = form ? (form.get("scope") ?? "").split(" ").filter(Boolean) : url.searchParams.getAll("scope");
    const access = scopes
      .flatMap((s) => s.split(" "))
      .map((scope) => {
        const first = scope.indexOf(":");
        const last = scope.lastIndexOf(":");
        const name = scope.slice(first + 1, last);
        const wanted = scope.slice(last + 1).split(",");
        const actions = user === "alice" ? wanted : user === "bob" || name.startsWith("public/") ? wanted.filter((a) => a === "pull") : [];
        return { type: scope.slice(0, first), name, actions };
      });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: "JWT", alg: "RS256", x5c: [certDer] }));
    const claims = b64url(JSON.stringify({ iss: issuer, sub: user ?? "", aud: form ? form.get("service") : url.searchParams.get("service"), exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access }));
    const token = `${header}.${claims}.${b64url(sign("sha256", Buffer.from(`${header}.${claims}`), key))}`;
    res.writeHead(200, { "Content-Type": "application/json" });
    let refresh: string | undefined;
    if (refreshTokens && user && !form && url.searchParams.get("offline_token") === "true" && url.searchParams.get("client_id")) {
      refresh = `refresh-${user}-${randomBytes(8).toString("hex")}`;
      issued.set(refresh, user);
    }
    // Docker Hub answers "token", some others only the OAuth2 spelling "access_token".
    res.end(JSON.stringify(user ? { access_token: token, expires_in: 300, ...(refresh ? { refresh_token: refresh } : {}) } : { token, expires_in: 300 }));
  };
  const server = http.createServer((req, res) => {
    if (req.method !== "POST") return answer(req, res, undefined);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => answer(req, res, new URLSearchParams(Buffer.concat(chunks).toString())));
  });
  const { host, close } = await listenLocally(server);
  return { realm: `http://${host}/token`, certFile, seen, close };
}

describe("authentication (bearer tokens from a token server)", () => {
  it("anonymous tokens for public repositories, tokens with credentials for the rest, one-line 401s", async () => {
    const dir = scratchDir("token");
    const service = "tsrun-test-registry";
    const issuer = "tsrun-test-issuer";
    const tokens = await startTokenServer(dir, issuer);
    const registry = await startRegistry("token", { token: { realm: tokens.realm, service, issuer, rootCertBundle: tokens.certFile } });
    try {
      const alice = { XDG_CONFIG_HOME: scratchDir("token-alice") };
      const anonymous = { XDG_CONFIG_HOME: scratchDir("token-anon") };
      const denied = await tsrun(["push", "busybox", `${registry.host}/public/busybox:1`], { env: anonymous });
      expect(denied.code).toBe(125);
      expect(denied.stderr.trim().split("\n").pop()).toMatch(/^Error: push .*: authentication required \(log in with: tsrun login 127\.0\.0\.1:\d+\)$/);

      const wrong = await tsrun(["login", "-u", "alice", "--password-stdin", registry.host], { input: "nope\n", env: alice });
      expect(wrong.code).toBe(125);
      expect(wrong.stderr.trim()).toMatch(/^Error: login .*refused the username or password$/);
      const login = await tsrun(["login", "-u", "alice", "--password-stdin", registry.host], { input: "s3cret\n", env: alice });
      expect(login, login.stderr).toMatchObject({ code: 0, stdout: "Login Succeeded!\n" });

      expect((await tsrun(["push", "busybox", `${registry.host}/public/busybox:1`], { env: alice })).code).toBe(0);
      // The second repository mounts the blobs: its token also covers pulling from the first.
      const mounted = await tsrun(["push", "busybox", `${registry.host}/private/busybox:1`], { env: alice });
      expect(mounted.code, mounted.stderr).toBe(0);
      expect(mounted.stderr).toMatch(/Copying blob sha256:[a-f0-9]{64} mounted/);
      const mountToken = tokens.seen.find((r) => r.url.includes("private%2Fbusybox") || r.url.includes("private/busybox"));
      expect(decodeURIComponent(mountToken?.url ?? "")).toContain("scope=repository:private/busybox:pull,push");

      tokens.seen.length = 0;
      const pub = await tsrun(["pull", "-q", `${registry.host}/public/busybox:1`], { env: { ...anonymous, TSRUN_ROOT: scratchDir("store-token-pub") } });
      expect(pub.code, pub.stderr).toBe(0);
      expect(tokens.seen.length).toBeGreaterThan(0);
      for (const r of tokens.seen) {
        expect(r.headers.authorization).toBeUndefined();
        expect(decodeURIComponent(r.url)).toContain(`service=${service}`);
        expect(decodeURIComponent(r.url)).toContain("scope=repository:public/busybox:pull");
      }

      const priv = await tsrun(["pull", `${registry.host}/private/busybox:1`], { env: { ...anonymous, TSRUN_ROOT: scratchDir("store-token-anon") } });
      expect(priv.code).toBe(125);
      expect(priv.stderr.trim().split("\n").pop()).toMatch(/^Error: pull .*: authentication required \(log in with: tsrun login 127\.0\.0\.1:\d+\)$/);

      tokens.seen.length = 0;
      const withLogin = await tsrun(["pull", "-q", `${registry.host}/private/busybox:1`], { env: { ...alice, TSRUN_ROOT: scratchDir("store-token-alice") } });
      expect(withLogin.code, withLogin.stderr).toBe(0);
      expect(tokens.seen.some((r) => r.headers.authorization === `Basic ${Buffer.from("alice:s3cret").toString("base64")}`)).toBe(true);

      // Right password, no push access: the token server leaves "push" out of the token and the
      // registry answers insufficient_scope. That is a denial, not a wrong password.
      const bob = { XDG_CONFIG_HOME: scratchDir("token-bob") };
      expect((await tsrun(["login", "-u", "bob", "--password-stdin", registry.host], { input: "b0b\n", env: bob })).code).toBe(0);
      const readOnly = await tsrun(["push", "busybox", `${registry.host}/private/busybox:bob`], { env: bob });
      expectOneLineError(readOnly, /^Error: push .*: denied: requested access to the resource is denied \(repository:private\/busybox:[a-z,]*push[a-z,]*\)$/);
      expect(readOnly.stderr).not.toMatch(/refused the username or password/);
      const bobPull = await tsrun(["pull", "-q", `${registry.host}/private/busybox:1`], { env: { ...bob, TSRUN_ROOT: scratchDir("store-token-bob") } });
      expect(bobPull.code, bobPull.stderr).toBe(0);
    } finally {
      await tokens.close();
    }
  });

  it("identity tokens: login keeps the token server's refresh token instead of the password; it is exchanged by OAuth2 POST, from the file or a helper's <token>", async () => {
    const dir = scratchDir("oauth");
    const service = "tsrun-oauth-registry";
    const issuer = "tsrun-oauth-issuer";
    const tokens = await startTokenServer(dir, issuer, true);
    const registry = await startRegistry("oauth", { token: { realm: tokens.realm, service, issuer, rootCertBundle: tokens.certFile } });
    try {
      const config = scratchDir("oauth-config");
      const login = await tsrun(["login", "-u", "alice", "--password-stdin", registry.host], { input: "s3cret\n", env: { XDG_CONFIG_HOME: config } });
      expect(login, login.stderr).toMatchObject({ code: 0, stdout: "Login Succeeded!\n" });
      const authFile = path.join(config, "tsrun", "auth.json");
      const entry = (JSON.parse(readFileSync(authFile, "utf8")) as { auths: Record<string, { auth: string; identitytoken?: string }> }).auths[registry.host];
      expect(entry?.identitytoken).toMatch(/^refresh-alice-[a-f0-9]{16}$/);
      expect(Buffer.from(entry?.auth ?? "", "base64").toString()).toBe("alice:");
      expect(readFileSync(authFile, "utf8")).not.toContain("s3cret");

      tokens.seen.length = 0;
      const ref = `${registry.host}/private/oauth:1`;
      const push = await tsrun(["push", "-q", "busybox", ref], { env: { XDG_CONFIG_HOME: config } });
      expect(push.code, push.stderr).toBe(0);
      const pull = await tsrun(["pull", "-q", ref], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: scratchDir("store-oauth") } });
      expect(pull.code, pull.stderr).toBe(0);
      // Every token came from the refresh token, POSTed as a form; the password never travelled.
      expect(tokens.seen.length).toBeGreaterThan(0);
      for (const r of tokens.seen) {
        expect(r.method).toBe("POST");
        expect(r.headers.authorization).toBeUndefined();
        expect(r.form?.get("grant_type")).toBe("refresh_token");
        expect(r.form?.get("refresh_token")).toBe(entry?.identitytoken);
        expect(r.form?.get("service")).toBe(service);
        expect(r.form?.get("client_id")).toBe("tsrun");
      }
      expect(tokens.seen.some((r) => (r.form?.get("scope") ?? "").split(" ").includes("repository:private/oauth:pull,push"))).toBe(true);

      // A credential helper answering Docker's "<token>" username hands over an identity token.
      const bin = scratchDir("oauth-helper");
      writeFileSync(
        path.join(bin, "docker-credential-oauth-test"),
        `#!/bin/sh\n[ "$1" = get ] || exit 2\nprintf '{"ServerURL":"${registry.host}","Username":"<token>","Secret":"${entry?.identitytoken}"}'\n`,
        { mode: 0o755 },
      );
      const helperConfig = scratchDir("oauth-docker-config");
      writeFileSync(path.join(helperConfig, "config.json"), JSON.stringify({ credHelpers: { [registry.host]: "oauth-test" } }));
      if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, helperConfig]);
      const viaHelper = await tsrun(["pull", "-q", ref], { env: { DOCKER_CONFIG: helperConfig, XDG_CONFIG_HOME: scratchDir("config-empty"), PATH: `${bin}:/usr/bin:/bin`, TSRUN_ROOT: scratchDir("store-oauth-helper") } });
      expect(viaHelper.code, viaHelper.stderr).toBe(0);

      // A token the server does not know: one line, nothing stored.
      const bogus = path.join(scratchDir("oauth-bogus"), "auth.json");
      writeFileSync(bogus, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from("alice:").toString("base64"), identitytoken: "refresh-forged" } } }));
      if (env.user) chownSync(bogus, env.user.uid, env.user.gid);
      const store = { TSRUN_ROOT: scratchDir("store-oauth-bogus"), REGISTRY_AUTH_FILE: bogus };
      expectOneLineError(await tsrun(["pull", ref], { env: store }), /^Error: pull .*: unauthorized: 127\.0\.0\.1:\d+ refused the identity token \(log in again with: tsrun login 127\.0\.0\.1:\d+\)$/);
      expectEmptyStore(store);
    } finally {
      await tokens.close();
    }
  });
});
