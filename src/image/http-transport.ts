// How an HTTP request reaches its URL: directly, or through the proxy the environment names
// (proxy-config.ts). Through a proxy, an http URL is asked for in absolute form
// ("GET http://host/path HTTP/1.1") and an https URL through a CONNECT tunnel, over which TLS is
// spoken with the server itself: the proxy sees only the host and port, and certificates are
// verified against the server as without a proxy. Credentials in the proxy URL
// (http://user:password@proxy:3128) are sent as Proxy-Authorization: Basic. Used by the registry
// client and by downloads of URLs (`import URL`, `ADD URL`).
import type { ClientRequest, IncomingMessage } from "node:http";
import type * as Http from "node:http";
import type * as Https from "node:https";
import type * as Net from "node:net";
import type * as Tls from "node:tls";
import type { Duplex } from "node:stream";
import { TsrunError } from "../errors.js";
import { lazyHttp, lazyHttps, lazyNet, lazyTls } from "../builtin.js";
import { describeProxy, proxyAuthorization, proxyFor, proxySettingsFromEnv, type ProxySettings } from "./proxy-config.js";

// Loaded on first use: most commands never make an HTTP request.
const http = lazyHttp;
const https = lazyHttps;
const net = lazyNet;
const tls = lazyTls;

/** The largest CONNECT answer header we read before giving up on the proxy. */
const MAX_CONNECT_RESPONSE = 16 * 1024;

export interface TransportOptions {
  /** Reuse connections (a registry client's many requests) or not (one download). */
  keepAlive?: boolean;
  /** TLS options for https servers (CA, client certificate, verification), asked for on first https use. */
  tls?: () => Https.AgentOptions;
  /** The proxy settings; read from the environment when not given. */
  proxies?: ProxySettings;
}

/**
 * A proxy's failure (unreachable, refused the tunnel or the credentials): the user's setup, not
 * the server's answer, so callers report it as it is instead of trying another scheme. code is
 * the socket error's, so that retries still see a refused or reset connection.
 */
export class ProxyError extends TsrunError {
  constructor(
    message: string,
    readonly code = "",
  ) {
    super(message);
    this.name = "ProxyError";
  }
}

/**
 * Opens a CONNECT tunnel to host:port through a proxy; calls back with the raw socket once the
 * proxy answered 2xx. Bytes the proxy sent after its answer (none, for a conforming proxy) are
 * pushed back into the socket.
 */
