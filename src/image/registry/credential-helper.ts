// Docker's credential helper protocol (docker/docker-credential-helpers): a program
// docker-credential-NAME on PATH, run with one action as its argument:
//   get    stdin: the server URL      stdout: {"ServerURL","Username","Secret"}
//   store  stdin: that JSON           stdout: nothing
//   erase  stdin: the server URL      stdout: nothing
//   list   stdin: nothing             stdout: {"SERVER": "USERNAME", ...}
// A helper that knows nothing of a server says "credentials not found in native keychain" and
// exits 1. The username "<token>" marks the Secret as an identity token (an OAuth2 refresh
// token) rather than a password.
import { lazyChildProcess } from "../../builtin.js";
import { TsrunError } from "../../errors.js";

/** What a helper holds for a server. */
export interface HelperCredentials {
  username: string;
  secret: string;
}

/** The username a helper stores with an identity token, as Docker writes and reads it. */
export const IDENTITY_TOKEN_USERNAME = "<token>";

export class CredentialsNotFound extends Error {}

/** The key Docker stores a registry under in helpers: Docker Hub by its v1 URL, others by their host. */
export function helperServerUrl(registry: string): string {
  return registry === "docker.io" ? "https://index.docker.io/v1/" : registry;
}

function helperProgram(name: string, origin: string): string {
  if (!/^[A-Za-z0-9][\w.-]*$/.test(name)) throw new TsrunError(`${origin}: invalid credential helper name "${name}"`);
  return `docker-credential-${name}`;
}

/**
 * Runs a helper action; its stdout. origin names where the helper was configured (for messages).
 * Throws CredentialsNotFound when the helper says it has nothing for the server, and an error
 * with code ENOENT when the helper is not installed.
 */
function run(name: string, action: "get" | "store" | "erase" | "list", input: string, origin: string): string {
  const program = helperProgram(name, origin);
  try {
    return lazyChildProcess().execFileSync(program, [action], { input, timeout: 30_000, stdio: ["pipe", "pipe", "pipe"], encoding: "utf8" });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string; status?: number | null };
    // A helper that answers without reading its stdin (the server is implied) is no failure.
    if (e.code === "EPIPE" && e.status === 0) return e.stdout ?? "";
    if (e.code === "ENOENT") throw Object.assign(new TsrunError(`credential helper ${program} (named in ${origin}) is not installed`), { code: "ENOENT" });
    const said = `${e.stdout ?? ""}\n${e.stderr ?? ""}`.trim();
    if (/credentials not found/i.test(said)) throw new CredentialsNotFound(said);
    const what = action === "get" ? "could not read" : action === "store" ? "could not store" : action === "erase" ? "could not erase" : "could not list";
    throw new TsrunError(`credential helper ${program} ${what} credentials: ${said.split("\n")[0] || e.message}`);
  }
}

/** The helper's credentials for a registry; undefined when it has none. */
export function helperGet(name: string, registry: string, origin: string): HelperCredentials | undefined {
  let output: string;
  try {
    output = run(name, "get", helperServerUrl(registry), origin);
  } catch (err) {
    if (err instanceof CredentialsNotFound) return undefined;
    throw err;
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(output) as { Username?: unknown; Secret?: unknown };
  } catch {
    throw new TsrunError(`credential helper ${helperProgram(name, origin)} answered something that is not JSON`);
  }
  if (typeof parsed.Username !== "string" || typeof parsed.Secret !== "string" || parsed.Secret === "") return undefined;
  return { username: parsed.Username, secret: parsed.Secret };
}

export function helperStore(name: string, registry: string, creds: HelperCredentials, origin: string): void {
  run(name, "store", JSON.stringify({ ServerURL: helperServerUrl(registry), Username: creds.username, Secret: creds.secret }), origin);
}

/** Erases a server's credentials (server: a registry's helperServerUrl, or a key from helperList); false when it had none. */
export function helperErase(name: string, server: string, origin: string): boolean {
  try {
    run(name, "erase", server, origin);
    return true;
  } catch (err) {
    if (err instanceof CredentialsNotFound) return false;
    throw err;
  }
}

/** The servers a helper holds credentials for. */
export function helperList(name: string, origin: string): string[] {
  const output = run(name, "list", "", origin);
  try {
    const parsed = JSON.parse(output) as unknown;
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? Object.keys(parsed) : [];
  } catch {
    throw new TsrunError(`credential helper ${helperProgram(name, origin)} answered something that is not JSON`);
  }
}
