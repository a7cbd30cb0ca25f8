// Registry credentials in Docker's auth file format: {"auths": {"HOST": {"auth": base64("user:pass")}}}.
// tsrun writes $REGISTRY_AUTH_FILE when set (as Podman does), else $XDG_CONFIG_HOME/tsrun/auth.json.
// It reads that file first, then the files Podman and Docker log in to (containers/image's order),
// so a `podman login` or `docker login` done earlier works too.
import { chmodSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeFileAtomic } from "../../store/atomic.js";
import { TsrunError } from "../../errors.js";
import { helperErase, helperGet, helperList, helperServerUrl, helperStore, IDENTITY_TOKEN_USERNAME } from "./credential-helper.js";

export interface Credentials {
  username: string;
  password: string;
  /**
   * An OAuth2 refresh token in place of the password (Docker's "identitytoken", or a helper's
   * "<token>" username): exchanged at the token server for access tokens.
   */
  identityToken?: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  [extra: string]: unknown;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  /** Docker's credential helpers: docker-credential-NAME for one registry, or for every one. */
  credHelpers?: Record<string, unknown>;
  credsStore?: unknown;
  [extra: string]: unknown;
}

/** The file `login` writes and `logout` edits. */
export function authFilePath(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.REGISTRY_AUTH_FILE) return process.env.REGISTRY_AUTH_FILE;
  const configHome = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  return path.join(configHome, "tsrun", "auth.json");
}

/**
 * Files consulted for credentials, most specific first: tsrun's own, then Podman's
 * (${XDG_RUNTIME_DIR}/containers/auth.json, or /run/containers/UID/auth.json without
 * XDG_RUNTIME_DIR, then $XDG_CONFIG_HOME/containers/auth.json) and Docker's
 * ($DOCKER_CONFIG/config.json or ~/.docker/config.json). An --authfile is the only one read.
 */
export function readableAuthFiles(explicit?: string): string[] {
  if (explicit) return [explicit];
  const configHome = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  const runtimeDir = process.env.XDG_RUNTIME_DIR;
  const files = [
    authFilePath(),
    runtimeDir ? path.join(runtimeDir, "containers", "auth.json") : `/run/containers/${process.getuid?.() ?? 0}/auth.json`,
    path.join(configHome, "containers", "auth.json"),
    process.env.DOCKER_CONFIG ? path.join(process.env.DOCKER_CONFIG, "config.json") : path.join(os.homedir(), ".docker", "config.json"),
  ];
  return [...new Set(files)];
}

/**
 * Auth file keys come in several spellings ("host", "https://host", "https://host/v1/");
 * Docker Hub is stored as "https://index.docker.io/v1/". All of them reduce to the host.
 */
export function normaliseRegistryKey(key: string): string {
  let host = key.replace(/^[a-z]+:\/\//i, "");
  const slash = host.indexOf("/");
  if (slash >= 0) host = host.slice(0, slash);
  if (host === "index.docker.io" || host === "registry-1.docker.io" || host === "registry.hub.docker.com") return "docker.io";
  return host;
}

/**
 * Reads an auth file; undefined when it does not exist. Another tool's file that this user may
 * not read (optional) counts as absent too: /run/containers is root's on hosts where root ran
 * Podman, and that must not stop a pull that needs no credentials.
 */
function readAuthFile(file: string, optional = false): AuthFile | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR" || (optional && code === "EACCES")) return undefined;
    throw new TsrunError(`cannot read auth file ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object");
    return parsed as AuthFile;
  } catch (err) {
    throw new TsrunError(`auth file ${file} is not valid: ${(err as Error).message}`);
  }
}

function decodeEntry(entry: AuthEntry, file: string, key: string): Credentials | undefined {
  // Docker keeps the username beside an identity token ("auth": base64("user:")); the token is what authenticates.
  if (typeof entry.identitytoken === "string" && entry.identitytoken !== "") {
    const decoded = typeof entry.auth === "string" ? Buffer.from(entry.auth, "base64").toString("utf8") : "";
    const colon = decoded.indexOf(":");
    return { username: colon >= 0 ? decoded.slice(0, colon) : (entry.username ?? ""), password: "", identityToken: entry.identitytoken };
  }
  if (typeof entry.auth === "string" && entry.auth !== "") {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new TsrunError(`auth file ${file}: the entry for ${key} is not base64("user:password")`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof entry.username === "string" && typeof entry.password === "string") return { username: entry.username, password: entry.password };
  return undefined;
}

/**
 * Asks a Docker credential helper, as Docker and Podman do for `credHelpers` and `credsStore`.
 * Undefined when it has nothing for the registry, or when a credsStore (a default for every
 * registry, often left behind by Docker Desktop) is not installed; a helper named for this
 * registry that is missing or fails is an error.
 */
function fromHelper(name: string, registry: string, file: string, namedForRegistry: boolean): Credentials | undefined {
  let found;
  try {
    found = helperGet(name, registry, `${file} for ${registry}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !namedForRegistry) return undefined;
    throw err;
  }
  if (!found) return undefined;
  if (found.username === IDENTITY_TOKEN_USERNAME) return { username: "", password: "", identityToken: found.secret };
  return { username: found.username, password: found.secret };
}