function connectTunnel(proxy: URL, host: string, port: number, done: (err: Error | null, socket?: Net.Socket) => void, tlsOptions: Tls.ConnectionOptions): void {
  const proxyPort = Number(proxy.port || (proxy.protocol === "https:" ? 443 : 80));
  const proxyHost = proxy.hostname.replace(/^\[(.*)\]$/, "$1");
  const socket: Net.Socket =
    proxy.protocol === "https:"
      ? tls().connect({ host: proxyHost, port: proxyPort, servername: net().isIP(proxyHost) ? undefined : proxyHost, ca: tlsOptions.ca, rejectUnauthorized: tlsOptions.rejectUnauthorized })
      : net().connect({ host: proxyHost, port: proxyPort });
  const authority = net().isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  let received = Buffer.alloc(0);
  let finished = false;
  const finish = (err: Error | null): void => {
    if (finished) return;
    finished = true;
    socket.removeListener("data", onData);
    socket.removeListener("error", onError);
    socket.removeListener("end", onEnd);
    if (err) {
      socket.destroy();
      done(err);
    } else done(null, socket);
  };
  const onError = (err: NodeJS.ErrnoException): void =>
    finish(new ProxyError(`proxy ${describeProxy(proxy)}: ${err.message}`, err.code ?? ""));
  const onEnd = (): void => finish(new ProxyError(`proxy ${describeProxy(proxy)} closed the connection instead of answering CONNECT ${authority}`, "ECONNRESET"));
  const onData = (chunk: Buffer): void => {
    received = Buffer.concat([received, chunk]);
    const end = received.indexOf("\r\n\r\n");
    if (end < 0) {
      if (received.length > MAX_CONNECT_RESPONSE) finish(new ProxyError(`proxy ${describeProxy(proxy)} sent an answer to CONNECT ${authority} that is not HTTP`));
      return;
    }
    const statusLine = received.subarray(0, received.indexOf("\r\n")).toString("latin1");
    const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
    if (!status) return finish(new ProxyError(`proxy ${describeProxy(proxy)} sent an answer to CONNECT ${authority} that is not HTTP`));
    const code = Number(status[1]);
    if (code < 200 || code > 299) {
      // tinyproxy answers a CONNECT without credentials with 401, others with 407.
      const auth = code === 407 || code === 401 ? (proxyAuthorization(proxy) ? " (it refused the credentials in the proxy URL)" : " (it wants credentials: http://USER:PASSWORD@host:port)") : "";
      return finish(new ProxyError(`proxy ${describeProxy(proxy)} refused CONNECT ${authority}: ${code} ${status[2] ?? ""}`.trimEnd() + auth));
    }
    const rest = received.subarray(end + 4);
    if (rest.length > 0) socket.unshift(rest);
    finish(null);
  };
  socket.on("data", onData);
  socket.once("error", onError);
  socket.once("end", onEnd);
  const headers = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`, "User-Agent: tsrun/0.1"];
  const auth = proxyAuthorization(proxy);
  if (auth) headers.push(`Proxy-Authorization: ${auth}`);
  socket.write(`${headers.join("\r\n")}\r\n\r\n`);
}

/** An https agent whose connections are CONNECT tunnels through a proxy, TLS on top. */
function tunnelingAgent(proxy: URL, options: Https.AgentOptions): Https.Agent {
  class TunnelingAgent extends https().Agent {
    // Node's Agent accepts a connection handed back later through the callback (returning
    // nothing); the types only describe the synchronous form.
    override createConnection(connectOptions: Tls.ConnectionOptions & { host?: string; port?: number }, callback?: (err: Error | null, stream: Duplex) => void): Duplex {
      const cb = callback ?? ((): void => undefined);
      const host = connectOptions.host ?? "localhost";
      connectTunnel(
        proxy,
        host,
        Number(connectOptions.port ?? 443),
        (err, socket) => {
          if (err || !socket) return cb(err ?? new ProxyError(`proxy ${describeProxy(proxy)}: no tunnel`), undefined as unknown as Duplex);
          const secure = tls().connect({ ...connectOptions, socket, servername: connectOptions.servername ?? (net().isIP(host) ? undefined : host) });
          cb(null, secure);
        },
        connectOptions,
      );
      return undefined as unknown as Duplex;
    }
  }
  return new TunnelingAgent(options);
}

/**
 * Sends requests directly or through the environment's proxy, keeping one agent per route so
 * connections are reused. destroy() closes them all.
 */
export class HttpTransport {
  private readonly keepAlive: boolean;
  private readonly tlsOptions: () => Https.AgentOptions;
  private proxies: ProxySettings | undefined;
  private directHttp: Http.Agent | undefined;
  private directHttps: Https.Agent | undefined;
  private readonly viaProxy = new Map<string, Http.Agent>();

  constructor(opts: TransportOptions = {}) {
    this.keepAlive = opts.keepAlive ?? false;
    this.tlsOptions = opts.tls ?? ((): Https.AgentOptions => ({}));
    this.proxies = opts.proxies;
  }

  /** The proxy a URL goes through (undefined: direct); throws when a proxy variable is unusable. */
  proxyFor(url: URL): URL | undefined {
    this.proxies ??= proxySettingsFromEnv();
    return proxyFor(url, this.proxies);
  }

  private agentOptions(): Http.AgentOptions {
    return this.keepAlive ? { keepAlive: true, maxSockets: 8 } : {};
  }

  /** Starts a request; the caller writes the body (or ends it) and listens for "response". */
  request(url: URL, method: string, headers: Record<string, string>): ClientRequest {
    const isHttps = url.protocol === "https:";
    const proxy = this.proxyFor(url);
    if (!proxy) {
      const agent = isHttps
        ? (this.directHttps ??= new (https().Agent)({ ...this.agentOptions(), ...this.tlsOptions() }))
        : (this.directHttp ??= new (http().Agent)(this.agentOptions()));
      return (isHttps ? https() : http()).request(url, { method, headers, agent });
    }
    const name = `${isHttps ? "tunnel" : "forward"} ${proxy.href}`;
    if (isHttps) {
      let agent = this.viaProxy.get(name) as Https.Agent | undefined;
      if (!agent) {
        agent = tunnelingAgent(proxy, { ...this.agentOptions(), ...this.tlsOptions() });
        this.viaProxy.set(name, agent);
      }
      return https().request(url, { method, headers, agent });
    }
    // Plain http through the proxy: the request line carries the absolute URL.
    const proxyIsHttps = proxy.protocol === "https:";
    let agent = this.viaProxy.get(name);
    if (!agent) {
      agent = proxyIsHttps ? new (https().Agent)({ ...this.agentOptions(), ...this.tlsOptions() }) : new (http().Agent)(this.agentOptions());
      this.viaProxy.set(name, agent);
    }
    const proxyHeaders: Record<string, string> = { Host: url.host, ...headers };
    const auth = proxyAuthorization(proxy);
    if (auth) proxyHeaders["Proxy-Authorization"] = auth;
    return (proxyIsHttps ? https() : http()).request({
      protocol: proxy.protocol,
      hostname: proxy.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: proxy.port || (proxyIsHttps ? 443 : 80),
      path: url.href,
      method,
      headers: proxyHeaders,
      agent,
    });
  }

  /**
   * An error of a request to url in words that say where it went wrong: a failure to reach a
   * proxy names the proxy; one from the tunnel already does.
   */
  explain(url: URL, err: Error): Error {
    if (err instanceof ProxyError) return err;
    const proxy = this.proxies ? proxyFor(url, this.proxies) : undefined;
    const code = (err as NodeJS.ErrnoException).code;
    if (proxy && url.protocol === "http:" && (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EHOSTUNREACH")) {
      return new ProxyError(`proxy ${describeProxy(proxy)}: ${err.message}`, code);
    }
    return err;
  }

  /**
   * A proxy's refusal of an http request it was asked to forward (407, or a 403/502 that is its
   * own rather than the server's), as a one-line error; undefined for the server's answers.
   */
  proxyRefusal(url: URL, res: IncomingMessage): ProxyError | undefined {
    if (url.protocol !== "http:" || res.statusCode !== 407) return undefined;
    const proxy = this.proxyFor(url);
    if (!proxy) return undefined;
    const hint = proxyAuthorization(proxy) ? " (it refused the credentials in the proxy URL)" : " (it wants credentials: http://USER:PASSWORD@host:port)";
    return new ProxyError(`proxy ${describeProxy(proxy)} refused ${url.host}: 407 Proxy Authentication Required${hint}`);
  }

  destroy(): void {
    this.directHttp?.destroy();
    this.directHttps?.destroy();
    for (const agent of this.viaProxy.values()) agent.destroy();
    this.viaProxy.clear();
  }
}
