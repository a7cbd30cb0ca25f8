// Registry credentials in Docker's auth file format: {"auths": {"HOST": {"auth": base64("user:pass")}}}.
// tsrun writes $REGISTRY_AUTH_FILE when set (as Podman does), else $XDG_CONFIG_HOME/tsrun/auth.json.
// It reads that file first, then the files Podman and Docker log in to (containers/image's order),
// so a `podman login` or `docker login` done earlier works too.
import { lazyChildProcess } from "../../builtin.js";
import { chmodSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeFileAtomic } from "../../store/atomic.js";
import { TsrunError } from "../../errors.js";

export interface Credentials {
  username: string;
  password: string;
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
 * Asks a Docker credential helper (`docker-credential-NAME get`, the server on stdin, JSON
 * {"Username","Secret"} back), as Docker and Podman do for `credHelpers` and `credsStore`.
 * Undefined when it has nothing for the registry, or when a credsStore (a default for every
 * registry, often left behind by Docker Desktop) is not installed; a helper named for this
 * registry that is missing or fails is an error.
 */
function fromHelper(name: string, registry: string, file: string, namedForRegistry: boolean): Credentials | undefined {
  if (!/^[A-Za-z0-9][\w.-]*$/.test(name)) throw new TsrunError(`auth file ${file}: invalid credential helper name "${name}"`);
  const helper = `docker-credential-${name}`;
  // Docker keys Docker Hub by its v1 URL in helpers too; other registries by their host.
  const server = registry === "docker.io" ? "https://index.docker.io/v1/" : registry;
  let output: string;
  try {
    output = lazyChildProcess().execFileSync(helper, ["get"], { input: server, timeout: 30_000, stdio: ["pipe", "pipe", "pipe"], encoding: "utf8" });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === "ENOENT") {
      if (!namedForRegistry) return undefined;
      throw new TsrunError(`credential helper ${helper} (named in ${file} for ${registry}) is not installed`);
    }
    const said = `${e.stdout ?? ""}\n${e.stderr ?? ""}`.trim();
    if (/credentials not found/i.test(said)) return undefined;
    throw new TsrunError(`credential helper ${helper} failed for ${registry}: ${said.split("\n")[0] || e.message}`);
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(output) as { Username?: unknown; Secret?: unknown };
  } catch {
    throw new TsrunError(`credential helper ${helper} answered something that is not JSON`);
  }
  // "<token>" marks an OAuth identity token, which only Docker Hub's and some clouds' token
  // endpoints take: not supported, as if there were no credentials.
  if (typeof parsed.Username !== "string" || typeof parsed.Secret !== "string" || parsed.Username === "<token>" || parsed.Secret === "") return undefined;
  return { username: parsed.Username, password: parsed.Secret };
}

/** Credentials stored for a registry host (e.g. "docker.io", "127.0.0.1:5000"), if any. */
export function lookupCredentials(registry: string, authFile?: string): Credentials | undefined {
  const wanted = normaliseRegistryKey(registry);
  for (const [i, file] of readableAuthFiles(authFile).entries()) {
    const parsed = readAuthFile(file, i > 0);
    // Docker's order: a helper for this registry, else the default store, else the file's entry.
    const helperKey = Object.keys(parsed?.credHelpers ?? {}).find((key) => normaliseRegistryKey(key) === wanted);
    const named = helperKey !== undefined ? parsed?.credHelpers?.[helperKey] : undefined;
    if (typeof named === "string" && named !== "") {
      const creds = fromHelper(named, wanted, file, true);
      if (creds) return creds;
    } else if (typeof parsed?.credsStore === "string" && parsed.credsStore !== "") {
      const creds = fromHelper(parsed.credsStore, wanted, file, false);
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

/** Stores credentials for a registry, keeping every other entry and field of the file. */
export function storeCredentials(registry: string, creds: Credentials, authFile?: string): string {
  const file = authFilePath(authFile);
  const parsed = readAuthFile(file) ?? {};
  const auths: Record<string, AuthEntry> = { ...(parsed.auths ?? {}) };
  const host = normaliseRegistryKey(registry);
  for (const key of Object.keys(auths)) if (normaliseRegistryKey(key) === host) delete auths[key];
  auths[host] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString("base64") };
  // 0600: the file holds passwords. writeFileAtomic creates it with that mode; chmod also fixes
  // an older file that was created more open.
  writeFileAtomic(file, JSON.stringify({ ...parsed, auths }, null, "\t") + "\n", 0o600);
  chmodSync(file, 0o600);
  return file;
}

/** Removes a registry's credentials; false when there were none in tsrun's file. */
export function removeCredentials(registry: string, authFile?: string): boolean {
  const file = authFilePath(authFile);
  const parsed = readAuthFile(file);
  if (!parsed?.auths) return false;
  const host = normaliseRegistryKey(registry);
  const auths = { ...parsed.auths };
  let removed = false;
  for (const key of Object.keys(auths)) {
    if (normaliseRegistryKey(key) === host) {
      delete auths[key];
      removed = true;
    }
  }
  if (removed) writeFileAtomic(file, JSON.stringify({ ...parsed, auths }, null, "\t") + "\n", 0o600);
  return removed;
}

/** Removes every credential from tsrun's file (logout --all). */
export function removeAllCredentials(authFile?: string): void {
  const file = authFilePath(authFile);
  const parsed = readAuthFile(file);
  if (!parsed) return;
  writeFileAtomic(file, JSON.stringify({ ...parsed, auths: {} }, null, "\t") + "\n", 0o600);
}
