// Debian's docker-registry on 127.0.0.1, started by the tests that need a registry (registry,
// integrity). Each call starts one on a free port with its own storage under dir.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

export interface Registry {
  /** "127.0.0.1:PORT" */
  host: string;
  root: string;
  process: ChildProcess;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Basic auth from an htpasswd file, or bearer tokens from a token server (its realm and signing certificate). */
export type RegistryAuth = { htpasswd: string } | { token: { realm: string; service: string; issuer: string; rootCertBundle: string } };

/** A certificate and its key (PEM files) for a registry that serves https. */
export interface RegistryTls {
  certificate: string;
  key: string;
  /** CA files of client certificates: with them, a client without such a certificate is refused. */
  clientCas?: string[];
}

/** Starts a registry with its data in dir/name; auth: an htpasswd file, or RegistryAuth; tls: https only. Stop it with stopRegistry. */
export async function startRegistry(dir: string, name: string, auth?: string | RegistryAuth, tls?: RegistryTls): Promise<Registry> {
  if (!existsSync("/usr/bin/docker-registry")) throw new Error("the registry tests need Debian's docker-registry package (and skopeo)");
  const port = await freePort();
  const root = path.join(dir, name);
  mkdirSync(path.join(root, "data"), { recursive: true });
  const how: RegistryAuth | undefined = typeof auth === "string" ? { htpasswd: auth } : auth;
  let authConfig = "";
  if (how && "htpasswd" in how) authConfig = `auth:\n  htpasswd:\n    realm: tsrun-test\n    path: ${how.htpasswd}\n`;
  if (how && "token" in how) {
    const t = how.token;
    authConfig = `auth:\n  token:\n    realm: ${t.realm}\n    service: ${t.service}\n    issuer: ${t.issuer}\n    rootcertbundle: ${t.rootCertBundle}\n`;
  }
  const clientCas = tls?.clientCas?.length ? `    clientcas:\n${tls.clientCas.map((f) => `      - ${f}\n`).join("")}` : "";
  const tlsConfig = tls ? `  tls:\n    certificate: ${tls.certificate}\n    key: ${tls.key}\n${clientCas}` : "";
  const config = `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${root}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${tlsConfig}${authConfig}`;
  writeFileSync(path.join(root, "config.yml"), config);
  // Its log (every 404 of a HEAD is an "error" there) goes to a file, read when a test fails.
  const log = openSync(path.join(root, "registry.log"), "a");
  const child = spawn("/usr/bin/docker-registry", ["serve", path.join(root, "config.yml")], { stdio: ["ignore", log, log] });
  closeSync(log);
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    // Plain http also tells a TLS registry is up: it answers 400 to it.
    const up = await fetch(`http://${host}/v2/`).then(
      () => true,
      () => false,
    );
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host, root, process: child };
}

export function stopRegistry(registry: Registry): void {
  registry.process.kill("SIGTERM");
}
