// A plain HTTP(S) GET of a URL a user gave (`ADD URL`, `import URL`): redirects followed, the
// response streamed. node:http(s) rather than fetch: fetch refuses the ports of its "bad port"
// list (6000, 6665-6669, 10080, ...) where Docker's Go client downloads from any port, and gives
// web streams where the callers want Readables.
import type { IncomingMessage } from "node:http";
import type * as Http from "node:http";
import type * as Https from "node:https";
import { createRequire } from "node:module";

// Loaded on first use, as in the registry client: most commands never download anything.
const requireBuiltin = createRequire(import.meta.url);
const http = (): typeof Http => requireBuiltin("node:http") as typeof Http;
const https = (): typeof Https => requireBuiltin("node:https") as typeof Https;

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
  const get = (target: URL, redirects: number): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      if (target.protocol !== "http:" && target.protocol !== "https:") return reject(new Error(`unsupported URL scheme ${target.protocol}`));
      const req = (target.protocol === "https:" ? https() : http()).get(target, { headers: { "User-Agent": "tsrun/0.1" } });
      req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${target.host} for ${IDLE_TIMEOUT_MS / 1000} s`)));
      req.once("error", reject);
      req.once("response", (res) => {
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
