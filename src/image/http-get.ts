// A plain HTTP(S) GET of a URL a user gave (`ADD URL`, `import URL`): redirects followed, the
// response streamed. node:http(s) rather than fetch: fetch refuses the ports of its "bad port"
// list (6000, 6665-6669, 10080, ...) where Docker's Go client downloads from any port, and gives
// web streams where the callers want Readables.
// Through the environment's proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) like the registry client.
import type { IncomingMessage } from "node:http";
import { HttpTransport } from "./http-transport.js";

const MAX_REDIRECTS = 10;
const IDLE_TIMEOUT_MS = 60_000;

/**
 * GETs `url`; resolves with the response of the final URL once it is a 2xx, and rejects with a
 * one-line reason otherwise (`HTTP 404 Not Found`, `connect ECONNREFUSED 127.0.0.1:80`).
 */
export function httpGet(url: string): Promise<IncomingMessage> {
  let start: URL;
  try {
    start = new URL(url);
  } catch {
    return Promise.reject(new Error(`invalid URL ${url}`));
  }
  const transport = new HttpTransport();
  const get = (target: URL, redirects: number): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      if (target.protocol !== "http:" && target.protocol !== "https:") return reject(new Error(`unsupported URL scheme ${target.protocol}`));
      const req = transport.request(target, "GET", { "User-Agent": "tsrun/0.1" });
      req.end();
      req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${target.host} for ${IDLE_TIMEOUT_MS / 1000} s`)));
      req.once("error", (err) => reject(transport.explain(target, err)));
      req.once("response", (res) => {
        const refusal = transport.proxyRefusal(target, res);
        if (refusal) {
          res.resume();
          return reject(refusal);
        }
        res.setTimeout(IDLE_TIMEOUT_MS, () => res.destroy(new Error(`${target.host} stopped sending for ${IDLE_TIMEOUT_MS / 1000} s`)));
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if ([301, 302, 303, 307, 308].includes(status) && location) {
          res.resume();
          if (redirects >= MAX_REDIRECTS) return reject(new Error(`too many redirects`));
          get(new URL(location, target), redirects + 1).then(resolve, reject);
          return;
        }
        if (status < 200 || status > 299) {
          res.resume();
          return reject(new Error(`HTTP ${status} ${res.statusMessage ?? ""}`.trimEnd()));
        }
        resolve(res);
      });
    });
  return get(start, 0);
}
