// pull, push, login and logout against real registries: Debian's docker-registry started on
// 127.0.0.1 twice (open, and with htpasswd basic auth), skopeo for interop, and a small
// throttling proxy in this process to kill a pull in the middle of a layer download.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, openSync, readSync, writeSync, closeSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { asUser, cliEnv, env, importBusybox, scratchDir, tsrun } from "./helpers.js";

interface Registry {
  host: string;
  root: string;
  process: ChildProcess;
}

const registries: Registry[] = [];
let open: Registry;
let secured: Registry;
let work: string;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

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

async function startRegistry(name: string, htpasswd?: string): Promise<Registry> {
  if (!existsSync("/usr/bin/docker-registry")) throw new Error("the registry tests need Debian's docker-registry package (and skopeo)");
  const port = await freePort();
  const root = path.join(work, name);
  mkdirSync(path.join(root, "data"), { recursive: true });
  const auth = htpasswd ? `auth:\n  htpasswd:\n    realm: tsrun-test\n    path: ${htpasswd}\n` : "";
  const config = `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${root}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`;
  writeFileSync(path.join(root, "config.yml"), config);
  // Its log (every 404 of a HEAD is an "error" there) goes to a file, read when a test fails.
  const log = openSync(path.join(root, "registry.log"), "a");
  const child = spawn("/usr/bin/docker-registry", ["serve", path.join(root, "config.yml")], { stdio: ["ignore", log, log] });
  closeSync(log);
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const up = await fetch(`http://${host}/v2/`).then(
      () => true,
      () => false,
    );
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const registry = { host, root, process: child };
  registries.push(registry);
  return registry;
}

/** A fresh, empty store owned by the test user. */
function freshStore(label: string): Record<string, string> {
  return { TSRUN_ROOT: scratchDir(`store-${label}`), XDG_CONFIG_HOME: configHome };
}
let configHome: string;

/** A rootfs tarball: busybox plus a file of random bytes (a distinct, incompressible layer). */
function randomLayerTar(label: string, bytes: number): string {
  const dir = scratchDir(`layer-${label}`);
  const data = path.join(dir, "rootfs");
  mkdirSync(data);
  writeFileSync(path.join(data, `random-${label}`), randomBytes(bytes));
  const tar = path.join(dir, "layer.tar");
  execFileSync("tar", ["-C", data, "-cf", tar, "."]);
  chmodSync(tar, 0o644);
  return tar;
}

function blobFiles(store: Record<string, string>): string[] {
  const dir = path.join(store.TSRUN_ROOT as string, "blobs", "sha256");
  return existsSync(dir) ? readdirSync(dir) : [];
}

function storedImages(store: Record<string, string>): { id: string; names: string[]; repoDigests: string[] }[] {
  const file = path.join(store.TSRUN_ROOT as string, "images", "index.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { images: { id: string; names: string[]; repoDigests: string[] }[] }).images : [];
}

beforeAll(async () => {
  work = scratchDir("registry");
  configHome = scratchDir("config");
  await importBusybox("busybox");
  const htpasswd = path.join(work, "htpasswd");
  writeFileSync(htpasswd, `${bcryptLine("alice", "s3cret")}\n`);
  [open, secured] = await Promise.all([startRegistry("open"), startRegistry("secured", htpasswd)]);
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
    // A digest the registry does not have.
    const missing = await tsrun(["pull", `${open.host}/tsrun/bydigest@sha256:${"0".repeat(64)}`], { env: store });
    expect(missing.code).toBe(125);
    expect(missing.stderr.trim().split("\n").pop()).toMatch(/^Error: pull .*manifest unknown/);
  });

  it("bad input is a one-line error with status 125 and leaves the store unchanged", async () => {
    const store = freshStore("bad");
    const cases: [string[], RegExp][] = [
      [["pull", `${open.host}/Upper`], /invalid reference format/],
      [["pull", `${open.host}/nothing/here:latest`], /manifest unknown|name unknown/],
      [["pull", "--platform", "linux", `${open.host}/tsrun/busybox:1`], /invalid platform/],
      [["pull", "--tls-verify=maybe", `${open.host}/tsrun/busybox:1`], /expected true or false/],
      [["push", "no-such-image", `${open.host}/x:1`], /image not known/],
      [["logout", open.host], /not logged into/],
    ];
    for (const [args, message] of cases) {
      const r = await tsrun(args, { env: store });
      expect(r.code, args.join(" ")).toBe(125);
      const lines = r.stderr.trim().split("\n");
      expect(lines.pop(), args.join(" ")).toMatch(message);
      expect(lines.filter((l) => l.startsWith("Error"))).toEqual([]);
    }
    expect(blobFiles(store)).toEqual([]);
    expect(storedImages(store)).toEqual([]);
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
});

describe("multi-platform index", () => {
  it("picks the host's platform by default and another with --platform", async () => {
    const repo = `${open.host}/tsrun/multi`;
    await importBusybox("multi-arm", ["LABEL arch=arm64"]);
    const amd = (await tsrun(["push", "-q", "busybox", `${repo}:amd64`])).stdout.trim();
    const arm = (await tsrun(["push", "-q", "multi-arm", `${repo}:arm64`])).stdout.trim();
    const size = async (digest: string): Promise<number> => {
      const res = await fetch(`http://${open.host}/v2/tsrun/multi/manifests/${digest}`, { method: "HEAD", headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } });
      return Number(res.headers.get("content-length"));
    };
    const index = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: arm, size: await size(arm), platform: { os: "linux", architecture: "arm64", variant: "v8" } },
        { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: amd, size: await size(amd), platform: { os: "linux", architecture: "amd64" } },
      ],
    };
    const put = await fetch(`http://${open.host}/v2/tsrun/multi/manifests/latest`, {
      method: "PUT",
      headers: { "Content-Type": "application/vnd.oci.image.index.v1+json" },
      body: JSON.stringify(index),
    });
    expect(put.status).toBe(201);

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
});

describe("integrity and interruption", () => {
  it("a corrupted blob in the registry is refused: digest error, nothing stored", async () => {
    const tar = randomLayerTar("corrupt", 200_000);
    const imported = await tsrun(["import", tar, "corrupt-me"]);
    expect(imported.code, imported.stderr).toBe(0);
    const ref = `${open.host}/tsrun/corrupt:1`;
    expect((await tsrun(["push", "-q", "corrupt-me", ref])).code).toBe(0);
    const manifest = (await (
      await fetch(`http://${open.host}/v2/tsrun/corrupt/manifests/1`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } })
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

    const store = freshStore("corrupt");
    const pull = await tsrun(["pull", ref], { env: store });
    expect(pull.code).toBe(125);
    expect(pull.stderr.trim().split("\n").pop()).toMatch(/^Error: pull .*digest mismatch: expected sha256:[a-f0-9]{64}, got sha256:[a-f0-9]{64}/);
    expect(blobFiles(store)).toEqual([]);
    expect(storedImages(store)).toEqual([]);
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
