// Which proxy a request goes through, from the environment, with the rules of Go's
// golang.org/x/net/http/httpproxy (what Docker, Podman, skopeo and containerd obey, so one set of
// variables means the same to all of them):
// - HTTPS_PROXY (else https_proxy) for https URLs, HTTP_PROXY (else http_proxy) for http URLs;
//   the upper-case name wins when both are set and not empty.
// - A value without a scheme ("proxy:3128") is http://; the proxy's default port is its scheme's.
// - NO_PROXY (else no_proxy): a comma list of "*" (no proxy at all), IP addresses (with an
//   optional :port), CIDR prefixes, and domain names (with an optional :port) that match the
//   name and every subdomain; ".example.com" and "*.example.com" match subdomains only.
// - "localhost" and loopback addresses (127.0.0.0/8, ::1) never go through a proxy, whatever
//   NO_PROXY says: Go hard-codes that, and so do we.
// Unlike Go, which quietly goes direct when a proxy variable cannot be parsed, a value tsrun
// cannot use is an error: traffic meant for a proxy must not leave by another way unnoticed.
import { TsrunError } from "../errors.js";

/** 4 or 6 for an IP address literal, 0 otherwise (node:net's isIP without loading node:net). */
function isIP(text: string): 0 | 4 | 6 {
  if (/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(text)) return 4;
  if (!/^[0-9a-f:.]+$/i.test(text) || !text.includes(":")) return 0;
  // An embedded IPv4 tail ("::ffff:1.2.3.4") stands for two groups.
  const v4Tail = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (v4Tail !== undefined && isIP(v4Tail) !== 4) return 0;
  const groups = (v4Tail !== undefined ? text.slice(0, -v4Tail.length) + "0:0" : text).split("::");
  if (groups.length > 2) return 0;
  const parts = groups.flatMap((g) => (g === "" ? [] : g.split(":")));
  if (parts.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return 0;
  return (groups.length === 2 ? parts.length < 8 : parts.length === 8) ? 6 : 0;
}

type NoProxyRule = { kind: "all" } | { kind: "cidr"; network: bigint; bits: number; v6: boolean } | { kind: "ip"; ip: string; port: string } | { kind: "domain"; suffix: string; matchHost: boolean; port: string };

export interface ProxySettings {
  httpProxy: URL | undefined;
  httpsProxy: URL | undefined;
  noProxy: NoProxyRule[];
}

function firstSet(env: NodeJS.ProcessEnv, names: string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name];
    if (value) return { name, value };
  }
  return undefined;
}

/** A proxy variable's value as a URL: http:// assumed without a scheme, http and https only. */
export function parseProxyUrl(name: string, value: string): URL {
  let url: URL | undefined;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
  } else {
    try {
      url = new URL(`http://${value}`);
    } catch {
      url = undefined;
    }
  }
  if (!url || url.hostname === "") throw new TsrunError(`invalid proxy address in ${name}: "${value}"`);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TsrunError(`unsupported proxy scheme "${url.protocol.slice(0, -1)}" in ${name} (tsrun speaks to http and https proxies)`);
  }
  return url;
}