/** The helper a file names for a registry: its credHelpers entry, else its credsStore. */
function helperFor(parsed: AuthFile | undefined, registry: string): { name: string; namedForRegistry: boolean } | undefined {
  const helperKey = Object.keys(parsed?.credHelpers ?? {}).find((key) => normaliseRegistryKey(key) === registry);
  const named = helperKey !== undefined ? parsed?.credHelpers?.[helperKey] : undefined;
  if (typeof named === "string" && named !== "") return { name: named, namedForRegistry: true };
  if (typeof parsed?.credsStore === "string" && parsed.credsStore !== "") return { name: parsed.credsStore, namedForRegistry: false };
  return undefined;
}

/** Credentials stored for a registry host (e.g. "docker.io", "127.0.0.1:5000"), if any. */
export function lookupCredentials(registry: string, authFile?: string): Credentials | undefined {
  const wanted = normaliseRegistryKey(registry);
  for (const [i, file] of readableAuthFiles(authFile).entries()) {
    const parsed = readAuthFile(file, i > 0);
    // Docker's order: a helper for this registry, else the default store, else the file's entry.
    const helper = helperFor(parsed, wanted);
    if (helper) {
      const creds = fromHelper(helper.name, wanted, file, helper.namedForRegistry);
      if (creds) return creds;
    }
    for (const [key, entry] of Object.entries(parsed?.auths ?? {})) {
      if (normaliseRegistryKey(key) !== wanted || typeof entry !== "object" || entry === null) continue;
      const creds = decodeEntry(entry, file, key);
      if (creds) return creds;
    }
  }
  return undefined;
}

/** The auth file's content with a registry's entries (any spelling of its key) left out. */
function withoutEntry(parsed: AuthFile, host: string): { auths: Record<string, AuthEntry>; removed: boolean } {
  const auths: Record<string, AuthEntry> = { ...(parsed.auths ?? {}) };
  let removed = false;
  for (const key of Object.keys(auths)) {
    if (normaliseRegistryKey(key) === host) {
      delete auths[key];
      removed = true;
    }
  }
  return { auths, removed };
}

function writeAuthFile(file: string, content: AuthFile): void {
  // 0600: the file holds passwords. writeFileAtomic creates it with that mode; chmod also fixes
  // an older file that was created more open.
  writeFileAtomic(file, JSON.stringify(content, null, "\t") + "\n", 0o600);
  chmodSync(file, 0o600);
}

/**
 * Stores credentials for a registry, keeping every other entry and field of the file. When the
 * file names a credential helper for the registry (credHelpers, else credsStore), the helper
 * stores them, as `docker login` does, and the file keeps no password for it. Returns where
 * they went: the file, or the helper's program name.
 */
export function storeCredentials(registry: string, creds: Credentials, authFile?: string): string {
  const file = authFilePath(authFile);
  const parsed = readAuthFile(file) ?? {};
  const host = normaliseRegistryKey(registry);
  const helper = helperFor(parsed, host);
  if (helper) {
    const secret = creds.identityToken ? { username: IDENTITY_TOKEN_USERNAME, secret: creds.identityToken } : { username: creds.username, secret: creds.password };
    helperStore(helper.name, host, secret, `${file} for ${host}`);
    // A password stored earlier in the file would shadow nothing (the helper is asked first) but must not linger.
    const { auths, removed } = withoutEntry(parsed, host);
    if (removed) writeAuthFile(file, { ...parsed, auths });
    return `docker-credential-${helper.name}`;
  }
  const { auths } = withoutEntry(parsed, host);
  auths[host] = creds.identityToken
    ? { auth: Buffer.from(`${creds.username}:`).toString("base64"), identitytoken: creds.identityToken }
    : { auth: Buffer.from(`${creds.username}:${creds.password}`).toString("base64") };
  writeAuthFile(file, { ...parsed, auths });
  return file;
}

/**
 * Removes a registry's credentials: from the credential helper the file names for it (as
 * `docker logout` does) and from the file. False when neither had any.
 */
export function removeCredentials(registry: string, authFile?: string): boolean {
  const file = authFilePath(authFile);
  const parsed = readAuthFile(file);
  if (!parsed) return false;
  const host = normaliseRegistryKey(registry);
  const helper = helperFor(parsed, host);
  const erased = helper ? helperErase(helper.name, helperServerUrl(host), `${file} for ${host}`) : false;
  const { auths, removed } = withoutEntry(parsed, host);
  if (removed) writeAuthFile(file, { ...parsed, auths });
  return erased || removed;
}

/** Removes every credential from tsrun's file and from the helpers it names (logout --all). */
export function removeAllCredentials(authFile?: string): void {
  const file = authFilePath(authFile);
  const parsed = readAuthFile(file);
  if (!parsed) return;
  for (const [key, name] of Object.entries(parsed.credHelpers ?? {})) {
    if (typeof name === "string" && name !== "") helperErase(name, helperServerUrl(normaliseRegistryKey(key)), `${file} for ${key}`);
  }
  if (typeof parsed.credsStore === "string" && parsed.credsStore !== "") {
    const store = parsed.credsStore;
    let servers: string[];
    try {
      servers = helperList(store, file);
    } catch (err) {
      // A default store that is not installed holds nothing to remove (as when reading).
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      servers = [];
    }
    for (const server of servers) helperErase(store, server, `${file} for ${server}`);
  }
  writeAuthFile(file, { ...parsed, auths: {} });
}
