// An HTTP client for one registry (OCI distribution v2): scheme selection (https, plain http for
// loopback or --tls-verify=false), the auth dance (Bearer tokens from WWW-Authenticate, anonymous
// or with credentials, and Basic), retries with backoff on 5xx and reset connections, redirects
// (blob downloads are often redirected to object storage) and the registry's JSON errors.
//
// node:http(s) rather than fetch: responses are plain Readables that stream straight into the
// blob store, and TLS verification can be switched off per agent without a global setting.
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import type * as Https from "node:https";
import { readFileSync } from "node:fs";

// node:http and node:https (with TLS) are loaded on first use: most commands never talk to a
// registry.
const http = lazyHttp;
import { Readable } from "node:stream";
import { TsrunError } from "../../errors.js";
import { lazyHttp, lazyTls } from "../../builtin.js";
import type { Credentials } from "./auth.js";
import { loadRegistryTls } from "./certs.js";
import { HttpTransport } from "../http-transport.js";

export class RegistryError extends TsrunError {
  constructor(
    message: string,
    readonly status = 0,
    readonly code = "",
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

export interface ClientOptions {
  /** Verify TLS certificates and require https (default true; loopback may always use http). */
  tlsVerify?: boolean;
  credentials?: Credentials | undefined;
}

/** A request body that can be sent again (after a 401 or a retry): bytes, or a stream factory. */
export type RequestBody = Buffer | { length: number; open: () => Readable };

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: RequestBody;
  /** Statuses returned to the caller as they are; other ones become a RegistryError. */
  ok?: number[];
  /** What the request is for, as the first words of an error message. */
  context: string;
}

export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  /** The URL that answered (after redirects), for resolving relative Location headers. */
  url: URL;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const RETRY_DELAYS_MS = [250, 750, 2000];
/** The OAuth2 client_id tsrun names itself with at token servers (Docker says "docker"). */
const OAUTH_CLIENT_ID = "tsrun";
/** A 429's Retry-After up to this long is waited for; a longer one fails at once, saying so. */
const MAX_RETRY_AFTER_MS = 30_000;
const IDLE_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 5;
const RETRYABLE_CODES = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EAI_AGAIN", "ECONNABORTED", "UND_ERR_SOCKET"]);

/** Docker Hub's API lives on another host than its image names say. */
export function apiHost(registry: string): string {
  return registry === "docker.io" ? "registry-1.docker.io" : registry;
}

export function isLoopback(registry: string): boolean {
  const host = registry.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Parses WWW-Authenticate: `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re = /\s*(?:([A-Za-z][\w-]*)\s+)?([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?|\s*([A-Za-z][\w-]*)\s*,?/y;
  let current: Challenge | undefined;
  let m: RegExpExecArray | null;
  while (re.lastIndex < header.length && (m = re.exec(header)) !== null) {
    if (m[0] === "") break;
    if (m[5] !== undefined) {
      // A scheme with no parameters.
      current = { scheme: m[5].toLowerCase(), params: {} };
      out.push(current);
      continue;
    }
    if (m[1] !== undefined) {
      current = { scheme: m[1].toLowerCase(), params: {} };
      out.push(current);
    }
    if (current && m[2] !== undefined) current.params[m[2].toLowerCase()] = m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : (m[4] ?? "");
  }
  return out;
}

/** Retry-After as delay-seconds or an HTTP date, in milliseconds from now; undefined if absent or unreadable. */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads a whole (small) body, refusing more than max bytes: manifests, configs, errors. */
export async function readBody(res: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > max) {
      res.destroy();
      throw new RegistryError(`${what} is larger than ${max} bytes; refusing it`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/** Drains and drops a response body so its connection can be reused. */
export function discard(res: IncomingMessage): void {
  res.resume();
}

/** The registry's own words from its JSON error body ({"errors":[{"code","message"}]}). */
function registryMessage(status: number, text: string): { message: string; code: string } {
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[] };
    const first = parsed.errors?.[0];
    if (first) {
      const message = first.message || first.code?.toLowerCase().replace(/_/g, " ") || `HTTP ${status}`;
      return { message, code: first.code ?? "" };
    }
  } catch {
    // Not JSON: a proxy's or an object store's page.
  }
  const line = text.trim().split("\n")[0]?.slice(0, 200) ?? "";
  return { message: `HTTP ${status} ${http().STATUS_CODES[status] ?? ""}`.trim() + (line && !line.startsWith("<") ? `: ${line}` : ""), code: "" };
}

export class RegistryClient {
  readonly host: string;
  private readonly tlsVerify: boolean;
  private readonly credentials: Credentials | undefined;
  /** Connections to the registry, directly or through the environment's proxy. */
  private readonly transport: HttpTransport;
  private base: URL | undefined;
  private challenge: Challenge | undefined;
  private token: string | undefined;
  /** Set by login: ask the token server for a refresh token (an identity token) along with the access token. */
  private wantRefreshToken = false;
  private refreshToken: string | undefined;
  /** Token scopes asked for so far, e.g. "repository:library/busybox:pull". */
  private readonly scopes = new Set<string>();

  constructor(
    readonly registry: string,
    opts: ClientOptions = {},
  ) {
    this.host = apiHost(registry);
    this.tlsVerify = opts.tlsVerify ?? true;
    this.credentials = opts.credentials;
    this.transport = new HttpTransport({ keepAlive: true, tls: () => this.tlsOptions() });
  }

  /** TLS options for https: verification, and the registry's CA and client certificate from certs.d. */
  private tlsOptions(): Https.AgentOptions {
    const options: Https.AgentOptions = { rejectUnauthorized: this.tlsVerify };
    const files = loadRegistryTls(this.registry);
    if (files) {
      // A `ca` list replaces Node's default store: start it with what that store holds.
      const tls = lazyTls();
      const ca: (string | Buffer)[] = [...tls.rootCertificates];
      const extra = process.env.NODE_EXTRA_CA_CERTS;
      if (extra) {
        try {
          ca.push(readFileSync(extra));
        } catch {
          // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS.
        }
      }
      options.ca = [...ca, ...files.ca];
      if (files.clientCert) {
        options.cert = files.clientCert.cert;
        options.key = files.clientCert.key;
      }
    }
    return options;
  }

  /** Adds scopes for the next token request (pull, push, and the source repo of a mount). */
  addScope(scope: string): void {
    if (this.scopes.has(scope)) return;
    this.scopes.add(scope);
    // A token only covers the scopes it was issued for: get a new one on the next 401.
    this.token = undefined;
  }

  close(): void {
    this.transport.destroy();
  }

  /** Sends one HTTP request; follows redirects (dropping Authorization when the host changes). */
  private send(url: URL, method: string, headers: Record<string, string>, body?: RequestBody): Promise<{ res: IncomingMessage; url: URL }> {
    const sendOnce = (target: URL, hdrs: Record<string, string>, redirects: number): Promise<{ res: IncomingMessage; url: URL }> =>
      new Promise((resolve, reject) => {
        const allHeaders: Record<string, string> = { "User-Agent": "tsrun/0.1", ...hdrs };
        if (body) allHeaders["Content-Length"] = String(body.length);
        const req = this.transport.request(target, method, allHeaders);
        req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(Object.assign(new Error(`no answer from ${target.host} for ${IDLE_TIMEOUT_MS / 1000} s`), { code: "ETIMEDOUT" })));
        req.once("error", (err) => reject(this.transport.explain(target, err)));
        req.once("response", (res) => {
          const refusal = this.transport.proxyRefusal(target, res);
          if (refusal) {
            discard(res);
            return reject(refusal);
          }
          res.setTimeout(IDLE_TIMEOUT_MS, () => res.destroy(Object.assign(new Error(`${target.host} stopped sending for ${IDLE_TIMEOUT_MS / 1000} s`), { code: "ETIMEDOUT" })));
          const status = res.statusCode ?? 0;
          const location = res.headers.location;
          if ([301, 302, 303, 307, 308].includes(status) && location && (method === "GET" || method === "HEAD")) {
            discard(res);
            if (redirects >= MAX_REDIRECTS) return reject(new RegistryError(`too many redirects from ${url.host}`));
            const next = new URL(location, target);
            const nextHeaders = { ...hdrs };
            // Object stores sign the URL itself; the registry's token must not leak to them.
            if (next.host !== target.host) delete nextHeaders.Authorization;
            sendOnce(next, nextHeaders, redirects + 1).then(resolve, reject);
            return;
          }
          resolve({ res, url: target });
        });
        if (!body) req.end();
        else if (Buffer.isBuffer(body)) req.end(body);
        else {
          const stream = body.open();
          stream.once("error", (err) => req.destroy(err));
          stream.pipe(req);
        }
      });
    return sendOnce(url, headers, 0);
  }

  /**
   * Picks https, or plain http where that is allowed (loopback, or --tls-verify=false) and https
   * fails to connect. The ping (GET /v2/) also tells how the registry wants clients to log in.
   *
   * On loopback, plain http is tried first: a local registry nearly always serves it, the bytes
   * never leave the host, and a TLS attempt that fails costs the client its whole certificate
   * store (about 30 ms of CPU here). A TLS server answers a plain request with 400 ("Client sent
   * an HTTP request to an HTTPS server"; no registry answers GET /v2/ so), and https follows.
   */
  private async resolveBase(): Promise<URL> {
    if (this.base) return this.base;
    const loopback = isLoopback(this.registry);
    const insecureAllowed = !this.tlsVerify || loopback;
    const candidates = !insecureAllowed ? ["https"] : loopback ? ["http", "https"] : ["https", "http"];
    let lastError: Error | undefined;
    for (const [index, scheme] of candidates.entries()) {
      const base = new URL(`${scheme}://${this.host}/v2/`);
      const last = index === candidates.length - 1;
      try {
        // Only the last candidate gets retries: an earlier one that fails is the wrong scheme.
        const { res } = await this.withRetries(() => this.send(base, "GET", {}), `ping ${this.registry}`, last ? undefined : 1);
        if (scheme === "http" && !last && res.statusCode === 400) {
          discard(res);
          throw new RegistryError(`${this.registry} does not speak plain http`);
        }
        this.noteChallenge(res.headers["www-authenticate"]);
        discard(res);
        this.base = base;
        return base;
      } catch (err) {
        // A local configuration problem is not the registry's: no other scheme will help.
        if (err instanceof TsrunError && !(err instanceof RegistryError)) throw err;
        lastError = err as Error;
      }
    }
    const hint = insecureAllowed ? "" : " (for a registry without TLS use --tls-verify=false)";
    throw new RegistryError(`cannot reach registry ${this.registry}: ${lastError?.message ?? "no answer"}${hint}`);
  }

  private noteChallenge(header: string | string[] | undefined): void {
    const text = Array.isArray(header) ? header.join(", ") : header;
    if (!text) return;
    const challenges = parseChallenges(text);
    this.challenge = challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic") ?? this.challenge;
  }

  /** Runs a network operation, retrying on reset connections and similar transient failures. */
  private async withRetries<T>(op: () => Promise<T>, context: string, attempts = RETRY_DELAYS_MS.length + 1): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "";
        if (!RETRYABLE_CODES.has(code) || attempt + 1 >= attempts) {
          // Ours (a registry's answer, a bad certs.d directory) already say what went wrong.
          if (err instanceof TsrunError) throw err;
          throw new RegistryError(`${context}: ${(err as Error).message}`);
        }
        await sleep(RETRY_DELAYS_MS[attempt] ?? 2000);
      }
    }
  }

  /**
   * Gets a Bearer token for the scopes asked for: anonymously, with the credentials (GET with
   * Basic auth), or with an identity token (an OAuth2 refresh token, POSTed to the realm as
   * docker/distribution's OAuth2 token spec says). During login the GET asks for a refresh token
   * too (offline_token=true), as Docker does: when the token server gives one, it is kept in
   * place of the password.
   */
  private async fetchToken(challenge: Challenge, context: string): Promise<string> {
    const realm = challenge.params.realm;
    if (!realm) throw new RegistryError(`${context}: the registry asked for a token without saying where to get it (no realm)`);
    const url = new URL(realm);
    const scopes = new Set(this.scopes);
    if (challenge.params.scope) for (const s of challenge.params.scope.split(" ")) scopes.add(s);
    const headers: Record<string, string> = { Accept: "application/json" };
    const identityToken = this.credentials?.identityToken;
    let body: Buffer | undefined;
    if (identityToken) {
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: identityToken, client_id: OAUTH_CLIENT_ID, scope: [...scopes].join(" ") });
      if (challenge.params.service) form.set("service", challenge.params.service);
      body = Buffer.from(form.toString());
      headers["Content-Type"] = "application/x-www-form-urlencoded";
    } else {
      if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
      for (const s of scopes) url.searchParams.append("scope", s);
      if (this.credentials) headers.Authorization = `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString("base64")}`;
      if (this.credentials && this.wantRefreshToken) {
        url.searchParams.set("offline_token", "true");
        url.searchParams.set("client_id", OAUTH_CLIENT_ID);
      }
    }
    const { res } = await this.withRetries(() => this.send(url, body ? "POST" : "GET", headers, body), `${context}: token from ${url.host}`);
    const text = (await readBody(res, 1 << 20, "token response")).toString("utf8");
    const status = res.statusCode ?? 0;
    if (identityToken && (status === 400 || status === 401 || status === 403)) {
      throw new RegistryError(`${context}: unauthorized: ${this.registry} refused the identity token (log in again with: tsrun login ${this.registry})`, 401);
    }
    if (identityToken && (status === 404 || status === 405)) {
      throw new RegistryError(`${context}: the token server ${url.host} does not take identity tokens (no OAuth2 POST: HTTP ${status}); log in with a password`, status);
    }
    if (status === 401 || status === 403) {
      throw new RegistryError(
        this.credentials
          ? `${context}: unauthorized: ${this.registry} refused the username or password`
          : `${context}: authentication required (log in with: tsrun login ${this.registry})`,
        401,
      );
    }
    if (status !== 200) throw new RegistryError(`${context}: token from ${url.host}: ${registryMessage(status, text).message}`, status);
    let parsed: { token?: unknown; access_token?: unknown; refresh_token?: unknown };
    try {
      parsed = JSON.parse(text) as { token?: unknown; access_token?: unknown; refresh_token?: unknown };
    } catch {
      throw new RegistryError(`${context}: token from ${url.host} is not JSON`);
    }
    const token = (typeof parsed.token === "string" && parsed.token) || (typeof parsed.access_token === "string" && parsed.access_token);
    if (!token) throw new RegistryError(`${context}: token response from ${url.host} has no token`);
    if (this.wantRefreshToken && !identityToken && typeof parsed.refresh_token === "string" && parsed.refresh_token !== "") this.refreshToken = parsed.refresh_token;
    return token;
  }

  private authorization(): string | undefined {
    if (this.token) return `Bearer ${this.token}`;
    // An identity token is only good at a token server, never as a Basic password.
    if (this.challenge?.scheme === "basic" && this.credentials && !this.credentials.identityToken) {
      return `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString("base64")}`;
    }
    return undefined;
  }

  /**
   * A request to the registry: path relative to /v2/ (e.g. "library/busybox/manifests/latest")
   * or an absolute URL (upload locations). Handles auth challenges, retries 5xx and transient
   * network errors, and turns unexpected statuses into one-line RegistryErrors.
   */
  async request(method: string, target: string | URL, opts: RequestOptions): Promise<RegistryResponse> {
    const base = await this.resolveBase();
    const url = typeof target === "string" ? new URL(target, base) : target;
    const ok = opts.ok ?? [200];
    let authRetried = false;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...opts.headers };
      const auth = this.authorization();
      if (auth) headers.Authorization = auth;
      const { res, url: answeredBy } = await this.withRetries(() => this.send(url, method, headers, opts.body), opts.context);
      const status = res.statusCode ?? 0;
      if (status === 401 && !authRetried) {
        authRetried = true;
        this.noteChallenge(res.headers["www-authenticate"]);
        discard(res);
        const challenge = this.challenge;
        if (challenge?.scheme === "bearer") {
          this.token = await this.fetchToken(challenge, opts.context);
          continue;
        }
        if (challenge?.scheme === "basic" && this.credentials && !this.credentials.identityToken && !auth) continue;
        throw this.unauthorized(opts.context);
      }
      if (status >= 500 && attempt < RETRY_DELAYS_MS.length && !ok.includes(status)) {
        discard(res);
        await sleep(RETRY_DELAYS_MS[attempt] ?? 2000);
        continue;
      }
      if (status === 429 && attempt < RETRY_DELAYS_MS.length && !ok.includes(status)) {
        // Rate limited: wait as long as the registry asks, when that is a reasonable time.
        const wait = retryAfterMs(res.headers["retry-after"]) ?? RETRY_DELAYS_MS[attempt] ?? 2000;
        if (wait <= MAX_RETRY_AFTER_MS) {
          discard(res);
          await sleep(wait);
          continue;
        }
      }
      if (ok.includes(status)) return { status, headers: res.headers, body: res, url: answeredBy };
      if (status === 401) {
        discard(res);
        throw this.unauthorized(opts.context, res.headers["www-authenticate"]);
      }
      const text = method === "HEAD" ? "" : (await readBody(res, 1 << 20, "error response").catch(() => Buffer.alloc(0))).toString("utf8");
      const { message, code } = registryMessage(status, text);
      if (status === 429) {
        const after = retryAfterMs(res.headers["retry-after"]);
        const hint = after !== undefined ? ` (the registry asks to retry in ${Math.ceil(after / 1000)} s)` : "";
        throw new RegistryError(`${opts.context}: toomanyrequests: ${message}${hint}`, status, code);
      }
      throw new RegistryError(`${opts.context}: ${message}`, status, code);
    }
  }

  /**
   * The 401 that stays after the auth dance. A token server that accepted the credentials but
   * issued a token without the actions asked for (pushing to someone else's repository) makes the
   * registry answer error="insufficient_scope": the password was right, the access is denied.
   */
  private unauthorized(context: string, header?: string | string[]): RegistryError {
    const text = Array.isArray(header) ? header.join(", ") : header;
    if (this.credentials?.identityToken && this.challenge?.scheme === "basic") {
      return new RegistryError(`${context}: ${this.registry} wants a password (basic auth); the stored identity token only works with a token server (log in again with: tsrun login ${this.registry})`, 401);
    }
    const bearer = text ? parseChallenges(text).find((c) => c.scheme === "bearer") : undefined;
    if (this.credentials && bearer?.params.error === "insufficient_scope") {
      const scope = bearer.params.scope ? ` (${bearer.params.scope})` : "";
      return new RegistryError(`${context}: denied: requested access to the resource is denied${scope}`, 401, "DENIED");
    }
    return new RegistryError(
      this.credentials
        ? `${context}: unauthorized: ${this.registry} refused the username or password`
        : `${context}: authentication required (log in with: tsrun login ${this.registry})`,
      401,
    );
  }

  /**
   * Checks that credentials work (GET /v2/ with them), as `login` does before saving them.
   * Returns the identity token the token server gave for them, if it gave one.
   */
  async checkLogin(): Promise<{ identityToken?: string }> {
    const base = await this.resolveBase();
    if (!this.challenge) return {}; // an open registry accepts anyone
    this.wantRefreshToken = true;
    await this.request("GET", base, { context: `login ${this.registry}` }).then((r) => discard(r.body));
    return this.refreshToken ? { identityToken: this.refreshToken } : {};
  }
}