/** An IPv4 or IPv6 address as a number (IPv4-mapped IPv6 addresses count as IPv4, as in Go). */
function ipValue(ip: string): { value: bigint; v6: boolean } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1]) ip = mapped[1];
  if (isIP(ip) === 4) return { value: ip.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n), v6: false };
  // Expand "::" and an embedded IPv4 tail into eight 16-bit groups.
  let text = ip;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4Tail?.[1]) {
    const parts = v4Tail[1].split(".").map(Number);
    text = text.slice(0, -v4Tail[1].length) + `${(((parts[0] ?? 0) << 8) | (parts[1] ?? 0)).toString(16)}:${(((parts[2] ?? 0) << 8) | (parts[3] ?? 0)).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups];
  return { value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n), v6: true };
}

function sameIp(a: string, b: string): boolean {
  const x = ipValue(a);
  const y = ipValue(b);
  return x.v6 === y.v6 && x.value === y.value;
}

function isLoopbackIp(ip: string): boolean {
  const { value, v6 } = ipValue(ip);
  return v6 ? value === 1n : value >> 24n === 127n;
}

/** Splits "host:port", "[v6]:port", "host" into host (no brackets) and port ("" when absent). */
function splitHostPort(text: string): { host: string; port: string } {
  const bracketed = /^\[([^\]]*)\](?::(\d*))?$/.exec(text);
  if (bracketed) return { host: bracketed[1] ?? "", port: bracketed[2] ?? "" };
  const colon = text.lastIndexOf(":");
  // More than one colon and no brackets: a bare IPv6 address.
  if (colon < 0 || text.indexOf(":") !== colon) return { host: text, port: "" };
  return { host: text.slice(0, colon), port: text.slice(colon + 1) };
}

/** NO_PROXY's entries as httpproxy reads them; entries it cannot make sense of are skipped, as there. */
export function parseNoProxy(value: string): NoProxyRule[] {
  const rules: NoProxyRule[] = [];
  for (const raw of value.split(",")) {
    const entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return [{ kind: "all" }];
    const cidr = /^(.+)\/(\d{1,3})$/.exec(entry);
    if (cidr?.[1] && isIP(cidr[1])) {
      const { value: ip, v6 } = ipValue(cidr[1]);
      const width = v6 ? 128 : 32;
      const bits = Number(cidr[2]);
      if (bits > width) continue;
      rules.push({ kind: "cidr", network: ip >> BigInt(width - bits), bits, v6 });
      continue;
    }
    const { host, port } = splitHostPort(entry);
    if (host === "") continue;
    if (isIP(host)) {
      rules.push({ kind: "ip", ip: host, port });
      continue;
    }
    let suffix = host.startsWith("*.") ? host.slice(1) : host;
    const matchHost = !suffix.startsWith(".");
    if (matchHost) suffix = `.${suffix}`;
    rules.push({ kind: "domain", suffix, matchHost, port });
  }
  return rules;
}

/** The proxy settings of an environment (process.env by default); throws on a value it cannot use. */
export function proxySettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const http = firstSet(env, ["HTTP_PROXY", "http_proxy"]);
  const https = firstSet(env, ["HTTPS_PROXY", "https_proxy"]);
  const noProxy = firstSet(env, ["NO_PROXY", "no_proxy"]);
  return {
    httpProxy: http ? parseProxyUrl(http.name, http.value) : undefined,
    httpsProxy: https ? parseProxyUrl(https.name, https.value) : undefined,
    noProxy: noProxy ? parseNoProxy(noProxy.value) : [],
  };
}

function bypasses(rule: NoProxyRule, host: string, port: string): boolean {
  switch (rule.kind) {
    case "all":
      return true;
    case "cidr": {
      if (!isIP(host)) return false;
      const { value, v6 } = ipValue(host);
      if (v6 !== rule.v6) return false;
      return value >> BigInt((v6 ? 128 : 32) - rule.bits) === rule.network;
    }
    case "ip":
      return isIP(host) !== 0 && sameIp(host, rule.ip) && (rule.port === "" || rule.port === port);
    case "domain":
      return (host.endsWith(rule.suffix) || (rule.matchHost && host === rule.suffix.slice(1))) && (rule.port === "" || rule.port === port);
  }
}

/** The proxy for a URL, or undefined to connect directly. */
export function proxyFor(url: URL, settings: ProxySettings): URL | undefined {
  const proxy = url.protocol === "https:" ? settings.httpsProxy : url.protocol === "http:" ? settings.httpProxy : undefined;
  if (!proxy) return undefined;
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  if (host === "localhost" || (isIP(host) !== 0 && isLoopbackIp(host))) return undefined;
  // Go checks IP rules only for IP hosts, domain rules for every host (a domain rule never matches an IP).
  if (settings.noProxy.some((rule) => bypasses(rule, host, port))) return undefined;
  return proxy;
}

/** A proxy as messages name it: scheme, host and port, never its credentials. */
export function describeProxy(proxy: URL): string {
  return `${proxy.protocol}//${proxy.host}`;
}

/** The Proxy-Authorization header for a proxy URL with credentials (user:password@), if any. */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === "" && proxy.password === "") return undefined;
  const user = decodeURIComponent(proxy.username);
  const password = decodeURIComponent(proxy.password);
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}
