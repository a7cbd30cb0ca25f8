// Per-registry TLS files where Podman and Docker users keep them: a directory named after the
// registry ("host" or "host:port") holding extra CA certificates (*.crt) and a client
// certificate for mutual TLS (NAME.cert with NAME.key). As containers/image does, the first of
// these that exists is used: $XDG_CONFIG_HOME/containers/certs.d (default ~/.config),
// /etc/containers/certs.d, /etc/docker/certs.d. The CAs are added to the usual ones, not put in
// their place.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { TsrunError } from "../../errors.js";

export interface RegistryTlsFiles {
  /** The directory the files came from (for messages). */
  dir: string;
  /** PEM certificates to trust besides the default ones. */
  ca: Buffer[];
  /** Client certificate and key (PEM), when the directory has a pair. */
  clientCert?: { cert: Buffer; key: Buffer };
}

/** The certs.d directories searched for a registry, first match wins. */
export function certsDirCandidates(registry: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const configHome = env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  return [path.join(configHome, "containers", "certs.d"), "/etc/containers/certs.d", "/etc/docker/certs.d"].map((base) => path.join(base, registry));
}

/** The TLS files for a registry, or undefined when no certs.d directory names it. */
export function loadRegistryTls(registry: string, env: NodeJS.ProcessEnv = process.env): RegistryTlsFiles | undefined {
  const dir = certsDirCandidates(registry, env).find((d) => existsSync(d));
  if (dir === undefined) return undefined;
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new TsrunError(`cannot read the certificates for ${registry} in ${dir}: ${(err as Error).message}`);
  }
  const read = (name: string): Buffer => {
    try {
      return readFileSync(path.join(dir, name));
    } catch (err) {
      throw new TsrunError(`cannot read ${path.join(dir, name)}: ${(err as Error).message}`);
    }
  };
  const files: RegistryTlsFiles = { dir, ca: names.filter((n) => n.endsWith(".crt")).map(read) };
  // Docker's rule: a client certificate NAME.cert needs its key NAME.key, and the other way round.
  const certs = names.filter((n) => n.endsWith(".cert"));
  const keys = names.filter((n) => n.endsWith(".key"));
  for (const cert of certs) {
    const key = `${cert.slice(0, -".cert".length)}.key`;
    if (!keys.includes(key)) throw new TsrunError(`missing key ${key} for client certificate ${path.join(dir, cert)}`);
  }
  for (const key of keys) {
    const cert = `${key.slice(0, -".key".length)}.cert`;
    if (!certs.includes(cert)) throw new TsrunError(`missing client certificate ${cert} for key ${path.join(dir, key)}`);
  }
  const first = certs[0];
  if (first !== undefined) files.clientCert = { cert: read(first), key: read(`${first.slice(0, -".cert".length)}.key`) };
  return files;
}
