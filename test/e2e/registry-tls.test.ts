// Registries that serve https only, on 127.0.0.1: Debian's docker-registry with a certificate
// made here by openssl. tsrun tries plain http first on loopback and must move on to https when
// the server speaks TLS; it trusts a registry's CA from certs.d (as Podman and Docker users keep
// it) and presents a client certificate from there to a registry that demands one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, scratchDir, tsrun } from "./helpers.js";
import { startRegistry, stopRegistry, type Registry } from "./registry-server.js";

let work: string;
let server: Registry;
let mutual: Registry;
let serverCa: string;
let clientCert: string;
let clientKey: string;

const openssl = (args: string[]): void => void execFileSync("openssl", args, { stdio: "ignore" });

/** A self-signed certificate for 127.0.0.1 (its own CA): [certificate, key]. */
function selfSigned(dir: string, name: string, cn: string, san?: string): [string, string] {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${cn}`, ...(san ? ["-addext", `subjectAltName=${san}`] : [])]);
  return [cert, key];
}

/** XDG_CONFIG_HOME for the CLI with certs.d/HOST holding the given files (name -> source). */
function configWithCerts(host: string, files: Record<string, string>): string {
  const home = scratchDir("tls-config");
  const dir = path.join(home, "containers", "certs.d", host);
  mkdirSync(dir, { recursive: true });
  for (const [name, source] of Object.entries(files)) copyFileSync(source, path.join(dir, name));
  if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, home]);
  return home;
}

const freshStore = (label: string, configHome: string): Record<string, string> => ({ TSRUN_ROOT: scratchDir(`store-${label}`), XDG_CONFIG_HOME: configHome });

beforeAll(async () => {
  work = scratchDir("registry-tls");
  await importBusybox("busybox");
  const [cert, key] = selfSigned(work, "server", "127.0.0.1", "IP:127.0.0.1");
  serverCa = cert;
  // Client certificates: a CA of their own, and one certificate it signed.
  const [clientCa, clientCaKey] = selfSigned(work, "client-ca", "tsrun test client CA");
  clientKey = path.join(work, "client-key.pem");
  const csr = path.join(work, "client.csr");
  clientCert = path.join(work, "client.pem");
  openssl(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", clientKey, "-out", csr, "-subj", "/CN=tsrun-client"]);
  openssl(["x509", "-req", "-in", csr, "-CA", clientCa, "-CAkey", clientCaKey, "-CAcreateserial", "-out", clientCert, "-days", "2"]);
  [server, mutual] = await Promise.all([
    startRegistry(work, "tls", undefined, { certificate: cert, key }),
    startRegistry(work, "mtls", undefined, { certificate: cert, key, clientCas: [clientCa] }),
  ]);
});

afterAll(() => {
  for (const r of [server, mutual]) if (r) stopRegistry(r);
});

describe("https-only registry on loopback", () => {
  it("push and pull with its CA in certs.d: no flag needed, certificates verified", async () => {
    const config = configWithCerts(server.host, { "ca.crt": serverCa });
    const ref = `${server.host}/tsrun/busybox:tls`;
    const push = await tsrun(["push", "-q", "busybox", ref], { env: { XDG_CONFIG_HOME: config } });
    expect(push.code, push.stderr).toBe(0);
    const store = freshStore("tls-pull", config);
    const pull = await tsrun(["pull", "-q", ref], { env: store });
    expect(pull.code, pull.stderr).toBe(0);
    const run = await tsrun(["run", "--rm", ref, "echo", "over https"], { env: store });
    expect(run.stdout).toBe("over https\n");
  });

  it("without its CA: a one-line certificate error and an empty store; --tls-verify=false pulls", async () => {
    const config = scratchDir("tls-no-ca");
    const ref = `${server.host}/tsrun/busybox:tls`;
    expect((await tsrun(["push", "-q", "--tls-verify=false", "busybox", ref], { env: { XDG_CONFIG_HOME: config } })).code).toBe(0);
    const store = freshStore("tls-unverified", config);
    const refused = await tsrun(["pull", "-q", ref], { env: store });
    expect(refused.code).toBe(125);
    expect(refused.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^Error: .*self-signed certificate/)]);
    expect((await tsrun(["images", "-q"], { env: store })).stdout).toBe("");
    const pull = await tsrun(["pull", "-q", "--tls-verify=false", ref], { env: store });
    expect(pull.code, pull.stderr).toBe(0);
    expect((await tsrun(["images", "--format", "{{.Repository}}:{{.Tag}}"], { env: store })).stdout).toBe(`${server.host}/tsrun/busybox:tls\n`);
  });

  it("a registry that demands a client certificate gets the one in certs.d (NAME.cert + NAME.key)", async () => {
    const ref = `${mutual.host}/tsrun/busybox:mtls`;
    const withClient = configWithCerts(mutual.host, { "ca.crt": serverCa, "client.cert": clientCert, "client.key": clientKey });
    const push = await tsrun(["push", "-q", "busybox", ref], { env: { XDG_CONFIG_HOME: withClient } });
    expect(push.code, push.stderr).toBe(0);
    const pull = await tsrun(["pull", "-q", ref], { env: freshStore("mtls", withClient) });
    expect(pull.code, pull.stderr).toBe(0);

    // Without the client certificate the TLS handshake is refused.
    const caOnly = configWithCerts(mutual.host, { "ca.crt": serverCa });
    const refused = await tsrun(["pull", "-q", ref], { env: freshStore("mtls-refused", caOnly) });
    expect(refused.code).toBe(125);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);

    // A certificate without its key is a configuration error, named as such.
    const halfPair = configWithCerts(mutual.host, { "ca.crt": serverCa, "client.cert": clientCert });
    const broken = await tsrun(["pull", "-q", ref], { env: freshStore("mtls-half", halfPair) });
    expect(broken.code).toBe(125);
    expect(broken.stderr).toMatch(/^Error: missing key client\.key for client certificate .*client\.cert\n$/);
  });
});
