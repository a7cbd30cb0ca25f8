// Proxy selection from HTTP_PROXY, HTTPS_PROXY and NO_PROXY with the rules of Go's
// golang.org/x/net/http/httpproxy, which Docker and Podman obey.
import { describe, expect, it } from "vitest";
import { parseProxyUrl, proxyAuthorization, proxyFor, proxySettingsFromEnv } from "../../src/image/proxy-config.js";

const through = (url: string, env: NodeJS.ProcessEnv): string | undefined => proxyFor(new URL(url), proxySettingsFromEnv(env))?.href;

describe("proxy variables", () => {
  it("picks HTTPS_PROXY for https and HTTP_PROXY for http, upper case first, http:// assumed", () => {
    const env = { HTTPS_PROXY: "secure:3128", https_proxy: "http://lower:1", http_proxy: "http://plain:8080" };
    expect(through("https://registry.example.com/v2/", env)).toBe("http://secure:3128/");
    expect(through("http://registry.example.com/v2/", env)).toBe("http://plain:8080/");
    expect(through("https://registry.example.com/v2/", { https_proxy: "http://lower:1" })).toBe("http://lower:1/");
    expect(through("https://registry.example.com/v2/", { HTTP_PROXY: "http://plain:8080" })).toBeUndefined();
    expect(through("https://registry.example.com/v2/", { HTTPS_PROXY: "" , https_proxy: "http://lower:1" })).toBe("http://lower:1/");
  });

  it("never proxies localhost or loopback addresses, as Go hard-codes", () => {
    const env = { HTTPS_PROXY: "http://p:1", HTTP_PROXY: "http://p:1" };
    for (const url of ["http://localhost:5000/", "https://127.0.0.1/", "http://127.0.0.2:80/", "https://[::1]:5000/"]) expect(through(url, env), url).toBeUndefined();
    expect(through("https://[::2]/", env)).toBe("http://p:1/");
  });

  it("NO_PROXY: *, domains and subdomains, leading dots, ports, IPs and CIDR prefixes", () => {
    const env = { HTTPS_PROXY: "http://p:1", NO_PROXY: "foobar.com, .barbaz.net, *.wild.org, 10.0.0.0/8, 192.168.1.1, 172.16.0.1:5000, [2001:db8::1]:443, fd00::/8, only.io:8443" };
    const cases: [string, boolean][] = [
      ["https://foobar.com/", false],
      ["https://www.foobar.com/", false],
      ["https://foofoobar.com/", true],
      ["https://barbaz.net/", true],
      ["https://x.barbaz.net/", false],
      ["https://wild.org/", true],
      ["https://a.wild.org/", false],
      ["https://10.1.2.3/", false],
      ["https://11.1.2.3/", true],
      ["https://192.168.1.1:5000/", false],
      ["https://192.168.1.2/", true],
      ["https://172.16.0.1:5000/", false],
      ["https://172.16.0.1/", true],
      ["https://[2001:db8::1]/", false],
      ["https://[2001:db8::1]:5000/", true],
      ["https://[fd12::1]/", false],
      ["https://only.io:8443/", false],
      ["https://only.io/", true],
      ["https://FOOBAR.COM/", false],
    ];
    for (const [url, proxied] of cases) expect(through(url, env) !== undefined, url).toBe(proxied);
    expect(through("https://anything.example/", { HTTPS_PROXY: "http://p:1", no_proxy: "a.b, *" })).toBeUndefined();
  });

  it("refuses values it cannot use, naming the variable; credentials become Proxy-Authorization", () => {
    expect(() => proxySettingsFromEnv({ HTTPS_PROXY: "socks5://p:1080" })).toThrow(/^unsupported proxy scheme "socks5" in HTTPS_PROXY/);
    expect(() => proxySettingsFromEnv({ http_proxy: "http://" })).toThrow(/^invalid proxy address in http_proxy: "http:\/\/"$/);
    expect(() => proxySettingsFromEnv({ HTTP_PROXY: "http://[bad" })).toThrow(/invalid proxy address in HTTP_PROXY/);
    expect(proxyAuthorization(parseProxyUrl("HTTPS_PROXY", "http://us%40r:p%3Ass@p:1"))).toBe(`Basic ${Buffer.from("us@r:p:ss").toString("base64")}`);
    expect(proxyAuthorization(parseProxyUrl("HTTPS_PROXY", "p:1"))).toBeUndefined();
  });
});
